"""Proxy training on one GPU: the laguna-60 pack first, then one proxy alone and the quickstart
pack of 60; tokens/s, the share of a bf16 matmul peak measured in the same run, peak memory,
the compile seconds apart from the steady state, and the laguna-60 sweep's projected hours.

    python benchmarks/gpu_speed.py [--pack 8] [--micro-batch 8] [--steps 5] [--out rows.jsonl]

Needs only torch, numpy and this repository's `proxies` package (no automixer, pydantic,
polars or optuna, no network): it runs from the repository root of a bare CUDA machine as it
is. Sizes are given, never searched: each row trains the pack and micro-batch on the command
line once (`proxies.timing.time_training`, the training step of a sweep, compiled by regions on
CUDA) on random tokens, times `--steps` steps after three warm-up steps with the device
synchronised only at the two ends, and is printed and appended to `--out` as one JSON line as
soon as it finishes (a row that runs out of memory says so, and the next row runs). The bf16
peak is the best of 20 8192^3 bf16 matmuls. FLOPs per token are `ModelConfig.flops_per_token`:
the matmuls a token needs, forward and backward (attention over the mean causal span, the k
routed experts and the shared one, the router, the output layer; the embedding lookup not
counted). `--device cpu --quick` runs the same code at toy sizes; `--device cpu --compile
--batch 1 --seq-len 256 --pack 2 --micro-batch 1 --rows pack` measures the compile seconds of
the `gpu-40m` step on a CPU (inductor's C++ backend). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # proxies, unless PYTHONPATH has one

from proxies.presets import get_preset
from proxies.timing import Trial, matmul_peak_flops, time_training

LAGUNA = {"preset": "gpu-40m", "vocab_size": 32_768, "batch_size": 64, "seq_len": 1024}
"""configs/laguna-60.yaml's proxy: 63 proxies x 200M tokens."""
LAGUNA_TOKENS = 63 * 200_000_000
QUICKSTART = {"preset": "quickstart", "vocab_size": 2048, "batch_size": 16, "seq_len": 256}
"""The shape of the one GPU figure on record (773,733 tok/s for a pack of 60)."""
RECORDED_QUICKSTART = 773_733


def row(name: str, shape: dict[str, Any], t: Trial, peak: float) -> dict[str, Any]:
    fpt = get_preset(shape["preset"], vocab_size=shape["vocab_size"]).flops_per_token(
        shape["seq_len"]
    )
    tps = t.tokens_per_s
    out = {
        "what": name,
        "shape": shape,
        "pack": t.pack,
        "micro_batch": t.micro_batch,
        "tokens_per_s": tps,
        "flops_per_token": fpt,
        "model_flops_per_s": tps * fpt if tps else None,
        "mfu_bf16": tps * fpt / peak if tps else None,
        "peak_memory_gib": t.peak_bytes / 2**30 if t.peak_bytes else None,
        "compile_s": t.compile_s,
    }
    if tps is None:
        print(f"{name}: pack {t.pack}, micro-batch {t.micro_batch}: out of memory", flush=True)
    else:
        memory = f", peak memory {out['peak_memory_gib']:.1f} GiB" if t.peak_bytes else ""
        print(
            f"{name}: pack {t.pack}, micro-batch {t.micro_batch}: {tps:,.0f} tok/s, "
            f"{tps * fpt / 1e12:.1f} TFLOP/s = {out['mfu_bf16']:.1%} of the bf16 peak{memory}; "
            f"compile and warm-up {t.compile_s:.0f} s beyond the steady state",
            flush=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--pack", type=int, default=8, help="gpu-40m proxies in the main pack")
    ap.add_argument("--micro-batch", type=int, default=8, help="the main pack's sequences a pass")
    ap.add_argument("--alone-micro-batch", type=int, default=16, help="one gpu-40m proxy's")
    ap.add_argument("--sixty-micro-batch", type=int, default=16, help="the quickstart pack's")
    ap.add_argument("--steps", type=int, default=5, help="timed steps after 3 warm-up steps")
    ap.add_argument("--rows", default="pack,alone,sixty", help="which rows, in this order")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="compile the step (default: on CUDA, as a sweep does)")  # fmt: skip
    ap.add_argument("--out", type=Path, help="append each row to this file as a JSON line")
    ap.add_argument("--quick", action="store_true", help="toy sizes (a check of the script)")
    ap.add_argument("--batch", type=int, help="the gpu-40m rows' batch (default 64)")
    ap.add_argument("--seq-len", type=int, help="the gpu-40m rows' sequence length (1024)")
    args = ap.parse_args()
    device = torch.device(args.device)
    t0 = time.perf_counter()
    laguna, quick, sixty = dict(LAGUNA), dict(QUICKSTART), 60
    if args.quick:
        laguna |= {"preset": "tiny", "vocab_size": 512, "batch_size": 4, "seq_len": 64}
        quick |= {"batch_size": 2, "seq_len": 64}
        sixty = 4
    laguna |= {"batch_size": args.batch or laguna["batch_size"]}
    laguna |= {"seq_len": args.seq_len or laguna["seq_len"]}
    n = 256 if args.quick or device.type != "cuda" else 8192  # bf16 on a CPU is slow
    peak = matmul_peak_flops(device, n, reps=20, dtype=torch.bfloat16)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    import proxies

    source = str(Path(proxies.__file__).resolve().parent)
    print(f"{name}, torch {torch.__version__}, proxies from {source}", flush=True)
    print(f"bf16 matmul peak ({n}^3, best of 20): {peak / 1e12:.1f} TFLOP/s", flush=True)
    result: dict[str, Any] = {
        "device": name,
        "torch": torch.__version__,
        "proxies": source,
        "bf16_peak": peak,
    }
    plans = {
        "pack": ("gpu-40m pack", laguna, args.pack, args.micro_batch),
        "alone": ("gpu-40m alone", laguna, 1, args.alone_micro_batch),
        "sixty": ("quickstart pack of 60", quick, sixty, args.sixty_micro_batch),
    }
    rows: dict[str, dict[str, Any]] = {}
    for key in args.rows.split(","):
        what, shape, pack, micro = plans[key]
        micro = min(micro, shape["batch_size"])
        trial = time_training(shape, args.device, pack, micro, args.steps, compile=args.compile)
        rows[key] = row(what, shape, trial, peak)
        if args.out is not None:
            with args.out.open("a") as f:
                f.write(json.dumps(rows[key] | {"device": name, "torch": torch.__version__}))
                f.write("\n")
    main_tps = rows.get("pack", {}).get("tokens_per_s")
    sixty_tps = rows.get("sixty", {}).get("tokens_per_s")
    result |= {
        "runs": list(rows.values()),
        "laguna_60_projected_hours": LAGUNA_TOKENS / main_tps / 3600 if main_tps else None,
        "quickstart_60_over_recorded": sixty_tps / RECORDED_QUICKSTART if sixty_tps else None,
        "seconds": time.perf_counter() - t0,
    }
    if main_tps:
        print(
            f"laguna-60 (63 x 200M tokens) at the pack's speed: "
            f"{result['laguna_60_projected_hours']:.2f} GPU-hours",
            flush=True,
        )
    if sixty_tps:
        print(
            f"quickstart pack of 60 at {result['quickstart_60_over_recorded']:.2f}x the "
            f"recorded {RECORDED_QUICKSTART:,} tok/s",
            flush=True,
        )
    print(f"{result['seconds']:.0f} s in all", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
