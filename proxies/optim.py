"""Optimisers for packed proxies: Muon for hidden matrices, AdamW for the rest.

Both work on parameters with a leading pack axis and take a per-proxy learning-rate scale, so a
failed proxy of a pack (scale 0) stops changing while the others go on, and a learning-rate
multiplier (the schedule) that may be a tensor on the device: with their states made up front
(`init_state`) and AdamW's step count a tensor, a step is the same graph every time and
compiles once. `BatchedMuon` applies
`torch.optim.Muon`'s update to every matrix of a stacked parameter (the last two axes are one
matrix: each proxy's, each expert's), the Newton-Schulz iterations of all parameters of one
matrix shape stacked into one batch; `BatchedAdamW` is `torch.optim.AdamW`'s update. Tests
check both against the torch optimisers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def split_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(Muon parameters, AdamW parameters). Muon takes the hidden matrices: attention
    projections and every expert's and shared expert's matrices. AdamW takes embeddings, head,
    norms and routers. Every parameter lands in exactly one group."""
    muon: list[nn.Parameter] = []
    adamw: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        hidden = leaf in ("wq", "wk", "wv", "wo", "w1", "w2", "w3") and p.ndim >= 3
        (muon if hidden else adamw).append(p)
    ids = [id(p) for p in muon + adamw]
    every = [id(p) for p in model.parameters()]
    assert sorted(ids) == sorted(every) and len(set(ids)) == len(ids), (
        "every parameter must land in exactly one optimiser group"
    )
    return muon, adamw


def newton_schulz(
    G: torch.Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16
) -> torch.Tensor:
    """Orthogonalise each matrix of G (..., m, n) as torch.optim.Muon does, batched."""
    return newton_schulz_stacked([G], steps, eps, dtype)[0]


def newton_schulz_stacked(
    Gs: list[torch.Tensor], steps: int = 5, eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16
) -> list[torch.Tensor]:
    """`newton_schulz` of every tensor of Gs, with the matrices of the same shape (a tall one
    transposed first, as torch.optim.Muon does) stacked into one batch: a few batched products
    per iteration for a whole model instead of a few per parameter."""
    oriented = []
    for G in Gs:
        X = G.to(dtype).reshape(-1, *G.shape[-2:])
        oriented.append(X.transpose(-2, -1) if X.shape[-2] > X.shape[-1] else X)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, X in enumerate(oriented):
        by_shape.setdefault((X.shape[-2], X.shape[-1]), []).append(i)
    out: list[torch.Tensor] = list(Gs)
    a, b, c = NS_COEFFICIENTS
    for members in by_shape.values():
        X = torch.cat([oriented[i] for i in members]) if len(members) > 1 else oriented[members[0]]
        X = X / X.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
        for _ in range(steps):  # fused multiply-adds, as torch.optim.Muon's addmm
            A = X @ X.transpose(-2, -1)
            B = torch.baddbmm(A, A, A, beta=b, alpha=c)
            X = torch.baddbmm(X, B, X, beta=a)
        parts = X.split([oriented[i].shape[0] for i in members])
        for i, part in zip(members, parts, strict=True):
            G = Gs[i]
            tall = G.shape[-2] > G.shape[-1]
            out[i] = (part.transpose(-2, -1) if tall else part).reshape(G.shape)
    return out


class _Optimizer(torch.optim.Optimizer):
    """torch's Optimizer, its parameter groups added without its TorchDynamo guard: torch wraps
    `add_param_group` so that a compiled step never traces it, and the wrapper imports
    torch._dynamo on first use, about 1 s in every fresh worker process. Groups are added
    before any compiled step runs."""

    def add_param_group(self, param_group: dict) -> None:
        plain = getattr(torch.optim.Optimizer.add_param_group, "__wrapped__", None)
        if plain is None:  # a torch without the wrapper
            super().add_param_group(param_group)
        else:
            plain(self, param_group)

    def _new_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state[p]
        if not state:
            state.update(self._new_state(p))
        return state

    @torch.no_grad()
    def init_state(self) -> None:
        """Make every parameter's state now (a compiled step then only updates it)."""
        for group in self.param_groups:
            for p in group["params"]:
                self._state(p)


