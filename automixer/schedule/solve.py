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

    def to_dict(self) -> dict[str, Any]:
        per_phase = self.phases.per_phase(self.schedule.weights_dict())
        totals = self.phases.totals(self.schedule.weights)[0]
        finite = self.gain_lo is not None and np.isfinite(self.gain_lo)
        ends = self.constant.interval()
        return {
            "phases": [
                {"name": p, "share": s, "weights": per_phase[p]}
                for p, s in zip(self.phases.names, self.phases.shares, strict=True)
            ],
            "total": dict(zip(self.phases.domains, map(float, totals), strict=True)),
            "constant": {
                "weights": self.constant.weights_dict(),
                "objective": self.constant.objective,
                "lo": ends[0] if ends else None,
                "hi": ends[1] if ends else None,
            },
            "gain": {
                "predicted": self.gain,
                "lo": self.gain_lo if finite else None,
                "hi": self.gain_hi if finite else None,
                "level": self.level,
                "covers": (
                    "the difference a pair of new proxy runs (the schedule and the constant "
                    "mix) would measure: conformal, from the differences of the objective's "
                    "out-of-fold residuals between pairs of runs"
                ),
            },
        }
