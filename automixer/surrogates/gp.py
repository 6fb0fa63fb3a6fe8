"""Gaussian-process surrogate with predictive uncertainty.

Targets are standardised. With `per_target=True` each target gets its own kernel (best when
targets differ in what drives them); with False one kernel is shared by all targets (fast for a
hundred targets); "auto" gives each its own up to 16 targets or 128 runs. The kernel is an
RBF plus white noise, anisotropic (one length scale per domain, `kernel="ard"`, the default at
every sweep size) or isotropic (`"iso"`). `noise_level` fixes the white-noise variance (on the
standardised scale), e.g. from replicate runs' seed noise; by default learned.

Hyperparameters are learned by maximising the marginal likelihood on at most `max_opt_runs` runs
(all of them up to 256 by default, a random subset of 256 above that: each step costs n^3, and
on 512 runs per-target ARD took tens of minutes), then every run is conditioned on.
`fold_template` returns the same surrogate started from those kernels, so cross-validation's
refit on each fold learns its own hyperparameters from a start near their optimum.
Freezing them instead (`learn=False`) is faster still but lets the held-out runs choose the
hyperparameters: on RegMix it made the out-of-fold residuals optimistic enough that 80%
intervals covered 74% of new mixtures (BENCHMARKS.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.linalg import cho_solve, cholesky
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Kernel, WhiteKernel
from sklearn.utils.validation import check_is_fitted

from automixer.surrogates.base import Surrogate


class _GPR(GaussianProcessRegressor):
    """scikit-learn's GP regressor with the marginal likelihood's gradient summed over outputs
    before the trace: 0.5 tr((A A^T - m K^-1) dK) for m outputs sharing one kernel, instead of
    an (n, n, m) tensor contracted per output (the same value, m times less work: a shared ARD
    kernel over 110 targets learns in seconds instead of minutes)."""

    def log_marginal_likelihood(
        self, theta: Any = None, eval_gradient: bool = False, clone_kernel: bool = True
    ) -> Any:
        if theta is None or not eval_gradient:
            return super().log_marginal_likelihood(theta, eval_gradient, clone_kernel)
        if clone_kernel:
            kernel = self.kernel_.clone_with_theta(theta)
        else:
            kernel = self.kernel_
            kernel.theta = theta
        K, K_gradient = kernel(self.X_train_, eval_gradient=True)
        K[np.diag_indices_from(K)] += self.alpha
        try:
            L = cholesky(K, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return -np.inf, np.zeros_like(theta)
        Y = self.y_train_.reshape(len(K), -1)
        n, m = Y.shape
        A = cho_solve((L, True), Y, check_finite=False)
        value = -0.5 * float(np.sum(Y * A)) - m * (
            np.log(np.diag(L)).sum() + n / 2 * np.log(2 * np.pi)
        )
        inner = A @ A.T - m * cho_solve((L, True), np.eye(n), check_finite=False)
        # inner is symmetric, so its trace against each dK needs no transpose
        gradient = 0.5 * np.tensordot(inner, K_gradient, axes=([0, 1], [0, 1]))
        return value, gradient


class GPSurrogate(Surrogate):
    def __init__(
        self,
        weight_transform: str = "sqrt",
        kernel: str = "auto",
        per_target: bool | str = "auto",
        noise_level: float | None = None,
        n_restarts: int = 0,
        max_opt_runs: int = 256,
        random_state: int = 0,
        kernels: Sequence[tuple[Sequence[int], Kernel]] | None = None,
        learn: bool = True,
    ) -> None:
        self.weight_transform = weight_transform
        self.kernel = kernel
        self.per_target = per_target
        self.noise_level = noise_level
        self.n_restarts = n_restarts
        self.max_opt_runs = max_opt_runs
        self.random_state = random_state
        self.kernels = kernels
        """(target columns, kernel) pairs to start from instead of the default kernel."""
        self.learn = learn
        """Whether fit learns hyperparameters (from `kernels` when given) or conditions on
        `kernels` as they are."""

    def _kernel(self, n: int, d: int) -> Kernel:
        kind = self.kernel
        if kind == "auto":
            kind = "ard"
        if kind not in ("ard", "iso"):
            raise ValueError(f"unknown kernel '{self.kernel}' (ard, iso or auto)")
        length = np.ones(d) if kind == "ard" else 1.0
        noise = (
            WhiteKernel(self.noise_level, noise_level_bounds="fixed")
            if self.noise_level is not None
            else WhiteKernel(0.01, (1e-6, 1.0))
        )
        return ConstantKernel(1.0, (1e-3, 1e3)) * RBF(length, (1e-2, 1e3)) + noise

    def _fit(self, Z: np.ndarray, Y: np.ndarray) -> None:
        self.y_mean_ = Y.mean(axis=0)
        self.y_std_ = np.where(Y.std(axis=0) > 0, Y.std(axis=0), 1.0)
        Yn = (Y - self.y_mean_) / self.y_std_
        per_target = (
            (Y.shape[1] <= 16 or len(Z) <= 128)
            if self.per_target == "auto"
            else bool(self.per_target)
        )
        groups = [[j] for j in range(Y.shape[1])] if per_target else [list(range(Y.shape[1]))]
        self.models_ = []
        n = len(Z)
        if self.kernels is not None and not self.learn:
            for cols, kernel in self.kernels:
                target = Yn[:, list(cols)] if len(cols) > 1 else Yn[:, cols[0]]
                gp = _GPR(kernel, optimizer=None, normalize_y=False)
                self.models_.append((list(cols), gp.fit(Z, target)))
            return
        starts = (
            [(list(c), k) for c, k in self.kernels]
            if self.kernels is not None
            else [(cols, None) for cols in groups]
        )
        # On large sweeps the kernel's hyperparameters are learned on a random subset of runs
        # (the marginal likelihood's cost grows as n^3 per step), then all runs are conditioned on.
        sub = (
            np.random.default_rng(self.random_state).choice(n, self.max_opt_runs, replace=False)
            if n > self.max_opt_runs
            else np.arange(n)
        )
        for cols, start in starts:
            target = Yn[:, cols] if len(cols) > 1 else Yn[:, cols[0]]
            gp = _GPR(
                start if start is not None else self._kernel(*Z.shape),
                normalize_y=False,
                n_restarts_optimizer=self.n_restarts,
                random_state=self.random_state,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gp.fit(Z[sub], target[sub])
                if len(sub) < n:
                    gp = _GPR(gp.kernel_, optimizer=None, normalize_y=False).fit(Z, target)
            self.models_.append((cols, gp))

    def fold_template(self, X: np.ndarray, Y: np.ndarray) -> GPSurrogate:
        """What CV refits on each fold: this surrogate fitted on all of X, Y, its kernels as the
        fold's starting point (or frozen, with `learn=False`). Its `frozen()` is the model
        fitted on all runs again without learning anything."""
        full = clone(self).set_params(kernels=None, learn=True).fit(X, Y)
        return full.frozen(learn=self.learn)

    def frozen(self, columns: Sequence[int] | None = None, learn: bool = False) -> GPSurrogate:
        """An unfitted copy that starts from this surrogate's kernels (the given ones, or else
        the ones its fit learned), conditions on them as they are (`learn=False`) or learns from
        them, for target `columns` (all by default, renumbered in the order given)."""
        if self.kernels is not None:
            learned = [(list(c), k) for c, k in self.kernels]
        else:
            check_is_fitted(self, "models_")
            learned = [(c, gp.kernel_) for c, gp in self.models_]
        n_targets = 1 + max(j for c, _ in learned for j in c)
        cols = list(range(n_targets)) if columns is None else list(columns)
        pairs = []
        for group, kernel in learned:
            mine = [cols.index(j) for j in group if j in cols]
            if mine:
                pairs.append((mine, kernel))
        return clone(self).set_params(kernels=pairs, learn=learn)

    def _predict(self, Z: np.ndarray, return_std: bool) -> tuple[np.ndarray, np.ndarray | None]:
        mean = np.empty((len(Z), len(self.y_mean_)))
        std = np.empty_like(mean) if return_std else None
        for cols, gp in self.models_:
            if return_std:
                m, s = gp.predict(Z, return_std=True)
                assert std is not None
                std[:, cols] = np.asarray(s).reshape(len(Z), -1)
            else:
                m = gp.predict(Z)
            mean[:, cols] = np.asarray(m).reshape(len(Z), -1)
        mean = mean * self.y_std_ + self.y_mean_
        if std is not None:
            std = std * self.y_std_
        return mean, std