def _scale(scale: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """A per-proxy scale (P,) shaped to broadcast against a packed parameter."""
    return scale.view(-1, *([1] * (p.ndim - 1)))


def _per_proxy(
    factor: float | torch.Tensor, proxy_scale: torch.Tensor | None, params: list[torch.Tensor]
) -> list[Any]:
    """`factor` x each proxy's scale, shaped for each parameter (one factor when unscaled)."""
    if proxy_scale is None:
        return [factor] * len(params)
    scaled = proxy_scale * factor
    return [_scale(scaled, p) for p in params]


def _decay_(
    params: list[torch.Tensor],
    lr: float | torch.Tensor,
    decay: float,
    proxy_scale: torch.Tensor | None,
) -> None:
    """Decoupled weight decay in place, p *= 1 - lr * decay (scaled per proxy); nothing at
    decay 0."""
    if not decay:
        return
    rates = _per_proxy(lr * decay, proxy_scale, params)
    torch._foreach_mul_(params, [1 - r for r in rates])


class BatchedMuon(_Optimizer):
    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 0.02,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_dtype: torch.dtype | None = None,
    ) -> None:
        """`ns_dtype`: precision of the Newton-Schulz iteration; by default bfloat16 on a GPU
        (as torch.optim.Muon) and float32 on a CPU, where bfloat16 matmuls are ~40x slower."""
        super().__init__(
            params,
            {
                "lr": lr,
                "weight_decay": weight_decay,
                "momentum": momentum,
                "nesterov": nesterov,
                "ns_steps": ns_steps,
                "ns_dtype": ns_dtype,
            },
        )

    def _new_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"momentum_buffer": torch.zeros_like(p)}

    @torch.no_grad()
    def step(  # type: ignore[override]
        self,
        closure: None = None,
        proxy_scale: torch.Tensor | None = None,
        lr_mult: float | torch.Tensor = 1.0,
    ) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = [self._state(p)["momentum_buffer"] for p in params]
            torch._foreach_lerp_(bufs, grads, 1 - group["momentum"])
            nesterov = group["nesterov"]
            updates = torch._foreach_lerp(grads, bufs, group["momentum"]) if nesterov else bufs
            dtype = group["ns_dtype"] or (torch.bfloat16 if params[0].is_cuda else torch.float32)
            orthogonal = newton_schulz_stacked(list(updates), group["ns_steps"], dtype=dtype)
            lr = group["lr"] * lr_mult
            _decay_(params, lr, group["weight_decay"], proxy_scale)
            for p, update in zip(params, orthogonal, strict=True):  # one temporary at a time
                rows, cols = p.shape[-2:]
                adjusted = lr * math.sqrt(max(1.0, rows / cols))
                factor = adjusted if proxy_scale is None else adjusted * _scale(proxy_scale, p)
                p.sub_(update.to(p.dtype) * factor)


class BatchedAdamW(_Optimizer):
    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    def _new_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        # the step count is a tensor beside the parameter (as torch's `capturable`): the
        # bias corrections are then computed on the device, the same graph every step
        return {
            "step": torch.zeros((), dtype=torch.float32, device=p.device),
            "exp_avg": torch.zeros_like(p),
            "exp_avg_sq": torch.zeros_like(p),
        }

    @torch.no_grad()
    def step(  # type: ignore[override]
        self,
        closure: None = None,
        proxy_scale: torch.Tensor | None = None,
        lr_mult: float | torch.Tensor = 1.0,
    ) -> None:
        for group in self.param_groups:
            b1, b2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            states = [self._state(p) for p in params]
            t = [st["step"] for st in states]
            m = [st["exp_avg"] for st in states]
            v = [st["exp_avg_sq"] for st in states]
            torch._foreach_add_(t, 1)
            torch._foreach_lerp_(m, grads, 1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
            lr = group["lr"] * lr_mult
            # bias corrections on the device: 1 - b^t of each parameter's step count
            bc1 = [1 - x for x in torch._foreach_pow(b1, t)]
            bc2 = torch._foreach_sqrt([1 - x for x in torch._foreach_pow(b2, t)])
            # the step m / (sqrt(v) / sqrt(bc2) + eps), made in one set of temporaries
            steps = torch._foreach_sqrt(v)
            torch._foreach_div_(steps, bc2)
            torch._foreach_add_(steps, group["eps"])
            torch._foreach_reciprocal_(steps)
            torch._foreach_mul_(steps, m)
            _decay_(params, lr, group["weight_decay"], proxy_scale)
            rates = _per_proxy(lr, proxy_scale, params)
            torch._foreach_mul_(steps, [r / c for r, c in zip(rates, bc1, strict=True)])
            torch._foreach_sub_(params, steps)


@torch.no_grad()
def clip_per_proxy(params: Iterable[nn.Parameter], max_norm: float, P: int) -> torch.Tensor:
    """Clip each proxy's gradient to `max_norm` separately; returns the norms before (P,)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(P)
    norms_GP = torch.stack([torch.linalg.vector_norm(g.reshape(P, -1), dim=1) for g in grads])
    norms = norms_GP.pow(2).sum(0).sqrt()
    factor = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [_scale(factor, g) for g in grads])
    return norms


def lr_multiplier(
    step: int,
    total: int,
    warmup_fraction: float,
    schedule: str,
    final: float = 0.1,
    decay_fraction: float = 0.2,
    decay_start: int | None = None,
) -> float:
    """The learning rate's multiplier at `step` (0-based) of `total` steps: a warmup times a decay.

    Warmup is linear over the first `warmup_fraction` of the steps, not rounded to whole steps
    (w = warmup_fraction * total; step i runs at min(1, (i + 1) / w)), so a 24-step proxy and a
    96-step validation model warm up over the same share of their tokens. The decay is cosine
    from the end of warmup, or warmup-stable-decay: 1 until step d (`decay_start`, else the last
    `decay_fraction` of the steps; with training phases the last phase's first step), then
    linear, step i at 1 - (1 - final) (i + 1 - d) / (total - d): the first decay step already
    below the peak, the last step exactly at `final`. Cosine ends exactly at `final` too."""
    if schedule not in ("cosine", "wsd"):
        raise ValueError(f"unknown schedule '{schedule}' (cosine or wsd)")
    w = total * warmup_fraction
    warm = min(1.0, (step + 1) / w) if w > 0 else 1.0
    if schedule == "cosine":
        progress = min(1.0, max(0.0, (step + 1 - w) / max(total - w, 1e-9)))
        return warm * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))
    d = int(total * (1 - decay_fraction)) if decay_start is None else decay_start
    if step < d:
        return warm
    return warm * (1.0 - (1.0 - final) * (step + 1 - d) / max(1, total - d))
