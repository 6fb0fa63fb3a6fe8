"""`automixer fit` and `automixer solve` on a sweep's run directory.

fit:   runs.parquet -> surrogates/cv.csv (the cross-validation table), surrogates/choice.json
solve: runs.parquet + choice -> solution.json (weights, predictions with intervals, honesty
       checks), pareto.csv (the front over abilities, chosen point marked)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console

from automixer.errors import AutomixerError
from automixer.io import atomic_path, atomic_write_json
from automixer.noise import signal_table
from automixer.rundir import RunDir
from automixer.runs_table import fit_arrays, read_runs
from automixer.solve import Constraints, Objective, Solution, pareto_front, solve_mixture
from automixer.solve.objective import resolve_keys
from automixer.surrogates import AutoSurrogate, cross_validate, make_surrogate
from automixer.views import print_cv_table, print_solution


def load_fit_inputs(
    run_dir: Path,
) -> tuple[RunDir, np.ndarray, np.ndarray, list[str], list[str], pl.DataFrame]:
    """The run directory, the finished runs' weights X and targets Y, the target names, the
    run ids, and the whole runs table; too few runs or no metrics is an error."""
    rd = RunDir.open(run_dir)
    df = read_runs(rd.file("runs.parquet"), rd.config.domain_names)
    X, Y, targets, ids = fit_arrays(df, rd.config.domain_names)
    need = rd.config.surrogate.cv_folds + 1
    if len(X) < need:
        raise AutomixerError(
            f"{len(X)} finished runs; fitting needs at least {need}", file=rd.file("runs.parquet")
        )
    if not targets:
        raise AutomixerError("the runs table has no metric columns", file=rd.file("runs.parquet"))
    return rd, X, Y, targets, ids, df


def run_fit(run_dir: Path, console: Console) -> Path:
    rd, X, Y, targets, ids, df = load_fit_inputs(run_dir)
    s = rd.config.surrogate
    names = s.candidates if s.model == "auto" else [s.model]
    models = {n: make_surrogate(n, s.transform) for n in names}
    cv = cross_validate(
        X, Y, models, targets, folds=s.cv_folds, repeats=s.cv_repeats, seed=rd.config.run.seed
    )
    best = cv.best()
    folder = rd.file("surrogates")
    folder.mkdir(exist_ok=True)
    with atomic_path(folder / "cv.csv") as tmp:
        cv.table.write_csv(tmp)
    atomic_write_json(
        folder / "choice.json",
        {**rd.provenance(), "runs": len(X), "choice": {t: best[t] for t in targets}},
    )
    print_cv_table(
        cv.table,
        console,
        f"{s.cv_folds}-fold x {s.cv_repeats} out-of-fold cross-validation on {len(X)} runs",
    )
    rho = {(r["target"], r["model"]): r["spearman"] for r in cv.table.iter_rows(named=True)}
    chosen = np.array([rho[(t, best[t])] for t in targets], dtype=np.float64)
    # A target equal in every run (an accuracy at chance everywhere) has no ranking to predict.
    constant = np.ptp(Y, axis=0) <= 1e-9 * (1 + np.abs(Y).max(axis=0))
    keep = ~constant & np.isfinite(chosen)
    flat = [t for t, k in zip(targets, keep, strict=True) if not k]
    mean = float(np.mean(chosen[keep])) if keep.any() else math.nan
    console.print(
        f"out-of-fold Spearman of the chosen surrogates: mean {mean:.4f}"
        + (
            f" over {len(targets) - len(flat)} targets; {len(flat)} constant across the runs "
            f"have no rank to predict: {', '.join(flat[:4])}{' ...' if len(flat) > 4 else ''}"
            if flat
            else ""
        )
    )
    oof = pl.concat(
        [
            pl.DataFrame(
                {
                    "run_id": ids,
                    "target": t,
                    "model": best[t],
                    "actual": Y[:, j],
                    "predicted": cv.oof[best[t]][:, j],
                }
            )
            for j, t in enumerate(targets)
        ]
    )
    with atomic_path(folder / "oof.parquet") as tmp:
        oof.write_parquet(tmp)
    signal = signal_table(df, targets)
    with atomic_path(folder / "signal.csv") as tmp:
        signal.write_csv(tmp)
    weak = signal.filter(pl.col("has_signal").not_())["target"].to_list()
    if signal["has_signal"].is_null().all():
        console.print(
            "[yellow]warning:[/] no replicate runs: seed noise is unmeasured (set sweep.replicates)"
        )
    elif weak:
        console.print(
            f"[yellow]warning:[/] {len(weak)} of {len(targets)} targets vary less "
            f"across mixtures than twice their seed noise (no usable signal): "
            f"{', '.join(weak[:6])}{' ...' if len(weak) > 6 else ''}; give the "
            "proxies more tokens or make the domains more distinct"
        )
    abilities = signal.filter(pl.col("target").str.starts_with("ability:"))
    for r in abilities.iter_rows(named=True):
        console.print(
            f"  {r['target']}: spread {r['mixture_spread_sd']:.4g} vs seed noise "
            f"{r['seed_noise_sd']:.4g} (x{r['signal_to_noise']:.1f})"
        )
    return folder


def fitted_model(rd: RunDir, X: np.ndarray, Y: np.ndarray, targets: list[str]) -> Any:
    """The surrogate `fit` chose (refitted on all runs; no second cross-validation)."""
    path = rd.file("surrogates") / "choice.json"
    choice = None
    if path.is_file():
        saved = json.loads(path.read_text())["choice"]
        if list(saved) == targets:
            choice = [saved[t] for t in targets]
    s = rd.config.surrogate
    if s.model == "auto" or choice is not None:
        return AutoSurrogate(
            candidates=s.candidates,
            folds=s.cv_folds,
            repeats=s.cv_repeats,
            weight_transform=s.transform,
            choice=choice,
            random_state=rd.config.run.seed,
        ).fit(X, Y)
    return AutoSurrogate(
        candidates=[s.model], choice=[s.model] * len(targets), weight_transform=s.transform
    ).fit(X, Y)


def run_solve(run_dir: Path, console: Console) -> Solution:
    rd, X, Y, targets, ids, _ = load_fit_inputs(run_dir)
    cfg = rd.config
    model = fitted_model(rd, X, Y, targets)
    objective = Objective.build(targets, resolve_keys(cfg.solve.objective, targets), Y)
    manifest_path = rd.file("manifest.json")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    prior = manifest.get("natural_weights") or dict(zip(cfg.domain_names, X.mean(0), strict=True))
    tokens = {d: v["tokens_train"] for d, v in manifest.get("domains", {}).items()} or None
    constraints = Constraints.build(
        cfg.domain_names,
        prior=prior,
        bounds=cfg.solve.bounds,
        token_counts=tokens,
        target_tokens=cfg.solve.target_tokens,
        max_epochs=cfg.solve.max_epochs,
        penalty=cfg.solve.penalty,
        strength=cfg.solve.prior_penalty,
    )
    sol = solve_mixture(
        model,
        objective,
        constraints,
        X_runs=X,
        Y_runs=Y,
        method=cfg.solve.method,
        seed=cfg.run.seed,
    )
    atomic_write_json(
        rd.file("solution.json"),
        {
            **rd.provenance(),
            **sol.to_dict(),
            "best_run_id": ids[sol.best_run] if sol.best_run is not None else None,
        },
    )
    if int((objective.weights > 0).sum()) >= 2:
        front = pareto_front(model, objective, constraints, seed=cfg.run.seed, chosen=sol.weights)
        with atomic_path(rd.file("pareto.csv")) as tmp:
            front.write_csv(tmp)
    print_solution(sol, console, run_ids=ids)
    console.print(f"solution: {rd.file('solution.json')}")
    return sol
