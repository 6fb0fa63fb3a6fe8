"""Prediction intervals judged by their measured coverage of new noisy runs."""

from __future__ import annotations

import numpy as np
import pytest

from automixer.solve import Objective
from automixer.surrogates import GPSurrogate, LinearSurrogate, cross_validate
from automixer.surrogates.intervals import Conformal

A = np.array([[1.0, 0.6], [-0.5, -0.4], [0.8, 0.9], [0.0, -0.2]])


def _draw(n: int, rng: np.random.Generator, noise: float = 0.05, corr: float = 0.0):
    X = rng.dirichlet(np.ones(4), size=n)
    shared = rng.normal(size=(n, 1))
    own = rng.normal(size=(n, 2))
    eps = noise * (np.sqrt(corr) * shared + np.sqrt(1 - corr) * own)
    return X, 3.0 - np.sqrt(X) @ A + eps


@pytest.mark.parametrize("model", [LinearSurrogate(), GPSurrogate()], ids=["linear", "gp"])
def test_intervals_cover_new_noisy_runs(model):
    """The old bootstrap spread of the linear model covered 49% of new runs at "95%"."""
    rng = np.random.default_rng(0)
    X, Y = _draw(80, rng)
    oof = cross_validate(X, Y, {"m": model}, folds=5, repeats=1).oof["m"]
    fitted = model.fit(X, Y)
    Xn, Yn = _draw(4000, rng)
    pred = fitted.predict(Xn)
    for level in (0.8, 0.95):
        lo, hi = Conformal(Y, oof).intervals(pred, level)
        covered = ((Yn >= lo) & (Yn <= hi)).mean()
        assert abs(covered - level) < 0.05, (level, covered)


def test_objective_interval_sees_correlated_errors():
    """Two targets whose noise is shared: the objective's errors add up instead of averaging
    out, so intervals combined as if independent under-cover; the objective's own conformal
    interval does not."""
    rng = np.random.default_rng(1)
    X, Y = _draw(120, rng, noise=0.1, corr=0.9)
    model = LinearSurrogate()
    oof = cross_validate(X, Y, {"m": model}, folds=5, repeats=1).oof["m"]
    fitted = model.fit(X, Y)
    obj = Objective.build(["a_loss", "b_loss"], {"*": 1.0}, Y)
    conformal = Conformal(Y, oof)
    Xn, Yn = _draw(4000, rng, noise=0.1, corr=0.9)
    pred = fitted.predict(Xn)
    lo, hi = conformal.objective_interval(obj, pred, 0.95)
    truth = obj.value(Yn)
    joint = ((truth >= lo) & (truth <= hi)).mean()
    assert abs(joint - 0.95) < 0.03
    # The same targets' intervals combined as if independent.
    tlo, thi = conformal.intervals(pred, 0.95)
    half = np.sqrt((((thi - tlo) / 2 / obj.scale * obj.weights) ** 2).sum(axis=1))
    value = obj.value(pred)
    independent = ((truth >= value - half) & (truth <= value + half)).mean()
    assert independent < joint - 0.03


def test_a_pick_is_calibrated_on_the_runs_the_same_selection_picks():
    """The shift at a pick is the mean error of the out-of-fold runs predicted at least as
    high as it (the best-predicted one when none is), whatever list it came from: a pick from
    deeper in the predictions matches more runs, and a pick beyond all of them the best one
    (the rule before took every single pick's shift from the best-ranked run)."""
    from automixer.solve import Objective

    Y = np.array([[1.0], [2.0], [3.0], [1.0], [2.0], [3.0]])
    P = np.array([[1.0], [2.5], [3.5], [1.2], [2.9], [2.0]])  # one repeat's out-of-fold
    folds = np.array([[0, 0, 0, 1, 1, 1]])
    objective = Objective.build(["t_acc"], {"t_acc": 1.0}, Y)  # higher is better
    conformal = Conformal(Y, P, P[None], folds)
    # errors (measured - predicted): 0, -0.5, -0.5, -0.2, -0.9, +1.0
    at = conformal.selected(objective, np.array([[4.0], [3.0], [2.6], [1.1]]), 0.8)
    assert at.selection is not None and at.selection.picks == 1
    assert at.selection.matched.tolist() == [1, 1, 2, 5]
    expected = [-0.5, -0.5, (-0.5 - 0.9) / 2, (-0.5 - 0.9 - 0.5 + 1.0 - 0.2) / 5]
    assert at.selection.targets[:, 0] == pytest.approx(expected)
    assert at.targets[:, 0] == pytest.approx(np.array([4.0, 3.0, 2.6, 1.1]) + expected)
    assert at.selection.objective == pytest.approx(np.array(expected) / objective.scale[0])
    # centred, and wider where the shift rests on fewer runs
    assert (at.targets_lo[:, 0] + at.targets_hi[:, 0]) / 2 == pytest.approx(at.targets[:, 0])
    half = (at.objective_hi - at.objective_lo) / 2
    assert half[0] == pytest.approx(half[1]) and half[1] > half[2] > half[3]
    plain = Conformal(Y, P).selected(objective, np.array([[3.0]]), 0.8)
    assert plain.selection is None and plain.targets[0, 0] == 3.0  # no folds: marginal
