"""Proxy training on one GPU: the laguna-60 pack, one proxy alone, the quickstart pack of 60, MFU
against a bf16 matmul peak measured in the same run, peak memory, and the laguna-60 sweep's
projected hours.

    python benchmarks/gpu_speed.py [--pack 8] [--micro-batch 8] [--steps 5]

Every measurement is `automixer.sweep.devices.time_training`, the code `proxy.pack_size: auto`
uses: the compiled step (`fullgraph=True`) on random tokens, timed over `--steps` steps after
three warm-up steps (compilation included there), with the device synchronised only at the two
ends. A pack that runs out of memory is measured again at half the micro-batch (gradients
accumulated). FLOPs per token are `ModelConfig.flops_per_token`: the matmuls a token needs,
forward and backward (attention over the mean causal span, the k routed experts and the
shared one, the router, the output layer; the embedding lookup not counted). The bf16 peak is
the best of repeated 8192^3 bf16 matmuls. Sized to finish inside four minutes of an H200
(three compilations); `--device cpu --quick` runs the same code at toy sizes. Last line JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from proxy_speed import matmul_peak_gflops

from automixer.sweep.devices import Trial, time_training
from proxies.presets import get_preset

LAGUNA = {"preset": "gpu-40m", "vocab_size": 32_768, "batch_size": 64, "seq_len": 1024}
"""configs/laguna-60.yaml's proxy: 63 proxies x 200M tokens."""
LAGUNA_TOKENS = 63 * 200_000_000
QUICKSTART = {"preset": "quickstart", "vocab_size": 2048, "batch_size": 16, "seq_len": 256}
"""The shape of the one GPU figure on record (773,733 tok/s for a pack of 60)."""
RECORDED_QUICKSTART = 773_733


def fit(shape: dict[str, Any], device: str, pack: int, micro: int, steps: int) -> Trial:
    """The first micro-batch (halving from `micro`) at which the pack trains."""
    while True:
        t = time_training(shape, device, pack, micro, timed=steps)
        if t.tokens_per_s is not None or micro == 1:
            return t
        micro //= 2


def row(name: str, shape: dict[str, Any], t: Trial, peak: float) -> dict[str, Any]:
    fpt = get_preset(shape["preset"], vocab_size=shape["vocab_size"]).flops_per_token(
        shape["seq_len"]
    )
    tps = t.tokens_per_s or 0.0
    out = {
        "what": name,
        "shape": shape,
        "pack": t.pack,
        "micro_batch": t.micro_batch,
        "tokens_per_s": tps,
        "flops_per_token": fpt,
        "model_flops_per_s": tps * fpt,
        "mfu_bf16": tps * fpt / peak,
        "peak_memory_gib": (t.peak_bytes or 0) / 2**30,
    }
    print(
        f"{name}: pack {t.pack}, micro-batch {t.micro_batch}: {tps:,.0f} tok/s, "
        f"{tps * fpt / 1e12:.1f} TFLOP/s = {out['mfu_bf16']:.1%} of the bf16 peak, "
        f"peak memory {out['peak_memory_gib']:.1f} GiB",
        flush=True,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--pack", type=int, default=8, help="gpu-40m proxies in the pack")
    ap.add_argument("--micro-batch", type=int, default=8, help="sequences per proxy per pass")
    ap.add_argument("--steps", type=int, default=5, help="timed steps after 3 warm-up steps")
    ap.add_argument("--quick", action="store_true", help="toy sizes (a check of the script)")
    args = ap.parse_args()
    device = torch.device(args.device)
    t0 = time.perf_counter()
    laguna, quick, pack_of_60 = dict(LAGUNA), dict(QUICKSTART), 60
    if args.quick:
        laguna |= {"preset": "tiny", "vocab_size": 512, "batch_size": 4, "seq_len": 64}
        quick |= {"batch_size": 2, "seq_len": 64}
        pack_of_60 = 4
    n = 2048 if args.quick else 8192
    peak = matmul_peak_gflops(device, n, reps=20, dtype=torch.bfloat16) * 1e9
    print(f"bf16 matmul peak ({n}^3, best of 20): {peak / 1e12:.1f} TFLOP/s", flush=True)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "bf16_matmul_peak_flops": peak,
    }
    pack = row(
        "gpu-40m pack",
        laguna,
        fit(
            laguna, args.device, args.pack, min(args.micro_batch, laguna["batch_size"]), args.steps
        ),
        peak,
    )
    one = row(
        "gpu-40m alone",
        laguna,
        fit(laguna, args.device, 1, laguna["batch_size"], args.steps),
        peak,
    )
    sixty = row(
        "quickstart pack of 60",
        quick,
        fit(quick, args.device, pack_of_60, quick["batch_size"], args.steps),
        peak,
    )
    hours = LAGUNA_TOKENS / max(pack["tokens_per_s"], 1e-9) / 3600
    result |= {
        "runs": [pack, one, sixty],
        "laguna_60_projected_hours": hours,
        "quickstart_60_over_recorded": sixty["tokens_per_s"] / RECORDED_QUICKSTART,
        "seconds": time.perf_counter() - t0,
    }
    print(
        f"laguna-60 (63 x 200M tokens) at the pack's speed: {hours:.2f} GPU-hours; quickstart "
        f"pack of 60 at {result['quickstart_60_over_recorded']:.2f}x the recorded "
        f"{RECORDED_QUICKSTART:,} tok/s; {result['seconds']:.0f} s in all",
        flush=True,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
