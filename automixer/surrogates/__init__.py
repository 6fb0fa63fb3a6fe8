"""Surrogate regressions from mixture weights to scores (scikit-learn estimators)."""

from automixer.surrogates.base import TRANSFORMS, transform_weights
from automixer.surrogates.ensemble import BootstrapEnsemble
from automixer.surrogates.estimators import LightGBMSurrogate, LinearSurrogate, LogLinearSurrogate
from automixer.surrogates.gp import GPSurrogate
from automixer.surrogates.selection import (
    AutoSurrogate,
    CVResult,
    cross_validate,
    make_surrogate,
)

__all__ = [
    "TRANSFORMS",
    "AutoSurrogate",
    "BootstrapEnsemble",
    "CVResult",
    "GPSurrogate",
    "LightGBMSurrogate",
    "LinearSurrogate",
    "LogLinearSurrogate",
    "cross_validate",
    "make_surrogate",
    "transform_weights",
]
