"""Solving over schedules: the constraints on the flat `domain@phase` vector, the best constant
mix beside the best schedule, and the predicted gain of phasing with its interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from automixer.config import SolveSection
from automixer.schedule.phases import PHASE_SEP, Phases
from automixer.solve import Constraints
from automixer.solve.constraints import GroupSpec
from automixer.solve.solvers import Solution


def whole_run_caps(
    solve: SolveSection, domains: Sequence[str], token_counts: Mapping[str, float] | None
) -> dict[str, float]:
    """Each domain's repetition cap over the whole run (empty without a budget)."""
    if token_counts is None or solve.target_tokens is None:
        return {}
    return {d: solve.max_epochs * float(token_counts[d]) / solve.target_tokens for d in domains}


def schedule_constraints(
    solve: SolveSection,
    phases: Phases,
    prior: Mapping[str, float],
    token_counts: Mapping[str, float] | None = None,
    groups: Sequence[GroupSpec] = (),
) -> Constraints:
    """The feasible schedules: each phase's block at its share, per-phase bounds, each
    domain's repetition cap over the sum of its phases, the user's groups over the whole run,
    and the natural floor in every phase (at most the domain's cap, as for one mixture)."""
    caps = whole_run_caps(solve, phases.domains, token_counts)
    bounds = phases.bounds(solve.bounds)
    for p, s in zip(phases.names, phases.shares, strict=True):
        for d in phases.domains:
            name = f"{d}{PHASE_SEP}{p}"
            if name not in bounds:  # the floor, as a bound (a bound of its own wins)
                floor = solve.natural_floor * float(prior.get(d, 0.0)) / sum(prior.values())
                bounds[name] = (s * min(floor, caps.get(d, 1.0)), s)
    return Constraints.build(
        phases.weight_names,
        prior=phases.constant(prior),
        bounds=bounds,
        groups=[*phases.phase_groups(), *phases.cap_groups(caps), *phases.groups(groups)],
        penalty=solve.penalty,
        strength=solve.prior_penalty,
    )


def constant_bounds(solve: SolveSection, phases: Phases) -> dict[str, tuple[float, float]]:
    """Bounds on a mixture used in every phase: within every phase's bounds at once."""
    out: dict[str, tuple[float, float]] = {}
    for d in phases.domains:
        own = [solve.bounds.get(f"{d}{PHASE_SEP}{p}", solve.bounds.get(d)) for p in phases.names]
        given = [b for b in own if b is not None]
        if given:
            out[d] = (max(b[0] for b in given), min(b[1] for b in given))
    return out


class ConstantSchedule:
    """A schedule surrogate asked about constant schedules: `predict(W)` for mixtures W (N, D)
    is the surrogate's prediction at the same mixture in every phase."""

    def __init__(self, model: Any, phases: Phases) -> None:
        self.model, self.phases = model, phases

    def predict(self, W: np.ndarray, return_std: bool = False) -> Any:
        V = self.phases.expand(np.atleast_2d(W))
        return self.model.predict(V, return_std=True) if return_std else self.model.predict(V)


NULL_DRAWS = 8
"""Sweeps without a phase effect `null_gains` simulates to measure the search's optimism."""


def phase_shuffled(X: np.ndarray, phases: Phases, rng: np.random.Generator) -> np.ndarray:
    """The runs with their totals kept and how each splits them across phases taken from
    another run: run i gets run j's per-phase deviations from its own totals (scaled down
    where they would make a weight negative). Where only the totals matter (no phase effect),
    each run's measurement stays a measurement of the new schedule."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    total = phases.totals(X)
    mixes = np.stack(
        [X[:, phases.block(k)] / s for k, s in enumerate(phases.shares)]
    )  # (P, n, D): each phase's own mixture
    dev = (mixes - total[None])[:, rng.permutation(len(X))]
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(dev < 0, total[None] / -dev, np.inf).min(axis=(0, 2))
    scale = np.clip(room, 0.0, 1.0)[None, :, None]
    shuffled = total[None] + scale * dev
    return np.hstack([s * shuffled[k] for k, s in enumerate(phases.shares)])


def null_gains(
    model: Any,
    X: np.ndarray,
    Y: np.ndarray,
    phases: Phases,
    gain_of: Any,
    draws: int = NULL_DRAWS,
    seed: int = 0,
) -> np.ndarray:
    """The gain of phasing that the same fit and search predict where phasing cannot matter:
    the runs' measurements refitted (`clone(model)`) on schedules whose phases were shuffled
    between runs, each run's totals kept (`phase_shuffled`), and solved again by
    `gain_of(model, runs) -> gain`. The real measurements and noise stay; only the phase
    information is gone. The schedule is an argmax over twice the dimensions of the constant
    mix, so it gains on noise alone; these draws measure how much."""
    from sklearn.base import clone

    rng = np.random.default_rng([seed, 17])
    Y = np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
    out = []
    for _ in range(draws):
        shuffled = phase_shuffled(X, phases, rng)
        fitted = clone(model).fit(shuffled, Y if Y.shape[1] > 1 else Y[:, 0])
        out.append(float(gain_of(fitted, shuffled)))
    return np.array(out)


@dataclass(frozen=True)
class Phasing:
    """The best schedule against the best constant mix, by the same surrogate."""

    phases: Phases
    schedule: Solution
    constant: Solution
    gain: float
    """Predicted objective of the schedule minus that of the constant mix."""
    gain_lo: float | None
    gain_hi: float | None
    level: float | None
    null: np.ndarray | None = None
    """The gains the same fit and search predict on sweeps without a phase effect
    (`null_gains`); their mean is the search's optimism, taken out of `expected`."""

    @property
    def expected(self) -> float:
        """The gain less the optimism of the larger search (the null draws' mean)."""
        return self.gain - (float(np.mean(self.null)) if self.null is not None else 0.0)

    def to_dict(self) -> dict[str, Any]:
        per_phase = self.phases.per_phase(self.schedule.weights_dict())
        totals = self.phases.totals(self.schedule.weights)[0]
        finite = self.gain_lo is not None and np.isfinite(self.gain_lo)
        ends = self.constant.interval()
        null = self.null if self.null is not None else np.zeros(0)
        return {
            "phases": [
                {"name": p, "share": s, "weights": per_phase[p]}
                for p, s in zip(self.phases.names, self.phases.shares, strict=True)
            ],
            "total": dict(zip(self.phases.domains, map(float, totals), strict=True)),
            "constant": {
                "weights": self.constant.weights_dict(),
                "objective": self.constant.objective,
                "expected": self.constant.expected,
                "lo": ends[0] if ends else None,
                "hi": ends[1] if ends else None,
            },
            "gain": {
                "predicted": self.gain,
                "expected": self.expected,
                "null_mean": float(null.mean()) if len(null) else None,
                "null_sd": float(null.std(ddof=1)) if len(null) > 1 else None,
                "null_draws": len(null),
                "lo": self.gain_lo if finite else None,
                "hi": self.gain_hi if finite else None,
                "level": self.level,
                "covers": (
                    "the difference a pair of new proxy runs (the schedule and the constant "
                    "mix) would measure, centred on the predicted gain less what the same fit "
                    f"and search predict on {len(null)} copies of the sweep with the runs' "
                    "phases shuffled between them (totals kept: no phase effect): conformal, "
                    "from the differences of the objective's out-of-fold residuals between "
                    "pairs of runs, widened by those draws' spread"
                ),
            },
        }
