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


def test_the_optimism_of_picking_is_the_error_at_the_best_ranked_out_of_fold_runs():
    from automixer.solve import Objective

    Y = np.array([[1.0], [2.0], [3.0], [1.0], [2.0], [3.0]])
    P = np.array([[1.0], [2.5], [3.5], [1.2], [2.9], [2.0]])  # one repeat's out-of-fold
    folds = np.array([[0, 0, 0, 1, 1, 1]])
    objective = Objective.build(["t_acc"], {"t_acc": 1.0}, Y)  # higher is better
    conformal = Conformal(Y, P, P[None], folds)
    sel = conformal.selection(objective)
    # ranked over all runs: run 2 (3.5, measured 3), run 4 (2.9, 2), run 1 (2.5, 2), ...; the
    # k-th entry is the mean error over the k best. (Each fold's best alone, runs 2 and 4,
    # would give -0.7 for one pick: a weaker selection than the solver's.)
    assert sel is not None and sel.picks == 1
    assert sel.targets[0] == pytest.approx(3 - 3.5)
    assert sel.target_errors[:3, 0] == pytest.approx([-0.5, -0.7, (-0.5 - 0.9 - 0.5) / 3])
    assert sel.objective == pytest.approx(sel.targets[0] / objective.scale[0])
    at = conformal.selected(objective, np.array([[3.0]]), 0.8)
    lo, _ = conformal.intervals(np.array([[3.0]]), 0.8)
    assert at.targets[0, 0] == pytest.approx(3.0 + sel.targets[0])
    assert at.targets_lo[0, 0] == pytest.approx(lo[0, 0] + sel.targets[0])
    # a list of picks: each row by its own rank among them (the second best by the top two)
    two = conformal.selected(objective, np.array([[2.0], [3.0]]), 0.8)
    assert two.targets[:, 0] == pytest.approx([2.0 - 0.7, 3.0 - 0.5])
    assert Conformal(Y, P).selection(objective) is None  # no folds, no optimism measured
