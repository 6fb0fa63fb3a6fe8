"""MLflow and TensorBoard, each written with its own library and read back with it in the
tests."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from automixer.config import TrackingSection
from automixer.errors import AutomixerError
from automixer.rundir import RunDir
from automixer.tracking import Backend, default_dirs, run_metrics, run_params


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The libraries' own chatter (MLflow's table creation, SQLAlchemy deprecations) off."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger("mlflow").level
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        try:
            yield
        finally:
            logging.getLogger("mlflow").setLevel(level)


class MLflowBackend:
    name = "mlflow"

    def __init__(self, uri: str, experiment: str, tags: Mapping[str, str]) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise AutomixerError(
                "MLflow tracking needs mlflow: pip install 'automixer[tracking]'",
                field="tracking.backends",
            ) from None
        self.tags = dict(tags)
        with _quiet():
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment = (
                found.experiment_id if found else self.client.create_experiment(experiment)
            )

    def _run(self, name: str, tags: Mapping[str, str]) -> str:
        run = self.client.create_run(self.experiment, run_name=name, tags={**self.tags, **tags})
        return str(run.info.run_id)

    def log_run(self, run_id: str, record: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric, Param

        with _quiet():
            rid = self._run(
                run_id, {"automixer_run_id": run_id, "commit": str(record.get("commit", ""))}
            )
            now = 0
            metrics = [Metric(k, v, now, 0) for k, v in run_metrics(record).items()]
            metrics += [
                Metric("train_loss", float(v), now, int(s)) for s, v in record.get("curve") or []
            ]
            params = [Param(k, str(v)) for k, v in run_params(record).items()]
            for i in range(0, max(len(metrics), 1), 1000):  # MLflow's batch limit
                self.client.log_batch(
                    rid, metrics=metrics[i : i + 1000], params=params if i == 0 else []
                )
            self.client.set_terminated(rid)

    def log_summary(
        self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        from mlflow.entities import Metric, Param

        with _quiet():
            rid = self._run(name, {"automixer_summary": name})
            self.client.log_batch(
                rid,
                metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
                params=[Param(k, str(v)) for k, v in params.items()],
            )
            self.client.set_terminated(rid)


class TensorBoardBackend:
    name = "tensorboard"

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise AutomixerError(
                "TensorBoard tracking needs tensorboard: pip install 'automixer[tracking]'",
                field="tracking.backends",
            ) from None
        self.folder, self.writer = folder, SummaryWriter

    def log_run(self, run_id: str, record: Mapping[str, Any]) -> None:
        with _quiet():
            w = self.writer(log_dir=str(self.folder / run_id))
            for step, loss in record.get("curve") or []:
                w.add_scalar("train_loss", float(loss), int(step))
            for k, v in run_metrics(record).items():
                w.add_scalar(k, v, 0)
            w.add_text("mixture", ", ".join(f"{k} {v}" for k, v in run_params(record).items()))
            w.close()

    def log_summary(
        self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        with _quiet():
            w = self.writer(log_dir=str(self.folder / f"summary-{name}"))
            for k, v in metrics.items():
                w.add_scalar(k, float(v), 0)
            w.add_text("params", ", ".join(f"{k} {v}" for k, v in params.items()))
            w.close()


def make(name: str, rd: RunDir, section: TrackingSection, tags: Mapping[str, str]) -> Backend:
    mlflow_uri, tb_dir = default_dirs(rd)
    if name == "mlflow":
        experiment = f"{rd.config.run.name}-{rd.config_hash}"
        return MLflowBackend(section.mlflow_uri or mlflow_uri, experiment, tags)
    return TensorBoardBackend(Path(section.tensorboard_dir or tb_dir))
