"""What people see: the cross-validation table, a solution with its honesty checks, and the
progress bar of long work."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from automixer.data.bundle import DataBundle
    from automixer.solve import Solution


def progress_bar(info: str, enabled: bool, *, plain: bool | None = None) -> Any:
    """A bar on stderr: the task's description, the bar, `info` (a rich column template over
    the task's fields), elapsed time and the estimate of what is left. Where stderr is not a
    terminal (a log file, a scheduler, CI), plain timestamped lines instead (`PlainProgress`);
    `plain` forces one or the other."""
    if plain if plain is not None else not sys.stderr.isatty():
        return PlainProgress(info, enabled=enabled)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn(info),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def data_progress(enabled: bool) -> Any:
    """The data stage's bars (rich in a terminal), or plain timestamped lines in a log."""
    if not sys.stderr.isatty():  # a log: plain timestamped lines (automixer.views)
        return PlainProgress(enabled=enabled)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


@contextlib.contextmanager
def fit_progress(what: str, enabled: bool = True) -> Iterator[None]:
    """Progress of the surrogate fits inside the block (`automixer.surrogates.progress`): the
    GP's learning rounds and the kernels still learning, the other models' fits done."""
    from automixer.surrogates.progress import listening

    bar = progress_bar("{task.fields[info]}", enabled)
    with bar:
        task = bar.add_task(what, total=None, info="")

        def heard(model: str, done: int, of: int) -> None:
            info = (
                f"gp: round {done}, {of} kernels still learning"
                if model == "gp"
                else f"{model}: {done} of {of} fits"
            )
            bar.update(task, info=info)

        with listening(heard):
            yield


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    fields: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished: bool = False


class PlainProgress:
    """Progress as plain lines for a log: every `interval` seconds (and when a task ends), one
    timestamped line per unfinished task: its description, done of total, `info` (the same
    template as the bar's), the time elapsed and the estimate of what is left. The part of
    rich's `Progress` that automixer uses: add_task, update, advance, tasks."""

    def __init__(
        self, info: str = "", *, enabled: bool = True, interval: float = 20.0, stream: Any = None
    ) -> None:
        self.info, self.enabled, self.interval = info, enabled, interval
        self.stream = stream
        self.tasks: list[_Task] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PlainProgress:
        if self.enabled:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._write(final=True)

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        with self._lock:
            self.tasks.append(_Task(description, total, fields=dict(fields)))
            return len(self.tasks) - 1

    def update(
        self,
        task: int,
        *,
        completed: float | None = None,
        total: float | None = None,
        advance: float | None = None,
        **fields: Any,
    ) -> None:
        with self._lock:
            t = self.tasks[task]
            if total is not None:
                t.total = total
            if completed is not None:
                t.completed = completed
            if advance is not None:
                t.completed += advance
            t.fields.update(fields)

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def _write(self, final: bool = False) -> None:
        if not self.enabled:
            return
        stream = self.stream or sys.stderr
        with self._lock:
            for t in self.tasks:
                if t.finished:
                    continue
                t.finished = final or (t.total is not None and t.completed >= t.total)
                stream.write(_plain_line(t, self.info) + "\n")
        stream.flush()


