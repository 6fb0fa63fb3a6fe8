"""Muon vs AdamW on a real domain mix: steps Muon needs to reach AdamW's final validation loss.

    python benchmarks/muon_vs_adamw.py [--config configs/quickstart.yaml] [--steps 240]

Both optimisers get a small learning-rate sweep (each sweep trains as one pack: the proxies
share data, seed and architecture, and differ only in their learning-rate multiplier). The best
AdamW run's final held-out loss is the bar; the ratio is the first evaluation step at which the
best Muon run reaches it, over AdamW's step count. The Laguna report claims about 0.85. The last
line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time

from automixer.config import load_config
from automixer.data.loader import MixtureLoader
from automixer.data.pipeline import prepare_data
from proxies.presets import get_preset
from proxies.train import TrainConfig, train_pack

MUON_SCALES = (0.5, 1.0, 2.0)  # x lr 0.02 (AdamW params of the Muon runs: x adam_lr 3e-3)
ADAMW_SCALES = (1 / 3, 1.0, 2.0)  # x adam_lr 3e-3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--preset", default="quickstart")
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=20)
    args = ap.parse_args()
    config = load_config(args.config)
    bundle = prepare_data(config, progress=False)
    tokens = args.steps * args.batch_size * args.seq_len
    loader = MixtureLoader(
        bundle.train_arrays(),
        bundle.natural_weights(),
        tokens,
        args.seq_len,
        args.batch_size,
        seed=0,
        max_epochs=config.data.max_epochs,
    )
    cfg = get_preset(args.preset, vocab_size=bundle.tokenizer.get_vocab_size())
    common = {
        "eval_every": args.eval_every,
        "eval_curve_tokens": 4096,
        "log_every": 50,
        "schedule": "cosine",
        "warmup_fraction": 0.05,
    }
    runs = {}
    for name, opt, scales in (("muon", "muon", MUON_SCALES), ("adamw", "adamw", ADAMW_SCALES)):
        t = time.perf_counter()
        res = train_pack(
            cfg,
            [loader] * len(scales),
            [0] * len(scales),
            TrainConfig(optimizer=opt, lr_scales=scales, **common),
            val=bundle.val_arrays(),
            token_bytes=bundle.token_bytes,
        )
        runs[name] = [(s, r.val_curve) for s, r in zip(scales, res, strict=True)]
        for s, r in zip(scales, res, strict=True):
            print(
                f"{name:5s} lr x{s:.2f}: final held-out loss {r.val_curve[-1][1]:.4f} "
                f"({time.perf_counter() - t:.0f}s for the sweep)",
                flush=True,
            )
    best_adamw = min(runs["adamw"], key=lambda sc: sc[1][-1][1])
    bar = best_adamw[1][-1][1]
    adamw_steps = next(step for step, v in best_adamw[1] if v <= bar)
    best_muon = min(runs["muon"], key=lambda sc: sc[1][-1][1])
    reached = [step for step, v in best_muon[1] if v <= bar]
    muon_steps = reached[0] if reached else None
    ratio = muon_steps / adamw_steps if muon_steps is not None else None
    print(
        f"AdamW's best final loss {bar:.4f} at step {adamw_steps} (lr x{best_adamw[0]:.2f}); "
        f"Muon (lr x{best_muon[0]:.2f}) reaches it at step {muon_steps}: ratio {ratio}"
    )
    print(
        json.dumps(
            {
                "muon_steps_ratio": ratio,
                "muon_steps": muon_steps,
                "adamw_steps": adamw_steps,
                "adamw_final_loss": bar,
                "muon_final_loss": best_muon[1][-1][1],
                "muon_lr_scale": best_muon[0],
                "adamw_lr_scale": best_adamw[0],
                "steps": args.steps,
                "tokens_per_run": tokens,
                "preset": args.preset,
                "curves": {k: [{"lr_scale": s, "curve": c} for s, c in v] for k, v in runs.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
