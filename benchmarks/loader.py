"""Mixture loader: realised proportion error and tokens/s on the built-in corpora.

    python benchmarks/loader.py [--config configs/quickstart.yaml] [--tokens 16000000]

Builds (or reuses) the quickstart's token shards, then serves several seeded Dirichlet mixtures
and the natural one over the whole budget, timing every batch. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from automixer.config import load_config
from automixer.data.loader import MixtureLoader
from automixer.data.pipeline import prepare_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--tokens", type=int, default=16_000_000)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--mixtures", type=int, default=5)
    args = ap.parse_args()

    config = load_config(args.config)
    bundle = prepare_data(config, progress=False)
    shards = bundle.train_arrays()
    natural = bundle.natural_weights()
    rng = np.random.default_rng(0)
    mixtures = [natural]
    prior = np.array(list(natural.values()))
    while len(mixtures) < args.mixtures:
        w = rng.dirichlet(prior * 10)
        cand = dict(zip(natural, w.tolist(), strict=True))
        # Keep mixtures the budget can serve within max_epochs (the loader refuses others).
        ok = all(
            cand[d] * args.tokens <= config.data.max_epochs * bundle.domains[d].train.tokens * 0.98
            for d in natural
        )
        if ok:
            mixtures.append(cand)

    errors, tokens, serve_s, index_s = [], 0, 0.0, 0.0
    for i, w in enumerate(mixtures):
        t0 = time.perf_counter()
        loader = MixtureLoader(
            shards,
            w,
            args.tokens,
            args.seq_len,
            args.batch_size,
            seed=i,
            max_epochs=config.data.max_epochs,
        )
        t1 = time.perf_counter()
        counts = np.zeros(len(loader.domains))
        for step in range(len(loader)):
            batch = loader.batch(step)
            tokens += batch.shape[0] * (batch.shape[1] - 1)
        t2 = time.perf_counter()
        for step in range(len(loader)):
            np.add.at(counts, loader.domain_of_rows(step), loader.seq_len)
        shares = counts / counts.sum()
        errors.append(max(abs(shares[j] - w[d]) for j, d in enumerate(loader.domains)))
        index_s += t1 - t0
        serve_s += t2 - t1
        print(
            f"mixture {i}: max |share - weight| = {errors[-1]:.2e}, "
            f"{len(loader)} batches, index {t1 - t0:.2f}s, serve {t2 - t1:.2f}s"
        )

    result = {
        "max_abs_proportion_error": float(max(errors)),
        "tokens_per_s": tokens / serve_s,
        "tokens_per_s_with_index": tokens / (serve_s + index_s),
        "tokens": tokens,
        "mixtures": len(mixtures),
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
