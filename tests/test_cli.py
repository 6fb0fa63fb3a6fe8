"""The command line: one clear line and exit status 2 for every mistake a user can make."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from automixer.cli import app
from tests.conftest import small_config, write_config

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def _assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


VERBS = [
    "run",
    "data",
    "sweep",
    "worker",
    "fit",
    "solve",
    "export",
    "report",
    "eval",
    "validate",
    "ladder",
    "simulate",
    "replay",
]


def test_help_lists_every_verb():
    import re

    out = _run("--help").output
    listed = set(re.findall(r"^\W*([a-z]+)\s{2,}\S", out, flags=re.MULTILINE))
    assert set(VERBS) <= listed, out
    for verb in VERBS:
        result = _run(verb, "--help")
        assert result.exit_code == 0, result.output
        assert f"automixer {verb}" in result.output


def test_malformed_yaml(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("domains:\n  - name: code\n   builtin: code\n")
    _assert_one_line_error(_run("data", str(p)), "bad.yaml:3", "malformed YAML")


def test_unknown_key(tmp_path: Path):
    cfg = small_config(tmp_path)
    cfg["proxy"]["seq_lenght"] = 10
    p = write_config(tmp_path / "c.yaml", cfg)
    _assert_one_line_error(
        _run("data", str(p)), "c.yaml:", "proxy.seq_lenght", "did you mean 'seq_len'"
    )


def test_missing_config_file(tmp_path: Path):
    _assert_one_line_error(_run("data", str(tmp_path / "none.yaml")), "none.yaml", "not found")


def test_glob_matching_nothing(tmp_path: Path):
    cfg = small_config(tmp_path, domains=[{"name": "x", "files": [str(tmp_path / "*.jsonl")]}])
    p = write_config(tmp_path / "c.yaml", cfg)
    _assert_one_line_error(_run("data", str(p)), "c.yaml:", "domains[0].files", "matches no file")


def test_data_builds_and_prints_table(tmp_path: Path):
    p = write_config(tmp_path / "c.yaml", small_config(tmp_path))
    result = _run("data", str(p), "--quiet")
    assert result.exit_code == 0, result.output
    for d in ["code", "bible", "dictionary", "PSF-2.0", "public domain"]:
        assert d in result.output
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1
    assert (run_dirs[0] / "manifest.json").is_file() and (run_dirs[0] / "config.yaml").is_file()


def test_budget_beyond_max_epochs_writes_nothing(tmp_path: Path):
    good = write_config(tmp_path / "good.yaml", small_config(tmp_path))
    assert _run("data", str(good), "-q").exit_code == 0
    before = {p: p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    cfg = small_config(tmp_path)
    cfg["proxy"]["tokens"] = 4_000_000
    cfg["sweep"] = {"anchors": {"heavy": {"bible": 0.9, "code": 0.1}}}
    bad = write_config(tmp_path / "bad.yaml", cfg)
    result = _run("data", str(bad), "-q")
    _assert_one_line_error(result, "bad.yaml", "sweep.anchors.heavy", "max_epochs")
    after = {p: p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    assert after == before


def test_validate_needs_a_recipe_and_its_run_dir(tmp_path: Path):
    p = write_config(tmp_path / "c.yaml", small_config(tmp_path))
    _assert_one_line_error(_run("validate", str(p)), "c.yaml", "not an automixer recipe")
    _assert_one_line_error(_run("validate", str(tmp_path / "no.yaml")), "recipe not found")


def test_laguna_60_dry_run_resolves_without_downloads():
    root = Path(__file__).parents[1]
    result = _run("data", str(root / "configs" / "laguna-60.yaml"), "--dry-run")
    assert result.exit_code == 0, result.output
    for needle in ["HuggingFaceFW/fineweb-edu", "gpu-40m", "63 proxies", "nothing read"]:
        assert needle in result.output


def test_unknown_surrogate_is_caught_when_the_config_is_read(tmp_path: Path):
    cfg = small_config(tmp_path)
    cfg["surrogate"] = {"model": "forest"}
    p = write_config(tmp_path / "c.yaml", cfg)
    _assert_one_line_error(
        _run("data", str(p), "--dry-run"), "c.yaml:", "surrogate.model", "unknown surrogate"
    )


def test_unknown_suite_and_ability_suite_are_caught_in_the_dry_run(tmp_path: Path):
    cfg = small_config(tmp_path)
    cfg["evals"] = {"suites": ["arc_easy", "hellaswagg"]}
    p = write_config(tmp_path / "c.yaml", cfg)
    _assert_one_line_error(
        _run("data", str(p), "--dry-run"), "evals.suites[1]", "did you mean 'hellaswag'"
    )
    cfg["evals"] = {"suites": ["arc_easy"], "abilities": {"stem": {"arc_easy": 1, "sciq": 1}}}
    p = write_config(tmp_path / "c.yaml", cfg)
    _assert_one_line_error(_run("data", str(p), "--dry-run"), "evals.abilities.stem.sciq")


def test_budget_the_data_cannot_serve_stops_before_training(tmp_path: Path):
    cfg = small_config(tmp_path)
    cfg["solve"] = {"target_tokens": 1e9, "max_epochs": 4}
    p = write_config(tmp_path / "c.yaml", cfg)
    result = _run("data", str(p), "-q")
    _assert_one_line_error(
        result, "c.yaml", "solve.target_tokens", "bible holds", "largest feasible budget is"
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("manifest.json"))
    best = float(result.output.split("largest feasible budget is ")[1].split()[0])
    cfg["solve"]["target_tokens"] = best * 0.99
    ok = _run("data", str(write_config(tmp_path / "c.yaml", cfg)), "-q")
    assert ok.exit_code == 0, ok.output


def test_target_tokenizer_counts_the_supply_in_its_tokens(tmp_path: Path):
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from automixer.budget import Supply
    from automixer.config import load_config

    # A whitespace word-level tokenizer: many more bytes per token than the proxies' BPE.
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        ["the a of and to"], trainers.WordLevelTrainer(special_tokens=["[UNK]"])
    )
    tok.save(str(tmp_path / "target.json"))
    cfg = small_config(tmp_path)
    cfg["tokenizer"]["target"] = str(tmp_path / "target.json")
    p = write_config(tmp_path / "c.yaml", cfg)
    assert _run("data", str(p), "-q").exit_code == 0
    run_dir = next((tmp_path / "runs").iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    supply = Supply.from_manifest(manifest, load_config(p))
    assert supply.tokenizer.startswith("target: ")
    for d, row in manifest["domains"].items():
        assert row["target_bytes_per_token"] > row["bytes_per_token"]
        assert row["source_bytes"] >= row["bytes_train"]  # the whole source, not the sample
        assert supply.domains[d].tokens == pytest.approx(
            row["source_bytes"] / row["target_bytes_per_token"]
        )


def test_validate_verdict_holds_its_false_alarm_rate_under_a_null():
    """Two equal mixtures, 3 seeds: the margin is noise. Two standard errors with 2 degrees of
    freedom called it ahead or behind 16% of the time; the t interval must keep it near 5%."""
    from automixer.pipeline.validate import paired_margin

    rng = np.random.default_rng(0)
    calls = [
        paired_margin(list(rng.normal(size=3)), [0.0, 0.0, 0.0]).verdict != "not distinguishable"
        for _ in range(4000)
    ]
    assert 0.035 < np.mean(calls) < 0.065
    assert paired_margin([1.0], [0.5]).verdict == "not distinguishable"  # one seed
    assert paired_margin([1.0, 1.1, 0.9], [0.5, 0.6, 0.4]).verdict == "ahead"
    assert paired_margin([0.1, 0.2, 0.15], [0.5, 0.7, 0.6]).verdict == "behind"
    noisy = paired_margin([1.0, 0.2, 0.9], [0.5, 0.7, 0.6])  # +0.5, -0.5, +0.3
    assert noisy.verdict == "not distinguishable"
    assert "95% t interval" in noisy.describe()
    assert "one seed" in paired_margin([1.0], [0.0]).describe()


def test_validate_verdicts_hold_the_family_wise_rate_over_its_baselines():
    """The solved mixture and four baselines, all equal, 5 seeds, shared seed effects: each
    margin's own test calls one of the four 'ahead' or 'behind' about 15% of the time; with
    Holm's correction the chance of any such call stays at or under 5%."""
    from automixer.pipeline.validate import holm, paired_margin

    rng = np.random.default_rng(1)
    raw, corrected = [], []
    for _ in range(3000):
        seed_effect = rng.normal(size=5)  # every mixture of a seed shares its initialisation
        solved = list(seed_effect + rng.normal(size=5))
        margins = {
            b: paired_margin(solved, list(seed_effect + rng.normal(size=5)))
            for b in ("natural", "uniform", "best run", "best constant")
        }
        raw.append(any(m.verdict != "not distinguishable" for m in margins.values()))
        adjusted = holm(margins)
        corrected.append(any(m.verdict != "not distinguishable" for m in adjusted.values()))
        assert all(adjusted[b].adjusted_p >= margins[b].p_value for b in margins)
    assert np.mean(raw) > 0.1
    assert np.mean(corrected) <= 0.055
    # a clear margin survives the correction
    clear = holm({"natural": paired_margin([1.0, 1.1, 0.9, 1.05, 0.95], [0.0] * 5)})
    assert clear["natural"].verdict == "ahead" and "Holm-adjusted" in clear["natural"].describe()


