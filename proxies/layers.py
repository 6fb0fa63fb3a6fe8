"""Layers of the packed proxy transformer. Every weight has a leading pack axis P: proxy p only
ever touches slice p, so a pack of P models computes what P separate models would.

Shapes: P pack, B batch, T time, N = B*T tokens, D model width, H query heads, K key/value
heads, S head size, F hidden width, V vocabulary. Weights follow nn.Linear: (..., out, in).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def packed_linear(x_PND: torch.Tensor, w_POD: torch.Tensor) -> torch.Tensor:
    """x @ w^T for every proxy at once: (P, N, D) x (P, O, D) -> (P, N, O)."""
    return torch.bmm(x_PND, w_POD.transpose(1, 2))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last axis; `weight` broadcasts against x (it carries the P axis, so it
    is applied after torch's fused normalisation, which wants one weight of the last axis)."""
    return F.rms_norm(x, (x.shape[-1],), None, eps) * weight


class Rotary(nn.Module):
    """Rotary position embeddings with their own base (local and global layers differ)."""

    inv_freq: torch.Tensor

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        self.register_buffer("inv_freq", inv.float(), persistent=False)
        self._cache: tuple[int, torch.device, torch.Tensor, torch.Tensor] | None = None

    def cos_sin(self, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.compiler.is_compiling():  # a compiled graph makes them in place, uncached
            freqs = torch.outer(torch.arange(T, device=device, dtype=torch.float32), self.inv_freq)
            return freqs.cos(), freqs.sin()
        if self._cache is None or self._cache[0] < T or self._cache[1] != device:
            t = torch.arange(T, device=device, dtype=torch.float32)
            freqs = torch.outer(t, self.inv_freq.to(device))
            self._cache = (T, device, freqs.cos(), freqs.sin())
        return self._cache[2][:T], self._cache[3][:T]

    def forward(self, x_XTS: torch.Tensor) -> torch.Tensor:
        cos, sin = self.cos_sin(x_XTS.shape[-2], x_XTS.device)
        x1, x2 = x_XTS.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def sliding_window_mask(T: int, window: int, device: torch.device) -> torch.Tensor:
    """(T, T) boolean mask, True where query i may attend to key j: j <= i and i - j < window."""
    i = torch.arange(T, device=device)[:, None]
    j = torch.arange(T, device=device)[None, :]
    return (j <= i) & (i - j < window)


def sliding_window_blocks(T: int, window: int, device: torch.device) -> Any:
    """The same mask as FlexAttention's block mask: blocks wholly outside the window are never
    computed (the dense mask computes every score and then discards most of them)."""
    from torch.nn.attention.flex_attention import create_block_mask

    def inside(_b: Any, _h: Any, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        return (kv <= q) & (q - kv < window)

    return create_block_mask(inside, None, None, T, T, device=device)


class Attention(nn.Module):
    """Grouped-query attention with QK-norm and rotary embeddings, global or sliding-window."""

    def __init__(
        self, P: int, D: int, H: int, K: int, window: int | None, rope_base: float
    ) -> None:
        super().__init__()
        S = D // H
        self.H, self.K, self.S, self.window = H, K, S, window
        self.wq = nn.Parameter(torch.empty(P, H * S, D))
        self.wk = nn.Parameter(torch.empty(P, K * S, D))
        self.wv = nn.Parameter(torch.empty(P, K * S, D))
        self.wo = nn.Parameter(torch.empty(P, D, H * S))
        self.q_norm = nn.Parameter(torch.ones(P, S))
        self.k_norm = nn.Parameter(torch.ones(P, S))
        self.rotary = Rotary(S, rope_base)
        self.blocks: Any = None
        """FlexAttention's block mask for the sliding window (`use_blocks`); None: SDPA."""

    def use_blocks(self, T: int, device: torch.device) -> None:
        """Run the sliding window through FlexAttention at sequence length T in compiled
        graphs (eager calls, such as the evaluation's, keep SDPA with the mask). Global layers
        keep SDPA's causal kernel."""
        if self.window is not None and self.window < T:
            self.blocks = sliding_window_blocks(T, self.window, device)

    def forward(self, x_PBTD: torch.Tensor) -> torch.Tensor:
        P, B, T, D = x_PBTD.shape
        x_PND = x_PBTD.reshape(P, B * T, D)
        q = packed_linear(x_PND, self.wq).view(P, B, T, self.H, self.S)
        k = packed_linear(x_PND, self.wk).view(P, B, T, self.K, self.S)
        v = packed_linear(x_PND, self.wv).view(P, B, T, self.K, self.S)
        q = rms_norm(q, self.q_norm[:, None, None, None, :])
        k = rms_norm(k, self.k_norm[:, None, None, None, :])
        # (P, B, T, H, S) -> (P*B, H, T, S)
        q_XHTS = self.rotary(q.permute(0, 1, 3, 2, 4).reshape(P * B, self.H, T, self.S))
        k_XKTS = self.rotary(k.permute(0, 1, 3, 2, 4).reshape(P * B, self.K, T, self.S))
        v_XKTS = v.permute(0, 1, 3, 2, 4).reshape(P * B, self.K, T, self.S)
        # each key/value head serves H / K query heads inside the kernel (no repeated copies)
        gqa = self.K != self.H
        flex = self.blocks is not None and self.blocks.seq_lengths == (T, T)
        if flex and torch.compiler.is_compiling():  # eager FlexAttention is a slow reference
            from torch.nn.attention.flex_attention import flex_attention

            dt = v_XKTS.dtype  # under autocast the normed q and k come out in float32
            y = flex_attention(
                q_XHTS.to(dt), k_XKTS.to(dt), v_XKTS, block_mask=self.blocks, enable_gqa=gqa
            )
        elif self.window is None or self.window >= T:
            y = F.scaled_dot_product_attention(
                q_XHTS, k_XKTS, v_XKTS, is_causal=True, enable_gqa=gqa
            )
        else:
            mask = sliding_window_mask(T, self.window, x_PBTD.device)
            y = F.scaled_dot_product_attention(
                q_XHTS, k_XKTS, v_XKTS, attn_mask=mask, enable_gqa=gqa
            )
        y_PND = y.view(P, B, self.H, T, self.S).permute(0, 1, 3, 2, 4).reshape(P, B * T, -1)
        return packed_linear(y_PND, self.wo).view(P, B, T, D)


class SwiGLU(nn.Module):
    """A dense SwiGLU feed-forward (the shared expert, or the dense variant's FFN)."""

    def __init__(self, P: int, D: int, F_: int) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(P, F_, D))
        self.w3 = nn.Parameter(torch.empty(P, F_, D))
        self.w2 = nn.Parameter(torch.empty(P, D, F_))

    def forward(self, x_PND: torch.Tensor) -> torch.Tensor:
        h = F.silu(packed_linear(x_PND, self.w1)) * packed_linear(x_PND, self.w3)
        return packed_linear(h, self.w2)


def init_packed(module: nn.Module, seeds: list[int], std: float, n_layers: int) -> None:
    """Initialise every parameter slice p from its own generator, seeded by (seeds[p], name):
    proxy p of a pack starts exactly where a single model with seed seeds[p] starts."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "norm" in name:
                param.fill_(1.0)
                continue
            scale = std / math.sqrt(2 * n_layers) if name.endswith(("wo", "w2")) else std
            for p, seed in enumerate(seeds):
                g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
                slice_ = torch.empty(param.shape[1:], dtype=torch.float32)
                slice_.normal_(0.0, scale, generator=g)
                param[p].copy_(slice_)
