"""`automixer replay` on the published Olmix swarm (copied into benchmarks/data, with licence)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
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


def test_replay_cli_predicts_with_intervals_and_solves(tmp_path: Path):
    mix = (
        pl.read_csv(DCLM / "ratios.csv")
        .head(10)
        .select(
            [
                "run",
                *[
                    c
                    for c in pl.read_csv(DCLM / "ratios.csv").columns
                    if c not in ("", "run", "name", "index")
                ],
            ]
        )
    )
    mix.write_csv(tmp_path / "mix.csv")
    result = runner.invoke(
        app,
        [
            "replay",
            str(DCLM / "ratios.csv"),
            "--metrics",
            str(DCLM / "metrics.csv"),
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
            str(tmp_path / "mix.csv"),
            "--truth",
            str(DCLM / "metrics.csv"),
            "--out",
            str(tmp_path / "pred.csv"),
            "--out-dir",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    pred = pl.read_csv(tmp_path / "pred.csv")
    assert pred.columns == ["run", "math", "math:lo", "math:hi", "code", "code:lo", "code:hi"]
    assert (pred["math:lo"] <= pred["math"]).all() and (pred["math"] <= pred["math:hi"]).all()
    cv = pl.read_csv(tmp_path / "out" / "cv.csv")
    assert set(cv["target"]) == {"math", "code"} and cv["spearman"].min() > 0.8
    sol = json.loads((tmp_path / "out" / "solution.json").read_text())
    assert abs(sum(sol["weights"].values()) - 1) < 1e-6
    assert "optimism_gap" in sol and sol["nearest_run"]["distance"] is not None


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
