"""The objective: a weighted sum of targets, each put on a common scale, higher is better.

Each target is standardised by the mean and spread of its values over the trained runs, and its
sign follows its direction: lower-is-better metrics (losses, bits per byte) count negatively.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from automixer.errors import AutomixerError

_LOWER_IS_BETTER = ("loss", "bpb", "bits", "ppl", "perplexity", "nll", "error")


def lower_is_better(name: str) -> bool:
    """Direction of a metric by its name: losses and bits per byte fall as models improve."""
    low = name.lower()
    return any(key in low for key in _LOWER_IS_BETTER)


@dataclass(frozen=True)
class Objective:
    targets: list[str]
    weights: np.ndarray
    signs: np.ndarray
    """+1 where higher is better, -1 where lower is better."""
    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def build(
        cls,
        targets: Sequence[str],
        weights: Mapping[str, float],
        Y: np.ndarray,
        directions: Mapping[str, str] | None = None,
    ) -> Objective:
        """`weights` maps target names (or glob patterns over them) to weights; a pattern's
        weight is shared equally by the targets it matches."""
        names = list(targets)
        w = np.zeros(len(names))
        for key, value in weights.items():
            hits = [i for i, n in enumerate(names) if n == key] or [
                i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, key)
            ]
            if not hits:
                raise AutomixerError(
                    f"'{key}' matches no target; targets: {', '.join(names)}",
                    field=f"solve.objective.{key}",
                )
            for i in hits:
                w[i] += value / len(hits)
        if w.sum() <= 0:
            raise AutomixerError(
                "the objective gives every target weight 0", field="solve.objective"
            )
        directions = directions or {}
        signs = np.array(
            [
                -1.0 if directions.get(n, "min" if lower_is_better(n) else "max") == "min" else 1.0
                for n in names
            ]
        )
        Y = np.asarray(Y, dtype=np.float64).reshape(-1, len(names))
        scale = Y.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        return cls(names, w / w.sum(), signs, Y.mean(axis=0), scale)

    def value(self, Y: np.ndarray) -> np.ndarray:
        """Objective of predictions or measurements Y (..., n_targets); higher is better."""
        Z = (np.asarray(Y) - self.center) / self.scale
        return np.asarray((Z * self.signs * self.weights).sum(axis=-1))

    def std(self, S: np.ndarray) -> np.ndarray:
        """Standard deviation of the objective from per-target ones (taken as independent)."""
        return np.sqrt(((np.asarray(S) / self.scale * self.weights) ** 2).sum(axis=-1))

    def per_target(self, Y: np.ndarray) -> np.ndarray:
        """Each target's standardised, signed value (higher is better), for Pareto fronts."""
        return (np.asarray(Y) - self.center) / self.scale * self.signs


def resolve_keys(weights: Mapping[str, float], targets: Sequence[str]) -> dict[str, float]:
    """Objective keys as target names: an exact name, an ability ('code' ->
    'ability:code:bpb'), or a glob pattern (left for `Objective.build` to expand)."""
    out: dict[str, float] = {}
    for key, w in weights.items():
        if key not in targets and f"ability:{key}:bpb" in targets:
            out[f"ability:{key}:bpb"] = w
        else:
            out[key] = w
    return out
