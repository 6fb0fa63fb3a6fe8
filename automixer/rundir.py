"""The run directory: where one experiment's outputs live, named by the config's hash.

<out_dir>/<name>-<config hash>/
    config.yaml      the resolved config (defaults filled in)
    manifest.json    sources, token counts, tokenizer hash, commit, config hash
    ledger.db        the sweep's ledger (SQLite by default)
    runs.parquet     one row per proxy
    ...              surrogates, solution, recipes, report
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

import automixer
from automixer.config import Config, config_hash, dump_config, load_config, slug
from automixer.errors import AutomixerError
from automixer.io import atomic_write_json, atomic_write_text, git_commit


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

    def manifest(self) -> dict[str, Any]:
        """manifest.json: sources, token counts per domain, tokenizer, natural weights."""
        return self._json("manifest.json", "data")

    def solution(self) -> dict[str, Any]:
        """solution.json: the solved weights, predictions with intervals, honesty checks."""
        return self._json("solution.json", "solve")

    def choice(self) -> dict[str, str] | None:
        """The surrogate `fit` chose per target (None before `fit`)."""
        if not (self.file("surrogates") / "choice.json").is_file():
            return None
        return dict(self._json("surrogates/choice.json", "fit")["choice"])

    def honest_spearman(self) -> dict[str, float]:
        """Per target, the chosen surrogate's out-of-fold Spearman as `fit` measured it."""
        if not (self.file("surrogates") / "choice.json").is_file():
            return {}
        return dict(self._json("surrogates/choice.json", "fit").get("honest_spearman", {}))

    def runs(self) -> pl.DataFrame:
        """runs.parquet, checked against its declared schema."""
        from automixer.runs_table import read_runs

        return read_runs(self.file("runs.parquet"), self.config.domain_names)

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
