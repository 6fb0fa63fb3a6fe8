"""Mixture reuse (Olmix): freeze unchanged domains into one virtual domain with fixed inner
weights, sweep and solve only the new space, then expand the solution back to every domain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from automixer.errors import AutomixerError
from automixer.mixture import WeightIssue, check_weights

VIRTUAL = "existing"


def freeze(
    X: np.ndarray, domains: Sequence[str], frozen: Sequence[str], name: str = VIRTUAL
) -> tuple[np.ndarray, list[str], dict[str, float]]:
    """Collapse the `frozen` columns of mixtures X into one virtual domain.

    Returns the collapsed mixtures, their domain names (unchanged ones first, then `name`) and
    the inner weights of the frozen domains, taken from their mean share over the runs. Runs
    whose frozen part is not in those proportions cannot be represented: an error says so.
    """
    names = list(domains)
    missing = [f for f in frozen if f not in names]
    if missing:
        raise AutomixerError(f"unknown domains to freeze: {', '.join(missing)}")
    fi = [names.index(f) for f in frozen]
    ki = [i for i in range(len(names)) if i not in fi]
    part = X[:, fi]
    mass = part.sum(axis=1)
    total = part.sum(axis=0)
    if total.sum() <= 0:
        raise AutomixerError("the frozen domains have weight 0 in every run")
    inner = total / total.sum()
    with_mass = mass > 1e-12
    drift = np.abs(part[with_mass] / mass[with_mass, None] - inner).max() if with_mass.any() else 0
    if drift > 1e-3:
        raise AutomixerError(
            f"the frozen domains do not keep fixed proportions across runs (off by {drift:.3g}); "
            "only a part swept with fixed inner weights can be frozen"
        )
    collapsed = np.hstack([X[:, ki], mass[:, None]])
    return (
        collapsed,
        [names[i] for i in ki] + [name],
        dict(zip(frozen, inner.tolist(), strict=True)),
    )


def expand(
    weights: Mapping[str, float], inner: Mapping[str, float], name: str = VIRTUAL
) -> dict[str, float]:
    """Turn a mixture over (new domains + the virtual one) into one over every domain:
    w_d = w[virtual] * inner[d] for each frozen domain d."""
    if name not in weights:
        raise AutomixerError(f"the mixture has no '{name}' domain to expand")
    try:
        inner_w = check_weights(inner, list(inner), tolerance=1e-3)
    except WeightIssue as e:
        raise AutomixerError(f"inner weights of '{name}': {e}") from None
    clash = set(inner) & (set(weights) - {name})
    if clash:
        raise AutomixerError(f"domains both frozen and swept: {', '.join(sorted(clash))}")
    out = {d: float(w) for d, w in weights.items() if d != name}
    out.update({d: float(weights[name]) * w for d, w in inner_w.items()})
    return out
