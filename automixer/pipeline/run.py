"""`automixer run CONFIG`: the whole loop, data -> sweep -> fit -> solve -> export -> report."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from automixer.pipeline.data import run_data
from automixer.pipeline.export import run_export
from automixer.pipeline.fit import run_fit
from automixer.pipeline.report import run_report
from automixer.pipeline.solve import run_solve
from automixer.pipeline.sweep import run_sweep
from automixer.rundir import RunDir


def run_all(config_path: Path, *, progress: bool = True, console: Console | None = None) -> RunDir:
    """Every stage once (the data stage too: the sweep reuses its result); prints where
    everything is."""
    out = console or Console(quiet=True)
    prepared = run_data(config_path, progress=progress, console=console)
    run_dir = run_sweep(config_path, console=console, progress=progress, prepared=prepared)
    run_fit(run_dir, out)
    run_solve(run_dir, out)
    run_export(run_dir, None, out)
    run_report(run_dir, out)
    out.print(
        f"run directory: {run_dir} (config.yaml, manifest.json, ledger.db, runs.parquet, "
        "surrogates/, solution.json, pareto.csv, recipes/, report.html)"
    )
    return RunDir.open(run_dir)
