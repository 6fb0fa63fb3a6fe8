"""Mixture weights over domains: the one check every weight table goes through."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

#: How far a weight table may sum away from 1 (rounding in hand-written YAML and CSVs).
SUM_TOLERANCE = 1e-4


class WeightIssue(ValueError):
    """A bad weight table; `key` names the offending domain when there is one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def check_weights(
    weights: Mapping[str, float], domains: Sequence[str], *, tolerance: float = SUM_TOLERANCE
) -> dict[str, float]:
    """Validate a weight table against the known domains and return it with every domain present.

    Unknown domains, negative or non-finite weights and sums away from 1 by more than `tolerance`
    raise `WeightIssue`. Missing domains get weight 0. The result is renormalised so that it sums
    to 1 exactly (the tolerance only absorbs rounding).
    """
    known = set(domains)
    for name, value in weights.items():
        if name not in known:
            from difflib import get_close_matches

            near = get_close_matches(str(name), list(domains), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise WeightIssue(
                f"unknown domain '{name}'{hint}; known: {', '.join(domains)}", key=str(name)
            )
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise WeightIssue(f"weight must be a number, got {value!r}", key=name)
        if math.isnan(value) or math.isinf(value):
            raise WeightIssue(f"weight must be finite, got {value}", key=name)
        if value < 0:
            raise WeightIssue(f"weight must be >= 0, got {value}", key=name)
    total = float(sum(weights.values()))
    if abs(total - 1.0) > tolerance:
        raise WeightIssue(f"weights sum to {total:.6g}, off from 1 by {total - 1.0:+.6g}")
    return {d: float(weights.get(d, 0.0)) / total for d in domains}
