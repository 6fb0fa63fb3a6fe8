"""The ledger: the durable record of a sweep, kept in an Optuna storage (a real database).

SQLite (a file in the run directory) by default; PostgreSQL (postgresql://...) for several
machines. Each planned mixture is an enqueued trial carrying its run id, weights and seed as
user attributes. A worker claims a run by moving a waiting trial to RUNNING (the storage's state
change, atomic in the database and refused for a trial no longer waiting), records heartbeats
while it trains, and finishes the trial with its metrics (COMPLETE) or its failure reason
(FAIL). A run whose worker stops sending heartbeats is failed by Optuna's stale-trial check and
a copy is queued again; if the lost worker comes back and tries to finish it, the database
refuses, so every planned run completes exactly once.

The storage URL may hold credentials: it is never printed or written (see `mask_url`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from automixer.design import PlannedRun
from automixer.errors import AutomixerError, database_error_line
from automixer.io import mask_url, quiet_optuna


def _with_driver(url: str) -> str:
    """postgresql:// means psycopg (3) here, whichever default the installed SQLAlchemy has."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with quiet_optuna(), warnings.catch_warnings():
        # Heartbeats are recorded by the ledger itself, not by Study.optimize.
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        yield


def _cause(error: BaseException, url: str) -> str:
    """The root cause of a database error in one line, with the URL's secrets taken out (a
    driver's message may quote the connection string)."""
    from sqlalchemy.engine import make_url

    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    text = (str(root).strip().splitlines() or [""])[0][:200]
    try:
        secrets = [make_url(url).password, *make_url(url).query.values()]
    except Exception:
        secrets = []
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= 3:
            text = text.replace(secret, "***")
    return f"{type(root).__name__}: {text}" if text else type(root).__name__


def check_url(url: str, *, create: bool) -> None:
    """A ledger URL a user gave: a database URL SQLAlchemy can read, and, when joining (not
    creating), a SQLite file that exists: joining creates nothing."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        raise AutomixerError(
            "not a database URL (e.g. sqlite:////path/ledger.db or postgresql://host/db)",
            field="--storage",
        ) from None
    if u.get_backend_name() not in ("sqlite", "postgresql", "mysql"):
        raise AutomixerError(
            f"the ledger needs SQLite or PostgreSQL, not '{u.get_backend_name()}'",
            field="--storage",
        )
    missing = not u.database or u.database == ":memory:" or not Path(u.database).is_file()
    if not create and u.get_backend_name() == "sqlite" and missing:
        raise AutomixerError(
            f"no ledger at {u.database or '(no path)'}: start the sweep with `automixer "
            "sweep CONFIG` first, and give its ledger's path",
            field="--storage",
        )


def _check_sqlite_file(url: str) -> None:
    """An existing SQLite ledger that is empty or not a database is an error, not a fresh
    start: retraining everything silently would lose the record of what was done."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return
    path = Path(u.database)
    if path.is_file():
        head = path.read_bytes()[:16]
        if head != b"SQLite format 3\x00":
            what = "empty (0 bytes)" if not head else "not a SQLite database"
            raise AutomixerError(
                f"the ledger is {what}; restore it, or delete it to start the sweep afresh",
                file=path,
            )


def _check_tables(url: str) -> None:
    """A ledger being joined holds optuna's tables. Checked on an engine of our own, disposed
    here: optuna's storage, failing inside its constructor, would leave its connections to the
    garbage collector (a ResourceWarning from the driver, and a connection slot held)."""
    from sqlalchemy import create_engine, inspect

    try:
        engine = create_engine(url)
    except ImportError:
        return  # the storage's constructor names the missing driver
    try:
        found = inspect(engine).has_table("studies") and inspect(engine).has_table("version_info")
    except Exception as e:  # sqlalchemy / driver errors; messages may quote the URL
        raise AutomixerError(f"cannot open the ledger {mask_url(url)}: {_cause(e, url)}") from None
    finally:
        engine.dispose()
    if not found:
        raise AutomixerError(
            f"the ledger {mask_url(url)} holds no automixer sweep (no ledger tables)"
        )


LOCK_WAIT_S = 120.0
"""The longest a process waits for the ledger's lock (planning, claiming, finishing: each holds
it for milliseconds). Past it the wait ends with one line naming the holder: a worker stopped
while holding it (SIGSTOP, a debugger, a paused VM) no longer freezes every other process.
`AUTOMIXER_LOCK_WAIT_S` overrides it."""


def _lock_wait() -> float:
    try:
        return float(os.environ.get("AUTOMIXER_LOCK_WAIT_S", LOCK_WAIT_S))
    except ValueError:
        return LOCK_WAIT_S


STATES = {"T": " (stopped)", "t": " (stopped by a debugger)", "D": " (waiting on I/O)"}
"""Linux process states worth naming when a lock holder does not let go."""


