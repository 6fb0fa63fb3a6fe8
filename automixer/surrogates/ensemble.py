"""Bootstrap ensemble: uncertainty for any surrogate, from refits on resampled runs."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data


class BootstrapEnsemble(RegressorMixin, BaseEstimator):
    """Fits `n_estimators` clones of `estimator` on bootstrap resamples of the runs.

    `predict` returns the members' mean; with `return_std=True` also their standard deviation,
    which measures how much the fit depends on which runs were trained (not the seed noise).
    """

    def __init__(
        self, estimator: Any = None, n_estimators: int = 20, random_state: int = 0
    ) -> None:
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> BootstrapEnsemble:
        from automixer.surrogates.estimators import LinearSurrogate

        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        base = self.estimator if self.estimator is not None else LinearSurrogate()
        rng = np.random.default_rng(self.random_state)
        n = len(X)
        self.estimators_ = []
        for _ in range(self.n_estimators):
            idx = rng.integers(0, n, n)
            self.estimators_.append(clone(base).fit(X[idx], y[idx]))
        return self

    def predict(self, X: Any, return_std: bool = False) -> Any:
        check_is_fitted(self, "estimators_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        preds = np.stack([np.asarray(m.predict(X)) for m in self.estimators_])
        mean = preds.mean(axis=0)
        if return_std:
            return mean, preds.std(axis=0)
        return mean

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def linear_ensemble(**params: Any) -> BootstrapEnsemble:
    """The registry's `ensemble`: bootstrap refits of the linear surrogate."""
    from automixer.surrogates.estimators import LinearSurrogate

    return BootstrapEnsemble(LinearSurrogate(**params))
