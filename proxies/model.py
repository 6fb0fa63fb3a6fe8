"""A pack of Laguna-style proxy language models: P decoder-only transformers in one module.

Features: RMSNorm; rotary embeddings with separate bases for local and global layers;
grouped-query attention with QK-norm; sliding-window and global attention interleaved 3:1;
sigmoid-routed top-k MoE feed-forward with a shared expert and auxiliary-loss-free balancing
(optional balance and z-losses), or a dense SwiGLU for comparison. Every weight has a leading
pack axis P, so P=1 is a single proxy and a pack trains P independent proxies in one process.

Shapes: P pack, B batch, T time, N = B*T, D width, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from proxies.layers import Attention, SwiGLU, init_packed, packed_linear, rms_norm
from proxies.loss import linear_cross_entropy
from proxies.moe import MoE, grouped_gemm_ok
from proxies.presets import ModelConfig


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, P: int, layer: int) -> None:
        super().__init__()
        is_global = cfg.is_global(layer)
        self.attn_norm = nn.Parameter(torch.ones(P, cfg.d_model))
        self.ffn_norm = nn.Parameter(torch.ones(P, cfg.d_model))
        self.attn = Attention(
            P,
            cfg.d_model,
            cfg.n_heads,
            cfg.n_kv_heads,
            None if is_global else cfg.window,
            cfg.rope_base_global if is_global else cfg.rope_base_local,
        )
        self.ffn: MoE | SwiGLU = (
            SwiGLU(P, cfg.d_model, cfg.dense_hidden)
            if cfg.dense
            else MoE(
                P,
                cfg.d_model,
                cfg.n_experts,
                cfg.top_k,
                cfg.expert_hidden,
                cfg.n_shared,
                cfg.route_scale,
            )
        )

    def forward(
        self,
        x_PBTD: torch.Tensor,
        aux: list[torch.Tensor],
        loads: list[torch.Tensor],
        cfg: ModelConfig,
    ) -> torch.Tensor:
        P, B, T, D = x_PBTD.shape
        x_PBTD = x_PBTD + self.attn(rms_norm(x_PBTD, self.attn_norm[:, None, None, :]))
        h_PND = rms_norm(x_PBTD, self.ffn_norm[:, None, None, :]).reshape(P, B * T, D)
        if isinstance(self.ffn, MoE):
            y, logits, top, load = self.ffn(h_PND)
            loads.append(load)
            if cfg.aux_loss_coef:
                aux.append(cfg.aux_loss_coef * self.ffn.balance_loss(logits, top))
            if cfg.z_loss_coef:
                aux.append(cfg.z_loss_coef * torch.logsumexp(logits, -1).pow(2).mean(1))
        else:
            y = self.ffn(h_PND)
        return x_PBTD + y.view(P, B, T, D)


class PackedLM(nn.Module):
    def __init__(self, cfg: ModelConfig, seeds: list[int]) -> None:
        super().__init__()
        P = len(seeds)
        self.cfg, self.P, self.seeds = cfg, P, list(seeds)
        self.embed = nn.Parameter(torch.empty(P, cfg.vocab_size, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg, P, i) for i in range(cfg.n_layers))
        self.final_norm = nn.Parameter(torch.ones(P, cfg.d_model))
        self.head = nn.Parameter(torch.empty(P, cfg.vocab_size, cfg.d_model))
        init_packed(self, self.seeds, cfg.init_std, cfg.n_layers)
        self.vectorised = False
        """Embedding and loss over the whole pack at once (`device_layout`)."""

    def moe_layers(self) -> list[MoE]:
        return [b.ffn for b in self.blocks if isinstance(b.ffn, MoE)]

    def device_layout(self, seq_len: int, device: torch.device) -> PackedLM:
        """The layout of a synchronisation-free, compilable step (an accelerator's): experts
        through the grouped GEMM where it serves these widths (else padded, with one host
        sync per layer), the sliding window through FlexAttention's block mask at `seq_len`
        on CUDA, and one embedding lookup and one loss for the whole pack (no loop over
        proxies)."""
        cfg = self.cfg
        grouped = grouped_gemm_ok(device, cfg.d_model, cfg.expert_hidden)
        for moe in self.moe_layers():
            moe.impl = "grouped" if grouped else "padded"
        if device.type == "cuda":  # FlexAttention has no backward on a CPU (torch 2.13)
            for block in self.blocks:
                assert isinstance(block, Block)
                block.attn.use_blocks(seq_len, device)
        self.vectorised = True
        return self

    def update_bias(self, loads_LPE: torch.Tensor, active: torch.Tensor) -> None:
        """Move every MoE layer's routing bias from the loads `losses` returned."""
        for moe, load in zip(self.moe_layers(), loads_LPE, strict=True):
            moe.update_bias(load, self.cfg.bias_update_rate, active)

    def forward(self, tokens_PBT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (P, B, T, V) and the per-proxy auxiliary loss (P,)."""
        P, B, T = tokens_PBT.shape
        x, aux_P, _ = self.hidden(tokens_PBT)
        logits = packed_linear(x, self.head).view(P, B, T, -1)
        return logits, aux_P

    def hidden(self, tokens_PBT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last layer's normalised states (P, B*T, D), the auxiliary loss (P,) and the
        tokens each MoE layer's experts took (L, P, E)."""
        P, B, T = tokens_PBT.shape
        if self.vectorised:  # one lookup in the pack's stacked tables
            V = self.cfg.vocab_size
            offsets = torch.arange(P, device=tokens_PBT.device)[:, None, None] * V
            x = F.embedding(tokens_PBT + offsets, self.embed.reshape(P * V, -1))
        else:
            # One lookup per proxy: each proxy's embedding gradient is then summed exactly as
            # it would be alone (a single gather over the pack accumulates in another order).
            x = torch.stack([F.embedding(tokens_PBT[p], self.embed[p]) for p in range(P)])
        aux: list[torch.Tensor] = []
        loads: list[torch.Tensor] = []
        for block in self.blocks:
            x = block(x, aux, loads, self.cfg)
        x = rms_norm(x, self.final_norm[:, None, None, :]).reshape(P, B * T, -1)
        aux_P = torch.stack(aux).sum(0) if aux else x.new_zeros(P)
        loads_LPE = torch.stack(loads) if loads else x.new_zeros(0, P, 0, dtype=torch.long)
        return x, aux_P, loads_LPE

    def losses(self, batch_PBL: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean next-token cross-entropy per proxy (P,) in nats, the auxiliary loss (P,) and
        the MoE layers' loads (L, P, E)."""
        inputs, targets = batch_PBL[..., :-1], batch_PBL[..., 1:]
        x, aux, loads = self.hidden(inputs)
        if self.vectorised:
            P = x.shape[0]
            logits = packed_linear(x, self.head).flatten(0, 1).float()
            ce = F.cross_entropy(logits, targets.reshape(-1), reduction="none")
            return ce.view(P, -1).mean(1), aux, loads
        # One proxy at a time through the output layer: the (tokens x vocabulary) logits of a
        # whole pack are large enough (134 MB for 8 quickstart proxies) that the allocator maps
        # fresh pages for them every step, which made packs slower than single proxies on CPU.
        # On the CPU even one proxy's are (17 MB at 2048 x 2048): there the output layer and
        # the loss are fused and chunked over tokens (proxies/loss.py).
        fused = x.device.type == "cpu"
        ce = torch.stack(
            [
                linear_cross_entropy(x[p], self.head[p], targets[p].reshape(-1))
                if fused
                else F.cross_entropy((x[p] @ self.head[p].T).float(), targets[p].reshape(-1))
                for p in range(x.shape[0])
            ]
        )
        return ce, aux, loads
