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
importing torch. Medians over `--repeats` rounds measured alternately, the two cold sides in
turns (this machine's speed drifts by 10-20% between minutes). The data cache is built first
so that no side pays for it.

Both cold sides also time, in their own process, what they spend inside `proxies.train.
train_pack` (training and scoring, the same code on both sides); the rest is each side's time
outside it. overhead_outside_fraction = (sweep's outside - script's outside) / (2): the runner's
own seconds, without the drift of the training between two processes, which swamps a few
percent on this machine. inside_ratio = sweep's inside / script's inside checks that the runner
does not slow the training itself (it should be near 1). The last line is JSON.
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


TIMED = """
import atexit, json, sys, time
import proxies.train as T
inside = [0.0]
train_pack = T.train_pack
def timed(*args, **kwargs):
    t = time.perf_counter()
    try:
        return train_pack(*args, **kwargs)
    finally:
        inside[0] += time.perf_counter() - t
T.train_pack = timed
atexit.register(lambda: print(MARK, json.dumps(inside[0]), flush=True))
target, sys.argv = sys.argv[1], sys.argv[1:]
if target == "automixer":
    from automixer.cli import main
    main()
else:
    import runpy
    runpy.run_path(target, run_name="__main__")
"""
"""Runs a command (`automixer ...` or a script) with `proxies.train.train_pack` timed: its
seconds inside it are printed after MARK at exit. Importing proxies.train first moves the torch
import earlier; both sides import it anyway."""
MARK = "seconds-inside-train-pack"


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


def cold(args: list[str], marker: str | None = None) -> tuple[float, float, float]:
    """Seconds from starting `args` (["automixer", ...] or [script, ...]) in a fresh Python to
    its exit, to its first output line holding `marker` (NaN without one), and inside
    `train_pack`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", TIMED.replace("MARK", repr(MARK)), *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first = inside = math.nan
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker and math.isnan(first) and marker in line:
            first = time.perf_counter() - t0
        if line.startswith(MARK):
            inside = float(line.split()[1])
    proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{args[:2]} failed:\n{''.join(lines[-20:])}")
    return time.perf_counter() - t0, first, inside


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

    def sweep_command() -> tuple[float, float, float]:
        shutil.rmtree(tmp / "runs", ignore_errors=True)  # a new sweep each time
        return cold(["automixer", "sweep", str(path)], "first proxy step")

    rounds = []
    for r in range(args.repeats):  # alternate, so that drifts in machine load hit every side
        warm = train_alone()
        # the two cold sides in turns (script first, then sweep first): a side that always ran
        # second read 7-15% slower inside train_pack, in every one of 5 rounds
        if r % 2 == 0:
            script, _, script_in = cold([__file__, "--alone-script", str(path)])
            swept, first, swept_in = sweep_command()
        else:
            swept, first, swept_in = sweep_command()
            script, _, script_in = cold([__file__, "--alone-script", str(path)])
        outside = ((swept - swept_in) - (script - script_in)) / script
        rounds.append((warm, script, swept, first, outside, swept_in / script_in))
        print(
            f"repeat {r + 1}: alone {warm:.1f}s in this process, {script:.1f}s as a script "
            f"({script - script_in:.2f}s outside train_pack); sweep {swept:.1f}s "
            f"({swept - swept_in:.2f}s outside): {swept / script - 1:+.1%} over the script, "
            f"{outside:+.1%} outside train_pack",
            flush=True,
        )

    def med(i: int) -> float:
        return statistics.median(x[i] for x in rounds)

    over_script = sorted(x[2] / x[1] - 1 for x in rounds)
    over_warm = sorted(x[2] / x[0] - 1 for x in rounds)
    outside = sorted(x[4] for x in rounds)
    result = {
        "runs": 16,
        "alone_seconds": med(0),
        "alone_script_seconds": med(1),
        "sweep_seconds": med(2),
        "overhead_fraction": statistics.median(over_script),
        "overhead_fraction_range": [over_script[0], over_script[-1]],
        "overhead_vs_warm": statistics.median(over_warm),
        "overhead_vs_warm_range": [over_warm[0], over_warm[-1]],
        "overhead_outside_fraction": statistics.median(outside),
        "overhead_outside_fraction_range": [outside[0], outside[-1]],
        "inside_ratio": med(5),
        "repeats": args.repeats,
        "seconds_to_first_step": med(3),
    }
    print(
        f"16 runs: alone {result['alone_seconds']:.1f}s warm, "
        f"{result['alone_script_seconds']:.1f}s as a script, {result['sweep_seconds']:.1f}s as a "
        f"sweep (medians); the runner's overhead {result['overhead_fraction']:+.1%} (range "
        f"{over_script[0]:+.1%} to {over_script[-1]:+.1%}); outside train_pack "
        f"{result['overhead_outside_fraction']:+.1%} (range {outside[0]:+.1%} to "
        f"{outside[-1]:+.1%}; inside, sweep / script {result['inside_ratio']:.3f}); against the "
        f"warm process {result['overhead_vs_warm']:+.1%}; first step after "
        f"{result['seconds_to_first_step']:.1f}s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
