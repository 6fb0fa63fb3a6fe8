"""`automixer export`: the solved mixture of a run directory as recipes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console

from automixer.errors import AutomixerError
from automixer.recipes import EXPORTERS, build_recipe, export
from automixer.rundir import RunDir


def recipe_for(rd: RunDir) -> dict[str, Any]:
    sol_path = rd.file("solution.json")
    if not sol_path.is_file():
        raise AutomixerError("no solution.json: run `automixer solve` first", file=rd.path)
    solution = json.loads(sol_path.read_text())
    manifest = json.loads(rd.file("manifest.json").read_text())
    cv_summary: dict[str, Any] = {}
    cv_path = rd.file("surrogates") / "cv.csv"
    choice_path = rd.file("surrogates") / "choice.json"
    if cv_path.is_file() and choice_path.is_file():
        cv = pl.read_csv(cv_path)
        choice = json.loads(choice_path.read_text())["choice"]
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
    recipe = recipe_for(rd)
    folder = rd.file("recipes")
    folder.mkdir(exist_ok=True)
    wanted = formats or list(rd.config.export.formats)
    bad = [f for f in wanted if f not in EXPORTERS]
    if bad:
        raise AutomixerError(
            f"unknown format '{bad[0]}'; choose from {', '.join(EXPORTERS)}", field="--format"
        )
    paths = [export(recipe, f, folder) for f in wanted]
    for p in paths:
        console.print(f"recipe: {p}")
    return paths
