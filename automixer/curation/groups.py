"""Group bounds: the total weight of a set of domains (every tier of a source, every synthetic
domain) kept between a low and a high by the design and the solver."""

from __future__ import annotations

from collections.abc import Mapping

from automixer.config import Config, group_members
from automixer.solve.constraints import GroupSpec


def group_specs(config: Config) -> list[GroupSpec]:
    """(name, members, min, max) of each `solve.groups` entry (checked when the config was
    read: every pattern names a domain)."""
    return [(g.name, group_members(config, g), g.min, g.max) for g in config.solve.groups]


def group_totals(config: Config, weights: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Each group's total at `weights`, beside its bounds (for the solution and the report)."""
    return {
        name: {"total": sum(float(weights.get(m, 0.0)) for m in members), "min": lo, "max": hi}
        for name, members, lo, hi in group_specs(config)
    }
