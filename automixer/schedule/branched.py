"""Branched schedule sweeps: a few main-phase runs, many anneals branched from each.

Teams that study anneals train a handful of main-phase runs to a checkpoint and branch many
anneal mixtures from each (OLMo 2's micro-anneals, Marin's cooldown swarms): the branches of one
main share its training noise, so what the anneal changes is measured paired, and a branch
costs only the anneal's tokens. Here `sweep.design: branched` plans

- `mains` main-phase mixtures (natural, uniform, the config's anchors, then Dirichlet draws;
  one mixture for every phase before the last), each trained once to the last phase's start
  and checkpointed in the run directory (stage 'main', not a row of the runs table);
- a shared set of n_runs / mains - 1 anneal mixtures (Dirichlet draws around natural), every
  main branched into each of them, plus the main's own mixture kept through the anneal (a
  constant schedule): stage 'branch', trained from the parent's checkpoint;
- `replicates` extra seeds of the natural constant schedule, trained whole (stage 'full'),
  for the seed noise as in every sweep.

Each phase's mixture lies within the caps and groups (so the whole run does), and a branch's
batches before the boundary are exactly its parent's (the loader's main-phase windows depend
only on the main mixture and the seed), so a branch is the run of its schedule from scratch.

The shared anneals make a crossed design (every main with every shared anneal): `anneal_effects`
reads it as a two-way layout per target, the anneal's effect and the interaction with the main
phase, with intervals from resampling the mains (the unit the branches are paired in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from automixer.design import PlannedRun, plan_mixtures, replicate_runs
from automixer.schedule.phases import Phases
from automixer.solve.constraints import GroupSpec

ANNEAL_STREAM = 0x616E6E
"""Seed offset of the shared anneals' draws (apart from the mains')."""


def _flat(phases: Phases, main: Mapping[str, float], anneal: Mapping[str, float]) -> dict:
    """The schedule vector: `main` in every phase before the last, `anneal` in the last."""
    out = {}
    last = len(phases.names) - 1
    for k, (p, share) in enumerate(zip(phases.names, phases.shares, strict=True)):
        mix = anneal if k == last else main
        out.update({f"{d}@{p}": share * float(mix[d]) for d in phases.domains})
    return out


def plan_branched(
    phases: Phases,
    natural: Mapping[str, float],
    *,
    n_runs: int,
    mains: int,
    seed: int,
    caps: Mapping[str, float] | None = None,
    concentration: tuple[float, float] = (0.1, 5.0),
    min_distance: float = 0.02,
    anchors: Mapping[str, Mapping[str, float]] | None = None,
    replicates: int = 3,
    groups: Sequence[GroupSpec] = (),
) -> list[PlannedRun]:
    """Mains first, then the replicates, then every branch (see the module)."""
    per_main = n_runs // mains

    def draws(n: int, stream: int, with_anchors: bool) -> list[PlannedRun]:
        return plan_mixtures(
            natural,
            n_runs=n,
            seed=seed + stream,
            caps=caps,
            concentration=concentration,
            min_distance=min_distance,
            anchors=anchors if with_anchors else None,
            replicates=0,
            groups=groups,
        )

    trunk = draws(mains, 0, True)
    # natural and uniform lead every plan: the shared anneals are the draws after them
    drawn = draws(per_main + 1, ANNEAL_STREAM, False)[2:]
    mains_runs: list[PlannedRun] = []
    branches: list[PlannedRun] = []
    for i, m in enumerate(trunk):
        weights = _flat(phases, m.weights, m.weights)
        parent = PlannedRun(f"t{i:03d}", f"main-{m.name}", weights, m.seed, stage="main")
        mains_runs.append(parent)
        anneals = [("own", "own", m.weights)]
        anneals += [(f"a{a:02d}", f"anneal-{a}", x.weights) for a, x in enumerate(drawn)]
        branches += [
            PlannedRun(
                f"b{i:03d}-{key}",
                f"{m.name}/{name}",
                _flat(phases, m.weights, anneal),
                m.seed,
                stage="branch",
                parent=parent.run_id,
            )
            for key, name, anneal in anneals
        ]
    # the natural schedule is the natural main's own branch
    extra = replicate_runs(mains_runs[0].weights, branches[0].run_id, seed, replicates)
    return mains_runs + extra + branches


def branch_cost(phases: Phases, n_runs: int, mains: int, replicates: int) -> dict[str, float]:
    """Training steps of a branched sweep against the same schedules trained whole, in units
    of one whole run: mains to the boundary, each branch its anneal, replicates whole."""
    anneal = phases.shares[-1]
    branched = mains * (1 - anneal) + n_runs * anneal + replicates
    return {
        "branched": branched,
        "whole": float(n_runs + replicates),
        "ratio": branched / (n_runs + replicates),
    }


@dataclass(frozen=True)
class AnnealEffect:
    """One target's two-way reading of the crossed block (mains x shared anneals)."""

    target: str
    anneal_sd: float
    """How much the anneal mixture alone moves the target: the sd of the anneals' effects
    (each anneal's mean over the mains, less the grand mean)."""
    anneal_lo: float
    anneal_hi: float
    interaction_sd: float
    """What the additive model (main + anneal) leaves: the residual sd, interaction and the
    anneal's own noise together."""
    interaction_lo: float
    interaction_hi: float
    main_sd: float
    """The mains' effects' sd, for scale."""
    f_anneal: float
    p_anneal: float
    """The anneal's F test against the residual (two-way layout without replication)."""
    mains: int
    anneals: int


