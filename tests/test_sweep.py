"""The sweep: design, ledger and runner on real processes and a real (SQLite) database."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from automixer.cli import app
from automixer.config import load_config
from automixer.design import coverage, plan_mixtures
from automixer.errors import AutomixerError
from automixer.pipeline.sweep import run_sweep
from automixer.rundir import RunDir
from automixer.sweep.ledger import Ledger, mask_url
from automixer.sweep.worker import storage_url, study_name
from tests.conftest import small_config, write_config


def _sweep_config(tmp: Path, **over: object) -> Path:
    cfg = small_config(tmp)
    cfg["proxy"] = {
        "preset": "tiny",
        "tokens": 4096,
        "seq_len": 32,
        "batch_size": 8,
        "pack_size": 3,
    }
    cfg["sweep"] |= {"n_runs": 5, "replicates": 1, "heartbeat_s": 1, "min_distance": 0.01}
    cfg["evals"] = {"suites": ["arc_easy", "gsm8k"], "n_per_suite": 4}
    cfg["solve"] = {"objective": {"math": 0.5, "stem": 0.5}}  # the abilities these suites score
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return write_config(tmp / "sweep.yaml", cfg)


def _ledger(path: Path) -> Ledger:
    config = load_config(path)
    rd = RunDir.for_config(config)
    return Ledger(storage_url(config, rd.path), study_name(config), heartbeat_s=1)


def test_design_anchors_caps_distance_and_replicates():
    natural = {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}
    runs = plan_mixtures(
        natural,
        n_runs=30,
        seed=0,
        caps={"a": 1, "b": 1, "c": 1, "d": 0.2},
        min_distance=0.05,
        anchors={"code_heavy": {"a": 0.9, "b": 0.1}},
        replicates=3,
    )
    assert [r.name for r in runs[:3]] == ["natural", "uniform", "code_heavy"]
    assert len(runs) == 33 and sum(r.replicate_of is not None for r in runs) == 3
    W = np.array([list(r.weights.values()) for r in runs])
    assert np.allclose(W.sum(1), 1) and np.all(W[:, 3] <= 0.2 + 1e-9)
    assert runs[1].weights["d"] <= 0.2 + 1e-9  # uniform, capped
    assert coverage(runs)["min_nn_distance"] >= 0.05 - 1e-9
    again = plan_mixtures(
        natural,
        n_runs=30,
        seed=0,
        caps={"a": 1, "b": 1, "c": 1, "d": 0.2},
        min_distance=0.05,
        anchors={"code_heavy": {"a": 0.9, "b": 0.1}},
        replicates=3,
    )
    assert [r.weights for r in again] == [r.weights for r in runs]
    sobol = plan_mixtures(natural, n_runs=12, seed=1, design="sobol", replicates=0)
    assert len(sobol) == 12
    with pytest.raises(AutomixerError, match="min_distance"):
        plan_mixtures(natural, n_runs=50, seed=0, min_distance=0.9, max_tries=500)


def test_sweep_trains_and_writes_runs_table(tmp_path: Path):
    cfg = _sweep_config(tmp_path)
    run_dir = run_sweep(cfg, progress=False)
    df = pl.read_parquet(run_dir / "runs.parquet")
    assert df.height == 6 and set(df["status"]) == {"done"}
    assert df["run_id"].is_unique().all()
    for col in [
        "weight:code",
        "domain:bible:bpb",
        "suite:arc_easy:acc",
        "suite:gsm8k:bpb",
        "ability:math:bpb",
        "loss_first",
        "loss_last",
    ]:
        assert col in df.columns
    assert (df["loss_last"] < df["loss_first"]).all()
    assert df.filter(pl.col("name") == "replicate-1")["replicate_of"].to_list() == ["m000"]
    assert set(df["config_hash"]) == {RunDir.open(run_dir).config_hash}
    # Run again: nothing left to train, same table.
    run_sweep(cfg, progress=False)
    assert pl.read_parquet(run_dir / "runs.parquet").equals(df)
    # Every finished proxy is kept; `automixer eval` on one reproduces its row of the table.
    files = sorted((run_dir / "proxies").glob("*.pt"))
    assert [f.stem for f in files] == sorted(df["run_id"])
    row = df.filter(pl.col("run_id") == files[2].stem).row(0, named=True)
    out = tmp_path / "m.json"
    res = CliRunner().invoke(
        app, ["eval", str(files[2]), "--json", str(out), "--config", str(cfg), "-q"]
    )
    assert res.exit_code == 0, res.output
    assert "ability:math:bpb" in res.output and "suite:arc_easy:acc" in res.output
    got = json.loads(out.read_text())["metrics"]
    metric_cols = [c for c in df.columns if c.split(":")[0] in ("suite", "ability", "domain")]
    assert sorted(got) == sorted(metric_cols)
    for k in metric_cols:
        assert got[k] == pytest.approx(row[k], rel=1e-4, abs=1e-6), k

    _hostile_embedded_config(files[0], tmp_path)
    files[1].unlink()  # a deleted proxy file is reported, not silently forgotten
    files[2].write_bytes(files[2].read_bytes()[:-100])  # and a truncated one
    again = CliRunner().invoke(app, ["sweep", str(cfg), "-q"])
    flat = " ".join(again.output.split())
    assert again.exit_code == 0 and "2 finished runs have no whole proxy file" in flat
    assert not list((run_dir / "proxies").glob(".*.pending"))  # nothing left half-kept


def _hostile_embedded_config(proxy: Path, tmp_path: Path) -> None:
    """A proxy file whose embedded config points at files and folders elsewhere: eval reads
    and writes none of them (the config is data; its domains need a trusted --config)."""
    import torch
    import yaml

    payload = torch.load(proxy, weights_only=True)
    cfg = yaml.safe_load(payload["config"])
    outside = tmp_path / "elsewhere"
    (outside / "secret").mkdir(parents=True)
    (outside / "secret" / "notes.txt").write_text("private text " * 100)
    cfg["run"]["cache_dir"] = str(outside / "cache")
    cfg["run"]["out_dir"] = str(outside / "runs")
    cfg["domains"][0] = {"name": "code", "files": [str(outside / "secret" / "*.txt")]}
    cfg["evals"]["files"] = [str(outside / "secret" / "notes.txt")]
    payload["config"] = yaml.safe_dump(cfg)
    torch.save(payload, tmp_path / "tampered.pt")
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "tampered.pt"), "-q"])
    assert res.exit_code == 0, res.output
    assert "--config" in res.output  # says why its domains were not scored
    assert not (outside / "cache").exists() and not (outside / "runs").exists()


def test_eval_refuses_what_is_not_a_proxy_file(tmp_path: Path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Boom()))
    (tmp_path / "text.pt").write_text("hello")
    import torch

    torch.save({"state": {}}, tmp_path / "other.pt")
    for name, msg in [
        ("missing.pt", "proxy file not found"),
        ("evil.pt", "not a readable proxy file"),
        ("text.pt", "not a readable proxy file"),
        ("other.pt", "not an automixer proxy file"),
    ]:
        res = CliRunner().invoke(app, ["eval", str(tmp_path / name)])
        assert res.exit_code == 2, res.output
        assert msg in res.output and "Traceback" not in res.output
    assert not (tmp_path / "pwned").exists()


def test_interrupted_sweep_resumes_without_training_twice(tmp_path: Path):
    cfg = _sweep_config(tmp_path)
    run_sweep(cfg, progress=False, max_packs=1)
    ledger = _ledger(cfg)
    assert ledger.counts()["done"] == 3 and ledger.counts()["waiting"] == 3
    run_sweep(cfg, progress=False)
    assert ledger.counts() == {"done": 6, "failed": 0, "running": 0, "waiting": 0}
    assert set(ledger.completions().values()) == {1}


def test_nan_runs_are_recorded_as_failed(tmp_path: Path):
    cfg = _sweep_config(
        tmp_path, proxy={"lr": 1e12, "adam_lr": 1e12}, sweep={"n_runs": 3, "replicates": 0}
    )
    run_dir = run_sweep(cfg, progress=False)
    df = pl.read_parquet(run_dir / "runs.parquet")
    assert df.height == 3 and set(df["status"]) == {"failed"}
    assert all("loss became" in e or "non-finite" in e for e in df["error"])


def test_storage_credentials_are_masked():
    assert "secret" not in mask_url("postgresql://me:secret@db.example:5432/sweeps")
    assert "me" in mask_url("postgresql://me:secret@db.example:5432/sweeps")
    for url in (
        "postgresql://me@db.example/sweeps?password=secret&sslmode=require",
        "postgresql://me@db.example/sweeps?sslpassword=secret",
        "postgresql://db.example/sweeps?user=me&api_key=secret",
    ):
        masked = mask_url(url)
        assert "secret" not in masked and "db.example" in masked, masked
    assert "sslmode=require" in mask_url(
        "postgresql://me@db.example/sweeps?password=secret&sslmode=require"
    )


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "automixer.cli", *args]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path: Path):
    cfg = _sweep_config(tmp_path, proxy={"pack_size": 1}, sweep={"n_runs": 6, "replicates": 0})
    rng = random.Random(0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(3):
        proc = subprocess.Popen(
            _cli("sweep", str(cfg), "-q"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(4, 12))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run(
        _cli("sweep", str(cfg), "-q"), env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ledger = _ledger(cfg)
    assert ledger.counts() == {"done": 6, "failed": 0, "running": 0, "waiting": 0}
    assert set(ledger.completions().values()) == {1}
    df = pl.read_parquet(RunDir.for_config(load_config(cfg)).file("runs.parquet"))
    assert df.height == 6 and df["run_id"].is_unique().all()


@pytest.mark.slow
def test_two_workers_share_one_sqlite_ledger(tmp_path: Path):
    cfg = _sweep_config(
        tmp_path, proxy={"pack_size": 1}, sweep={"n_runs": 6, "replicates": 0, "workers": 2}
    )
    run_sweep(cfg, progress=False)
    ledger = _ledger(cfg)
    assert ledger.counts()["done"] == 6
    assert set(ledger.completions().values()) == {1}
    owners = {}
    for t in ledger.study.get_trials(deepcopy=False):
        rid = t.user_attrs.get("run_id")
        if rid and t.state.name == "COMPLETE":
            assert rid not in owners
            owners[rid] = t.number


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_worker_processes_end_with_a_killed_sweep(tmp_path: Path):
    """SIGKILL to `automixer sweep` takes its worker processes with it (they would otherwise
    train on unseen); a resumed sweep then finishes every run once."""
    cfg = _sweep_config(
        tmp_path,
        proxy={"pack_size": 1, "tokens": 65536},
        sweep={"n_runs": 6, "replicates": 0, "workers": 2},
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    err = tmp_path / "stderr.txt"
    with err.open("wb") as stderr:
        sweep = subprocess.Popen(
            _cli("sweep", str(cfg), "-q"), env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    deadline = time.time() + 300
    workers: set[int] = set()
    while time.time() < deadline and sweep.poll() is None:
        workers = {c for c in _children(sweep.pid) if "spawn_main" in _cmdline(c)}
        if len(workers) == 2 and _ledger(cfg).counts()["running"] >= 1:
            break
        time.sleep(0.5)
    assert len(workers) == 2, err.read_text()[-2000:]
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    time.sleep(3)
    assert not [w for w in workers if Path(f"/proc/{w}").exists() and _alive(w)]
    run_sweep(cfg, progress=False)
    ledger = _ledger(cfg)
    assert ledger.counts() == {"done": 6, "failed": 0, "running": 0, "waiting": 0}
    assert set(ledger.completions().values()) == {1}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_dead_worker_run_is_requeued_and_completed(tmp_path: Path):
    cfg = _sweep_config(
        tmp_path, proxy={"pack_size": 6, "tokens": 65536}, sweep={"n_runs": 5, "replicates": 1}
    )
    run_sweep(cfg, progress=False, max_packs=0)  # plan only
    config = load_config(cfg)
    url = storage_url(config, RunDir.for_config(config).path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    worker = subprocess.Popen(
        _cli("worker", "--storage", url),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ledger = _ledger(cfg)
    deadline = time.time() + 120
    # It claims the pack's six runs one after another; wait until it holds them all.
    while ledger.counts()["running"] < 6 and time.time() < deadline:
        time.sleep(0.2)
    assert ledger.counts()["running"] == 6  # it holds the whole pack
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    again = subprocess.run(
        _cli("worker", "--storage", url), env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert ledger.counts() == {"done": 6, "failed": 0, "running": 0, "waiting": 0}
    assert set(ledger.completions().values()) == {1}


@pytest.mark.slow
def test_adaptive_rounds_go_through_the_ledger_and_resume(tmp_path: Path):
    """sweep.rounds: the design's first batch, then batches chosen by Thompson sampling; a
    sweep stopped in a round resumes it without choosing again or training anything twice."""
    cfg = _sweep_config(tmp_path, sweep={"n_runs": 8, "rounds": 3, "batch": 2})
    run_sweep(cfg, progress=False, max_packs=1)  # stops inside the first batch
    ledger = _ledger(cfg)
    assert ledger.counts()["done"] == 3 and ledger.counts()["waiting"] == 2  # 4 + 1 replicate
    run_sweep(cfg, progress=False, max_packs=2)  # the first batch, round 1, part of round 2
    names = [rec["name"] for rec in ledger.records().values()]
    assert names.count("adaptive-1") == 2 and names.count("adaptive-2") == 2
    before = {r: rec["weights"] for r, rec in ledger.records().items()}
    run_sweep(cfg, progress=False)
    assert ledger.counts() == {"done": 9, "failed": 0, "running": 0, "waiting": 0}
    assert set(ledger.completions().values()) == {1}
    after = {r: rec["weights"] for r, rec in ledger.records().items()}
    assert {r: after[r] for r in before} == before  # round 2 was not chosen again
    df = pl.read_parquet(RunDir.for_config(load_config(cfg)).file("runs.parquet"))
    assert sorted(df.filter(pl.col("name").str.starts_with("adaptive"))["run_id"]) == [
        "a01-00",
        "a01-01",
        "a02-00",
        "a02-01",
    ]
    design = json.loads(RunDir.for_config(load_config(cfg)).file("design.json").read_text())
    assert len(design["runs"]) == 9


@pytest.mark.slow
def test_an_adaptive_sweep_stops_when_its_optimum_is_tight(tmp_path: Path):
    """sweep.stop_width: no round is chosen once the optimum's interval is narrower than the
    threshold (here any interval is) and the sweep has 4 runs per domain (12 here: round 1 is
    still chosen after 10 + 1 replicate); the stop is recorded and holds when resumed."""
    sweep = {"n_runs": 14, "rounds": 3, "batch": 2, "stop_width": 1e3}
    cfg = _sweep_config(tmp_path, sweep=sweep)
    run_sweep(cfg, progress=False)
    ledger = _ledger(cfg)
    assert ledger.counts() == {"done": 13, "failed": 0, "running": 0, "waiting": 0}
    design_file = RunDir.for_config(load_config(cfg)).file("design.json")
    stopped = json.loads(design_file.read_text())["stopped"]
    assert stopped["before_round"] == 2 and stopped["runs"] == 13 and stopped["width"] < 1e3
    run_sweep(cfg, progress=False)  # resumed: the same runs give the same decision
    assert ledger.counts()["done"] == 13 and set(ledger.completions().values()) == {1}
    assert json.loads(design_file.read_text())["stopped"] == stopped


def test_a_run_given_to_another_worker_keeps_that_worker_s_weights(tmp_path: Path):
    """A worker whose run was requeued (it went quiet) and finished elsewhere trains it anyway;
    the ledger refuses its result, and it must not replace proxies/<run>.pt either."""
    from optuna.trial import TrialState

    from automixer.evals.suites import config_tasks
    from automixer.sweep.training import data_bundle
    from automixer.sweep.worker import run_pack

    cfg = _sweep_config(tmp_path, sweep={"n_runs": 3, "replicates": 0})
    run_sweep(cfg, progress=False, max_packs=0)  # planned, nothing trained
    config = load_config(cfg)
    folder = RunDir.for_config(config).file("proxies")
    with _ledger(cfg) as ledger:
        (claim,) = ledger.claim(1)
        folder.mkdir(parents=True, exist_ok=True)
        theirs = folder / f"{claim.run_id}.pt"
        theirs.write_bytes(b"the other worker's weights")
        ledger.storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)  # gone stale
        bundle = data_bundle(config, progress=False)
        tasks = config_tasks(config, exclude=bundle.contaminated_items)
        assert run_pack(config, bundle, [claim], tasks, ledger, "abc") == (0, 0)
    assert theirs.read_bytes() == b"the other worker's weights"
    assert not list(folder.glob(".*.pending"))


def test_a_resume_refuses_data_that_changed_since_the_sweep_started(tmp_path: Path):
    """A data file edited between a partial sweep and its resume (the config, and so its
    hash, unchanged): one line, nothing trained into the old sweep from the new corpus."""
    from automixer.config import DomainSection
    from automixer.data.sources import iter_raw_documents

    notes = tmp_path / "notes.jsonl"
    texts = list(iter_raw_documents(DomainSection(name="b", builtin="bible"), 0))[:60]
    notes.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    cfg = _sweep_config(tmp_path, sweep={"n_runs": 4, "replicates": 0})
    data = yaml.safe_load(cfg.read_text())
    data["domains"][1] = {"name": "notes", "files": [str(notes)]}
    cfg.write_text(yaml.safe_dump(data))
    run_sweep(cfg, progress=False, max_packs=1)
    notes.write_text("".join(json.dumps({"text": t[::-1]}) + "\n" for t in texts))
    result = CliRunner().invoke(app, ["sweep", str(cfg), "-q"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    flat = " ".join(result.output.split())
    assert "the data changed since this sweep started (domain 'notes'" in flat
    with _ledger(cfg) as ledger:
        assert ledger.counts()["done"] == 3  # the first pack only


def test_a_tracked_sweep_is_read_back_by_mlflow_and_tensorboard(tmp_path: Path):
    """Every finished proxy, with its mixture, scores and loss curve, and the fit and solve
    summaries, read with MLflow's and TensorBoard's own readers."""
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from automixer.runs_table import weight_column

    cfg = _sweep_config(
        tmp_path,
        sweep={"n_runs": 8, "replicates": 0},
        proxy={"pack_size": 4},
        surrogate={"cv_folds": 3, "cv_repeats": 1},
        tracking={"backends": ["mlflow", "tensorboard"]},
    )
    run_dir = run_sweep(cfg, progress=False)
    for verb in ("fit", "solve"):
        result = CliRunner().invoke(app, [verb, str(run_dir)])
        assert result.exit_code == 0, result.output
    df = pl.read_parquet(run_dir / "runs.parquet").filter(pl.col("status") == "done")
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")
    config = load_config(cfg)
    experiment = client.get_experiment_by_name(f"t-{RunDir.for_config(config).config_hash}")
    runs = client.search_runs([experiment.experiment_id])
    by_id = {r.data.tags.get("automixer_run_id"): r for r in runs}
    assert set(df["run_id"]) <= set(by_id)
    row = df.row(0, named=True)
    logged = by_id[row["run_id"]]
    assert float(logged.data.params["w.code"]) == pytest.approx(row[weight_column("code")])
    assert logged.data.metrics["ability:math:bpb"] == pytest.approx(row["ability:math:bpb"])
    curve = client.get_metric_history(logged.info.run_id, "train_loss")
    assert len(curve) >= 2 and curve[0].value > curve[-1].value
    summaries = {r.data.tags.get("automixer_summary") for r in runs}
    assert {"fit", "solve"} <= summaries
    events = EventAccumulator(str(run_dir / "tensorboard" / row["run_id"]))
    events.Reload()
    losses = [e.value for e in events.Scalars("train_loss")]
    assert losses == pytest.approx([x.value for x in curve], rel=1e-5)
    # a resumed sweep logs nothing twice
    run_sweep(cfg, progress=False)
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)


@pytest.mark.slow
def test_sigterm_ends_a_sweep_like_an_interrupt(tmp_path: Path):
    """What schedulers send: one line, exit 143, no hidden temporary file left, and the
    sweep resumes to every run done once."""
    cfg = _sweep_config(tmp_path, proxy={"pack_size": 1}, sweep={"n_runs": 6, "replicates": 0})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _cli("sweep", str(cfg), "-q"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    run_dir = RunDir.for_config(load_config(cfg)).path
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (run_dir / "proxies").is_dir():
        time.sleep(0.2)  # the first proxy is being kept
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 143, out
    assert "terminated; finished work is kept" in out and "Traceback" not in out
    assert not [p for p in run_dir.rglob(".*") if p.name.endswith((".tmp", ".pending"))]
    done = subprocess.run(
        _cli("sweep", str(cfg), "-q"), env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with _ledger(cfg) as ledger:
        assert ledger.counts()["done"] == 6 and set(ledger.completions().values()) == {1}


def test_a_stopped_lock_holder_no_longer_freezes_the_sweep(tmp_path: Path):
    """A process stopped (SIGSTOP, a debugger) while holding the SQLite ledger's lock: a
    joining worker waits a bounded time, then says which process holds it, one line, exit 2."""
    cfg = _sweep_config(tmp_path, sweep={"n_runs": 3, "replicates": 0})
    run_sweep(cfg, progress=False, max_packs=0)  # planned, nothing trained
    config = load_config(cfg)
    ledger_db = RunDir.for_config(config).file("ledger.db")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, socket, sys, time\n"
            f"fh = open({str(ledger_db) + '.lock'!r}, 'a+')\n"
            "fcntl.flock(fh, fcntl.LOCK_EX)\n"
            "fh.seek(0); fh.truncate(); fh.write(f'{os.getpid()} {socket.gethostname()}\\n')\n"
            "fh.flush(); print('held', flush=True); time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGSTOP)
        env = {**os.environ, "AUTOMIXER_LOCK_WAIT_S": "2"}
        started = time.monotonic()
        worker = subprocess.run(
            _cli("worker", "--storage", f"sqlite:///{ledger_db}"),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert time.monotonic() - started < 60
        assert worker.returncode == 2, worker.stderr
        lines = [x for x in worker.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "Traceback" not in worker.stderr, worker.stderr
        assert f"process {holder.pid}" in lines[0] and "(stopped)" in lines[0]
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.communicate()
