"""Sweep runner overhead: a sweep of 16 tiny proxies against their training and eval alone.

    python benchmarks/sweep_overhead.py

Measures (1) each of the 16 planned runs trained and scored alone, one after another, with the
same packing the sweep uses (`proxy.pack_size`), summed; (2) `automixer sweep` on the same
config from a cold process (ledger, planning, claims, heartbeats, recording, export included);
(3) the time from the command's start to the first proxy step. overhead_fraction = (2) / (1) - 1,
the median over `--repeats` pairs measured alternately (this machine's speed drifts by 10-20%
between minutes). The data cache is built first so that neither side pays for it. The last line
is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from automixer.config import load_config
from automixer.design import plan_mixtures
from automixer.evals.scoring import score_suites
from automixer.evals.suites import config_tasks
from automixer.sweep.training import data_bundle, train_config

CONFIG = {
    "run": {"name": "overhead"},
    "domains": [
        {"name": n, "builtin": n, "max_bytes": 400_000} for n in ("code", "math", "wiki", "bible")
    ],
    "tokenizer": {"vocab_size": 1024, "sample_bytes_per_domain": 200_000},
    "proxy": {"preset": "tiny", "tokens": 16384, "seq_len": 64, "batch_size": 8, "pack_size": 4},
    # one worker in the command's own process: the same single process as the runs alone
    # (sweep.workers: auto would train on every core and hide the overhead)
    "sweep": {"n_runs": 16, "replicates": 0, "heartbeat_s": 5, "workers": 1},
    "evals": {"suites": ["arc_easy", "piqa", "gsm8k", "humaneval"], "n_per_suite": 20},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alone/sweep pairs to measure")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="automixer-overhead-"))
    cfg = {
        **CONFIG,
        "run": {**CONFIG["run"], "out_dir": str(tmp / "runs"), "cache_dir": str(tmp / "cache")},
    }
    path = tmp / "overhead.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config = load_config(path)
    bundle = data_bundle(config, progress=False)  # what the sweep opens: warm for both sides
    from proxies.presets import get_preset
    from proxies.train import train_pack

    caps = {
        d: config.data.max_epochs * v.train.tokens / config.proxy.tokens
        for d, v in bundle.domains.items()
    }
    planned = plan_mixtures(
        bundle.natural_weights(),
        n_runs=16,
        seed=0,
        caps=caps,
        replicates=0,
        min_distance=config.sweep.min_distance,
    )
    tasks = config_tasks(config, exclude=bundle.contaminated_items)
    model_cfg = get_preset("tiny", vocab_size=bundle.tokenizer.get_vocab_size())

    def train_alone() -> float:
        t = time.perf_counter()
        P = config.proxy.pack_size
        for i in range(0, len(planned), P):
            group = planned[i : i + P]
            loaders = [bundle.loader(r.weights, config, seed=r.seed) for r in group]
            train_pack(
                model_cfg,
                loaders,
                [r.seed for r in group],
                train_config(config),
                val=bundle.val_arrays(),
                token_bytes=bundle.token_bytes,
                evaluate=lambda m: score_suites(m, bundle.tokenizer, tasks, config),
            )
        return time.perf_counter() - t

    def sweep_command() -> tuple[float, float]:
        shutil.rmtree(tmp / "runs", ignore_errors=True)  # a new sweep each time
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "automixer.cli", "sweep", str(path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        first_step = math.nan
        assert proc.stdout is not None
        for line in proc.stdout:
            if math.isnan(first_step) and "first proxy step" in line:
                first_step = time.perf_counter() - t0
        proc.wait()
        if proc.returncode != 0:
            raise SystemExit("the sweep failed")
        return time.perf_counter() - t0, first_step

    pairs = []
    for r in range(args.repeats):  # alternate, so that drifts in machine load hit both sides
        alone = train_alone()
        swept, first = sweep_command()
        pairs.append((alone, swept, first))
        print(f"repeat {r + 1}: alone {alone:.1f}s, sweep {swept:.1f}s ({swept / alone - 1:+.1%})")
    ratios = sorted(s / a - 1 for a, s, _ in pairs)
    alone = statistics.median(a for a, _, _ in pairs)
    swept = statistics.median(s for _, s, _ in pairs)
    first_step = statistics.median(f for _, _, f in pairs)
    result = {
        "runs": 16,
        "alone_seconds": alone,
        "sweep_seconds": swept,
        "overhead_fraction": statistics.median(ratios),
        "overhead_fraction_range": [ratios[0], ratios[-1]],
        "repeats": args.repeats,
        "seconds_to_first_step": first_step,
    }
    print(
        f"16 runs alone {alone:.1f}s, as a sweep {swept:.1f}s (medians): overhead "
        f"{result['overhead_fraction']:+.1%} (median of {args.repeats}, range "
        f"{ratios[0]:+.1%} to {ratios[-1]:+.1%}); first step after {first_step:.1f}s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
