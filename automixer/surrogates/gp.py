"""Gaussian-process surrogate with predictive uncertainty.

Targets are standardised. With `per_target=True` each target gets its own kernel (best when
targets differ in what drives them); with False one kernel is shared by all targets (fast for a
hundred targets); "auto" gives each its own up to 16 targets or 128 runs. The kernel is an
RBF plus white noise: anisotropic (one length scale per domain, `kernel="ard"`) on small sweeps,
isotropic (`"iso"`, much faster) on large ones, or as chosen. `noise_level` fixes the white-noise
variance (on the standardised scale), e.g. from replicate runs' seed noise; by default learned.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Kernel, WhiteKernel

from automixer.surrogates.base import Surrogate


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
    ) -> None:
        self.weight_transform = weight_transform
        self.kernel = kernel
        self.per_target = per_target
        self.noise_level = noise_level
        self.n_restarts = n_restarts
        self.max_opt_runs = max_opt_runs
        self.random_state = random_state

    def _kernel(self, n: int, d: int) -> Kernel:
        kind = self.kernel
        if kind == "auto":  # ARD pays off on small sweeps; on large ones it costs minutes
            kind = "ard" if n * d <= 256 * 32 else "iso"
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
        # On large sweeps the kernel's hyperparameters are learned on a random subset of runs
        # (the marginal likelihood's cost grows as n^3 per step), then all runs are conditioned on.
        sub = (
            np.random.default_rng(self.random_state).choice(n, self.max_opt_runs, replace=False)
            if n > self.max_opt_runs
            else np.arange(n)
        )
        for cols in groups:
            target = Yn[:, cols] if len(cols) > 1 else Yn[:, cols[0]]
            gp = GaussianProcessRegressor(
                self._kernel(*Z.shape),
                normalize_y=False,
                n_restarts_optimizer=self.n_restarts,
                random_state=self.random_state,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gp.fit(Z[sub], target[sub])
                if len(sub) < n:
                    gp = GaussianProcessRegressor(
                        gp.kernel_, optimizer=None, normalize_y=False
                    ).fit(Z, target)
            self.models_.append((cols, gp))

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
