from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from automixer.surrogates import (
    AutoSurrogate,
    BootstrapEnsemble,
    GPSurrogate,
    LightGBMSurrogate,
    LinearSurrogate,
    LogLinearSurrogate,
    cross_validate,
    make_surrogate,
)
from automixer.surrogates.selection import grouped_folds, mixture_groups


@parametrize_with_checks(
    [
        LinearSurrogate(weight_transform="none"),
        LinearSurrogate(weight_transform="sqrt"),
        LightGBMSurrogate(n_estimators=100, learning_rate=0.1, min_child_samples=5),
        GPSurrogate(weight_transform="none", kernel="iso"),
        BootstrapEnsemble(LinearSurrogate(weight_transform="none"), n_estimators=3),
    ],
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _toy(n: int = 60, d: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(d), size=n)
    # A loss-like target that falls with the square root of domain 0's share, and a second one.
    Y = np.stack([3.0 - 1.5 * np.sqrt(X[:, 0]) + 0.3 * X[:, 1], 2.0 + np.exp(-4 * X[:, 2])], axis=1)
    return X, Y + rng.normal(0, 0.01, Y.shape)


@pytest.mark.parametrize("name", ["linear", "loglinear", "gp", "lightgbm", "ensemble"])
def test_each_surrogate_learns_the_signal(name: str):
    X, Y = _toy(80)
    Xt, Yt = _toy(40, seed=1)
    model = make_surrogate(name).fit(X, Y)
    P = model.predict(Xt)
    assert P.shape == Yt.shape
    for j in range(2):
        assert np.corrcoef(P[:, j], Yt[:, j])[0, 1] > 0.8


def test_loglinear_recovers_a_mixing_law():
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), size=50)
    y = 1.0 + np.exp(0.5 - 2.0 * X[:, 0] + 1.0 * X[:, 1])
    model = LogLinearSurrogate().fit(X, y)
    Xt = rng.dirichlet(np.ones(3), size=20)
    yt = 1.0 + np.exp(0.5 - 2.0 * Xt[:, 0] + 1.0 * Xt[:, 1])
    assert np.max(np.abs(model.predict(Xt) - yt)) < 0.02


def test_gp_ridge_and_ensemble_give_uncertainty():
    X, Y = _toy(40)
    far = np.array([[0.97, 0.01, 0.01, 0.01]])
    near = X[:1]
    models = [GPSurrogate(), LinearSurrogate(), BootstrapEnsemble(LinearSurrogate(), 8)]
    for model in models:
        model.fit(X, Y[:, 0])
        _, s_near = model.predict(near, return_std=True)
        _, s_far = model.predict(far, return_std=True)
        assert s_near.shape == (1,) and np.all(s_near >= 0)
        if not isinstance(model, BootstrapEnsemble):  # farther from every run, less certain
            assert s_far[0] > s_near[0]
    with pytest.raises(ValueError, match="no predictive uncertainty"):
        LogLinearSurrogate().fit(X, Y).predict(X, return_std=True)


def test_the_gp_sd_is_the_latent_function_s_without_its_noise():
    X, Y = _toy(40)
    gp = GPSurrogate().fit(X, Y[:, 0])
    (_, inner), *_ = gp.models_
    noise = inner.kernel_.k2.noise_level
    _, total = inner.predict(np.sqrt(X[:5]), return_std=True)
    _, latent = gp.predict(X[:5], return_std=True)
    np.testing.assert_allclose(latent**2, (total**2 - noise) * gp.y_std_[0] ** 2, rtol=1e-6)
    mean, cov = gp.latent_posterior(X[:5])
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), latent, rtol=1e-6)
    np.testing.assert_allclose(mean, gp.predict(X[:5]), rtol=1e-9)


