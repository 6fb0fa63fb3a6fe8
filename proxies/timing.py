"""Measuring proxy training on a device: random-token batches, a timed training of a pack, the
matmul peak to count utilisation against, and a memory estimate that sizes a pack before any
trial. Needs only torch and numpy (a lent GPU machine's image has no more), and is what
`automixer.sweep.devices` (`proxy.pack_size: auto`) and `benchmarks/gpu_speed.py` both run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from proxies.loss import CHUNK_BYTES
from proxies.presets import ModelConfig, get_preset

WARMUP_STEPS = 3
TIMED_STEPS = 5


class RandomTokens:
    """A BatchSource of random tokens: the speed of a step does not depend on the data."""

    def __init__(self, vocab: int, steps: int, batch_size: int, seq_len: int, seed: int) -> None:
        self.vocab, self.steps, self.batch_size, self.seq_len = vocab, steps, batch_size, seq_len
        self.seed = seed

    def batch(self, step: int) -> np.ndarray:  # the same batch for the same step
        rng = np.random.default_rng([self.seed, step])
        return rng.integers(0, self.vocab, (self.batch_size, self.seq_len + 1))


@dataclass(frozen=True)
class Trial:
    """One measured (pack, micro-batch): tokens per second, or None when it ran out of memory;
    the device's peak memory; the seconds of the first steps beyond the steady state (the
    compilation, when compiled)."""

    pack: int
    micro_batch: int
    tokens_per_s: float | None
    peak_bytes: int | None = None
    compile_s: float | None = None


def time_training(
    shape: dict[str, Any],
    device: str,
    pack: int,
    micro_batch: int,
    timed: int = TIMED_STEPS,
    warmup: int = WARMUP_STEPS,
    compile: bool | None = None,
) -> Trial:
    """Train a pack of random-token proxies of this shape (`preset`, `vocab_size`,
    `batch_size`, `seq_len`) with the training step of a sweep (compiled on CUDA); tokens per
    second over the `timed` steps after `warmup` steps, the peak memory, and the warm-up's
    excess over as many steady steps (the compilation). Running out of memory is a trial that
    does not fit."""
    from proxies.train import TrainConfig, pick_device, train_pack

    dev = pick_device(device)
    cfg = get_preset(shape["preset"], vocab_size=shape["vocab_size"])
    steps = warmup + timed
    loaders = [
        RandomTokens(shape["vocab_size"], steps, shape["batch_size"], shape["seq_len"], i)
        for i in range(pack)
    ]
    marks: dict[int, float] = {}

    def mark(step: int, _model: Any) -> None:
        if step in (warmup - 1, steps - 1):  # waits for the device only where it times
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            marks[step] = time.perf_counter()

    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    try:
        train_pack(
            cfg,
            loaders,
            list(range(pack)),
            TrainConfig(
                device=device,
                log_every=10**9,
                eval_tokens=0,
                micro_batch=micro_batch,
                compile=compile,
            ),
            on_step=mark,
            max_steps=steps,
        )
    except torch.OutOfMemoryError:
        return Trial(pack, micro_batch, None)
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    step_s = (marks[steps - 1] - marks[warmup - 1]) / timed
    tokens = pack * shape["batch_size"] * shape["seq_len"]
    peak = int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else None
    compile_s = max(0.0, marks[warmup - 1] - t0 - warmup * step_s)
    return Trial(pack, micro_batch, tokens / step_s, peak, compile_s)


def matmul_peak_flops(
    device: torch.device, n: int = 2048, reps: int = 10, dtype: torch.dtype = torch.float32
) -> float:
    """FLOP/s of the best of `reps` n x n x n matmuls in `dtype`."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def estimate_bytes(
    cfg: ModelConfig, pack: int, micro_batch: int, seq_len: int, device_type: str = "cuda"
) -> int:
    """The device memory a pack needs to train at this micro-batch, from the shapes alone: the
    weights, their gradients and optimizer states (float32), the Newton-Schulz iteration's
    copies, the activations autograd keeps per token (bfloat16 matmul outputs under CUDA's
    autocast, float32 on a CPU) and the fused loss's chunk and gradients, with a margin of
    1.5x for autograd's transients and the allocator. A first guess that sizes the first trial
    (`plan_sizes`); the trials' measured peak memory is what is reported."""
    a = 2 if device_type == "cuda" else 4  # matmul outputs
    f = 4
    counts = cfg.param_counts()
    D, S, H, K = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
    adam = 2 * cfg.vocab_size * D + D + cfg.n_layers * (2 * D + 2 * S + D * cfg.n_experts)
    muon = counts["total"] - adam
    weights = pack * (counts["total"] * 2 * f + muon * f + adam * 2 * f + muon * a * 4)
    attn = 2 * f * D + a * D + 2 * a * (H + 2 * K) * S + 3 * f * (H + K) * S + 2 * a * D
    if cfg.dense:
        ffn = 2 * f * D + a * D + a * (D + 4 * cfg.dense_hidden)
    else:
        F_, k = cfg.expert_hidden, cfg.top_k
        ffn = 2 * f * D + a * D + k * (a * (4 * D + 4 * F_) + 2 * f * D)
        ffn += a * (D + 4 * F_ * cfg.n_shared)
    tokens = pack * micro_batch * seq_len
    activations = tokens * (cfg.n_layers * (attn + ffn) + 2 * f * D)
    chunk = min(CHUNK_BYTES.get(device_type, CHUNK_BYTES["cpu"]), tokens * cfg.vocab_size * f)
    loss = 3 * chunk + pack * cfg.vocab_size * D * f + tokens * D * f
    return int(1.5 * (weights + activations + loss))


def plan_sizes(
    cfg: ModelConfig,
    seq_len: int,
    batch_size: int,
    most: int,
    memory_bytes: int,
    packs: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
    device_type: str = "cuda",
    budget: float = 0.85,
) -> list[tuple[int, int]]:
    """At most two (pack, micro-batch) trials, the preferred first: for each pack (never more
    than the sweep's `most` proxies) the largest micro-batch dividing the batch whose memory
    estimate fits `budget` of the device; the pack and micro-batch with the most tokens in one
    pass win (the pack's experts run as grouped GEMMs of at most 1023 groups, `gemm_chunks`),
    and the second trial is the same pack at half the micro-batch (or half the pack), for when
    the first runs out of memory. Empty: not one sequence of one proxy fits. Any pack size
    is possible: a pack of more experts than one grouped GEMM takes runs as several
    (`proxies.moe.gemm_chunks`)."""
    options: list[tuple[int, int]] = []
    for pack in sorted({p for p in packs if p < most} | {min(most, max(packs))}):
        micro = batch_size
        while micro >= 1:
            if estimate_bytes(cfg, pack, micro, seq_len, device_type) <= budget * memory_bytes:
                options.append((pack, micro))
                break
            micro = _smaller_divisor(batch_size, micro)
    if not options:
        return []
    best = max(options, key=lambda o: (o[0] * o[1], o[1]))
    pack, micro = best
    fallback = (pack, _smaller_divisor(batch_size, micro)) if micro > 1 else (pack // 2, micro)
    return [best] + ([fallback] if fallback[0] >= 1 and fallback != best else [])


def _smaller_divisor(n: int, d: int) -> int:
    """The largest divisor of n below d (0 below 1)."""
    d //= 2
    while d > 1 and n % d:
        d -= 1
    return d
