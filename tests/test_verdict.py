"""The report's verdict: each check's pass / caution / fail from what a run directory holds."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from automixer.verdict import (
    Check,
    Verdict,
    distance_check,
    ladder_check,
    signal_check,
    validation_check,
)


class _Dir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def file(self, name: str) -> Path:
        return self.path / name


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
    pl.DataFrame({"target": ["a", "b", "c"], "signal_to_noise": [5.0, 1.5, 0.5]}).write_csv(
        tmp_path / "surrogates" / "signal.csv"
    )
    assert signal_check(rd, ["a"]).status == "pass"
    assert signal_check(rd, ["a", "b"]).status == "caution"
    assert signal_check(rd, ["a", "c"]).status == "fail"


def test_ladder_and_validation_checks(tmp_path: Path):
    rd = _Dir(tmp_path)
    assert "automixer ladder" in ladder_check(rd).detail
    assert "automixer validate" in validation_check(rd).detail
    ladder = {
        "objective": {
            "rank_correlation": {"1x1->2x2": 0.8},
            "solved_margin": {"1x1": 0.3, "2x2": 0.2},
        }
    }
    (tmp_path / "ladder.json").write_text(json.dumps(ladder))
    assert ladder_check(rd).status == "pass"
    ladder["objective"]["solved_margin"]["2x2"] = -0.1  # the solved mixture falls behind
    (tmp_path / "ladder.json").write_text(json.dumps(ladder))
    assert ladder_check(rd).status == "fail"
    margins = {
        "natural": {"mean": 0.5, "se": 0.1, "verdict": "ahead"},
        "uniform": {"mean": 0.1, "se": 0.1, "verdict": "not distinguishable"},
    }
    val = {"settings": {"token_factor": 4}, "margins": margins}
    (tmp_path / "validation.json").write_text(json.dumps(val))
    assert validation_check(rd).status == "caution"
    margins["uniform"] = {"mean": 0.5, "se": 0.1, "verdict": "ahead"}
    (tmp_path / "validation.json").write_text(json.dumps(val))
    assert validation_check(rd).status == "pass"
