"""`automixer replay` at the widths the GP used to choke on: seconds, where they go, and the
out-of-fold Spearman.

    python benchmarks/surrogate_speed.py [--shapes olmix64,twophase,regmix64,wide110]
                                         [--reference]

Each shape runs `automixer replay`'s own code (`run_replay`, in this process, on CSV files
written to a temporary folder) with its defaults: `auto` (ridge or GP per target), grouped
5-fold x 3-repeat cross-validation, conformal intervals, and the solver:

    olmix64   409 runs x 64 domains x 3 targets (the shape of Olmix's 64-domain swarm, which is
              not in the repository: synthetic, Dirichlet mixtures around a random prior and
              three smooth targets of the square-rooted weights with noise)
    twophase  192 runs x 78 columns x 2 targets (a two-phase sweep over 39 domains, the phase
              weights side by side, each scaled by its phase's share of the tokens, 0.8 and
              0.2; synthetic the same way)
    regmix64  64 of RegMix's 512 training runs x 17 domains x Pile-CC, with --predict of the
              256 unseen test mixtures (real data, benchmarks/data/regmix)
    wide110   512 runs x 64 domains x 110 targets (benchmarks/replay.py's timing table)
    rows10k   10,000 runs x 24 domains x 3 targets (synthetic): memory at scale; run it alone
              (`--shapes rows10k`), the peak resident memory is the process's own

The phases are then timed one by one with the same functions: the cross-validation of each
candidate, the deployed fit, the conformal calibration, the predictions and the solve. With
`--reference` the cross-validation is repeated with the GP's hyperparameters learned the old
way, one scikit-learn optimisation per kernel and fold (scipy's L-BFGS-B on scikit-learn's
`log_marginal_likelihood`), on the same folds: the out-of-fold Spearman before and after.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from scipy.optimize import minimize

import automixer.surrogates.gp as gp_module
from automixer.pipeline.replay import ReplayOptions, cross_validated, run_replay
from automixer.replay import load_runs
from automixer.solve import Constraints, Objective, solve_mixture
from automixer.surrogates.selection import SELECTED

DATA = Path(__file__).parent / "data" / "regmix" / "data"


def synthetic(n: int, phases: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n mixtures of `phases` x d columns and k targets: each phase a mixture of its own, times
    the phase's share of the tokens (0.8 and 0.2 for two), so that a row sums to 1."""
    rng = np.random.default_rng(seed)
    shares = [1.0] if phases == 1 else [0.8, 0.2]
    X = np.hstack(
        [
            share * rng.dirichlet(rng.dirichlet(np.ones(d) * 2) * 20 + 0.05, size=n)
            for share in shares
        ]
    )
    A = np.abs(rng.normal(size=(phases * d, k)))
    Y = 3 - np.sqrt(X) @ A * 0.1 + rng.normal(0, 0.01, (n, k))
    return X, Y


def write_tables(folder: Path, X: np.ndarray, Y: np.ndarray, prefix: str = "") -> Path:
    cols = {f"{prefix}d{i}": X[:, i] for i in range(X.shape[1])}
    cols |= {f"task{j}_bpb": Y[:, j] for j in range(Y.shape[1])}
    path = folder / "runs.csv"
    pl.DataFrame({"run": [f"r{i}" for i in range(len(X))], **cols}).write_csv(path)
    return path


