"""`automixer simulate POOL_TABLE`: the adaptive sweep's loop on runs that were already trained.

The pool (a runs table, read with `automixer replay`'s conventions) acts as the oracle: only its
rows can be chosen, and a row's metrics are revealed when it is chosen. Writes DIR/chosen.csv
(the ids in the order they were chosen, with the round) and DIR/pick.json (the row the loop
recommends: the chosen row with the best posterior mean; the value a new run there is expected
at, its out-of-fold prediction calibrated for the pick, with its interval; and the in-sample
posterior mean, labelled as such).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console

from automixer.adaptive import pick_value, simulate
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
    seen = np.asarray(trajectory.chosen)
    value = pick_value(runs.X[seen], oracle(seen), int(np.flatnonzero(seen == best)[0]), seed)
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
        "expected": value.expected,
        "lo": value.lo,
        "hi": value.hi,
        "interval_level": value.level,
        "interval_covers": (
            f"a new run of the picked row with probability {value.level:g}: its out-of-fold "
            f"prediction ({value.out_of_fold:+.3f}) calibrated for having been picked as the "
            f"best (the mean error of the {value.matched} out-of-fold runs predicted at least "
            "as high), conformal"
        ),
        "out_of_fold": value.out_of_fold,
        "predicted": predicted,
        "predicted_is": "the GP's posterior mean at the row, fitted on it (in-sample)",
        "runs": used,
        "budget": budget,
        "objective": weights,
        "seed": seed,
    }
    atomic_write_json(out_dir / "pick.json", pick)
    console.print(
        f"pick: {ids[best]}, the best of the {used} chosen runs under the GP (posterior mean "
        f"{predicted:+.3f}, fitted on it); a new run there is expected at {value.expected:+.3f} "
        f"[{value.lo:+.3f}, {value.hi:+.3f}] ({value.level:.0%}: its out-of-fold prediction "
        f"{value.out_of_fold:+.3f} calibrated for the pick); "
        f"{out_dir / 'chosen.csv'}, {out_dir / 'pick.json'}"
    )
    return pick
