"""`automixer ladder RUN_DIR`: does the proxies' ranking of mixtures hold one step up in scale?

A few mixtures (the solved one, natural, uniform, and sweep runs that span the measured
objective's range) are trained at each rung of a ladder of scales, with the same seeds and
schedules, and scored on held-out items (the ones `validate` uses: never scored by the sweep,
none found in the training corpora). A rung is `WIDTHxTOKENS`: hidden sizes times the proxy's
(about WIDTH**2 times its non-embedding parameters) and training tokens times the proxy's. The
first rung is the proxy itself (1x1), retrained here so that every rung sees the same items.

Per target and for the objective: the Spearman correlation of the mixtures' means between the
first rung and each larger one, the solved mixture's margin over the better baseline at each
rung, and whether that margin changes sign (the target "flips"). Written to ladder.json in the
run directory; the report shows it and its verdict uses it.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.stats import spearmanr

from automixer.errors import AutomixerError
from automixer.io import atomic_write_json
from automixer.modeling import FitInputs
from automixer.pipeline.validate import (
    PRIMARY,
    Margin,
    compared_mixtures,
    objective_value,
    scaled_model,
    train_mixtures,
    validation_tasks,
)
from automixer.rundir import RunDir
from automixer.solve.objective import lower_is_better
from automixer.sweep.training import data_bundle

DEFAULT_RUNGS = "1x1,1.41x2"
"""The proxy and a model of about 2x its parameters trained on 2x its tokens (4x the compute)."""


def parse_rungs(text: str) -> list[tuple[float, float]]:
    """'1x1,1.41x2,2x4' -> [(1, 1), (1.41, 2), (2, 4)]; the first rung must be the smallest."""
    rungs = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*([0-9.]+)x([0-9.]+)\s*", part)
        if not m:
            raise AutomixerError(
                f"rung '{part}' is not WIDTHxTOKENS (e.g. 1.41x2)", field="--rungs"
            )
        width, tokens = float(m.group(1)), float(m.group(2))
        if width <= 0 or tokens <= 0:
            raise AutomixerError(f"rung '{part}' needs positive factors", field="--rungs")
        rungs.append((width, tokens))
    if len(rungs) < 2:
        raise AutomixerError("a ladder needs at least two rungs", field="--rungs")
    if any(w * w * t <= rungs[0][0] ** 2 * rungs[0][1] for w, t in rungs[1:]):
        raise AutomixerError("every rung after the first must be larger than it", field="--rungs")
    return rungs


def sampled_runs(data: FitInputs, k: int, seed: int) -> list[int]:
    """k runs (no replicates) drawn at random (seeded): runs chosen to span the objective from
    worst to best would inflate the rank correlation the ladder reports."""
    done = data.runs.filter(data.runs["run_id"].is_in(data.ids))
    replicate = dict(zip(done["run_id"], done["replicate_of"], strict=True))
    index = [i for i, r in enumerate(data.ids) if replicate.get(r) is None]
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(index, min(k, len(index)), replace=False))


def _rho(a: list[float], b: list[float]) -> float | None:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def summarise(
    values: dict[str, dict[str, list[float]]], higher_is_better: bool
) -> tuple[dict[str, float | None], dict[str, Margin | None], bool]:
    """From one target's values per (rung, mixture, seed): the rank correlation of the mixtures'
    means between the first rung and each later one; the solved mixture's margin over the
    better of natural and uniform per rung (positive: solved is better), paired by seed; and
    whether it flips: ahead at one rung and behind at another, each beyond its 95% t
    interval (a margin within noise flips nothing)."""
    rungs = list(values)
    mixtures = list(values[rungs[0]])
    means = {r: {m: float(np.mean(values[r][m])) for m in mixtures} for r in rungs}
    first = [means[rungs[0]][m] for m in mixtures]
    rho = {f"{rungs[0]}->{r}": _rho(first, [means[r][m] for m in mixtures]) for r in rungs[1:]}
    margin: dict[str, Margin | None] = {}
    sign = 1.0 if higher_is_better else -1.0
    for r in rungs:
        v = means[r]
        if any(not math.isfinite(v[m]) for m in ("solved", *PRIMARY)):
            margin[r] = None
            continue
        better = max(PRIMARY, key=lambda b: sign * means[r][b])
        margin[r] = Margin(
            [sign * (a - b) for a, b in zip(values[r]["solved"], values[r][better], strict=True)]
        )
    verdicts = {m.verdict for m in margin.values() if m is not None}
    return rho, margin, {"ahead", "behind"} <= verdicts


def run_ladder(
    run_dir: Path,
    *,
    rungs: str = DEFAULT_RUNGS,
    runs: int = 4,
    seeds: int = 2,
    n_per_suite: int = 100,
    console: Console,
    progress: bool = True,
) -> dict[str, Any]:
    from proxies.presets import get_preset

    ladder = parse_rungs(rungs)
    if runs < 0 or seeds < 1 or n_per_suite < 1:
        raise AutomixerError("--runs must be >= 0, --seeds and --n-per-suite >= 1")
    rd = RunDir.open(run_dir)
    config = rd.config
    solution = rd.solution()
    data = FitInputs.load(rd)
    objective = data.objective()
    bundle = data_bundle(config, progress=progress)
    mixtures = compared_mixtures(bundle, solution["weights"], data)
    for i in sampled_runs(data, runs, config.run.seed):
        mixtures[data.ids[i]] = dict(zip(config.weight_names, map(float, data.X[i]), strict=True))
    tasks = validation_tasks(config, set(bundle.contaminated_items), n_per_suite)
    proxy_cfg = get_preset(config.proxy.preset, vocab_size=bundle.tokenizer.get_vocab_size())
    seed_list = [config.run.seed + k for k in range(seeds)]
    console.print(
        f"ladder: {len(mixtures)} mixtures x {seeds} seeds at {len(ladder)} scales "
        f"({rungs}); {len(tasks)} held-out items"
    )
    t0 = time.perf_counter()
    per_rung: dict[str, dict[str, list[dict[str, float]]]] = {}
    rung_info = []
    for width, factor in ladder:
        name = f"{width:g}x{factor:g}"
        model_cfg = scaled_model(proxy_cfg, width)
        tokens = int(config.proxy.tokens * factor)
        params = model_cfg.param_counts()
        rung_info.append(
            {
                "name": name,
                "width": width,
                "token_factor": factor,
                "tokens": tokens,
                "active_params": params["active"],
                "non_embedding_active": params["non_embedding_active"],
            }
        )
        console.print(
            f"rung {name}: {params['active']:,} active parameters, {tokens:,} tokens per model"
        )
        per_rung[name] = train_mixtures(
            rd,
            bundle,
            model_cfg,
            mixtures,
            seed_list,
            tokens,
            tasks,
            folder=rd.file("ladder") / name,
            progress=progress,
            label=f"rung {name}",
        )
    seconds = time.perf_counter() - t0
    rung_names = list(per_rung)
    targets = [
        t for t in per_rung[rung_names[0]]["solved"][0] if t.startswith(("ability:", "domain:"))
    ]
    mean = {
        r: {
            m: {t: float(np.mean([v.get(t, math.nan) for v in vs])) for t in targets}
            for m, vs in per_rung[r].items()
        }
        for r in rung_names
    }
    obj = {
        r: {m: [objective_value(objective, v) for v in vs] for m, vs in per_rung[r].items()}
        for r in rung_names
    }
    rho, margin, flips = summarise(obj, higher_is_better=True)
    per_target = {}
    for t in targets:
        t_rho, t_margin, t_flips = summarise(
            {
                r: {m: [v.get(t, math.nan) for v in per_rung[r][m]] for m in mixtures}
                for r in rung_names
            },
            higher_is_better=not lower_is_better(t),
        )
        per_target[t] = {
            "rank_correlation": t_rho,
            "solved_margin": {k: m.mean if m else None for k, m in t_margin.items()},
            "flips": t_flips,
        }
    out = {
        **rd.provenance(),
        "rungs": rung_info,
        "seeds": seed_list,
        "n_per_suite": n_per_suite,
        "mixtures": mixtures,
        "objective": {
            "values": {r: {m: float(np.mean(v)) for m, v in per.items()} for r, per in obj.items()},
            "per_seed": obj,
            "rank_correlation": rho,
            "solved_margin": {k: m.mean if m else None for k, m in margin.items()},
            "margins": {k: m.to_dict() if m else None for k, m in margin.items()},
            "flips": flips,
        },
        "targets": per_target,
        "metrics": mean,
        "seconds": round(seconds, 1),
    }
    atomic_write_json(rd.file("ladder.json"), out)
    console.print(ladder_table(out))
    console.print(f"ladder: {rd.file('ladder.json')} ({seconds / 60:.1f} min)")
    return out


def ladder_table(ladder: dict[str, Any]) -> Table:
    """Per target (and the objective): rank correlation between rungs, the solved mixture's
    margin per rung, whether it flips."""
    rungs = [r["name"] for r in ladder["rungs"]]
    t = Table(title="transfer ladder", title_justify="left")
    t.add_column("target")
    for pair in ladder["objective"]["rank_correlation"]:
        t.add_column(f"rank corr {pair}", justify="right")
    for r in rungs:
        t.add_column(f"margin @{r}", justify="right")
    t.add_column("flips")

    def fmt(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    rows = [("objective", ladder["objective"]), *ladder["targets"].items()]
    for name, row in rows:
        t.add_row(
            name,
            *[fmt(v, ".2f") for v in row["rank_correlation"].values()],
            *[fmt(row["solved_margin"][r], "+.3f") for r in rungs],
            "yes" if row["flips"] else "",
        )
    return t
