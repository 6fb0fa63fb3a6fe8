"""Train and score: the one path from mixtures to metrics, shared by the sweep and `validate`.

A pack of proxies is trained on its loaders; each finished proxy is scored on the held-out
domains (bits per byte) and on the eval suites, so a number in runs.parquet, in `automixer eval`
and in `automixer validate` is measured by the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automixer.config import Config
from automixer.data.bundle import DataBundle
from automixer.evals.scoring import domain_metrics, score_suites
from automixer.evals.suites import contamination_items
from automixer.evals.tasks import Task


def data_bundle(config: Config, *, progress: bool = True) -> DataBundle:
    """The data stage for a config, checked against its evaluation items (every process of a
    sweep builds the same bundle, so they share the cache and agree on what was left out)."""
    from automixer.data.pipeline import prepare_data

    return prepare_data(config, eval_texts=contamination_items(config), progress=progress)


def train_config(config: Config, **overrides: Any) -> Any:
    """The proxies' `TrainConfig` from the config's proxy section."""
    from proxies.train import TrainConfig

    p = config.proxy
    kw: dict[str, Any] = {
        "lr": p.lr,
        "adam_lr": p.adam_lr,
        "warmup_fraction": p.warmup_fraction,
        "schedule": p.schedule,
        "device": p.device,
        "log_every": max(1, p.tokens // (p.seq_len * p.batch_size) // 50),
        "eval_tokens": p.eval_tokens,
        "compile": p.compile,
        "micro_batch": p.micro_batch if p.micro_batch != "auto" else None,
    }
    return TrainConfig(**(kw | overrides))


@dataclass
class Scored:
    """One trained proxy: its training result and every metric measured on it."""

    result: Any
    """`proxies.train.ProxyResult`: status, loss curve, weights, seconds, tokens."""
    metrics: dict[str, float] = field(default_factory=dict)
    """domain:<d>:bpb, suite:<s>:..., ability:<a>:... (empty unless the proxy finished)."""

    @property
    def ok(self) -> bool:
        return bool(self.result.status == "done")


def train_and_score(
    config: Config,
    bundle: DataBundle,
    model_cfg: Any,
    loaders: Sequence[Any],
    seeds: Sequence[int],
    tasks: Sequence[Task],
    *,
    tcfg: Any = None,
    on_log: Callable[[int, list[float], float], None] | None = None,
    checkpoint: Any = None,
) -> list[Scored]:
    """Train a pack (one proxy per loader, from its seed, or resumed from `checkpoint`) and
    score every proxy that finished."""
    from proxies.train import train_pack

    results = train_pack(
        model_cfg,
        loaders,
        seeds,
        tcfg if tcfg is not None else train_config(config),
        val=bundle.val_arrays(),
        token_bytes=bundle.token_bytes,
        evaluate=lambda model: score_suites(model, bundle.tokenizer, tasks, config),
        on_log=on_log,
        checkpoint=checkpoint,
    )
    out = []
    for r in results:
        metrics = domain_metrics(r.val_bpb) | r.metrics if r.status == "done" else {}
        out.append(Scored(r, metrics))
    return out


def keep_proxy(
    path: Any, scored: Scored, model_cfg: Any, bundle: DataBundle, config_yaml: str, meta: dict
) -> None:
    """Save one trained proxy as a self-contained file (`automixer eval` reads it)."""
    from proxies.checkpoint import save_proxy

    save_proxy(
        path,
        model_config=model_cfg,
        state=scored.result.state,
        tokenizer=bundle.tokenizer,
        config_yaml=config_yaml,
        meta=meta,
    )


def non_finite(metrics: dict[str, float]) -> list[str]:
    """The metrics that are NaN or infinite (a run with any is recorded as failed)."""
    return [k for k, v in metrics.items() if not np.isfinite(v)]
