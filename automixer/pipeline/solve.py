"""`automixer solve RUN_DIR`: the optimum -> solution.json and pareto.csv; printed with its
interval, the best run, the optimism gap and the distance to the nearest run."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rich.console import Console

from automixer.curation import group_totals
from automixer.io import atomic_path, atomic_write_json
from automixer.modeling import FitInputs, SolveResult, solve_runs
from automixer.rundir import RunDir
from automixer.schedule import Phases
from automixer.tracking import Tracker
from automixer.views import print_phasing, print_solution


def run_solve(run_dir: Path, console: Console) -> SolveResult:
    """Solve; write pareto.csv, then solution.json naming the pareto.csv it goes with (its
    hash), so that a solve killed between the two writes leaves no new solution beside an old
    front: a reader that finds the hashes differ ignores the front (`pareto_front_of`)."""
    data = FitInputs.load(RunDir.open(run_dir))
    result = solve_runs(data)
    rd = data.rd
    # each domain's weight over the whole run (the phases summed, with phases)
    totals = dict(
        zip(
            rd.config.domain_names,
            map(float, Phases.of(rd.config).totals(result.solution.weights)[0]),
            strict=True,
        )
    )
    front_hash = None
    if result.pareto is not None:
        text = result.pareto.write_csv()
        with atomic_path(rd.file("pareto.csv")) as tmp:
            tmp.write_text(text)
        front_hash = hashlib.sha256(text.encode()).hexdigest()
    else:
        rd.file("pareto.csv").unlink(missing_ok=True)
    atomic_write_json(
        rd.file("solution.json"),
        {
            **rd.provenance(),
            **result.solution.to_dict(),
            "best_run_id": result.best_run_id,
            "pareto_sha256": front_hash,
            **({"groups": group_totals(rd.config, totals)} if rd.config.solve.groups else {}),
            **({"schedule": result.phasing.to_dict()} if result.phasing is not None else {}),
        },
    )
    tracker = Tracker.for_run(rd)
    if tracker is not None:
        sol = result.solution
        tracker.summary(
            "solve",
            {f"w.{d}": round(w, 6) for d, w in sol.weights_dict().items()},
            {
                k: v
                for k, v in {
                    "objective_predicted": sol.objective,
                    "objective_expected": sol.expected,
                    "nearest_run_distance": sol.nearest_distance,
                }.items()
                if v is not None
            },
        )
    print_solution(result.solution, console, run_ids=data.ids, weights=result.phasing is None)
    if result.phasing is not None:
        print_phasing(result.phasing, console)
    console.print(f"solution: {rd.file('solution.json')}")
    return result
