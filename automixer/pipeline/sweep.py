"""`automixer sweep CONFIG` and `automixer worker`: plan the mixtures into the ledger, run the
config's executor with live progress, export runs.parquet."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from rich.console import Console

if TYPE_CHECKING:
    from automixer.adaptive import Optimum

from automixer.config import Config, dump_config, parse_config
from automixer.curation import group_specs
from automixer.data.bundle import DataBundle
from automixer.design import PlannedRun, candidate_mixtures, plan_mixtures, sweep_size_warning
from automixer.errors import AutomixerError
from automixer.io import atomic_write_json
from automixer.pipeline.data import run_data
from automixer.rundir import RunDir
from automixer.runs_table import fit_arrays
from automixer.schedule import Phases, plan_schedules
from automixer.schedule.branched import plan_branched
from automixer.sweep.executors import Job, run_executor
from automixer.sweep.ledger import Ledger
from automixer.sweep.training import data_bundle
from automixer.sweep.worker import (
    check_inputs,
    export_runs,
    storage_url,
    study_name,
    work_on,
    worker_loop,
)
from automixer.tracking import Tracker
from automixer.views import progress_bar
from proxies.checkpoint import looks_whole


def plan(rd: RunDir, bundle: DataBundle) -> list[PlannedRun]:
    """The sweep's mixtures: the design within each domain's repetition cap at the proxy's
    budget, anchors and replicates; written to design.json."""
    config = rd.config
    common = dict(
        n_runs=first_batch(config),
        seed=config.run.seed,
        caps=bundle.loader_caps(config),  # the loader's own rule: no planned mixture is refused
        concentration=config.sweep.concentration,
        min_distance=config.sweep.min_distance,
        anchors=config.sweep.anchors,
        replicates=config.sweep.replicates,
        groups=group_specs(config),
    )
    natural = bundle.natural_weights()
    if config.sweep.design == "branched":  # mains to the boundary, anneals branched off
        planned = plan_branched(
            Phases.of(config),
            natural,
            mains=config.sweep.mains,
            **common,  # type: ignore[arg-type]
        )
    elif config.phases:  # one mixture per phase (the loader's caps hold over the whole run)
        planned = plan_schedules(Phases.of(config), natural, **common)  # type: ignore[arg-type]
    else:
        planned = plan_mixtures(natural, design=config.sweep.design, **common)  # type: ignore[arg-type]
    write_design(rd, planned)
    return planned


def write_design(rd: RunDir, planned: list[PlannedRun], stopped: dict | None = None) -> None:
    atomic_write_json(
        rd.file("design.json"),
        {
            **rd.provenance(),
            **({"stopped": stopped} if stopped else {}),
            "runs": [
                {
                    "run_id": r.run_id,
                    "name": r.name,
                    "seed": r.seed,
                    "replicate_of": r.replicate_of,
                    **({"stage": r.stage} if r.stage != "full" else {}),
                    **({"parent": r.parent} if r.parent else {}),
                    "weights": r.weights,
                }
                for r in planned
            ],
        },
    )


def first_batch(config: Config) -> int:
    """Distinct mixtures of the space-filling design: all of them, or those before the
    adaptive rounds."""
    return config.sweep.n_runs - (config.sweep.rounds - 1) * config.sweep.batch


def round_name(r: int) -> str:
    return f"adaptive-{r}"


def adaptive_round(
    rd: RunDir, bundle: DataBundle, df: pl.DataFrame, r: int
) -> list[PlannedRun] | Optimum:
    """Round r's mixtures: Thompson sampling from a GP fitted to the objective of the finished
    runs, among feasible candidates at least sweep.min_distance from every run so far. Or,
    when `sweep.stop_width` is set and the optimum among the candidates is already tight,
    that optimum: the sweep stops. The same finished runs give the same answer (seeded by the
    run's seed and the round)."""
    # imported here: a sweep without rounds, and its workers, never load the GP's stack
    from automixer.adaptive import optimum, thompson_batch, tight
    from automixer.solve.objective import Objective, resolve_keys
    from automixer.solve.solvers import nearest_distance

    config = rd.config
    X, Y, targets, _ = fit_arrays(df, config.domain_names)
    keys = resolve_keys(config.solve.objective, targets)
    y = Objective.build(targets, keys, Y).value(Y)
    rng = np.random.default_rng([config.run.seed, 0x61646170, r])
    natural = bundle.natural_weights()
    cands = candidate_mixtures(
        natural,
        bundle.loader_caps(config),
        4096,
        rng,
        config.sweep.concentration,
        groups=group_specs(config),
    )
    if config.sweep.stop_width is not None:
        found = optimum(X, y, np.vstack([X, cands]), config.run.seed + r)
        if tight(found, config.sweep.stop_width, len(X), len(config.domain_names)):
            return found
    far = nearest_distance(cands, X)
    cands = cands[far >= config.sweep.min_distance]
    picks = thompson_batch(X, y, cands, min(config.sweep.batch, len(cands)), rng)
    return [
        PlannedRun(
            f"a{r:02d}-{i:02d}",
            round_name(r),
            dict(zip(config.domain_names, map(float, cands[j]), strict=True)),
            config.run.seed + 20_000 + 100 * r + i,
        )
        for i, j in enumerate(picks)
    ]


def check_device(config: Config, config_path: Path) -> None:
    """A device this machine does not have fails every run the same way: say so before
    anything trains (only for workers started here; Ray and `worker` nodes check their own)."""
    import torch

    device = config.proxy.device
    if config.sweep.executor != "local" or device in ("auto", "cpu"):
        return
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise AutomixerError(
                f"'{device}' is not available on this machine "
                f"({torch.cuda.device_count()} CUDA devices)",
                file=config_path,
                field="proxy.device",
            )
    elif device == "mps" and not torch.backends.mps.is_available():
        raise AutomixerError("'mps' is not available here", file=config_path, field="proxy.device")


def run_sweep(
    config_path: Path,
    *,
    console: Console | None = None,
    progress: bool = True,
    max_packs: int | None = None,
    prepared: tuple[RunDir, DataBundle] | None = None,
    retry_failed: bool = True,
) -> Path:
    """Plan and train the sweep (resuming a stopped one; runs that failed are queued again
    unless `retry_failed` is False); `prepared` is the data stage's result when the caller
    already ran it."""
    rd, bundle = prepared or run_data(config_path, progress=progress, console=None)
    config = rd.config
    check_device(config, config_path)
    planned = plan(rd, bundle)
    url = storage_url(config, rd.path)
    say = console.print if console is not None else (lambda *a, **k: None)
    # the whole sweep's mixtures, adaptive rounds included (the first batch is only a part)
    if warning := sweep_size_warning(config.sweep.n_runs, len(config.weight_names)):
        say(f"[yellow]warning:[/] sweep.n_runs: {warning}")
    with Ledger(
        url, study_name(config), heartbeat_s=config.sweep.heartbeat_s, create=True
    ) as ledger:
        ledger.set_meta("config", dump_config(config))
        check_inputs(ledger, bundle)
        retried = ledger.counts()["failed"] if retry_failed else 0
        added = ledger.plan(planned, retry_failed=retry_failed)
        say(
            f"sweep {ledger.study.study_name}: {len(planned)} runs planned ({added} queued"
            + (f", {retried} failed ones again" if retried else "")
            + "), "
            f"{ledger.counts()['done']} already done; ledger in {rd.path}"
        )
        tracker = Tracker.for_run(rd)
        bar = progress_bar("{task.fields[info]}", progress)
        t_start = time.perf_counter()
        tokens_seen = [0]
        out = rd.file("runs.parquet")
        with bar:
            task = bar.add_task("sweep", total=len(planned), info="")

            def tick(tokens: int) -> None:
                tokens_seen[0] += tokens
                c = ledger.counts()
                rate = tokens_seen[0] / max(1e-9, time.perf_counter() - t_start)
                bar.update(
                    task,
                    completed=c["done"] + c["failed"],
                    info=f"done {c['done']} failed {c['failed']} running {c['running']} "
                    f"{rate:,.0f} tok/s",
                )
                if tracker is not None:
                    tracker.sync(ledger.records())

            def train_queued() -> None:
                tick(0)
                job = Job(
                    config,
                    bundle,
                    ledger,
                    url,
                    tick,
                    on_first_step=lambda: say("first proxy step done"),
                    max_packs=max_packs,
                    say=say,
                )
                for err in run_executor(job):
                    say(f"[yellow]a worker stopped:[/] {err}")
                tick(0)

            train_queued()
            for r in range(1, config.sweep.rounds):
                left = ledger.counts()
                if left["waiting"] or left["running"]:
                    break  # stopped early (a pack limit, lost workers): `sweep` again resumes
                names = {rec.get("name") for rec in ledger.records().values()}
                if round_name(r) not in names:  # chosen once; a resumed sweep trains it
                    df = export_runs(ledger, config, out)
                    batch = adaptive_round(rd, bundle, df, r)
                    if not isinstance(batch, list):  # an Optimum: tight, stop
                        stopped = {
                            "before_round": r,
                            "runs": int((df["status"] == "done").sum()),
                            "width": batch.width,
                            "stop_width": config.sweep.stop_width,
                        }
                        write_design(rd, planned, stopped)
                        say(
                            f"stopped before round {r}: the optimum's 95% interval is "
                            f"{batch.width:.2f} x the objective's spread over the runs "
                            f"(sweep.stop_width {config.sweep.stop_width}); "
                            f"{(config.sweep.rounds - r) * config.sweep.batch} runs not trained"
                        )
                        break
                    ledger.plan(batch)
                    planned += batch
                    write_design(rd, planned)
                    say(f"round {r}: {len(batch)} mixtures chosen by Thompson sampling")
                else:
                    planned += [
                        PlannedRun(
                            run_id, round_name(r), json.loads(rec["weights"]), int(rec["seed"])
                        )
                        for run_id, rec in sorted(ledger.records().items())
                        if rec.get("name") == round_name(r)
                    ]
                    write_design(rd, planned)
                bar.update(task, total=len(planned))
                train_queued()
        df = export_runs(ledger, config, out)
        if tracker is not None:
            tracker.sync(ledger.records(), force=True)
        c = ledger.counts()
        if config.sweep.save_weights and df.height:
            done = df.filter(df["status"] == "done")["run_id"].to_list()
            lost = [r for r in done if not looks_whole(rd.file("proxies") / f"{r}.pt")]
            if lost:
                say(
                    f"[yellow]warning:[/] {len(lost)} finished runs have no whole proxy file "
                    f"(deleted or truncated?): {', '.join(lost[:5])}; their metrics stand, but "
                    "`automixer eval` cannot score them again"
                )
        say(
            f"runs: {c['done']} done, {c['failed']} failed, {c['running'] + c['waiting']} left; "
            f"{out if df.height else 'no runs.parquet yet'}"
        )
        return rd.path


def join_sweep(url: str, study: str | None, console: Console) -> None:
    """`automixer worker`: work on a sweep whose config is stored in its ledger."""
    with work_on(url, study) as ledger:
        config = parse_config(ledger.meta("config"), source="<ledger>")
        bundle = data_bundle(config, progress=False)
        check_inputs(ledger, bundle)
        console.print(f"joined sweep {ledger.study.study_name}: {ledger.counts()}")
        worker_loop(config, bundle, ledger)
        console.print(f"sweep finished: {ledger.counts()}")