def test_ladder_rungs_are_checked():
    from automixer.errors import AutomixerError
    from automixer.pipeline.ladder import parse_rungs

    assert parse_rungs("1x1,1.41x2,2x4") == [(1.0, 1.0), (1.41, 2.0), (2.0, 4.0)]
    for bad, message in [
        ("1x1", "at least two"),
        ("1x1,0.5x1", "larger"),
        ("1x1,wide", "WIDTHxTOKENS"),
        ("1x1,0x2", "positive"),
    ]:
        with pytest.raises(AutomixerError, match=message):
            parse_rungs(bad)


def test_ladder_summary_pairs_margins_by_seed_and_flips_only_beyond_noise():
    from automixer.pipeline.ladder import summarise

    values = {  # per mixture, the values of two seeds
        "1x1": {"solved": [1.0, 1.1], "natural": [0.5, 0.6], "uniform": [0, 0.1], "r1": [-1, -1]},
        "2x2": {"solved": [0.2, 0.3], "natural": [0.9, 1.0], "uniform": [0.1, 0.1], "r1": [-1, 0]},
    }  # fmt: skip
    rho, margin, flips = summarise(values, higher_is_better=True)
    assert {k: m.mean for k, m in margin.items()} == pytest.approx({"1x1": 0.5, "2x2": -0.7})
    assert margin["1x1"].verdict == "ahead" and margin["2x2"].verdict == "behind" and flips
    assert list(rho) == ["1x1->2x2"] and rho["1x1->2x2"] == pytest.approx(0.8)
    # a negative margin within the seeds' noise flips nothing
    values["2x2"]["solved"] = [0.0, 1.0]
    _, margin, flips = summarise(values, higher_is_better=True)
    assert margin["2x2"].mean < 0 and margin["2x2"].verdict == "not distinguishable"
    assert not flips
    # Lower is better (a loss): the solved mixture's margin is the better baseline minus it.
    _, margin, _ = summarise(values, higher_is_better=False)
    assert margin["1x1"].mean == pytest.approx(-1.0)


