"""`automixer fit RUN_DIR`: cross-validate the surrogates; write surrogates/ and print the
table and the seed-noise check."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console

from automixer.design import sweep_size_warning
from automixer.io import atomic_path, atomic_write_json
from automixer.modeling import FitInputs, FitResult, fit_surrogates
from automixer.rundir import RunDir
from automixer.tracking import Tracker
from automixer.views import fit_progress, print_cv_table, print_fit_summary


def run_fit(
    run_dir: Path, console: Console, *, show_all: bool = False, progress: bool = True
) -> FitResult:
    """Fit; write surrogates/ (cv.csv holds every target and candidate); print the objective's
    targets and the abilities (all targets with `show_all`)."""
    data = FitInputs.load(RunDir.open(run_dir))
    with fit_progress("fit", progress):
        result = fit_surrogates(data)
    rd, s = data.rd, data.rd.config.surrogate
    folder = rd.file("surrogates")
    folder.mkdir(exist_ok=True)
    with atomic_path(folder / "cv.csv") as tmp:
        result.cv.write_csv(tmp)
    atomic_write_json(
        folder / "choice.json",
        {
            **rd.provenance(),
            "runs": len(data.X),
            "choice": result.choice,
            "honest_spearman": result.honest,
        },
    )
    with atomic_path(folder / "oof.parquet") as tmp:
        result.oof.write_parquet(tmp)
    if result.oof_folds is not None:
        with atomic_path(folder / "oof_folds.parquet") as tmp:
            result.oof_folds.write_parquet(tmp)
    with atomic_path(folder / "signal.csv") as tmp:
        result.signal.write_csv(tmp)
    tracker = Tracker.for_run(rd)
    if tracker is not None:
        tracker.summary(
            "fit",
            {f"surrogate.{t}": m for t, m in result.choice.items()},
            {f"oof_spearman.{t}": r for t, r in result.honest.items() if math.isfinite(r)},
        )
    if warning := sweep_size_warning(result.mixtures, len(rd.config.weight_names)):
        console.print(f"[yellow]warning:[/] {warning}")
    title = (
        f"{s.cv_folds}-fold x {s.cv_repeats} grouped out-of-fold cross-validation on "
        f"{len(data.X)} runs ({result.mixtures} mixtures)"
    )
    objective = data.objective()
    shown = [t for t, w in zip(objective.targets, objective.weights, strict=True) if w > 0]
    shown += [t for t in data.targets if t.startswith("ability:") and t not in shown]
    if show_all:
        print_cv_table(result.cv, console, title)
    else:
        print_fit_summary(result, shown, console, title)
        console.print(f"every target and candidate: {folder / 'cv.csv'} (or `fit --all`)")
    shown = shown if not show_all else list(data.targets)
    rho = [result.honest[t] for t in shown if t not in result.constant]
    console.print(
        "out-of-fold Spearman of the chosen surrogates (the choice scored on its own "
        f"out-of-fold predictions), mean over the {len(rho)} targets above: "
        f"{float(np.mean(rho)) if rho else float('nan'):.3f}"
        + (f"; constant in every run: {', '.join(result.constant)}" if result.constant else "")
    )
    _print_signal(result.signal, len(data.targets), console)
    if rd.config.sweep.design == "branched":
        report_anneal_effects(data, shown, result.signal, console)
    return result


def report_anneal_effects(
    data: FitInputs, targets: list[str], signal: pl.DataFrame, console: Console
) -> dict:
    """A branched sweep's crossed block (every main with every shared anneal) read as a
    two-way layout per target: surrogates/anneal_effects.json and a table."""
    from automixer.schedule.branched import anneal_effects

    rd = data.rd
    df = data.runs.filter(
        (pl.col("status") == "done")
        & pl.col("parent").is_not_null()
        & ~pl.col("run_id").str.ends_with("-own")
    )
    noise = dict(zip(signal["target"], signal["seed_noise_sd"], strict=True))
    effects = anneal_effects(
        df["parent"].to_list(),
        [r.split("-")[-1] for r in df["run_id"]],
        {t: df[t].to_numpy() for t in targets if t in df.columns},
        seed=rd.config.run.seed,
    )
    out = {
        **rd.provenance(),
        "mains": effects[0].mains if effects else 0,
        "anneals": effects[0].anneals if effects else 0,
        "level": 0.95,
        "targets": [{**e.__dict__, "seed_noise_sd": noise.get(e.target)} for e in effects],
    }
    atomic_write_json(rd.file("surrogates") / "anneal_effects.json", out)
    if not effects:
        console.print("anneal effects: no complete block of mains x shared anneals finished")
        return out
    from rich.table import Table

    table = Table(
        title=f"the anneal's effect, paired within {out['mains']} mains x {out['anneals']} "
        "shared anneals (95% intervals resampling the mains)"
    )
    for col in ("target", "anneal sd", "F test p", "interaction sd", "main sd", "seed noise sd"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for e in effects:
        table.add_row(
            e.target,
            f"{e.anneal_sd:.4f} [{e.anneal_lo:.4f}, {e.anneal_hi:.4f}]",
            f"{e.p_anneal:.2g}",
            f"{e.interaction_sd:.4f} [{e.interaction_lo:.4f}, {e.interaction_hi:.4f}]",
            f"{e.main_sd:.4f}",
            f"{noise.get(e.target, float('nan')):.4f}",
        )
    console.print(table)
    console.print(
        "anneal sd: how far the anneal mixture alone moves the target (the sd of the "
        "anneals' means over the mains); interaction sd: what main + anneal leaves, the "
        "main x anneal interaction with the anneal's own noise (an upper bound on the "
        "interaction); seed noise sd: whole runs' replicates"
    )
    return out


def _print_signal(signal: pl.DataFrame, n_targets: int, console: Console) -> None:
    weak = signal.filter(pl.col("has_signal").not_())["target"].to_list()
    if signal["has_signal"].is_null().all():
        console.print(
            "[yellow]warning:[/] no replicate runs: seed noise is unmeasured (set sweep.replicates)"
        )
    elif weak:
        console.print(
            f"[yellow]warning:[/] {len(weak)} of {n_targets} targets vary less "
            f"across mixtures than twice their seed noise (no usable signal): "
            f"{', '.join(weak[:6])}{' ...' if len(weak) > 6 else ''}; give the "
            "proxies more tokens or make the domains more distinct"
        )
