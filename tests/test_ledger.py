"""One contract for every ledger backend (as optuna tests all its storages with one suite).

SQLite runs in the fast suite; PostgreSQL runs in the slow suite when a server is given
(`.ci/postgres.sh` starts one from Debian's packages and CI requires it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from automixer.design import PlannedRun
from automixer.errors import AutomixerError
from automixer.sweep.ledger import Ledger

RUNS = [PlannedRun(f"m{i:03d}", f"run-{i}", {"a": i / 4, "b": 1 - i / 4}, seed=i) for i in range(5)]


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)],
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


def _open(url: str, **kw: object) -> Ledger:
    return Ledger(url, "contract", create=True, **kw)  # type: ignore[arg-type]


def test_plan_is_idempotent(url: str):
    with _open(url) as ledger:
        assert ledger.plan(RUNS) == 5
        assert ledger.plan(RUNS) == 0  # after a crash, planning again adds nothing
        assert ledger.counts() == {"done": 0, "failed": 0, "running": 0, "waiting": 5}
        assert not ledger.finished()


def test_meta_round_trips(url: str):
    with _open(url) as ledger:
        ledger.set_meta("config", "run: {name: x}\n")
        assert ledger.meta("config") == "run: {name: x}\n"
    with Ledger(url) as again:  # the only sweep in the ledger is found without its name
        assert again.meta("config") == "run: {name: x}\n"


def test_each_run_is_claimed_once_across_workers(url: str):
    with _open(url) as a, _open(url) as b:
        a.plan(RUNS)
        first = a.claim(2)
        second = b.claim(10)
        assert len(first) == 2 and len(second) == 3
        ids = [c.run_id for c in first + second]
        assert sorted(ids) == [r.run_id for r in RUNS]
        assert first[0].weights == RUNS[int(first[0].run_id[1:])].weights
        assert a.claim(1) == [] and b.claim(1) == []


def test_a_run_taken_after_the_queue_was_read_is_skipped(url: str, monkeypatch):
    """Two workers read the same waiting runs; the one that moves a run to RUNNING second is
    refused by the database and takes the next one instead."""
    from optuna.trial import TrialState

    with _open(url) as a, _open(url) as b:
        a.plan(RUNS)
        seen = a.study.get_trials(deepcopy=True, states=(TrialState.WAITING,))
        taken = b.claim(2)
        monkeypatch.setattr(a.study, "get_trials", lambda **_kw: seen)  # a's view: all waiting
        rest = a.claim(5)
        assert len(rest) == 3
        assert sorted(c.run_id for c in taken + rest) == [r.run_id for r in RUNS]


def test_complete_and_fail_are_recorded_once(url: str):
    with _open(url) as ledger:
        ledger.plan(RUNS[:2])
        done, bad = ledger.claim(2)
        assert ledger.complete(done, {"domain:a:bpb": 1.5}, {"seconds": 2.0})
        assert not ledger.complete(done, {"domain:a:bpb": 9.0}, {})  # already finished
        assert ledger.fail(bad, "loss became nan at step 3", {"seconds": 1.0})
        records = ledger.records()
        assert records[done.run_id]["status"] == "done"
        assert '"domain:a:bpb": 1.5' in records[done.run_id]["metrics"]
        assert records[bad.run_id]["status"] == "failed"
        assert records[bad.run_id]["error"] == "loss became nan at step 3"
        assert ledger.finished() and ledger.completions() == {done.run_id: 1}


def test_a_ledger_written_one_attribute_per_field_still_reads(url: str):
    """Ledgers from before the record was one attribute: a resumed sweep keeps its runs."""
    from optuna.trial import TrialState

    with _open(url) as ledger:
        ledger.plan(RUNS[:2])
        old, new = ledger.claim(2)
        for k, v in {"metrics": '{"domain:a:bpb": 1.25}', "seconds": 3.0, "commit": "c0"}.items():
            ledger.storage.set_trial_user_attr(old.trial_id, k, v)  # the old way, field by field
        ledger.storage.set_trial_state_values(old.trial_id, TrialState.COMPLETE, [0.0])
        assert ledger.complete(new, {"domain:a:bpb": 1.5}, {"seconds": 2.0, "commit": "c1"})
        records = ledger.records()
        assert records[old.run_id]["metrics"] == '{"domain:a:bpb": 1.25}'
        assert records[old.run_id]["seconds"] == 3.0 and records[old.run_id]["commit"] == "c0"
        assert records[new.run_id]["seconds"] == 2.0 and records[new.run_id]["commit"] == "c1"
        assert records[new.run_id]["run_id"] == new.run_id and "result" not in records[new.run_id]


def test_a_silent_worker_s_run_goes_back_to_the_queue(url: str):
    with _open(url, heartbeat_s=1) as a, _open(url, heartbeat_s=1) as b:
        a.plan(RUNS[:1])
        (held,) = a.claim(1)
        time.sleep(5.5)  # no heartbeat for more than 4 beats: the run is stale
        (again,) = b.claim(1)
        assert again.run_id == held.run_id
        assert b.complete(again, {"m": 1.0}, {})
        assert not a.complete(held, {"m": 2.0}, {})  # the stale worker's result is refused
        assert b.completions() == {held.run_id: 1}


def test_unknown_sweep_is_one_clear_error(url: str):
    with _open(url):
        pass
    with pytest.raises(AutomixerError, match="no sweep 'other-"):
        Ledger(url, f"other-{uuid.uuid4().hex[:6]}")
