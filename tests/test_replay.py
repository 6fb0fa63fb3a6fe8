"""`automixer replay` on the published Olmix swarm (copied into benchmarks/data, with licence)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from automixer.cli import app
from automixer.replay import load_runs
from automixer.solve import expand

OLMIX = Path(__file__).parents[1] / "benchmarks" / "data" / "olmix"
DCLM = OLMIX / "dclm_swarm"
REUSE = OLMIX / "mixture_reuse_update5_seed0"
runner = CliRunner()


def test_load_runs_joins_and_builds_families():
    runs = load_runs(
        DCLM / "ratios.csv",
        DCLM / "metrics.csv",
        id_column="run",
        families={"math": "minerva_math_*", "code": "codex_*|mbpp*|mt_mbpp*"},
    )
    assert runs.X.shape == (127, 24) and runs.targets == ["math", "code"]
    assert np.allclose(runs.X.sum(1), 1)
    metrics = pl.read_csv(DCLM / "metrics.csv")
    row = metrics.filter(pl.col("run") == runs.ids[0])
    math_cols = [c for c in metrics.columns if c.startswith("minerva_math_")]
    assert runs.Y[0, 0] == np.mean([row[c][0] for c in math_cols])


def split_swarm(tmp_path: Path) -> tuple[pl.DataFrame, list[str]]:
    """The DCLM swarm's first 97 runs (train.csv, metrics.csv) and its last 30 mixtures
    (unseen.csv) under tmp_path; the ratios table and its weight columns."""
    ratios = pl.read_csv(DCLM / "ratios.csv")
    weights = [c for c in ratios.columns if c not in ("", "run", "name", "index")]
    ratios.head(97).select(["run", *weights]).write_csv(tmp_path / "train.csv")
    ratios.tail(30).select(["run", *weights]).write_csv(tmp_path / "unseen.csv")
    metrics = pl.read_csv(DCLM / "metrics.csv")
    metrics.filter(pl.col("run").is_in(ratios.head(97)["run"].implode())).write_csv(
        tmp_path / "metrics.csv"
    )
    return ratios, weights


def test_replay_cli_predicts_with_intervals_that_cover_unseen_runs_and_solves_as_solve_does(
    tmp_path: Path,
):
    """Fit on 97 of the swarm's 127 runs, predict the other 30 with 95% intervals: the
    intervals must hold (nearly) all of their measured values; the solution is `automixer
    solve`'s (floors at a quarter of the runs' mean mixture, the lower confidence bound at
    1.645 sd, the trust region)."""
    ratios, weights = split_swarm(tmp_path)
    result = runner.invoke(
        app,
        [
            "replay",
            str(tmp_path / "train.csv"),
            "--metrics",
            str(tmp_path / "metrics.csv"),
            "--id",
            "run",
            "--family",
            "math=minerva_math_*",
            "--family",
            "code=codex_*|mbpp*|mt_mbpp*",
            "--direction",
            "*=min",
            "--model",
            "linear",
            "--repeats",
            "1",
            "--predict",
            str(tmp_path / "unseen.csv"),
            "--out",
            str(tmp_path / "pred.csv"),
            "--out-dir",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    pred = pl.read_csv(tmp_path / "pred.csv")
    assert pred.columns == ["run", "math", "math:lo", "math:hi", "code", "code:lo", "code:hi"]
    truth = load_runs(
        DCLM / "ratios.csv",
        DCLM / "metrics.csv",
        id_column="run",
        families={"math": "minerva_math_*", "code": "codex_*|mbpp*|mt_mbpp*"},
    )
    order = [truth.ids.index(r) for r in pred["run"].cast(pl.String)]
    for j, t in enumerate(["math", "code"]):
        y = truth.Y[order, j]
        inside = (pred[f"{t}:lo"].to_numpy() <= y) & (y <= pred[f"{t}:hi"].to_numpy())
        assert inside.mean() >= 0.8, (t, inside.mean())  # 95% nominal, 30 unseen runs
    cv = pl.read_csv(tmp_path / "out" / "cv.csv")
    assert set(cv["target"]) == {"math", "code"} and cv["spearman"].min() > 0.8
    sol = json.loads((tmp_path / "out" / "solution.json").read_text())
    assert abs(sum(sol["weights"].values()) - 1) < 1e-6
    assert sol["lcb_k"] == pytest.approx(1.645, abs=0.01) and sol["trust_radius"] is not None
    mean = ratios.head(97).select(weights).mean().row(0, named=True)
    for d, w in sol["weights"].items():
        assert w >= 0.25 * mean[d] / sum(mean.values()) - 1e-6, d


def test_replay_predict_ranks_by_the_objective_and_takes_out_the_optimism_at_each_rank(
    tmp_path: Path,
):
    """With --objective, the predictions rank the mixtures (1 = best) and give the value a new
    run at each is expected at: the prediction less the optimism measured for its rank, which
    shrinks as the rank falls (the top of a ranking is where the surrogate errs upward)."""
    split_swarm(tmp_path)
    args = ["replay", str(tmp_path / "train.csv"), "--metrics", str(tmp_path / "metrics.csv")]
    args += ["--id", "run", "--family", "math=minerva_math_*", "--direction", "*=min"]
    args += ["--model", "linear", "--repeats", "2", "--objective", "math=1"]
    args += ["--predict", str(tmp_path / "unseen.csv"), "--out", str(tmp_path / "pred.csv")]
    args += ["--out-dir", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    pred = pl.read_csv(tmp_path / "pred.csv").sort("objective:rank")
    assert pred["objective:rank"].to_list() == list(range(1, 31))
    value = pred["objective"].to_numpy()
    assert (np.diff(value) <= 0).all()  # rank 1 predicts the best (lowest math BPB)
    shift = pred["objective:expected"].to_numpy() - value
    assert shift[0] < 0 and shift[0] <= shift[-1]  # the best pick's optimism is taken out
    lo, hi = pred["objective:expected:lo"].to_numpy(), pred["objective:expected:hi"].to_numpy()
    assert (lo < pred["objective:expected"].to_numpy()).all()
    assert (pred["objective:expected"].to_numpy() < hi).all()


def test_replay_refuses_to_guess_a_direction(tmp_path: Path):
    """Olmix's columns hold bits per byte under names without a measure: solving them without
    a declared direction would maximise them."""
    args = ["replay", str(DCLM / "ratios.csv"), "--metrics", str(DCLM / "metrics.csv")]
    args += ["--id", "run", "--target", "arc_easy:rc::olmes", "--model", "linear"]
    args += ["--repeats", "1", "--out-dir", str(tmp_path / "out")]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "direction of 'arc_easy:rc::olmes' is not declared" in r.output
    assert "--direction 'arc_easy:rc::olmes=min'" in " ".join(r.output.split())


def test_replay_errors_are_one_line(tmp_path: Path):
    r = runner.invoke(app, ["replay", str(tmp_path / "none.csv")])
    assert r.exit_code == 2 and "file not found" in r.output and "Traceback" not in r.output
    r = runner.invoke(
        app,
        [
            "replay",
            str(DCLM / "ratios.csv"),
            "--metrics",
            str(DCLM / "metrics.csv"),
            "--target",
            "nosuch*",
        ],
    )
    assert r.exit_code == 2 and "matches no column" in r.output
    bad = pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "a": [0.5, 0.2, 0.3, 0.9],
            "b": [0.5, 0.2, 0.7, 0.1],
            "loss": [1.0, 2.0, 3.0, 4.0],
        }
    )
    bad.write_csv(tmp_path / "bad.csv")
    r = runner.invoke(app, ["replay", str(tmp_path / "bad.csv"), "--target", "loss"])
    assert r.exit_code == 2 and "row 2: weights sum to 0.4" in r.output


def test_mixture_reuse_on_the_olmix_reuse_swarm(tmp_path: Path):
    """Sweep only the new space (21 new domains + the frozen 'existing' one), solve there, and
    expand the answer to every domain with the frozen inner weights."""
    inner = json.loads((REUSE / "existing_composition.json").read_text())["existing_composition"]
    runs = load_runs(
        REUSE / "ratios.csv",
        REUSE / "metrics.csv",
        id_column="run",
        families={"qa": "arc_*|csqa*|hellaswag*|piqa*|sciq*|socialiqa*"},
    )
    assert runs.domains[-1] == "existing" and len(runs.domains) == 22
    from automixer.solve import Constraints, Objective, solve_mixture
    from automixer.surrogates import LinearSurrogate

    model = LinearSurrogate().fit(runs.X, runs.Y)
    prior = dict(zip(runs.domains, runs.X.mean(0), strict=True))
    sol = solve_mixture(
        model,
        Objective.build(runs.targets, {"qa": 1.0}, runs.Y, {"qa": "min"}),  # bits per byte
        Constraints.build(runs.domains, prior=prior, strength=0.05),
        X_runs=runs.X,
        Y_runs=runs.Y,
    )
    full = expand(sol.weights_dict(), inner)
    assert len(full) == 21 + len(inner)
    assert abs(sum(full.values()) - 1) < 1e-3
    ex = sol.weights_dict()["existing"]
    for d, w in inner.items():
        assert abs(full[d] - ex * w / sum(inner.values())) < 1e-9
