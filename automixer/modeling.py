"""Fitting and solving on a sweep's runs: computed and returned, nothing printed or written.

`FitInputs.load` reads a run directory's finished runs; `fit_surrogates` cross-validates the
configured surrogates and measures signal against seed noise; `chosen_model` refits the chosen
surrogates on all runs; `solve_runs` finds the optimum under the config's constraints. The
pipeline's `fit` and `solve` verbs write and print these results; a notebook can call the same
functions without touching the run directory it analyses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from automixer.budget import Supply, config_caps_supply
from automixer.config import SolveSection
from automixer.curation import group_specs
from automixer.errors import AutomixerError
from automixer.noise import signal_table
from automixer.rundir import OOF_COLUMNS, RunDir
from automixer.runs_table import fit_arrays
from automixer.schedule import Phases
from automixer.schedule.solve import (
    ConstantSchedule,
    Phasing,
    constant_bounds,
    null_gains,
    schedule_constraints,
)
from automixer.solve import Constraints, Objective, Solution, pareto_front, solve_mixture
from automixer.solve.constraints import GroupSpec
from automixer.solve.objective import resolve_keys
from automixer.surrogates import AutoSurrogate, cross_validate, make_surrogate
from automixer.surrogates.intervals import Conformal
from automixer.surrogates.selection import SELECTED, mixture_groups


@dataclass(frozen=True)
class FitInputs:
    """The finished runs of a run directory: weights X, targets Y, their names, the run ids,
    and the whole runs table."""

    rd: RunDir
    X: np.ndarray
    Y: np.ndarray
    targets: list[str]
    ids: list[str]
    runs: pl.DataFrame

    @classmethod
    def load(cls, rd: RunDir) -> FitInputs:
        """Too few runs or no metrics is an error."""
        df = rd.runs()
        X, Y, targets, ids = fit_arrays(df, rd.config.weight_names)
        need = rd.config.surrogate.cv_folds + 1
        if len(X) < need:
            raise AutomixerError(
                f"{len(X)} finished runs; fitting needs at least {need}",
                file=rd.file("runs.parquet"),
            )
        if not targets:
            raise AutomixerError(
                "the runs table has no metric columns", file=rd.file("runs.parquet")
            )
        return cls(rd, X, Y, targets, ids, df)

    def groups(self) -> np.ndarray:
        """A group per run: a seed replicate with the run it replicates (and runs with the
        same mixture), so that cross-validation keeps them in one fold."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        index = {r: i for i, r in enumerate(self.ids)}
        done = self.runs.filter(pl.col("run_id").is_in(self.ids))
        links = [
            (index[r], index[p])
            for r, p in zip(done["run_id"], done["replicate_of"], strict=True)
            if p in index
        ]
        by_mixture = mixture_groups(self.X)
        first = {g: i for i, g in reversed(list(enumerate(by_mixture)))}
        links += [(i, first[g]) for i, g in enumerate(by_mixture)]
        a, b = np.array(links, dtype=np.int64).reshape(-1, 2).T
        graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(self.ids),) * 2)
        return connected_components(graph, directed=False)[1]

    def objective(self) -> Objective:
        """The config's objective over these targets, standardised by these runs."""
        keys = resolve_keys(self.rd.config.solve.objective, self.targets)
        return Objective.build(self.targets, keys, self.Y)


@dataclass(frozen=True)
class FitResult:
    cv: pl.DataFrame
    """One row per (target, candidate): out-of-fold Spearman, its sd, RMSE, MAE; with several
    candidates also 'auto', the per-target choice scored on its own out-of-fold predictions."""
    choice: dict[str, str]
    """target -> the chosen surrogate."""
    oof: pl.DataFrame
    """Out-of-fold predictions of what is deployed (the choice): run_id, target, model,
    actual, predicted."""
    signal: pl.DataFrame
    """Seed noise against the spread between mixtures, per target."""
    honest: dict[str, float]
    """target -> out-of-fold Spearman of the deployed choice (not of the best candidate on the
    same folds, which is optimistic)."""
    mean_spearman: float
    """Mean of `honest` over the non-constant targets."""
    constant: list[str]
    """Targets equal in every run (nothing to rank)."""
    mixtures: int
    """Groups the folds kept together (distinct mixtures, replicates with theirs)."""
    oof_folds: pl.DataFrame | None = None
    """Each repeat's out-of-fold predictions of the deployed choice with the run's fold:
    run_id, repeat, fold, target, predicted (what the optimism of picking is measured on)."""

    def conformal(self, Y: np.ndarray, ids: list[str], targets: list[str]) -> Conformal:
        """Interval calibration from these out-of-fold predictions."""
        return conformal_from(self.oof, self.oof_folds, Y, ids, targets)

    def spearman(self, target: str) -> float:
        return self.honest[target]


