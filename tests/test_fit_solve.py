"""`automixer fit` / `solve` on a run directory whose runs.parquet follows the declared schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from automixer.cli import app
from automixer.config import Config
from automixer.errors import AutomixerError
from automixer.rundir import RunDir
from automixer.runs_table import read_runs, weight_column, write_runs
from tests.conftest import small_config
from tests.test_cli import _assert_one_line_error

runner = CliRunner()


def _run_dir(tmp_path: Path, n: int = 40) -> RunDir:
    cfg = small_config(tmp_path)
    cfg["surrogate"] = {"cv_repeats": 1, "cv_folds": 4}
    cfg["solve"] = {"objective": {"code": 0.5, "commonsense": 0.5}}
    rd = RunDir.for_config(Config.model_validate(cfg))
    rd.write_config()
    rng = np.random.default_rng(0)
    domains = rd.config.domain_names
    X = rng.dirichlet(np.ones(len(domains)), size=n)
    code = 3.0 - np.sqrt(X[:, 0]) + rng.normal(0, 0.01, n)
    cs = 3.0 - np.sqrt(X[:, 1]) - 0.5 * np.sqrt(X[:, 2]) + rng.normal(0, 0.01, n)
    df = pl.DataFrame(
        {
            "run_id": [f"r{i:03d}" for i in range(n)],
            "name": [f"dirichlet-{i}" for i in range(n)],
            "replicate_of": [None] * (n - 3) + ["r000", "r000", None],
            "loss_first": [8.0] * n,
            "loss_last": [4.0] * n,
            "status": ["done"] * (n - 1) + ["failed"],
            "seed": list(range(n)),
            "tokens": [65536] * n,
            "seconds": [1.0] * n,
            "config_hash": [rd.config_hash] * n,
            "commit": ["abc"] * n,
            "error": [None] * (n - 1) + ["loss became NaN at step 3"],
            **{weight_column(d): X[:, i] for i, d in enumerate(domains)},
            "ability:code:bpb": code,
            "ability:commonsense:bpb": cs,
            "domain:bible:bpb": cs + 0.1,
            "suite:hellaswag:acc": [0.25] * n,  # at chance everywhere: constant
        }
    )
    write_runs(df, rd.file("runs.parquet"), domains)
    return rd


def test_fit_then_solve(tmp_path: Path):
    rd = _run_dir(tmp_path)
    r = runner.invoke(app, ["fit", str(rd.path)])
    assert r.exit_code == 0, r.output
    cv = pl.read_csv(rd.file("surrogates") / "cv.csv")
    assert set(cv["target"]) == {
        "ability:code:bpb",
        "ability:commonsense:bpb",
        "domain:bible:bpb",
        "suite:hellaswag:acc",
    }
    assert "nan" not in r.output and "Warning" not in r.output
    # The compact table: the objective's targets and the abilities, not every metric.
    assert "│ ability:code:bpb" in r.output and "│ domain:bible:bpb" not in r.output
    assert "39 runs (37" in r.output  # two replicates of r000 go with it
    assert "constant in every run: suite:hellaswag:acc" in r.output
    assert "auto" in set(cv["model"])  # the choice itself, scored on its own folds
    choice = json.loads((rd.file("surrogates") / "choice.json").read_text())
    assert choice["runs"] == 39  # the failed run is left out
    assert set(choice["honest_spearman"]) == set(choice["choice"])
    every = runner.invoke(app, ["fit", str(rd.path), "--all"])
    assert "│ domain:bible:bpb" in every.output and "gp" in every.output
    assert choice["config_hash"] == rd.config_hash
    signal = pl.read_csv(rd.file("surrogates") / "signal.csv")
    assert signal.height == 4 and signal["seed_noise_sd"].is_not_null().all()
    oof = pl.read_parquet(rd.file("surrogates") / "oof.parquet")
    assert oof.height == 4 * 39
    r = runner.invoke(app, ["solve", str(rd.path)])
    assert r.exit_code == 0, r.output
    sol = json.loads(rd.file("solution.json").read_text())
    w = sol["weights"]
    assert abs(sum(w.values()) - 1) < 1e-6
    assert w["code"] > 0.2 and w["bible"] > 0.2  # what the two abilities want
    # the interval is where a new run at the picked mixture lands: centred on the prediction
    # with the optimism of picking (cross-validated, one ranking of all runs per repeat) taken out
    o = sol["objective"]
    s = rd.config.surrogate
    assert o["optimism_picks"] == s.cv_repeats and o["expected"] == pytest.approx(
        o["predicted"] + o["optimism"]
    )
    assert (o["lo"] + o["hi"]) / 2 == pytest.approx(o["expected"])
    assert "optimism of picking" in sol["interval_covers"]
    front = pl.read_csv(rd.file("pareto.csv"))
    assert front["chosen"].sum() == 1


def test_runs_table_schema_is_enforced(tmp_path: Path):
    rd = _run_dir(tmp_path, n=10)
    df = read_runs(rd.file("runs.parquet"), rd.config.domain_names)
    with pytest.raises(AutomixerError, match="missing columns"):
        write_runs(df.drop("seed"), tmp_path / "x.parquet", rd.config.domain_names)
    with pytest.raises(AutomixerError, match="unexpected columns"):
        write_runs(
            df.with_columns(pl.lit(1).alias("junk")), tmp_path / "x.parquet", rd.config.domain_names
        )
    with pytest.raises(AutomixerError, match="not unique"):
        write_runs(pl.concat([df, df.head(1)]), tmp_path / "x.parquet", rd.config.domain_names)


def test_fit_without_runs_is_assert_one_line_error(tmp_path: Path):
    rd = RunDir.for_config(Config.model_validate(small_config(tmp_path)))
    rd.write_config()
    r = runner.invoke(app, ["fit", str(rd.path)])
    assert r.exit_code == 2 and "no runs.parquet" in r.output


def test_tampered_result_files_are_one_line_where_they_are_read(tmp_path: Path):
    rd = _run_dir(tmp_path)
    assert runner.invoke(app, ["fit", str(rd.path), "-q"]).exit_code == 0
    assert runner.invoke(app, ["solve", str(rd.path)]).exit_code == 0
    path = str(rd.path)
    solution = rd.file("solution.json").read_text()
    good = json.loads(solution)
    for bad, needle in [
        ({}, "no 'weights' mixture"),
        ({**good, "weights": {**good["weights"], "code": -0.8}}, "weights"),
        ({**good, "weights": {**good["weights"], "code": float("nan")}}, "weights"),
        ({**good, "weights": {**good["weights"], "nowhere": 0.1}}, "nowhere"),
        ({**good, "objective": {}}, "no predicted objective"),
    ]:
        rd.file("solution.json").write_text(json.dumps(bad))
        for verb in ("export", "report"):
            _assert_one_line_error(runner.invoke(app, [verb, path]), "solution.json", needle)
    rd.file("solution.json").write_text(solution)
    manifest = rd.file("manifest.json")
    manifest.write_text("{}")
    _assert_one_line_error(
        runner.invoke(app, ["export", path]), "manifest.json", "no record of domain"
    )
    manifest.unlink()
    for name in ("surrogates/oof.parquet", "surrogates/choice.json"):
        saved = rd.file(name).read_bytes()
        rd.file(name).write_bytes(b"\x00garbage" * 10)
        _assert_one_line_error(runner.invoke(app, ["solve", path]), name.split("/")[-1])
        rd.file(name).write_bytes(saved)
    from automixer.verdict import signal_check

    rd.file("surrogates/signal.csv").write_text("target,nothing\nx,1\n")
    with pytest.raises(AutomixerError, match=r"signal\.csv: no column 'seed_noise_sd'"):
        signal_check(rd, ["ability:code:bpb"])
    # a front from another solve (killed between its two writes) is ignored, not shown
    front = rd.file("pareto.csv")
    front.write_text(front.read_text().replace("true", "false", 1))
    assert rd.pareto() is None
