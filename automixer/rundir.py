"""The run directory: where one experiment's outputs live, named by the config's hash.

<out_dir>/<name>-<config hash>/
    config.yaml      the resolved config (defaults filled in)
    manifest.json    sources, token counts, tokenizer hash, commit, config hash
    ledger.db        the sweep's ledger (SQLite by default)
    runs.parquet     one row per proxy
    ...              surrogates, solution, recipes, report
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

import automixer
from automixer.config import Config, config_hash, dump_config, load_config, slug
from automixer.errors import AutomixerError
from automixer.io import atomic_write_json, atomic_write_text, git_commit

OOF_COLUMNS = ("run_id", "target", "model", "actual", "predicted")
"""surrogates/oof.parquet: the deployed choice's out-of-fold predictions."""
SIGNAL_COLUMNS = ("target", "seed_noise_sd", "mixture_spread_sd", "signal_to_noise")
"""surrogates/signal.csv: seed noise against the spread between mixtures."""


@dataclass(frozen=True)
class RunDir:
    path: Path
    config: Config
    config_hash: str

    @classmethod
    def for_config(cls, config: Config) -> RunDir:
        h = config_hash(config)
        return cls(Path(config.run.out_dir) / f"{slug(config.run.name)}-{h}", config, h)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory (as written by a previous command)."""
        p = Path(path)
        cfg = p / "config.yaml"
        if not cfg.is_file():
            raise AutomixerError("not a run directory (no config.yaml)", file=p)
        config = load_config(cfg)
        return cls(p, config, config_hash(config))

    def file(self, name: str) -> Path:
        return self.path / name

    def _json(self, name: str, made_by: str) -> dict[str, Any]:
        path = self.file(name)
        if not path.is_file():
            raise AutomixerError(f"no {name}: run `automixer {made_by}` first", file=self.path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AutomixerError(f"unreadable: {e}", file=path) from None
        if not isinstance(data, dict):
            raise AutomixerError("not a JSON object", file=path)
        return data

    def _weights(
        self, data: dict[str, Any], key: str, name: str, names: list[str] | None = None
    ) -> None:
        """`data[key]` must be a mixture of this config's domains, or of `names`
        (check_weights)."""
        from automixer.mixture import WeightIssue, check_weights

        value = data.get(key)
        if not isinstance(value, dict):
            raise AutomixerError(f"no '{key}' mixture (edited by hand?)", file=self.file(name))
        try:
            data[key] = check_weights(value, names or self.config.domain_names)
        except (WeightIssue, TypeError, ValueError) as e:
            raise AutomixerError(f"{key}: {e}", file=self.file(name)) from None

    def manifest(self) -> dict[str, Any]:
        """manifest.json: sources, token counts per domain, tokenizer, natural weights
        (checked: every domain present, the natural weights a mixture)."""
        data = self._json("manifest.json", "data")
        domains = data.get("domains")
        missing = [
            d for d in self.config.domain_names if not isinstance(domains, dict) or d not in domains
        ]
        if missing:
            raise AutomixerError(
                f"no record of domain '{missing[0]}' (run `automixer data` again)",
                file=self.file("manifest.json"),
            )
        self._weights(data, "natural_weights", "manifest.json")
        return data

    def solution(self) -> dict[str, Any]:
        """solution.json: the solved weights, predictions with intervals, honesty checks
        (checked: the weights a mixture of the config's domains, the objective a number)."""
        data = self._json("solution.json", "solve")
        self._weights(data, "weights", "solution.json", self.config.weight_names)
        objective = data.get("objective")
        predicted = objective.get("predicted") if isinstance(objective, dict) else None
        if not isinstance(predicted, int | float) or not math.isfinite(predicted):
            raise AutomixerError(
                "no predicted objective (edited by hand?)", file=self.file("solution.json")
            )
        return data

    def _choice_json(self) -> dict[str, Any] | None:
        if not (self.file("surrogates") / "choice.json").is_file():
            return None
        data = self._json("surrogates/choice.json", "fit")
        choice = data.get("choice")
        if not isinstance(choice, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in choice.items()
        ):
            raise AutomixerError(
                "no 'choice' of surrogate per target", file=self.file("surrogates/choice.json")
            )
        return data

    def choice(self) -> dict[str, str] | None:
        """The surrogate `fit` chose per target (None before `fit`)."""
        data = self._choice_json()
        return dict(data["choice"]) if data is not None else None

    def honest_spearman(self) -> dict[str, float]:
        """Per target, the chosen surrogate's out-of-fold Spearman as `fit` measured it."""
        data = self._choice_json()
        return dict(data.get("honest_spearman", {})) if data is not None else {}

    def table(self, name: str, columns: Sequence[str], made_by: str) -> pl.DataFrame | None:
        """A table this directory holds (parquet or CSV by its name), None when absent; one
        that cannot be read or lacks `columns` is an error naming the file."""
        path = self.file(name)
        if not path.is_file():
            return None
        try:
            df = pl.read_parquet(path) if name.endswith(".parquet") else pl.read_csv(path)
        except Exception as e:  # polars' and arrow's own errors for a damaged file
            raise AutomixerError(
                f"unreadable ({type(e).__name__}); run `automixer {made_by}` again", file=path
            ) from None
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise AutomixerError(
                f"no column '{missing[0]}'; run `automixer {made_by}` again", file=path
            )
        return df

    def pareto(self) -> pl.DataFrame | None:
        """pareto.csv when it belongs to solution.json (the hash `solve` wrote there); a front
        from another solve, or none, is None."""
        path = self.file("pareto.csv")
        if not path.is_file() or not self.file("solution.json").is_file():
            return None
        expected = self.solution().get("pareto_sha256")
        if expected is not None and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            return None
        return self.table("pareto.csv", ["chosen", "objective"], "solve")

    def runs(self) -> pl.DataFrame:
        """runs.parquet, checked against its declared schema."""
        from automixer.runs_table import read_runs

        return read_runs(self.file("runs.parquet"), self.config.weight_names)

    def provenance(self) -> dict[str, Any]:
        return {
            "config_hash": self.config_hash,
            "commit": git_commit(),
            "automixer": automixer.__version__,
        }

    def write_config(self) -> Path:
        """Save the resolved config once: the directory's results were made with it. A later
        command with the same hash (the same experiment, run elsewhere or with another device)
        leaves it as it is."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.file("config.yaml")
        if not target.is_file():
            atomic_write_text(target, dump_config(self.config))
        return target

    def write_manifest(self, manifest: dict[str, Any]) -> Path:
        target = self.file("manifest.json")
        atomic_write_json(target, {**self.provenance(), **manifest})
        return target