def _holder(lock: str) -> str:
    """Who holds a ledger lock file, as its holder wrote it (pid and host), and whether that
    process is stopped, when it runs on this machine."""
    try:
        pid, host = Path(lock).read_text().split()[:2]
    except (OSError, ValueError):
        return "another process"
    state = ""
    if host == socket.gethostname():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            state = {
                "T": " (stopped)",
                "t": " (stopped by a debugger)",
                "D": " (waiting on I/O)",
            }.get(stat.rsplit(")", 1)[1].split()[0], "")
        except (OSError, IndexError):
            pass
    return f"process {pid} on {host}{state}"


def _lock_timeout(what: str, waited: float) -> AutomixerError:
    return AutomixerError(
        f"the ledger's lock has been held for {waited:.0f} s by {what}; resume or stop it "
        "(AUTOMIXER_LOCK_WAIT_S sets how long to wait)"
    )


@contextlib.contextmanager
def _exclusive(url: str, key: str) -> Iterator[None]:
    """One process at a time for `key` on this ledger: a file lock beside a SQLite file, an
    advisory lock in PostgreSQL (nothing for other databases). The wait is bounded
    (`LOCK_WAIT_S`)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    u = make_url(url)
    limit = _lock_wait()
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
        import fcntl

        lock = f"{u.database}.lock"
        with open(lock, "a+") as fh:
            start = time.monotonic()
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() - start > limit:
                        raise _lock_timeout(_holder(lock), time.monotonic() - start) from None
                    time.sleep(0.02)
            try:
                fh.seek(0)
                fh.truncate()
                fh.write(f"{os.getpid()} {socket.gethostname()}\n")
                fh.flush()
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    elif u.get_backend_name() == "postgresql":
        engine = create_engine(u, pool_pre_ping=True)
        try:
            with engine.connect() as conn:
                k = zlib.crc32(key.encode()) & 0x7FFFFFFF
                start = time.monotonic()
                while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": k}).scalar():
                    if time.monotonic() - start > limit:
                        raise _lock_timeout("another process", time.monotonic() - start)
                    time.sleep(0.05)
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": k})
        finally:
            engine.dispose()
    else:
        yield


RETRY_S = 180.0
"""How long a ledger operation retries a database that does not answer (a PostgreSQL restart,
a network blip) before it gives up with one line; `AUTOMIXER_DB_RETRY_S` overrides it."""

F = TypeVar("F", bound=Callable[..., Any])


def _retrying(fn: F) -> F:
    """Retry a ledger operation on database errors, with backoff, for `RETRY_S` seconds; then
    one line naming the cause. Exactly-once does not rest on it: a claim whose answer was lost
    leaves its run RUNNING without heartbeats, and the stale check queues it again."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            limit = float(os.environ.get("AUTOMIXER_DB_RETRY_S", RETRY_S))
        except ValueError:
            limit = RETRY_S
        start, pause = time.monotonic(), 0.5
        while True:
            try:
                return fn(*args, **kwargs)
            except AutomixerError:
                raise
            except Exception as e:
                line = database_error_line(e)
                if line is None:
                    raise
                if time.monotonic() - start + pause > limit:
                    raise AutomixerError(
                        f"{line} (retried for {time.monotonic() - start:.0f} s); the finished "
                        "runs are kept: run the command again once the database is back"
                    ) from None
                time.sleep(pause)
                pause = min(2 * pause, 10.0)

    return wrapper  # type: ignore[return-value]


RESULT_ATTR = "result"
"""The trial attribute holding a finished run's record (metrics, error, timings) as one JSON
object; ledgers written before it held one attribute per field, and still read."""


