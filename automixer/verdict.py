"""Whether to trust a recipe, and why: the checks the report's first screen shows.

Each check reads what the run directory already holds and says pass, caution or fail with the
figure behind it:

| check                  | pass                                   | fail                          |
|------------------------|----------------------------------------|-------------------------------|
| signal over seed noise | spread >= 2x noise, and >= 1x at the   | < 1x at the interval's high   |
|                        | 90% interval's low end, every target   | end, for some target          |
| out-of-fold accuracy   | objective's OOF Spearman >= 0.7        | < 0.4                         |
| distance from the runs | optimum within the held-out reach      | > 1.5x that (extrapolating)   |
| transfer ladder        | objective's rank correlation >= 0.6    | < 0.3, or behind at a rung    |
| validation             | ahead of natural and uniform           | behind any baseline           |

"Ahead" and "behind" are paired by seed: a paired t-test (n - 1 degrees of freedom) at the 5%
level, with Holm's correction over the baselines one validation compares with (the ladder's
one margin per rung has no correction). Validation's baselines include the sweep's best
measured run (chosen by its own noisy measurement: a comparison that flatters the solved
mixture); ahead of natural and uniform and not behind the best run passes.

Anything in between is a caution; a check whose evidence is missing (no replicates, no ladder,
no validation) is a caution that names the command that would supply it. The overall verdict is
the worst check.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import polars as pl
from scipy.stats import spearmanr

from automixer.rundir import OOF_COLUMNS, SIGNAL_COLUMNS, RunDir
from automixer.solve.objective import Objective, resolve_keys

ORDER = ("pass", "caution", "fail")
HEADLINE = {
    "pass": "trust this recipe",
    "caution": "use with caution",
    "fail": "do not trust this recipe",
}


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    """pass, caution or fail."""
    detail: str


@dataclass(frozen=True)
class Verdict:
    checks: list[Check]

    @property
    def status(self) -> str:
        return max((c.status for c in self.checks), key=ORDER.index, default="caution")

    @property
    def headline(self) -> str:
        return HEADLINE[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "headline": self.headline,
            "checks": [c.__dict__ for c in self.checks],
        }


def _grade(value: float, good: float, bad: float) -> str:
    if not math.isfinite(value) or value < bad:
        return "fail"
    return "pass" if value >= good else "caution"


def _weighted_targets(rd: RunDir, targets: list[str]) -> list[str]:
    keys = resolve_keys(rd.config.solve.objective, targets)
    return [t for t in targets if keys.get(t, 0) > 0]


def signal_check(rd: RunDir, targets: list[str]) -> Check:
    table = rd.table("surrogates/signal.csv", SIGNAL_COLUMNS, "fit")
    if table is None:
        return Check("signal over seed noise", "caution", "not measured (run `automixer fit`)")
    table = table.filter(pl.col("target").is_in(targets))
    rows = [
        r
        for r in table.iter_rows(named=True)
        if r["signal_to_noise"] is not None and math.isfinite(r["signal_to_noise"])
    ]
    if not rows:
        return Check(
            "signal over seed noise",
            "caution",
            "no replicate runs, so the seed noise is unknown (set sweep.replicates)",
        )
    worst = min(rows, key=lambda r: r["signal_to_noise"])
    ratio = worst["signal_to_noise"]
    lo, hi = worst.get("signal_to_noise_lo"), worst.get("signal_to_noise_hi")
    if lo is None or hi is None:  # a signal table from before the interval
        lo = hi = ratio
    # graded with the noise estimate's own uncertainty: pass when the spread beats the noise
    # even at the 90% interval's low end, fail when it does not even at its high end
    status = "pass" if ratio >= 2 and lo >= 1 else ("fail" if hi < 1 else "caution")
    dof = worst.get("noise_dof")
    return Check(
        "signal over seed noise",
        status,
        f"the objective's targets vary {ratio:.1f}x their seed noise across mixtures (at "
        f"least; 90% interval [{lo:.1f}, {hi:.1f}]"
        + (f" from a noise estimate with {dof} degrees of freedom" if dof else "")
        + "; 2x or more is a signal worth fitting)",
    )


def accuracy_check(rd: RunDir, targets: list[str], all_targets: list[str]) -> Check:
    """The objective's own out-of-fold Spearman: the deployed surrogates' out-of-fold
    predictions combined into the objective, against the measured objective."""
    oof = rd.table("surrogates/oof.parquet", OOF_COLUMNS, "fit")
    if oof is None:
        return Check("out-of-fold accuracy", "caution", "not measured (run `automixer fit`)")
    oof = oof.filter(pl.col("target").is_in(targets))
    actual = oof.pivot(on="target", index="run_id", values="actual")
    predicted = oof.pivot(on="target", index="run_id", values="predicted")
    Y, P = actual.select(targets).to_numpy(), predicted.select(targets).to_numpy()
    weights = resolve_keys(rd.config.solve.objective, all_targets)
    objective = Objective.build(targets, {t: weights[t] for t in targets}, Y)
    rho = float(spearmanr(objective.value(P), objective.value(Y)).statistic)
    return Check(
        "out-of-fold accuracy",
        _grade(rho, 0.7, 0.4),
        f"the surrogates rank runs they never saw at Spearman {rho:.2f} on the objective "
        "(grouped cross-validation; 0.7 or more is good)",
    )


def distance_check(solution: dict[str, Any]) -> Check:
    """The optimum against how far from their training runs the cross-validation measured
    the surrogates' accuracy: not the solver's trust radius (the optimum is walled inside that,
    so comparing with it passes by construction)."""
    near = solution.get("nearest_run") or {}
    d, reach = near.get("distance"), near.get("held_out_reach")
    if d is None or reach is None:
        return Check(
            "distance from the runs", "caution", "unknown (too few runs, or no folds saved)"
        )
    status = "pass" if d <= reach + 1e-6 else ("caution" if d <= 1.5 * reach else "fail")
    return Check(
        "distance from the runs",
        status,
        f"the optimum is {d:.3f} (total variation) from its nearest trained run; "
        f"cross-validation measured the surrogates' accuracy up to {reach:.3f} from the runs "
        "they were fitted to (90% of held-out runs)"
        + ("" if status == "pass" else ": the surrogate is extrapolating"),
    )


def ladder_check(rd: RunDir) -> Check:
    path = rd.file("ladder.json")
    if not path.is_file():
        return Check(
            "transfer ladder",
            "caution",
            "not run: `automixer ladder RUN_DIR` checks that the ranking holds at larger scale",
        )
    ladder = json.loads(path.read_text())
    rho = ladder["objective"]["rank_correlation"]
    margins = ladder["objective"]["solved_margin"]
    paired = ladder["objective"].get("margins") or {}
    # behind the better baseline beyond the 95% t interval at some rung (a negative mean
    # within the seeds' noise is no evidence)
    behind = any(m and m.get("verdict") == "behind" for m in paired.values())
    rhos = [v for v in rho.values() if v is not None]
    status = "fail" if behind else _grade(min(rhos) if rhos else math.nan, 0.6, 0.3)
    steps = ", ".join(f"{k} {v:+.2f}" if v is not None else f"{k} n/a" for k, v in rho.items())
    margin = ", ".join(
        f"{k} {v:+.3f}" + (f" ({paired[k]['verdict']})" if paired.get(k) else "")
        if v is not None
        else f"{k} n/a"
        for k, v in margins.items()
    )
    return Check(
        "transfer ladder",
        status,
        f"rank correlation of the objective between scales: {steps}; the solved mixture's "
        f"margin over the best baseline by scale: {margin}",
    )


def validation_check(rd: RunDir) -> Check:
    path = rd.file("validation.json")
    if not path.is_file():
        return Check(
            "validation",
            "caution",
            "not run: `automixer validate RECIPE` trains a larger model on it (5 seeds)",
        )
    val = json.loads(path.read_text())
    margins = val.get("margins", {})
    verdicts = {b: m["verdict"] for b, m in margins.items()}
    primary = [verdicts[b] for b in ("natural", "uniform") if b in verdicts]
    if "behind" in verdicts.values():
        status = "fail"
    elif primary and all(v == "ahead" for v in primary):
        status = "pass"
    else:
        status = "caution"
    parts = [
        f"vs {b}: {m['mean']:+.3f}"
        + (
            f" (95% t interval +-{m['half_width']:.3f}"
            + (
                f", Holm-adjusted p {m['adjusted_p']:.3f}"
                if m.get("adjusted_p") is not None
                else ""
            )
            + f": {m['verdict']})"
            if m.get("half_width") is not None
            else " (one seed)"
        )
        for b, m in margins.items()
    ]
    return Check(
        "validation",
        status,
        f"on a {val['settings']['token_factor']:g}x-token, wider model: " + "; ".join(parts),
    )


def verdict(rd: RunDir, targets: list[str]) -> Verdict:
    """The checks for run directory `rd` whose runs measured `targets`."""
    weighted = _weighted_targets(rd, targets)
    return Verdict(
        [
            signal_check(rd, weighted),
            accuracy_check(rd, weighted, targets),
            distance_check(rd.solution()),
            ladder_check(rd),
            validation_check(rd),
        ]
    )
