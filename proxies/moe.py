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
- "grouped" (an accelerator's, and any compiled step): grouped GEMMs in bf16 over the
  expert-sorted rows (`torch.nn.functional.grouped_mm`; w1 and w3 as one GEMM, then w2), with
  the groups' offsets computed and kept on the device: no host synchronisation, no padding,
  no float32 atomics in the combine, and the same shapes every step, so the step compiles as
  one graph. A pack of more than 1023 experts (CUTLASS's limit) runs as a few GEMMs of whole
  proxies.
- "padded" (an accelerator without grouped GEMM, or widths it cannot take): one batched matmul
  over a buffer padded to the busiest expert's load; reading that load is a host sync, so this
  path runs eager.

Shapes: P pack, N tokens, D width, E experts, k chosen experts, F expert hidden, C capacity,
G = P*E groups, R = P*N*k routed rows.
"""

from __future__ import annotations

from typing import Any, Literal

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
        # routing in float32 even under autocast: bf16 scores (8 bits) would tie and flip
        # the top-k choices of nearby experts
        with torch.autocast(x_PND.device.type, enabled=False):
            logits_PNE = packed_linear(x_PND.float(), self.router.float())
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
        # row r of the routed rows is (token r // k, choice r % k); sorted by global expert,
        # proxy p's rows are exactly p*N*k : (p+1)*N*k (its experts are p*E : (p+1)*E)
        gid_R = (torch.arange(P, device=dev)[:, None, None] * E + top_PNk).reshape(-1)
        order_R = torch.argsort(gid_R, stable=True)
        gate_R = gates_PNk.reshape(-1)
        # (bincount would read the largest id on the host first, on CUDA)
        counts_G = torch.zeros(P * E, dtype=torch.long, device=dev).scatter_add_(
            0, gid_R, torch.ones_like(gid_R)
        )
        impl = self.impl or ("ragged" if dev.type == "cpu" else "padded")
        if impl == "grouped":
            out_PND = _experts_grouped(x_PND, order_R, gate_R, counts_G, self, k)
        else:
            x_flat = x_PND.reshape(P * N, D)
            gid_s, tok_s = gid_R[order_R], order_R // k
            if impl == "ragged":
                out = _experts_ragged(x_flat[tok_s], counts_G.tolist(), self._weights())
            else:
                out = _experts_padded(x_flat, gid_s, tok_s, counts_G, self._weights())
            out_PND = (
                x_flat.new_zeros(P * N, D)
                .index_add(0, tok_s, (out * gate_R[order_R][:, None]).to(x_flat.dtype))
                .view(P, N, D)
            )
        if self.shared is not None:
            out_PND = out_PND + self.shared(x_PND)
        return out_PND, logits_PNE, top_PNk, counts_G.view(P, E).detach()

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """w1, w3 (G, F, D) and w2 (G, D, F) over the pack's G = P*E experts."""
        G, D = self.P * self.E, self.w1.shape[-1]
        return self.w1.reshape(G, -1, D), self.w3.reshape(G, -1, D), self.w2.reshape(G, D, -1)

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
    weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Every expert's SwiGLU on its own tokens (rows of x_sorted in expert order, `counts` per
    expert), one matmul per expert and no padding: on a CPU the padded batch costs the busiest
    expert's load for every expert (over the quickstart proxy's 24 steps the busiest held 1.64x
    the mean load on average: 1.1x at the first steps, up to 2.8x later)."""
    w1, w3, w2 = weights
    outs = []
    start = 0
    for g, n in enumerate(counts):
        if n:
            x = x_sorted[start : start + n]
            h = F.silu(x @ w1[g].T) * (x @ w3[g].T)
            outs.append(h @ w2[g].T)
            start += n
    return torch.cat(outs) if outs else x_sorted.new_zeros(0, w2.shape[1])


MAX_GROUPS = 1023
"""The most groups one grouped GEMM takes: CUTLASS's kernel behind `F.grouped_mm` refuses
1024 or more (`group_count < 1024`)."""


def gemm_chunks(P: int, E: int) -> list[tuple[int, int]]:
    """The proxies [start, stop) of each grouped GEMM a pack of P proxies with E experts each
    runs: whole proxies, at most `MAX_GROUPS` experts per GEMM, as few GEMMs as possible and
    of even sizes."""
    if E > MAX_GROUPS:
        raise ValueError(f"{E} experts per proxy exceed a grouped GEMM's {MAX_GROUPS} groups")
    n = -(-P // (MAX_GROUPS // E))
    per = -(-P // n)
    return [(p, min(P, p + per)) for p in range(0, P, per)]


class _Permute(torch.autograd.Function):
    """Rows x[order] of a permutation `order` (with `inverse` its inverse): the gradient is
    grad[inverse], a gather too (indexing's own backward accumulates with atomics)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> Any:
        ctx.save_for_backward(inverse)
        return x[order]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (inverse,) = ctx.saved_tensors
        return grad[inverse], None, None


def permute_rows(x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = _Permute.apply(x, order, inverse)
    return out


def _experts_grouped(
    x_PND: torch.Tensor,
    order_R: torch.Tensor,
    gate_R: torch.Tensor,
    counts_G: torch.Tensor,
    moe: MoE,
    k: int,
) -> torch.Tensor:
    """The routed experts' output (P, N, D) as grouped GEMMs in bf16 over the expert-sorted
    rows: group g is rows offs[g-1]:offs[g], the offsets a cumulative sum on the device (no
    host sync). The rows are cast to bf16 before they are copied into expert order; w1 and w3
    run as one GEMM of width 2F; a pack of more than `MAX_GROUPS` experts runs as several
    GEMMs of whole proxies (each proxy's rows are a fixed slice, so the split is static). The
    combine gathers each token's k rows back (no scatter, no float32 atomics) and sums them
    with their gates in float32."""
    P, N, D = x_PND.shape
    E = moe.E
    bf = torch.bfloat16
    R = order_R.numel()
    inverse_R = torch.empty_like(order_R).scatter_(
        0, order_R, torch.arange(R, device=order_R.device)
    )
    x_R = x_PND.to(bf).reshape(P * N, 1, D).expand(P * N, k, D).reshape(R, D)
    x_s = permute_rows(x_R, order_R, inverse_R)
    w13 = torch.cat([moe.w1, moe.w3], dim=-2).to(bf)  # (P, E, 2F, D)
    w2 = moe.w2.to(bf)
    F_ = moe.w1.shape[-2]
    rows = N * k  # each proxy's routed rows
    outs = []
    for p0, p1 in gemm_chunks(P, E):
        xs = x_s[p0 * rows : p1 * rows]
        offs = (torch.cumsum(counts_G[p0 * E : p1 * E], 0)).to(torch.int32)
        h = F.grouped_mm(xs, w13[p0:p1].flatten(0, 1).transpose(-2, -1), offs=offs)
        a, b = h[:, :F_], h[:, F_:]
        outs.append(
            F.grouped_mm(F.silu(a) * b, w2[p0:p1].flatten(0, 1).transpose(-2, -1), offs=offs)
        )
    out_s = outs[0] if len(outs) == 1 else torch.cat(outs)
    out_R = permute_rows(out_s, inverse_R, order_R).view(P * N, k, D)
    y = (out_R.float() * gate_R.view(P * N, k, 1)).sum(1)
    return y.to(x_PND.dtype).view(P, N, D)


def _experts_padded(
    x_flat: torch.Tensor,
    gid_s: torch.Tensor,
    tok_s: torch.Tensor,
    counts: torch.Tensor,
    weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """The same, as one batched matmul over a buffer padded to the busiest expert's load
    (G, C, D): one kernel per matmul, for an accelerator without grouped GEMM. Reading C is a
    host sync, so this path is never compiled (`PackedLM.device_layout`). Rows in expert
    order."""
    w1, w3, w2 = weights
    offsets = torch.cumsum(counts, 0) - counts
    pos = torch.arange(gid_s.numel(), device=x_flat.device) - offsets[gid_s]
    C = int(counts.max())
    buf_GCD = x_flat.new_zeros(len(counts), C, x_flat.shape[1])
    buf_GCD[gid_s, pos] = x_flat[tok_s]
    h_GCF = F.silu(packed_linear(buf_GCD, w1)) * packed_linear(buf_GCD, w3)
    return packed_linear(h_GCF, w2)[gid_s, pos]
