"""Solvers: the mixture that maximises the objective predicted by a surrogate, within constraints.

| name  | how                                                             | for         |
|-------|-----------------------------------------------------------------|-------------|
| exact | SLSQP from many starts, gradients by batched finite differences | smooth ones |
| topk  | RegMix: simulate many feasible mixtures, average the top k      | any         |
| tpe   | Optuna TPE over the feasible set                                | black boxes |
| cmaes | Optuna CMA-ES over the feasible set                             | black boxes |

Every solver maximises the same score: the objective's lower confidence bound (mean - k * sd,
the surrogates' own uncertainty at the mixture; k = 0 for the mean), minus the penalty toward the
natural mixture, minus a steep penalty for leaving the trust region (farther from every trained run
than `trust_radius`, in total variation).

`solve_mixture` also reports the interval of the predicted optimum, the best observed run, the
optimism gap between them, and how far the optimum lies from the nearest trained run.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import minimize

from automixer.errors import AutomixerError
from automixer.io import quiet_optuna
from automixer.registry import SOLVERS, unknown
from automixer.solve.constraints import Constraints
from automixer.solve.objective import Objective


@dataclass
class Solution:
    domains: list[str]
    weights: np.ndarray
    method: str
    targets: list[str]
    predicted: np.ndarray
    objective: float
    """Predicted objective at the optimum (standardised units, higher is better)."""
    predicted_lo: np.ndarray | None = None
    predicted_hi: np.ndarray | None = None
    objective_lo: float | None = None
    objective_hi: float | None = None
    level: float | None = None
    """Nominal coverage of the intervals (conformal, from out-of-fold residuals)."""
    optimism: float | None = None
    """The objective's mean error at this pick, measured by cross-validation: over the
    out-of-fold runs the same selection picks (those predicted at least as high as this
    mixture, at least the best-predicted one, in each repeat; `Conformal.selected`), usually
    negative. The interval is shifted by it and widened by its standard error, and `expected`
    is the prediction plus it."""
    optimism_targets: np.ndarray | None = None
    """The same per target."""
    optimism_picks: int | None = None
    """The cross-validation repeats the shift is over."""
    optimism_runs: int | None = None
    """The distinct runs it is measured on."""
    best_run: int | None = None
    best_run_objective: float | None = None
    """Measured objective of the best trained run."""
    best_run_predicted: float | None = None
    nearest_run: int | None = None
    nearest_distance: float | None = None
    """Total-variation distance from the optimum to the nearest trained run."""
    typical_distance: float | None = None
    """The runs' typical spacing (`spread_radius`: the median nearest-neighbour distance)."""
    held_out_reach: float | None = None
    """How far from their training runs the cross-validation measured accuracy
    (`held_out_reach`)."""
    lcb_k: float = 0.0
    objective_sd: float | None = None
    """The surrogates' own uncertainty of the objective at the optimum (what `lcb_k` scales)."""
    trust_radius: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def objective_lcb(self) -> float | None:
        """What the solver maximised: the objective minus lcb_k standard deviations."""
        if self.objective_sd is None:
            return None
        return self.objective - self.lcb_k * self.objective_sd

    @property
    def expected(self) -> float:
        """What a new run at this picked mixture is expected to measure: the prediction with
        the optimism of picking the best taken out."""
        return self.objective + (self.optimism or 0.0)

    @property
    def optimism_gap(self) -> float | None:
        """Predicted objective of the optimum minus the measured one of the best run."""
        if self.best_run_objective is None:
            return None
        return self.objective - self.best_run_objective

    def interval(self) -> tuple[float, float] | None:
        """The objective's interval; None without calibration or with too few runs for it."""
        if self.objective_lo is None or self.objective_hi is None:
            return None
        if not (np.isfinite(self.objective_lo) and np.isfinite(self.objective_hi)):
            return None
        return (self.objective_lo, self.objective_hi)

    def weights_dict(self) -> dict[str, float]:
        return {d: float(w) for d, w in zip(self.domains, self.weights, strict=True)}

    def _ends(self) -> tuple[np.ndarray, np.ndarray]:
        nan = np.full(len(self.targets), np.nan)
        lo = self.predicted_lo if self.predicted_lo is not None else nan
        hi = self.predicted_hi if self.predicted_hi is not None else nan
        return lo, hi

    def predicted_table(self) -> pl.DataFrame:
        lo, hi = self._ends()
        return pl.DataFrame(
            {
                "target": self.targets,
                "predicted": self.predicted.tolist(),
                "lo": lo.tolist(),
                "hi": hi.tolist(),
            }
        )

    def covers(self) -> str | None:
        """What the intervals cover, in words (None without intervals)."""
        if self.level is None:
            return None
        what = (
            f"a new proxy run at this mixture with probability {self.level:g}: conformal, from "
            "the surrogates' out-of-fold residuals (seed noise included)"
        )
        if self.optimism is None:
            return what + "; not corrected for the optimism of picking the best prediction"
        return (
            what + f", calibrated for the optimism of picking it ({self.optimism:+.3f} on the "
            f"objective: the mean error of the {self.optimism_runs} out-of-fold runs predicted "
            f"at least as high, over {self.optimism_picks} cross-validation repeats, with that "
            "shift's standard error in the width); measured on published sweeps it covers "
            "within about 10 points of the level at the best pick (BENCHMARKS.md)"
        )

    def to_dict(self) -> dict[str, Any]:
        interval = self.interval()
        lo, hi = self._ends()
        shift = (
            self.optimism_targets
            if self.optimism_targets is not None
            else np.zeros(len(self.targets))
        )
        return {
            "method": self.method,
            "weights": self.weights_dict(),
            "interval_level": self.level,
            "interval_covers": self.covers(),
            "objective": {
                "predicted": self.objective,
                "expected": self.expected,
                "optimism": self.optimism,
                "optimism_picks": self.optimism_picks,
                "optimism_runs": self.optimism_runs,
                "lo": interval[0] if interval else None,
                "hi": interval[1] if interval else None,
            },
            "predicted": {
                t: {
                    "mean": float(m),
                    "expected": float(m + shift[j]),
                    "lo": float(lo[j]) if np.isfinite(lo[j]) else None,
                    "hi": float(hi[j]) if np.isfinite(hi[j]) else None,
                }
                for j, (t, m) in enumerate(zip(self.targets, self.predicted, strict=True))
            },
            "best_run": {
                "index": self.best_run,
                "measured_objective": self.best_run_objective,
                "predicted_objective": self.best_run_predicted,
            },
            "optimism_gap": self.optimism_gap,
            "lcb_k": self.lcb_k,
            "objective_sd": self.objective_sd,
            "objective_lcb": self.objective_lcb,
            "trust_radius": self.trust_radius,
            "nearest_run": {
                "index": self.nearest_run,
                "distance": self.nearest_distance,
                "typical_distance": self.typical_distance,
                "held_out_reach": self.held_out_reach,
            },
            "warnings": self.warnings,
        }


