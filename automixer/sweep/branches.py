"""A branched sweep's two stages in the worker: main-phase runs trained to the last phase's start
and checkpointed, and branches resumed from those checkpoints (`automixer.schedule.branched`).

The checkpoints live in `<run dir>/branches/<main run id>.pt`, one proxy each (a pack of mains
is cut into its proxies), written atomically before the main's run is recorded done: a branch
claimed after its parent finished always finds a whole file. A branch never retrains its main
phase; a branch whose worker died is queued again and resumes from the same checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from automixer.rundir import RunDir
from automixer.sweep.ledger import Claim, Ledger

BRANCHES = "branches"


def branch_dir(config: Any) -> Path:
    return RunDir.for_config(config).file(BRANCHES)


def train_mains(
    config: Any,
    model_cfg: Any,
    ok: Sequence[tuple[Claim, Any]],
    ledger: Ledger,
    info: dict[str, Any],
    tcfg: Any,
    on_log: Callable[[int, list[float], float], None] | None = None,
) -> tuple[int, int]:
    """Train a pack of mains to the boundary, save one checkpoint per main, record them done
    (no metrics: a main is not a row of the runs table). Returns (tokens, done)."""
    from proxies.train import checkpoint_parts, save_parts, train_pack

    folder = branch_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    loaders = [lo for _, lo in ok]
    boundary = loaders[0].decay_start
    pack_file = folder / f".pack-{ok[0][0].trial_id}.pt"
    pack_file.unlink(missing_ok=True)  # a dead worker's leftover: the main restarts from 0
    try:
        results = train_pack(
            model_cfg,
            loaders,
            [c.seed for c, _ in ok],
            tcfg,
            checkpoint=pack_file,
            max_steps=boundary,
            on_log=on_log,
        )
        parts = checkpoint_parts(pack_file)
    finally:
        pack_file.unlink(missing_ok=True)
    tokens = done = 0
    for (c, _), r, part in zip(ok, results, parts, strict=True):
        extra = {
            **info,
            "seconds": r.seconds,
            "tokens": r.tokens,
            "curve": [[step, v] for step, v in r.loss_curve],
        }
        if r.status == "failed":
            ledger.fail(c, r.error or "the main phase failed", extra)
            continue
        save_parts(folder / f"{c.run_id}.pt", [part])
        if ledger.complete(c, {}, extra):
            done += 1
            tokens += r.tokens
    return tokens, done


def resume_point(
    config: Any, claims: Sequence[tuple[Claim, Any]], ledger: Ledger, info: dict[str, Any]
) -> tuple[list[tuple[Claim, Any]], Path | None]:
    """The branches whose parent's checkpoint exists, and one pack checkpoint made of their
    parents' (the branches failing whose parent did not finish)."""
    from proxies.checkpoint import looks_whole
    from proxies.train import checkpoint_parts, save_parts

    folder = branch_dir(config)
    ok, parts = [], []
    read: dict[str, list[dict[str, Any]]] = {}  # each parent's file once, however many branch
    for c, lo in claims:
        path = folder / f"{c.parent}.pt"
        if c.parent not in read and not looks_whole(path):
            ledger.fail(
                c, f"its main-phase run {c.parent} did not finish", {**info, "seconds": 0.0}
            )
            continue
        if c.parent not in read:
            read[str(c.parent)] = checkpoint_parts(path)
        ok.append((c, lo))
        parts.extend(read[str(c.parent)])
    if not ok:
        return [], None
    pack_file = folder / f".branches-{ok[0][0].trial_id}.pt"
    return ok, save_parts(pack_file, parts)
