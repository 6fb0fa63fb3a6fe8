"""Running the sweep: plan it into the ledger, work through it, export runs.parquet.

A worker loop claims up to `proxy.pack_size` runs, trains them as one pack, scores each on the
held-out domains and the eval suites, and records each run as complete or failed (a NaN loss, a
budget the loader refuses, an exception: the sweep goes on). The local executor runs the loop in
this process (one worker) or in `sweep.workers` processes; `automixer worker --storage URL` runs
it on any other machine that reaches the ledger.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console

from automixer.config import Config, config_hash, dump_config, parse_config
from automixer.data.pipeline import DataBundle
from automixer.design import plan_mixtures
from automixer.errors import AutomixerError
from automixer.eval_stage import score_suites
from automixer.evals.scoring import domain_metric
from automixer.evals.suites import config_tasks
from automixer.io import atomic_path, atomic_write_json, git_commit
from automixer.rundir import RunDir
from automixer.runs_table import weight_column, write_runs
from automixer.stages import data_bundle
from automixer.sweep.ledger import Claim, Ledger
from automixer.views import progress_bar

STORAGE_ENV = "AUTOMIXER_STORAGE"


def storage_url(config: Config, run_dir: Path) -> str:
    return (
        config.sweep.storage
        or os.environ.get(STORAGE_ENV)
        or f"sqlite:///{(run_dir / 'ledger.db').resolve()}"
    )


def study_name(config: Config) -> str:
    return f"automixer-{config_hash(config)}"


def train_config(config: Config) -> Any:
    from proxies.train import TrainConfig

    p = config.proxy
    return TrainConfig(
        lr=p.lr,
        adam_lr=p.adam_lr,
        warmup_fraction=p.warmup_fraction,
        schedule=p.schedule,
        device=p.device,
        log_every=max(1, p.tokens // (p.seq_len * p.batch_size) // 50),
        eval_tokens=p.eval_tokens,
    )


def run_pack(
    config: Config,
    bundle: DataBundle,
    claims: Sequence[Claim],
    tasks: list[Any],
    ledger: Ledger,
    commit: str,
    on_log: Callable[[int, list[float], float], None] | None = None,
) -> tuple[int, int]:
    """Train and score one pack of claimed runs; record each. Returns (tokens, done)."""
    from proxies.checkpoint import save_proxy
    from proxies.model import PackedLM
    from proxies.presets import get_preset
    from proxies.train import train_pack

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

    def evaluate(model: PackedLM) -> dict[str, np.ndarray]:
        return score_suites(model, bundle.tokenizer, tasks, config)

    try:
        results = train_pack(
            cfg,
            [lo for _, lo in ok],
            [c.seed for c, _ in ok],
            train_config(config),
            val=bundle.val_arrays(),
            bytes_per_token=bundle.bytes_per_token(),
            evaluate=evaluate,
            on_log=on_log,
        )
    except Exception as e:  # the whole pack broke (out of memory, a bug): record, go on
        reason = f"{type(e).__name__}: {e}".strip()
        for c, _ in ok:
            ledger.fail(c, reason, {**info, "trace": traceback.format_exc()[-2000:]})
        return 0, 0
    done = 0
    tokens = 0
    folder = RunDir.for_config(config).file("proxies")
    config_yaml = dump_config(config)
    left_out = sorted(bundle.contaminated_items)
    for (c, _), r in zip(ok, results, strict=True):
        curve = [v for _, v in r.loss_curve]
        extra = {
            **info,
            "seconds": r.seconds,
            "tokens": r.tokens,
            "loss_first": curve[0] if curve else None,
            "loss_last": float(np.mean(curve[-3:])) if curve else None,
            "curve": [[s, v] for s, v in r.loss_curve],
        }
        if r.status == "done":
            metrics = {domain_metric(d): v for d, v in r.val_bpb.items()}
            metrics.update(r.metrics)
            bad = [k for k, v in metrics.items() if not np.isfinite(v)]
            if bad:
                ledger.fail(c, f"non-finite metrics: {', '.join(bad[:3])}", extra)
                continue
            if config.sweep.save_weights:
                save_proxy(
                    folder / f"{c.run_id}.pt",
                    model_config=cfg,
                    state=r.state,
                    tokenizer=bundle.tokenizer,
                    config_yaml=config_yaml,
                    meta={
                        **info,
                        "run_id": c.run_id,
                        "seed": c.seed,
                        "tokens": r.tokens,
                        "weights": dict(c.weights),
                        "left_out": left_out,
                    },
                )
            if ledger.complete(c, metrics, extra):
                done += 1
                tokens += r.tokens
        else:
            ledger.fail(c, r.error or f"proxy ended as {r.status}", extra)
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

    packs = 0
    while max_packs is None or packs < max_packs:
        claims = ledger.claim(config.proxy.pack_size)
        if not claims:
            if ledger.finished():
                return
            time.sleep(ledger.heartbeat_s)  # runs held by others: wait, or for them to go stale
            continue
        t0 = time.perf_counter()
        with ledger.heartbeat(claims):
            tokens, _ = run_pack(config, bundle, claims, tasks, ledger, commit, first_step_hook)
        packs += 1
        if on_pack is not None:
            on_pack(tokens, time.perf_counter() - t0)


def _worker_process(url: str, study: str, heartbeat_s: float) -> None:
    with Ledger(url, study, heartbeat_s=heartbeat_s) as ledger:
        config = parse_config(ledger.meta("config"), source="<ledger>")
        bundle = data_bundle(config, progress=False)
        worker_loop(config, bundle, ledger)


def _ray_worker(url: str, study: str, heartbeat_s: float, cwd: str) -> None:
    """One Ray task: the same worker loop as a local process, in the driver's folder (the
    config's relative paths) when this node has it."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    _worker_process(url, study, heartbeat_s)


