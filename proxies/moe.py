"""Mixture-of-experts feed-forward of the Laguna family, packed.

Sigmoid router scores; each token picks its top-k routed experts by score + bias, weighted by
the scores normalised over the chosen k; one (or more) shared expert is always on. Balance
without an auxiliary loss (DeepSeek-V3): after each step, a per-expert bias moves up for
under-loaded experts and down for over-loaded ones; it only affects which experts are picked,
never the weights. An optional sequence-level balance loss and router z-loss are available.

A pack of P proxies with E experts each is one grouped MoE of P*E experts: a token of proxy p
routes only among proxy p's experts. Tokens are sorted by global expert id, and the experts run
one of three ways (`MoE.impl`), none of which ever drops a token:

- "ragged" (the CPU's): each expert multiplies only its own rows; the group sizes are read on
  the host, which costs nothing on a CPU.
- "grouped" (an accelerator's, and any compiled step): one grouped GEMM per matrix
  (`torch.nn.functional.grouped_mm`, bf16) over the expert-sorted rows, with the groups'
  offsets computed and kept on the device: no host synchronisation, no padding, and the same
  shapes every step, so the step compiles as one graph.
- "padded" (an accelerator without grouped GEMM, or widths it cannot take): one batched matmul
  over a buffer padded to the busiest expert's load; reading that load is a host sync.

Shapes: P pack, N tokens, D width, E experts, k chosen experts, F expert hidden, C capacity,
G = P*E groups, R = P*N*k routed rows.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from proxies.layers import SwiGLU, packed_linear

Impl = Literal["ragged", "grouped", "padded"]


def grouped_gemm_ok(device: torch.device, *widths: int) -> bool:
    """Whether the grouped GEMM serves these widths here: bf16 rows of 16-byte multiples, on
    a CPU (torch's reference kernel) or a CUDA device of compute capability 8.0 or more."""
    if not hasattr(F, "grouped_mm") or any(w % 8 for w in widths):
        return False
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    return device.type == "cpu"


class MoE(nn.Module):
    bias: torch.Tensor
    """Per-expert routing bias (P, E), moved by `update_bias`; it only affects selection."""

    def __init__(
        self, P: int, D: int, E: int, k: int, F_: int, n_shared: int, route_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.P, self.E, self.k, self.route_scale = P, E, k, route_scale
        self.router = nn.Parameter(torch.empty(P, E, D))
        self.w1 = nn.Parameter(torch.empty(P, E, F_, D))
        self.w3 = nn.Parameter(torch.empty(P, E, F_, D))
        self.w2 = nn.Parameter(torch.empty(P, E, D, F_))
        self.shared = SwiGLU(P, D, F_ * n_shared) if n_shared else None
        self.register_buffer("bias", torch.zeros(P, E))
        self.impl: Impl | None = None
        """How the experts run (see the module's text); None: ragged on a CPU, else padded."""

    def route(self, x_PND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits_PNE = packed_linear(x_PND, self.router)
        scores_PNE = torch.sigmoid(logits_PNE)
        _, top_PNk = (scores_PNE + self.bias[:, None, :]).topk(self.k, dim=-1)
        gates_PNk = scores_PNE.gather(-1, top_PNk)
        gates_PNk = gates_PNk / gates_PNk.sum(-1, keepdim=True) * self.route_scale
        return logits_PNE, top_PNk, gates_PNk

    def forward(
        self, x_PND: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The output (P, N, D), the router logits (P, N, E), the choices (P, N, k) and the
        tokens routed to each expert (P, E), on the device (for `update_bias`)."""
        P, N, D = x_PND.shape
        E, k = self.E, self.k
        logits_PNE, top_PNk, gates_PNk = self.route(x_PND)
        dev = x_PND.device
        gid_R = (torch.arange(P, device=dev)[:, None, None] * E + top_PNk).reshape(-1)
        tok_R = (
            (
                torch.arange(P, device=dev)[:, None, None] * N
                + torch.arange(N, device=dev)[None, :, None]
            )
            .expand(P, N, k)
            .reshape(-1)
        )
        order = torch.argsort(gid_R, stable=True)
        gid_s, tok_s = gid_R[order], tok_R[order]
        gate_s = gates_PNk.reshape(-1)[order]
        # (bincount would read the largest id on the host first, on CUDA)
        counts_G = torch.zeros(P * E, dtype=torch.long, device=dev).scatter_add_(
            0, gid_R, torch.ones_like(gid_R)
        )
        x_flat = x_PND.reshape(P * N, D)
        w1 = self.w1.reshape(P * E, -1, D)
        w3 = self.w3.reshape(P * E, -1, D)
        w2 = self.w2.reshape(P * E, D, -1)
        impl = self.impl or ("ragged" if dev.type == "cpu" else "padded")
        if impl == "ragged":
            out = _experts_ragged(x_flat[tok_s], counts_G.tolist(), w1, w3, w2)
        elif impl == "grouped":
            out = _experts_grouped(x_flat[tok_s], counts_G, w1, w3, w2)
        else:
            out = _experts_padded(x_flat, gid_s, tok_s, counts_G, w1, w3, w2)
        y_flat = x_flat.new_zeros(P * N, D).index_add(
            0, tok_s, (out * gate_s[:, None]).to(x_flat.dtype)
        )
        y_PND = y_flat.view(P, N, D)
        if self.shared is not None:
            y_PND = y_PND + self.shared(x_PND)
        return y_PND, logits_PNE, top_PNk, counts_G.view(P, E).detach()

    @torch.no_grad()
    def update_bias(
        self, load_PE: torch.Tensor, rate: float, active: torch.Tensor | None = None
    ) -> None:
        """Nudge each proxy's per-expert bias toward uniform load (sign of the deficit), from
        the tokens each expert took (`forward`'s last output, summed over micro-batches)."""
        if rate == 0:
            return
        load = load_PE.float()
        step = rate * torch.sign(load.mean(-1, keepdim=True) - load)
        if active is not None:
            step = step * active[:, None]
        self.bias.add_(step)

    def balance_loss(self, logits_PNE: torch.Tensor, top_PNk: torch.Tensor) -> torch.Tensor:
        """Sequence-level balance loss per proxy: E * sum_e f_e * p_e (1 when uniform)."""
        scores = torch.sigmoid(logits_PNE)
        p = (scores / scores.sum(-1, keepdim=True)).mean(1)
        f = F.one_hot(top_PNk, self.E).sum(2).float().mean(1) / self.k
        return self.E * (f * p).sum(-1)


def _experts_ragged(
    x_sorted: torch.Tensor,
    counts: list[int],
    w1: torch.Tensor,
    w3: torch.Tensor,
    w2: torch.Tensor,
) -> torch.Tensor:
    """Every expert's SwiGLU on its own tokens (rows of x_sorted in expert order, `counts` per
    expert), one matmul per expert and no padding: on a CPU the padded batch costs the busiest
    expert's load for every expert (over the quickstart proxy's 24 steps the busiest held 1.64x
    the mean load on average: 1.1x at the first steps, up to 2.8x later)."""
    outs = []
    start = 0
    for g, n in enumerate(counts):
        if n:
            x = x_sorted[start : start + n]
            h = F.silu(x @ w1[g].T) * (x @ w3[g].T)
            outs.append(h @ w2[g].T)
            start += n
    return torch.cat(outs) if outs else x_sorted.new_zeros(0, w2.shape[1])


def _experts_grouped(
    x_sorted: torch.Tensor,
    counts_G: torch.Tensor,
    w1: torch.Tensor,
    w3: torch.Tensor,
    w2: torch.Tensor,
) -> torch.Tensor:
    """The same as one grouped GEMM per matrix in bf16: group g is rows offs[g-1]:offs[g] of
    the expert-sorted rows, the offsets a cumulative sum on the device (no host sync)."""
    offs = torch.cumsum(counts_G, 0).to(torch.int32)
    bf = torch.bfloat16
    x = x_sorted.to(bf)
    a = F.grouped_mm(x, w1.to(bf).transpose(-2, -1), offs=offs)
    b = F.grouped_mm(x, w3.to(bf).transpose(-2, -1), offs=offs)
    return F.grouped_mm(F.silu(a) * b, w2.to(bf).transpose(-2, -1), offs=offs)


def _experts_padded(
    x_flat: torch.Tensor,
    gid_s: torch.Tensor,
    tok_s: torch.Tensor,
    counts: torch.Tensor,
    w1: torch.Tensor,
    w3: torch.Tensor,
    w2: torch.Tensor,
) -> torch.Tensor:
    """The same, as one batched matmul over a buffer padded to the busiest expert's load
    (G, C, D): one kernel per matmul, for an accelerator without grouped GEMM. Reading C is a
    host sync. Rows in expert order."""
    offsets = torch.cumsum(counts, 0) - counts
    pos = torch.arange(gid_s.numel(), device=x_flat.device) - offsets[gid_s]
    C = int(counts.max())
    buf_GCD = x_flat.new_zeros(len(counts), C, x_flat.shape[1])
    buf_GCD[gid_s, pos] = x_flat[tok_s]
    h_GCF = F.silu(packed_linear(buf_GCD, w1)) * packed_linear(buf_GCD, w3)
    return packed_linear(h_GCF, w2)[gid_s, pos]
