"""The worker loop: claim runs from the ledger, train and score them as a pack, record each.

A run ends complete or failed (a NaN loss, a budget the loader refuses, an exception: the sweep
goes on). Every executor (this process, worker processes, Ray tasks, `automixer worker` on
another machine) runs this same loop against the same ledger, so exactly-once holds for all.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from automixer.config import Config, config_hash, dump_config, parse_config
from automixer.data.bundle import DataBundle
from automixer.errors import AutomixerError
from automixer.evals.suites import config_tasks
from automixer.io import atomic_path, git_commit
from automixer.rundir import RunDir
from automixer.runs_table import weight_column, write_runs
from automixer.sweep.branches import resume_point, train_mains
from automixer.sweep.devices import resolve_sizes
from automixer.sweep.ledger import Claim, Ledger
from automixer.sweep.training import (
    data_bundle,
    keep_proxy,
    non_finite,
    train_and_score,
    train_config,
)

STORAGE_ENV = "AUTOMIXER_STORAGE"


def storage_url(config: Config, run_dir: Path) -> str:
    """The ledger's URL: the config's or the environment's, else a SQLite file in the run
    directory (its path escaped: a folder may hold '?', '%' or '#')."""
    from sqlalchemy.engine import URL

    local = URL.create("sqlite", database=str((run_dir / "ledger.db").resolve()))
    return (
        config.sweep.storage
        or os.environ.get(STORAGE_ENV)
        or local.render_as_string(hide_password=False)
    )


def study_name(config: Config) -> str:
    return f"automixer-{config_hash(config)}"


def run_pack(
    config: Config,
    bundle: DataBundle,
    claims: Sequence[Claim],
    tasks: list[Any],
    ledger: Ledger,
    commit: str,
    on_log: Callable[[int, list[float], float], None] | None = None,
    micro_batch: int | None = None,
) -> tuple[int, int]:
    """Train and score one pack of claimed runs; record each. Returns (tokens, done)."""
    from proxies.presets import get_preset

    info = {"config_hash": config_hash(config), "commit": commit}
    ok: list[tuple[Claim, Any]] = []
    for c in claims:
        try:
            ok.append((c, bundle.loader(c.weights, config, seed=c.seed)))
        except AutomixerError as e:
            ledger.fail(c, e.message, {**info, "seconds": 0.0, "tokens": 0})
    if not ok:
        return 0, 0
    cfg = get_preset(config.proxy.preset, vocab_size=bundle.tokenizer.get_vocab_size())
    tcfg = train_config(config, micro_batch=micro_batch)
    resume = None
    try:
        if ok[0][0].stage == "main":  # a branched sweep's main phase: to the boundary, saved
            return train_mains(config, cfg, ok, ledger, info, tcfg, on_log)
        if ok[0][0].stage == "branch":  # from the parents' checkpoints through the anneal
            ok, resume = resume_point(config, ok, ledger, info)
            if not ok:
                return 0, 0
        scored = train_and_score(
            config,
            bundle,
            cfg,
            [lo for _, lo in ok],
            [c.seed for c, _ in ok],
            tasks,
            tcfg=tcfg,
            on_log=on_log,
            checkpoint=resume,
        )
    except Exception as e:  # the whole pack broke (out of memory, a bug): record, go on
        reason = f"{type(e).__name__}: {e}".strip()
        for c, _ in ok:
            ledger.fail(c, reason, {**info, "trace": traceback.format_exc()[-2000:]})
        return 0, 0
    finally:
        if resume is not None:
            resume.unlink(missing_ok=True)
    done = 0
    tokens = 0
    folder = RunDir.for_config(config).file("proxies")
    config_yaml = dump_config(config)
    left_out = sorted(bundle.contaminated_items)
    for (c, _), s in zip(ok, scored, strict=True):
        r = s.result
        curve = [v for _, v in r.loss_curve]
        extra = {
            **info,
            "seconds": r.seconds,
            "tokens": r.tokens,
            "loss_first": curve[0] if curve else None,
            "loss_last": float(np.mean(curve[-3:])) if curve else None,
            "curve": [[step, v] for step, v in r.loss_curve],
        }
        if not s.ok:
            ledger.fail(c, r.error or f"proxy ended as {r.status}", extra)
            continue
        bad = non_finite(s.metrics)
        if bad:
            ledger.fail(c, f"non-finite metrics: {', '.join(bad[:3])}", extra)
            continue
        pending = None
        if config.sweep.save_weights:
            meta = {
                **info,
                "run_id": c.run_id,
                "seed": c.seed,
                "tokens": r.tokens,
                "weights": dict(c.weights),
                "left_out": left_out,
            }
            # beside its place until the ledger takes the result: a worker whose run was
            # given to another (it went quiet, the run was queued again) must not replace
            # the weights behind the recorded metrics
            pending = folder / f".{c.run_id}.{c.trial_id}.pt.pending"
            keep_proxy(pending, s, cfg, bundle, config_yaml, meta)
        if ledger.complete(c, s.metrics, extra):
            if pending is not None:
                os.replace(pending, folder / f"{c.run_id}.pt")
            done += 1
            tokens += r.tokens
        elif pending is not None:
            pending.unlink(missing_ok=True)
    return tokens, done


def worker_loop(
    config: Config,
    bundle: DataBundle,
    ledger: Ledger,
    *,
    on_pack: Callable[[int, float], None] | None = None,
    on_first_step: Callable[[], None] | None = None,
    max_packs: int | None = None,
) -> None:
    """Claim, train, record, until the ledger has nothing waiting or running."""
    tasks = config_tasks(config, exclude=bundle.contaminated_items)
    commit = git_commit()
    pending = [on_first_step]

    def first_step_hook(step: int, losses: list[float], rate: float) -> None:
        if pending[0] is not None:
            pending[0]()
            pending[0] = None

    sizes = resolve_sizes(config, bundle.tokenizer.get_vocab_size())
    packs = 0
    while max_packs is None or packs < max_packs:
        claims = ledger.claim(sizes.pack)
        if not claims:
            if ledger.finished():
                return
            # runs held by others (or branches whose main is training): wait for them, or
            # for them to go stale
            time.sleep(min(ledger.heartbeat_s, 2.0))
            continue
        t0 = time.perf_counter()
        with ledger.heartbeat(claims):
            tokens, _ = run_pack(
                config, bundle, claims, tasks, ledger, commit, first_step_hook, sizes.micro_batch
            )
        packs += 1
        if on_pack is not None:
            on_pack(tokens, time.perf_counter() - t0)


INPUTS = "inputs"
"""The ledger's record of what a sweep's data was made from (`DataBundle.inputs`)."""


def check_inputs(ledger: Ledger, bundle: DataBundle) -> None:
    """Refuse to train into a sweep whose data changed since it started (a data file edited,
    another tokenizer, other eval items): its runs would come from two corpora under one config
    hash. The first call records the inputs."""
    known = ledger.meta(INPUTS)
    if not known:
        ledger.set_meta(INPUTS, bundle.inputs)
        return
    now = bundle.inputs
    changed = [
        f"domain '{d}'"
        for d in sorted(set(known.get("domains", {})) | set(now.get("domains", {})))
        if known.get("domains", {}).get(d) != now.get("domains", {}).get(d)
    ]
    changed += [what for what in ("tokenizer", "eval_items") if known.get(what) != now.get(what)]
    if changed:
        raise AutomixerError(
            f"the data changed since this sweep started ({', '.join(changed).replace('_', ' ')}"
            "): its runs would come from two corpora. Restore the data, or start a new sweep "
            "(another run.name)"
        )


def work_on(url: str, study: str | None, heartbeat_s: float | None = None) -> Ledger:
    """Open a sweep's ledger as a worker: the config it was planned with must be in it."""
    ledger = Ledger(url, study, heartbeat_s=heartbeat_s) if heartbeat_s else Ledger(url, study)
    if not ledger.meta("config"):
        ledger.close()
        raise AutomixerError("the ledger has no sweep config (was it made by automixer sweep?)")
    return ledger


