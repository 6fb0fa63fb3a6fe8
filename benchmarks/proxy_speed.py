"""Proxy training speed: tokens/s and model FLOP utilisation of a preset, and the pack speedup.

    python benchmarks/proxy_speed.py [--preset quickstart] [--pack 8] [--steps 8]

The fp32 matrix-multiply peak is measured in the same run (a large torch.mm), so MFU is a
fraction of what this machine does at best. Model FLOPs per token: 6 x (active matmul
parameters, the head included) + attention (12 x layers x d_model x attended length). The pack
speedup is the throughput of one pack of P proxies over P proxies trained one after another,
with the same per-proxy batch. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from automixer.data.loader import MixtureLoader
from proxies.presets import ModelConfig, get_preset
from proxies.train import TrainConfig, pick_device, train_pack


def matmul_peak_gflops(device: torch.device, n: int = 2048, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    counts = cfg.param_counts()
    matmul = counts["non_embedding_active"] + cfg.vocab_size * cfg.d_model
    attended = 0.0
    for layer in range(cfg.n_layers):
        span = seq_len if cfg.is_global(layer) else min(cfg.window, seq_len)
        attended += span / 2  # causal: on average half the span
    return 6 * matmul + 12 * cfg.d_model * attended


def loaders(n: int, steps: int, batch: int, seq_len: int, vocab: int) -> list[MixtureLoader]:
    rng = np.random.default_rng(0)
    shards = {f"d{i}": rng.integers(0, vocab, 200_000).astype(np.uint16) for i in range(4)}
    out = []
    for p in range(n):
        w = rng.dirichlet(np.ones(4))
        w = dict(zip(shards, (w / w.sum()).tolist(), strict=True))
        out.append(MixtureLoader(shards, w, steps * batch * seq_len, seq_len, batch, seed=p))
    return out


def timed(cfg: ModelConfig, lo: list[MixtureLoader], seeds: list[int], tc: TrainConfig) -> float:
    t = time.perf_counter()
    train_pack(cfg, lo, seeds, tc)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="quickstart")
    ap.add_argument("--pack", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = pick_device(args.device)
    cfg = get_preset(args.preset)
    tc = TrainConfig(device=str(device), log_every=10**9, warmup_fraction=0.0)
    peak = matmul_peak_gflops(device)
    fpt = flops_per_token(cfg, args.seq_len)
    lo = loaders(args.pack, args.steps, args.batch_size, args.seq_len, cfg.vocab_size)
    timed(cfg, lo[:1], [0], tc)  # warm-up (allocator, kernels)
    single = [timed(cfg, [lo[p]], [p], tc) for p in range(args.pack)]
    packed = timed(cfg, lo, list(range(args.pack)), tc)
    tokens_one = args.steps * args.batch_size * args.seq_len
    tps_single = tokens_one * args.pack / sum(single)
    tps_packed = tokens_one * args.pack / packed
    result = {
        "preset": args.preset,
        "device": str(device),
        "pack": args.pack,
        "params": cfg.param_counts(),
        "flops_per_token": fpt,
        "matmul_peak_gflops": peak,
        "tokens_per_s": tps_single,
        "mfu": tps_single * fpt / (peak * 1e9),
        "packed_tokens_per_s": tps_packed,
        "packed_mfu": tps_packed * fpt / (peak * 1e9),
        "packed_speedup": tps_packed / tps_single,
    }
    print(
        f"matmul peak {peak:.1f} GFLOP/s; one proxy {tps_single:,.0f} tok/s "
        f"(MFU {result['mfu']:.1%}); pack of {args.pack} {tps_packed:,.0f} tok/s "
        f"(MFU {result['packed_mfu']:.1%}); speedup {result['packed_speedup']:.2f}x"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
