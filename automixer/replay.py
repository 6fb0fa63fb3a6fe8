"""Bring your own runs: a table of mixture weights and metrics from any system.

`load_runs` reads one table (weights and metrics side by side) or two joined on an id column,
picks the weight columns and the targets (by name, glob pattern, or a family averaged from many
columns), checks that every row is a mixture, and returns arrays ready for the surrogates.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from automixer.errors import AutomixerError
from automixer.schedule.phases import Phases
from automixer.schedule.tables import schedule_weights

ID_CANDIDATES = ("run_id", "run", "id", "index")
_NOT_DATA = {"", "index", "name", "Unnamed: 0"}


MISSING = ["", "NA", "N/A", "nan", "NaN", "NAN", "null", "None"]
"""Cells read as missing (R writes NA, pandas nan); missing targets drop their row, said so."""


def read_table(path: str | Path, option: str = "RUNS_TABLE") -> pl.DataFrame:
    """A CSV or parquet table. Missing-value spellings are read as missing, and a text column
    whose cells are numbers (Inf included) becomes numeric; a column that is mostly numbers with
    a few words in it is an error naming the first such cell."""
    p = Path(path)
    if not p.is_file():
        raise AutomixerError("file not found", file=p, field=option)
    parquet = p.suffix.lower() == ".parquet"
    if not parquet:
        _check_header(p, option)
    try:
        if parquet:
            df = pl.read_parquet(p)
        else:
            df = pl.read_csv(p, infer_schema_length=None, null_values=MISSING)
    except Exception as e:  # polars raises several error types for unreadable files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AutomixerError(f"cannot read table: {first}", file=p, field=option) from None
    for name, dtype in df.schema.items():
        if dtype != pl.String:
            continue
        col = df[name]
        as_number = col.cast(pl.Float64, strict=False)
        text = col.is_not_null() & as_number.is_null()
        if not text.any():
            df = df.with_columns(as_number.alias(name))
        elif int(text.sum()) * 2 < int(col.is_not_null().sum()):
            row = int(text.arg_max() or 0)
            raise AutomixerError(
                f"column '{name}' holds numbers and text: row {row + 1} reads '{col[row]}'",
                file=p,
                field=option,
            )
    return df


def _check_header(path: Path, option: str) -> None:
    """A CSV header automixer can read as written: comma-separated (a semicolon- or
    tab-separated file would read as one column), every column named once (polars would rename
    a repeated name to NAME_duplicated_0 and it would be fitted as a domain of its own)."""
    import csv

    try:
        with path.open(encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return  # read_csv says what is wrong
    if len(header) == 1:
        for sep, name in ((";", "semicolons"), ("\t", "tabs")):
            if sep in header[0]:
                raise AutomixerError(
                    f"the columns are separated by {name}; automixer reads comma-separated "
                    "tables (or parquet)",
                    file=path,
                    field=option,
                )
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise AutomixerError(f"column '{name}' appears twice in the header", file=path)
        seen.add(name)


def _duplicate_ids(df: pl.DataFrame, key: str, path: Path) -> None:
    """Ids must name one run each, spaces around them aside."""
    ids = _id_text(df[key]).str.strip_chars()
    dup = ids.filter(ids.is_duplicated())
    if dup.len():
        raise AutomixerError(f"id '{dup[0]}' appears twice in column '{key}'", file=path)


def _id_text(col: pl.Series) -> pl.Series:
    """Ids as text, whole numbers without a decimal point (1, 1.0 and "1" are one id)."""
    if col.dtype.is_float():
        whole = col.drop_nulls()
        if (whole == whole.round(0)).all():
            return col.cast(pl.Int64).cast(pl.String)
    return col.cast(pl.String)


def _numeric(df: pl.DataFrame) -> list[str]:
    return [c for c, t in df.schema.items() if t.is_numeric()]


def _match(columns: Sequence[str], patterns: Sequence[str], what: str, file: Path) -> list[str]:
    out: list[str] = []
    for pat in [alt for p in patterns for alt in p.split("|")]:
        hits = [c for c in columns if c == pat] or [
            c for c in columns if fnmatch.fnmatchcase(c, pat)
        ]
        if not hits:
            raise AutomixerError(f"{what} pattern '{pat}' matches no column", file=file)
        out.extend(h for h in hits if h not in out)
    return out


@dataclass
class RunsTable:
    domains: list[str]
    X: np.ndarray
    targets: list[str]
    Y: np.ndarray
    ids: list[str] | None
    id_column: str | None
    dropped: int = 0
    """Rows dropped for a missing target value."""
    constant: list[str] = field(default_factory=list)
    """Targets equal in every run: nothing to rank, and an "optimum" of nothing."""
    phases: Phases | None = None
    """A schedule table's phases: `domains` are then `domain@phase`, each weight a share of
    the whole run (`automixer.schedule.tables`)."""


def load_runs(
    runs: str | Path,
    metrics: str | Path | None = None,
    *,
    id_column: str | None = None,
    domains: Sequence[str] = (),
    targets: Sequence[str] = (),
    families: Mapping[str, str] | None = None,
    phases: Mapping[str, float] | None = None,
) -> RunsTable:
    """Weights and targets from one or two tables (see module docstring).

    `domains` and `targets` are column names or glob patterns; `families` maps a new target name
    to a pattern whose matching columns are averaged (e.g. {"math": "minerva_math_*"}).
    Weight columns per phase (`<domain>@<phase>`, `phase_<k>_<domain>`) make a schedule table;
    `phases` gives the phases' token shares when the table holds each phase's own mixture.
    """
    runs_path = Path(runs)
    left = read_table(runs_path)
    families = dict(families or {})
    if metrics is not None:
        metrics_path = Path(metrics)
        right = read_table(metrics_path, "--metrics")
        key = id_column or next(
            (c for c in ID_CANDIDATES if c in left.columns and c in right.columns), None
        )
        if key is None or key not in left.columns or key not in right.columns:
            raise AutomixerError(
                f"no id column to join on (tried {key or ', '.join(ID_CANDIDATES)}); "
                "name one with --id",
                file=metrics_path,
            )
        weight_cols = (
            _match(left.columns, domains, "domain", runs_path)
            if domains
            else [c for c in _numeric(left) if c not in _NOT_DATA and c != key]
        )
        metric_pool = [c for c in _numeric(right) if c not in _NOT_DATA and c != key]
        # Ids compare as text: 1 in one table and "1" in the other are the same run.
        left = left.with_columns(_id_text(left[key]))
        right = right.select([key, *metric_pool]).with_columns(_id_text(right[key]))
        for df, path in ((left, runs_path), (right, metrics_path)):
            _duplicate_ids(df, key, path)
        for a, b, path in ((left, right, metrics_path), (right, left, runs_path)):
            unmatched = a[key].filter(~a[key].is_in(b[key].implode()))
            if unmatched.len():
                raise AutomixerError(
                    f"{unmatched.len()} of {a.height} ids have no row in {path.name} "
                    f"(first: '{unmatched[0]}'); the two tables must describe the same runs",
                    file=path,
                )
        table = left.select([key, *weight_cols]).join(
            right, on=key, how="inner", maintain_order="left"
        )
    else:
        metrics_path = runs_path
        key = (
            id_column
            if id_column in left.columns
            else next((c for c in ID_CANDIDATES if c in left.columns), None)
        )
        if key is not None:
            _duplicate_ids(left, key, runs_path)
        numeric = [c for c in _numeric(left) if c not in _NOT_DATA and c != key]
        if domains:
            weight_cols = _match(numeric, domains, "domain", runs_path)
            metric_pool = [c for c in numeric if c not in weight_cols]
        elif targets or families:
            chosen = set(_match(numeric, targets, "target", runs_path)) if targets else set()
            for pat in families.values():
                chosen |= set(_match(numeric, [pat], "family", runs_path))
            metric_pool = [c for c in numeric if c in chosen]
            weight_cols = [c for c in numeric if c not in chosen]
        else:
            raise AutomixerError(
                "with one table, say which columns are weights (--domains) "
                "or which are targets (--target)",
                file=runs_path,
            )
        table = left
    if not weight_cols:
        raise AutomixerError("no weight columns found", file=runs_path)
    target_cols = (
        _match(metric_pool, targets, "target", metrics_path)
        if targets
        else ([] if families else metric_pool)
    )
    Ycols = [table[c].cast(pl.Float64).to_numpy() for c in target_cols]
    names = list(target_cols)
    for fam, pat in families.items():
        members = _match(metric_pool, [pat], "family", metrics_path)
        Ycols.append(
            table.select(pl.mean_horizontal([pl.col(m).cast(pl.Float64) for m in members]))
            .to_series()
            .to_numpy()
        )
        names.append(fam)
    if not names:
        raise AutomixerError("no target columns found", file=metrics_path)
    Y = np.stack(Ycols, axis=1)
    X = table.select(weight_cols).cast(pl.Float64).to_numpy()
    ids = table[key].cast(pl.String).to_list() if key else None
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise AutomixerError(
            f"row {row + 1} has a missing or non-finite weight in '{weight_cols[col]}'",
            file=runs_path,
        )
    if (X < 0).any():
        row = int(np.flatnonzero((X < 0).any(axis=1))[0])
        raise AutomixerError(f"row {row + 1} has a negative weight", file=runs_path)
    schedule = schedule_weights(weight_cols, X, phases, runs_path)
    if schedule is not None:
        phased, X = schedule
        weight_cols = phased.weight_names
    sums = X.sum(axis=1)
    off = np.abs(sums - 1) > 0.01
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise AutomixerError(
            f"row {row + 1}: weights sum to {sums[row]:.4g}, not 1 "
            "(pick the weight columns with --domains)",
            file=runs_path,
        )
    X = X / sums[:, None]
    keep = np.isfinite(Y).all(axis=1)
    dropped = int((~keep).sum())
    if keep.sum() < 3:
        raise AutomixerError("fewer than 3 runs have every target", file=metrics_path)
    kept = Y[keep]
    constant = [
        n
        for j, n in enumerate(names)
        if np.ptp(kept[:, j]) <= 1e-12 * (1 + np.abs(kept[:, j]).max())
    ]
    return RunsTable(
        weight_cols,
        X[keep],
        names,
        Y[keep],
        [i for i, k in zip(ids, keep, strict=True) if k] if ids else None,
        key,
        dropped,
        constant,
        phased if schedule is not None else None,
    )


def load_mixtures(path: str | Path, domains: Sequence[str]) -> tuple[np.ndarray, pl.DataFrame]:
    """Mixtures to predict: a table with (at least) the training domains' columns. Returns the
    weights and the id columns to carry into the predictions file."""
    p = Path(path)
    df = read_table(p, "--predict")
    missing = [d for d in domains if d not in df.columns]
    if missing:
        raise AutomixerError(
            f"missing weight columns: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else ""),
            file=p,
            field="--predict",
        )
    if df.height == 0:
        raise AutomixerError("no mixtures to predict (the table has no rows)", file=p)
    text = [d for d in domains if not df[d].dtype.is_numeric()]
    if text:
        raise AutomixerError(f"column '{text[0]}' is not numeric", file=p, field="--predict")
    X = df.select(list(domains)).cast(pl.Float64).to_numpy()
    if not np.isfinite(X).all():
        row, col = (int(v) for v in np.argwhere(~np.isfinite(X))[0])
        raise AutomixerError(
            f"row {row + 1} has a missing weight in '{domains[col]}'", file=p, field="--predict"
        )
    sums = X.sum(axis=1)
    if (np.abs(sums - 1) > 0.01).any() or (X < 0).any():
        row = int(np.flatnonzero((np.abs(sums - 1) > 0.01) | (X < 0).any(axis=1))[0])
        raise AutomixerError(f"row {row + 1} is not a mixture (sum {sums[row]:.4g})", file=p)
    ids = [c for c in df.columns if c in ID_CANDIDATES]
    return X / sums[:, None], df.select(ids[:1])
