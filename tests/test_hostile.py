"""Inputs and timings a hostile (or unlucky) user produces: each gets one clean line, or works."""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from automixer.cli import app
from automixer.config import load_config, parse_config
from automixer.design import PlannedRun
from automixer.errors import ConfigError
from automixer.io import atomic_write_text
from automixer.rundir import RunDir
from automixer.sweep.ledger import Ledger
from automixer.sweep.worker import storage_url
from tests.conftest import small_config, write_config

runner = CliRunner()
RUNS = [PlannedRun(f"m{i:03d}", f"run-{i}", {"a": 0.5, "b": 0.5}, seed=i) for i in range(40)]


def _plan_at_once(url: str, barrier, out) -> None:
    barrier.wait()
    try:
        with Ledger(url, "race", create=True) as ledger:
            out.put(ledger.plan(RUNS))
    except Exception as e:  # reported to the parent, which fails the test
        out.put(repr(e))


def _work_at_once(url: str, barrier, out) -> None:
    """A worker: claim and finish runs until none is left (the training is not the point)."""
    barrier.wait()
    done = 0
    with Ledger(url, "race") as ledger:
        while claims := ledger.claim(2):
            done += sum(ledger.complete(c, {"m": 1.0}, {}) for c in claims)
    out.put(done)


def _race(url: str, n: int = 4) -> None:
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_plan_at_once, args=(url, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    added = [out.get(timeout=5) for _ in procs]
    assert all(isinstance(a, int) for a in added), added  # no process failed to open it
    assert sum(added) == len(RUNS)
    with Ledger(url, "race") as ledger:
        ids = [t.user_attrs["run_id"] for t in ledger.study.get_trials(deepcopy=False)]
    assert sorted(ids) == [r.run_id for r in RUNS]  # one trial per run id
    # Then as many workers at the same instant: every mixture is finished exactly once.
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_work_at_once, args=(url, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sum(out.get(timeout=5) for _ in procs) == len(RUNS)
    with Ledger(url, "race") as ledger:
        assert ledger.completions() == {r.run_id: 1 for r in RUNS}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_sweeps_started_at_once_plan_each_run_once(tmp_path: Path, backend: str, request):
    url = (
        f"sqlite:///{tmp_path / 'new.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    _race(url)  # a brand-new ledger, created and planned by four processes at the same instant


def test_ledger_in_a_folder_with_url_characters(tmp_path: Path):
    cfg = small_config(tmp_path)
    config = load_config(write_config(tmp_path / "c.yaml", cfg))
    folder = tmp_path / "q?mark" / "%41#x"
    folder.mkdir(parents=True)
    with Ledger(storage_url(config, folder), "s", create=True) as ledger:
        ledger.plan(RUNS[:2])
    assert (folder / "ledger.db").is_file()


def test_yaml_bombs_are_refused_quickly():
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
        for i in range(9)
    )
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_config(laughs, "lol.yaml")
    with pytest.raises(ConfigError, match="nested"):
        parse_config("x: " + "[" * 20000 + "]" * 20000, "deep.yaml")


def test_written_files_follow_the_umask(tmp_path: Path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o644


def test_an_impossible_device_stops_the_sweep_before_training(tmp_path: Path):
    cfg = small_config(tmp_path)
    cfg["proxy"]["device"] = "banana"
    r = runner.invoke(app, ["sweep", str(write_config(tmp_path / "c.yaml", cfg)), "-q"])
    assert r.exit_code == 2 and "proxy.device" in r.output and "Traceback" not in r.output
    cfg["proxy"]["device"] = "cuda:7"
    r = runner.invoke(app, ["sweep", str(write_config(tmp_path / "c.yaml", cfg)), "-q"])
    assert r.exit_code == 2 and "'cuda:7' is not available" in r.output
    assert not list((tmp_path / "runs").rglob("ledger.db"))


def test_failed_runs_are_queued_again(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with Ledger(url, "s", create=True) as ledger:
        ledger.plan(RUNS[:3])
        claims = ledger.claim(3)
        for c in claims:
            ledger.fail(c, "CUDA error", {})
        assert ledger.counts()["failed"] == 3
        assert ledger.plan(RUNS[:3]) == 0  # without retry: nothing new
        assert ledger.plan(RUNS[:3], retry_failed=True) == 3
        assert ledger.counts() == {"done": 0, "failed": 0, "running": 0, "waiting": 3}
        for c in ledger.claim(3):
            ledger.complete(c, {"m": 1.0}, {})
        assert ledger.counts()["done"] == 3 and ledger.finished()


def test_a_rerun_never_rewrites_the_run_directory_config(tmp_path: Path):
    cfg = small_config(tmp_path)
    rd = RunDir.for_config(load_config(write_config(tmp_path / "c.yaml", cfg)))
    rd.write_config()
    before = rd.file("config.yaml").read_text()
    cfg["proxy"]["device"] = "cpu"  # not hashed: the same run directory
    rd2 = RunDir.for_config(load_config(write_config(tmp_path / "c.yaml", cfg)))
    assert rd2.path == rd.path
    rd2.write_config()
    assert rd.file("config.yaml").read_text() == before


def test_late_mistakes_are_caught_by_the_dry_run(tmp_path: Path):
    cases = [
        ({"solve": {"objective": {"cod": 1.0}}}, "solve.objective.cod", "did you mean 'code'"),
        ({"domains": [{"name": "x", "builtin": "wikipedia"}]}, "domains[0].builtin", "wiki"),
        ({"evals": {"suites": ["gsm8k"]}}, "solve.objective.code", "no suite of ability"),
        ({"proxy": {"preset": "tiny2"}}, "proxy.preset", "did you mean 'tiny'"),
        ({"solve": {"target_tokens": float("inf")}}, "solve.target_tokens", "finite"),
    ]
    for over, field, needle in cases:
        cfg = small_config(tmp_path, **over)
        r = runner.invoke(app, ["data", str(write_config(tmp_path / "c.yaml", cfg)), "--dry-run"])
        assert r.exit_code == 2 and field in r.output and needle in r.output, r.output
    (tmp_path / "tasks.jsonl").write_text('{"id": "a", "context": "x"}\n')
    cfg = small_config(tmp_path, evals={"files": [str(tmp_path / "tasks.jsonl")]})
    r = runner.invoke(app, ["data", str(write_config(tmp_path / "c.yaml", cfg)), "--dry-run"])
    assert r.exit_code == 2 and "tasks.jsonl:1" in r.output and "Traceback" not in r.output


def _table(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def test_replay_keeps_a_metric_with_missing_cells_and_says_so(tmp_path: Path):
    rows = ["run,a,b,loss_x,loss_y"] + [
        f"{i},{0.1 * i},{1 - 0.1 * i},{1 + i},{2 + i}" for i in range(1, 9)
    ]
    rows[3] = "3,0.3,0.7,NA,5"  # R's missing value
    rows[4] = "4,0.4,0.6,nan,Inf"
    t = _table(tmp_path / "t.csv", rows)
    args = ["replay", str(t), "--domains", "a|b", "--folds", "3", "--repeats", "1", "--no-solve"]
    r = runner.invoke(app, [*args, "--out-dir", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "2 targets" in r.output and "2 rows without every target dropped" in r.output
    rows[2] = "2,abc,0.8,3,4"  # text in a weight column
    r = runner.invoke(
        app,
        [
            "replay",
            str(_table(t, rows)),
            "--domains",
            "a|b",
            "--no-solve",
            "--out-dir",
            str(t.parent),
        ],
    )
    assert r.exit_code == 2 and "row 2 reads 'abc'" in r.output and "'a'" in r.output


def test_replay_refuses_duplicate_and_unmatched_ids(tmp_path: Path):
    mix = ["run,a,b"] + [f"{i},{0.1 * i},{1 - 0.1 * i}" for i in range(1, 9)]
    met = ["run,loss_x"] + [f"{i},{1 + i}" for i in range(1, 9)]
    base = ["replay", str(_table(tmp_path / "m.csv", mix)), "--id", "run", "--no-solve"]
    base += ["--out-dir", str(tmp_path / "out"), "--model", "linear", "--repeats", "1"]
    ok = runner.invoke(app, [*base, "--metrics", str(_table(tmp_path / "y.csv", met))])
    assert ok.exit_code == 0, ok.output
    dup = runner.invoke(app, [*base, "--metrics", str(_table(tmp_path / "y.csv", [*met, "3,9"]))])
    assert dup.exit_code == 2 and "id '3' appears twice" in dup.output
    part = runner.invoke(app, [*base, "--metrics", str(_table(tmp_path / "y.csv", met[:5]))])
    assert part.exit_code == 2 and "4 of 8 ids have no row" in part.output
    # Ids as text in one table and as numbers in the other are the same runs.
    import polars as pl

    pl.DataFrame(
        {"run": [str(i) for i in range(1, 9)], "loss_x": [1.0 * i for i in range(8)]}
    ).write_parquet(tmp_path / "y.parquet")
    mixed = runner.invoke(app, [*base, "--metrics", str(tmp_path / "y.parquet")])
    assert mixed.exit_code == 0, mixed.output


def test_one_replay_table_is_checked_as_two_are(tmp_path: Path):
    """A single table: duplicate ids (also after stripping spaces), a repeated header, a
    semicolon-separated file, targets the same in every run."""
    rows = ["run,a,b,loss_x"] + [f"r{i},{0.1 * i},{1 - 0.1 * i},{1 + i}" for i in range(1, 9)]
    base = ["--domains", "a|b", "--no-solve", "--model", "linear", "--repeats", "1"]
    base += ["--out-dir", str(tmp_path / "o")]

    def replay(lines: list[str]):
        return runner.invoke(app, ["replay", str(_table(tmp_path / "t.csv", lines)), *base])

    assert replay(rows).exit_code == 0
    for bad, needle in [
        ([*rows, "r3,0.5,0.5,2"], "id 'r3' appears twice"),
        ([*rows, " r3 ,0.5,0.5,2"], "id 'r3' appears twice"),
        (["run,a,b,a,loss_x", *(r + ",1" for r in rows[1:])], "column 'a' appears twice"),
        ([r.replace(",", ";") for r in rows], "separated by semicolons"),
    ]:
        r = replay(bad)
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert needle in " ".join(r.output.split()), r.output
    flat = [*rows[:1], *(r.rsplit(",", 1)[0] + ",2.5" for r in rows[1:])]
    r = replay(flat)
    assert r.exit_code == 2 and "every target is the same in every run" in r.output
    both = ["run,a,b,loss_x,loss_y", *(r + ",7" for r in rows[1:])]
    r = runner.invoke(
        app,
        [
            "replay",
            str(_table(tmp_path / "t.csv", both)),
            *base[:-2],
            "--out-dir",
            str(tmp_path / "o2"),
        ],
    )
    assert r.exit_code == 0 and "loss_y is the same in every run" in " ".join(r.output.split())


def test_bad_numbers_and_places_are_one_line(tmp_path: Path):
    def one_line(r, *needles):
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        errors = [x for x in r.output.splitlines() if x.startswith("error:")]
        assert len(errors) == 1 and r.output.rstrip().endswith(errors[0].rstrip()), r.output
        for n in needles:
            assert n in r.output, r.output

    rows = ["run,a,b,loss_x"] + [f"{i},{0.1 * i},{1 - 0.1 * i},{1 + i}" for i in range(1, 9)]
    t = _table(tmp_path / "t.csv", rows)
    base = ["replay", str(t), "--domains", "a|b", "--no-solve", "--out-dir", str(tmp_path / "o")]
    fast = ["--model", "linear", "--repeats", "1"]
    one_line(runner.invoke(app, [*base, "--folds", "0"]), "--folds")
    one_line(runner.invoke(app, [*base, "--model", "banana"]), "--model", "unknown surrogate")
    one_line(runner.invoke(app, [*base, *fast, "--folds", "9"]), "too few")
    pred = _table(tmp_path / "p.csv", ["a,b", "0.5,nan"])
    one_line(runner.invoke(app, [*base, *fast, "--predict", str(pred)]), "row 1", "'b'")
    empty = _table(tmp_path / "e.csv", ["a,b"])
    one_line(runner.invoke(app, [*base, *fast, "--predict", str(empty)]), "no rows")
    # A cache folder that is a file; a run directory one cannot write into.
    (tmp_path / "cachefile").write_text("x")
    cfg = small_config(tmp_path)
    cfg["run"]["cache_dir"] = str(tmp_path / "cachefile")
    one_line(runner.invoke(app, ["data", str(write_config(tmp_path / "c.yaml", cfg)), "-q"]))
    one_line(runner.invoke(app, ["eval", str(tmp_path / "x.pt"), "--n", "-1"]), "not found")


def test_broken_ledger_and_runs_table_are_reported(tmp_path: Path):
    import numpy as np
    import polars as pl

    from automixer.errors import AutomixerError
    from automixer.runs_table import validate

    (tmp_path / "ledger.db").write_bytes(b"")
    with pytest.raises(AutomixerError, match=r"empty \(0 bytes\)"):
        Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", "s", create=True)
    row = {
        "run_id": "m000", "name": "n", "replicate_of": None, "status": "done", "seed": 0,
        "tokens": 1, "seconds": 1.0, "loss_first": 1.0, "loss_last": 1.0,
        "config_hash": "h", "commit": "c", "error": None,
        "weight:a": 0.7, "weight:b": 0.7, "domain:a:bpb": 1.0,
    }  # fmt: skip
    with pytest.raises(AutomixerError, match="m000': its weights are not a mixture"):
        validate(pl.DataFrame([row]), ["a", "b"])
    row |= {"weight:b": 0.3, "domain:a:bpb": float(np.inf)}
    with pytest.raises(AutomixerError, match="'domain:a:bpb' is inf"):
        validate(pl.DataFrame([row]), ["a", "b"])
