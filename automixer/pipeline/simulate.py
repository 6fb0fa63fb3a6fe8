"""`automixer simulate POOL_TABLE`: the adaptive sweep's loop on runs that were already trained.

The pool (a runs table, read with `automixer replay`'s conventions) acts as the oracle: only its
rows can be chosen, and a row's metrics are revealed when it is chosen. Writes DIR/chosen.csv
(the ids in the order they were chosen, with the round) and DIR/pick.json (the row the loop
recommends: the chosen row with the best posterior mean, with that predicted objective).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console

from automixer.adaptive import simulate
from automixer.io import atomic_path, atomic_write_json
from automixer.replay import load_runs
from automixer.solve import Objective


def pool_objective(
    Y: np.ndarray,
    targets: Sequence[str],
    weights: Mapping[str, float],
    directions: Mapping[str, str] | None,
):
    """objective(rows): the objective of those rows, standardised by those rows alone (nothing
    about rows not yet chosen is used)."""
    Objective.build(targets, weights, Y, directions)  # every name and direction checked now

    def objective(rows: np.ndarray) -> np.ndarray:
        obj = Objective.build(targets, weights, Y[rows], directions)
        return np.asarray(obj.value(Y[rows]))

    return objective


def run_simulate(
    pool_table: Path,
    *,
    metrics: Path | None,
    id_column: str | None,
    domains: Sequence[str],
    targets: Sequence[str],
    families: Mapping[str, str],
    objective: Mapping[str, float],
    directions: Mapping[str, str],
    initial: int,
    batch: int,
    budget: int,
    seed: int,
    out_dir: Path,
    console: Console,
    stop_width: float | None = None,
    phases: Mapping[str, float] | None = None,
) -> dict:
    runs = load_runs(
        pool_table,
        metrics,
        id_column=id_column,
        domains=domains,
        targets=targets,
        families=families,
        phases=phases,
    )
    ids = runs.ids if runs.ids is not None else [str(i) for i in range(len(runs.X))]
    weights = dict(objective) if objective else {t: 1.0 for t in runs.targets}
    oracle = pool_objective(runs.Y, runs.targets, weights, directions)
    console.print(
        f"pool: {len(runs.X)} runs, {len(runs.domains)} domains; {initial} initial, then "
        f"batches of {batch} by Thompson sampling up to {budget}"
    )
    trajectory = simulate(
        runs.X,
        oracle,
        initial=initial,
        batch=batch,
        budget=budget,
        seed=seed,
        stop_width=stop_width,
        on_round=lambda r, n: console.print(f"round {r}: {n} runs chosen"),
        on_stop=lambda r, found: console.print(
            f"stopped before round {r}: the optimum's 95% interval is {found.width:.2f} x "
            f"the objective's spread (--stop-width {stop_width})"
        ),
    )
    used = len(trajectory.chosen)
    best, predicted = trajectory.pick(runs.X, oracle, used, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = pl.DataFrame(
        {
            "order": list(range(len(trajectory.chosen))),
            "id": [ids[i] for i in trajectory.chosen],
            "round": trajectory.rounds,
        }
    )
    with atomic_path(out_dir / "chosen.csv") as tmp:
        chosen.write_csv(tmp)
    pick = {
        "id": ids[best],
        "predicted": predicted,
        "runs": used,
        "budget": budget,
        "objective": weights,
        "seed": seed,
    }
    atomic_write_json(out_dir / "pick.json", pick)
    console.print(
        f"pick: {ids[best]} (predicted objective {predicted:+.3f}, the best of the {used} "
        "chosen runs under the GP); "
        f"{out_dir / 'chosen.csv'}, {out_dir / 'pick.json'}"
    )
    return pick
