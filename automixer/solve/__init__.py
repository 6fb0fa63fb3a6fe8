"""Constraints, objectives and solvers for the optimal mixture.

The names below are imported on first use (PEP 562), so that a module needing only the
constraints (the sweep's design) does not pay for SciPy's optimisers at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automixer.solve.constraints import Constraints
    from automixer.solve.objective import Objective, lower_is_better
    from automixer.solve.reuse import expand, freeze
    from automixer.solve.solvers import Solution, describe, pareto_front, solve_mixture

_WHERE = {
    "Constraints": "constraints",
    "Objective": "objective",
    "lower_is_better": "objective",
    "expand": "reuse",
    "freeze": "reuse",
    "Solution": "solvers",
    "describe": "solvers",
    "pareto_front": "solvers",
    "solve_mixture": "solvers",
}

__all__ = [
    "Constraints",
    "Objective",
    "Solution",
    "describe",
    "expand",
    "freeze",
    "lower_is_better",
    "pareto_front",
    "solve_mixture",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'automixer.solve' has no attribute '{name}'")
    return getattr(importlib.import_module(f"automixer.solve.{_WHERE[name]}"), name)