def test_a_sweep_too_small_for_its_width_is_told_before_it_trains(tmp_path: Path):
    from tests.conftest import small_config, write_config

    cfg = small_config(tmp_path)
    cfg["sweep"] = {"n_runs": 8}  # 3 domains need 12 mixtures
    result = _run("data", str(write_config(tmp_path / "c.yaml", cfg)), "--dry-run")
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "8 distinct mixtures for 3 domains" in flat and "(12 mixtures)" in flat
    cfg["sweep"] = {"n_runs": 12}
    result = _run("data", str(write_config(tmp_path / "c.yaml", cfg)), "--dry-run")
    assert "distinct mixtures" not in result.output


def test_dry_run_prints_training_flops_and_the_expected_time_once_a_speed_is_known(
    tmp_path: Path,
):
    from automixer.config import load_config
    from automixer.sweep.devices import record_speed, shape_of
    from proxies.presets import get_preset

    p = write_config(tmp_path / "c.yaml", small_config(tmp_path))
    config = load_config(p)
    runs = config.sweep.n_runs + config.sweep.replicates
    flops = (
        runs
        * config.proxy.tokens
        * get_preset("quickstart", vocab_size=512).flops_per_token(config.proxy.seq_len)
    )
    result = _run("data", str(p), "--dry-run")
    flat = " ".join(result.output.split())
    assert f"{flops:.2e} training FLOPs" in flat and "no speed measured yet" in flat
    record_speed(config.run.cache_dir, shape_of(config, 512), "TestGPU", 1000.0)
    flat = " ".join(_run("data", str(p), "--dry-run").output.split())
    hours = runs * config.proxy.tokens / 1000.0 / 3600
    assert f"expected time: {hours:.1f} h of training on one TestGPU at 1,000 tok/s" in flat


def test_worker_storage_urls_are_checked_and_nothing_is_created(tmp_path: Path):
    import sqlite3

    missing = tmp_path / "nowhere" / "ledger.db"
    for url, needle in [
        ("not a url", "not a database URL"),
        ("http://example.org/x", "needs SQLite or PostgreSQL"),
        (f"sqlite:///{missing}", "no ledger at"),
    ]:
        _assert_one_line_error(_run("worker", "--storage", url), "--storage", needle)
    assert not missing.parent.exists()
    empty = tmp_path / "empty.db"
    with sqlite3.connect(empty) as db:  # a database, but no sweep was ever planned in it
        db.execute("CREATE TABLE notes (x)")
    _assert_one_line_error(_run("worker", "--storage", f"sqlite:///{empty}"), "holds no")
    with sqlite3.connect(empty) as db:  # and joining made none of Optuna's tables in it
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]


def test_data_paths_megatron_cannot_carry_are_refused(tmp_path: Path):
    from automixer.config import load_config
    from automixer.errors import AutomixerError
    from automixer.pipeline.export import read_paths

    cfg = small_config(tmp_path)
    cfg["export"] = {"paths": {"code": "/data/my code"}}
    _assert_one_line_error(
        _run("data", str(write_config(tmp_path / "c.yaml", cfg)), "--dry-run"),
        "export.paths.code",
        "whitespace",
    )
    cfg["export"] = {"paths": {}}
    config = load_config(write_config(tmp_path / "c.yaml", cfg))
    for bad in ("/data/code\n0.5 /data/injected", "/data/a\tb", ""):
        (tmp_path / "paths.yaml").write_text(yaml.safe_dump({"code": bad}))
        with pytest.raises(AutomixerError, match=r"paths\.yaml: code: path"):
            read_paths(tmp_path / "paths.yaml", config)
