"""Adaptive selection: Thompson-sampled batches from a GP, and `automixer simulate` on a pool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
from typer.testing import CliRunner

from automixer.adaptive import measured_pick, random_selection, simulate, thompson_batch
from automixer.cli import app


def _pool(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(4), size=n)
    best = np.array([0.55, 0.05, 0.3, 0.1])
    loss = 3 + ((X - best) ** 2).sum(axis=1) + rng.normal(0, 0.002, n)
    return X, loss


def test_batches_are_distinct_and_only_chosen_rows_are_revealed():
    X, loss = _pool()
    asked: set[int] = set()

    def oracle(rows: np.ndarray) -> np.ndarray:
        asked.update(int(r) for r in rows)
        return -loss[rows]

    t = simulate(X, oracle, initial=10, batch=5, budget=30, seed=1)
    assert len(t.chosen) == len(set(t.chosen)) == 30
    assert t.rounds == [0] * 10 + [1] * 5 + [2] * 5 + [3] * 5 + [4] * 5
    assert asked <= set(t.chosen)
    again = simulate(X, lambda r: -loss[r], initial=10, batch=5, budget=30, seed=1)
    assert again.chosen == t.chosen  # a seed fixes the run
    picks = thompson_batch(X[:20], -loss[:20], X[20:], 6, np.random.default_rng(0))
    assert len(set(picks)) == 6


def test_adaptive_picks_better_than_random_with_the_same_budget():
    X, loss = _pool()

    def rank(row: int) -> int:
        return int((loss < loss[row]).sum())

    adaptive, rand = [], []
    for seed in range(3):
        t = simulate(X, lambda r: -loss[r], initial=8, batch=4, budget=24, seed=seed)
        adaptive.append(rank(t.pick(X, lambda r: -loss[r], 24, seed)[0]))
        r = random_selection(len(X), 24, seed)
        rand.append(rank(r.pick(X, lambda r: -loss[r], 24, seed)[0]))
    assert np.mean(adaptive) < np.mean(rand)


def test_the_pick_is_a_measured_run_with_the_noise_smoothed_out():
    # 60 measured runs whose values carry seed noise larger than the top runs' differences:
    # the best measured value is often a lucky draw, the GP's mean at the runs is not
    rng = np.random.default_rng(0)
    best = np.array([0.55, 0.05, 0.3, 0.1])
    gp_true, raw_true = [], []
    for _ in range(8):
        X = rng.dirichlet(np.ones(4), size=60)
        f = -((X - best) ** 2).sum(axis=1)  # the true objective, higher is better
        y = f + rng.normal(0, 0.05, len(X))
        i, predicted = measured_pick(X, y, 0)
        assert 0 <= i < len(X) and abs(predicted - f[i]) < 0.1
        gp_true.append(f[i])
        raw_true.append(f[int(np.argmax(y))])
    assert np.mean(gp_true) > np.mean(raw_true)


def test_a_tight_optimum_stops_the_rounds_before_the_budget():
    X, loss = _pool()

    def run(width: float | None):
        stops: list = []
        t = simulate(
            X,
            lambda r: -loss[r],
            initial=8,
            batch=4,
            budget=60,
            seed=0,
            stop_width=width,
            on_stop=lambda r, found: stops.append((r, found.width)),
        )
        return t, stops

    full, none = run(None)
    assert len(full.chosen) == 60 and not none
    stopped, told = run(0.5)
    assert 8 < len(stopped.chosen) < 60 and told[0][1] < 0.5
    assert stopped.chosen == full.chosen[: len(stopped.chosen)]  # the same rounds, fewer
    best = stopped.pick(X, lambda r: -loss[r], len(stopped.chosen), 0)[0]
    assert (loss < loss[best]).sum() < 3  # the optimum is pinned down: a top row is picked
    assert len(run(1e-6)[0].chosen) == 60  # too tight to reach: the budget stops it


def test_simulate_cli_writes_the_order_and_the_pick(tmp_path: Path):
    X, loss = _pool(120)
    table = pl.DataFrame({"run": [f"r{i}" for i in range(len(X))]}).with_columns(
        *[pl.Series(f"w{j}", X[:, j]) for j in range(4)], pl.Series("val_loss", loss)
    )
    table.write_csv(tmp_path / "pool.csv")
    args = ["simulate", str(tmp_path / "pool.csv"), "--domains", "w*", "--target", "val_loss"]
    args += ["--initial", "8", "--batch", "4", "--budget", "20", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    chosen = pl.read_csv(tmp_path / "o" / "chosen.csv")
    assert chosen.height == 20 and chosen["id"].n_unique() == 20
    assert chosen["round"].to_list()[:8] == [0] * 8 and chosen["round"].max() == 3
    pick = json.loads((tmp_path / "o" / "pick.json").read_text())
    assert pick["id"] in set(chosen["id"]) and isinstance(pick["predicted"], float)  # measured
    # the value reported is not the posterior mean at a run it was fitted on: the pick's
    # out-of-fold prediction, calibrated for having been picked, with its interval
    assert "in-sample" in pick["predicted_is"] and pick["lo"] < pick["expected"] < pick["hi"]
    assert pick["expected"] != pick["predicted"] and "calibrated" in pick["interval_covers"]
    bad = CliRunner().invoke(app, [*args[:-2], "--budget", "500", "--out", str(tmp_path / "o")])
    assert bad.exit_code == 2 and "exceeds the pool's 120 rows" in bad.output
    assert "Traceback" not in bad.output
    early = CliRunner().invoke(app, [*args, "--stop-width", "100"])
    # any interval is narrow enough, but only from 4 runs per domain (16) on
    assert early.exit_code == 0 and "stopped before round 3" in early.output
    pick = json.loads((tmp_path / "o" / "pick.json").read_text())
    assert pick["runs"] == 16 and pick["budget"] == 20
    bad = CliRunner().invoke(app, [*args, "--stop-width", "0"])
    assert bad.exit_code == 2 and "--stop-width" in bad.output and "Traceback" not in bad.output


def test_adaptive_candidates_respect_the_caps():
    from automixer.design import candidate_mixtures

    natural = {"a": 0.5, "b": 0.3, "c": 0.2}
    caps = {"a": 0.6, "b": 0.25, "c": 1.0}
    C = candidate_mixtures(natural, caps, 500, np.random.default_rng(0))
    assert C.shape == (500, 3) and np.allclose(C.sum(axis=1), 1)
    assert (C[:, 0] <= 0.6 + 1e-9).all() and (C[:, 1] <= 0.25 + 1e-9).all()
    assert np.ptp(C[:, 2]) > 0.3  # spread, not one point


def test_rounds_must_leave_a_first_batch(tmp_path: Path):
    from tests.conftest import small_config, write_config

    cfg = small_config(tmp_path)
    cfg["sweep"] = {"n_runs": 10, "rounds": 3, "batch": 4}  # leaves 2 for the design
    path = write_config(tmp_path / "c.yaml", cfg)
    result = CliRunner().invoke(app, ["data", str(path), "--dry-run"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    flat = " ".join(result.output.split())
    assert "sweep.rounds" in flat and "leave 2 of n_runs=10" in flat


def test_the_report_says_when_and_why_a_sweep_stopped(tmp_path: Path):
    from automixer.report import stopped_note

    design = tmp_path / "design.json"
    assert stopped_note(design) == ""  # no design yet
    design.write_text(json.dumps({"runs": []}))
    assert stopped_note(design) == ""  # ran to its budget
    stop = {"before_round": 2, "runs": 13, "width": 0.4321, "stop_width": 0.5}
    design.write_text(json.dumps({"runs": [], "stopped": stop}))
    note = stopped_note(design)
    assert "before round 2" in note and "13 runs" in note and "0.43" in note and "0.5" in note


def test_joint_draws_follow_a_singular_posterior():
    """Candidates that coincide make the covariance singular; draws still come, finite, with
    the asked mean and covariance (checked on 20,000 draws)."""
    from automixer.adaptive import joint_draws

    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 5))
    base = A.T @ A  # rank 3 of 5
    cov = np.block([[base, base], [base, base]])  # every candidate twice: rank 3 of 10
    mean = np.tile(np.arange(5.0), 2)
    draws = joint_draws(mean, cov, 20_000, rng)
    assert draws.shape == (10, 20_000) and np.isfinite(draws).all()
    np.testing.assert_allclose(draws.mean(axis=1), mean, atol=0.1)
    np.testing.assert_allclose(np.cov(draws), cov, atol=0.15 * np.abs(cov).max())
    np.testing.assert_allclose(draws[:5], draws[5:], atol=1e-3)  # equal points, equal draws
