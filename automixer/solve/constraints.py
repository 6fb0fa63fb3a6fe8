"""The feasible set of mixtures: the simplex cut by per-domain bounds, repetition caps and floors,
plus an optional penalty toward the natural mixture.

Repetition cap: the full run may repeat domain d at most `max_epochs` times, so
w_d <= max_epochs * tokens_d / target_tokens.

Floor: w_d >= natural_floor * natural_d (below its cap). A proxy sweep barely punishes dropping
a domain that a larger model needs (a 49k-token proxy learns little code either way), so by
default no domain goes below a quarter of its natural share unless its bounds say so.

Penalties (strength `prior_penalty`, off by default): "reverse_kl" is KL(natural || w), which
grows without bound as a domain of the natural mixture goes to zero; "kl" is KL(w || natural),
which gives a dropped domain no penalty at all; "l1" is the total-variation distance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from automixer.errors import AutomixerError

EPS = 1e-12
PENALTIES = ("reverse_kl", "kl", "l1")


@dataclass(frozen=True)
class Constraints:
    domains: list[str]
    lower: np.ndarray
    upper: np.ndarray
    prior: np.ndarray
    """The natural mixture (token shares), for the penalty and as a starting point."""
    penalty: str = "reverse_kl"
    strength: float = 0.0

    @classmethod
    def build(
        cls,
        domains: Sequence[str],
        *,
        prior: Mapping[str, float] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        token_counts: Mapping[str, float] | None = None,
        target_tokens: float | None = None,
        max_epochs: float = 4.0,
        penalty: str = "reverse_kl",
        strength: float = 0.0,
        natural_floor: float = 0.0,
    ) -> Constraints:
        """Bounds, caps and floors as arrays; an empty feasible set is an `AutomixerError`.
        A domain with its own bounds gets no floor (its bounds say what the user wants)."""
        names = list(domains)
        if prior is None:
            p = np.full(len(names), 1.0 / len(names))
        else:
            p = np.array([float(prior.get(n, 0.0)) for n in names])
            p = p / p.sum()
        lower = natural_floor * p
        upper = np.ones(len(names))
        for name, (lo, hi) in (bounds or {}).items():
            if name not in names:
                raise AutomixerError(f"unknown domain '{name}'", field=f"solve.bounds.{name}")
            i = names.index(name)
            lower[i], upper[i] = lo, hi
        if target_tokens is not None:
            if token_counts is None:
                raise AutomixerError(
                    "repetition caps need token counts per domain", field="solve.target_tokens"
                )
            caps = np.array([max_epochs * float(token_counts[n]) / target_tokens for n in names])
            upper = np.minimum(upper, caps)
            floored = [n not in (bounds or {}) for n in names]
            lower = np.where(floored, np.minimum(lower, upper), lower)
            below = [n for n, lo, cap in zip(names, lower, caps, strict=True) if lo > cap + EPS]
            if below:
                raise AutomixerError(
                    f"lower bounds of {', '.join(below)} exceed their repetition caps "
                    f"(max_epochs={max_epochs:g}, target_tokens={target_tokens:.3g})",
                    field="solve.bounds",
                )
        if lower.sum() > 1 + 1e-9:
            raise AutomixerError(
                f"infeasible: lower bounds sum to {lower.sum():.4g} > 1", field="solve.bounds"
            )
        if upper.sum() < 1 - 1e-9:
            raise AutomixerError(
                f"infeasible: upper bounds and repetition caps sum to {upper.sum():.4g} < 1; "
                "raise solve.max_epochs, lower solve.target_tokens or loosen solve.bounds",
                field="solve.max_epochs" if target_tokens is not None else "solve.bounds",
            )
        if penalty not in PENALTIES:
            raise AutomixerError(
                f"unknown penalty '{penalty}' ({', '.join(PENALTIES)})", field="solve.penalty"
            )
        return cls(names, lower, upper, p, penalty, float(strength))

    def project(self, v: np.ndarray) -> np.ndarray:
        """Euclidean projection of v (D,) or (N, D) onto {w : lower <= w <= upper, sum w = 1}:
        bisection on the shift tau of w = clip(v - tau, lower, upper), all rows at once."""
        v = np.asarray(v, dtype=np.float64)
        V = v.reshape(-1, v.shape[-1])
        lo_t = np.min(V - self.upper, axis=1) - 1.0
        hi_t = np.max(V - self.lower, axis=1) + 1.0
        for _ in range(60):
            tau = 0.5 * (lo_t + hi_t)
            s = np.clip(V - tau[:, None], self.lower, self.upper).sum(axis=1)
            lo_t = np.where(s > 1, tau, lo_t)
            hi_t = np.where(s > 1, hi_t, tau)
        W = np.clip(V - 0.5 * (lo_t + hi_t)[:, None], self.lower, self.upper)
        return W.reshape(v.shape)

    def contains(self, w: np.ndarray, tol: float = 1e-6) -> bool:
        w = np.asarray(w)
        return bool(
            abs(w.sum() - 1) <= tol
            and np.all(w >= self.lower - tol)
            and np.all(w <= self.upper + tol)
        )

    def penalty_value(self, w: np.ndarray) -> np.ndarray:
        """Penalty of mixtures w (..., D) toward the prior, times its strength."""
        if self.strength == 0:
            return np.zeros(np.shape(w)[:-1])
        w = np.asarray(w)
        if self.penalty == "l1":
            return self.strength * np.abs(w - self.prior).sum(axis=-1)
        if self.penalty == "reverse_kl":
            ratio = np.log(np.clip(self.prior, EPS, None) / np.clip(w, 1e-9, None))
            terms = np.where(self.prior > 0, self.prior * ratio, 0.0)
            return self.strength * np.sum(terms, axis=-1)
        ratio = np.log(np.clip(w, EPS, None) / np.clip(self.prior, EPS, None))
        return self.strength * np.sum(np.where(w > 0, w * ratio, 0.0), axis=-1)

    def sample(self, n: int, rng: np.random.Generator, concentration: float = 1.0) -> np.ndarray:
        """n feasible mixtures: Dirichlet draws around the prior, projected onto the set."""
        alpha = np.clip(self.prior * len(self.prior) * concentration, 1e-3, None)
        return self.project(rng.dirichlet(alpha, size=n))
