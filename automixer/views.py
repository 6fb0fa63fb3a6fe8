"""What people see: the cross-validation table, a solution with its honesty checks, and the
progress bar of long work."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from automixer.solve import Solution


def progress_bar(info: str, enabled: bool) -> Progress:
    """A bar on stderr: the task's description, the bar, `info` (a rich column template over
    the task's fields), elapsed time and the estimate of what is left."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn(info),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def print_solution(sol: Solution, console: Console, run_ids: Sequence[str] | None = None) -> None:
    t = Table(title=f"optimal mixture ({sol.method})", title_justify="left")
    t.add_column("domain")
    t.add_column("weight", justify="right")
    for d, w in sorted(sol.weights_dict().items(), key=lambda kv: -kv[1]):
        t.add_row(d, f"{w:.4f}")
    console.print(t)
    interval = sol.interval()
    iv = f" [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else ""
    console.print(f"predicted objective {sol.objective:+.3f}{iv} (standardised; higher is better)")
    if sol.best_run is not None:
        label = run_ids[sol.best_run] if run_ids else str(sol.best_run)
        console.print(
            f"best observed run {label}: measured {sol.best_run_objective:+.3f}, "
            f"predicted {sol.best_run_predicted:+.3f}; optimism gap "
            f"{sol.optimism_gap:+.3f}"
        )
    if sol.nearest_distance is not None:
        console.print(
            f"nearest trained run at total-variation distance "
            f"{sol.nearest_distance:.3f} (runs' own nearest neighbours: up to "
            f"{sol.typical_distance:.3f})"
        )
    for note in sol.warnings:
        console.print(f"[yellow]warning:[/] {note}")


def print_cv_table(table: pl.DataFrame, console: Console, title: str) -> None:
    show = Table(title=title, title_justify="left")
    for col in ("target", "model", "spearman", "sd", "rmse"):
        show.add_column(col, justify="left" if col in ("target", "model") else "right")
    for row in table.iter_rows(named=True):
        show.add_row(
            row["target"],
            row["model"],
            f"{row['spearman']:.4f}",
            f"{row['spearman_sd']:.4f}",
            f"{row['rmse']:.4g}",
        )
    console.print(show)
