"""A config's phases and the conversions between a schedule's views (see the package)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from automixer.config import Config
from automixer.solve.constraints import GroupSpec

PHASE_SEP = "@"
"""Between a domain and its phase in a weight's name (`code@anneal`)."""


@dataclass(frozen=True)
class Phases:
    """The phases of a run (one unnamed phase when the config has none) over its domains."""

    domains: tuple[str, ...]
    names: tuple[str, ...]
    shares: tuple[float, ...]

    @classmethod
    def of(cls, config: Config) -> Phases:
        if not config.phases:
            return cls(tuple(config.domain_names), ("all",), (1.0,))
        return cls(
            tuple(config.domain_names),
            tuple(p.name for p in config.phases),
            tuple(p.share for p in config.phases),
        )

    @property
    def phased(self) -> bool:
        return len(self.names) > 1

    @property
    def weight_names(self) -> list[str]:
        if not self.phased:
            return list(self.domains)
        return [f"{d}{PHASE_SEP}{p}" for p in self.names for d in self.domains]

    def block(self, k: int) -> slice:
        """The columns of phase k in a flat vector."""
        D = len(self.domains)
        return slice(k * D, (k + 1) * D)

    def expand(self, W: np.ndarray) -> np.ndarray:
        """Constant schedules: mixtures (N, D) -> the same mixture in every phase (N, P*D)."""
        W = np.atleast_2d(W)
        return np.hstack([s * W for s in self.shares])

    def totals(self, V: np.ndarray) -> np.ndarray:
        """Token-weighted totals over the run (N, P*D) -> (N, D)."""
        V = np.atleast_2d(V)
        return sum(V[:, self.block(k)] for k in range(len(self.names)))  # type: ignore[return-value]

    def per_phase(self, v: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """A flat schedule -> each phase's own mixture (summing to 1)."""
        if not self.phased:
            return {self.names[0]: {d: float(v[d]) for d in self.domains}}
        out = {}
        for p, s in zip(self.names, self.shares, strict=True):
            out[p] = {d: float(v[f"{d}{PHASE_SEP}{p}"]) / s for d in self.domains}
        return out

    def flat(self, per_phase: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        """Each phase's mixture -> the flat schedule."""
        if not self.phased:
            only = per_phase[self.names[0]]
            return {d: float(only.get(d, 0.0)) for d in self.domains}
        return {
            f"{d}{PHASE_SEP}{p}": s * float(per_phase[p].get(d, 0.0))
            for p, s in zip(self.names, self.shares, strict=True)
            for d in self.domains
        }

    def constant(self, mixture: Mapping[str, float]) -> dict[str, float]:
        """One mixture in every phase, as a flat schedule."""
        return self.flat({p: mixture for p in self.names})

    def phase_groups(self) -> list[GroupSpec]:
        """Each phase's block sums to its share (a group bound with min = max)."""
        if not self.phased:
            return []
        names = self.weight_names
        D = len(self.domains)
        return [
            (f"phase {p}", names[k * D : (k + 1) * D], s, s)
            for k, (p, s) in enumerate(zip(self.names, self.shares, strict=True))
        ]

    def cap_groups(self, caps: Mapping[str, float]) -> list[GroupSpec]:
        """Repetition caps over the whole run: the sum over phases of d's weight <= cap_d."""
        if not self.phased:
            return []
        return [
            (f"cap {d}", [f"{d}{PHASE_SEP}{p}" for p in self.names], 0.0, min(1.0, float(caps[d])))
            for d in self.domains
            if d in caps
        ]

    def bounds(self, bounds: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        """Per-phase bounds on the flat names: `d` bounds d in every phase, `d@p` in phase p;
        a phase's bound [lo, hi] on its own mixture is [share * lo, share * hi] on the run."""
        if not self.phased:
            return dict(bounds)
        out: dict[str, tuple[float, float]] = {}
        # `d` first, then `d@p`: a phase's own bound wins over the domain's
        for key, (lo, hi) in sorted(bounds.items(), key=lambda kv: PHASE_SEP in kv[0]):
            d, _, p = key.partition(PHASE_SEP)
            for phase, s in zip(self.names, self.shares, strict=True):
                if not p or p == phase:
                    out[f"{d}{PHASE_SEP}{phase}"] = (s * lo, s * hi)
        return out

    def groups(self, specs: Sequence[GroupSpec]) -> list[GroupSpec]:
        """User group bounds over the whole run: a group of domains bounds their total over
        every phase."""
        if not self.phased:
            return list(specs)
        return [
            (name, [f"{m}{PHASE_SEP}{p}" for p in self.names for m in members], lo, hi)
            for name, members, lo, hi in specs
        ]
