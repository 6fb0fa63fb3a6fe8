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
        self.affine_ = self._stack_linear()
        return self

    def predict(self, X: Any, return_std: bool = False) -> Any:
        check_is_fitted(self, "estimators_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        preds = self._linear_predictions(X)
        if preds is None:
            preds = np.stack([np.asarray(m.predict(X)) for m in self.estimators_])
        mean = preds.mean(axis=0)
        if return_std:
            return mean, preds.std(axis=0)
        return mean

    def _stack_linear(self) -> tuple[str, np.ndarray, np.ndarray] | None:
        """(transform, coefs (members, targets, domains), intercepts (members, targets)) when
        every member is linear on the same transform, else None."""
        from automixer.surrogates.estimators import LinearSurrogate

        members = self.estimators_
        if not all(type(m) is LinearSurrogate for m in members):
            return None
        transforms = {m.weight_transform for m in members}
        if len(transforms) != 1:
            return None
        parts = [m.affine() for m in members]
        coefs = np.stack([c for c, _ in parts])
        return transforms.pop(), coefs, np.stack([b for _, b in parts])

    def _linear_predictions(self, X: np.ndarray) -> np.ndarray | None:
        """Every member's predictions as one product when all are linear (the solver calls
        predict thousands of times: per-member calls spent most of their time in
        scikit-learn's input checks); None otherwise."""
        from automixer.surrogates.base import transform_weights

        stacked = getattr(self, "affine_", None)
        if stacked is None:
            return None
        transform, coef, intercept = stacked
        preds = np.einsum("nd,mtd->mnt", transform_weights(X, transform), coef)
        preds = preds + intercept[:, None, :]
        return preds[..., 0] if self.estimators_[0].single_target_ else preds

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def linear_ensemble(**params: Any) -> BootstrapEnsemble:
    """The registry's `ensemble`: bootstrap refits of the linear surrogate."""
    from automixer.surrogates.estimators import LinearSurrogate

    return BootstrapEnsemble(LinearSurrogate(**params))
