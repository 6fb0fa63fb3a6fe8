"""Adaptive sweeps: the next proxies go where they decide the most.

After a space-filling first batch, each round fits a Gaussian process to the objective of the runs
so far and chooses the next batch by Thompson sampling: every slot of the batch draws one function
from the GP's joint posterior over the candidate mixtures and takes that draw's best candidate
not already taken. A draw is high where the mean is high (near the candidate optimum) or where
the posterior is wide (where the surrogate is unsure), in proportion to how likely each is to
hold the optimum, and separate draws spread the batch without a hand-tuned diversity term. The
GP is automixer's own (`GPSurrogate`, per-domain length scales on square-rooted weights, the
same model `auto` chooses among), so no second modelling stack is needed: Optuna's samplers do
not condition on a fixed candidate set, and BoTorch's q-EI would bring PyTorch-side GP fitting
for a few dozen points.

`simulate` runs the loop on runs that were already trained (a pool): only the pool's rows can be
chosen, and a row's metrics are revealed when it is chosen. Its recommendation is a measured run
(`measured_pick`). `random_selection` is the baseline with the same surrogate and budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from automixer.design import RUNS_PER_DOMAIN
from automixer.errors import AutomixerError
from automixer.solve.objective import Objective
from automixer.surrogates.gp import GPSurrogate
from automixer.surrogates.selection import cross_validate, mixture_groups


def _fit(X: np.ndarray, y: np.ndarray, seed: int) -> GPSurrogate:
    return GPSurrogate(random_state=seed).fit(X, y)


def thompson_batch(
    X_seen: np.ndarray,
    y_seen: np.ndarray,
    candidates: np.ndarray,
    batch: int,
    rng: np.random.Generator,
) -> list[int]:
    """`batch` distinct indices into `candidates` by Thompson sampling from a GP fitted to the
    objective values `y_seen` (higher is better) of the mixtures `X_seen`."""
    if batch > len(candidates):
        raise ValueError(f"a batch of {batch} from {len(candidates)} candidates")
    gp = _fit(X_seen, y_seen, int(rng.integers(2**31)))
    mean, cov = gp.latent_posterior(candidates)  # the function's posterior, not a new run's
    draws = joint_draws(mean, cov, batch, rng)
    picked: list[int] = []
    for s in range(batch):
        order = np.argsort(-draws[:, s])
        picked.append(int(next(i for i in order if i not in picked)))
    return picked


def joint_draws(mean: np.ndarray, cov: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` draws (columns) from the normal with this mean and covariance. A posterior over
    thousands of close candidates is numerically singular: the Cholesky factor is taken with
    the smallest diagonal jitter that works, and the symmetric eigendecomposition with
    negative eigenvalues clipped if none does (scikit-learn's `sample_y`, through NumPy's SVD,
    failed to converge on such a matrix)."""
    k = len(mean)
    cov = (cov + cov.T) / 2
    scale = float(np.mean(np.diag(cov))) or 1.0
    normal = rng.standard_normal((k, n))
    for jitter in (0.0, 1e-10, 1e-8, 1e-6):
        try:
            factor = np.linalg.cholesky(cov + jitter * scale * np.eye(k))
        except np.linalg.LinAlgError:
            continue
        return mean[:, None] + factor @ normal
    values, vectors = np.linalg.eigh(cov)
    return mean[:, None] + (vectors * np.sqrt(np.clip(values, 0.0, None))) @ normal


MAX_CANDIDATES = 4096
"""Pool rows a simulated round draws from: a random subset of the rows not yet chosen beyond
this (the joint posterior over m candidates is m x m: 4096 is 134 MB, a 100k-row pool would be
80 GB)."""

PICK_K = 1.96
"""The confidence bounds of the optimum's interval (`Optimum`) are the posterior mean plus or
minus this many posterior sds: the solver's own default, the 95% level."""


