"""Point surrogates: linear (RegMix's linear baseline, ridge-regularised), LightGBM with RegMix's
settings, and the log-linear / exponential mixing law (Ye et al.; Olmix's default)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import least_squares
from sklearn.linear_model import Ridge, RidgeCV

from automixer.surrogates.base import Surrogate


class LinearSurrogate(Surrogate):
    """Ridge regression on (transformed) weights, each target's penalty chosen by generalized
    (leave-one-out) CV on its own, over one row per distinct mixture (replicates averaged: a
    left-out run whose seed replicates stay in would make a small penalty look good).

    `predict(X, return_std=True)` gives the latent sd of Bayesian ridge with that penalty
    (coefficients ~ N(0, s^2 / alpha), noise s^2 from the residuals over n - dof - 1 degrees of
    freedom; the intercept's uncertainty s^2 / n): analytic and full-rank, in every direction
    of the weights."""

    latent_std = True

    def __init__(
        self, weight_transform: str = "sqrt", alphas: tuple[float, ...] | None = None
    ) -> None:
        self.weight_transform = weight_transform
        self.alphas = alphas

    def _fit(self, Z: np.ndarray, Y: np.ndarray) -> None:
        alphas = self.alphas if self.alphas is not None else tuple(np.logspace(-6, 3, 19))
        _, first, inverse = np.unique(
            np.round(Z, 12), axis=0, return_index=True, return_inverse=True
        )
        inverse = inverse.reshape(-1)
        if len(first) < len(Z):  # replicates: choose the penalty on the mixtures' means
            means = np.stack([Y[inverse == g].mean(axis=0) for g in range(len(first))])
            chooser = RidgeCV(alphas=alphas, alpha_per_target=True).fit(Z[first], means)
            alpha = np.asarray(chooser.alpha_, dtype=np.float64).reshape(-1)
            self.model_ = Ridge(alpha=alpha if len(alpha) > 1 else float(alpha[0])).fit(Z, Y)
        else:
            self.model_ = RidgeCV(alphas=alphas, alpha_per_target=True).fit(Z, Y)
            alpha = np.asarray(self.model_.alpha_, dtype=np.float64).reshape(-1)
        self._posterior(Z, Y, np.broadcast_to(alpha, (Y.shape[1],)).copy())

    def _posterior(self, Z: np.ndarray, Y: np.ndarray, alpha: np.ndarray) -> None:
        """What the latent sd needs: the centred design's eigenbasis, each target's penalty and
        residual variance."""
        self.z_mean_ = Z.mean(axis=0)
        Zc = Z - self.z_mean_
        evals, self.basis_ = np.linalg.eigh(Zc.T @ Zc)
        self.evals_ = np.clip(evals, 0.0, None)
        self.alpha_ = alpha
        n = len(Z)
        dof = (self.evals_[None, :] / (self.evals_[None, :] + alpha[:, None])).sum(axis=1)
        resid = Y - np.asarray(self.model_.predict(Z)).reshape(n, -1)
        self.noise_var_ = (resid**2).sum(axis=0) / np.maximum(n - dof - 1, 1.0)
        self.n_runs_ = n

    def _predict(self, Z: np.ndarray, return_std: bool) -> tuple[np.ndarray, np.ndarray | None]:
        mean = np.asarray(self.model_.predict(Z)).reshape(len(Z), -1)
        if not return_std:
            return mean, None
        U = (Z - self.z_mean_) @ self.basis_  # (m, d) in the eigenbasis
        quad = (U**2)[:, None, :] / (self.evals_[None, None, :] + self.alpha_[None, :, None])
        var = self.noise_var_[None, :] * (quad.sum(axis=2) + 1.0 / self.n_runs_)
        return mean, np.sqrt(var)

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(coef (targets, domains), intercept (targets,)): predictions are
        transform(X) @ coef.T + intercept."""
        coef = np.asarray(self.model_.coef_, dtype=np.float64).reshape(self.n_targets_, -1)
        return coef, np.asarray(self.model_.intercept_, dtype=np.float64).reshape(-1)


class LightGBMSurrogate(Surrogate):
    """One LightGBM regressor per target with RegMix's settings (gbdt, 1000 rounds, lr 0.01)."""

    def __init__(
        self,
        weight_transform: str = "none",
        n_estimators: int = 1000,
        learning_rate: float = 0.01,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        random_state: int = 42,
    ) -> None:
        self.weight_transform = weight_transform
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state

    def _fit(self, Z: np.ndarray, Y: np.ndarray) -> None:
        import lightgbm as lgb

        self.models_ = []
        for j in range(Y.shape[1]):
            m = lgb.LGBMRegressor(
                objective="regression",
                boosting_type="gbdt",
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=self.min_child_samples,
                random_state=self.random_state,
                verbosity=-1,
                n_jobs=1,
                deterministic=True,
                force_col_wise=True,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                m.fit(Z, Y[:, j])
            self.models_.append(m)

    def _predict(self, Z: np.ndarray, return_std: bool) -> tuple[np.ndarray, None]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cols = [np.asarray(m.predict(Z)) for m in self.models_]
        return np.stack(cols, axis=1), None


class LogLinearSurrogate(Surrogate):
    """The exponential mixing law per target: y = a + s * exp(b + t . z), fitted with a Huber loss.

    s is +1 for targets that fall as the weights' effect grows (losses, bits per byte) and -1 for
    ones that rise; it is chosen per target by the better fit.
    """

    def __init__(
        self, weight_transform: str = "none", huber_delta: float = 1.0, l2: float = 1e-4
    ) -> None:
        self.weight_transform = weight_transform
        self.huber_delta = huber_delta
        self.l2 = l2

    def _fit_one(self, Z: np.ndarray, y: np.ndarray, sign: float) -> tuple[np.ndarray, float]:
        n = len(Z)
        scale = float(np.std(y)) or 1.0
        yn = (y - np.mean(y)) / scale
        # Start from a log-linear fit of the gap above (or below) the extreme value.
        a0 = (np.min(yn) - 0.5) if sign > 0 else (np.max(yn) + 0.5)
        gap = np.maximum(sign * (yn - a0), 1e-3)
        A = np.hstack([np.ones((n, 1)), Z])
        coef, *_ = np.linalg.lstsq(A, np.log(gap), rcond=None)
        p0 = np.concatenate([[a0], coef])

        def resid(p: np.ndarray) -> np.ndarray:
            pred = p[0] + sign * np.exp(np.clip(p[1] + Z @ p[2:], -50, 50))
            return np.concatenate([pred - yn, np.sqrt(self.l2) * p[2:]])

        res = least_squares(resid, p0, loss="huber", f_scale=self.huber_delta, max_nfev=2000)
        p = res.x
        p_out = p.copy()
        return p_out, float(res.cost)

    def _fit(self, Z: np.ndarray, Y: np.ndarray) -> None:
        self.params_ = []
        for j in range(Y.shape[1]):
            y = Y[:, j]
            fits = [(*self._fit_one(Z, y, s), s) for s in (1.0, -1.0)]
            p, _cost, s = min(fits, key=lambda f: f[1])
            self.params_.append((p, s, float(np.mean(y)), float(np.std(y)) or 1.0))

    def _predict(self, Z: np.ndarray, return_std: bool) -> tuple[np.ndarray, None]:
        cols = []
        for p, s, mu, sd in self.params_:
            yn = p[0] + s * np.exp(np.clip(p[1] + Z @ p[2:], -50, 50))
            cols.append(yn * sd + mu)
        return np.stack(cols, axis=1), None
