"""`automixer report RUN_DIR`: write report.html."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from automixer.io import atomic_write_text
from automixer.report import build_report
from automixer.rundir import RunDir


def run_report(run_dir: Path, console: Console) -> Path:
    rd = RunDir.open(run_dir)
    out = rd.file("report.html")
    page, trust = build_report(rd)
    atomic_write_text(out, page)
    console.print(f"verdict: {trust.headline}")
    for c in trust.checks:
        console.print(f"  {c.status:7s} {c.name}: {c.detail}", highlight=False)
    console.print(f"report: {out}")
    return out