def _two_way(Y: np.ndarray) -> tuple[float, float, float, float, float]:
    """(anneal sd, residual sd, main sd, F, p) of an (M, A) table."""
    from scipy.stats import f as f_dist

    M, A = Y.shape
    grand = Y.mean()
    a_eff = Y.mean(0) - grand
    m_eff = Y.mean(1) - grand
    resid = Y - grand - a_eff[None, :] - m_eff[:, None]
    df_res = (M - 1) * (A - 1)
    ms_res = float((resid**2).sum() / df_res)
    ms_a = float(M * (a_eff**2).sum() / (A - 1))
    F = ms_a / ms_res if ms_res > 0 else float("inf")
    p = float(f_dist.sf(F, A - 1, df_res)) if np.isfinite(F) else 0.0
    return (
        float(a_eff.std(ddof=1)),
        float(np.sqrt(ms_res)),
        float(m_eff.std(ddof=1)),
        F,
        p,
    )


def anneal_effects(
    parents: Sequence[str],
    anneals: Sequence[str],
    values: Mapping[str, np.ndarray],
    *,
    draws: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> list[AnnealEffect]:
    """Per target (`values[target]`: one value per branch, aligned with `parents` and
    `anneals`, NaN where a branch is missing), the two-way reading of the complete crossed
    block: the mains that have every shared anneal, the anneals every such main has. Intervals
    by resampling the mains with replacement (`draws` times, seeded)."""
    keys = sorted(set(anneals))
    mains = sorted(set(parents))
    out = []
    rng = np.random.default_rng([seed, 0x62726E])
    for target, v in values.items():
        table = np.full((len(mains), len(keys)), np.nan)
        for parent, a, x in zip(parents, anneals, v, strict=True):
            table[mains.index(parent), keys.index(a)] = x
        complete = table[~np.isnan(table).any(1)]
        M, A = complete.shape
        if M < 3 or A < 2:
            continue
        a_sd, r_sd, m_sd, F, p_value = _two_way(complete)
        boot = np.array([_two_way(complete[rng.integers(0, M, M)])[:2] for _ in range(draws)])
        q = [(1 - level) / 2, (1 + level) / 2]
        bounds = np.nanquantile(boot, q, axis=0).T
        a_lo, a_hi, r_lo, r_hi = (float(x) for x in bounds.ravel())
        out.append(
            AnnealEffect(
                target,
                a_sd,
                a_lo,
                a_hi,
                r_sd,
                r_lo,
                r_hi,
                m_sd,
                F,
                p_value,
                M,
                A,
            )
        )
    return out
