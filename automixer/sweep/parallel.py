"""How many worker processes a local sweep runs, and how many threads each uses.

A small proxy keeps a CPU's cores poorly busy from one process: its matrices are too small for
the threads to share well. `sweep.workers: auto` therefore measures, once per machine and proxy
shape (the answer is cached in the run's cache folder), a few training steps of the sweep's own
proxy two ways: one process with every core, and one single-threaded process per core running
at the same time; it takes whichever trains more tokens per second in all. On a GPU node there
is one worker per visible GPU, each pinned to its own (`automixer.sweep.devices`). A number of
workers splits the cores between them (and, on a GPU node, takes the GPUs in turn).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import platform
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automixer.config import Config
from automixer.io import atomic_write_json, read_json_dict
from automixer.sweep.devices import (
    record_speed,
    resolve_sizes,
    shape_of,
    worker_devices,
)
from proxies.timing import RandomTokens

WARMUP_STEPS = 2
TIMED_STEPS = 4


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of `workers` processes sharing this machine's cores."""
    return max(1, cores() // workers)


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    reason: str
    measured: dict[str, float] = field(default_factory=dict)
    """Tokens per second of each way measured (all processes together), when measured."""
    devices: tuple[str, ...] = ()
    """The GPU each worker is pinned to (`CUDA_VISIBLE_DEVICES`), on a GPU node."""

    @property
    def threads(self) -> int:
        """Torch threads per worker."""
        return threads_per_worker(self.workers)


def plan_workers(config: Config, vocab_size: int) -> WorkerPlan:
    """The workers and threads for a local sweep of this config (see the module's text)."""
    n = cores()
    wanted = config.sweep.workers
    gpus = worker_devices(config)
    if gpus:
        k = len(gpus) if wanted == "auto" else wanted
        pinned = tuple(gpus[i % len(gpus)] for i in range(k))
        why = f"one worker per GPU: {', '.join(gpus)}" if wanted == "auto" else "sweep.workers"
        return WorkerPlan(k, why, devices=pinned)
    if wanted != "auto":
        return WorkerPlan(wanted, "sweep.workers")
    from proxies.train import pick_device

    if pick_device(config.proxy.device).type != "cpu":
        return WorkerPlan(1, f"one worker drives {config.proxy.device}")
    if n == 1:
        return WorkerPlan(1, "one core")
    shape = _shape(config, vocab_size)
    key = hashlib.sha256(json.dumps([shape, n, _machine()], sort_keys=True).encode()).hexdigest()
    cache = Path(config.run.cache_dir) / "workers.json"
    known = read_json_dict(cache)
    if key not in known:
        one = measure(shape, [n])
        many = measure(shape, [1] * n)
        known[key] = {"one process": one, f"{n} processes": many}
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache, known)
        cpu = f"{n} CPU cores ({_machine()[1] or _machine()[0]})"
        record_speed(config.run.cache_dir, shape_of(config, vocab_size), cpu, max(one, many))
    measured = known[key]
    one, many = measured["one process"], measured[f"{n} processes"]
    if many > one:
        return WorkerPlan(n, f"{n} single-threaded processes measured faster", measured)
    return WorkerPlan(1, f"one process with {n} threads measured faster", measured)


def _shape(config: Config, vocab_size: int) -> dict[str, Any]:
    return shape_of(config, vocab_size) | {"pack": resolve_sizes(config, vocab_size).pack}


def _machine() -> list[str]:
    import torch

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [platform.machine(), model, torch.__version__]


def _time_steps(
    shape: dict[str, Any], threads: int, timed: int, start: Any, out: Any, seed: int
) -> None:
    """In a fresh process: train the proxy shape for a few steps with `threads` threads, after
    `start` (a barrier shared by every process of the measurement); put its tokens/s in `out`."""
    import torch

    from proxies.presets import get_preset
    from proxies.train import TrainConfig, train_pack

    torch.set_num_threads(threads)
    cfg = get_preset(shape["preset"], vocab_size=shape["vocab_size"])
    steps = WARMUP_STEPS + timed
    loaders = [
        RandomTokens(shape["vocab_size"], steps, shape["batch_size"], shape["seq_len"], seed + i)
        for i in range(shape["pack"])
    ]
    marks: dict[int, float] = {}
    start.wait()
    train_pack(
        cfg,
        loaders,
        list(range(shape["pack"])),
        TrainConfig(device="cpu", log_every=10**9, eval_tokens=0),
        on_step=lambda step, _model: marks.__setitem__(step, time.perf_counter()),
    )
    tokens = timed * shape["pack"] * shape["batch_size"] * shape["seq_len"]
    out.put(tokens / (marks[steps - 1] - marks[WARMUP_STEPS - 1]))


def measure(shape: dict[str, Any], threads: list[int], timed: int = TIMED_STEPS) -> float:
    """Tokens per second of len(threads) processes training at once (process i with
    threads[i] torch threads), all together, over `timed` steps after a short warm-up. The
    caller's main module must be importable (`if __name__ == "__main__":`)."""
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(len(threads))
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_time_steps, args=(shape, t, timed, start, out, i))
        for i, t in enumerate(threads)
    ]
    for p in procs:
        p.start()
    rates: list[float] = []
    while len(rates) < len(procs):
        try:
            rates.append(out.get(timeout=1.0))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):  # no waiting 600 s on a crash
                for p in procs:
                    p.kill()
                raise RuntimeError("a speed-measuring process failed") from None
    for p in procs:
        p.join()
    return float(sum(rates))


def describe(plan: WorkerPlan) -> str:
    figures = ", ".join(f"{k} {v:,.0f} tok/s" for k, v in plan.measured.items())
    why = plan.reason + (": " + figures if figures else "")
    if plan.devices and plan.reason == "sweep.workers":
        why += f"; GPUs {', '.join(plan.devices)}"
    return (
        f"{plan.workers} worker{'s' if plan.workers > 1 else ''} x {plan.threads} "
        f"thread{'s' if plan.threads > 1 else ''} ({why})"
    )
