"""`automixer export RUN_DIR [-f FORMAT]`: the solved mixture as recipes in recipes/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console

from automixer.errors import AutomixerError
from automixer.recipes import build_recipe, export
from automixer.registry import EXPORT_FORMATS, unknown
from automixer.rundir import RunDir


def recipe_for(rd: RunDir) -> dict[str, Any]:
    solution = rd.solution()
    manifest = rd.manifest()
    cv_summary: dict[str, Any] = {}
    cv_path = rd.file("surrogates") / "cv.csv"
    choice = rd.choice()
    if cv_path.is_file() and choice is not None:
        cv = pl.read_csv(cv_path)
        rho = {(r["target"], r["model"]): r["spearman"] for r in cv.iter_rows(named=True)}
        cv_summary = {t: {"model": m, "spearman": rho.get((t, m))} for t, m in choice.items()}
    cfg = rd.config
    return build_recipe(
        weights=solution["weights"],
        target_tokens=cfg.export.target_tokens,
        domains=manifest["domains"],
        tokenizer=manifest["tokenizer"],
        solution=solution,
        constraints={
            "bounds": {d: list(b) for d, b in cfg.solve.bounds.items()},
            "max_epochs": cfg.solve.max_epochs,
            "target_tokens": cfg.solve.target_tokens,
            "prior_penalty": cfg.solve.prior_penalty,
            "penalty": cfg.solve.penalty,
        },
        objective=cfg.solve.objective,
        cv_summary=cv_summary,
        provenance={**rd.provenance(), "sweep": rd.path.name},
    )


def run_export(run_dir: Path, formats: list[str] | None, console: Console) -> list[Path]:
    rd = RunDir.open(run_dir)
    wanted = formats or list(rd.config.export.formats)
    bad = [f for f in wanted if f not in EXPORT_FORMATS]
    if bad:
        raise AutomixerError(unknown("format", bad[0], list(EXPORT_FORMATS)), field="--format")
    recipe = recipe_for(rd)
    folder = rd.file("recipes")
    folder.mkdir(exist_ok=True)
    paths = [export(recipe, f, folder) for f in wanted]
    for p in paths:
        console.print(f"recipe: {p}")
    return paths
