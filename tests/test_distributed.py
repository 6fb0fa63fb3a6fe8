"""Sweeps across processes on real engines: a shared PostgreSQL ledger and a local Ray instance.

PostgreSQL: `.ci/run` installs it from Debian's packages, starts it and sets
AUTOMIXER_TEST_POSTGRES_URL (a role that may create databases); each test gets its own database.
Without that variable the PostgreSQL tests are skipped, unless AUTOMIXER_REQUIRE_POSTGRES is set
(as in CI), where they fail instead.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from automixer.config import load_config
from automixer.data.pipeline import prepare_data
from automixer.errors import AutomixerError
from automixer.pipeline.sweep import run_sweep
from automixer.rundir import RunDir
from automixer.sweep.executors import Job, run_ray
from automixer.sweep.ledger import Ledger
from automixer.sweep.worker import storage_url, study_name
from tests.test_sweep import _sweep_config

pytestmark = pytest.mark.slow


def test_two_workers_share_one_postgresql_ledger(tmp_path: Path, postgres_url: str, capfd):
    from sqlalchemy.engine import make_url

    base = make_url(postgres_url)
    password = base.password
    # the password as a query parameter: a form the mask must catch too
    url = base.set(password=None, query={"password": password or ""}).render_as_string(
        hide_password=False
    )
    cfg = _sweep_config(
        tmp_path,
        proxy={"pack_size": 1},
        sweep={"n_runs": 6, "replicates": 0, "workers": 2, "storage": url},
    )
    run_dir = run_sweep(cfg, progress=False)
    config = load_config(cfg)
    with Ledger(postgres_url, study_name(config)) as ledger:
        assert ledger.counts() == {"done": 6, "failed": 0, "running": 0, "waiting": 0}
        assert set(ledger.completions().values()) == {1}  # no mixture claimed twice
        assert not password or password not in ledger.meta("config")
    df = pl.read_parquet(run_dir / "runs.parquet")
    assert df.height == 6 and df["run_id"].is_unique().all()
    # The password is in no file of the run and in nothing printed.
    if password:
        for f in run_dir.rglob("*"):
            if f.is_file():
                assert password.encode() not in f.read_bytes(), f
        out, err = capfd.readouterr()
        assert password not in out + err
        assert "***" in (run_dir / "config.yaml").read_text()


def test_ray_executor_runs_the_sweep_on_a_loopback_instance(tmp_path: Path):
    over = {"pack_size": 1}
    local = _sweep_config(tmp_path, proxy=over, sweep={"n_runs": 4, "replicates": 0})
    run_sweep(local, progress=False, max_packs=0)  # plan into the ledger, train nothing
    ray_cfg = _sweep_config(
        tmp_path,
        proxy=over,
        sweep={"n_runs": 4, "replicates": 0, "executor": "ray", "workers": 2},
    )
    config = load_config(ray_cfg)
    rd = RunDir.for_config(config)
    assert rd.path == RunDir.for_config(load_config(local)).path  # where it runs is not hashed
    url = storage_url(config, rd.path)
    seen: list[str] = []

    def tick(_tokens: int) -> None:
        import ray

        if not seen:
            seen.extend(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])

    with Ledger(url, study_name(config)) as planned:
        errors = run_ray(Job(config, prepare_data(config, progress=False), planned, url, tick))
    assert errors == []
    assert seen == ["127.0.0.1"]  # the local instance listens on loopback only
    import ray

    assert not ray.is_initialized()  # the instance it started is shut down
    with Ledger(url, study_name(config)) as ledger:
        assert ledger.counts()["done"] == 4 and set(ledger.completions().values()) == {1}
    # The whole verb with the Ray executor: nothing left to train, the table is written.
    run_sweep(ray_cfg, progress=False)
    assert pl.read_parquet(rd.file("runs.parquet")).height == 4


def test_a_postgresql_restart_mid_sweep_is_ridden_out(tmp_path: Path, postgres_url: str):
    """The ledger's server restarts while a sweep trains: the sweep waits it out (retrying with
    backoff) and finishes every run exactly once, exit 0, no traceback."""
    import shutil
    import subprocess
    import sys
    import time

    from sqlalchemy.engine import make_url

    if not shutil.which("pg_lsclusters"):
        pytest.skip("needs Debian's PostgreSQL cluster tools (.ci/postgres.sh)")
    port = str(make_url(postgres_url).port)
    cluster = next(
        line.split()[:2]
        for line in subprocess.run(
            ["pg_lsclusters", "-h"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        if line.split()[2] == port
    )
    cfg = _sweep_config(
        tmp_path,
        proxy={"pack_size": 1},
        sweep={"n_runs": 6, "replicates": 0, "workers": 1, "storage": postgres_url},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "automixer.cli", "sweep", str(cfg), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    config = load_config(cfg)
    planned = RunDir.for_config(config).file("design.json")  # written once the sweep is planned
    deadline = time.monotonic() + 300
    done = 0
    while done < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if planned.is_file():
            try:
                with Ledger(postgres_url, study_name(config)) as ledger:
                    done = ledger.counts()["done"]
            except AutomixerError:  # the design is written just before the ledger's study
                continue
    assert done >= 1, "the sweep did not start"
    subprocess.run(["pg_ctlcluster", *cluster, "restart"], check=True, capture_output=True)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    with Ledger(postgres_url, study_name(config)) as ledger:
        assert ledger.counts() == {"done": 6, "failed": 0, "running": 0, "waiting": 0}
        assert set(ledger.completions().values()) == {1}
