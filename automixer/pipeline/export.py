"""`automixer export RUN_DIR [-f FORMAT] [--paths FILE]`: the solved mixture as recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

import automixer
from automixer.budget import DomainSupply, Supply
from automixer.config import Config, DomainSection, data_path_problem
from automixer.data.tokenfiles import token_file_sizes
from automixer.errors import AutomixerError
from automixer.io import git_commit
from automixer.recipes import NeedsBudget, build_recipe, export_phases
from automixer.registry import EXPORT_FORMATS, unknown
from automixer.rundir import RunDir


def _source(d: DomainSection, index: int) -> dict[str, Any]:
    """How to read a domain's source, as plain data (token files: each file with its tokens)."""
    if d.tokens is not None:
        return {"tokens": {**d.tokens.model_dump(mode="json"), "files": token_file_sizes(d, index)}}
    if d.hf is not None:
        return {"hf": d.hf.model_dump(mode="json"), "text_field": d.text_field}
    if d.files is not None:
        return {"files": list(d.files), "format": d.format, "text_field": d.text_field}
    return {"builtin": d.builtin}


def _per_document(row: dict[str, Any], supply: DomainSupply) -> dict[str, Any]:
    """Mean tokens per document, measured on the documents read (a declared source size says
    nothing of its documents' lengths), in the recipe's tokens."""
    docs = row["documents_train"] + row["documents_val"]
    size = row["bytes_train"] + row["bytes_val"]
    return {
        "documents": row.get("source_documents"),
        "mean_tokens_per_document": size / docs / supply.bytes_per_token if docs else None,
    }


def read_paths(path: Path | None, config: Config) -> dict[str, str]:
    """The per-domain data paths: the config's `export.paths`, updated from a YAML/JSON file."""
    paths = dict(config.export.paths)  # checked when the config was read
    if path is None:
        return paths
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise AutomixerError(f"cannot read the paths file: {e}", file=path) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise AutomixerError("expected a mapping of domain -> path", file=path)
    extra = [d for d in data if d not in config.domain_names]
    if extra:
        raise AutomixerError(f"unknown domain '{extra[0]}'", file=path)
    for d, v in data.items():
        check_path(v, file=path, field=str(d))
    return paths | {str(k): v for k, v in data.items()}


def check_path(value: str, *, file: Path | str | None = None, field: str | None = None) -> None:
    problem = data_path_problem(value)
    if problem:
        raise AutomixerError(problem, file=file, field=field)


def recipe_for(rd: RunDir, paths: dict[str, str] | None = None) -> dict[str, Any]:
    cfg = rd.config
    solution = rd.solution()
    manifest = rd.manifest()
    supply = Supply.from_manifest(manifest, cfg)
    cv_summary: dict[str, Any] = {}
    choice = rd.choice()
    if choice is not None:
        honest = rd.honest_spearman()
        cv_summary = {t: {"model": m, "spearman": honest.get(t)} for t, m in choice.items()}
    paths = paths if paths is not None else dict(cfg.export.paths)
    rows = manifest["domains"]
    schedule = solution.get("schedule")
    if cfg.phases and not isinstance(schedule, dict):
        raise AutomixerError(
            "no schedule for this config's phases (solved before phases were added?); run "
            "`automixer solve` again",
            file=rd.file("solution.json"),
        )
    return build_recipe(
        weights=schedule["total"] if isinstance(schedule, dict) else solution["weights"],
        phases=schedule["phases"] if isinstance(schedule, dict) else (),
        target_tokens=cfg.solve.target_tokens,
        max_epochs=cfg.solve.max_epochs,
        supply={d: {**s.to_dict(), **_per_document(rows[d], s)} for d, s in supply.domains.items()},
        tokens_in=supply.tokenizer,
        sources={
            d.name: {
                "source": _source(d, i),
                "licence": rows[d.name].get("licence"),
                "path": paths.get(d.name, d.name),
                # a quality tier: how its documents were picked from the source
                **({"tier": rows[d.name]["tier"]} if rows[d.name].get("tier") else {}),
            }
            for i, d in enumerate(cfg.domains)
        },
        solution=solution,
        constraints={
            "bounds": {d: list(b) for d, b in cfg.solve.bounds.items()},
            "max_epochs": cfg.solve.max_epochs,
            "prior_penalty": cfg.solve.prior_penalty,
            "penalty": cfg.solve.penalty,
            "natural_floor": cfg.solve.natural_floor,
            "lcb_k": solution.get("lcb_k"),
            "trust_radius": solution.get("trust_radius"),
        },
        objective=cfg.solve.objective,
        cv_summary=cv_summary,
        sweep={
            "name": rd.path.name,
            "config_hash": manifest.get("config_hash", rd.config_hash),
            "commit": manifest.get("commit"),
            "solved_at_commit": solution.get("commit"),
        },
        exported_by={"commit": git_commit(), "automixer": automixer.__version__},
        export={
            "megatron_json_key": cfg.export.megatron_json_key,
            "global_batch_size": cfg.export.global_batch_size,
            "seed": cfg.export.seed,
        },
    )


def run_export(
    run_dir: Path, formats: list[str] | None, console: Console, paths_file: Path | None = None
) -> list[Path]:
    rd = RunDir.open(run_dir)
    wanted = formats or list(rd.config.export.formats)
    bad = [f for f in wanted if f not in EXPORT_FORMATS]
    if bad:
        raise AutomixerError(unknown("format", bad[0], list(EXPORT_FORMATS)), field="--format")
    paths = read_paths(paths_file, rd.config)
    recipe = recipe_for(rd, paths)
    folder = rd.file("recipes")
    folder.mkdir(exist_ok=True)
    written = []
    for f in wanted:
        try:
            written.extend(export_phases(recipe, f, folder))
        except NeedsBudget as e:
            if formats:  # asked for by name: an error
                raise AutomixerError(e.message, field="--format") from None
            console.print(f"[yellow]skipped[/] {f}: {e.message}")
    for p in written:
        console.print(f"recipe: {p}")
    missing = [d.name for d in rd.config.domains if d.name not in paths and d.tokens is None]
    if missing and {"megatron", "olmo-core", "olmo-core-dataset"} & set(wanted):
        console.print(
            f"note: no data path for {', '.join(missing)}; the framework recipes name them "
            "relative to where the trainer runs (set export.paths or --paths)"
        )
    return written
