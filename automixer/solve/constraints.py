"""The feasible set of mixtures: the simplex cut by per-domain bounds, repetition caps and floors,
plus an optional penalty toward the natural mixture.

Repetition cap: the full run may repeat domain d at most `max_epochs` times, so
w_d <= max_epochs * tokens_d / target_tokens.

Groups: lo_g <= sum of w_d over a set of domains <= hi_g (every tier of a source, every synthetic
domain). With groups, projection is Dykstra's alternating projection between the capped simplex
and each group's slab (it converges to the Euclidean projection onto their intersection).

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
class Group:
    name: str
    members: tuple[int, ...]
    """Indices of the group's domains."""
    lower: float
    upper: float

    def total(self, w: np.ndarray) -> np.ndarray:
        return np.asarray(w)[..., list(self.members)].sum(-1)


GroupSpec = tuple[str, Sequence[str], float, float]
"""(name, member domains, lowest total, highest total)."""


@dataclass(frozen=True)
class Constraints:
    domains: list[str]
    lower: np.ndarray
    upper: np.ndarray
    prior: np.ndarray
    """The natural mixture (token shares), for the penalty and as a starting point."""
    penalty: str = "reverse_kl"
    strength: float = 0.0
    groups: tuple[Group, ...] = ()

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
        groups: Sequence[GroupSpec] = (),
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
        built = tuple(
            Group(name, tuple(names.index(m) for m in members), float(lo), float(hi))
            for name, members, lo, hi in groups
        )
        if built:
            _check_feasible(built, lower, upper)
        return cls(names, lower, upper, p, penalty, float(strength), built)

    def _project_box(self, V: np.ndarray) -> np.ndarray:
        lo_t = np.min(V - self.upper, axis=1) - 1.0
        hi_t = np.max(V - self.lower, axis=1) + 1.0
        for _ in range(60):
            tau = 0.5 * (lo_t + hi_t)
            s = np.clip(V - tau[:, None], self.lower, self.upper).sum(axis=1)
            lo_t = np.where(s > 1, tau, lo_t)
            hi_t = np.where(s > 1, hi_t, tau)
        return np.clip(V - 0.5 * (lo_t + hi_t)[:, None], self.lower, self.upper)

    def _group_violation(self, W: np.ndarray) -> np.ndarray:
        worst = np.zeros(len(W))
        for g in self.groups:
            t = g.total(W)
            worst = np.maximum(worst, np.maximum(t - g.upper, g.lower - t))
        return worst

    def project(self, v: np.ndarray) -> np.ndarray:
        """Euclidean projection of v (D,) or (N, D) onto {w : lower <= w <= upper, sum w = 1}:
        bisection on the shift tau of w = clip(v - tau, lower, upper), all rows at once."""
        v = np.asarray(v, dtype=np.float64)
        V = v.reshape(-1, v.shape[-1])
        W = self._project_box(V)
        if self.groups:
            W = self._dykstra(V, W)
        return W.reshape(v.shape)

    def _dykstra(self, V: np.ndarray, W: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        """Dykstra's projection of V onto the capped simplex and every group's slab; rows
        already within the bounds (`W`, their projection onto the capped simplex, meets the
        groups) are done, and rows leave the iteration as they converge."""
        out = W.copy()
        todo = np.flatnonzero(self._group_violation(W) > tol)
        X = V[todo].copy()
        increments = [np.zeros_like(X) for _ in range(len(self.groups) + 1)]
        for _ in range(5000):
            if not len(todo):
                break
            Y = self._project_box(X + increments[0])
            increments[0] = X + increments[0] - Y
            X = Y
            for k, g in enumerate(self.groups, start=1):
                Z = X + increments[k]
                idx = list(g.members)
                t = Z[:, idx].sum(1)
                Z2 = Z.copy()
                Z2[:, idx] += ((np.clip(t, g.lower, g.upper) - t) / len(idx))[:, None]
                increments[k] = Z - Z2
                X = Z2
            box = np.maximum(
                np.abs(X.sum(1) - 1), np.max(np.maximum(self.lower - X, X - self.upper), axis=1)
            )
            done = np.maximum(box, self._group_violation(X)) < tol
            out[todo[done]] = X[done]
            keep = ~done
            todo, X = todo[keep], X[keep]
            increments = [inc[keep] for inc in increments]
        out[todo] = X  # not converged in the iterations allowed: the nearest found
        return np.clip(out, self.lower, self.upper)

    def contains(self, w: np.ndarray, tol: float = 1e-6) -> bool:
        w = np.asarray(w)
        return bool(
            abs(w.sum() - 1) <= tol
            and np.all(w >= self.lower - tol)
            and np.all(w <= self.upper + tol)
            and (not self.groups or self._group_violation(w[None, :]).max() <= tol)
        )

    def group_totals(self, w: np.ndarray) -> dict[str, float]:
        """Each group's total weight at w."""
        return {g.name: float(g.total(w)) for g in self.groups}

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


def _check_feasible(groups: Sequence[Group], lower: np.ndarray, upper: np.ndarray) -> None:
    """Some mixture meets the bounds, caps and group bounds at once (a linear program), or one
    line naming the groups."""
    from scipy.optimize import linprog

    D = len(lower)
    rows, rhs = [], []
    for g in groups:
        a = np.zeros(D)
        a[list(g.members)] = 1.0
        rows += [a, -a]
        rhs += [g.upper, -g.lower]
    res = linprog(
        np.zeros(D),
        A_ub=np.array(rows),
        b_ub=np.array(rhs),
        A_eq=np.ones((1, D)),
        b_eq=[1.0],
        bounds=list(zip(lower, upper, strict=True)),
        method="highs",
    )
    if res.status == 2:
        names = ", ".join(f"'{g.name}' [{g.lower:g}, {g.upper:g}]" for g in groups)
        raise AutomixerError(
            f"no mixture meets the group bounds {names} together with the per-domain bounds, "
            "floors and repetition caps",
            field="solve.groups",
        )
