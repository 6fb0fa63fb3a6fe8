"""`automixer replay`: cross-validate, predict and solve on a runs table from another system."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table
from scipy.stats import spearmanr

from automixer.config import SolveSection, SurrogateSection
from automixer.design import sweep_size_warning
from automixer.errors import AutomixerError
from automixer.io import atomic_path, atomic_write_json
from automixer.modeling import section_constraints, solve_section
from automixer.registry import SOLVERS, SURROGATES, unknown
from automixer.replay import RunsTable, load_mixtures, load_runs, read_table
from automixer.schedule.solve import schedule_constraints
from automixer.solve import Objective, Solution
from automixer.surrogates import TRANSFORMS, CVResult, cross_validate, make_surrogate
from automixer.surrogates.intervals import Conformal, ranks_of
from automixer.surrogates.selection import mixture_groups
from automixer.views import fit_progress, print_cv_table, print_solution


@dataclass
class ReplayOptions:
    model: str = "auto"
    transform: str = "auto"
    folds: int = 5
    repeats: int = 3
    seed: int = 0
    objective: Mapping[str, float] | None = None
    method: str = "exact"
    directions: Mapping[str, str] | None = None
    """Target names or glob patterns -> 'min' / 'max', for names that declare no measure."""
    level: float = 0.95
    """Nominal coverage of the prediction intervals."""
    phases: Mapping[str, float] | None = None
    """A schedule table's phases and their token shares, in order (`--phases NAME=SHARE`)."""


def parse_pairs(items: Sequence[str], option: str, numeric: bool) -> dict:
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise AutomixerError(f"expected NAME=VALUE, got '{item}'", field=option)
        k, v = item.split("=", 1)
        if numeric:
            try:
                out[k.strip()] = float(v)
            except ValueError:
                raise AutomixerError(f"'{v}' is not a number", field=option) from None
        else:
            out[k.strip()] = v.strip()
    return out


def cross_validated(runs: RunsTable, opts: ReplayOptions, X: np.ndarray | None = None) -> CVResult:
    """Grouped cross-validation (rows with the same weights stay in one fold) of the chosen
    surrogate, or for 'auto' of its candidates, the per-target choice scored on its own
    out-of-fold predictions (as `automixer fit` does; cross-validating 'auto' as one model
    would run its own cross-validation inside every fold). `X`: other features of the same
    runs (a schedule's collapsed totals), on the same folds."""
    groups = len(np.unique(mixture_groups(runs.X)))
    if groups < opts.folds:
        raise AutomixerError(
            f"{groups} distinct mixtures are too few for {opts.folds}-fold cross-validation",
            field="--folds",
        )
    # 'auto' chooses among the config's default candidates
    names = SurrogateSection().candidates if opts.model == "auto" else [opts.model]
    return cross_validate(
        runs.X if X is None else X,
        runs.Y,
        {n: make_surrogate(n, opts.transform) for n in names},
        runs.targets,
        folds=opts.folds,
        repeats=opts.repeats,
        seed=opts.seed,
        groups=mixture_groups(runs.X),
    )


def phases_against_total(
    runs: RunsTable, cv: CVResult, opts: ReplayOptions, console: Console, progress: bool
) -> dict[str, Any]:
    """A schedule table's out-of-fold Spearman with per-phase features against the collapsed
    totals (each domain's weight over the whole run), on the same folds, per target."""
    assert runs.phases is not None
    with fit_progress("cross-validation on the collapsed totals", progress):
        total = cross_validated(runs, opts, runs.phases.totals(runs.X))

    def rho(result: CVResult) -> dict[str, float]:
        rows = result.table.filter(pl.col("model") == result.deployed)
        return dict(zip(rows["target"], map(float, rows["spearman"]), strict=True))

    per_phase, collapsed = rho(cv), rho(total)
    se = _paired_se(runs.Y, cv, total)
    show = Table(
        title="per-phase features against collapsed totals (same folds; standard errors over "
        f"the {opts.repeats} repeats)"
    )
    for col in ("target", "per-phase", "collapsed", "difference"):
        show.add_column(col, justify="left" if col == "target" else "right")
    for j, t in enumerate(runs.targets):
        p_se, c_se, d_se = se[j] if se is not None else (float("nan"),) * 3
        show.add_row(
            t,
            f"{per_phase[t]:.4f} +- {p_se:.4f}",
            f"{collapsed[t]:.4f} +- {c_se:.4f}",
            f"{per_phase[t] - collapsed[t]:+.4f} +- {d_se:.4f}",
        )
    console.print(show)
    mean_p = float(np.nanmean(list(per_phase.values())))
    mean_c = float(np.nanmean(list(collapsed.values())))
    console.print(
        f"mean out-of-fold Spearman: per-phase {mean_p:.4f}, collapsed totals {mean_c:.4f}"
    )
    return {
        "phases": dict(zip(runs.phases.names, runs.phases.shares, strict=True)),
        "per_phase": per_phase,
        "collapsed": collapsed,
        "mean_per_phase": mean_p,
        "mean_collapsed": mean_c,
        "standard_errors": (
            {
                t: dict(zip(("per_phase", "collapsed", "difference"), row, strict=True))
                for t, row in zip(runs.targets, se.tolist(), strict=True)
            }
            if se is not None
            else None
        ),
    }


