"""`automixer eval PROXY.pt`: a proxy file's per-suite, per-ability and per-domain table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from automixer.config import Config, RunSection, load_config, parse_config
from automixer.errors import AutomixerError
from automixer.evals.scoring import items_per_suite, score_domains, score_suites
from automixer.evals.suites import SUITES, config_tasks
from automixer.io import atomic_write_json, git_commit
from automixer.registry import unknown
from automixer.sweep.training import data_bundle
from automixer.views import metrics_table


def open_proxy(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """A proxy file's model, tokenizer and payload; a bad file is the usual one-line error."""
    from proxies.checkpoint import load_proxy
    from proxies.files import ProxyFileError

    try:
        return load_proxy(path)
    except ProxyFileError as e:
        raise AutomixerError(e.message, file=e.file) from None


def embedded_config(payload: dict[str, Any], path: Path) -> Config:
    """The config inside a proxy file, as data only: a file can come from anyone, so its
    folders are replaced by this machine's defaults and its task files are dropped (nothing
    is read or written where the file says)."""
    config = parse_config(payload["config"], source=f"{path} (its config)")
    defaults = RunSection()
    return config.model_copy(
        update={
            "run": config.run.model_copy(
                update={"out_dir": defaults.out_dir, "cache_dir": defaults.cache_dir}
            ),
            "evals": config.evals.model_copy(update={"files": []}),
        }
    )


def run_eval(
    path: Path,
    *,
    suites: list[str] | None,
    n_per_suite: int | None,
    domains: bool,
    json_out: Path | None,
    console: Console,
    progress: bool = True,
    config_path: Path | None = None,
) -> dict[str, float]:
    """Score a proxy file on the built-in suites and on held-out domain text: that of
    `config_path` (a config you trust), else of its own config's built-in corpora."""
    from proxies.train import pick_device

    model, tokenizer, payload = open_proxy(path)
    if n_per_suite is not None and n_per_suite < 1:
        raise AutomixerError(f"must be at least 1, got {n_per_suite}", field="--n")
    config = load_config(config_path) if config_path else embedded_config(payload, path)
    if domains and config_path is None and any(d.builtin is None for d in config.domains):
        console.print(
            "the proxy's config reads local files or Hub datasets: its domains are not scored "
            "from a file's say-so; give --config with the config you trust (or --no-domains)"
        )
        domains = False
    update: dict[str, Any] = {}
    for s in suites or []:
        if s not in SUITES:
            raise AutomixerError(unknown("suite", s, list(SUITES)), field="--suite")
    if suites:
        update["suites"] = suites
    if n_per_suite is not None:
        update["n_per_suite"] = n_per_suite
    if update:
        config = config.model_copy(update={"evals": config.evals.model_copy(update=update)})
    model.to(pick_device(config.proxy.device))
    left_out: list[str] = list(payload["meta"].get("left_out", []))
    metrics: dict[str, np.ndarray] = {}
    if domains:
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