def shapes(folder: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, (n, phases, d, k) in {
        "olmix64": (409, 1, 64, 3),
        "twophase": (192, 2, 39, 2),
        "wide110": (512, 1, 64, 110),
        "rows10k": (10_000, 1, 24, 3),
    }.items():
        sub = folder / name
        sub.mkdir()
        X, Y = synthetic(n, phases, d, k, seed=0)
        out[name] = {
            "runs": write_tables(sub, X, Y),
            "id": "run",
            "targets": ["task*"],
            "predict": None,
        }
    sub = folder / "regmix64"
    sub.mkdir()
    train = pl.read_csv(DATA / "train_mixture_1m.csv")
    idx = np.sort(np.random.default_rng(0).choice(train.height, 64, replace=False))
    train[idx].write_csv(sub / "train.csv")
    loss = pl.read_csv(DATA / "train_pile_loss_1m.csv")
    loss.filter(pl.col("index").is_in(train[idx]["index"].implode())).write_csv(sub / "loss.csv")
    out["regmix64"] = {
        "runs": sub / "train.csv",
        "metrics": sub / "loss.csv",
        "id": "index",
        "targets": ["metric/the_pile_pile_cc_val_loss"],
        "predict": DATA / "test_mixture_1m.csv",
    }
    return out


def replay(spec: dict[str, Any], out: Path) -> float:
    """Seconds of `automixer replay` on this shape (printed output discarded)."""
    console = Console(file=io.StringIO(), width=200)
    t0 = time.perf_counter()
    run_replay(
        spec["runs"],
        metrics=spec.get("metrics"),
        id_column=spec["id"],
        domains=[],
        targets=spec.get("targets", []),
        families={},
        opts=ReplayOptions(),
        predict=spec["predict"],
        truth=None,
        out=None,
        solve=True,
        out_dir=out,
        console=console,
    )
    return time.perf_counter() - t0


def phases(spec: dict[str, Any]) -> dict[str, Any]:
    """The replay's phases, timed one by one, and the deployed model's out-of-fold Spearman."""
    runs = load_runs(
        spec["runs"], spec.get("metrics"), id_column=spec["id"], targets=spec.get("targets", [])
    )
    opts = ReplayOptions()
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    cv = cross_validated(runs, opts)
    t["cross_validation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = cv.deploy(runs.X, runs.Y, opts.transform, opts.seed)
    t["deployed_fit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    intervals = cv.conformal(runs.Y)
    t["conformal"] = time.perf_counter() - t0
    if spec["predict"] is not None:
        from automixer.replay import load_mixtures

        Xp, _ = load_mixtures(spec["predict"], runs.domains)
        t0 = time.perf_counter()
        intervals.intervals(np.asarray(model.predict(Xp)).reshape(len(Xp), -1), 0.95)
        t["predict"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    objective = Objective.build(runs.targets, {x: 1.0 for x in runs.targets}, runs.Y)
    prior = dict(zip(runs.domains, runs.X.mean(axis=0), strict=True))
    solve_mixture(
        model,
        objective,
        Constraints.build(runs.domains, prior=prior),
        X_runs=runs.X,
        Y_runs=runs.Y,
        intervals=intervals,
    )
    t["solve"] = time.perf_counter() - t0
    table = cv.table
    rho = table.filter(pl.col("model") == SELECTED)["spearman"].to_numpy()
    per_model = {
        m: float(table.filter(pl.col("model") == m)["spearman"].mean())
        for m in table["model"].unique().to_list()
    }
    return {"seconds": t, "spearman": float(np.mean(rho)), "spearman_by_model": per_model}


def reference_learn(problems: Any, bounds: np.ndarray, noise: float | None, **_: Any) -> Any:
    """The hyperparameters as the code before the batched GP learned them: one scipy L-BFGS-B
    per problem (scikit-learn's optimiser and settings) on scikit-learn's own likelihood."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    out = []
    for p in problems:
        lengths = len(p.theta) - 1 - (noise is None)
        white = WhiteKernel(noise, "fixed") if noise is not None else WhiteKernel(1.0, (1e-6, 1.0))
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.ones(lengths), (1e-2, 1e3)) + white
        gp = GaussianProcessRegressor(kernel, optimizer=None).fit(p.Z, p.Y)

        def fun(theta: np.ndarray, gp: Any = gp) -> tuple[float, np.ndarray]:
            v, g = gp.log_marginal_likelihood(theta, eval_gradient=True)
            return -v, -g

        out.append(minimize(fun, p.theta, jac=True, method="L-BFGS-B", bounds=bounds).x)
    return np.array(out)


@contextlib.contextmanager
def learned_with(learn: Callable[..., Any]) -> Iterator[None]:
    before = gp_module.learn
    gp_module.learn = learn
    try:
        yield
    finally:
        gp_module.learn = before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shapes", default="olmix64,twophase,regmix64,wide110")
    ap.add_argument("--no-phases", action="store_true", help="time only the whole replay")
    ap.add_argument(
        "--reference", action="store_true", help="also the old per-fold learning (slow)"
    )
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        specs = shapes(Path(tmp))
        for name in args.shapes.split(","):
            spec = specs[name]
            seconds = replay(spec, Path(tmp) / f"{name}-out")
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
            print(f"{name}: replay {seconds:.1f} s, peak memory so far {peak:.2f} GiB", flush=True)
            row: dict[str, Any] = {"replay_seconds": seconds, "peak_rss_gib": peak}
            if not args.no_phases:
                row |= phases(spec)
                print(
                    f"{name}: phases "
                    + ", ".join(f"{k} {v:.1f} s" for k, v in row["seconds"].items())
                    + f"; out-of-fold Spearman (auto) {row['spearman']:.4f}",
                    flush=True,
                )
            if args.reference:
                with learned_with(reference_learn):
                    ref = phases(spec)
                row["reference"] = ref
                print(
                    f"{name}: reference cross-validation {ref['seconds']['cross_validation']:.1f}"
                    f" s; out-of-fold Spearman (auto) {ref['spearman']:.4f} (batched "
                    f"{row['spearman'] - ref['spearman']:+.4f})",
                    flush=True,
                )
            result[name] = row
    print(json.dumps(result))


if __name__ == "__main__":
    main()
