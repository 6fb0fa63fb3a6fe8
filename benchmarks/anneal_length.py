"""How many anneal steps move a proxy's per-domain bits per byte beyond seed noise?

    python benchmarks/anneal_length.py [--config configs/quickstart.yaml] [--seeds 3]
        [--main-steps 18] [--anneal-steps 6,12,24]

Each seed trains the config's proxy (its preset, batch and sequence length, its data cache) on
the natural mixture for `--main-steps` steps, then anneals (warmup-stable-decay over the anneal)
for k steps on one of two contrasting anneal mixtures: the natural mixture with its largest
domain doubled, and with its smallest-weight half of the domains doubled. Per anneal length:
the paired difference of each domain's held-out bpb between the two anneals (mean over seeds)
against the seed noise of the bpb (sd over seeds, one anneal); a domain is moved when
|difference| exceeds twice that sd. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from automixer.config import load_config
from automixer.data.loader import MixtureLoader
from automixer.sweep.training import data_bundle, train_config
from proxies.presets import get_preset
from proxies.train import train_pack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--main-steps", type=int, default=18)
    ap.add_argument("--anneal-steps", default="6,12,24")
    args = ap.parse_args()
    config = load_config(Path(args.config))
    bundle = data_bundle(config, progress=False)
    natural = bundle.natural_weights()
    domains = list(natural)
    order = sorted(domains, key=lambda d: natural[d])

    def boosted(up: list[str]) -> dict[str, float]:
        w = {d: natural[d] * (2.0 if d in up else 1.0) for d in domains}
        total = sum(w.values())
        return {d: v / total for d, v in w.items()}

    anneals = {
        "largest x2": boosted(order[-1:]),
        "small half x2": boosted(order[: len(order) // 2]),
    }
    cfg = get_preset(config.proxy.preset, vocab_size=bundle.tokenizer.get_vocab_size())
    batch = config.proxy.seq_len * config.proxy.batch_size
    rows = []
    t0 = time.perf_counter()
    for k in [int(x) for x in args.anneal_steps.split(",")]:
        steps = args.main_steps + k
        share = args.main_steps / steps
        bpb = {name: [] for name in anneals}
        for name, anneal in anneals.items():
            for seed in range(args.seeds):
                w = {f"{d}@main": share * natural[d] for d in domains}
                w |= {f"{d}@anneal": (1 - share) * anneal[d] for d in domains}
                loader = MixtureLoader(
                    bundle.train_arrays(),
                    w,
                    steps * batch,
                    config.proxy.seq_len,
                    config.proxy.batch_size,
                    seed=seed,
                    max_epochs=config.data.max_epochs,
                    phases=[("main", share), ("anneal", 1 - share)],
                )
                r = train_pack(
                    cfg,
                    [loader],
                    [seed],
                    train_config(config, schedule="wsd"),
                    val=bundle.val_arrays(),
                    token_bytes=bundle.token_bytes,
                )[0]
                bpb[name].append([r.val_bpb[d] for d in domains])
        a, b = (np.array(v) for v in bpb.values())
        diff = (a - b).mean(0)
        noise = np.sqrt((a.std(0, ddof=1) ** 2 + b.std(0, ddof=1) ** 2) / 2)
        moved = [d for d, x, s in zip(domains, diff, noise, strict=True) if abs(x) > 2 * s]
        row = {
            "anneal_steps": k,
            "main_steps": args.main_steps,
            "difference": dict(zip(domains, diff.round(4).tolist(), strict=True)),
            "seed_sd": dict(zip(domains, noise.round(4).tolist(), strict=True)),
            "moved": moved,
        }
        rows.append(row)
        print(
            f"anneal {k:3d} steps after {args.main_steps}: domains moved beyond 2 seed sds: "
            f"{len(moved)} of {len(domains)} ({', '.join(moved) or 'none'}); |difference| / sd "
            + ", ".join(
                f"{d} {abs(x) / s:.1f}" for d, x, s in zip(domains, diff, noise, strict=True)
            ),
            flush=True,
        )
    print(
        json.dumps(
            {"rows": rows, "anneals": anneals, "seconds": round(time.perf_counter() - t0, 1)}
        )
    )


if __name__ == "__main__":
    main()