def measured_pick(X_seen: np.ndarray, y_seen: np.ndarray, seed: int) -> tuple[int, float]:
    """The recommendation among runs already measured: the index into `X_seen` of the run with
    the best posterior mean under a GP fitted to all of them (its measured value with the seed
    noise smoothed out by its neighbours), and that mean. Among measured runs no extrapolation
    is possible, so no risk term is needed; a lower confidence bound there mostly rewards a
    crowded neighbourhood (a smaller sd) and on the Olmix swarm preferred the third-best of
    three near-equal top runs over the best (BENCHMARKS.md)."""
    mean = _fit(X_seen, y_seen, seed).predict(X_seen)
    mean = np.asarray(mean).reshape(-1)
    best = int(np.argmax(mean))
    return best, float(mean[best])


@dataclass(frozen=True)
class PickValue:
    """What a new run at a recommended row is expected to measure: its out-of-fold prediction
    calibrated for having been picked as the best (`Conformal.selected`), with the interval;
    the GP's in-sample posterior mean there (fitted on that very run) is kept beside it."""

    expected: float
    lo: float
    hi: float
    level: float
    out_of_fold: float
    """The prediction at the row from models that never saw it (mean over repeats)."""
    matched: int
    """The distinct out-of-fold runs the calibration rests on."""


def pick_value(
    X_seen: np.ndarray, y_seen: np.ndarray, best: int, seed: int, level: float = 0.95
) -> PickValue:
    """The calibrated value at `X_seen[best]`, the row picked by the best posterior mean: the
    GP's grouped out-of-fold predictions (5 folds, 3 repeats, as `automixer fit`), the pick's
    own shifted by the optimism of the runs the same selection picks."""
    y = np.asarray(y_seen, dtype=np.float64).reshape(-1, 1)
    folds = min(5, len(np.unique(mixture_groups(X_seen))))
    cv = cross_validate(
        X_seen, y, {"gp": GPSurrogate(random_state=seed)}, folds=folds, repeats=3, seed=seed
    )
    identity = Objective(["objective"], np.ones(1), np.ones(1), np.zeros(1), np.ones(1))
    oof = float(cv.oof["gp"][best, 0])
    at = cv.conformal(y).selected(identity, np.array([[oof]]), level)
    matched = int(at.selection.matched[0]) if at.selection is not None else 0
    return PickValue(
        float(at.objective[0]),
        float(at.objective_lo[0]),
        float(at.objective_hi[0]),
        level,
        oof,
        matched,
    )


@dataclass(frozen=True)
class Optimum:
    """The candidate with the best lower confidence bound after some runs, and the interval that
    holds the best objective any candidate reaches: from that lower bound to the best upper
    confidence bound (at `PICK_K` sds). What the early stop (`tight`) reads."""

    mean: float
    """The posterior mean at the candidate with the best lower confidence bound."""
    sd: float
    upper: float
    """The best upper confidence bound over the candidates."""
    spread: float
    """The standard deviation of the objective over the runs it was fitted to."""

    @property
    def width(self) -> float:
        """The optimum's interval over the objective's spread over the runs: a scale-free
        bound on how much better than the best lower bound's candidate another may still be."""
        lower = self.mean - PICK_K * self.sd
        return (self.upper - lower) / self.spread if self.spread > 0 else float("inf")


def optimum(X_seen: np.ndarray, y_seen: np.ndarray, candidates: np.ndarray, seed: int) -> Optimum:
    """The candidate with the best lower confidence bound (see `PICK_K`) under a GP fitted to
    the objective values `y_seen` of `X_seen`, and the interval of the best objective."""
    mean, sd = _fit(X_seen, y_seen, seed).predict(candidates, return_std=True)
    best = int(np.argmax(mean - PICK_K * sd))
    upper = float(np.max(mean + PICK_K * sd))
    return Optimum(float(mean[best]), float(sd[best]), upper, float(np.std(y_seen)))