TRUST_SLOPE = 100.0
"""Score lost per unit of total variation beyond the trust region (objective units are standard
deviations of the runs, so this is a wall)."""


def _predict(model: Any, W: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(np.atleast_2d(W))).reshape(len(np.atleast_2d(W)), -1)


def _predict_std(model: Any, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    W = np.atleast_2d(W)
    mean, sd = model.predict(W, return_std=True)
    return np.asarray(mean).reshape(len(W), -1), np.asarray(sd).reshape(len(W), -1)


CHUNK = 1024
"""Rows of a distance block: memory stays at CHUNK x runs, whatever the sweep's size."""


def nearest_distance(W: np.ndarray, X_runs: np.ndarray) -> np.ndarray:
    """Total-variation distance from each mixture in W (..., D) to its nearest run."""
    from scipy.spatial.distance import cdist

    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    X = np.asarray(X_runs, dtype=np.float64)
    # cdist's L1 in C: no (points x runs x domains) temporary (8 ms a call at 65 x 512 x 64),
    # in blocks of CHUNK points (memory CHUNK x runs)
    return np.concatenate(
        [0.5 * cdist(W[i : i + CHUNK], X, "cityblock").min(axis=1) for i in range(0, len(W), CHUNK)]
    )


def neighbour_distances(X_runs: np.ndarray) -> np.ndarray:
    """Each distinct run's total-variation distance to its nearest other run."""
    from scipy.spatial.distance import cdist

    X = np.unique(np.asarray(X_runs, dtype=np.float64), axis=0)
    out = np.full(len(X), np.inf)
    for start in range(0, len(X), CHUNK):
        block = 0.5 * cdist(X[start : start + CHUNK], X, "cityblock")
        block[np.arange(len(block)), start + np.arange(len(block))] = np.inf
        out[start : start + CHUNK] = block.min(axis=1)
    return out


def spread_radius(X_runs: np.ndarray) -> float | None:
    """The runs' typical spacing: the median distance from a run to its nearest neighbour
    among the others (None with fewer than two distinct runs). "Near where we measured": on
    the quickstart 0.149, where the largest, set by the most isolated run, is 0.357 and lets
    the optimum reach 99.8% of the feasible mixtures near the natural one."""
    d = neighbour_distances(X_runs)
    return float(np.median(d)) if len(d) >= 2 else None


def held_out_reach(X_runs: np.ndarray, folds: np.ndarray | None) -> float | None:
    """How far from their training runs the cross-validation measured its accuracy: the 90th
    percentile, over every fold of every repeat, of a held-out run's distance to the nearest
    run it was not held out with. An optimum farther than that is predicted where no
    out-of-fold residual was measured (a check independent of the solver's trust radius)."""
    if folds is None or not len(folds):
        return None

    X = np.asarray(X_runs, dtype=np.float64)
    reach = []
    for fold in np.atleast_2d(folds):
        for k in np.unique(fold):
            held, rest = X[fold == k], X[fold != k]
            if len(held) and len(rest):
                reach.append(nearest_distance(held, rest))
    return float(np.quantile(np.concatenate(reach), 0.9)) if reach else None


def _score_fn(
    model: Any,
    objective: Objective,
    constraints: Constraints,
    lcb_k: float = 0.0,
    X_runs: np.ndarray | None = None,
    trust_radius: float | None = None,
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """The solver's score: the objective (or its lower bound), less the penalty and the wall
    beyond the trust region (distances from `embed(W)` to `X_runs` when `embed` is given: a
    constant mix held to the trust region of the schedules the runs are)."""

    def score(W: np.ndarray) -> np.ndarray:
        W = np.atleast_2d(W)
        if lcb_k > 0:
            mean, sd = _predict_std(model, W)
            value = objective.value(mean) - lcb_k * objective.sd(sd)
        else:
            value = objective.value(_predict(model, W))
        value = value - constraints.penalty_value(W)
        if trust_radius is not None and X_runs is not None:
            where = embed(W) if embed is not None else W
            excess = np.clip(nearest_distance(where, X_runs) - trust_radius, 0.0, None)
            value = value - TRUST_SLOPE * excess
        return np.asarray(value)

    return score


def _exact(
    score: Callable[[np.ndarray], np.ndarray], c: Constraints, starts: np.ndarray
) -> np.ndarray:
    D = len(c.domains)
    h = 1e-6

    def f_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        # One batched call: w and w + h e_i for every i (forward differences).
        pts = np.vstack([w, w + h * np.eye(D)])
        vals = score(pts)
        return -float(vals[0]), -(vals[1:] - vals[0]) / h

    best_w, best_v = None, -np.inf
    bounds = list(zip(c.lower, c.upper, strict=True))
    cons = [{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}]
    for g in c.groups:  # lower <= sum of the members <= upper
        a = np.zeros(D)
        a[list(g.members)] = 1.0
        cons.append(
            {"type": "ineq", "fun": lambda w, a=a, hi=g.upper: hi - a @ w, "jac": lambda w, a=a: -a}
        )
        cons.append(
            {"type": "ineq", "fun": lambda w, a=a, lo=g.lower: a @ w - lo, "jac": lambda w, a=a: a}
        )
    for w0 in starts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = minimize(
                f_and_grad,
                w0,
                jac=True,
                method="SLSQP",
                bounds=bounds,
                constraints=cons,
                options={"maxiter": 100, "ftol": 1e-8},
            )
        w = c.project(res.x)
        v = float(score(w)[0])
        if v > best_v:
            best_w, best_v = w, v
    assert best_w is not None
    return best_w


def _topk(
    score: Callable[[np.ndarray], np.ndarray],
    c: Constraints,
    rng: np.random.Generator,
    n: int,
    k: int,
) -> np.ndarray:
    # RegMix: Dirichlet draws at several concentrations, average the k best predicted.
    draws = np.vstack([c.sample(n // 4, rng, conc) for conc in (0.1, 0.5, 1.0, 5.0)])
    vals = np.concatenate([score(chunk) for chunk in np.array_split(draws, max(1, n // 5000))])
    top = draws[np.argsort(-vals)[:k]]
    return c.project(top.mean(axis=0))


def _optuna(
    score: Callable[[np.ndarray], np.ndarray],
    c: Constraints,
    method: str,
    seed: int,
    n_trials: int,
    starts: np.ndarray,
) -> np.ndarray:
    import optuna

    D = len(c.domains)
    with quiet_optuna():
        sampler = (
            optuna.samplers.TPESampler(seed=seed, multivariate=True)
            if method == "tpe"
            else optuna.samplers.CmaEsSampler(seed=seed)
        )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for w in starts[:5]:
            study.enqueue_trial({f"x{i}": float(w[i]) for i in range(D)})

        def trial_fn(trial: optuna.Trial) -> float:
            x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(D)])
            w = c.project(x / max(x.sum(), 1e-12))
            return float(score(w)[0])

        study.optimize(trial_fn, n_trials=n_trials)
        x = np.array([study.best_params[f"x{i}"] for i in range(D)])
    return c.project(x / max(x.sum(), 1e-12))


def solve_mixture(
    model: Any,
    objective: Objective,
    constraints: Constraints,
    *,
    X_runs: np.ndarray | None = None,
    Y_runs: np.ndarray | None = None,
    method: str = "exact",
    seed: int = 0,
    n_samples: int = 100_000,
    top_k: int = 128,
    n_trials: int = 300,
    n_starts: int = 8,
    intervals: Any = None,
    level: float = 0.95,
    lcb_k: float = 0.0,
    trust_radius: float | str | None = None,
    trust_runs: np.ndarray | None = None,
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Solution:
    """The best feasible mixture under `model`, with its interval and its distance from the runs.

    `intervals` (a `automixer.surrogates.intervals.Conformal`) gives the predictions and the
    objective their `level` intervals; without it there are none.

    `X_runs`/`Y_runs` are the trained mixtures and their measured targets: they seed the search,
    give the best observed run and the optimism gap, and the distance check.

    `lcb_k` > 0 maximises mean - lcb_k * sd (the model needs `predict(..., return_std=True)`);
    `trust_radius` keeps the optimum within that total-variation distance of a trained run
    ("auto": `spread_radius` of the runs, their median nearest-neighbour distance).
    `trust_runs` and `embed` measure that distance elsewhere: from `embed(w)` to `trust_runs`
    (a constant mix against the schedules the runs are, in the space the surrogate sees).
    """
    if method not in SOLVERS:
        raise AutomixerError(unknown("solver", method, list(SOLVERS)), field="solve.method")
    rng = np.random.default_rng(seed)
    runs = None if X_runs is None or not len(X_runs) else np.asarray(X_runs, dtype=np.float64)
    radius = None
    trusted = runs if trust_runs is None else np.asarray(trust_runs, dtype=np.float64)
    if trust_radius == "auto":
        radius = spread_radius(trusted) if trusted is not None else None
    elif trust_radius is not None:
        radius = float(trust_radius)
    score = _score_fn(model, objective, constraints, lcb_k, trusted, radius, embed)
    starts = [
        constraints.project(constraints.prior),
        constraints.project(np.full(len(constraints.domains), 1 / len(constraints.domains))),
    ]
    if X_runs is not None and len(X_runs):
        pred = score(constraints.project(np.asarray(X_runs, dtype=np.float64)))
        for i in np.argsort(-pred)[:5]:
            starts.append(constraints.project(X_runs[i]))
    starts.extend(constraints.sample(max(0, n_starts - len(starts)), rng))
    S = np.vstack(starts)
    if method == "exact":
        w = _exact(score, constraints, S)
    elif method == "topk":
        w = _topk(score, constraints, rng, n_samples, top_k)
    else:
        w = _optuna(score, constraints, method, seed, n_trials, S)
    assert constraints.contains(w), "solver left the feasible set"
    sol = describe(model, objective, constraints, w, method, X_runs, Y_runs, intervals, level)
    sol.lcb_k, sol.trust_radius = lcb_k, radius
    if lcb_k > 0:
        sol.objective_sd = float(objective.sd(_predict_std(model, w)[1])[0])
    return sol


def describe(
    model: Any,
    objective: Objective,
    constraints: Constraints,
    w: np.ndarray,
    method: str,
    X_runs: np.ndarray | None,
    Y_runs: np.ndarray | None,
    intervals: Any = None,
    level: float = 0.95,
) -> Solution:
    """A `Solution` for mixture w: predictions with intervals, best run, distances, warnings."""
    mean = _predict(model, w)[0]
    penalty = float(constraints.penalty_value(w))
    obj = float(objective.value(mean)) - penalty
    sol = Solution(constraints.domains, w, method, objective.targets, mean, obj)
    if intervals is not None:
        picked = intervals.selected(objective, mean[None, :], level)
        sol.predicted_lo, sol.predicted_hi = picked.targets_lo[0], picked.targets_hi[0]
        sol.objective_lo = float(picked.objective_lo[0]) - penalty
        sol.objective_hi = float(picked.objective_hi[0]) - penalty
        sol.level = level
        if picked.selection is not None:
            sol.optimism = float(picked.selection.objective[0])
            sol.optimism_targets = picked.selection.targets[0]
            sol.optimism_picks = picked.selection.picks
            sol.optimism_runs = int(picked.selection.matched[0])
    if X_runs is not None and len(X_runs):
        X = np.asarray(X_runs, dtype=np.float64)
        dist = 0.5 * np.abs(X - w).sum(axis=1)
        sol.nearest_run = int(np.argmin(dist))
        sol.nearest_distance = float(dist.min())
        sol.typical_distance = spread_radius(X)
        folds = getattr(intervals, "folds", None)
        sol.held_out_reach = held_out_reach(X, folds) if folds is not None else None
        limit = sol.held_out_reach if sol.held_out_reach is not None else sol.typical_distance
        if limit is not None and sol.nearest_distance > limit + 1e-6:
            sol.warnings.append(
                f"the optimum is {sol.nearest_distance:.3f} (total variation) from the "
                f"nearest trained run, farther than cross-validation measured the surrogate's "
                f"accuracy ({limit:.3f}): it is extrapolating; train a few runs near it "
                "before trusting the prediction"
            )
        if Y_runs is not None:
            measured = objective.value(
                np.asarray(Y_runs).reshape(len(X), -1)
            ) - constraints.penalty_value(X)
            sol.best_run = int(np.argmax(measured))
            sol.best_run_objective = float(measured[sol.best_run])
            sol.best_run_predicted = float(
                objective.value(_predict(model, X[sol.best_run])[0])
                - constraints.penalty_value(X[sol.best_run])
            )
    return sol


def pareto_front(
    model: Any,
    objective: Objective,
    constraints: Constraints,
    *,
    seed: int = 0,
    n_trials: int = 600,
    chosen: np.ndarray | None = None,
) -> pl.DataFrame:
    """Pareto front over the objective's weighted targets (Optuna NSGA-II), one row per mixture,
    with each target's predicted value and `chosen` marking the point nearest `chosen` (or the
    best by the weighted objective)."""
    import optuna

    D = len(constraints.domains)
    active = [j for j, w in enumerate(objective.weights) if w > 0]
    if len(active) < 2:
        raise AutomixerError(
            "a Pareto front needs at least two targets with weight", field="solve.objective"
        )
    with quiet_optuna():
        study = optuna.create_study(
            directions=["maximize"] * len(active), sampler=optuna.samplers.NSGAIISampler(seed=seed)
        )
        mixtures: dict[int, np.ndarray] = {}

        def trial_fn(trial: optuna.Trial) -> tuple[float, ...]:
            x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(D)])
            w = constraints.project(x / max(x.sum(), 1e-12))
            mixtures[trial.number] = w
            vals = objective.per_target(_predict(model, w)[0])
            return tuple(float(vals[j]) for j in active)

        study.optimize(trial_fn, n_trials=n_trials)
    front = study.best_trials
    W = np.stack([mixtures[t.number] for t in front])
    P = _predict(model, W)
    score = objective.value(P)
    pick = (
        int(np.argmin(np.abs(W - chosen).sum(axis=1)))
        if chosen is not None
        else int(np.argmax(score))
    )
    data: dict[str, Any] = {d: W[:, i] for i, d in enumerate(constraints.domains)}
    data.update({objective.targets[j]: P[:, j] for j in active})
    data["objective"] = score
    data["chosen"] = np.arange(len(W)) == pick
    return pl.DataFrame(data)
