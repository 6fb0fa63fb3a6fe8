"""Gaussian-process surrogate with predictive uncertainty.

Targets are standardised. With `per_target=True` each target gets its own kernel (best when
targets differ in what drives them); with False one kernel is shared by all targets (fast for a
hundred targets); "auto" gives each its own up to 16 targets or 128 runs. The kernel is an
RBF plus white noise, anisotropic (one length scale per domain, `kernel="ard"`, the default at
every sweep size) or isotropic (`"iso"`). `noise_level` fixes the white-noise variance (on the
standardised scale), e.g. from replicate runs' seed noise; by default learned.
`predict(X, return_std=True)` gives the latent function's standard deviation (what more runs
would remove), without the white noise a new run adds.

Hyperparameters are learned by maximising the marginal likelihood on at most `max_opt_runs` runs
(all of them up to 256 by default, a random subset of 256 above that: each step costs n^3), then
every run is conditioned on (scikit-learn's GaussianProcessRegressor with the learned kernel).
Every kernel of a fit, and with `fit_folds` every kernel of every cross-validation fold, is
learned in one batched optimisation (`automixer.surrogates.gp_batch`): the same model and
likelihood as scikit-learn's, a batched Cholesky per step.
`fold_template` returns the same surrogate with the kernels learned on all runs, which the
deployed refit conditions on; cross-validation's folds learn their own from the default start
(a start learned on all runs would let the held-out runs steer each fold's optimum). Freezing
them in the folds instead (`learn=False`) is faster still but lets the held-out runs choose the
hyperparameters outright: on RegMix it made the out-of-fold residuals optimistic enough that
80% intervals covered 74% of new mixtures (BENCHMARKS.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Kernel, WhiteKernel
from sklearn.utils.validation import check_is_fitted

from automixer.surrogates import progress
from automixer.surrogates.base import Surrogate, transform_weights
from automixer.surrogates.gp_batch import Problem, learn, log_marginal_likelihood

PREDICT_CHUNK = 4096
"""Mixtures predicted in one block (the cross-covariance is block x conditioned runs)."""


def per_target_kernels(runs: int, targets: int, per_target: bool | str = "auto") -> bool:
    """Whether each target gets its own kernel: "auto" gives each its own up to 16 targets or
    128 runs. Decided once for a sweep's whole target set: the refit of the columns the GP was
    chosen for keeps the decision (a subset of 5 of 110 targets would otherwise get kernels of
    their own, a model that cross-validation never scored)."""
    if per_target == "auto":
        return targets <= 16 or runs <= 128
    return bool(per_target)


def _fixed_noise(kernel: Kernel) -> float | None:
    """The white-noise level of a kernel made by `GPSurrogate._kernel` when it is fixed."""
    white = kernel.k2
    return float(white.noise_level) if white.hyperparameter_noise_level.fixed else None


def _learn(problems: Sequence[Problem], kernel: Kernel) -> np.ndarray:
    """The problems' hyperparameters, learned together (kernels of `kernel`'s form)."""
    return learn(problems, kernel.bounds, _fixed_noise(kernel), on_round=progress.reporter())


class GPSurrogate(Surrogate):
    latent_std = True

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
        max_condition_runs: int = 2048,
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
        self.max_condition_runs = max_condition_runs
        """The most runs the posterior conditions on (a random subset, fixed by random_state,
        above it): its Cholesky factor is n x n (2048 runs: 34 MB and a second to factor;
        100,000: 80 GB)."""

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

    def _groups(self, Y: np.ndarray) -> list[list[int]]:
        """The target columns that share a kernel."""
        n, m = Y.shape
        per_target = (m <= 16 or n <= 128) if self.per_target == "auto" else bool(self.per_target)
        return [[j] for j in range(m)] if per_target else [list(range(m))]

    def _standardise(self, Y: np.ndarray) -> np.ndarray:
        self.y_mean_ = Y.mean(axis=0)
        self.y_std_ = np.where(Y.std(axis=0) > 0, Y.std(axis=0), 1.0)
        return (Y - self.y_mean_) / self.y_std_

    def _starts(self, Z: np.ndarray, Yn: np.ndarray) -> list[tuple[list[int], Kernel]]:
        if self.kernels is not None:
            return [(list(c), k) for c, k in self.kernels]
        return [(cols, self._kernel(*Z.shape)) for cols in self._groups(Yn)]

    def _problems(self, Z: np.ndarray, Yn: np.ndarray) -> list[Problem]:
        """What `_fit` learns: one problem per kernel (and per restart), on at most
        `max_opt_runs` runs (a random subset, fixed by `random_state`: each step of the
        marginal likelihood costs n^3; all runs are conditioned on afterwards)."""
        n = len(Z)
        rng = np.random.default_rng(self.random_state)
        sub = rng.choice(n, self.max_opt_runs, replace=False) if n > self.max_opt_runs else None
        out: list[Problem] = []
        for cols, kernel in self._starts(Z, Yn):
            starts = [kernel.theta]
            bounds = kernel.bounds
            starts += [rng.uniform(bounds[:, 0], bounds[:, 1]) for _ in range(self.n_restarts)]
            z, y = (Z, Yn[:, cols]) if sub is None else (Z[sub], Yn[sub][:, cols])
            out.extend(Problem(z, y, theta) for theta in starts)
        return out

    def _condition(self, Z: np.ndarray, Yn: np.ndarray, learned: list[np.ndarray]) -> None:
        """Condition on every run with the learned kernels (`learned`: theta per problem, the
        best of each kernel's restarts)."""
        self.models_ = []
        per_kernel = 1 + self.n_restarts if self.learn else 1
        for i, (cols, kernel) in enumerate(self._starts(Z, Yn)):
            thetas = learned[i * per_kernel : (i + 1) * per_kernel]
            if len(thetas) > 1:  # the best restart
                y, noise = Yn[:, cols], _fixed_noise(kernel)
                thetas = [max(thetas, key=lambda t: log_marginal_likelihood(t, Z, y, noise)[0])]
            gp = GaussianProcessRegressor(kernel.clone_with_theta(thetas[0]), optimizer=None)
            target = Yn[:, cols] if len(cols) > 1 else Yn[:, cols[0]]
            keep = self._conditioned(len(Z))
            self.models_.append((cols, gp.fit(Z[keep], target[keep])))

    def _conditioned(self, n: int) -> np.ndarray:
        """The runs the posterior conditions on: all, or a seeded subset of
        `max_condition_runs`."""
        if n <= self.max_condition_runs:
            return np.arange(n)
        rng = np.random.default_rng([self.random_state, n])
        return np.sort(rng.choice(n, self.max_condition_runs, replace=False))

    def _fit(self, Z: np.ndarray, Y: np.ndarray) -> None:
        Yn = self._standardise(Y)
        if not self.learn:
            self._condition(Z, Yn, [k.theta for _, k in self._starts(Z, Yn)])
            return
        kernel = self._starts(Z, Yn)[0][1]
        self._condition(Z, Yn, list(_learn(self._problems(Z, Yn), kernel)))

    def fit_folds(
        self, X: np.ndarray, Y: np.ndarray, trains: Sequence[np.ndarray]
    ) -> Iterator[GPSurrogate]:
        """This surrogate fitted on each training subset `X[t], Y[t]`: what
        `[clone(self).fit(X[t], Y[t]) for t in trains]` gives, with every subset's and every
        kernel's hyperparameters learned in one batched optimisation (`gp_batch.learn`).
        Yielded one by one, each conditioned when asked for: a caller that predicts with each
        and lets it go holds one posterior at a time."""
        Y2 = np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
        fits = [clone(self) for _ in trains]
        Zs = [transform_weights(np.asarray(X)[t], self.weight_transform) for t in trains]
        Yns = []
        problems: list[Problem] = []
        counts = []
        for fit, Z, t in zip(fits, Zs, trains, strict=True):
            fit.single_target_ = np.asarray(Y).ndim == 1
            fit.n_targets_ = Y2.shape[1]
            fit.n_features_in_ = X.shape[1]
            Yn = fit._standardise(Y2[t])
            Yns.append(Yn)
            mine = fit._problems(Z, Yn) if self.learn else []
            counts.append(len(mine))
            problems.extend(mine)
        kernel = self._starts(Zs[0], Yns[0])[0][1]
        learned = _learn(problems, kernel) if problems else np.zeros((0, 0))
        start = 0
        pending = deque(zip(fits, Zs, Yns, counts, strict=True))
        del fits  # each fit is the caller's alone once yielded
        while pending:
            fit, Z, Yn, k = pending.popleft()
            if self.learn:
                fit._condition(Z, Yn, list(learned[start : start + k]))
            else:
                fit._condition(Z, Yn, [kern.theta for _, kern in fit._starts(Z, Yn)])
            start += k
            yield fit
            del fit

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

    def latent_posterior(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The first target's latent function at the mixtures X: its posterior mean (m,) and
        covariance (m, m), without the white noise (scikit-learn's `return_cov` adds it on
        the diagonal: independent noise that would make draws rank the candidates at random)."""
        check_is_fitted(self, "models_")
        (cols, gp), *_ = self.models_
        Z = transform_weights(np.asarray(X, dtype=np.float64), self.weight_transform)
        mean, cov = gp.predict(Z, return_cov=True)
        j = cols.index(0)
        mean = np.asarray(mean).reshape(len(Z), -1)[:, j]
        cov = np.asarray(cov)
        cov = cov[..., j] if cov.ndim == 3 else cov
        cov = cov - float(gp.kernel_.k2.noise_level) * np.eye(len(Z))
        scale = float(self.y_std_[0])
        return mean * scale + float(self.y_mean_[0]), cov * scale**2

    def _predict(self, Z: np.ndarray, return_std: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if len(Z) > PREDICT_CHUNK:  # the cross-covariance is points x runs: in blocks
            parts = [
                self._predict(Z[i : i + PREDICT_CHUNK], return_std)
                for i in range(0, len(Z), PREDICT_CHUNK)
            ]
            mean = np.concatenate([m for m, _ in parts])
            return mean, (
                np.concatenate([s for _, s in parts if s is not None]) if return_std else None
            )
        mean = np.empty((len(Z), len(self.y_mean_)))
        std = np.empty_like(mean) if return_std else None
        for cols, gp in self.models_:
            if return_std:
                m, s = gp.predict(Z, return_std=True)
                assert std is not None
                # the latent function's sd: scikit-learn's includes the white noise at the new
                # point (what a new run adds; the prediction intervals count it, not this)
                noise = float(gp.kernel_.k2.noise_level)
                var = np.asarray(s).reshape(len(Z), -1) ** 2 - noise
                std[:, cols] = np.sqrt(np.clip(var, 0.0, None))
            else:
                m = gp.predict(Z)
            mean[:, cols] = np.asarray(m).reshape(len(Z), -1)
        mean = mean * self.y_std_ + self.y_mean_
        if std is not None:
            std = std * self.y_std_
        return mean, std