def _attrs(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's attributes with its finished record merged in."""
    attrs = dict(trial.user_attrs)
    record = attrs.pop(RESULT_ATTR, None)
    return {**attrs, **json.loads(record)} if record else attrs


@dataclass
class Claim:
    trial_id: int
    """The attempt's trial in the storage (a run queued again gets a new one)."""
    run_id: str
    name: str
    weights: dict[str, float]
    seed: int
    stage: str = "full"
    """'full', or with a branched design 'main' or 'branch' (`PlannedRun.stage`)."""
    parent: str | None = None
    """A branch's main-phase run."""


class Ledger:
    def __init__(
        self,
        url: str,
        study_name: str | None = None,
        *,
        heartbeat_s: float = 30.0,
        create: bool = False,
        max_retry: int = 3,
    ) -> None:
        beat = max(1, round(heartbeat_s))
        url = _with_driver(url)
        self.url = url
        # Creating the tables and the study from several processes at once is serialised.
        lock = _exclusive(url, "automixer-create") if create else contextlib.nullcontext()
        with _quiet(), lock:
            check_url(url, create=create)
            _check_sqlite_file(url)  # under the lock: a ledger being created is not empty
            if not create:
                _check_tables(url)
            try:
                self.storage = RDBStorage(
                    url,
                    skip_table_creation=not create,  # joining a sweep makes no tables
                    heartbeat_interval=beat,
                    grace_period=4 * beat,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                        max_retry=max_retry
                    ),
                    engine_kwargs={"pool_pre_ping": True}
                    if not url.startswith("sqlite")
                    else {"connect_args": {"timeout": 60}},
                )
            except ImportError:
                raise AutomixerError(
                    f"no database driver for the ledger {mask_url(url)}: "
                    "pip install 'automixer[distributed]' (psycopg for PostgreSQL)"
                ) from None
            except Exception as e:  # sqlalchemy / driver errors; messages may quote the URL
                if not create and url.startswith("sqlite"):  # a database, but no ledger
                    raise AutomixerError(
                        f"the ledger {mask_url(url)} holds no automixer sweep (no ledger tables)"
                    ) from None
                raise AutomixerError(
                    f"cannot open the ledger {mask_url(url)}: {_cause(e, url)}"
                ) from None
            try:
                self.study = self._study(study_name, url, create)
            except AutomixerError:
                self.storage.engine.dispose()  # release its connections before the error
                raise
            except Exception as e:  # no tables: a database no sweep was ever planned in
                self.storage.engine.dispose()
                raise AutomixerError(
                    f"the ledger {mask_url(url)} holds no automixer sweep ({type(e).__name__})"
                ) from None
        self.heartbeat_s = beat

    def _study(self, study_name: str | None, url: str, create: bool) -> optuna.Study:
        """The sweep's study: the named one (created if asked), or the only one there is."""
        if study_name is None:
            names = [s.study_name for s in optuna.get_all_study_summaries(self.storage)]
            if len(names) != 1:
                raise AutomixerError(
                    f"the ledger {mask_url(url)} holds {len(names)} sweeps; name one"
                )
            study_name = names[0]
        if create:
            return optuna.create_study(
                storage=self.storage, study_name=study_name, load_if_exists=True
            )
        try:
            return optuna.load_study(study_name=study_name, storage=self.storage)
        except KeyError:
            raise AutomixerError(f"no sweep '{study_name}' in the ledger {mask_url(url)}") from None

    def close(self) -> None:
        """Release the database connections (the ledger itself stays as it is)."""
        self.storage.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- planning -----------------------------------------------------------------------------

    @_retrying
    def set_meta(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, value)

    @_retrying
    def meta(self, key: str) -> Any:
        return self.study.user_attrs.get(key)

    @_retrying
    def plan(self, runs: Sequence[PlannedRun], *, retry_failed: bool = False) -> int:
        """Enqueue the planned runs not in the ledger yet (safe to call again after a crash, and
        from several processes at once: planning holds the ledger's lock, so each run id is
        queued once). With `retry_failed`, runs whose last attempt failed are queued again."""
        with _quiet(), _exclusive(self.url, f"plan-{self.study.study_name}"):
            records = self.records()
            known = {
                r for r, rec in records.items() if not (retry_failed and rec["status"] == "failed")
            }
            added = 0
            for r in runs:
                if r.run_id in known:
                    continue
                self.study.enqueue_trial(
                    {},
                    user_attrs={
                        "run_id": r.run_id,
                        "name": r.name,
                        "weights": json.dumps(r.weights),
                        "seed": r.seed,
                        "replicate_of": r.replicate_of or "",
                        **({"stage": r.stage} if r.stage != "full" else {}),
                        **({"parent": r.parent} if r.parent else {}),
                    },
                    skip_if_exists=False,
                )
                added += 1
        return added

    # -- claiming and finishing ---------------------------------------------------------------

    def _serial(self) -> contextlib.AbstractContextManager[None]:
        """SQLite has no row locks (Optuna's SELECT ... FOR UPDATE is a no-op there), so two
        processes could pop or finish the same trial: hold the ledger's file lock instead.
        PostgreSQL's row locks already serialise them."""
        if self.url.startswith("sqlite"):
            return _exclusive(self.url, "claim")
        return contextlib.nullcontext()

    @_retrying
    def claim(self, n: int) -> list[Claim]:
        """Pop up to `n` waiting runs for this worker (stale runs are requeued first).

        A waiting trial becomes RUNNING through the storage's own state change, which the
        database refuses for a trial that is no longer waiting (what `Study.ask` does, without
        re-reading every waiting trial for each run popped: that made a claim cost grow with
        the queue, 41 ms a run with 256 waiting)."""
        out: list[Claim] = []
        with _quiet(), self._serial():
            fail_stale_trials(self.study)
            waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            parents: dict[str, str] | None = None  # read once, only where branches wait
            for t in sorted(waiting, key=lambda t: t.number):
                if len(out) == n:
                    break
                attrs = t.user_attrs
                if "run_id" not in attrs:
                    continue  # not a planned run (nothing of the ledger's makes one)
                stage = attrs.get("stage", "full")
                if out and stage != out[0].stage:
                    continue  # a pack trains one stage: whole runs, mains or branches
                if attrs.get("parent"):
                    if parents is None:
                        parents = {r: st for r, (st, _) in self._latest().items()}
                    if parents.get(attrs["parent"]) in ("waiting", "running"):
                        continue  # its main phase is not trained yet (a failed one: claimed,
                        # and the worker fails the branch with the reason)
                try:
                    popped = self.storage.set_trial_state_values(t._trial_id, TrialState.RUNNING)
                except optuna.exceptions.UpdateFinishedTrialError:
                    popped = False  # finished meanwhile (another worker, a stale check)
                if not popped:
                    continue  # another worker took it first
                self.storage.record_heartbeat(t._trial_id)
                out.append(
                    Claim(
                        t._trial_id,
                        attrs["run_id"],
                        attrs["name"],
                        json.loads(attrs["weights"]),
                        int(attrs["seed"]),
                        stage,
                        attrs.get("parent") or None,
                    )
                )
        return out

    @contextlib.contextmanager
    def heartbeat(self, claims: Sequence[Claim]) -> Iterator[None]:
        """Record heartbeats for the claimed runs from a background thread while training."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_s):
                for c in claims:
                    with contextlib.suppress(Exception):
                        self.storage.record_heartbeat(c.trial_id)

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def complete(self, claim: Claim, metrics: dict[str, float], info: dict[str, Any]) -> bool:
        """Record a finished run; False if the ledger had already given it to another worker."""
        return self._finish(claim, TrialState.COMPLETE, {"metrics": json.dumps(metrics), **info})

    def fail(self, claim: Claim, error: str, info: dict[str, Any]) -> bool:
        return self._finish(claim, TrialState.FAIL, {"error": error[:2000], **info})

    @_retrying
    def _finish(self, claim: Claim, state: TrialState, attrs: dict[str, Any]) -> bool:
        """Write the record and the final state, straight through the storage: each write is
        refused once the attempt is finished (failed as stale by another worker, or done)."""
        with _quiet(), self._serial():
            try:
                # one write for the whole record (a write per field cost ~30 ms a run); the
                # storage refuses it for a finished attempt (UpdateFinishedTrialError)
                self.storage.set_trial_user_attr(claim.trial_id, RESULT_ATTR, json.dumps(attrs))
                values = [0.0] if state == TrialState.COMPLETE else None
                return bool(self.storage.set_trial_state_values(claim.trial_id, state, values))
            except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
                return False

    # -- reading ------------------------------------------------------------------------------

    def _latest(self) -> dict[str, tuple[str, optuna.trial.FrozenTrial]]:
        """Each planned run id's status and the attempt it comes from: done if any attempt
        completed, else its latest attempt's state (a failed run queued again shows as
        waiting). Only a failed attempt's record is read (for its error)."""
        out: dict[str, tuple[str, optuna.trial.FrozenTrial]] = {}
        for t in self.study.get_trials(deepcopy=False):
            run_id = t.user_attrs.get("run_id")
            if run_id is None:
                continue
            if t.state == TrialState.COMPLETE:
                status = "done"
            elif t.state == TrialState.FAIL and "error" in _attrs(t):
                status = "failed"
            elif t.state == TrialState.RUNNING:
                status = "running"
            elif t.state == TrialState.WAITING:
                status = "waiting"
            else:
                continue  # a stale attempt that was queued again
            prev = out.get(run_id)
            older = prev is not None and (prev[0] == "done" or t.number < prev[1].number)
            if older and status != "done":
                continue
            out[run_id] = (status, t)
        return out

    @_retrying
    def records(self) -> dict[str, dict[str, Any]]:
        """One record per planned run id: its status (see `_latest`) and its attributes."""
        return {r: {"status": status, **_attrs(t)} for r, (status, t) in self._latest().items()}

    @_retrying
    def counts(self) -> dict[str, int]:
        c = {"done": 0, "failed": 0, "running": 0, "waiting": 0}
        for status, _ in self._latest().values():
            c[status] += 1
        return c

    def finished(self) -> bool:
        c = self.counts()
        return c["running"] == 0 and c["waiting"] == 0

    @_retrying
    def completions(self) -> dict[str, int]:
        """How many trials reached COMPLETE per run id (1 for every done run)."""
        out: dict[str, int] = {}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            run_id = t.user_attrs.get("run_id")
            if run_id is not None:
                out[run_id] = out.get(run_id, 0) + 1
        return out
