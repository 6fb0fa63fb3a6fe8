"""Measured coverage of automixer's prediction intervals (nominal 80% and 95%) on real runs.

    python benchmarks/coverage.py [--seeds 5] [--run-dir runs/quickstart-<hash>] [--folds 5]

The intervals are what `automixer solve` and `replay --predict` report: the surrogate chosen per
target (ridge or GP, by grouped 5-fold CV), with conformal intervals from the choice's own
out-of-fold residuals (crepes). Each case fits on some runs and counts how often the interval
holds the measured value of runs it never saw:

    RegMix 1M:   64 of the 512 training runs (--seeds random subsets) -> the 256 unseen test
                 mixtures, 13 Pile validation losses; and apart, the 10 best-predicted test
                 mixtures and the best (by Pile-CC loss): where a recipe is read, with the
                 optimism of picking taken out as `automixer solve` reports it, and without
    Olmix DCLM:  5-fold over the 127 runs (grouped by mixture), math / code / QA mean BPB
    quickstart:  5-fold over a run directory's proxies (grouped: replicates with their
                 mixture), the ability targets and the objective (with --run-dir)

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from automixer.replay import load_mixtures, load_runs, read_table
from automixer.solve import Objective
from automixer.surrogates import AutoSurrogate, cross_validate, make_surrogate
from automixer.surrogates.intervals import Conformal
from automixer.surrogates.selection import grouped_folds, mixture_groups

DATA = Path(__file__).parent / "data"
REGMIX = DATA / "regmix" / "data"
OLMIX = DATA / "olmix" / "dclm_swarm"
PILECC = "metric/the_pile_pile_cc_val_loss"
FAMILIES = {
    "math": "minerva_math_*",
    "code": "codex_*|mbpp*|mt_mbpp*",
    "qa": "arc_*|csqa*|hellaswag*|piqa*|sciq*|socialiqa*|winogrande*",
}
LEVELS = (0.8, 0.95)
CANDIDATES = ("linear", "gp")
FOLDS = [5]
"""Folds of the cross-validation whose out-of-fold residuals calibrate the intervals
(`surrogate.cv_folds`; set with --folds)."""
REPEATS = [3]
"""Its repeats (`surrogate.cv_repeats`, 3 by default; set with --repeats)."""
TOP = 10
"""The best-predicted test mixtures whose intervals are checked apart (where a recipe is read)."""


def deployed(
    X: np.ndarray, Y: np.ndarray, groups: np.ndarray | None = None, seed: int = 0
) -> tuple[AutoSurrogate, Conformal]:
    """What automixer deploys on these runs: the per-target choice refitted on all of them,
    and its conformal calibration."""
    cv = cross_validate(
        X,
        Y,
        {c: make_surrogate(c) for c in CANDIDATES},
        folds=FOLDS[0],
        repeats=REPEATS[0],
        seed=seed,
        groups=groups,
    )
    return cv.deploy(X, Y, seed=seed), cv.conformal(Y)


def covered(conformal: Conformal, pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    out = {}
    for level in LEVELS:
        lo, hi = conformal.intervals(pred, level)
        out[f"{level:.0%}"] = float(((truth >= lo) & (truth <= hi)).mean())
    return out


def regmix(seeds: int) -> dict:
    train = load_runs(
        REGMIX / "train_mixture_1m.csv", REGMIX / "train_pile_loss_1m.csv", id_column="index"
    )
    Xt, _ = load_mixtures(REGMIX / "test_mixture_1m.csv", train.domains)
    truth = read_table(REGMIX / "test_pile_loss_1m.csv").sort("index").select(train.targets)
    Yt = truth.to_numpy()
    pc = train.targets.index(PILECC)
    rows = []
    for s in range(seeds):
        idx = np.random.default_rng(s).choice(len(train.X), 64, replace=False)
        model, conformal = deployed(train.X[idx], train.Y[idx], seed=s)
        pred = np.asarray(model.predict(Xt))
        row = covered(conformal, pred, Yt)
        row |= picked(
            conformal, pred, Yt, Objective.build(train.targets, {PILECC: 1.0}, train.Y[idx]), pc
        )
        rows.append(row)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def picked(
    conformal: Conformal, pred: np.ndarray, truth: np.ndarray, objective: Objective, j: int
) -> dict[str, float]:
    """At the best-predicted test mixtures (by the objective, here target j alone): how often
    target j's interval holds its measured value, and the mean measured - predicted, with
    the intervals and predictions as the solution reports them (shifted by the optimism of
    picking, measured by cross-validation) and as they were before (unshifted)."""
    out: dict[str, float] = {}
    order = np.argsort(-objective.value(pred))
    for name, rows in ((f"top{TOP}", order[:TOP]), ("best", order[:1])):
        y = truth[rows, j]
        for level in LEVELS:
            lo, hi = conformal.intervals(pred[rows], level)
            at = conformal.selected(objective, pred[rows], level)
            out[f"{name} {level:.0%} unshifted"] = float(((y >= lo[:, j]) & (y <= hi[:, j])).mean())
            inside = (y >= at.targets_lo[:, j]) & (y <= at.targets_hi[:, j])
            out[f"{name} {level:.0%}"] = float(inside.mean())
            if level == 0.8:
                out[f"{name} half-width 80%"] = float(
                    np.mean(at.targets_hi[:, j] - at.targets[:, j])
                )
        out[f"{name} error unshifted"] = float(np.mean(y - pred[rows, j]))
        out[f"{name} error"] = float(np.mean(y - at.targets[:, j]))
    return out


def outer_folds(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, extra=None) -> dict:
    """5-fold over groups: fit on four folds, count coverage on the fifth."""
    fold = grouped_folds(groups, 5, seed=0)
    hits: dict[str, list[float]] = {}
    for k in range(5):
        tr, te = fold != k, fold == k
        model, conformal = deployed(X[tr], Y[tr], groups[tr])
        pred = np.asarray(model.predict(X[te])).reshape(int(te.sum()), -1)
        for name, v in covered(conformal, pred, Y[te]).items():
            hits.setdefault(name, []).append(v * te.sum())
        if extra is not None:
            for name, v in extra(conformal, pred, Y[tr], Y[te]).items():
                hits.setdefault(name, []).append(v * te.sum())
    return {k: float(np.sum(v) / len(X)) for k, v in hits.items()}


def olmix() -> dict:
    runs = load_runs(
        OLMIX / "ratios.csv", OLMIX / "metrics.csv", id_column="run", families=FAMILIES
    )
    return outer_folds(runs.X, runs.Y, mixture_groups(runs.X))


def quickstart(run_dir: Path) -> dict:
    from automixer.modeling import FitInputs
    from automixer.rundir import RunDir

    data = FitInputs.load(RunDir.open(run_dir))
    objective = data.objective()
    keep = [j for j, t in enumerate(data.targets) if t.startswith("ability:")]
    Y = data.Y[:, keep]
    obj = Objective(
        [data.targets[j] for j in keep],
        objective.weights[keep],
        objective.signs[keep],
        objective.center[keep],
        objective.scale[keep],
    )

    def objective_coverage(conformal, pred, _train, truth):
        out = {}
        for level in LEVELS:
            lo, hi = conformal.objective_interval(obj, pred, level)
            value = obj.value(truth)
            out[f"objective {level:.0%}"] = float(((value >= lo) & (value <= hi)).mean())
        return out

    return outer_folds(data.X, Y, data.groups(), objective_coverage)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="RegMix subsets of 64 runs")
    ap.add_argument("--run-dir", type=Path, help="a quickstart run directory to check too")
    ap.add_argument("--folds", type=int, default=5, help="calibration CV folds (cv_folds)")
    ap.add_argument("--repeats", type=int, default=3, help="calibration CV repeats (cv_repeats)")
    args = ap.parse_args()
    FOLDS[0], REPEATS[0] = args.folds, args.repeats
    warnings.simplefilter("ignore")
    result: dict = {}
    t0 = time.perf_counter()
    result["regmix_64_to_256_1m"] = regmix(args.seeds)
    print("regmix 64 -> 256 unseen (1M):", result["regmix_64_to_256_1m"], flush=True)
    result["olmix_dclm_5fold"] = olmix()
    print("olmix dclm 5-fold:", result["olmix_dclm_5fold"], flush=True)
    if args.run_dir:
        result["quickstart_5fold"] = quickstart(args.run_dir)
        print("quickstart 5-fold:", result["quickstart_5fold"], flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