def _plain_line(t: _Task, info: str) -> str:
    elapsed = time.monotonic() - t.started
    if t.total is not None:
        done = f"{t.completed:,.0f}/{t.total:,.0f}"
    else:
        done = f"{t.completed:,.0f}" if t.completed else ""
    left = ""
    if t.total and 0 < t.completed < t.total:
        left = f", about {_clock(elapsed * (t.total - t.completed) / t.completed)} left"
    try:
        text = info.format(task=t) if info else ""
    except (AttributeError, KeyError, IndexError, ValueError):
        text = ""
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    body = " ".join(x for x in (done, text) if x)
    return f"{stamp} {t.description}: {body} ({_clock(elapsed)}{left})"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def print_solution(
    sol: Solution, console: Console, run_ids: Sequence[str] | None = None, weights: bool = True
) -> None:
    """The solution's weights (unless `weights` is False: a schedule's are shown by
    `print_phasing`), its objective with the interval, the best run and the distance check."""
    if weights:
        t = Table(title=f"optimal mixture ({sol.method})", title_justify="left")
        t.add_column("domain")
        t.add_column("weight", justify="right")
        for d, w in sorted(sol.weights_dict().items(), key=lambda kv: -kv[1]):
            t.add_row(d, f"{w:.4f}")
        console.print(t)
    interval = sol.interval()
    iv = f" [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else ""
    if interval is None and sol.level is not None:
        from automixer.surrogates.intervals import min_runs

        iv = f" (no {sol.level:.0%} interval: it needs at least {min_runs(sol.level)} runs)"
    if sol.optimism is not None:
        console.print(
            f"predicted objective {sol.objective:+.3f}; a new run here is expected at "
            f"{sol.expected:+.3f}{iv} (standardised; higher is better): the optimism of "
            f"picking it, {sol.optimism:+.3f}, measured by cross-validation (the mean error of "
            f"the {sol.optimism_runs} out-of-fold runs predicted at least as high, "
            f"{sol.optimism_picks} repeats), is taken out"
        )
    else:
        console.print(
            f"predicted objective {sol.objective:+.3f}{iv} (standardised; higher is better)"
        )
    if sol.objective_lcb is not None:
        console.print(
            f"solved for its lower confidence bound {sol.objective_lcb:+.3f} (mean - "
            f"{sol.lcb_k:.2f} x sd {sol.objective_sd:.3f}, the surrogates' own uncertainty)"
        )
    if sol.best_run is not None:
        label = run_ids[sol.best_run] if run_ids else str(sol.best_run)
        console.print(
            f"best observed run {label}: measured {sol.best_run_objective:+.3f}, "
            f"predicted {sol.best_run_predicted:+.3f}; optimism gap "
            f"{sol.optimism_gap:+.3f}"
        )
    if sol.nearest_distance is not None:
        reach = (
            f"; accuracy measured up to {sol.held_out_reach:.3f}"
            if sol.held_out_reach is not None
            else ""
        )
        console.print(
            f"nearest trained run at total-variation distance "
            f"{sol.nearest_distance:.3f} (the runs' typical spacing {sol.typical_distance:.3f}"
            + (f", the trust region {sol.trust_radius:.3f}" if sol.trust_radius is not None else "")
            + reach
            + ")"
        )
    for note in sol.warnings:
        console.print(f"[yellow]warning:[/] {note}")


def print_phasing(phasing: Any, console: Console) -> None:
    """A schedule (`automixer.schedule.solve.Phasing`): each phase's own mixture, the total
    over the run, the best constant mix, and the predicted gain of phasing."""
    data = phasing.to_dict()
    t = Table(title=f"optimal schedule ({phasing.schedule.method})", title_justify="left")
    t.add_column("domain")
    for p in data["phases"]:
        t.add_column(f"{p['name']} ({p['share']:g})", justify="right")
    t.add_column("whole run", justify="right")
    t.add_column("best constant", justify="right")
    for d in data["total"]:
        t.add_row(
            d,
            *(f"{p['weights'][d]:.4f}" for p in data["phases"]),
            f"{data['total'][d]:.4f}",
            f"{data['constant']['weights'][d]:.4f}",
        )
    console.print(t)
    gain = data["gain"]
    iv = (
        f" [{gain['lo']:+.3f}, {gain['hi']:+.3f}] at {gain['level']:g}"
        if gain["lo"] is not None
        else " (no interval: too few runs)"
    )
    null = (
        f"; the same fit and search predict {gain['null_mean']:+.3f} on {gain['null_draws']} "
        "sweeps without a phase effect, taken out"
        if gain.get("null_mean") is not None
        else ""
    )
    console.print(
        f"gain of phasing over the best constant mix: expected {gain['expected']:+.3f}{iv} "
        f"(predicted {gain['predicted']:+.3f}{null}; the constant mix predicts "
        f"{data['constant']['objective']:+.3f})"
    )


