"""Mixture designs on the simplex: which mixtures the sweep trains.

- Anchors always come first: the natural mixture (token shares), uniform, and the config's own.
- The rest are Dirichlet draws around the natural prior with concentrations spread log-uniformly
  over a range (RegMix), or Sobol points mapped to the simplex (space-filling).
- Every mixture respects per-domain caps (a proxy may repeat a domain at most `max_epochs`
  times: w_d <= max_epochs * tokens_d / proxy_tokens) and lies at least `min_distance` (total
  variation) from every other one.
- Replicates: the natural mixture again with other seeds, to measure seed noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from automixer.errors import AutomixerError
from automixer.solve.constraints import Constraints, GroupSpec

RUNS_PER_DOMAIN = 4
"""Distinct mixtures per domain below which a sweep is too small for its width. Measured on
RegMix's published runs (17 domains; BENCHMARKS.md, replay): Spearman of `auto` on the 256
unseen mixtures, mean of 13 targets, 0.94 from 32 runs (1.9 per domain), 0.97 from 64 (3.8),
0.99 from 128 (7.5). Below 4 per domain the ranking degrades quickly; 8 per domain buys most of
what more runs can."""


def sweep_size_warning(mixtures: int, domains: int) -> str | None:
    """A warning when `mixtures` distinct mixtures are too few for `domains` domains."""
    need = RUNS_PER_DOMAIN * domains
    if mixtures >= need:
        return None
    return (
        f"{mixtures} distinct mixtures for {domains} domains is {mixtures / domains:.1f} per "
        f"domain; surrogates need about {RUNS_PER_DOMAIN} per domain ({need} mixtures) to rank "
        f"mixtures reliably and {2 * need} to do about as well as more runs would "
        "(see README, 'How many runs')"
    )


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    name: str
    """'natural', 'uniform', an anchor's name, 'dirichlet-17', 'replicate-2', ..."""
    weights: dict[str, float]
    seed: int
    replicate_of: str | None = None
    stage: str = "full"
    """'full': trained from the start to the end; with a branched design, 'main': trained to
    the last phase's start and checkpointed (not a row of the runs table), 'branch': trained
    from its parent's checkpoint through the last phase."""
    parent: str | None = None
    """A branch's main-phase run."""


def _tv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 0.5 * np.abs(a - b).sum(-1)


def mixture_space(
    natural: Mapping[str, float],
    caps: Mapping[str, float] | None,
    groups: Sequence[GroupSpec] = (),
) -> Constraints:
    """The mixtures a proxy can train: the simplex under each domain's repetition cap, within
    the group bounds."""
    upper = {d: min(1.0, float(caps[d])) for d in natural} if caps else {}
    try:
        return Constraints.build(
            list(natural),
            prior=dict(natural),
            bounds={d: (0.0, u) for d, u in upper.items()},
            groups=groups,
        )
    except AutomixerError as e:
        if e.field == "solve.groups":
            raise AutomixerError(
                f"{e.message}, at the proxies' token budget", field="solve.groups"
            ) from None
        raise AutomixerError(
            f"{e.message}: the proxies' token budget repeats the domains more "
            "than data.max_epochs allows; lower proxy.tokens",
            field="proxy.tokens",
        ) from None


def candidate_mixtures(
    natural: Mapping[str, float],
    caps: Mapping[str, float] | None,
    n: int,
    rng: np.random.Generator,
    concentration: tuple[float, float] = (0.1, 5.0),
    groups: Sequence[GroupSpec] = (),
) -> np.ndarray:
    """n feasible mixtures to choose an adaptive round from: Dirichlet draws around the
    natural mixture at log-uniform concentrations (the design's own scheme), within the caps
    and group bounds."""
    space = mixture_space(natural, caps, groups)
    strength = np.exp(rng.uniform(np.log(concentration[0]), np.log(concentration[1]), n))
    alpha = np.clip(space.prior[None, :] * len(space.prior) * strength[:, None], 1e-3, None)
    return np.asarray(space.project(np.stack([rng.dirichlet(a) for a in alpha])))


