"""Adaptive against random selection on pools of published runs (issue: adaptive sweeps).

    python benchmarks/adaptive.py [--seeds 10] [--budgets 32,48,64,96] [--initial 16] [--batch 8]

Each pool acts as the oracle of `automixer simulate`: the adaptive loop (a random first batch,
then Thompson-sampled batches from a GP on the objective) and random selection, with the same GP
for the final pick, choose runs up to each budget; the pick is the chosen run with the best
posterior mean (`automixer.adaptive.measured_pick`). Its quality is its true rank
within the pool (1 = the best row; as a fraction of the pool). Pools:

    RegMix 1M:   the 512 training and 256 test mixtures as one pool of 768 (17 domains);
                 targets Pile-CC loss and the mean of the 13 validation losses
    Olmix DCLM:  the 127-run swarm (24 topics); math, code and QA family mean BPB

Random selection also runs at twice each budget, where the pool allows (the goal: adaptive at 64
runs picks at least as well as random at 128). With --stop-width W the loop also runs with the
early stop (`sweep.stop_width`) up to the largest budget: the runs it used (stopped@runs), its
pick's rank (stopped@rank) and random selection's at the same number of runs. The JSON (last
line) also holds each mean's standard error over the seeds ("se:..." keys).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl

from automixer.adaptive import random_selection, simulate
from automixer.replay import load_runs

DATA = Path(__file__).parent / "data"
REGMIX = DATA / "regmix" / "data"
OLMIX = DATA / "olmix" / "dclm_swarm"
FAMILIES = {
    "math": "minerva_math_*",
    "code": "codex_*|mbpp*|mt_mbpp*",
    "qa": "arc_*|csqa*|hellaswag*|piqa*|sciq*|socialiqa*|winogrande*",
}


def pools() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (weights, loss-like metric, lower is better) for every case."""
    train = load_runs(
        REGMIX / "train_mixture_1m.csv", REGMIX / "train_pile_loss_1m.csv", id_column="index"
    )
    test = load_runs(
        REGMIX / "test_mixture_1m.csv",
        REGMIX / "test_pile_loss_1m.csv",
        id_column="index",
        domains=train.domains,
        targets=train.targets,
    )
    X = np.vstack([train.X, test.X])
    Y = np.vstack([train.Y, test.Y])
    pile_cc = train.targets.index("metric/the_pile_pile_cc_val_loss")
    out = {
        "regmix_pilecc": (X, Y[:, pile_cc]),
        "regmix_mean13": (X, Y.mean(axis=1)),
    }
    dclm = load_runs(
        OLMIX / "ratios.csv", OLMIX / "metrics.csv", id_column="run", families=FAMILIES
    )
    for family in FAMILIES:
        out[f"olmix_{family}"] = (dclm.X, dclm.Y[:, dclm.targets.index(family)])
    return out


def true_rank(loss: np.ndarray, row: int) -> float:
    """The pick's rank within the pool as a fraction (1/len: the best row)."""
    return float(((loss < loss[row]).sum() + 1) / len(loss))


def case(
    X: np.ndarray,
    loss: np.ndarray,
    budgets: list[int],
    seeds: int,
    initial: int,
    batch: int,
    stop_width: float | None,
) -> dict:
    def oracle(rows: np.ndarray) -> np.ndarray:  # higher is better
        return -loss[rows]

    top = max(budgets)
    random_budgets = sorted({*budgets, *(min(2 * b, len(X)) for b in budgets)})
    ranks: dict[str, list[float]] = {f"adaptive@{b}": [] for b in budgets}
    ranks |= {f"random@{b}": [] for b in random_budgets}
    if stop_width is not None:
        ranks |= {"stopped@runs": [], "stopped@rank": [], "random@same_runs": []}
    for seed in range(seeds):
        adaptive = simulate(X, oracle, initial=initial, batch=batch, budget=top, seed=seed)
        for b in budgets:
            ranks[f"adaptive@{b}"].append(true_rank(loss, adaptive.pick(X, oracle, b, seed)[0]))
        rand = random_selection(len(X), max(random_budgets), seed)
        for b in random_budgets:
            ranks[f"random@{b}"].append(true_rank(loss, rand.pick(X, oracle, b, seed)[0]))
        if stop_width is not None:
            early = simulate(
                X, oracle, initial=initial, batch=batch, budget=top, seed=seed,
                stop_width=stop_width,
            )  # fmt: skip
            used = len(early.chosen)
            ranks["stopped@runs"].append(used)
            ranks["stopped@rank"].append(true_rank(loss, early.pick(X, oracle, used, seed)[0]))
            ranks["random@same_runs"].append(true_rank(loss, rand.pick(X, oracle, used, seed)[0]))
    out = {k: float(np.mean(v)) for k, v in ranks.items()}
    # the standard error of each mean over the seeds
    out |= {f"se:{k}": float(np.std(v, ddof=1) / np.sqrt(len(v))) for k, v in ranks.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budgets", default="32,48,64,96")
    ap.add_argument("--initial", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument(
        "--stop-width",
        type=float,
        default=None,
        help="also run the loop with this early stop (sweep.stop_width) up to the largest "
        "budget: the runs it used, its pick, and random's pick at the same number of runs",
    )
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    budgets = [int(b) for b in args.budgets.split(",")]
    result: dict = {}
    for name, (X, loss) in pools().items():
        if args.cases and name not in args.cases.split(","):
            continue
        t0 = time.perf_counter()
        usable = [b for b in budgets if b < len(X)]
        result[name] = case(X, loss, usable, args.seeds, args.initial, args.batch, args.stop_width)
        result[name]["seconds"] = time.perf_counter() - t0
        print(
            f"{name:15s} pool {len(X)}: "
            + "  ".join(
                f"{k}={v:.3f}" for k, v in result[name].items() if k[:3] not in ("sec", "se:")
            ),
            flush=True,
        )
    table = pl.DataFrame(
        [{"case": k, **{m: x for m, x in v.items() if m[:3] != "se:"}} for k, v in result.items()]
    )
    print(table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
