"""Experiment tracking: a sweep's proxies and its fit and solve, where teams look for them.

`tracking.backends` in the config names MLflow and/or TensorBoard. The sweep's command logs
every finished run from the ledger (its mixture and seed as parameters, its scores as metrics,
its training loss curve step by step, its config hash and commit as tags) as runs finish, and
the fit's cross-validated Spearman per target and the solution's weights and objective once
they exist. Logging reads the ledger, so runs trained by worker processes, Ray tasks or
`automixer worker` on other machines are logged by the sweep command too. What has been logged
is kept in `tracking.json` in the run directory: a resumed sweep logs only what is new.

Nothing is imported unless a backend is configured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from automixer.io import atomic_write_json, read_json_dict
from automixer.rundir import RunDir


class Backend(Protocol):
    name: str

    def log_run(self, run_id: str, record: Mapping[str, Any]) -> None: ...

    def log_summary(
        self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None: ...


class Tracker:
    """Logs a run directory's finished runs and summaries to the configured backends."""

    def __init__(self, rd: RunDir, backends: list[Backend], every_s: float = 10.0) -> None:
        self.rd, self.backends, self.every_s = rd, backends, every_s
        self.path = rd.file("tracking.json")
        self.logged: dict[str, list[str]] = {
            k: list(v) for k, v in read_json_dict(self.path).items() if isinstance(v, list)
        }
        self._last = 0.0

    @classmethod
    def for_run(cls, rd: RunDir) -> Tracker | None:
        """The run directory's tracker, or None when tracking is off."""
        section = rd.config.tracking
        if not section.backends:
            return None
        from automixer.tracking.backends import make

        tags = {"config_hash": rd.config_hash, "run_dir": str(rd.path)}
        return cls(rd, [make(name, rd, section, tags) for name in section.backends])

    def sync(self, records: Mapping[str, Mapping[str, Any]], *, force: bool = False) -> int:
        """Log the finished runs among the ledger's `records` not logged yet (at most every
        `every_s` seconds unless `force`); how many were logged."""
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return 0
        self._last = now
        count = 0
        for backend in self.backends:
            done = set(self.logged.get(backend.name, []))
            for run_id, rec in sorted(records.items()):
                if rec.get("status") != "done" or run_id in done:
                    continue
                backend.log_run(run_id, rec)
                self.logged.setdefault(backend.name, []).append(run_id)
                count += 1
        if count:
            atomic_write_json(self.path, self.logged)
        return count

    def summary(self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        for backend in self.backends:
            backend.log_summary(name, params, metrics)


def run_params(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A finished run's parameters: its mixture (`w.<domain>`), seed, name and tokens."""
    weights = rec.get("weights")
    weights = json.loads(weights) if isinstance(weights, str) else dict(weights or {})
    out: dict[str, Any] = {f"w.{d}": float(w) for d, w in weights.items()}
    for key in ("seed", "name", "tokens", "replicate_of"):
        if rec.get(key) not in (None, ""):
            out[key] = rec[key]
    return out


def run_metrics(rec: Mapping[str, Any]) -> dict[str, float]:
    metrics = rec.get("metrics")
    metrics = json.loads(metrics) if isinstance(metrics, str) else dict(metrics or {})
    return {k: float(v) for k, v in metrics.items()}


def default_dirs(rd: RunDir) -> tuple[str, Path]:
    """The MLflow store and the TensorBoard folder in the run directory."""
    return f"sqlite:///{Path(rd.path).resolve() / 'mlflow.db'}", rd.file("tensorboard")
