"""Prediction intervals that mean the same for every surrogate: conformal, from out-of-fold
residuals, with crepes' `ConformalRegressor`.

The residuals are the deployed surrogate's out-of-fold errors against the measured runs (grouped
folds, see `cross_validate`), so an interval covers what a new proxy run at that mixture would
measure, seed noise included, whichever surrogate was chosen. The objective's interval is
conformalised on the objective's own out-of-fold residuals, so the correlation between its
targets' errors is in it (adding per-target intervals as if independent under-covers).

At the mixture the solver picks, or any mixture chosen because it predicts best, those
intervals are optimistic: the best-predicted point is where the surrogate's error is most
likely positive. `Selection` measures that optimism by cross-validation: in every repeat, every
run is ranked by its out-of-fold prediction of the objective (each from a model that never saw
it), and the signed errors (measured - predicted) of the k best-ranked runs are averaged, then
over repeats. The candidate a list ranks k-th best is shifted by that mean over the sweep's k
best (the solver's one pick by the error at the best-ranked run). Ranking over all runs, not
within each fold, matters: the best of a fold's dozen held-out runs is a far weaker selection
than the solver's pick, and its error was a third of the optimism measured at the best of 256
unseen RegMix mixtures (BENCHMARKS.md, "Trust at the chosen mixture").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from crepes import ConformalRegressor

from automixer.solve.objective import Objective


def min_runs(level: float) -> int:
    """The fewest calibration runs that give a finite interval at `level`."""
    return math.ceil(level / (1 - level) - 1e-9)


def _interval(residuals: np.ndarray, y_hat: np.ndarray, level: float) -> np.ndarray:
    """(len(y_hat), 2) intervals from one target's calibration residuals; NaN when there are
    too few runs for the level (a conformal interval would be unbounded)."""
    r = residuals[np.isfinite(residuals)]
    if len(r) < max(2, min_runs(level)):
        return np.full((len(y_hat), 2), np.nan)
    cr = ConformalRegressor().fit(residuals=r)
    return np.asarray(cr.predict_int(np.asarray(y_hat, dtype=np.float64), confidence=level))


def ranks_of(value: np.ndarray) -> np.ndarray:
    """Each candidate's rank by `value` (0 = highest; ties in their given order)."""
    return np.argsort(np.argsort(-np.asarray(value), kind="stable"), kind="stable")