def tight(found: Optimum, stop_width: float | None, runs: int, domains: int) -> bool:
    """Whether an adaptive sweep may stop before its budget: it has the runs its width needs
    (`RUNS_PER_DOMAIN` per domain: with fewer, the GP's intervals are not to be trusted; a GP
    on 16 runs of 24 domains stopped with a pick worse than random's) and the optimum's
    interval is narrower than `stop_width` times the objective's spread over the runs. Never
    with None. The GP's sd is the latent function's (without the runs' noise): it shrinks
    as runs gather around the optimum."""
    return stop_width is not None and runs >= RUNS_PER_DOMAIN * domains and found.width < stop_width


@dataclass(frozen=True)
class Trajectory:
    chosen: list[int]
    """Pool rows in the order they were chosen."""
    rounds: list[int]
    """The round of each chosen row (0: the initial batch)."""

    def pick(
        self, X: np.ndarray, objective: Callable[[np.ndarray], np.ndarray], n: int, seed: int
    ) -> tuple[int, float]:
        """After the first `n` choices: the recommended row, the chosen row with the best
        posterior mean (`measured_pick`), and that predicted objective."""
        seen = np.asarray(self.chosen[:n])
        best, predicted = measured_pick(X[seen], objective(seen), seed)
        return int(seen[best]), predicted


def _check(pool: int, initial: int, batch: int, budget: int, stop_width: float | None) -> None:
    if stop_width is not None and not stop_width > 0:
        raise AutomixerError(f"must be positive, got {stop_width}", field="--stop-width")
    if initial < 2:
        raise AutomixerError("needs at least 2 initial runs", field="--initial")
    if batch < 1:
        raise AutomixerError("needs at least 1", field="--batch")
    if budget < initial:
        raise AutomixerError(f"budget {budget} is below the initial {initial}", field="--budget")
    if budget > pool:
        raise AutomixerError(f"budget {budget} exceeds the pool's {pool} rows", field="--budget")


def simulate(
    X: np.ndarray,
    objective: Callable[[np.ndarray], np.ndarray],
    *,
    initial: int,
    batch: int,
    budget: int,
    seed: int,
    stop_width: float | None = None,
    on_round: Callable[[int, int], None] | None = None,
    on_stop: Callable[[int, Optimum], None] | None = None,
) -> Trajectory:
    """The adaptive loop on a pool of already trained runs. `objective(rows)` reveals the
    objective (higher is better) of pool rows; it is only ever called on chosen rows. With
    `stop_width`, the loop ends before the budget once the optimum is tight (`tight`): then
    `on_stop(round, optimum)` is told."""
    _check(len(X), initial, batch, budget, stop_width)
    rng = np.random.default_rng(seed)
    chosen = [int(i) for i in rng.choice(len(X), initial, replace=False)]
    rounds = [0] * initial
    r = 0
    while len(chosen) < budget:
        r += 1
        rest = np.setdiff1d(np.arange(len(X)), chosen)
        size = min(batch, budget - len(chosen))
        y = objective(np.asarray(chosen))
        if stop_width is not None:
            pool = X if len(X) <= MAX_CANDIDATES else X[rng.choice(len(X), MAX_CANDIDATES)]
            found = optimum(X[chosen], y, pool, seed)
            if tight(found, stop_width, len(chosen), X.shape[1]):
                if on_stop is not None:
                    on_stop(r, found)
                break
        if len(rest) > MAX_CANDIDATES:  # a joint posterior over the whole of a large pool
            rest = np.sort(rng.choice(rest, MAX_CANDIDATES, replace=False))
        new = thompson_batch(X[chosen], y, X[rest], size, rng)
        chosen += [int(rest[i]) for i in new]
        rounds += [r] * size
        if on_round is not None:
            on_round(r, len(chosen))
    return Trajectory(chosen, rounds)


def random_selection(n_pool: int, budget: int, seed: int) -> Trajectory:
    """The baseline: `budget` rows drawn at random, as one round."""
    rng = np.random.default_rng(seed)
    return Trajectory([int(i) for i in rng.choice(n_pool, budget, replace=False)], [0] * budget)
