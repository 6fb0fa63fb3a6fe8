"""`runs.parquet`: one row per proxy run, with a declared schema checked on read and write.

Columns: `run_id`, `name` (natural, uniform, dirichlet-7, replicate-1, ...), `replicate_of`,
`status` (done / failed), `seed`, `tokens`, `seconds`, `loss_first` and `loss_last` (the training
loss curve's ends), `config_hash`, `commit`, `error`, one `weight:<domain>` column per domain
and one column per metric; a branched sweep's table also has `parent` (a branch's main run).
Metric names follow one scheme (see `automixer.evals.scoring`):
`suite:<suite>:bpb`, `suite:<suite>:acc`, `ability:<ability>:bpb`, `domain:<domain>:bpb`, ...
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from automixer.errors import AutomixerError
from automixer.io import atomic_path

WEIGHT_PREFIX = "weight:"
BASE_SCHEMA: dict[str, type[pl.DataType]] = {
    "run_id": pl.String,
    "name": pl.String,
    "replicate_of": pl.String,
    "status": pl.String,
    "seed": pl.Int64,
    "tokens": pl.Int64,
    "seconds": pl.Float64,
    "loss_first": pl.Float64,
    "loss_last": pl.Float64,
    "config_hash": pl.String,
    "commit": pl.String,
    "error": pl.String,
}
OPTIONAL_SCHEMA: dict[str, type[pl.DataType]] = {"parent": pl.String}
"""Columns some sweeps have: a branched sweep's `parent` (the main-phase run of a branch)."""
METRIC_KINDS = ("suite:", "ability:", "domain:")


def weight_column(domain: str) -> str:
    return f"{WEIGHT_PREFIX}{domain}"


def metric_columns(df: pl.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith(METRIC_KINDS)]


def validate(
    df: pl.DataFrame, domains: Sequence[str], source: str | Path = "runs.parquet"
) -> pl.DataFrame:
    """Check columns and types; return the frame with them cast exactly to the schema."""
    want: dict[str, Any] = {**BASE_SCHEMA, **{weight_column(d): pl.Float64 for d in domains}}
    missing = [c for c in want if c not in df.columns]
    if missing:
        raise AutomixerError(f"missing columns: {', '.join(missing)}", file=source)
    want |= {c: t for c, t in OPTIONAL_SCHEMA.items() if c in df.columns}
    extra = [c for c in df.columns if c not in want and not c.startswith(METRIC_KINDS)]
    if extra:
        raise AutomixerError(f"unexpected columns: {', '.join(extra)}", file=source)
    try:
        out = df.with_columns(
            [pl.col(c).cast(t, strict=True) for c, t in want.items()]
            + [pl.col(c).cast(pl.Float64, strict=True) for c in metric_columns(df)]
        )
    except pl.exceptions.PolarsError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AutomixerError(f"column of the wrong type: {first}", file=source) from None
    if out["run_id"].is_duplicated().any():
        raise AutomixerError("run_id is not unique", file=source)
    done = out.filter(pl.col("status") == "done")
    weights = done.select([weight_column(d) for d in domains]).to_numpy()
    metrics = done.select(metric_columns(done)).to_numpy() if metric_columns(done) else None
    for i, run in enumerate(done["run_id"]):
        w = weights[i]
        if not np.isfinite(w).all() or (w < 0).any() or abs(w.sum() - 1) > 1e-3:
            raise AutomixerError(
                f"run '{run}': its weights are not a mixture ({', '.join(f'{x:.4g}' for x in w)})",
                file=source,
            )
        if metrics is not None and not np.isfinite(metrics[i]).all():
            j = int(np.flatnonzero(~np.isfinite(metrics[i]))[0])
            raise AutomixerError(
                f"run '{run}' is done but its '{metric_columns(done)[j]}' is {metrics[i][j]}",
                file=source,
            )
    return out


def write_runs(df: pl.DataFrame, path: Path, domains: Sequence[str]) -> None:
    df = validate(df, domains, path)
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)


def read_runs(path: Path, domains: Sequence[str]) -> pl.DataFrame:
    if not path.is_file():
        raise AutomixerError("no runs.parquet: run `automixer sweep` first", file=path)
    try:
        df = pl.read_parquet(path)
    except Exception as e:  # polars raises several types for unreadable files
        raise AutomixerError(f"unreadable runs table: {e}", file=path) from None
    return validate(df, domains, path)


def fit_arrays(
    df: pl.DataFrame, domains: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(X, Y, targets, run_ids) from the finished runs; failed runs never enter a fit."""
    done = df.filter(pl.col("status") == "done")
    targets = [c for c in metric_columns(done) if done[c].null_count() < done.height]
    done = done.drop_nulls(targets)
    X = done.select([weight_column(d) for d in domains]).to_numpy()
    Y = done.select(targets).to_numpy()
    return X, Y, targets, done["run_id"].to_list()