def fit_surrogates(data: FitInputs) -> FitResult:
    """Cross-validate the configured surrogates on every target and choose one per target."""
    s = data.rd.config.surrogate
    names = s.candidates if s.model == "auto" else [s.model]
    models = {n: make_surrogate(n, s.transform) for n in names}
    cv = cross_validate(
        data.X,
        data.Y,
        models,
        data.targets,
        folds=s.cv_folds,
        repeats=s.cv_repeats,
        seed=data.rd.config.run.seed,
        groups=(groups := data.groups()),
    )
    best = cv.best()
    choice = {t: best[t] for t in data.targets}
    deployed = SELECTED if SELECTED in cv.oof else names[0]
    rho = {
        r["target"]: r["spearman"]
        for r in cv.table.filter(pl.col("model") == deployed).iter_rows(named=True)
    }
    honest = np.array([rho[t] for t in data.targets], dtype=np.float64)
    # A target equal in every run (an accuracy at chance everywhere) has no ranking to predict.
    Y = data.Y
    constant_mask = np.ptp(Y, axis=0) <= 1e-9 * (1 + np.abs(Y).max(axis=0))
    keep = ~constant_mask & np.isfinite(honest)
    oof = pl.concat(
        [
            pl.DataFrame(
                {
                    "run_id": data.ids,
                    "target": t,
                    "model": choice[t],
                    "actual": Y[:, j],
                    "predicted": cv.oof[deployed][:, j],
                }
            )
            for j, t in enumerate(data.targets)
        ]
    )
    folds = cv.folds if cv.folds is not None else np.zeros((0, len(data.ids)), dtype=np.int64)
    runs = cv.oof_runs[deployed]
    oof_folds = pl.DataFrame(
        {
            "run_id": np.tile(np.repeat(data.ids, len(data.targets)), len(folds)),
            "repeat": np.repeat(np.arange(len(folds)), len(data.ids) * len(data.targets)),
            "fold": np.repeat(folds, len(data.targets), axis=1).reshape(-1),
            "target": np.tile(data.targets, len(folds) * len(data.ids)),
            "predicted": runs.reshape(-1),
        }
    )
    return FitResult(
        oof_folds=oof_folds,
        cv=cv.table,
        choice=choice,
        oof=oof,
        signal=signal_table(data.runs, data.targets),
        honest=dict(zip(data.targets, honest.tolist(), strict=True)),
        mean_spearman=float(np.mean(honest[keep])) if keep.any() else math.nan,
        constant=[t for t, k in zip(data.targets, keep, strict=True) if not k],
        mixtures=len(np.unique(groups)),
    )


def chosen_model(data: FitInputs, choice: dict[str, str] | None = None) -> Any:
    """The surrogates refitted on all runs: `choice` (or the one `fit` saved) when it covers
    these targets, else chosen again by cross-validation."""
    rd = data.rd
    choice = choice if choice is not None else rd.choice()
    picked = [choice[t] for t in data.targets] if choice and list(choice) == data.targets else None
    s = rd.config.surrogate
    if s.model != "auto" and picked is None:
        picked = [s.model] * len(data.targets)
    return AutoSurrogate(
        candidates=s.candidates if s.model == "auto" else [s.model],
        folds=s.cv_folds,
        repeats=s.cv_repeats,
        weight_transform=s.transform,
        choice=picked,
        random_state=rd.config.run.seed,
    ).fit(data.X, data.Y)


def _manifest(data: FitInputs) -> dict[str, Any]:
    return data.rd.manifest() if data.rd.file("manifest.json").is_file() else {}


def natural_prior(data: FitInputs, manifest: dict[str, Any] | None = None) -> dict[str, float]:
    """The natural mixture from the manifest (the runs' mean weights when there is none)."""
    manifest = _manifest(data) if manifest is None else manifest
    if manifest.get("natural_weights"):
        return dict(manifest["natural_weights"])
    cfg = data.rd.config
    totals = Phases.of(cfg).totals(data.X).mean(0)
    return dict(zip(cfg.domain_names, map(float, totals), strict=True))


def _cap_tokens(data: FitInputs, manifest: dict[str, Any]) -> dict[str, float] | None:
    """What each domain can serve toward the repetition caps (None without a budget); an
    infeasible budget is one line naming the binding domains."""
    cfg = data.rd.config
    if cfg.solve.target_tokens is None:
        return None
    supply = Supply.from_manifest(manifest or data.rd.manifest(), cfg)
    return config_caps_supply(supply, cfg, file=data.rd.file("config.yaml"))