def run_on_ray(config: Config, url: str, study: str, tick: Callable[[], None]) -> list[str]:
    """Run `sweep.workers` worker loops as Ray tasks; returns the errors of tasks that died
    (their runs go back to the queue through the ledger's heartbeats)."""
    local = not config.sweep.ray_address
    if local:
        # Ray binds a new instance to the machine's routable address unless its "no cluster"
        # switch is set; with it, every port of the instance listens on 127.0.0.1 only.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        from ray._private import ray_constants
    except ImportError:
        raise AutomixerError(
            "the Ray executor needs Ray: pip install 'automixer[distributed]'",
            field="sweep.executor",
        ) from None
    started = not ray.is_initialized()
    if started and local:
        ray_constants.ENABLE_RAY_CLUSTER = False  # read when the instance starts
    if started:
        common: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if config.sweep.ray_address:
            ray.init(address=config.sweep.ray_address, **common)
        else:  # a private instance on this machine, reachable from loopback only
            ray.init(
                num_cpus=max(config.sweep.workers, 1),
                object_store_memory=256 * 2**20,
                **common,
            )
    try:
        gpus = 1 if config.proxy.device != "cpu" and ray.cluster_resources().get("GPU") else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(_ray_worker)
        pending = [
            task.remote(url, study, config.sweep.heartbeat_s, os.getcwd())
            for _ in range(config.sweep.workers)
        ]
        errors: list[str] = []
        while pending:
            done, pending = ray.wait(pending, timeout=1.0)
            for ref in done:
                try:
                    ray.get(ref)
                except Exception as e:  # a worker died: its runs are requeued by the ledger
                    errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
            tick()
        return errors
    finally:
        if started:
            ray.shutdown()


def join_sweep(url: str, study: str | None, console: Console) -> None:
    """`automixer worker`: work on a sweep whose config is stored in its ledger."""
    with Ledger(url, study) as ledger:
        text = ledger.meta("config")
        if not text:
            raise AutomixerError("the ledger has no sweep config (was it made by automixer sweep?)")
        config = parse_config(text, source="<ledger>")
        bundle = data_bundle(config, progress=False)
        console.print(f"joined sweep {ledger.study.study_name}: {ledger.counts()}")
        worker_loop(config, bundle, ledger)
        console.print(f"sweep finished: {ledger.counts()}")