def worker_process(
    url: str, study: str | None, heartbeat_s: float | None = None, threads: int | None = None
) -> None:
    """A whole worker: open the ledger, build the same data bundle, work until the end (with
    `threads` torch threads, or torch's default)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    with work_on(url, study, heartbeat_s) as ledger:
        config = parse_config(ledger.meta("config"), source="<ledger>")
        bundle = data_bundle(config, progress=False)
        check_inputs(ledger, bundle)
        worker_loop(config, bundle, ledger)


def export_runs(ledger: Ledger, config: Config, path: Path) -> pl.DataFrame:
    """runs.parquet (one row per finished run) and curves.parquet (their loss curves)."""
    domains = config.weight_names  # `domain@phase` with phases
    rows = []
    curves: list[dict[str, Any]] = []
    for run_id, rec in sorted(ledger.records().items()):
        if rec["status"] not in ("done", "failed") or rec.get("stage") == "main":
            continue  # a branched sweep's main phases are the branches' parents, not rows
        weights = json.loads(rec["weights"])
        curves.extend(
            {"run_id": run_id, "step": int(s), "loss": float(v)} for s, v in rec.get("curve") or []
        )
        row: dict[str, Any] = {
            "run_id": run_id,
            "name": rec.get("name"),
            "replicate_of": rec.get("replicate_of") or None,
            "status": rec["status"],
            "seed": int(rec["seed"]),
            "tokens": int(rec.get("tokens") or 0),
            "seconds": float(rec.get("seconds") or 0.0),
            "loss_first": rec.get("loss_first"),
            "loss_last": rec.get("loss_last"),
            "config_hash": rec.get("config_hash"),
            "commit": rec.get("commit"),
            "error": rec.get("error"),
            **({"parent": rec["parent"]} if rec.get("parent") else {}),
        }
        row.update({weight_column(d): float(weights.get(d, 0.0)) for d in domains})
        row.update(json.loads(rec.get("metrics", "{}")))
        rows.append(row)
    df = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    if rows:
        write_runs(df, path, domains)
    if curves:
        with atomic_path(path.with_name("curves.parquet")) as tmp:
            pl.DataFrame(curves).write_parquet(tmp)
    return df