def _paired_se(Y: np.ndarray, a: CVResult, b: CVResult) -> np.ndarray | None:
    """Per target, the standard errors over repeats of each side's out-of-fold Spearman and of
    their difference (paired: the same folds in each repeat); None with one repeat."""
    A, B = a.oof_runs.get(a.deployed), b.oof_runs.get(b.deployed)
    if A is None or B is None or len(A) < 2:
        return None
    out = np.full((Y.shape[1], 3), np.nan)
    for j in range(Y.shape[1]):
        ra = np.array([spearmanr(P[:, j], Y[:, j]).statistic for P in A])
        rb = np.array([spearmanr(P[:, j], Y[:, j]).statistic for P in B])
        root = np.sqrt(len(ra))
        out[j] = [ra.std(ddof=1) / root, rb.std(ddof=1) / root, (ra - rb).std(ddof=1) / root]
    return out


def predict_table(
    model: object,
    runs: RunsTable,
    mixtures: Path,
    intervals: Conformal,
    level: float,
    objective: Objective | None = None,
) -> pl.DataFrame:
    """Predictions for the mixtures of a table, with conformal `level` intervals. With an
    `objective`, also its prediction, each mixture's rank by it (1 = best) and the value a new
    run there is expected at once the optimism of picking it is taken out (calibrated on the
    out-of-fold runs predicted at least as high: `Conformal.selected`), with its interval;
    `objective:unshifted:lo/hi` keep the marginal interval beside it."""
    X, ids = load_mixtures(mixtures, runs.domains)
    mean = np.asarray(model.predict(X)).reshape(len(X), -1)  # type: ignore[attr-defined]
    lo, hi = intervals.intervals(mean, level)
    cols: dict[str, np.ndarray] = {}
    for j, t in enumerate(runs.targets):
        cols[t] = mean[:, j]
        cols[f"{t}:lo"] = lo[:, j]
        cols[f"{t}:hi"] = hi[:, j]
    if objective is not None:
        value = objective.value(mean)
        ranks = ranks_of(value)
        at = intervals.selected(objective, mean, level)
        olo, ohi = intervals.objective_interval(objective, mean, level)
        cols |= {
            "objective": value,
            "objective:lo": olo,
            "objective:hi": ohi,
            "objective:rank": ranks + 1,
            "objective:expected": at.objective,
            "objective:expected:lo": at.objective_lo,
            "objective:expected:hi": at.objective_hi,
        }
    return pl.concat([ids, pl.DataFrame(cols)], how="horizontal")


def score_predictions(
    pred: pl.DataFrame, truth_path: Path, targets: Sequence[str]
) -> dict[str, float]:
    truth = read_table(truth_path, "--truth")
    if pred.width and pred.columns[0] in truth.columns and pred.columns[0] not in targets:
        key = pred.columns[0]
        truth = pred.select(key).join(truth, on=key, how="left", maintain_order="left")
    out = {}
    for t in targets:
        if t in truth.columns:
            out[t] = float(spearmanr(pred[t].to_numpy(), truth[t].to_numpy()).statistic)
    return out


