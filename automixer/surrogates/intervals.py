"""Prediction intervals that mean the same for every surrogate: conformal, from out-of-fold
residuals, with crepes' `ConformalRegressor`.

The residuals are the deployed surrogate's out-of-fold errors against the measured runs (grouped
folds, see `cross_validate`), so an interval covers what a new proxy run at that mixture would
measure, seed noise included, whichever surrogate was chosen. The objective's interval is
conformalised on the objective's own out-of-fold residuals, so the correlation between its
targets' errors is in it (adding per-target intervals as if independent under-covers).
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
class Conformal:
    """Intervals from out-of-fold predictions `oof` (n_runs, n_targets) of measured `Y`."""

    Y: np.ndarray
    oof: np.ndarray

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
        measured = objective.value(np.where(objective.weights > 0, self.Y, objective.center))
        predicted = objective.value(np.where(objective.weights > 0, self.oof, objective.center))
        value = objective.value(np.asarray(pred).reshape(-1, self.Y.shape[1]))
        ends = _interval(measured - predicted, value, level)
        return ends[:, 0], ends[:, 1]
