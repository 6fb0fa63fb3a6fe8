"""`automixer fit RUN_DIR`: cross-validate the surrogates; write surrogates/ and print the
table and the seed-noise check."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich.console import Console

from automixer.io import atomic_path, atomic_write_json
from automixer.modeling import FitInputs, FitResult, fit_surrogates
from automixer.rundir import RunDir
from automixer.views import print_cv_table


def run_fit(run_dir: Path, console: Console) -> FitResult:
    data = FitInputs.load(RunDir.open(run_dir))
    result = fit_surrogates(data)
    rd, s = data.rd, data.rd.config.surrogate
    folder = rd.file("surrogates")
    folder.mkdir(exist_ok=True)
    with atomic_path(folder / "cv.csv") as tmp:
        result.cv.write_csv(tmp)
    atomic_write_json(
        folder / "choice.json", {**rd.provenance(), "runs": len(data.X), "choice": result.choice}
    )
    with atomic_path(folder / "oof.parquet") as tmp:
        result.oof.write_parquet(tmp)
    with atomic_path(folder / "signal.csv") as tmp:
        result.signal.write_csv(tmp)
    print_cv_table(
        result.cv,
        console,
        f"{s.cv_folds}-fold x {s.cv_repeats} out-of-fold cross-validation on {len(data.X)} runs",
    )
    flat = result.constant
    console.print(
        f"out-of-fold Spearman of the chosen surrogates: mean {result.mean_spearman:.4f}"
        + (
            f" over {len(data.targets) - len(flat)} targets; {len(flat)} constant across the "
            f"runs have no rank to predict: {', '.join(flat[:4])}{' ...' if len(flat) > 4 else ''}"
            if flat
            else ""
        )
    )
    _print_signal(result.signal, len(data.targets), console)
    return result


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
    abilities = signal.filter(pl.col("target").str.starts_with("ability:"))
    for r in abilities.iter_rows(named=True):
        console.print(
            f"  {r['target']}: spread {r['mixture_spread_sd']:.4g} vs seed noise "
            f"{r['seed_noise_sd']:.4g} (x{r['signal_to_noise']:.1f})"
        )