def run_replay(
    runs_table: Path,
    *,
    metrics: Path | None,
    id_column: str | None,
    domains: Sequence[str],
    targets: Sequence[str],
    families: Mapping[str, str],
    opts: ReplayOptions,
    predict: Path | None,
    truth: Path | None,
    out: Path | None,
    solve: bool,
    out_dir: Path,
    console: Console,
    progress: bool = True,
) -> None:
    if not 0 < opts.level < 1:
        raise AutomixerError(f"must be between 0 and 1, got {opts.level}", field="--level")
    if opts.folds < 2 or opts.repeats < 1:
        raise AutomixerError("--folds must be >= 2 and --repeats >= 1", field="--folds")
    models = ["auto", *SURROGATES]
    if opts.model not in models:
        raise AutomixerError(unknown("surrogate", opts.model, models), field="--model")
    if opts.method not in SOLVERS:
        raise AutomixerError(unknown("solver", opts.method, list(SOLVERS)), field="--method")
    if opts.transform not in ("auto", *TRANSFORMS):
        raise AutomixerError(
            unknown("transform", opts.transform, ["auto", *TRANSFORMS]), field="--transform"
        )
    runs = load_runs(
        runs_table,
        metrics,
        id_column=id_column,
        domains=domains,
        targets=targets,
        families=families,
        phases=opts.phases,
    )
    console.print(
        f"{len(runs.X)} runs, {len(runs.domains)} domains, {len(runs.targets)} targets"
        + (f" ({runs.dropped} rows without every target dropped)" if runs.dropped else "")
    )
    distinct = len(np.unique(mixture_groups(runs.X)))
    if warning := sweep_size_warning(distinct, len(runs.domains)):
        console.print(f"[yellow]warning:[/] {warning}")
    if runs.constant:
        console.print(
            f"[yellow]warning:[/] {', '.join(runs.constant[:5])} "
            f"{'is' if len(runs.constant) == 1 else 'are'} the same in every run: nothing to "
            "rank or solve for (an objective of only these has no optimum)"
        )
        if set(runs.constant) >= set(runs.targets):
            raise AutomixerError("every target is the same in every run", file=runs_table)
    with fit_progress("cross-validation", progress):
        cv = cross_validated(runs, opts)
    compared = None
    table = cv.table
    intervals = cv.conformal(runs.Y)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "cv.csv") as tmp:
        table.write_csv(tmp)
    print_cv_table(
        table, console, f"{opts.folds}-fold x {opts.repeats} out-of-fold cross-validation"
    )
    deployed = table.filter(pl.col("model") == cv.deployed)
    mean_rho = float(np.mean(deployed["spearman"].to_numpy()))
    console.print(f"mean Spearman of {cv.deployed} {mean_rho:.4f}; table: {out_dir / 'cv.csv'}")
    if runs.phases is not None:
        compared = phases_against_total(runs, cv, opts, console, progress)
    model = cv.deploy(runs.X, runs.Y, opts.transform, opts.seed)
    if predict is not None:
        picked = None
        if opts.objective:
            picked = Objective.build(runs.targets, dict(opts.objective), runs.Y, opts.directions)
        pred = predict_table(model, runs, predict, intervals, opts.level, picked)
        target = out or out_dir / "predictions.csv"
        with atomic_path(target) as tmp:
            pred.write_csv(tmp)
        console.print(f"predictions for {pred.height} mixtures: {target}")
        if truth is not None:
            scores = score_predictions(pred, truth, runs.targets)
            for t, r in scores.items():
                console.print(f"  Spearman vs {truth.name}: {t} = {r:.4f}")
            if scores:
                console.print(
                    f"  mean over {len(scores)} targets = {np.mean(list(scores.values())):.4f}"
                )
    if solve:
        weights = dict(opts.objective) if opts.objective else {t: 1.0 for t in runs.targets}
        objective = Objective.build(runs.targets, weights, runs.Y, opts.directions)
        # `automixer solve`'s defaults (floors, lower confidence bound, trust region), with
        # the runs' mean mixture as the natural one
        section = SolveSection(method=opts.method, interval_level=opts.level)
        if runs.phases is not None:  # one mixture per phase, each phase at its share
            totals = runs.phases.totals(runs.X).mean(axis=0)
            prior = dict(zip(runs.phases.domains, totals.tolist(), strict=True))
            constraints = schedule_constraints(section, runs.phases, prior)
        else:
            prior = dict(zip(runs.domains, runs.X.mean(axis=0).tolist(), strict=True))
            constraints = section_constraints(section, runs.domains, prior)
        sol: Solution = solve_section(
            section, model, objective, constraints, runs.X, runs.Y, intervals, opts.seed
        )
        atomic_write_json(out_dir / "solution.json", sol.to_dict())
        print_solution(sol, console, run_ids=runs.ids)
        console.print(f"solution: {out_dir / 'solution.json'}")
    atomic_write_json(
        out_dir / "replay.json",
        json.loads(
            json.dumps(
                {
                    "runs": str(runs_table),
                    "metrics": str(metrics) if metrics else None,
                    "domains": runs.domains,
                    "targets": runs.targets,
                    "model": opts.model,
                    "folds": opts.folds,
                    "repeats": opts.repeats,
                    "seed": opts.seed,
                    **({"phases_against_total": compared} if compared else {}),
                }
            )
        ),
    )