def export_runs(ledger: Ledger, config: Config, path: Path) -> pl.DataFrame:
    """runs.parquet (one row per finished run) and curves.parquet (their loss curves)."""
    domains = config.domain_names
    rows = []
    curves: list[dict[str, Any]] = []
    for run_id, rec in sorted(ledger.records().items()):
        if rec["status"] not in ("done", "failed"):
            continue
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


def run_sweep(
    config_path: Path,
    *,
    console: Console | None = None,
    progress: bool = True,
    max_packs: int | None = None,
) -> Path:
    from automixer.stages import run_data

    rd, bundle = run_data(config_path, progress=progress, console=None)
    config = rd.config
    proxy_tokens = config.proxy.tokens
    caps = {
        d: config.data.max_epochs * v.train.tokens / proxy_tokens for d, v in bundle.domains.items()
    }
    planned = plan_mixtures(
        bundle.natural_weights(),
        n_runs=config.sweep.n_runs,
        seed=config.run.seed,
        caps=caps,
        concentration=config.sweep.concentration,
        min_distance=config.sweep.min_distance,
        design=config.sweep.design,
        anchors=config.sweep.anchors,
        replicates=config.sweep.replicates,
    )
    atomic_write_json(
        rd.file("design.json"),
        {
            **rd.provenance(),
            "runs": [
                {
                    "run_id": r.run_id,
                    "name": r.name,
                    "seed": r.seed,
                    "replicate_of": r.replicate_of,
                    "weights": r.weights,
                }
                for r in planned
            ],
        },
    )
    url = storage_url(config, rd.path)
    with Ledger(
        url, study_name(config), heartbeat_s=config.sweep.heartbeat_s, create=True
    ) as ledger:
        ledger.set_meta("config", dump_config(config))
        added = ledger.plan(planned)
        total = len(planned)
        say = console.print if console is not None else (lambda *a, **k: None)
        say(
            f"sweep {ledger.study.study_name}: {total} runs planned ({added} new), "
            f"{ledger.counts()['done']} already done; ledger in {rd.path}"
        )
        bar = progress_bar("{task.fields[info]}", progress)
        t_start = time.perf_counter()
        tokens_seen = [0]

        def refresh(task: Any) -> None:
            c = ledger.counts()
            rate = tokens_seen[0] / max(1e-9, time.perf_counter() - t_start)
            bar.update(
                task,
                completed=c["done"] + c["failed"],
                info=f"done {c['done']} failed {c['failed']} running {c['running']} "
                f"{rate:,.0f} tok/s",
            )

        with bar:
            task = bar.add_task("sweep", total=total, info="")
            refresh(task)
            if config.sweep.executor == "ray":
                for err in run_on_ray(config, url, ledger.study.study_name, lambda: refresh(task)):
                    say(f"[yellow]a Ray worker stopped:[/] {err}")
                refresh(task)
            elif config.sweep.workers == 1:

                def on_pack(tokens: int, _seconds: float) -> None:
                    tokens_seen[0] += tokens
                    refresh(task)

                worker_loop(
                    config,
                    bundle,
                    ledger,
                    on_pack=on_pack,
                    max_packs=max_packs,
                    on_first_step=lambda: say("first proxy step done"),
                )
            else:
                ctx = mp.get_context("spawn")
                procs = [
                    ctx.Process(
                        target=_worker_process,
                        args=(url, ledger.study.study_name, config.sweep.heartbeat_s),
                    )
                    for _ in range(config.sweep.workers)
                ]
                for p in procs:
                    p.start()
                while any(p.is_alive() for p in procs):
                    time.sleep(1.0)
                    refresh(task)
                refresh(task)
        out = rd.file("runs.parquet")
        df = export_runs(ledger, config, out)
        c = ledger.counts()
        say(
            f"runs: {c['done']} done, {c['failed']} failed, {c['running'] + c['waiting']} left; "
            f"{out if df.height else 'no runs.parquet yet'}"
        )
        return rd.path
