"""The objective: a weighted sum of targets, each put on a common scale, higher is better.

Each target is standardised by the mean and spread of its values over the trained runs, and its
sign follows its direction: lower-is-better metrics (losses, bits per byte) count negatively.

A direction is declared, never guessed from a substring: automixer's own metrics end in their
measure (`suite:<s>:acc`, `domain:<d>:bpb`), other names are read by their last word
(`..._val_loss`), and anything else must be given (`automixer replay --direction T=min`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from automixer.errors import AutomixerError

MEASURES: dict[str, str] = {
    "bpb": "min",
    "bits_per_byte": "min",
    "loss": "min",
    "nll": "min",
    "ppl": "min",
    "perplexity": "min",
    "error": "min",
    "acc": "max",
    "acc_norm": "max",
    "accuracy": "max",
    "f1": "max",
    "em": "max",
    "exact_match": "max",
    "pass@1": "max",
}
"""Measures and their directions: 'min' where lower is better."""


def metric_direction(name: str) -> str | None:
    """'min' or 'max' by the metric's measure (its last ':'-field, or its name's last one or
    two '_'-words after the last '/'), or None when the name declares none."""
    own = ("suite", "ability", "domain", "objective")
    if name.count(":") >= 2 and name.split(":", 1)[0] in own:
        return MEASURES.get(name.rsplit(":", 1)[1])
    words = name.rsplit("/", 1)[-1].lower().split("_")
    for k in (2, 1):
        if len(words) >= k and "_".join(words[-k:]) in MEASURES:
            return MEASURES["_".join(words[-k:])]
    return None


def lower_is_better(name: str) -> bool:
    """True for a declared lower-is-better metric (see `metric_direction`)."""
    return metric_direction(name) == "min"


def declared_directions(
    names: Sequence[str], declared: Mapping[str, str] | None, *, needed: Sequence[str] = ()
) -> dict[str, str]:
    """The direction of each name: `declared` (names or glob patterns -> 'min'/'max') first,
    then the measure in the name. A name in `needed` with neither is an error."""
    out: dict[str, str] = {}
    for n in names:
        d = next(
            (v for k, v in (declared or {}).items() if k == n or fnmatch.fnmatchcase(n, k)),
            None,
        ) or metric_direction(n)
        if d is not None:
            if d not in ("min", "max"):
                raise AutomixerError(f"direction of '{n}' must be min or max, got '{d}'")
            out[n] = d
        elif n in needed:
            raise AutomixerError(
                f"the direction of '{n}' is not declared by its name (no measure such as "
                f"_loss, _bpb, _acc); give it, e.g. --direction '{n}=min'",
                field="--direction",
            )
    return out


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
        needed = [n for n, wi in zip(names, w, strict=True) if wi > 0]
        known = declared_directions(names, directions, needed=needed)
        # A target outside the objective keeps a sign only for the Pareto front's display.
        signs = np.array([-1.0 if known.get(n) == "min" else 1.0 for n in names])
        Y = np.asarray(Y, dtype=np.float64).reshape(-1, len(names))
        scale = Y.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        return cls(names, w / w.sum(), signs, Y.mean(axis=0), scale)

    def value(self, Y: np.ndarray) -> np.ndarray:
        """Objective of predictions or measurements Y (..., n_targets); higher is better."""
        Z = (np.asarray(Y) - self.center) / self.scale
        return np.asarray((Z * self.signs * self.weights).sum(axis=-1))

    def sd(self, S: np.ndarray) -> np.ndarray:
        """The objective's latent standard deviation from the targets' latent ones S (...,
        n_targets): the surrogates are fitted target by target (a shared-kernel GP's outputs
        are independent given the kernel too), so their posteriors are independent and the
        variances add. (Their out-of-fold errors do correlate: that is the noise and the
        model's shared misfit, which the conformal intervals carry, not this.)"""
        return np.asarray(np.sqrt(((np.asarray(S) / self.scale * self.weights) ** 2).sum(-1)))

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