def constraints_for(
    data: FitInputs, constant: bool = False, solve: SolveSection | None = None
) -> Constraints:
    """The config's constraints: bounds, repetition caps at the full run's budget (against
    what each whole source holds), the prior. An infeasible budget is one line naming the
    binding domains and the largest budget the data can serve. With phases, over schedules;
    `constant`: over one mixture for every phase (within every phase's bounds at once).
    `solve` stands in for the config's solve section (an ablation's variant of it)."""
    cfg = data.rd.config
    manifest = _manifest(data)
    tokens = _cap_tokens(data, manifest)
    solve = solve if solve is not None else cfg.solve
    if constant:
        solve = solve.model_copy(update={"bounds": constant_bounds(solve, Phases.of(cfg))})
    elif cfg.phases:
        return schedule_constraints(
            solve,
            Phases.of(cfg),
            natural_prior(data, manifest),
            token_counts=tokens,
            groups=group_specs(cfg),
        )
    return section_constraints(
        solve,
        cfg.domain_names,
        natural_prior(data, manifest),
        token_counts=tokens,
        groups=group_specs(cfg),
    )


def section_constraints(
    solve: SolveSection,
    domains: list[str],
    prior: dict[str, float],
    token_counts: dict[str, float] | None = None,
    groups: Sequence[GroupSpec] = (),
) -> Constraints:
    """The constraints a solve section asks for (bounds, group bounds (resolved by
    `group_specs`), caps at its budget, floors, the penalty toward `prior`): one place for
    `automixer solve` and `replay --solve`."""
    return Constraints.build(
        domains,
        prior=prior,
        bounds=solve.bounds,
        groups=groups,
        token_counts=token_counts,
        target_tokens=solve.target_tokens if token_counts is not None else None,
        max_epochs=solve.max_epochs,
        penalty=solve.penalty,
        strength=solve.prior_penalty,
        natural_floor=solve.natural_floor,
    )


def solve_section(
    solve: SolveSection,
    model: Any,
    objective: Objective,
    constraints: Constraints,
    X: np.ndarray,
    Y: np.ndarray,
    intervals: Conformal | None,
    seed: int,
) -> Solution:
    """`solve_mixture` with a solve section's settings: its method, the lower confidence
    bound at its interval level, its trust region."""
    return solve_mixture(
        model,
        objective,
        constraints,
        X_runs=X,
        Y_runs=Y,
        method=solve.method,
        seed=seed,
        intervals=intervals,
        level=solve.interval_level,
        lcb_k=lcb_k(solve.lcb_k, solve.interval_level),
        trust_radius=solve.trust_region,
    )


@dataclass(frozen=True)
class SolveResult:
    solution: Solution
    best_run_id: str | None
    pareto: pl.DataFrame | None
    """The front over the objective's targets (None with fewer than two weighted targets)."""
    phasing: Phasing | None = None
    """With phases: the best constant mix beside the schedule, and the gain of phasing."""


def conformal_from(
    oof: pl.DataFrame,
    oof_folds: pl.DataFrame | None,
    Y: np.ndarray,
    ids: list[str],
    targets: list[str],
) -> Conformal:
    """A `Conformal` from the out-of-fold tables `fit` writes (long: run_id, target, predicted;
    with `oof_folds` also each repeat's predictions and folds, for the optimism of picking)."""
    wide = oof.pivot(on="target", index="run_id", values="predicted")
    order = {r: i for i, r in enumerate(wide["run_id"])}
    rows = [order[r] for r in ids]
    P = wide.select(targets).to_numpy()[rows]
    if oof_folds is None or not oof_folds.height:
        return Conformal(Y, P)
    runs, folds = [], []
    for r in sorted(set(oof_folds["repeat"].to_list())):
        part = oof_folds.filter(pl.col("repeat") == r)
        w = part.pivot(on="target", index=["run_id", "fold"], values="predicted")
        at = {x: i for i, x in enumerate(w["run_id"])}
        idx = [at[x] for x in ids]
        runs.append(w.select(targets).to_numpy()[idx])
        folds.append(w["fold"].to_numpy()[idx])
    return Conformal(Y, P, np.stack(runs), np.stack(folds))


