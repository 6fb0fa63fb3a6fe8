"""Scoring trained models, and `automixer eval FILE`: a proxy file's per-suite, per-ability and
per-domain table.

`score_suites` and `score_domains` are what the sweep measures on every pack it trains; the eval
verb and `automixer validate` call the same two functions, so a number printed here is the
number the surrogates were fitted on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from tokenizers import Tokenizer

from automixer.config import Config, parse_config
from automixer.data.pipeline import DataBundle
from automixer.errors import AutomixerError
from automixer.evals.scoring import PackScorer, domain_metric, score_tasks
from automixer.evals.suites import SUITES, config_tasks
from automixer.evals.tasks import Task
from automixer.io import atomic_write_json, git_commit


def score_suites(
    model: torch.nn.Module, tokenizer: Tokenizer, tasks: Sequence[Task], config: Config
) -> dict[str, np.ndarray]:
    """Suite and ability metrics of every proxy of a pack: name -> (P,)."""
    if not tasks:
        return {}
    scorer = PackScorer(model, tokenizer, max_len=2 * config.proxy.seq_len)
    return score_tasks(tasks, scorer, config.evals.abilities)


def score_domains(model: Any, bundle: DataBundle, config: Config) -> dict[str, np.ndarray]:
    """Held-out bits per byte of every training domain for every proxy of a pack, measured as
    training measures it at the end of a run."""
    from proxies.train import TrainConfig, evaluate_bpb

    bpb = evaluate_bpb(
        model,
        bundle.val_arrays(),
        bundle.bytes_per_token(),
        config.proxy.seq_len,
        TrainConfig.eval_batch,
        config.proxy.eval_tokens,
        next(model.parameters()).device,
    )
    return {domain_metric(d): v.numpy().astype(np.float64) for d, v in bpb.items()}


def items_per_suite(tasks: Sequence[Task]) -> dict[str, int]:
    return dict(Counter(t.suite for t in tasks))


def _kind(name: str) -> str:
    return name.split(":", 1)[0]


def metrics_table(
    columns: Mapping[str, Mapping[str, float]],
    *,
    title: str,
    best: Mapping[str, str] | None = None,
    counts: Mapping[str, int] | None = None,
) -> Table:
    """Metrics by row (suites, then abilities, then domains), one column per model; `best`
    marks the winning column of a row."""
    names: list[str] = []
    for col in columns.values():
        names.extend(n for n in col if n not in names)
    order = {"objective": 0, "suite": 1, "ability": 2, "domain": 3}
    names.sort(key=lambda n: (order.get(_kind(n), 4), n))
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    if counts is not None:
        table.add_column("items", justify="right")
    for c in columns:
        table.add_column(c, justify="right")
    if best is not None:
        table.add_column("best")
    for n in names:
        row = [n]
        if counts is not None:
            suite = n.split(":")[1] if _kind(n) == "suite" else ""
            row.append(str(counts.get(suite, "")))
        row += [f"{columns[c][n]:.4f}" if n in columns[c] else "-" for c in columns]
        if best is not None:
            row.append(best.get(n, ""))
        table.add_row(*row)
    return table


def run_eval(
    path: Path,
    *,
    suites: list[str] | None,
    n_per_suite: int | None,
    domains: bool,
    json_out: Path | None,
    console: Console,
    progress: bool = True,
) -> dict[str, float]:
    """`automixer eval`: score a proxy file on the built-in suites (and its config's domains)."""
    from proxies.checkpoint import load_proxy
    from proxies.train import pick_device

    model, tokenizer, payload = load_proxy(path)
    config = parse_config(payload["config"], source=f"{path} (its config)")
    update: dict[str, Any] = {}
    if suites:
        for s in suites:
            if s not in SUITES:
                raise AutomixerError(
                    f"unknown suite '{s}'; known: {', '.join(SUITES)}", field="--suite"
                )
        update["suites"] = suites
    if n_per_suite is not None:
        update["n_per_suite"] = n_per_suite
    if update:
        config = config.model_copy(update={"evals": config.evals.model_copy(update=update)})
    model.to(pick_device(config.proxy.device))
    left_out: list[str] = list(payload["meta"].get("left_out", []))
    metrics: dict[str, np.ndarray] = {}
    if domains:
        from automixer.stages import data_bundle

        bundle = data_bundle(config, progress=progress)
        if bundle.tokenizer.to_str() != tokenizer.to_str():
            raise AutomixerError(
                "the proxy's tokenizer differs from the one its config builds now "
                "(the data changed?); use --no-domains to score the suites only",
                file=path,
            )
        left_out = sorted(set(left_out) | set(bundle.contaminated_items))
        metrics.update(score_domains(model, bundle, config))
    tasks = config_tasks(config, exclude=left_out)
    metrics.update(score_suites(model, tokenizer, tasks, config))
    values = {k: float(v[0]) for k, v in metrics.items()}
    counts = items_per_suite(tasks)
    meta = payload["meta"]
    title = f"{path.name}: " + ", ".join(
        f"{k} {meta[k]}" for k in ("run_id", "name", "seed", "tokens") if k in meta
    )
    console.print(metrics_table({"value": values}, title=title, counts=counts))
    if left_out:
        n = len(left_out)
        console.print(
            f"{n} item{'s' if n != 1 else ''} found in the training corpora "
            f"{'were' if n != 1 else 'was'} left out"
        )
    if json_out is not None:
        atomic_write_json(
            json_out,
            {
                "proxy": str(path),
                "meta": meta,
                "items": counts,
                "left_out": left_out,
                "metrics": values,
                "commit": git_commit(),
            },
        )
        console.print(f"metrics: {json_out}")
    return values
