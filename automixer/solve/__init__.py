"""Constraints, objectives and solvers for the optimal mixture."""

from automixer.solve.constraints import Constraints
from automixer.solve.objective import Objective, lower_is_better
from automixer.solve.reuse import expand, freeze
from automixer.solve.solvers import Solution, describe, pareto_front, solve_mixture

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
