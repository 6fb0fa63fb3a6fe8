"""The names of every pluggable part, one list each, and where each part lives.

The config is checked against these lists when it is read, so a wrong name is one line naming
the file, the YAML line and the field, before anything runs. Implementations are named by
`module:attribute` and imported only when used, so reading a config stays fast.
"""

from __future__ import annotations

import importlib
from difflib import get_close_matches
from typing import Any

ABILITIES = ("code", "math", "stem", "commonsense")
"""The four abilities that the built-in eval suites are grouped into."""

SURROGATES: dict[str, str] = {
    "linear": "automixer.surrogates.estimators:LinearSurrogate",
    "lightgbm": "automixer.surrogates.estimators:LightGBMSurrogate",
    "loglinear": "automixer.surrogates.estimators:LogLinearSurrogate",
    "gp": "automixer.surrogates.gp:GPSurrogate",
    "ensemble": "automixer.surrogates.ensemble:linear_ensemble",
}
"""Surrogates by name; `auto` (per-target choice by cross-validation) chooses among them."""

SOLVERS: dict[str, str] = {
    "exact": "multi-start SLSQP on the surrogate",
    "topk": "RegMix: simulate many mixtures, average the top k",
    "tpe": "Optuna's TPE sampler",
    "cmaes": "Optuna's CMA-ES sampler",
}
"""Solvers by name (implemented in `automixer.solve.solvers`), with what each does."""

EXECUTORS: dict[str, str] = {
    "local": "automixer.sweep.executors:run_local",
    "ray": "automixer.sweep.executors:run_ray",
}
"""Where a sweep's workers run."""

EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "yaml": ("recipe.yaml", "automixer.recipes:to_yaml"),
    "json": ("recipe.json", "automixer.recipes:to_json"),
    "megatron": ("megatron_blend.txt", "automixer.recipes:to_megatron"),
    "olmo-core": ("olmo_core_sources.yaml", "automixer.recipes:to_olmo_core"),
    "olmo-core-dataset": ("olmo_core_dataset.yaml", "automixer.recipes:to_olmo_core_dataset"),
    "hf-datasets": ("hf_interleave.json", "automixer.recipes:to_hf_datasets"),
    "csv": ("recipe.csv", "automixer.recipes:to_csv"),
}
"""Recipe formats: the file each writes and the function that writes it."""


def unknown(kind: str, name: str, names: list[str] | tuple[str, ...]) -> str:
    """The one-line message for a name that is not in a registry."""
    near = get_close_matches(name, list(names), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return f"unknown {kind} '{name}'{hint}; choose from {', '.join(names)}"


def load(spec: str) -> Any:
    """The object a `module:attribute` spec names."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)
