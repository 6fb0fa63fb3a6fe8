"""The sweep's design over schedules: one mixture per phase, planned around the natural mixture,
with constant schedules (the same mixture in every phase) among them so that the one-phase
question is inside the design."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from automixer.design import PlannedRun, mixture_space, plan_mixtures
from automixer.schedule.phases import Phases
from automixer.solve.constraints import GroupSpec

CONSTANT_SHARE = 0.25
"""Share of the drawn schedules that are constant (one mixture for every phase)."""


def schedule_space_groups(
    phases: Phases, caps: Mapping[str, float] | None, groups: Sequence[GroupSpec] = ()
) -> list[GroupSpec]:
    """The groups that make a flat vector a schedule the proxies can train: each phase's block
    at its share, each domain within its repetition cap over the whole run, the user's groups
    over the whole run."""
    return [*phases.phase_groups(), *phases.cap_groups(caps or {}), *phases.groups(groups)]


def plan_schedules(
    phases: Phases,
    natural: Mapping[str, float],
    *,
    n_runs: int,
    seed: int,
    caps: Mapping[str, float] | None = None,
    concentration: tuple[float, float] = (0.1, 5.0),
    min_distance: float = 0.02,
    anchors: Mapping[str, Mapping[str, float]] | None = None,
    replicates: int = 3,
    groups: Sequence[GroupSpec] = (),
) -> list[PlannedRun]:
    """`n_runs` distinct schedules (natural, uniform and anchors as constant schedules first)
    plus `replicates` extra seeds of the natural one. A quarter of the drawn schedules are
    constant; the rest draw each phase's mixture on its own (Dirichlet around the natural
    mixture at a log-uniform concentration)."""
    prior = np.array([natural[d] for d in phases.domains], dtype=np.float64)
    lo, hi = np.log(concentration[0]), np.log(concentration[1])
    D = len(phases.domains)
    # a constant schedule is projected as one mixture (within the caps and groups over the
    # run), so that it stays the same in every phase
    space = mixture_space(dict(natural), caps, groups)

    def fit(w: np.ndarray) -> np.ndarray:
        return w if space.contains(w) else space.project(w)

    def constant(m: Mapping[str, float]) -> dict[str, float]:
        w = fit(np.array([m.get(d, 0.0) for d in phases.domains], dtype=np.float64))
        return phases.constant(dict(zip(phases.domains, w.tolist(), strict=True)))

    def one(rng: np.random.Generator) -> np.ndarray:
        alpha = np.clip(prior * D * np.exp(rng.uniform(lo, hi)), 1e-3, None)
        return rng.dirichlet(alpha)

    def draw(rng: np.random.Generator) -> tuple[str, np.ndarray]:
        if rng.uniform() < CONSTANT_SHARE:
            return "constant", phases.expand(fit(one(rng)))[0]
        return "phased", np.concatenate([s * one(rng) for s in phases.shares])

    return plan_mixtures(
        constant(natural),
        n_runs=n_runs,
        seed=seed,
        concentration=concentration,
        min_distance=min_distance,
        anchors={k: constant(v) for k, v in (anchors or {}).items()},
        replicates=replicates,
        groups=schedule_space_groups(phases, caps, groups),
        draw=draw,
        uniform=constant(dict.fromkeys(phases.domains, 1 / D)),
    )
