"""Accelerators: which GPUs a local sweep's workers use, and the sizes that fill each one.

Every GPU of a node is used: with `sweep.workers: auto` and `proxy.device` 'auto' or 'cuda',
the local executor starts one worker process per visible GPU, each pinned to its own device
through `CUDA_VISIBLE_DEVICES` (so it sees one GPU, as `cuda`).

`proxy.pack_size` and `proxy.micro_batch` 'auto' on a GPU: a memory estimate from the shapes
(`proxies.timing.plan_sizes`) picks the pack (1, 2, 4, ... 64, never more than the sweep's
proxies) and the largest micro-batch that fits, the most tokens in one pass; one short compiled
training of random tokens at those sizes measures its speed and peak memory, and only if it
runs out of memory is a second one made at half the micro-batch: at most two compilations.
The measurement runs once per device and proxy shape, in a process of its own, and is cached
in `run.cache_dir`/gpu_sizes.json with its peak memory. On a CPU 'auto' is one proxy and the
whole batch.

Each measured speed is also kept for `automixer data --dry-run`, which turns the sweep's
training FLOPs into an expected wall time (`expected_speed`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from automixer.config import Config
from automixer.io import atomic_write_json, hash_json, read_json_dict
from proxies.timing import Trial, plan_sizes, time_training

CPU_PACK = 1
"""On a CPU a pack of 8 trained at 0.89-0.93x of eight proxies one after another (BENCHMARKS.md):
one proxy per worker process, and the cores split between processes."""
PACKS = (1, 2, 4, 8, 16, 32, 64)


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as `CUDA_VISIBLE_DEVICES` names them (so a
    worker pinned to one sees just that one)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        names = [x.strip() for x in given.split(",") if x.strip()]
        return names[:n]
    return [str(i) for i in range(n)]


def worker_devices(config: Config) -> list[str]:
    """The GPU each local worker is pinned to, one per visible GPU ([] on a CPU, or when
    `proxy.device` names one device, which the single worker then uses as named)."""
    if config.proxy.device not in ("auto", "cuda"):
        return []
    return visible_gpus()


def pin_to(device: str | None) -> None:
    """In a fresh worker process, before CUDA starts: see only this GPU."""
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device


@dataclass(frozen=True)
class Sizes:
    pack: int
    micro_batch: int
    reason: str
    tokens_per_s: float | None = None
    """All proxies of the pack together, when measured."""
    peak_bytes: int | None = None
    """The device's peak memory while training at these sizes, when measured."""


def shape_of(config: Config, vocab_size: int) -> dict[str, Any]:
    p = config.proxy
    return {
        "preset": p.preset,
        "vocab_size": vocab_size,
        "batch_size": p.batch_size,
        "seq_len": p.seq_len,
    }


def choose(
    trial: Callable[[int, int], Trial], plan: list[tuple[int, int]]
) -> tuple[Trial, list[Trial]]:
    """Measure the planned (pack, micro-batch) trials in order with `trial(pack, micro)` until
    one fits. Returns it and every trial made."""
    tried: list[Trial] = []
    for pack, micro in plan:
        t = trial(pack, micro)
        tried.append(t)
        if t.tokens_per_s is not None:
            return t, tried
    if not tried:
        raise RuntimeError("by its memory estimate, not one proxy fits this device")
    sizes = ", ".join(f"{t.pack} proxies x {t.micro_batch} sequences" for t in tried)
    raise RuntimeError(
        f"ran out of device memory at {sizes}: set proxy.pack_size and proxy.micro_batch"
    )


def resolve_sizes(config: Config, vocab_size: int) -> Sizes:
    """The pack size and micro-batch a worker trains with (see the module's text)."""
    from proxies.train import pick_device

    p = config.proxy
    pack = p.pack_size if p.pack_size != "auto" else None
    micro = p.micro_batch if p.micro_batch != "auto" else None
    if pack is not None and micro is not None:
        return Sizes(pack, micro, "proxy.pack_size and proxy.micro_batch")
    device = pick_device(p.device)
    if device.type != "cuda":
        return Sizes(pack or CPU_PACK, micro or p.batch_size, "on a CPU")
    measured = measured_sizes(config, vocab_size, fixed_pack=pack)
    return Sizes(
        pack or measured.pack,
        micro or measured.micro_batch,
        measured.reason,
        measured.tokens_per_s,
        measured.peak_bytes,
    )


