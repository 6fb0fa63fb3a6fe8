from __future__ import annotations

import numpy as np
import pytest

from automixer.errors import AutomixerError
from automixer.solve import Constraints, Objective, expand, freeze, pareto_front, solve_mixture
from automixer.solve.objective import metric_direction
from automixer.surrogates import GPSurrogate, LinearSurrogate, cross_validate
from automixer.surrogates.intervals import Conformal

DOMAINS = ["a", "b", "c", "d"]


def _runs(n: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(4), size=n)
    # Two losses: one falls with sqrt(a), one with sqrt(b); both like a little of c.
    Y = np.stack(
        [
            3 - np.sqrt(X[:, 0]) - 0.2 * np.sqrt(X[:, 2]),
            3 - np.sqrt(X[:, 1]) - 0.2 * np.sqrt(X[:, 2]),
        ],
        axis=1,
    )
    return X, Y


def _setup(**kw):
    X, Y = _runs()
    model = LinearSurrogate().fit(X, Y)
    obj = Objective.build(["a_loss", "b_loss"], {"a_loss": 0.5, "b_loss": 0.5}, Y)
    c = Constraints.build(DOMAINS, prior={"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}, **kw)
    return X, Y, model, obj, c


@pytest.mark.parametrize("method", ["exact", "topk", "tpe", "cmaes"])
def test_solvers_respect_bounds_and_caps(method: str):
    X, Y, model, obj, c = _setup(
        bounds={"a": (0.05, 0.3), "d": (0.1, 0.5)},
        token_counts={"a": 1e9, "b": 2e9, "c": 1e9, "d": 1e10},
        target_tokens=1e10,
        max_epochs=2,
    )
    assert c.upper[1] == pytest.approx(0.4)  # the repetition cap of b: 2 * 2e9 / 1e10
    sol = solve_mixture(
        model, obj, c, X_runs=X, Y_runs=Y, method=method, n_trials=150, n_samples=20_000
    )
    w = sol.weights
    assert abs(w.sum() - 1) < 1e-6
    assert np.all(w >= c.lower - 1e-6) and np.all(w <= c.upper + 1e-6)
    assert sol.objective > obj.value(Y).max() - 0.5  # at least as good as nearly the best run


def test_exact_finds_the_known_optimum():
    X, Y, model, obj, c = _setup()
    sol = solve_mixture(model, obj, c, X_runs=X, Y_runs=Y)

    def truth(W):
        W = np.atleast_2d(W)
        return obj.value(
            np.stack(
                [
                    3 - np.sqrt(W[:, 0]) - 0.2 * np.sqrt(W[:, 2]),
                    3 - np.sqrt(W[:, 1]) - 0.2 * np.sqrt(W[:, 2]),
                ],
                axis=1,
            )
        )

    dense = np.random.default_rng(5).dirichlet(np.ones(4) * 0.7, size=200_000)
    assert truth(sol.weights)[0] >= truth(dense).max() - 0.02
    assert sol.weights_dict()["d"] < 0.02  # d helps no target
    assert sol.best_run is not None and sol.optimism_gap is not None
    assert sol.nearest_distance is not None and sol.nearest_distance >= 0


def test_kl_penalty_pulls_toward_the_prior():
    X, _, model, obj, _ = _setup()
    prior = {"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.7}
    free = solve_mixture(model, obj, Constraints.build(DOMAINS, prior=prior), X_runs=X)
    tied = solve_mixture(
        model, obj, Constraints.build(DOMAINS, prior=prior, strength=5.0), X_runs=X
    )
    p = np.array(list(prior.values()))
    assert np.abs(tied.weights - p).sum() < np.abs(free.weights - p).sum() - 0.2
    l1 = solve_mixture(
        model, obj, Constraints.build(DOMAINS, prior=prior, penalty="l1", strength=50.0), X_runs=X
    )
    assert np.abs(l1.weights - p).sum() < 0.05


def test_infeasible_constraints_are_clear():
    with pytest.raises(AutomixerError, match=r"lower bounds sum to 1\.2"):
        Constraints.build(DOMAINS, bounds={"a": (0.6, 1), "b": (0.6, 1)})
    with pytest.raises(AutomixerError, match=r"repetition caps sum to 0\.4"):
        Constraints.build(
            DOMAINS, token_counts=dict.fromkeys(DOMAINS, 1e9), target_tokens=1e10, max_epochs=1
        )
    with pytest.raises(AutomixerError, match="unknown domain"):
        Constraints.build(DOMAINS, bounds={"e": (0, 1)})


def test_projection_is_feasible_and_idempotent():
    c = Constraints.build(DOMAINS, bounds={"a": (0.1, 0.2), "c": (0.0, 0.05)})
    rng = np.random.default_rng(1)
    V = rng.normal(size=(200, 4))
    W = c.project(V)
    assert all(c.contains(w) for w in W)
    assert np.allclose(c.project(W), W, atol=1e-9)


def test_interval_and_far_optimum_warning():
    X, _ = _runs(40)
    # Runs only near the centre; the optimum of "more a" lies outside them.
    Xc = 0.2 * X + 0.8 * np.full(4, 0.25)
    Yc = np.stack([3 - np.sqrt(Xc[:, 0]), 3 - np.sqrt(Xc[:, 0])], 1)
    model = GPSurrogate().fit(Xc, Yc)
    obj = Objective.build(["t1_loss", "t2_loss"], {"*_loss": 1.0}, Yc)
    oof = cross_validate(Xc, Yc, {"gp": GPSurrogate()}, folds=5, repeats=1).oof["gp"]
    sol = solve_mixture(
        model, obj, Constraints.build(DOMAINS), X_runs=Xc, Y_runs=Yc, intervals=Conformal(Yc, oof)
    )
    lo, hi = sol.interval()
    # without the folds there is no optimism to take out: the interval is the ordinary one
    assert sol.optimism is None and (lo + hi) / 2 == pytest.approx(sol.objective)
    assert sol.weights[0] > 0.5
    assert any("extrapolating" in w for w in sol.warnings)


def test_pareto_front_marks_the_chosen_point():
    _, _, model, obj, c = _setup()
    front = pareto_front(model, obj, c, n_trials=120)
    assert front["chosen"].sum() == 1 and front.height >= 2
    assert {"a_loss", "b_loss", "objective"} <= set(front.columns)


def test_objective_directions():
    Y = np.array([[1.0, 0.2], [2.0, 0.4]])
    obj = Objective.build(["val_loss", "acc"], {"val_loss": 1, "acc": 1}, Y)
    assert list(obj.signs) == [-1.0, 1.0]
    # Declared by the measure, never by a substring of the subject's name.
    names = ["suite:applied_physics:acc", "suite:glossary:acc", "suite:terror_qa:acc"]
    names += ["domain:lossless:bpb", "metric/the_pile_pile_cc_val_loss", "ability:code:acc_norm"]
    assert [metric_direction(n) for n in names] == ["max", "max", "max", "min", "min", "max"]
    assert metric_direction("arc_easy:rc::olmes") is None
    with pytest.raises(AutomixerError, match="not declared"):
        Objective.build(["arc_easy:rc::olmes"], {"arc_easy:rc::olmes": 1}, Y[:, :1])
    obj = Objective.build(["a:rc", "b:rc"], {"*": 1}, Y, {"a:*": "min", "b:*": "max"})
    assert list(obj.signs) == [-1.0, 1.0]
    with pytest.raises(AutomixerError, match="matches no target"):
        Objective.build(["val_loss"], {"code": 1}, Y[:, :1])


def test_freeze_and_expand_round_trip():
    rng = np.random.default_rng(0)
    inner = np.array([0.5, 0.3, 0.2])
    new = rng.dirichlet(np.ones(3), size=20) * 0.6
    mass = 1 - new.sum(1)
    X = np.hstack([new, mass[:, None] * inner])
    domains = ["n1", "n2", "n3", "o1", "o2", "o3"]
    Xc, names, inner_w = freeze(X, domains, ["o1", "o2", "o3"])
    assert names == ["n1", "n2", "n3", "existing"]
    assert np.allclose(list(inner_w.values()), inner)
    back = expand(dict(zip(names, Xc[0], strict=True)), inner_w)
    assert np.allclose([back[d] for d in domains], X[0])
    X_bad = X.copy()
    X_bad[0, 3:] = X_bad[0, 3:][::-1]
    with pytest.raises(AutomixerError, match="fixed proportions"):
        freeze(X_bad, domains, ["o1", "o2", "o3"])


def test_reverse_kl_sees_a_dropped_domain():
    # d helps no target: KL(w || natural) lets the optimum drop it, KL(natural || w) does not.
    X, _, model, obj, _ = _setup()
    prior = {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}
    forward = solve_mixture(
        model, obj, Constraints.build(DOMAINS, prior=prior, penalty="kl", strength=0.05), X_runs=X
    )
    reverse = solve_mixture(
        model,
        obj,
        Constraints.build(DOMAINS, prior=prior, penalty="reverse_kl", strength=0.05),
        X_runs=X,
    )
    assert forward.weights[3] < 1e-3
    assert reverse.weights[3] > max(0.005, 5 * forward.weights[3])


def test_natural_floor_keeps_every_unbounded_domain():
    X, _, model, obj, _ = _setup()
    prior = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
    c = Constraints.build(DOMAINS, prior=prior, natural_floor=0.5, bounds={"c": (0.0, 1.0)})
    assert c.lower.tolist() == pytest.approx([0.2, 0.15, 0.0, 0.05])
    sol = solve_mixture(model, obj, c, X_runs=X)
    assert sol.weights[3] >= 0.05 - 1e-6  # d helps nothing, but keeps half its natural share
    # A floor above a repetition cap is lowered to the cap, not an infeasible set.
    capped = Constraints.build(
        DOMAINS,
        prior=prior,
        natural_floor=0.5,
        token_counts={"a": 1e8, "b": 1e10, "c": 1e10, "d": 1e10},
        target_tokens=1e10,
        max_epochs=1,
    )
    assert capped.lower[0] == pytest.approx(0.01)


def _one_sided_runs():
    """Runs that cover half of the simplex: a target that keeps rising toward the corner the
    sweep never reached (domain a above 0.5)."""
    rng = np.random.default_rng(3)
    X = rng.dirichlet(np.ones(4), size=400)
    X = X[X[:, 0] < 0.35][:40]
    Y = np.stack([X[:, 0] + 0.05 * X[:, 1], X[:, 0] + 0.05 * X[:, 2]], 1)
    Y += np.random.default_rng(4).normal(0, 0.01, Y.shape)
    obj = Objective.build(["t1_acc", "t2_acc"], {"*_acc": 1.0}, Y)
    return X, Y, GPSurrogate().fit(X, Y), obj


def test_lower_confidence_bound_stays_where_the_runs_are():
    X, Y, model, obj = _one_sided_runs()
    c = Constraints.build(DOMAINS)
    mean = solve_mixture(model, obj, c, X_runs=X, Y_runs=Y)
    lcb = solve_mixture(model, obj, c, X_runs=X, Y_runs=Y, lcb_k=1.96)
    _, sd_mean = model.predict(mean.weights[None], return_std=True)
    assert lcb.objective_sd is not None and lcb.objective_lcb is not None
    assert lcb.objective_sd < obj.sd(sd_mean)[0]
    assert lcb.nearest_distance < mean.nearest_distance
    assert lcb.to_dict()["lcb_k"] == 1.96


def test_trust_region_bounds_the_distance_to_the_runs():
    X, Y, model, obj = _one_sided_runs()
    c = Constraints.build(DOMAINS)
    free = solve_mixture(model, obj, c, X_runs=X, Y_runs=Y)
    assert free.nearest_distance > 0.15  # the mean runs off toward the unexplored corner
    tied = solve_mixture(model, obj, c, X_runs=X, Y_runs=Y, trust_radius=0.05)
    assert tied.nearest_distance <= 0.05 + 1e-3
    auto = solve_mixture(model, obj, c, X_runs=X, Y_runs=Y, trust_radius="auto")
    assert auto.nearest_distance <= auto.trust_radius + 1e-3
    # "auto" is the runs' typical spacing: the median distance to the nearest other run,
    # computed here directly, not the most isolated run's
    pair = 0.5 * np.abs(X[:, None, :] - X[None, :, :]).sum(axis=2)
    np.fill_diagonal(pair, np.inf)
    assert auto.trust_radius == pytest.approx(float(np.median(pair.min(axis=1))))
    assert auto.trust_radius < float(pair.min(axis=1).max())


def test_the_trust_radius_excludes_most_of_the_simplex_far_from_the_runs():
    """Runs clustered in one corner: mixtures drawn across the simplex are mostly farther from
    every run than the automatic radius."""
    from automixer.solve.solvers import nearest_distance, spread_radius

    rng = np.random.default_rng(0)
    runs = rng.dirichlet([8.0, 1.0, 1.0, 1.0], 40)
    everywhere = rng.dirichlet(np.ones(4), 5000)
    inside = nearest_distance(everywhere, runs) <= spread_radius(runs)
    assert inside.mean() < 0.2


def test_held_out_reach_is_the_distance_cross_validation_measured_at():
    from automixer.solve.solvers import held_out_reach

    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    folds = np.array([[0, 0, 1, 1]])  # each pair held out together: 0.8-0.9 from the other
    assert held_out_reach(X, folds) == pytest.approx(0.9)
    folds = np.array([[0, 1, 0, 1]])  # one of each pair held out: 0.1 from its twin
    assert held_out_reach(X, folds) == pytest.approx(0.1)
