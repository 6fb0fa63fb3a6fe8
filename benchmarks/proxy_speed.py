"""Proxy training speed: the sweep's workers against one process, MFU per core, pack speedup.

    python benchmarks/proxy_speed.py [--preset quickstart] [--vocab 2048] [--steps 8] [--pack 8]

Workers: tokens/s of one training process using every core, and of the local executor's
alternative, one single-threaded process per core training at the same time (what
`sweep.workers: auto` compares, with the same code, `automixer.sweep.parallel.measure`). MFU per
core: the single-threaded processes' tokens/s x model FLOPs per token, over the cores' summed
single-threaded fp32 matmul peak (a large torch.mm, measured in the same run). Model FLOPs per
token: `ModelConfig.flops_per_token` (the matmuls a token needs, forward and backward: active
matmul parameters with the head, and attention over the mean causal span). The pack speedup
(with --pack P > 1) is the throughput of one pack of P proxies over P proxies trained one after
another, with the same per-proxy batch, in this process with every core. The last line is
JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from automixer.data.loader import MixtureLoader
from automixer.sweep.parallel import cores, measure
from proxies.presets import ModelConfig, get_preset
from proxies.timing import matmul_peak_flops
from proxies.train import TrainConfig, pick_device, train_pack


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
    ap.add_argument("--vocab", type=int, default=2048, help="vocabulary (the quickstart's 2048)")
    ap.add_argument("--pack", type=int, default=8, help="pack size for the speedup (1: skip)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = pick_device(args.device)
    cfg = get_preset(args.preset, vocab_size=args.vocab)
    fpt = cfg.flops_per_token(args.seq_len)
    n = cores()
    result: dict = {
        "preset": args.preset,
        "vocab": args.vocab,
        "device": str(device),
        "cores": n,
        "params": cfg.param_counts(),
        "flops_per_token": fpt,
    }
    if device.type == "cpu":
        torch.set_num_threads(1)
        core_peak = matmul_peak_flops(device) / 1e9
        torch.set_num_threads(n)
        shape = {
            "preset": args.preset,
            "vocab_size": args.vocab,
            "pack": 1,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
        }
        one = measure(shape, [n], timed=args.steps)
        many = measure(shape, [1] * n, timed=args.steps)
        result |= {
            "core_matmul_peak_gflops": core_peak,
            "one_process_tokens_per_s": one,
            "workers_tokens_per_s": many,
            "workers_over_one_process": many / one,
            "mfu_per_core": many * fpt / (n * core_peak * 1e9),
            "one_process_mfu": one * fpt / (n * core_peak * 1e9),
        }
        print(
            f"{n} cores; single-thread matmul peak {core_peak:.1f} GFLOP/s per core; "
            f"one process x {n} threads {one:,.0f} tok/s; {n} processes x 1 thread "
            f"{many:,.0f} tok/s ({many / one:.2f}x); MFU per core {result['mfu_per_core']:.1%} "
            f"(one process: {result['one_process_mfu']:.1%})",
            flush=True,
        )
    if args.pack > 1:
        tc = TrainConfig(device=str(device), log_every=10**9, warmup_fraction=0.0)
        peak = matmul_peak_flops(device) / 1e9
        lo = loaders(args.pack, args.steps, args.batch_size, args.seq_len, cfg.vocab_size)
        timed(cfg, lo[:1], [0], tc)  # warm-up (allocator, kernels)
        single = [timed(cfg, [lo[p]], [p], tc) for p in range(args.pack)]
        packed = timed(cfg, lo, list(range(args.pack)), tc)
        tokens_one = args.steps * args.batch_size * args.seq_len
        tps_single = tokens_one * args.pack / sum(single)
        tps_packed = tokens_one * args.pack / packed
        result |= {
            "pack": args.pack,
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
            f"(MFU {result['packed_mfu']:.1%}); speedup {result['packed_speedup']:.2f}x",
            flush=True,
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
