"""Executors: where a sweep's worker loops run (named in `automixer.registry.EXECUTORS`).

Each takes the same `Job` and runs `sweep.workers` copies of the worker loop against the
ledger; exactly-once and requeue-on-heartbeat come from the ledger, not from the executor.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from automixer.config import Config
from automixer.data.bundle import DataBundle
from automixer.errors import AutomixerError, database_error_line, os_error_line
from automixer.registry import EXECUTORS, load
from automixer.sweep.devices import describe_sizes, pin_to, resolve_sizes
from automixer.sweep.ledger import Ledger
from automixer.sweep.parallel import (
    WorkerPlan,
    cores,
    describe,
    plan_workers,
    threads_per_worker,
)
from automixer.sweep.worker import worker_loop, worker_process


@dataclass
class Job:
    config: Config
    bundle: DataBundle
    ledger: Ledger
    url: str
    tick: Callable[[int], None]
    """Called now and then with the tokens trained since the last call (0 when unknown)."""
    on_first_step: Callable[[], None] | None = None
    max_packs: int | None = None
    """Stop after this many packs (trained in this process, whatever sweep.workers says)."""
    say: Callable[[str], None] = lambda _message: None

    @property
    def study(self) -> str:
        return str(self.ledger.study.study_name)


def run_executor(job: Job) -> list[str]:
    """Run the config's executor; returns the errors of workers that died (their runs go back
    to the queue through the ledger's heartbeats)."""
    run: Callable[[Job], list[str]] = load(EXECUTORS[job.config.sweep.executor])
    return run(job)


def run_local(job: Job) -> list[str]:
    """One worker loop in this process, or worker processes (`sweep.workers`, see
    `automixer.sweep.parallel`), never more than the packs waiting."""
    import torch

    vocab = job.bundle.tokenizer.get_vocab_size()
    sizes = resolve_sizes(job.config, vocab)  # measured here once, before the workers start
    plan = plan_workers(job.config, vocab)
    packs = -(-job.ledger.counts()["waiting"] // sizes.pack)
    workers = 1 if job.max_packs is not None else min(plan.workers, max(1, packs))
    threads = threads_per_worker(workers)
    job.say(
        f"workers: {describe(plan)}"
        + (f"; {workers} for this batch" if workers < plan.workers else "")
    )
    job.say(f"packs: {describe_sizes(sizes, job.config.proxy.batch_size)}")
    if workers == 1:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            worker_loop(
                job.config,
                job.bundle,
                job.ledger,
                on_pack=lambda tokens, _seconds: job.tick(tokens),
                max_packs=job.max_packs,
                on_first_step=job.on_first_step,
            )
        finally:
            torch.set_num_threads(before)
        return []
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(
            target=_local_worker,
            args=(job.url, job.study, job.config.sweep.heartbeat_s, threads, os.getpid(), gpu),
        )
        for gpu in worker_gpus(plan, workers)
    ]
    for p in procs:
        p.start()
    done = job.ledger.counts()["done"]
    while any(p.is_alive() for p in procs):
        time.sleep(1.0)
        now = job.ledger.counts()["done"]  # the processes' tokens, as runs finish
        job.tick((now - done) * job.config.proxy.tokens)
        done = now
    return [f"worker process exited with {p.exitcode}" for p in procs if p.exitcode]


def worker_gpus(plan: WorkerPlan, workers: int) -> list[str | None]:
    """The GPU each of `workers` local processes is pinned to (None: no pinning)."""
    return [plan.devices[i] if plan.devices else None for i in range(workers)]


def _local_worker(
    url: str, study: str, heartbeat_s: float, threads: int, parent: int, gpu: str | None
) -> None:
    """A local worker process, pinned to its GPU on a GPU node; it ends with the sweep command
    that started it, even when that is killed outright (on Linux: otherwise it would train on,
    unseen, beside a resumed sweep; its runs go back to the queue through the heartbeats)."""
    pin_to(gpu)
    try:
        _work(url, study, heartbeat_s, threads, parent)
    except AutomixerError as e:  # one line, as the command itself says it, and status 2
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except OSError as e:  # a full disk while saving a proxy
        print(f"error: {os_error_line(e)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:  # the sweep's interrupt reaches its workers too
        sys.exit(130)
    except Exception as e:
        line = database_error_line(e)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr, flush=True)
        sys.exit(2)


def _work(url: str, study: str, heartbeat_s: float, threads: int, parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took hold
            return
    worker_process(url, study, heartbeat_s, threads)


def _ray_worker(url: str, study: str, heartbeat_s: float, cwd: str, threads: int | None) -> None:
    """One Ray task: the same worker loop as a local process, in the driver's folder (the
    config's relative paths) when this node has it."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    worker_process(url, study, heartbeat_s, threads)


def run_ray(job: Job) -> list[str]:
    """`sweep.workers` worker loops as Ray tasks, on a private instance bound to loopback or on
    the cluster at `sweep.ray_address`."""
    config = job.config
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
            "the Ray executor needs Ray: pip install 'automixer\\[distributed]'",
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
                num_cpus=cores() if config.sweep.workers == "auto" else config.sweep.workers,
                object_store_memory=256 * 2**20,
                **common,
            )
    try:
        resources = ray.cluster_resources()
        gpus = 1 if config.proxy.device != "cpu" and resources.get("GPU") else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(_ray_worker)
        if config.sweep.workers == "auto":  # a task per GPU, or a one-thread task per CPU
            n, threads = int(resources.get("GPU" if gpus else "CPU", 1)), None if gpus else 1
        else:
            n, threads = config.sweep.workers, None
        job.say(f"workers: {n} Ray tasks" + (f" x {threads} thread" if threads else ""))
        pending = [
            task.remote(job.url, job.study, config.sweep.heartbeat_s, os.getcwd(), threads)
            for _ in range(max(1, n))
        ]
        errors: list[str] = []
        while pending:
            done, pending = ray.wait(pending, timeout=1.0)
            for ref in done:
                try:
                    ray.get(ref)
                except Exception as e:  # a worker died: its runs are requeued by the ledger
                    errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
            job.tick(0)
        return errors
    finally:
        if started:
            ray.shutdown()
