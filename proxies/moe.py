"""Mixture-of-experts feed-forward of the Laguna family, packed.

Sigmoid router scores; each token picks its top-k routed experts by score + bias, weighted by
the scores normalised over the chosen k; one (or more) shared expert is always on. Balance
without an auxiliary loss (DeepSeek-V3): after each step, a per-expert bias moves up for
under-loaded experts and down for over-loaded ones; it only affects which experts are picked,
never the weights. An optional sequence-level balance loss and router z-loss are available.

A pack of P proxies with E experts each is one grouped MoE of P*E experts: a token of proxy p
routes only among proxy p's experts. Tokens are sorted by global expert id; on an accelerator
they go into a padded buffer (P*E, C, D) so that all experts run as one batched matmul (C = the
busiest expert's load), on a CPU each expert multiplies only its own rows. No token is ever
dropped.

Shapes: P pack, N tokens, D width, E experts, k chosen experts, F expert hidden, C capacity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from proxies.layers import SwiGLU, packed_linear


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
        self.last_load: torch.Tensor | None = None
        """Tokens routed to each expert in the last forward, (P, E)."""

    def route(self, x_PND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits_PNE = packed_linear(x_PND, self.router)
        scores_PNE = torch.sigmoid(logits_PNE)
        _, top_PNk = (scores_PNE + self.bias[:, None, :]).topk(self.k, dim=-1)
        gates_PNk = scores_PNE.gather(-1, top_PNk)
        gates_PNk = gates_PNk / gates_PNk.sum(-1, keepdim=True) * self.route_scale
        return logits_PNE, top_PNk, gates_PNk

    def forward(self, x_PND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The output (P, N, D), the router logits (P, N, E) and the choices (P, N, k)."""
        P, N, D = x_PND.shape
        E, k = self.E, self.k
        logits_PNE, top_PNk, gates_PNk = self.route(x_PND)
        dev = x_PND.device
        gid = (torch.arange(P, device=dev)[:, None, None] * E + top_PNk).reshape(-1)
        tok = (
            (
                torch.arange(P, device=dev)[:, None, None] * N
                + torch.arange(N, device=dev)[None, :, None]
            )
            .expand(P, N, k)
            .reshape(-1)
        )
        order = torch.argsort(gid, stable=True)
        gid_s, tok_s = gid[order], tok[order]
        gate_s = gates_PNk.reshape(-1)[order]
        counts = torch.bincount(gid, minlength=P * E)
        self.last_load = counts.view(P, E).detach()
        x_flat = x_PND.reshape(P * N, D)
        w1 = self.w1.reshape(P * E, -1, D)
        w3 = self.w3.reshape(P * E, -1, D)
        w2 = self.w2.reshape(P * E, D, -1)
        if x_PND.device.type == "cpu":
            out = _experts_ragged(x_flat[tok_s], counts.tolist(), w1, w3, w2)
        else:
            out = _experts_padded(x_flat, gid_s, tok_s, counts, w1, w3, w2)
        y_flat = x_flat.new_zeros(P * N, D).index_add(0, tok_s, out * gate_s[:, None])
        y_PND = y_flat.view(P, N, D)
        if self.shared is not None:
            y_PND = y_PND + self.shared(x_PND)
        return y_PND, logits_PNE, top_PNk

    @torch.no_grad()
    def update_bias(self, rate: float, active: torch.Tensor | None = None) -> None:
        """Nudge each proxy's per-expert bias toward uniform load (sign of the deficit)."""
        if self.last_load is None or rate == 0:
            return
        load = self.last_load.float()
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
    (G, C, D): one kernel per matmul, what an accelerator wants. Rows in expert order."""
    offsets = torch.cumsum(counts, 0) - counts
    pos = torch.arange(gid_s.numel(), device=x_flat.device) - offsets[gid_s]
    C = int(counts.max())
    buf_GCD = x_flat.new_zeros(len(counts), C, x_flat.shape[1])
    buf_GCD[gid_s, pos] = x_flat[tok_s]
    h_GCF = F.silu(packed_linear(buf_GCD, w1)) * packed_linear(buf_GCD, w3)
    return packed_linear(h_GCF, w2)[gid_s, pos]
