"""`automixer report RUN_DIR`: write report.html."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from automixer.io import atomic_write_text
from automixer.report import build_report
from automixer.rundir import RunDir


def run_report(run_dir: Path, console: Console) -> Path:
    rd = RunDir.open(run_dir)
    out = rd.file("report.html")
    page, trust = build_report(rd)
    atomic_write_text(out, page)
    table = Table(title=f"verdict: {trust.headline}", title_justify="left")
    for col in ("check", "status", "why"):
        table.add_column(col)
    for c in trust.checks:
        table.add_row(c.name, c.status, c.detail)
    console.print(table)
    console.print(f"report: {out}")
    return out
