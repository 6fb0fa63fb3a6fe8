"""Recipes: the solved mixture in the forms the full pretraining run consumes.

The canonical recipe (YAML or JSON, versioned) holds, per domain, the weight, and at the budget
(`solve.target_tokens`) the tokens, the epochs and the cap they respect, with what the source
holds, its bytes per token and which tokenizer the counts are in; then the constraints and
objective, the predicted scores with intervals, the surrogates' cross-validation summary, the
sweep's config hash and commit, and apart the exporting commit.

Framework formats (each checked in the tests with the framework's own parsing code):

    megatron          a `--data-args-path` file: `weight prefix` pairs, one per line
    olmo-core         an OLMo-core 3.x `SourceMixtureList` YAML (`sources:`)
    olmo-core-dataset an OLMo-core 3.x `SourceMixtureDatasetConfig` (needs the budget)
    hf-datasets       `load_dataset` arguments per source and per-document probabilities
                      for `interleave_datasets`, with the token budget
    csv               one row per domain
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from automixer.errors import AutomixerError
from automixer.io import atomic_write_text
from automixer.mixture import WeightIssue, check_weights
from automixer.registry import EXPORT_FORMATS, load, unknown

RECIPE_VERSION = 2
TEXT_COLUMN = "text"
"""The one text column every Hugging Face source is renamed to."""


class NeedsBudget(AutomixerError):
    """A format that cannot be written for this recipe (without the run's token budget, or
    for a domain held in another framework's token files): skipped unless asked for by name."""


def _token_files(
    recipe: Mapping[str, Any], domain: str, fmt: str, reader: str
) -> list[dict] | None:
    """A token-file domain's files (path, tokens) when they are in `fmt`; None for a text
    domain; `NeedsBudget` when they are in another framework's format."""
    tokens = recipe["mixture"][domain].get("source", {}).get("tokens")
    if tokens is None:
        return None
    if tokens["format"] != fmt:
        raise NeedsBudget(
            f"{reader} does not read {tokens['format']} token files (domain '{domain}')"
        )
    return list(tokens["files"])


def build_recipe(
    *,
    weights: Mapping[str, float],
    target_tokens: float | None,
    max_epochs: float,
    supply: Mapping[str, Mapping[str, Any]],
    tokens_in: str,
    sources: Mapping[str, Mapping[str, Any]],
    solution: Mapping[str, Any],
    constraints: Mapping[str, Any],
    objective: Mapping[str, float],
    cv_summary: Mapping[str, Any],
    sweep: Mapping[str, Any],
    exported_by: Mapping[str, Any],
    export: Mapping[str, Any],
    phases: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The canonical recipe. With `phases` (each `name`, `share` of the run's tokens and its
    own mixture `weights`, in order), `weights` is the whole run's (the phases summed) and the
    recipe lists the phases with where each starts (`phase_recipe` gives one phase's recipe).
    `supply` maps each domain to what its source holds (`automixer.budget.DomainSupply.to_dict()`
    plus `documents` or, better, `mean_tokens_per_document` measured on what was read);
    `sources` to how to read it (source, licence, path). A domain above its repetition cap at
    the budget is an error: the solution was solved for another budget or other data."""
    w = check_weights(weights, list(weights))
    mix: dict[str, Any] = {}
    over = []
    for d, share in w.items():
        s = supply[d]
        available = float(s["available_tokens"])
        docs = float(s.get("documents") or 0)
        per_doc = s.get("mean_tokens_per_document") or (available / docs if docs else None)
        tokens = share * target_tokens if target_tokens is not None else None
        epochs = tokens / available if tokens is not None and available > 0 else None
        if epochs is not None and epochs > max_epochs * (1 + 1e-6):
            over.append(f"{d} {epochs:.3g} epochs")
        mix[d] = {
            "weight": round(share, 8),
            "tokens": round(tokens) if tokens is not None else None,
            "epochs": epochs,
            **{k: s[k] for k in ("available_tokens", "available_basis", "source_bytes")},
            "bytes_per_token": s["bytes_per_token"],
            "mean_tokens_per_document": round(per_doc, 3) if per_doc else None,
            **sources[d],
        }
    if over:
        raise AutomixerError(
            f"the solution breaks the repetition cap of {max_epochs:g} epochs at "
            f"{target_tokens:.4g} tokens ({', '.join(over)}); run `automixer solve` again",
            field="solve.target_tokens",
        )
    return {
        "automixer_recipe": RECIPE_VERSION,
        **({"phases": _phase_list(phases, target_tokens, export)} if phases else {}),
        "target_tokens": int(target_tokens) if target_tokens is not None else None,
        "max_epochs": max_epochs,
        "tokens_in": tokens_in,
        "mixture": mix,
        "constraints": dict(constraints),
        "objective": dict(objective),
        "predicted": dict(solution.get("predicted", {})),
        "predicted_objective": dict(solution.get("objective", {})),
        "checks": {
            k: solution.get(k) for k in ("best_run", "optimism_gap", "nearest_run", "warnings")
        },
        "surrogates": dict(cv_summary),
        "config_hash": sweep.get("config_hash"),
        "sweep": dict(sweep),
        "exported_by": dict(exported_by),
        "export": dict(export),
    }


def _phase_list(
    phases: Sequence[Mapping[str, Any]], target_tokens: float | None, export: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Each phase with its share, its mixture and (with a budget) the token and the optimizer
    step, at `export.global_batch_size` tokens a step, at which it starts."""
    out, start = [], 0.0
    batch = int(export.get("global_batch_size") or 0)
    for p in phases:
        weights = check_weights(p["weights"], list(p["weights"]))
        entry: dict[str, Any] = {"name": str(p["name"]), "share": float(p["share"])}
        if target_tokens is not None:
            tokens = float(p["share"]) * target_tokens
            entry |= {
                "start_tokens": round(start),
                "tokens": round(tokens),
                "start_step": round(start / batch) if batch else None,
            }
            start += tokens
        entry["weights"] = {d: round(w, 8) for d, w in weights.items()}
        out.append(entry)
    return out


def phase_recipe(recipe: Mapping[str, Any], k: int) -> dict[str, Any]:
    """Phase k of a phased recipe as a recipe of its own: the phase's mixture over the phase's
    tokens (what a framework trains during that phase), the whole run's epochs kept beside."""
    phase = recipe["phases"][k]
    budget = phase.get("tokens")
    mix = {
        d: {
            **v,
            "weight": phase["weights"].get(d, 0.0),
            "tokens": round(phase["weights"].get(d, 0.0) * budget) if budget else None,
        }
        for d, v in recipe["mixture"].items()
    }
    out = {k_: v for k_, v in recipe.items() if k_ != "phases"}
    return out | {"mixture": mix, "target_tokens": budget, "phase": dict(phase)}


def recipe_weights(recipe: Mapping[str, Any]) -> dict[str, float]:
    return {d: float(v["weight"]) for d, v in recipe["mixture"].items()}


def _used(recipe: Mapping[str, Any]) -> list[str]:
    return [d for d, v in recipe["mixture"].items() if v["weight"] > 0]


# -- exporters --------------------------------------------------------------------------------


def to_yaml(recipe: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(recipe), sort_keys=False, allow_unicode=True)


def to_json(recipe: Mapping[str, Any]) -> str:
    return json.dumps(recipe, indent=2) + "\n"


def megatron_prefix(recipe: Mapping[str, Any], domain: str) -> str:
    """The prefix Megatron's preprocessing writes for a domain: `<path>_<json key>_document`."""
    key = recipe.get("export", {}).get("megatron_json_key", TEXT_COLUMN)
    return f"{recipe['mixture'][domain]['path']}_{key}_document"


def to_megatron(recipe: Mapping[str, Any]) -> str:
    """A file for Megatron-LM's `--data-args-path`: `weight prefix` pairs, one per line (the
    file is split on whitespace, so it holds nothing else)."""
    lines = []
    for d in _used(recipe):
        weight = recipe["mixture"][d]["weight"]
        files = _token_files(recipe, d, "megatron", "Megatron-LM")
        if files is None:
            lines.append(f"{weight:.8f} {megatron_prefix(recipe, d)}\n")
            continue
        total = sum(f["tokens"] for f in files)  # the domain's weight, split by tokens
        lines += [f"{weight * f['tokens'] / total:.8f} {f['path']}\n" for f in files]
    return "".join(lines)


def _olmo_sources(recipe: Mapping[str, Any]) -> list[dict[str, Any]]:
    max_epochs = float(recipe.get("max_epochs") or 1.0)
    names = _used(recipe)
    total = sum(recipe["mixture"][d]["weight"] for d in names)
    return [
        {
            "source_name": d,
            "target_ratio": recipe["mixture"][d]["weight"] / total,
            "paths": [f["path"] for f in files]
            if (files := _token_files(recipe, d, "numpy", "OLMo-core"))
            else [f"{recipe['mixture'][d]['path']}/*.npy"],
            # OLMo-core allows needed <= available * max_source_fraction * max_repetition_ratio.
            "max_repetition_ratio": max(1.0, max_epochs),
            "max_source_fraction": min(1.0, max_epochs),
        }
        for d in names
    ]


def to_olmo_core(recipe: Mapping[str, Any]) -> str:
    """An OLMo-core 3.x `SourceMixtureList` (read with `SourceMixtureList.from_yaml`)."""
    return yaml.safe_dump({"sources": _olmo_sources(recipe)}, sort_keys=False)


def to_olmo_core_dataset(recipe: Mapping[str, Any]) -> str:
    """An OLMo-core 3.x `SourceMixtureDatasetConfig`: the source list, the requested tokens,
    the global batch size and the seed."""
    if recipe.get("target_tokens") is None:
        raise NeedsBudget("OLMo-core's requested_tokens needs solve.target_tokens")
    export = recipe.get("export", {})
    cfg = {
        "source_list": {"sources": _olmo_sources(recipe)},
        "requested_tokens": int(recipe["target_tokens"]),
        "global_batch_size": int(export.get("global_batch_size", 4 * 1024 * 1024)),
        "seed": int(export.get("seed", 0)),
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def document_probabilities(
    token_weights: Sequence[float], mean_tokens_per_document: Sequence[float]
) -> list[float]:
    """Per-document sampling probabilities that give these token shares: a domain whose
    documents are k times longer is drawn k times less often."""
    raw = [w / max(m, 1e-12) for w, m in zip(token_weights, mean_tokens_per_document, strict=True)]
    total = sum(raw)
    return [r / total for r in raw]


def _hf_source(entry: Mapping[str, Any]) -> dict[str, Any]:
    src = entry["source"]
    if "tokens" in src:
        raise NeedsBudget("datasets reads text, not token files")
    if "hf" in src:
        hf = src["hf"]
        return {
            "load_dataset": {
                "path": hf["path"],
                "name": hf.get("name"),
                "split": hf.get("split", "train"),
                "revision": hf.get("revision"),
                "data_files": hf.get("data_files"),
                "streaming": bool(hf.get("streaming", False)),
            },
            "text_field": src.get("text_field", TEXT_COLUMN),
        }
    if "files" in src:
        builder = {"jsonl": "json", "parquet": "parquet", "text": "text"}
        fmt = src.get("format", "auto")
        return {
            "load_dataset": {
                "path": builder.get(fmt, "json"),
                "data_files": src["files"],
                "split": "train",
                "streaming": True,
            },
            "text_field": src.get("text_field", TEXT_COLUMN),
        }
    return {"automixer_builtin": src.get("builtin"), "text_field": TEXT_COLUMN}


def to_hf_datasets(recipe: Mapping[str, Any]) -> str:
    """Arguments for `datasets.interleave_datasets`: `load_dataset` arguments per source, the
    text column renamed to one name, per-document probabilities converted from the token
    weights with each domain's mean tokens per document, and the token budget."""
    names = _used(recipe)
    mix = recipe["mixture"]
    weights = [mix[d]["weight"] for d in names]
    per_doc = [float(mix[d]["mean_tokens_per_document"] or 1.0) for d in names]
    probs = document_probabilities(weights, per_doc)
    budget = recipe.get("target_tokens")
    # Expected tokens per drawn document, to turn the budget into a number of documents.
    per_draw = sum(p * m for p, m in zip(probs, per_doc, strict=True))
    out: dict[str, Any] = {
        "note": (
            "probabilities are per document (interleave_datasets draws documents); they give "
            "the token weights given each source's mean tokens per document. Rename each "
            f"source's text_field to '{TEXT_COLUMN}' before interleaving; take `documents` "
            "documents of the interleaved stream for the token budget."
        ),
        "text_column": TEXT_COLUMN,
        "tokens_in": recipe.get("tokens_in"),
        "sources": [{"domain": d, **_hf_source(mix[d])} for d in names],
        "token_weights": weights,
        "mean_tokens_per_document": per_doc,
        "probabilities": probs,
        "stopping_strategy": "all_exhausted",
        "seed": int(recipe.get("export", {}).get("seed", 0)),
        "target_tokens": budget,
        "documents": round(budget / per_draw) if budget else None,
        "tokens_per_source": [mix[d]["tokens"] for d in names],
    }
    return json.dumps(out, indent=2) + "\n"


def to_csv(recipe: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    cols = ["weight", "tokens", "epochs", "available_tokens", "available_basis", "bytes_per_token"]
    writer.writerow(["domain", *cols])
    for d, v in recipe["mixture"].items():
        writer.writerow([d, *("" if v.get(c) is None else v[c] for c in cols)])
    return buf.getvalue()


WHOLE_RUN_FORMATS = ("yaml", "json", "csv")
"""Formats that hold the whole run, phases included; the others get one file per phase."""


def export(recipe: Mapping[str, Any], fmt: str, folder: Path) -> Path:
    """Write one format into `folder`; `NeedsBudget` when the format needs the budget."""
    if fmt not in EXPORT_FORMATS:
        raise AutomixerError(unknown("format", fmt, list(EXPORT_FORMATS)), field="--format")
    name, spec = EXPORT_FORMATS[fmt]
    text = load(spec)(recipe)
    path = folder / name
    atomic_write_text(path, text)
    return path


def export_phases(recipe: Mapping[str, Any], fmt: str, folder: Path) -> list[Path]:
    """`export`, with one file per phase for a phased recipe in a framework's format
    (`megatron_blend.<phase>.txt`, ...: each read by the framework for its phase, starting at
    the phase's `start_step` / `start_tokens` in the canonical recipe)."""
    if not recipe.get("phases") or fmt in WHOLE_RUN_FORMATS:
        return [export(recipe, fmt, folder)]
    if fmt not in EXPORT_FORMATS:
        raise AutomixerError(unknown("format", fmt, list(EXPORT_FORMATS)), field="--format")
    name, spec = EXPORT_FORMATS[fmt]
    stem, dot, suffix = name.rpartition(".")
    texts = [load(spec)(phase_recipe(recipe, k)) for k in range(len(recipe["phases"]))]
    paths = []
    for phase, text in zip(recipe["phases"], texts, strict=True):
        path = folder / f"{stem}.{phase['name']}{dot}{suffix}"
        atomic_write_text(path, text)
        paths.append(path)
    return paths


# -- reading back -----------------------------------------------------------------------------


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A canonical recipe from its YAML or JSON file."""
    p = Path(path)
    if not p.is_file():
        raise AutomixerError("recipe not found", file=p)
    try:
        data = json.loads(p.read_text()) if p.suffix == ".json" else yaml.safe_load(p.read_text())
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AutomixerError(f"malformed recipe: {e}", file=p) from None
    if not isinstance(data, dict) or data.get("automixer_recipe") != RECIPE_VERSION:
        raise AutomixerError(f"not an automixer recipe (version {RECIPE_VERSION})", file=p)
    try:
        check_weights(recipe_weights(data), list(data["mixture"]))
    except (WeightIssue, KeyError, TypeError, ValueError, AttributeError) as e:
        raise AutomixerError(f"bad mixture: {e}", file=p, field="mixture") from None
    return data


def mixed_stream(
    recipe: Mapping[str, Any], config_domains: Mapping[str, Any], seed: int = 0
) -> Any:
    """The mixed document stream of a recipe as a Hugging Face `IterableDataset`: one stream
    per domain (its text as `text`), interleaved with the recipe's per-document probabilities,
    cut at the budget's number of documents when the recipe has one.

    `config_domains` maps domain names to their `DomainSection` (how to read each source)."""
    import datasets

    from automixer.data.sources import iter_raw_documents

    spec = json.loads(to_hf_datasets(recipe))
    names = [s["domain"] for s in spec["sources"]]
    missing = [d for d in names if d not in config_domains]
    if missing:
        raise AutomixerError(f"the config does not define {', '.join(missing)}")
    streams = []
    for i, d in enumerate(names):
        section = config_domains[d]

        def gen(section: Any = section, i: int = i) -> Any:
            for text in iter_raw_documents(section, i):
                yield {TEXT_COLUMN: text}

        streams.append(datasets.IterableDataset.from_generator(gen))
    mixed = datasets.interleave_datasets(
        streams,
        probabilities=spec["probabilities"],
        seed=seed,
        stopping_strategy=spec["stopping_strategy"],
    )
    return mixed.take(spec["documents"]) if spec["documents"] else mixed