def test_ridge_latent_sd_is_bayesian_linear_regression_as_a_linear_kernel_gp_gives_it():
    """Ridge with penalty alpha and noise s^2 is a GP with kernel (s^2 / alpha) z.z' plus a
    flat intercept: scikit-learn's GP on that kernel must give the same latent sd, in every
    direction, with more domains than runs (where a 10-member bootstrap has rank 9)."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, DotProduct, WhiteKernel

    rng = np.random.default_rng(5)
    X = rng.dirichlet(np.ones(20), 12)
    y = np.sqrt(X) @ rng.normal(size=20) + rng.normal(0, 0.05, 12)
    ridge = LinearSurrogate().fit(X, y)
    s2, alpha = float(ridge.noise_var_[0]), float(ridge.alpha_[0])
    kernel = (
        ConstantKernel(1e6, "fixed")
        + ConstantKernel(s2 / alpha, "fixed") * DotProduct(0.0, "fixed")
        + WhiteKernel(s2, "fixed")
    )
    gp = GaussianProcessRegressor(kernel, optimizer=None).fit(np.sqrt(X), y)
    Xn = rng.dirichlet(np.ones(20), 50)
    mean, sd = ridge.predict(Xn, return_std=True)
    gp_mean, gp_sd = gp.predict(np.sqrt(Xn), return_std=True)
    np.testing.assert_allclose(sd, np.sqrt(gp_sd**2 - s2), rtol=1e-3)
    np.testing.assert_allclose(mean, gp_mean, atol=1e-4)  # the 1e6 intercept prior costs digits
    assert sd.min() > 0


def test_cross_validation_table_and_auto_choice():
    X, Y = _toy(60)
    cv = cross_validate(
        X,
        Y,
        {"linear": LinearSurrogate(), "gp": GPSurrogate()},
        targets=["a", "b"],
        folds=5,
        repeats=2,
    )
    assert cv.table.height == 6  # two candidates and the choice, per target
    assert set(cv.table.columns) >= {"target", "model", "spearman", "spearman_sd", "rmse"}
    assert cv.oof["gp"].shape == Y.shape
    assert set(cv.best()) == {"a", "b"}
    auto = AutoSurrogate(candidates=("linear", "gp"), folds=4, repeats=1).fit(X, Y)
    assert len(auto.choice_) == 2
    mean, std = auto.predict(X[:5], return_std=True)
    assert mean.shape == std.shape == (5, 2)


def test_cv_refuses_too_few_runs():
    X, Y = _toy(3)
    with pytest.raises(ValueError, match="too few"):
        cross_validate(X, Y, {"linear": LinearSurrogate()}, folds=5)


def test_unknown_surrogate():
    with pytest.raises(ValueError, match="unknown surrogate"):
        make_surrogate("forest")


def test_replicates_never_straddle_folds():
    """Twenty mixtures, each trained three times with nearly the same result: with plain
    K-fold a replicate's twin sits in the training fold and a GP looks clairvoyant on pure
    noise; grouped folds keep them together and the noise stays noise."""
    rng = np.random.default_rng(0)
    mixtures = rng.dirichlet(np.ones(4), size=20)
    X = np.repeat(mixtures, 3, axis=0)
    y = np.repeat(rng.normal(size=20), 3) + rng.normal(0, 0.01, 60)
    folds = grouped_folds(mixture_groups(X), 5, seed=0)
    for g in range(20):
        assert len(set(folds[3 * g : 3 * g + 3])) == 1
    cv = cross_validate(X, y, {"gp": GPSurrogate()}, folds=5, repeats=1)
    assert cv.table["spearman"][0] < 0.5


def test_linear_penalty_is_chosen_per_target():
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(4), size=40)
    clean = np.sqrt(X) @ np.array([1.0, -1.0, 0.5, 0.0])
    Y = np.column_stack([clean, clean + rng.normal(0, 1.0, 40)])  # one exact, one mostly noise
    alphas = LinearSurrogate().fit(X, Y).model_.alpha_
    assert np.ndim(alphas) == 1 and alphas[0] < alphas[1]


def test_the_choice_is_scored_on_its_own_folds():
    """On pure noise the best of several candidates on the same folds looks predictive; the
    choice scored on its own out-of-fold predictions does not."""
    rng = np.random.default_rng(1)
    X = rng.dirichlet(np.ones(3), size=30)
    Y = rng.normal(size=(30, 24))
    models = {
        "linear": LinearSurrogate(),
        "gp": GPSurrogate(),
        "ensemble": make_surrogate("ensemble"),
    }
    cv = cross_validate(X, Y, models, folds=5, repeats=1)
    best = cv.table.filter(pl.col("model") != "auto").group_by("target").agg(pl.max("spearman"))
    auto = cv.table.filter(pl.col("model") == "auto")
    assert auto["spearman"].mean() < best["spearman"].mean() - 0.02


@pytest.mark.parametrize("kind", ["ard", "iso", "fixed-noise"])
def test_batched_marginal_likelihood_and_gradient_match_scikit_learn(kind: str):
    from sklearn.gaussian_process import GaussianProcessRegressor

    from automixer.surrogates.gp import _fixed_noise
    from automixer.surrogates.gp_batch import log_marginal_likelihood

    rng = np.random.default_rng(0)
    X, Y = rng.random((30, 4)), rng.normal(size=(30, 3))
    gp = GPSurrogate(kernel="iso" if kind == "iso" else "ard")
    if kind == "fixed-noise":
        gp.set_params(noise_level=0.05)
    kernel = gp._kernel(30, 4)
    theirs = GaussianProcessRegressor(kernel, optimizer=None).fit(X, Y)
    for shift in (-0.5, 0.0, 0.7):
        theta = kernel.theta + shift * rng.random(len(kernel.theta))
        for y in (Y, Y[:, 1]):  # three targets sharing the kernel, and one
            v1, g1 = log_marginal_likelihood(theta, X, y, _fixed_noise(kernel))
            theirs.fit(X, y)
            v2, g2 = theirs.log_marginal_likelihood(theta, eval_gradient=True)
            assert v1 == pytest.approx(v2, rel=1e-10)
            np.testing.assert_allclose(g1, g2, rtol=1e-8, atol=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_batched_learning_finds_scikit_learn_s_optimum_and_padding_changes_nothing():
    from sklearn.gaussian_process import GaussianProcessRegressor

    from automixer.surrogates.gp_batch import Problem, learn, log_marginal_likelihood

    rng = np.random.default_rng(2)
    problems = []
    for n in (25, 40, 33):  # different sizes: the batch pads them to 40
        Z = np.sqrt(rng.dirichlet(np.ones(4), n))
        y = np.sin(3 * Z[:, :1]) + 0.05 * rng.normal(size=(n, 1))
        problems.append(Problem(Z, (y - y.mean()) / y.std(), GPSurrogate()._kernel(n, 4).theta))
    kernel = GPSurrogate()._kernel(40, 4)
    together = learn(problems, kernel.bounds)
    for p, theta in zip(problems, together, strict=True):
        alone = learn([p], kernel.bounds)[0]
        np.testing.assert_allclose(theta, alone, atol=1e-6)
        sk = GaussianProcessRegressor(kernel).fit(p.Z, p.Y[:, 0])  # scikit-learn's optimiser
        ours = log_marginal_likelihood(theta, p.Z, p.Y)[0]
        assert ours >= sk.log_marginal_likelihood_value_ - 1e-4
        refit = GaussianProcessRegressor(kernel.clone_with_theta(theta), optimizer=None)
        np.testing.assert_allclose(
            refit.fit(p.Z, p.Y[:, 0]).predict(p.Z[:5]), sk.predict(p.Z[:5]), atol=1e-3
        )


def test_gp_folds_fitted_together_equal_folds_fitted_one_by_one():
    from automixer.surrogates.selection import fold_template

    rng = np.random.default_rng(3)
    X = rng.dirichlet(np.ones(5), size=50)
    Y = np.sqrt(X[:, :2]) + rng.normal(0, 0.02, (50, 2))
    template = fold_template(GPSurrogate(), X, Y)
    trains = [np.arange(50)[i::3] for i in range(3)] + [np.arange(10, 50)]
    together = template.fit_folds(X, Y, trains)
    for t, fit in zip(trains, together, strict=True):
        alone = clone(template).fit(X[t], Y[t])
        np.testing.assert_allclose(fit.predict(X), alone.predict(X), rtol=1e-5, atol=1e-6)
        _, s1 = fit.predict(X[:4], return_std=True)
        _, s2 = alone.predict(X[:4], return_std=True)
        np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-6)


def test_gp_folds_learn_from_the_all_runs_kernels():
    from automixer.surrogates.selection import fold_template

    rng = np.random.default_rng(1)
    X = rng.dirichlet(np.ones(5), size=60)
    Y = np.sqrt(X[:, :2]) + rng.normal(0, 0.02, (60, 2))
    template = fold_template(GPSurrogate(), X, Y)
    full = GPSurrogate().fit(X, Y)
    assert template.learn and len(template.kernels) == 2
    for (_, k), (_, gp) in zip(template.kernels, full.models_, strict=True):
        assert np.allclose(k.theta, gp.kernel_.theta)
    # A fold learns its own hyperparameters (the held-out runs do not choose them) ...
    fold = clone(template).fit(X[:45], Y[:45])
    assert not np.allclose(fold.models_[0][1].kernel_.theta, template.kernels[0][1].theta)
    # ... and the deployed model conditions on the all-runs kernels without learning again.
    deployed = template.frozen([1])
    assert not deployed.learn
    refit = deployed.fit(X, Y[:, 1])
    assert np.allclose(refit.models_[0][1].kernel_.theta, full.models_[1][1].kernel_.theta)
    assert np.allclose(refit.predict(X[:5]), full.predict(X[:5])[:, 1])


def test_gp_fold_fits_never_see_their_held_out_runs():
    """Each fold's predictions of its held-out runs depend on its training runs alone: changing
    the held-out runs' measurements changes nothing (before, every fold's hyperparameters
    started from ones learned on all runs, held-out runs included)."""
    rng = np.random.default_rng(5)
    X = rng.dirichlet(np.ones(4), size=40)
    Y = np.sqrt(X[:, :1]) + rng.normal(0, 0.03, (40, 1))
    cv = cross_validate(X, Y, {"gp": GPSurrogate()}, folds=4, repeats=1, seed=0)
    held_out = cv.folds[0] == 0
    changed = Y.copy()
    changed[held_out] = rng.normal(3.0, 2.0, (int(held_out.sum()), 1))
    again = cross_validate(X, changed, {"gp": GPSurrogate()}, folds=4, repeats=1, seed=0)
    np.testing.assert_array_equal(again.folds, cv.folds)
    np.testing.assert_allclose(
        again.oof_runs["gp"][0][held_out], cv.oof_runs["gp"][0][held_out], rtol=1e-6, atol=1e-9
    )


def test_a_linear_ensemble_predicts_what_its_members_predict():
    """The stacked shortcut against each member's own (scikit-learn) predict, before and
    after a refit."""
    from automixer.surrogates.ensemble import linear_ensemble

    rng = np.random.default_rng(0)
    X, Xn = rng.dirichlet(np.ones(5), 40), rng.dirichlet(np.ones(5), 7)
    ens = linear_ensemble()
    for Y in (rng.normal(size=(40, 3)), rng.normal(size=40)):
        ens.fit(X, Y)
        mean, sd = ens.predict(Xn, return_std=True)
        members = np.stack([np.asarray(m.model_.predict(np.sqrt(Xn))) for m in ens.estimators_])
        np.testing.assert_allclose(mean, members.mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(sd, members.std(axis=0), atol=1e-12)
        assert mean.shape == (7, *Y.shape[1:])


def test_the_refit_keeps_the_kernel_sharing_cross_validation_scored():
    """20 targets on 200 runs share one GP kernel in cross-validation; refitting the GP for
    the 3 columns it was chosen for must share one too, not learn 3 kernels CV never scored."""
    from automixer.surrogates import AutoSurrogate

    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 200)
    Y = np.sqrt(X) @ rng.normal(size=(3, 20)) + rng.normal(0, 0.01, (200, 20))
    choice = ["gp"] * 3 + ["linear"] * 17
    auto = AutoSurrogate(choice=choice).fit(X, Y)
    gp = next(point for cols, point, _ in auto.models_ if cols == [0, 1, 2])
    assert [cols for cols, _ in gp.models_] == [[0, 1, 2]]