def plan_mixtures(
    natural: Mapping[str, float],
    *,
    n_runs: int,
    seed: int,
    caps: Mapping[str, float] | None = None,
    concentration: tuple[float, float] = (0.1, 5.0),
    min_distance: float = 0.02,
    design: str = "dirichlet",
    anchors: Mapping[str, Mapping[str, float]] | None = None,
    replicates: int = 3,
    max_tries: int = 200_000,
    groups: Sequence[GroupSpec] = (),
    draw: Callable[[np.random.Generator], tuple[str, np.ndarray]] | None = None,
    uniform: Mapping[str, float] | None = None,
) -> list[PlannedRun]:
    """`n_runs` distinct mixtures (anchors included) plus `replicates` extra seeds of natural.
    Every one lies within the caps and the group bounds (a mixture outside them, an anchor
    or uniform included, is projected onto them). `draw` replaces the design's draws and
    `uniform` the even mixture (schedules: see `automixer.schedule.design`)."""
    domains = list(natural)
    space = mixture_space(natural, caps, groups)
    prior = space.prior
    rng = np.random.default_rng([seed, 0x646573])
    chosen: list[tuple[str, np.ndarray]] = []

    def add(name: str, w: np.ndarray, force: bool = False) -> bool:
        w = space.project(w) if not space.contains(w) else w
        if not force and chosen and _tv(np.stack([c for _, c in chosen]), w).min() < min_distance:
            return False
        chosen.append((name, w))
        return True

    add("natural", prior, force=True)
    even = np.full(len(domains), 1 / len(domains))
    add("uniform", np.array([uniform[d] for d in domains]) if uniform else even, force=True)
    for name, weights in (anchors or {}).items():
        add(name, np.array([weights.get(d, 0.0) for d in domains], dtype=np.float64), force=True)
    lo, hi = np.log(concentration[0]), np.log(concentration[1])
    if design == "sobol":
        from scipy.stats import qmc

        sobol = qmc.Sobol(len(domains), scramble=True, seed=rng)
    tries = 0
    while len(chosen) < n_runs:
        tries += 1
        if tries > max_tries:
            raise AutomixerError(
                f"found only {len(chosen)} of {n_runs} mixtures at least {min_distance} apart "
                "within the caps; lower sweep.min_distance or sweep.n_runs",
                field="sweep.min_distance",
            )
        kind = design
        if draw is not None:  # e.g. schedules: one mixture per phase, or one for all
            kind, w = draw(rng)
        elif design == "sobol":
            u = np.clip(sobol.random(1)[0], 1e-12, 1 - 1e-12)
            w = -np.log(u)  # exponential spacings: uniform on the simplex
            w = w / w.sum()
        else:
            strength = np.exp(rng.uniform(lo, hi))
            alpha = np.clip(prior * len(domains) * strength, 1e-3, None)
            w = rng.dirichlet(alpha)
        add(f"{kind}-{len(chosen)}", w)
    runs = [
        PlannedRun(f"m{i:03d}", name, dict(zip(domains, w.tolist(), strict=True)), seed + i)
        for i, (name, w) in enumerate(chosen)
    ]
    return runs + replicate_runs(runs[0].weights, runs[0].run_id, seed, replicates)


def replicate_runs(
    weights: dict[str, float], of: str, seed: int, replicates: int
) -> list[PlannedRun]:
    """`replicates` extra seeds of the run `of` (its `weights`): the sweep's seed noise."""
    return [
        PlannedRun(f"r{r:03d}", f"replicate-{r + 1}", weights, seed + 10_000 + r, replicate_of=of)
        for r in range(replicates)
    ]


def coverage(runs: Sequence[PlannedRun]) -> dict[str, float]:
    """How well the design spreads: min and median nearest-neighbour distance (TV)."""
    W = np.array([list(r.weights.values()) for r in runs if r.replicate_of is None])
    d = 0.5 * np.abs(W[:, None, :] - W[None, :, :]).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = d.min(1)
    return {"min_nn_distance": float(nn.min()), "median_nn_distance": float(np.median(nn))}
