"""Prediction intervals that mean the same for every surrogate: conformal, from out-of-fold
residuals, with crepes' `ConformalRegressor`.

The residuals are the deployed surrogate's out-of-fold errors against the measured runs (grouped
folds, see `cross_validate`), so an interval covers what a new proxy run at that mixture would
measure, seed noise included, whichever surrogate was chosen. The objective's interval is
conformalised on the objective's own out-of-fold residuals, so the correlation between its
targets' errors is in it (adding per-target intervals as if independent under-covers).

At the mixture the solver picks, or any mixture chosen because it predicts best, those
intervals are optimistic: the best-predicted point is where the surrogate's error is most
likely negative (measured below predicted). `Conformal.selected` calibrates a pick on the
out-of-fold runs that the same selection would pick (selective conditional conformal prediction,
in the spirit of Jin and Candes 2023 and of Bao et al. 2024's SCOP): in every cross-validation
repeat, the runs whose out-of-fold prediction of the objective (each from a model that never saw
the run) is at least the pick's, or the single best-predicted run when none is; a deeper
selection (a higher prediction, from a larger pool or a stronger search) matches fewer, more
optimistic runs. The pick is shifted by those runs' mean error (measured - predicted), over
repeats, and its interval is that shift plus the conformal quantile of the errors' spread among
the best-predicted eighth of the runs (at least 8, and enough for the level), widened by the
shift's own standard error
(the errors' sd over the distinct runs matched). Without folds the marginal interval stands, and
says so. Chosen on RegMix's Pile-CC loss among seven rules, each measured on published sweeps it
was and was not chosen on (`benchmarks/selective.py`, BENCHMARKS.md "Intervals at the chosen
mixture").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from crepes import ConformalRegressor
from scipy.stats import norm

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


def _half_width(spread: np.ndarray, level: float) -> float:
    """The conformal quantile of |spread| at `level` (crepes); NaN with too few values."""
    return float(np.diff(_interval(spread, np.zeros(1), level)[0])[0] / 2)


def ranks_of(value: np.ndarray) -> np.ndarray:
    """Each candidate's rank by `value` (0 = highest; ties in their given order)."""
    return np.argsort(np.argsort(-np.asarray(value), kind="stable"), kind="stable")


LOCAL_FRACTION = 0.125
"""The best-predicted share of the runs whose errors' spread gives a pick's width."""
LOCAL_RUNS = 8
"""...and never fewer runs than this."""


@dataclass(frozen=True)
class Selection:
    """The calibration of picks by their predicted objective, from cross-validation."""

    objective: np.ndarray
    """(m,) each pick's shift: the mean error of the out-of-fold runs the same selection
    picks (those predicted at least as high, at least one), over repeats."""
    targets: np.ndarray
    """(m, n_targets) the same runs' mean errors per target."""
    matched: np.ndarray
    """(m,) how many distinct runs those are, over all repeats."""
    picks: int
    """How many rankings (cross-validation repeats) the means are over."""


@dataclass(frozen=True)
class Picked:
    """Predictions at picked mixtures, calibrated on the runs the same selection picks."""

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

    def selected(self, objective: Objective, pred: np.ndarray, level: float = 0.95) -> Picked:
        """Predictions and intervals at mixtures picked by their predicted objective (`pred`:
        (m, n_targets) as the surrogate predicts them), each calibrated on the out-of-fold
        runs the same selection picks (see the module's text); the marginal intervals,
        unshifted, without folds."""
        pred = np.asarray(pred, dtype=np.float64).reshape(-1, self.Y.shape[1])
        value = objective.value(pred)
        if self.oof_runs is None or self.folds is None:
            lo, hi = self.intervals(pred, level)
            olo, ohi = self.objective_interval(objective, pred, level)
            return Picked(pred, lo, hi, value, olo, ohi, None)
        active = objective.weights > 0
        measured = objective.value(np.where(active, self.Y, objective.center))
        runs = [objective.value(np.where(active, P, objective.center)) for P in self.oof_runs]
        orders = [np.argsort(-r, kind="stable") for r in runs]
        errors = [(measured - r)[o] for r, o in zip(runs, orders, strict=True)]
        target_errors = [(self.Y - P)[o] for P, o in zip(self.oof_runs, orders, strict=True)]
        n = len(measured)
        repeats = len(self.oof_runs)
        local = min(
            n,
            max(LOCAL_RUNS, math.ceil(LOCAL_FRACTION * n), math.ceil(min_runs(level) / repeats)),
        )
        z = float(norm.ppf((1 + level) / 2))
        spread = np.concatenate([e[:local] - e[:local].mean() for e in errors])
        half = _half_width(spread, level)
        sd = float(np.std(np.concatenate([e[:local] for e in errors]), ddof=1))
        t_spread = np.concatenate([e[:local] - e[:local].mean(axis=0) for e in target_errors])
        t_half = np.array([_half_width(t_spread[:, j], level) for j in range(pred.shape[1])])
        t_sd = np.std(np.concatenate([e[:local] for e in target_errors]), axis=0, ddof=1)
        shift = np.empty(len(pred))
        t_shift = np.empty_like(pred)
        matched = np.empty(len(pred), dtype=np.int64)
        for i, v in enumerate(value):
            counts = [max(1, int((r >= v).sum())) for r in runs]
            shift[i] = np.mean([e[:c].mean() for e, c in zip(errors, counts, strict=True)])
            t_shift[i] = np.mean(
                [e[:c].mean(axis=0) for e, c in zip(target_errors, counts, strict=True)], axis=0
            )
            matched[i] = len({int(j) for o, c in zip(orders, counts, strict=True) for j in o[:c]})
        root = np.sqrt(matched)
        width = np.sqrt(half**2 + (z * sd / root) ** 2)
        t_width = np.sqrt(t_half[None, :] ** 2 + (z * t_sd[None, :] / root[:, None]) ** 2)
        sel = Selection(shift, t_shift, matched, len(self.oof_runs))
        centre, t_centre = value + shift, pred + t_shift
        return Picked(
            t_centre,
            t_centre - t_width,
            t_centre + t_width,
            centre,
            centre - width,
            centre + width,
            sel,
        )

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