def print_fit_summary(result: Any, targets: Sequence[str], console: Console, title: str) -> None:
    """The targets that matter (the objective's, the abilities): the chosen surrogate, its
    honest out-of-fold Spearman, and the signal over seed noise."""
    snr = {r["target"]: r["signal_to_noise"] for r in result.signal.iter_rows(named=True)}
    show = Table(title=title, title_justify="left")
    for col in ("target", "chosen", "oof spearman", "signal / noise"):
        show.add_column(col, justify="left" if col in ("target", "chosen") else "right")
    for t in targets:
        ratio = snr.get(t)
        show.add_row(
            t,
            result.choice[t],
            f"{result.honest[t]:.3f}",
            "-" if ratio is None or ratio != ratio else f"{ratio:.1f}",
        )
    console.print(show)


def print_cv_table(table: pl.DataFrame, console: Console, title: str) -> None:
    show = Table(title=title, title_justify="left")
    for col in ("target", "model", "spearman", "sd", "rmse"):
        show.add_column(col, justify="left" if col in ("target", "model") else "right")
    for row in table.iter_rows(named=True):
        show.add_row(
            row["target"],
            row["model"],
            f"{row['spearman']:.4f}",
            f"{row['spearman_sd']:.4f}",
            f"{row['rmse']:.4g}",
        )
    console.print(show)


def print_domains(bundle: DataBundle, console: Console) -> None:
    table = Table(title="domains", title_justify="left")
    for col, justify in [
        ("domain", "left"),
        ("docs", "right"),
        ("train tok", "right"),
        ("val tok", "right"),
        ("bytes/tok", "right"),
        ("natural", "right"),
        ("dups", "right"),
        ("contam. docs", "right"),
        ("eval items found", "right"),
        ("licence", "left"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    natural = bundle.natural_weights()
    for d, v in bundle.domains.items():
        rate = f"{v.contamination_rate:.2%}" if v.checked else "not checked"
        table.add_row(
            d,
            f"{v.train.documents + v.val.documents:,}",
            f"{v.train.tokens:,}",
            f"{v.val.tokens:,}",
            f"{v.bytes_per_token:.2f}",
            f"{natural[d]:.3f}",
            f"{v.duplicates:,}",
            rate,
            f"{len(v.items)}" if v.checked else "-",
            v.licence,
        )
    console.print(table)
    console.print(
        f"tokenizer: {bundle.tokenizer_path} (vocab {bundle.tokenizer.get_vocab_size()}, "
        f"hash {bundle.tokenizer_hash}); eval items checked: {bundle.eval_items_checked}"
    )
    found = bundle.contaminated_items
    if found:
        console.print(
            f"{len(found)} eval items share a word n-gram with the training corpora"
            " and are left out of scoring (listed in manifest.json): "
            + ", ".join(list(found)[:5])
            + (" ..." if len(found) > 5 else "")
        )
    short = bundle.unchecked_items
    if short:
        console.print(
            f"{len(short)} eval items are too short (under 6 words) to check for contamination;"
            " they are scored (listed in manifest.json, unchecked_items): "
            + ", ".join(short[:5])
            + (" ..." if len(short) > 5 else "")
        )


def _kind(name: str) -> str:
    return name.split(":", 1)[0]


def metrics_table(
    columns: Mapping[str, Mapping[str, float]],
    *,
    title: str,
    best: Mapping[str, str] | None = None,
    counts: Mapping[str, int] | None = None,
) -> Table:
    """Metrics by row (suites, then abilities, then domains), one column per model; `best`
    marks the winning column of a row."""
    names: list[str] = []
    for col in columns.values():
        names.extend(n for n in col if n not in names)
    order = {"objective": 0, "suite": 1, "ability": 2, "domain": 3}
    names.sort(key=lambda n: (order.get(_kind(n), 4), n))
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    if counts is not None:
        table.add_column("items", justify="right")
    for c in columns:
        table.add_column(c, justify="right")
    if best is not None:
        table.add_column("best")
    for n in names:
        row = [n]
        if counts is not None:
            suite = n.split(":")[1] if _kind(n) == "suite" else ""
            row.append(str(counts.get(suite, "")))
        row += [f"{columns[c][n]:.4f}" if n in columns[c] else "-" for c in columns]
        if best is not None:
            row.append(best.get(n, ""))
        table.add_row(*row)
    return table
