"""A pack of Laguna-style proxy language models: P decoder-only transformers in one module.

Features: RMSNorm; rotary embeddings with separate bases for local and global layers;
grouped-query attention with QK-norm; sliding-window and global attention interleaved 3:1;
sigmoid-routed top-k MoE feed-forward with a shared expert and auxiliary-loss-free balancing
(optional balance and z-losses), or a dense SwiGLU for comparison. Every weight has a leading
pack axis P, so P=1 is a single proxy and a pack trains P independent proxies in one process.

Shapes: P pack, B batch, T time, N = B*T, D width, V vocabulary.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from proxies.layers import Attention, SwiGLU, init_packed, packed_linear, rms_norm
from proxies.loss import linear_cross_entropy, packed_cross_entropy
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
        self.aux_loss_coef, self.z_loss_coef = cfg.aux_loss_coef, cfg.z_loss_coef

    def forward(self, x_PBTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block's output (P, B, T, D), its auxiliary loss (P,) and the tokens its experts
        took (P, E) (empty for a dense block). Tensors in and out only: the same compiled
        code serves every block of the same kind (`PackedLM.compile_regions`)."""
        P, B, T, D = x_PBTD.shape
        x_PBTD = x_PBTD + self.attn(rms_norm(x_PBTD, self.attn_norm[:, None, None, :]))
        h_PND = rms_norm(x_PBTD, self.ffn_norm[:, None, None, :]).reshape(P, B * T, D)
        aux_P = x_PBTD.new_zeros(P, dtype=torch.float32)
        if isinstance(self.ffn, MoE):
            y, logits, top, load_PE = self.ffn(h_PND)
            if self.aux_loss_coef:
                aux_P = aux_P + self.aux_loss_coef * self.ffn.balance_loss(logits, top)
            if self.z_loss_coef:
                aux_P = aux_P + self.z_loss_coef * torch.logsumexp(logits, -1).pow(2).mean(1)
        else:
            y = self.ffn(h_PND)
            load_PE = torch.zeros(P, 0, dtype=torch.long, device=x_PBTD.device)
        return x_PBTD + y.view(P, B, T, D), aux_P, load_PE


def _quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` without two warnings TorchDynamo raises about itself while it traces (torch
    2.13): it reads `.grad` of an input that is not a leaf (a region's input is the previous
    region's output), and it instantiates the custom autograd functions it traces."""

    def call(*args: Any) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is")
            warnings.filterwarnings("ignore", message=".*should not be instantiated")
            return fn(*args)

    return call


def _run_block(block: Block, x_PBTD: torch.Tensor) -> tuple[torch.Tensor, ...]:
    out: tuple[torch.Tensor, ...] = block(x_PBTD)
    return out


def _run_head(model: PackedLM, x_PND: torch.Tensor, targets_PN: torch.Tensor) -> torch.Tensor:
    """The final norm, the output layer and the loss of the whole pack (P,)."""
    x_PND = rms_norm(x_PND, model.final_norm[:, None, :])
    return packed_cross_entropy(x_PND, model.head, targets_PN)


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
        self._block_call: Callable[..., Any] = _run_block
        self._head_call: Callable[..., Any] = _run_head

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

    def compilable(self) -> bool:
        """Whether the step can compile as whole graphs: no expert layer on the padded path
        (whose capacity is read on the host)."""
        return all(moe.impl == "grouped" for moe in self.moe_layers())

    def update_bias(self, loads_LPE: torch.Tensor, active: torch.Tensor) -> None:
        """Move every MoE layer's routing bias from the loads `losses` returned."""
        for moe, load in zip(self.moe_layers(), loads_LPE, strict=True):
            moe.update_bias(load, self.cfg.bias_update_rate, active)

    def compile_regions(self) -> None:
        """Compile the step by regions (as torchtitan does): one compiled block, whose code
        every block of the same kind reuses (a sliding-window and a global one: two graphs
        whatever the depth), and the final norm with the fused output layer and loss; both
        with `fullgraph=True` and static shapes. `losses(..., compiled=True)` runs them; the
        evaluation's calls stay eager."""
        self._block_call = _quiet(torch.compile(_run_block, fullgraph=True, dynamic=False))
        self._head_call = _quiet(torch.compile(_run_head, fullgraph=True, dynamic=False))

    def forward(self, tokens_PBT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (P, B, T, V) and the per-proxy auxiliary loss (P,)."""
        P, B, T = tokens_PBT.shape
        x, aux_P, _ = self.trunk(tokens_PBT)
        x = rms_norm(x, self.final_norm[:, None, :])
        logits = packed_linear(x, self.head).view(P, B, T, -1)
        return logits, aux_P

    def trunk(
        self, tokens_PBT: torch.Tensor, compiled: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last block's states (P, B*T, D) before the final norm, the auxiliary loss (P,)
        and the tokens each MoE layer's experts took (L, P, E)."""
        P, B, T = tokens_PBT.shape
        if self.vectorised:  # one lookup in the pack's stacked tables
            V = self.cfg.vocab_size
            offsets = torch.arange(P, device=tokens_PBT.device)[:, None, None] * V
            x = F.embedding(tokens_PBT + offsets, self.embed.reshape(P * V, -1))
        else:
            # One lookup per proxy: each proxy's embedding gradient is then summed exactly as
            # it would be alone (a single gather over the pack accumulates in another order).
            x = torch.stack([F.embedding(tokens_PBT[p], self.embed[p]) for p in range(P)])
        run = self._block_call if compiled else _run_block
        aux: list[torch.Tensor] = []
        loads: list[torch.Tensor] = []
        for block in self.blocks:
            x, aux_P, load_PE = run(block, x)  # type: ignore[arg-type]
            aux.append(aux_P)
            loads.append(load_PE)
        aux_P = torch.stack(aux).sum(0)
        loads_LPE = x.new_zeros(0, P, 0, dtype=torch.long) if self.cfg.dense else torch.stack(loads)
        return x.reshape(P, B * T, -1), aux_P, loads_LPE

    def losses(
        self, batch_PBL: torch.Tensor, compiled: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean next-token cross-entropy per proxy (P,) in nats, the auxiliary loss (P,) and
        the MoE layers' loads (L, P, E); `compiled`: through `compile_regions`' code."""
        inputs, targets = batch_PBL[..., :-1], batch_PBL[..., 1:]
        x, aux, loads = self.trunk(inputs, compiled)
        P = x.shape[0]
        if self.vectorised:  # the whole pack's output layer and loss, fused and chunked
            head = self._head_call if compiled else _run_head
            return head(self, x, targets.reshape(P, -1)), aux, loads
        # One proxy at a time through the output layer (fused and chunked over tokens too,
        # proxies/loss.py): the (tokens x vocabulary) logits of a whole pack are large enough
        # (134 MB for 8 quickstart proxies) that the allocator maps fresh pages for them every
        # step, which made packs slower than single proxies on CPU.
        x = rms_norm(x, self.final_norm[:, None, :])
        ce = torch.stack(
            [linear_cross_entropy(x[p], self.head[p], targets[p].reshape(-1)) for p in range(P)]
        )
        return ce, aux, loads
