"""Prediction intervals that mean the same for every surrogate: conformal, from out-of-fold
residuals, with crepes' `ConformalRegressor`.

The residuals are the deployed surrogate's out-of-fold errors against the measured runs (grouped
folds, see `cross_validate`), so an interval covers what a new proxy run at that mixture would
measure, seed noise included, whichever surrogate was chosen. The objective's interval is
conformalised on the objective's own out-of-fold residuals, so the correlation between its
targets' errors is in it (adding per-target intervals as if independent under-covers).

At the mixture the solver picks, or any mixture chosen because it predicts best, those
intervals are optimistic: the best-predicted point is where the surrogate's error is most
likely positive. `Selection` measures that optimism by cross-validation: in every fold of every
repeat, the held-out run the fold's model ranks best on the objective, and its signed errors
(measured - predicted) on the objective and on each target. Their mean is the optimism of
picking the best; `Conformal.selected` shifts a prediction and its interval by it, so the
interval covers what a new run at a *picked* mixture would measure.
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


@dataclass(frozen=True)
class Selection:
    """The optimism of picking the best-predicted mixture, measured by cross-validation."""

    objective: float
    """Mean signed error (measured - predicted) of the objective at the fold models' picks."""
    targets: np.ndarray
    """The same per target (n_targets,), at the same picks."""
    picks: int
    """How many picks (folds x repeats) the means are over."""


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
    oof_sd_runs: np.ndarray | None = None

    def selection(self, objective: Objective) -> Selection | None:
        """The optimism of the best-predicted pick under `objective` (None without folds)."""
        if self.oof_runs is None or self.folds is None:
            return None
        measured = objective.value(self.Y)
        obj_errors, target_errors = [], []
        for P, fold in zip(self.oof_runs, self.folds, strict=True):
            predicted = objective.value(P)
            for k in np.unique(fold):
                held = np.flatnonzero(fold == k)
                pick = held[int(np.argmax(predicted[held]))]
                obj_errors.append(measured[pick] - predicted[pick])
                target_errors.append(self.Y[pick] - P[pick])
        return Selection(
            float(np.mean(obj_errors)), np.mean(target_errors, axis=0), len(obj_errors)
        )

    def selected(self, objective: Objective, pred: np.ndarray, level: float = 0.95) -> Picked:
        """Predictions and intervals at picked mixtures (`pred`: (m, n_targets) as the surrogate
        predicts them), shifted by the optimism of picking the best (unshifted without folds)."""
        pred = np.asarray(pred, dtype=np.float64).reshape(-1, self.Y.shape[1])
        lo, hi = self.intervals(pred, level)
        olo, ohi = self.objective_interval(objective, pred, level)
        value = objective.value(pred)
        sel = self.selection(objective)
        t = sel.targets[None, :] if sel is not None else 0.0
        o = sel.objective if sel is not None else 0.0
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
