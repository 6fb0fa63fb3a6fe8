"""Sweep runner overhead: a sweep of 16 tiny proxies against their training and eval alone.

    python benchmarks/sweep_overhead.py

Measures (1) each of the 16 planned runs trained and scored alone, one after another, with the
same packing the sweep uses (`proxy.pack_size`), summed, in this warm process; (2) the same as a
standalone script from a cold process (`--alone-script`: start Python, import torch and the
proxies, open the cached data, plan, train and score: what any way of training these runs pays);
(3) `automixer sweep` on the same config from a cold process (ledger, planning, claims,
heartbeats, recording, export included); (4) the time from the command's start to the first
proxy step. overhead_fraction = (3) / (2) - 1, what the sweep runner adds to the same work done
by a script; overhead_vs_warm = (3) / (1) - 1 also charges the sweep with starting Python and
importing torch. Medians over `--repeats` rounds measured alternately (this machine's speed
drifts by 10-20% between minutes). The data cache is built first so that no side pays for it.
The last line is JSON.
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
from collections.abc import Callable
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


def alone_runner(path: Path) -> Callable[[], float]:
    """What a script that trains and scores the 16 runs without the sweep runner needs (the
    cached data opened, the mixtures planned, the eval items loaded), and the function that
    trains and scores them one pack after another, returning its seconds."""
    config = load_config(path)
    bundle = data_bundle(config, progress=False)
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

    return train_alone


def cold(command: list[str], marker: str | None = None) -> tuple[float, float]:
    """Seconds from starting `command` to its exit, and to the first output line holding
    `marker` (NaN without one)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first = math.nan
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker and math.isnan(first) and marker in line:
            first = time.perf_counter() - t0
    proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{command[1:3]} failed:\n{''.join(lines[-20:])}")
    return time.perf_counter() - t0, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds to measure")
    parser.add_argument(
        "--alone-script", type=Path, help=argparse.SUPPRESS
    )  # the cold standalone side: train and score the runs of this config, exit
    args = parser.parse_args()
    if args.alone_script is not None:
        alone_runner(args.alone_script)()
        return
    tmp = Path(tempfile.mkdtemp(prefix="automixer-overhead-"))
    cfg = {
        **CONFIG,
        "run": {**CONFIG["run"], "out_dir": str(tmp / "runs"), "cache_dir": str(tmp / "cache")},
    }
    path = tmp / "overhead.yaml"
    path.write_text(yaml.safe_dump(cfg))
    train_alone = alone_runner(path)  # builds the data cache: warm for every side

    def sweep_command() -> tuple[float, float]:
        shutil.rmtree(tmp / "runs", ignore_errors=True)  # a new sweep each time
        return cold([sys.executable, "-m", "automixer.cli", "sweep", str(path)], "first proxy step")

    rounds = []
    for r in range(args.repeats):  # alternate, so that drifts in machine load hit every side
        warm = train_alone()
        script, _ = cold([sys.executable, __file__, "--alone-script", str(path)])
        swept, first = sweep_command()
        rounds.append((warm, script, swept, first))
        print(
            f"repeat {r + 1}: alone {warm:.1f}s in this process, {script:.1f}s as a script; "
            f"sweep {swept:.1f}s ({swept / script - 1:+.1%} over the script)",
            flush=True,
        )
    over_script = sorted(s / a - 1 for _, a, s, _ in rounds)
    over_warm = sorted(s / w - 1 for w, _, s, _ in rounds)
    result = {
        "runs": 16,
        "alone_seconds": statistics.median(w for w, _, _, _ in rounds),
        "alone_script_seconds": statistics.median(a for _, a, _, _ in rounds),
        "sweep_seconds": statistics.median(s for _, _, s, _ in rounds),
        "overhead_fraction": statistics.median(over_script),
        "overhead_fraction_range": [over_script[0], over_script[-1]],
        "overhead_vs_warm": statistics.median(over_warm),
        "overhead_vs_warm_range": [over_warm[0], over_warm[-1]],
        "repeats": args.repeats,
        "seconds_to_first_step": statistics.median(f for _, _, _, f in rounds),
    }
    print(
        f"16 runs: alone {result['alone_seconds']:.1f}s warm, "
        f"{result['alone_script_seconds']:.1f}s as a script, {result['sweep_seconds']:.1f}s as a "
        f"sweep (medians); the runner's overhead {result['overhead_fraction']:+.1%} (range "
        f"{over_script[0]:+.1%} to {over_script[-1]:+.1%}); against the warm process "
        f"{result['overhead_vs_warm']:+.1%}; first step after "
        f"{result['seconds_to_first_step']:.1f}s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