def describe_sizes(sizes: Sizes, batch_size: int) -> str:
    accumulate = batch_size // sizes.micro_batch
    text = f"{sizes.pack} proxies, micro-batches of {sizes.micro_batch}"
    if accumulate > 1:
        text += f" (gradients of {accumulate} accumulated)"
    if sizes.tokens_per_s:
        text += f"; {sizes.tokens_per_s:,.0f} tok/s measured"
    if sizes.peak_bytes:
        text += f", peak memory {sizes.peak_bytes / 2**30:.1f} GiB"
    return f"{text} ({sizes.reason})"


def measured_sizes(config: Config, vocab_size: int, fixed_pack: int | None = None) -> Sizes:
    """The measured sizes for this device and shape, from the cache or measured now."""
    shape = shape_of(config, vocab_size)
    device = _device_name(config)
    most = fixed_pack or config.sweep.n_runs + config.sweep.replicates
    key = hash_json([shape, device, most, fixed_pack])
    path = Path(config.run.cache_dir) / "gpu_sizes.json"
    known = read_json_dict(path)
    if key not in known:
        t0 = time.perf_counter()
        best, tried = _measure_in_process(config, shape, most, fixed_pack)
        known[key] = {
            "shape": shape,
            "device": device,
            "best": asdict(best),
            "trials": [asdict(t) for t in tried],
            "seconds": time.perf_counter() - t0,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, known)
        record_speed(config.run.cache_dir, shape, device, best.tokens_per_s or 0.0)
    best = known[key]["best"]
    return Sizes(
        best["pack"],
        best["micro_batch"],
        f"measured on {device}",
        best["tokens_per_s"],
        best["peak_bytes"],
    )


def _device_name(config: Config) -> str:
    import torch

    from proxies.train import pick_device

    device = pick_device(config.proxy.device)
    return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"


def _measure_in_process(
    config: Config, shape: dict[str, Any], most: int, fixed_pack: int | None
) -> tuple[Trial, list[Trial]]:
    """`choose` with trials run in a fresh process (a failed allocation leaves nothing behind
    in the sweep's own)."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(
        target=_measure_child,
        args=(shape, config.proxy.device, most, (fixed_pack,) if fixed_pack else PACKS, out),
    )
    proc.start()
    while True:
        try:
            best, tried = out.get(timeout=1.0)
            break
        except queue.Empty:
            if proc.exitcode is not None:
                raise RuntimeError(
                    f"the GPU size measurement failed (exit {proc.exitcode})"
                ) from None
    proc.join()
    return Trial(**best), [Trial(**t) for t in tried]


def _measure_child(
    shape: dict[str, Any], device: str, most: int, packs: tuple[int, ...], out: Any
) -> None:
    import torch

    from proxies.presets import get_preset
    from proxies.train import pick_device

    dev = pick_device(device)
    cfg = get_preset(shape["preset"], vocab_size=shape["vocab_size"])
    plan = plan_sizes(
        cfg,
        shape["seq_len"],
        shape["batch_size"],
        most,
        torch.cuda.get_device_properties(dev).total_memory,
        packs,
    )
    best, tried = choose(lambda pack, micro: time_training(shape, device, pack, micro), plan)
    out.put((asdict(best), [asdict(t) for t in tried]))


def record_speed(
    cache_dir: str | Path, shape: dict[str, Any], device: str, tokens_per_s: float
) -> None:
    """Keep a measured training speed (all of one device's proxies together) of this shape on
    this device, for the dry run."""
    path = Path(cache_dir) / "speeds.json"
    known = read_json_dict(path)
    known[hash_json([shape, device])] = {
        "shape": shape,
        "device": device,
        "tokens_per_s": tokens_per_s,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, known)


def expected_speed(config: Config, vocab_size: int) -> list[dict[str, Any]]:
    """Every measured speed of this config's proxy shape (any device), fastest first."""
    shape = shape_of(config, vocab_size)
    known = read_json_dict(Path(config.run.cache_dir) / "speeds.json")
    found = [v for v in known.values() if isinstance(v, dict) and v.get("shape") == shape]
    return sorted(found, key=lambda v: -float(v.get("tokens_per_s") or 0.0))
