"""The report's verdict: each check's pass / caution / fail from what a run directory holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from automixer.rundir import RunDir
from automixer.verdict import (
    Check,
    Verdict,
    distance_check,
    ladder_check,
    signal_check,
    validation_check,
)


class _Dir:
    """The part of a run directory the checks read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def file(self, name: str) -> Path:
        return self.path / name

    table = RunDir.table


def test_overall_verdict_is_the_worst_check():
    checks = [Check("a", "pass", ""), Check("b", "caution", "")]
    assert Verdict(checks).status == "caution"
    assert Verdict([*checks, Check("c", "fail", "")]).headline == "do not trust this recipe"
    assert Verdict([Check("a", "pass", "")]).headline == "trust this recipe"


def test_distance_check_fails_an_extrapolated_optimum():
    def check(d: float) -> str:
        return distance_check(
            {"nearest_run": {"distance": d, "typical_distance": 0.05, "held_out_reach": 0.2}}
        ).status

    # graded against where cross-validation measured accuracy, not the runs' spacing (the
    # trust radius the optimum is walled in)
    assert check(0.1) == "pass" and check(0.25) == "caution" and check(0.4) == "fail"
    unknown = {"nearest_run": {"distance": 0.1, "typical_distance": 0.2}}
    assert distance_check(unknown).status == "caution"


def test_signal_check_grades_the_worst_weighted_target(tmp_path: Path):
    rd = _Dir(tmp_path)
    assert signal_check(rd, ["t"]).status == "caution"  # not measured
    (tmp_path / "surrogates").mkdir()
    pl.DataFrame(
        {
            "target": ["a", "b", "c"],
            "seed_noise_sd": [0.1] * 3,
            "mixture_spread_sd": [0.5, 0.15, 0.05],
            "signal_to_noise": [5.0, 1.5, 0.5],
        }
    ).write_csv(tmp_path / "surrogates" / "signal.csv")
    assert signal_check(rd, ["a"]).status == "pass"
    assert signal_check(rd, ["a", "b"]).status == "caution"
    assert signal_check(rd, ["a", "c"]).status == "fail"


def test_ladder_and_validation_checks(tmp_path: Path):
    rd = _Dir(tmp_path)
    assert "automixer ladder" in ladder_check(rd).detail
    assert "automixer validate" in validation_check(rd).detail
    ahead = {"mean": 0.3, "half_width": 0.1, "verdict": "ahead"}
    ladder = {
        "objective": {
            "rank_correlation": {"1x1->2x2": 0.8},
            "solved_margin": {"1x1": 0.3, "2x2": -0.1},
            "margins": {
                "1x1": ahead,
                "2x2": {"mean": -0.1, "half_width": 0.4, "verdict": "not distinguishable"},
            },
        }
    }
    (tmp_path / "ladder.json").write_text(json.dumps(ladder))
    assert ladder_check(rd).status == "pass"  # a negative margin within noise: no evidence
    ladder["objective"]["margins"]["2x2"] = {"mean": -0.1, "half_width": 0.05, "verdict": "behind"}
    (tmp_path / "ladder.json").write_text(json.dumps(ladder))
    assert ladder_check(rd).status == "fail"  # behind beyond its interval
    margins = {
        "natural": {"mean": 0.5, "half_width": 0.2, "verdict": "ahead"},
        "uniform": {"mean": 0.1, "half_width": 0.2, "verdict": "not distinguishable"},
        "best run": {"mean": 0.0, "half_width": 0.2, "verdict": "not distinguishable"},
    }
    val = {"settings": {"token_factor": 4}, "margins": margins}
    (tmp_path / "validation.json").write_text(json.dumps(val))
    assert validation_check(rd).status == "caution"
    margins["uniform"] = {"mean": 0.5, "half_width": 0.2, "verdict": "ahead"}
    (tmp_path / "validation.json").write_text(json.dumps(val))
    assert validation_check(rd).status == "pass"  # not behind the best run is enough there
    margins["best run"] = {"mean": -0.5, "half_width": 0.2, "verdict": "behind"}
    (tmp_path / "validation.json").write_text(json.dumps(val))
    assert validation_check(rd).status == "fail"
    assert "vs best run: -0.500" in validation_check(rd).detail


def test_seed_noise_is_pooled_over_replicate_groups_with_its_interval():
    from automixer.noise import signal_table

    runs = pl.DataFrame(
        {
            "run_id": ["a", "a1", "a2", "b", "b1", *[f"m{i}" for i in range(55)]],
            "replicate_of": [None, "a", "a", None, "b", *[None] * 55],
            "status": ["done"] * 60,
            "t": [1.0, 1.2, 0.8, 2.0, 2.4, *np.linspace(0, 4, 55).tolist()],
        }
    )
    row = signal_table(runs, ["t"]).row(0, named=True)
    # pooled: (0.04 + 0.04 + 0) + (0.04 + 0.04) over 2 + 1 degrees of freedom
    assert row["noise_dof"] == 3 and row["seed_noise_sd"] == pytest.approx(np.sqrt(0.16 / 3))
    # the issue's own figures: a ratio of 3.38 from 57 mixtures and 3 noise degrees of
    # freedom has a 90% interval of about [1.16, 5.46]
    from scipy.stats import f

    assert 3.38 / np.sqrt(f.ppf(0.95, 56, 3)) == pytest.approx(1.16, abs=0.02)
    lo, hi = row["signal_to_noise_lo"], row["signal_to_noise_hi"]
    ratio = row["signal_to_noise"]
    assert lo < ratio < hi and hi / lo > 4  # 3 degrees of freedom: wide
