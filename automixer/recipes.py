"""Recipes: the solved mixture in a form the full pretraining run consumes.

The canonical recipe (YAML or JSON, versioned) holds the domain weights, tokens and epochs per
domain for the target budget, the sources, the tokenizer, the constraints and objective, the
predicted scores with intervals, the surrogates' cross-validation summary, and the sweep's
config hash and commit. Exporters turn it into a Megatron-LM `--data-path` blend, an OLMo-core
source-mixture config, Hugging Face `interleave_datasets` arguments (and `mixed_stream`, which
builds the mixed stream from a recipe), and a CSV. `load_recipe` reads any of them back.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from automixer.errors import AutomixerError
from automixer.io import atomic_write_text
from automixer.mixture import WeightIssue, check_weights
from automixer.registry import EXPORT_FORMATS, load, unknown

RECIPE_VERSION = 1


def build_recipe(
    *,
    weights: Mapping[str, float],
    target_tokens: float,
    domains: Mapping[str, Mapping[str, Any]],
    tokenizer: Mapping[str, Any],
    solution: Mapping[str, Any],
    constraints: Mapping[str, Any],
    objective: Mapping[str, float],
    cv_summary: Mapping[str, Any],
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """`domains` maps each domain to its manifest row (source, licence, tokens_train)."""
    w = check_weights(weights, list(weights))
    mix = {}
    for d, share in w.items():
        available = float(domains.get(d, {}).get("tokens_train") or 0)
        tokens = share * target_tokens
        mix[d] = {
            "weight": round(share, 8),
            "tokens": round(tokens),
            "epochs": tokens / available if available else None,
            "source": domains.get(d, {}).get("source"),
            "licence": domains.get(d, {}).get("licence"),
        }
    return {
        "automixer_recipe": RECIPE_VERSION,
        "target_tokens": int(target_tokens),
        "mixture": mix,
        "tokenizer": dict(tokenizer),
        "constraints": dict(constraints),
        "objective": dict(objective),
        "predicted": dict(solution.get("predicted", {})),
        "predicted_objective": dict(solution.get("objective", {})),
        "checks": {
            k: solution.get(k) for k in ("best_run", "optimism_gap", "nearest_run", "warnings")
        },
        "surrogates": dict(cv_summary),
        **{k: provenance[k] for k in ("config_hash", "commit", "automixer") if k in provenance},
        "sweep": provenance.get("sweep"),
    }


def recipe_weights(recipe: Mapping[str, Any]) -> dict[str, float]:
    return {d: float(v["weight"]) for d, v in recipe["mixture"].items()}


# -- exporters --------------------------------------------------------------------------------


def to_yaml(recipe: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(recipe), sort_keys=False, allow_unicode=True)


def to_json(recipe: Mapping[str, Any]) -> str:
    return json.dumps(recipe, indent=2) + "\n"


def to_megatron(recipe: Mapping[str, Any], data_root: str = "${DATA_ROOT}") -> str:
    """Megatron-LM blend: `--data-path W1 PREFIX1 W2 PREFIX2 ...` (prefixes of indexed
    datasets, one per domain, `<data_root>/<domain>_text_document`)."""
    parts = [
        f"{v['weight']:.8f} {data_root}/{d}_text_document"
        for d, v in recipe["mixture"].items()
        if v["weight"] > 0
    ]
    return "--data-path " + " ".join(parts) + "\n"


def to_olmo_core(recipe: Mapping[str, Any], data_root: str = "${DATA_ROOT}") -> str:
    """OLMo-core `SourceMixtureDatasetConfig` fields as YAML."""
    max_epochs = recipe.get("constraints", {}).get("max_epochs")
    cfg = {
        "requested_tokens": recipe["target_tokens"],
        "seed": 0,
        "source_configs": [
            {
                "source_name": d,
                "target_ratio": v["weight"],
                "max_repetition_ratio": float(max_epochs) if max_epochs else 1.0,
                "paths": [f"{data_root}/{d}/*.npy"],
            }
            for d, v in recipe["mixture"].items()
            if v["weight"] > 0
        ],
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def to_hf_datasets(recipe: Mapping[str, Any]) -> str:
    """Arguments of `datasets.interleave_datasets`: one source per domain and its probability."""
    names = [d for d, v in recipe["mixture"].items() if v["weight"] > 0]
    probs = [recipe["mixture"][d]["weight"] for d in names]
    total = sum(probs)
    return (
        json.dumps(
            {
                "sources": [{"domain": d, "source": recipe["mixture"][d]["source"]} for d in names],
                "probabilities": [p / total for p in probs],
                "stopping_strategy": "all_exhausted",
                "seed": 0,
            },
            indent=2,
        )
        + "\n"
    )


def to_csv(recipe: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["domain", "weight", "tokens", "epochs"])
    for d, v in recipe["mixture"].items():
        writer.writerow([d, v["weight"], v["tokens"], "" if v["epochs"] is None else v["epochs"]])
    return buf.getvalue()


def export(recipe: Mapping[str, Any], fmt: str, folder: Path) -> Path:
    if fmt not in EXPORT_FORMATS:
        raise AutomixerError(unknown("format", fmt, list(EXPORT_FORMATS)), field="--format")
    name, spec = EXPORT_FORMATS[fmt]
    fn = load(spec)
    path = folder / name
    atomic_write_text(path, fn(recipe))
    return path


# -- reading back -----------------------------------------------------------------------------


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A canonical recipe from its YAML or JSON file."""
    p = Path(path)
    if not p.is_file():
        raise AutomixerError("recipe not found", file=p)
    try:
        data = json.loads(p.read_text()) if p.suffix == ".json" else yaml.safe_load(p.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise AutomixerError(f"malformed recipe: {e}", file=p) from None
    if not isinstance(data, dict) or data.get("automixer_recipe") != RECIPE_VERSION:
        raise AutomixerError(f"not an automixer recipe (version {RECIPE_VERSION})", file=p)
    try:
        check_weights(recipe_weights(data), list(data["mixture"]))
    except (WeightIssue, KeyError, TypeError) as e:
        raise AutomixerError(f"bad mixture: {e}", file=p, field="mixture") from None
    return data


def weights_from_export(text: str, fmt: str) -> dict[str, float]:
    """The weights an exported file carries (for round-trip checks and tools)."""
    if fmt in ("yaml", "json"):
        data = yaml.safe_load(text) if fmt == "yaml" else json.loads(text)
        return recipe_weights(data)
    if fmt == "megatron":
        parts = text.split()[1:]
        return {
            parts[i + 1].rsplit("/", 1)[-1].removesuffix("_text_document"): float(parts[i])
            for i in range(0, len(parts), 2)
        }
    if fmt == "olmo-core":
        data = yaml.safe_load(text)
        return {s["source_name"]: float(s["target_ratio"]) for s in data["source_configs"]}
    if fmt == "hf-datasets":
        data = json.loads(text)
        return {s["domain"]: p for s, p in zip(data["sources"], data["probabilities"], strict=True)}
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        return {r["domain"]: float(r["weight"]) for r in rows}
    raise AutomixerError(f"unknown format '{fmt}'")


def mixed_stream(
    recipe: Mapping[str, Any], config_domains: Mapping[str, Any], seed: int = 0
) -> Any:
    """The mixed document stream of a recipe as a Hugging Face `IterableDataset`
    (`interleave_datasets` over one stream per domain, with the recipe's probabilities).

    `config_domains` maps domain names to their `DomainSection` (how to read each source)."""
    import datasets

    from automixer.data.sources import iter_raw_documents

    names = [d for d, v in recipe["mixture"].items() if v["weight"] > 0]
    missing = [d for d in names if d not in config_domains]
    if missing:
        raise AutomixerError(f"the config does not define {', '.join(missing)}")
    streams = []
    for i, d in enumerate(names):
        section = config_domains[d]

        def gen(section: Any = section, i: int = i) -> Any:
            for text in iter_raw_documents(section, i):
                yield {"text": text}

        streams.append(datasets.IterableDataset.from_generator(gen))
    probs = [recipe["mixture"][d]["weight"] for d in names]
    total = sum(probs)
    return datasets.interleave_datasets(
        streams,
        probabilities=[p / total for p in probs],
        seed=seed,
        stopping_strategy="all_exhausted",
    )