def conformal(data: FitInputs) -> Conformal:
    """Interval calibration from the deployed surrogate's out-of-fold predictions: those `fit`
    saved (surrogates/oof.parquet, oof_folds.parquet) when they cover these runs and targets,
    else measured now."""
    oof = data.rd.table("surrogates/oof.parquet", OOF_COLUMNS, "fit")
    if oof is not None:
        covered = set(oof["run_id"]) == set(data.ids) and set(data.targets) <= set(oof["target"])
        if covered:
            folds = data.rd.table(
                "surrogates/oof_folds.parquet",
                ("run_id", "repeat", "fold", "target", "predicted"),
                "fit",
            )
            if folds is not None and set(folds["run_id"]) != set(data.ids):
                folds = None
            return conformal_from(oof, folds, data.Y, data.ids, data.targets)
    return fit_surrogates(data).conformal(data.Y, data.ids, data.targets)


def lcb_k(k: float | None, level: float) -> float:
    """The configured k, or the one-sided normal quantile of the interval level (1.645 at
    0.95): mean - k sd is then the `level` lower bound of the latent objective."""
    from scipy.stats import norm

    return float(norm.ppf(level)) if k is None else float(k)


def solve_runs(
    data: FitInputs, model: Any | None = None, intervals: Conformal | None = None
) -> SolveResult:
    """The optimal mixture of the config's objective under its constraints, with conformal
    intervals at `solve.interval_level`."""
    cfg = data.rd.config
    model = model if model is not None else chosen_model(data)
    intervals = intervals if intervals is not None else conformal(data)
    objective = data.objective()
    constraints = constraints_for(data)
    sol = solve_section(
        cfg.solve, model, objective, constraints, data.X, data.Y, intervals, cfg.run.seed
    )
    front = None
    if int((objective.weights > 0).sum()) >= 2:
        front = pareto_front(model, objective, constraints, seed=cfg.run.seed, chosen=sol.weights)
    best = data.ids[sol.best_run] if sol.best_run is not None else None
    phasing = None
    if cfg.phases:
        phasing = constant_against(data, model, objective, intervals, sol)
    return SolveResult(sol, best, front, phasing)


def constant_against(
    data: FitInputs, model: Any, objective: Objective, intervals: Conformal, sol: Solution
) -> Phasing:
    """`gain_of_phasing` for a run directory's schedule `sol`: the config's solve section,
    constraints (whole-run caps, the bounds of every phase at once for the constant mix) and
    seed."""
    cfg = data.rd.config
    return gain_of_phasing(
        model,
        objective,
        constraints_for(data),
        constraints_for(data, constant=True),
        data.X,
        data.Y,
        intervals,
        Phases.of(cfg),
        cfg.solve,
        cfg.run.seed,
        sol,
    )


def gain_of_phasing(
    model: Any,
    objective: Objective,
    schedules: Constraints,
    constants: Constraints,
    X: np.ndarray,
    Y: np.ndarray,
    intervals: Conformal,
    phases: Phases,
    solve: SolveSection,
    seed: int,
    sol: Solution | None = None,
) -> Phasing:
    """The best schedule (`sol`, or solved now) against the best constant mix (one mixture in
    every phase) by the same surrogate, objective and solver settings, the constant mix held
    to the schedule's trust region in the per-phase space the surrogate sees; and the gain of
    the one over the other: predicted, less the optimism of searching twice the dimensions
    (`null_gains`: what the same fit and search predict on the runs with their phases
    shuffled between them, totals kept),
    with its interval widened by those draws' spread."""
    from scipy.stats import norm

    def best_constant(m: Any, radius: float | None, runs: np.ndarray) -> Solution:
        return solve_mixture(
            ConstantSchedule(m, phases),
            objective,
            constants,
            X_runs=phases.totals(runs),
            Y_runs=Y,
            method=solve.method,
            seed=seed,
            intervals=intervals,
            level=solve.interval_level,
            lcb_k=lcb_k(solve.lcb_k, solve.interval_level),
            trust_radius=radius,
            trust_runs=runs,
            embed=phases.expand,
        )

    def gain_of(m: Any, runs: np.ndarray) -> float:
        s = solve_section(solve, m, objective, schedules, runs, Y, None, seed)
        return s.objective - best_constant(m, s.trust_radius, runs).objective

    if sol is None:
        sol = solve_section(solve, model, objective, schedules, X, Y, intervals, seed)
    constant = best_constant(model, sol.trust_radius, X)
    gain = sol.objective - constant.objective
    null = null_gains(model, X, Y, phases, gain_of, seed=seed)
    level = solve.interval_level
    expected = gain - float(null.mean())
    lo, hi = intervals.difference_interval(objective, expected, level)
    widen = float(norm.ppf((1 + level) / 2)) * float(null.std(ddof=1))
    lo = expected - float(np.hypot(expected - lo, widen))
    hi = expected + float(np.hypot(hi - expected, widen))
    return Phasing(phases, sol, constant, gain, lo, hi, level, null)