@dataclass(frozen=True)
class Selection:
    """The optimism of picking by the predicted objective, measured by cross-validation."""

    errors: np.ndarray
    """(n_runs,): at k, the mean signed error (measured - predicted) of the objective over the
    k + 1 runs the out-of-fold predictions rank best, averaged over repeats."""
    target_errors: np.ndarray
    """The same per target (n_runs, n_targets), over the same runs."""
    picks: int
    """How many rankings (cross-validation repeats) the means are over."""

    @property
    def objective(self) -> float:
        """The optimism of one pick: the mean error at the best-ranked run."""
        return float(self.errors[0])

    @property
    def targets(self) -> np.ndarray:
        return self.target_errors[0]

    def at(self, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The objective's and the targets' shifts for candidates ranked `ranks` (0 = best)."""
        k = np.clip(np.asarray(ranks, dtype=np.int64), 0, len(self.errors) - 1)
        return self.errors[k], self.target_errors[k]


@dataclass(frozen=True)
class Picked:
    """Predictions at picked mixtures with the optimism of picking taken out."""

    targets: np.ndarray
    targets_lo: np.ndarray
    targets_hi: np.ndarray
    objective: np.ndarray
    objective_lo: np.ndarray
    objective_hi: np.ndarray
    selection: Selection | None


@dataclass(frozen=True)
class Conformal:
    """Intervals from out-of-fold predictions `oof` (n_runs, n_targets) of measured `Y`; with
    the per-repeat predictions `oof_runs` (repeats, n_runs, n_targets) and their `folds`
    (repeats, n_runs), also the optimism of picking the best (`selection`)."""

    Y: np.ndarray
    oof: np.ndarray
    oof_runs: np.ndarray | None = None
    folds: np.ndarray | None = None

    def selection(self, objective: Objective) -> Selection | None:
        """The optimism of best-predicted picks under `objective` (None without folds)."""
        if self.oof_runs is None or self.folds is None:
            return None
        measured = objective.value(self.Y)
        obj_errors, target_errors = [], []
        for P in self.oof_runs:
            predicted = objective.value(P)
            order = np.argsort(-predicted, kind="stable")
            top = np.arange(1, len(order) + 1)
            obj_errors.append(np.cumsum(measured[order] - predicted[order]) / top)
            target_errors.append(np.cumsum(self.Y[order] - P[order], axis=0) / top[:, None])
        return Selection(
            np.mean(obj_errors, axis=0), np.mean(target_errors, axis=0), len(self.oof_runs)
        )

    def selected(
        self,
        objective: Objective,
        pred: np.ndarray,
        level: float = 0.95,
        ranks: np.ndarray | None = None,
    ) -> Picked:
        """Predictions and intervals at picked mixtures (`pred`: (m, n_targets) as the surrogate
        predicts them), each shifted by the optimism of its rank among the picks (`ranks`, 0 =
        best; by default the rows' own order by the objective); unshifted without folds."""
        pred = np.asarray(pred, dtype=np.float64).reshape(-1, self.Y.shape[1])
        lo, hi = self.intervals(pred, level)
        olo, ohi = self.objective_interval(objective, pred, level)
        value = objective.value(pred)
        sel = self.selection(objective)
        if sel is None:
            return Picked(pred, lo, hi, value, olo, ohi, None)
        o, t = sel.at(ranks_of(value) if ranks is None else ranks)
        return Picked(pred + t, lo + t, hi + t, value + o, olo + o, ohi + o, sel)

    @property
    def residuals(self) -> np.ndarray:
        return self.Y - self.oof

    def intervals(self, pred: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper ends for predictions `pred` (m, n_targets)."""
        pred = np.asarray(pred, dtype=np.float64).reshape(-1, self.Y.shape[1])
        ends = [_interval(self.residuals[:, j], pred[:, j], level) for j in range(pred.shape[1])]
        lo = np.column_stack([e[:, 0] for e in ends])
        hi = np.column_stack([e[:, 1] for e in ends])
        return lo, hi

    def objective_interval(
        self, objective: Objective, pred: np.ndarray, level: float = 0.95
    ) -> tuple[np.ndarray, np.ndarray]:
        """The objective's interval at predictions `pred` (m, n_targets), from the objective's
        own out-of-fold residuals."""
        value = objective.value(np.asarray(pred).reshape(-1, self.Y.shape[1]))
        ends = _interval(self.objective_residuals(objective), value, level)
        return ends[:, 0], ends[:, 1]

    def objective_residuals(self, objective: Objective) -> np.ndarray:
        """Each run's out-of-fold error (measured - predicted) on the objective."""
        measured = objective.value(np.where(objective.weights > 0, self.Y, objective.center))
        predicted = objective.value(np.where(objective.weights > 0, self.oof, objective.center))
        return np.asarray(measured - predicted)

    def difference_interval(
        self, objective: Objective, delta: float, level: float = 0.95
    ) -> tuple[float, float]:
        """The interval of a predicted difference `delta` between the objective at two
        mixtures (a schedule against the best constant mix): from the differences of the
        objective's out-of-fold residuals over every pair of runs. Two nearby mixtures' errors
        are correlated, so their difference errs less than two runs' picked at random: the
        interval is wide rather than narrow. NaN ends with too few runs for the level."""
        r = self.objective_residuals(objective)
        r = r[np.isfinite(r)]
        i, j = np.triu_indices(len(r), k=1)
        ends = _interval(r[i] - r[j], np.array([delta], dtype=np.float64), level)
        return float(ends[0, 0]), float(ends[0, 1])
