"""What every surrogate shares: the weight transform and the multi-target bookkeeping.

Surrogates are scikit-learn regressors from mixture weights X (n_runs, n_domains) to one or more
targets y (n_runs,) or (n_runs, n_targets). `predict(X, return_std=True)` also returns a
standard deviation where the model has one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

TRANSFORMS = ("none", "sqrt", "log")
LOG_FLOOR = 1e-3


def transform_weights(X: np.ndarray, transform: str, floor: float = LOG_FLOOR) -> np.ndarray:
    """Square root or log (with a floor) of mixture weights; negative inputs are clipped to 0."""
    if transform == "none":
        return X
    if transform == "sqrt":
        return np.sqrt(np.clip(X, 0.0, None))
    if transform == "log":
        return np.log(np.clip(X, floor, None))
    raise ValueError(f"unknown transform '{transform}'; choose from {', '.join(TRANSFORMS)}")


class Surrogate(RegressorMixin, BaseEstimator):
    """Base of automixer's surrogates: subclasses implement `_fit(Z, Y)` and `_predict(Z)`
    on transformed weights Z and 2-D targets Y."""

    weight_transform: str
    latent_std = False
    """Whether `predict(X, return_std=True)` gives the latent function's own sd (the GP's
    posterior, ridge's analytic one); others need a bootstrap ensemble beside them."""

    def fit(self, X: Any, y: Any) -> Surrogate:
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        Y = np.asarray(y, dtype=np.float64)
        self.single_target_ = Y.ndim == 1
        Y2 = Y.reshape(len(Y), -1)
        self.n_targets_ = Y2.shape[1]
        self._fit(transform_weights(X, self.weight_transform), Y2)
        return self

    def predict(self, X: Any, return_std: bool = False) -> Any:
        check_is_fitted(self, "n_targets_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        mean, std = self._predict(transform_weights(X, self.weight_transform), return_std)
        if self.single_target_:
            mean = mean[:, 0]
            std = std[:, 0] if std is not None else None
        if return_std:
            if std is None:
                raise ValueError(
                    f"{type(self).__name__} has no predictive uncertainty; wrap it "
                    "in BootstrapEnsemble"
                )
            return mean, std
        return mean

    def _fit(self, Z: np.ndarray, Y: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict(self, Z: np.ndarray, return_std: bool) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError  # pragma: no cover - abstract

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
