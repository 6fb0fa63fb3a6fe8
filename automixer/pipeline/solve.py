"""`automixer solve RUN_DIR`: the optimum -> solution.json and pareto.csv; printed with its
interval, the best run, the optimism gap and the distance to the nearest run."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from automixer.io import atomic_path, atomic_write_json
from automixer.modeling import FitInputs, SolveResult, solve_runs
from automixer.rundir import RunDir
from automixer.views import print_solution


def run_solve(run_dir: Path, console: Console) -> SolveResult:
    data = FitInputs.load(RunDir.open(run_dir))
    result = solve_runs(data)
    rd = data.rd
    atomic_write_json(
        rd.file("solution.json"),
        {**rd.provenance(), **result.solution.to_dict(), "best_run_id": result.best_run_id},
    )
    if result.pareto is not None:
        with atomic_path(rd.file("pareto.csv")) as tmp:
            result.pareto.write_csv(tmp)
    print_solution(result.solution, console, run_ids=data.ids)
    console.print(f"solution: {rd.file('solution.json')}")
    return result
