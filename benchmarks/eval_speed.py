"""Evaluation speed: items per second scoring the quickstart suites with a quickstart proxy.

    python benchmarks/eval_speed.py [--config configs/quickstart.yaml] [--pack 1]

Scores every item the config's evals select (all 14 built-in suites, `evals.n_per_suite` items
each) with an untrained proxy of the config's preset (speed does not depend on the weights).
With --pack P the same requests are scored by a pack of P proxies at once. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time

from automixer.config import load_config
from automixer.data.pipeline import prepare_data
from automixer.evals.scoring import PackScorer, score_tasks
from automixer.evals.suites import config_tasks
from proxies.model import PackedLM
from proxies.presets import get_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--pack", type=int, default=1)
    args = ap.parse_args()
    config = load_config(args.config)
    bundle = prepare_data(config, progress=False)
    tasks = config_tasks(config)
    requests = sum(len(t.requests()) for t in tasks)
    cfg = get_preset(config.proxy.preset, vocab_size=bundle.tokenizer.get_vocab_size())
    model = PackedLM(cfg, list(range(args.pack)))
    scorer = PackScorer(model, bundle.tokenizer, max_len=2 * config.proxy.seq_len)
    score_tasks(tasks[:20], scorer)  # warm-up
    t = time.perf_counter()
    metrics = score_tasks(tasks, scorer, config.evals.abilities)
    seconds = time.perf_counter() - t
    print(
        f"{len(tasks)} items ({requests} requests) from {len({t.suite for t in tasks})} suites "
        f"in {seconds:.1f}s with a pack of {args.pack}: {len(tasks) / seconds:.1f} items/s"
    )
    print(
        json.dumps(
            {
                "items": len(tasks),
                "requests": requests,
                "pack": args.pack,
                "items_per_s": len(tasks) / seconds,
                "seconds_per_proxy": seconds / args.pack,
                "metrics": len(metrics),
            }
        )
    )


if __name__ == "__main__":
    main()
