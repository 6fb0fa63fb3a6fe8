"""Schedule tables from other systems (for `replay`): weight columns per phase, named
`<domain>@<phase>` or `phase_<k>_<domain>`, each phase's weights either its own mixture
(summing to 1; the phases' token shares then come from the command line) or shares of the
whole run (summing to the phase's share, read from the table)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from automixer.errors import AutomixerError
from automixer.schedule.phases import PHASE_SEP, Phases

_AT = re.compile(rf"^(?P<domain>.+){PHASE_SEP}(?P<phase>[^{PHASE_SEP}]+)$")
_PHASE_K = re.compile(r"^phase_(?P<k>\d+)_(?P<domain>.+)$")


def _parse(column: str) -> tuple[str, str, int] | None:
    """(domain, phase, order key) of a schedule column, None for another column."""
    if m := _AT.match(column):
        return m["domain"], m["phase"], -1
    if m := _PHASE_K.match(column):
        return m["domain"], f"phase_{m['k']}", int(m["k"])
    return None


def schedule_weights(
    columns: Sequence[str],
    X: np.ndarray,
    shares: Mapping[str, float] | None,
    file: Path,
) -> tuple[Phases, np.ndarray] | None:
    """The phases of a table's weight columns and its rows as flat schedules (each weight a
    share of the whole run, `Phases.weight_names` order); None when the columns are not a
    schedule's and no shares were given. Inconsistent columns or sums are one line."""
    parsed = [_parse(c) for c in columns]
    if any(p is None for p in parsed):
        if shares:
            bad = columns[[p is None for p in parsed].index(True)]
            raise AutomixerError(
                f"weight column '{bad}' names no phase (expected <domain>@<phase> or "
                "phase_<k>_<domain>)",
                file=file,
                field="--phases",
            )
        return None
    found = [p for p in parsed if p is not None]
    names: list[str] = []
    for _, phase, _ in sorted(found, key=lambda p: p[2]):
        if phase not in names:
            names.append(phase)
    if shares:
        unknown = [p for p in names if p not in shares] + [p for p in shares if p not in names]
        if unknown:
            raise AutomixerError(
                f"phase '{unknown[0]}' is not in both the table ({', '.join(names)}) and "
                f"--phases ({', '.join(shares)})",
                file=file,
                field="--phases",
            )
        names = list(shares)
    if len(names) < 2:
        raise AutomixerError(
            "a schedule table needs two or more phases", file=file, field="--phases"
        )
    domains: list[str] = []
    for d, _, _ in found:
        if d not in domains:
            domains.append(d)
    at = {(d, p): i for i, (d, p, _) in enumerate(found)}
    for p in names:
        for d in domains:
            if (d, p) not in at:
                raise AutomixerError(f"no weight column for domain '{d}' in phase '{p}'", file=file)
    blocks = np.stack(
        [X[:, [at[(d, p)] for d in domains]] for p in names], axis=1
    )  # (rows, phases, domains)
    sums = blocks.sum(axis=2)
    if np.all(np.abs(sums - 1) <= 0.01):  # each phase's own mixture
        if not shares:
            raise AutomixerError(
                "each phase's weights sum to 1: give the phases' token shares with "
                "--phases NAME=SHARE (one per phase, in order)",
                file=file,
                field="--phases",
            )
        s = np.array([shares[p] for p in names], dtype=np.float64)
    else:  # shares of the whole run: the same in every row
        s = sums.mean(axis=0)
        row = int(np.argmax(np.abs(sums - s).max(axis=1)))
        if np.abs(sums - s).max() > 0.01 or abs(s.sum() - 1) > 0.01:
            raise AutomixerError(
                f"row {row + 1}: the phases' weights sum to "
                f"{', '.join(f'{x:.4g}' for x in sums[row])}: neither 1 in every phase nor "
                "each phase's share of the run",
                file=file,
            )
        if shares and np.abs(s - [shares[p] for p in names]).max() > 0.01:
            raise AutomixerError(
                f"the table's phase shares ({', '.join(f'{x:.3g}' for x in s)}) are not --phases'",
                file=file,
                field="--phases",
            )
    if abs(s.sum() - 1) > 1e-6:
        raise AutomixerError(
            f"the phases' shares sum to {s.sum():.4g}, not 1", file=file, field="--phases"
        )
    phases = Phases(tuple(domains), tuple(names), tuple(float(x) for x in s / s.sum()))
    own = blocks / np.clip(sums[:, :, None], 1e-12, None)
    flat = np.concatenate([phases.shares[k] * own[:, k] for k in range(len(names))], axis=1)
    return phases, flat
