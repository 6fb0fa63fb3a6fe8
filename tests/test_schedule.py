"""Mixture schedules: config checks, the loader's exact switch at the phase boundary, the design
and solver over `domain@phase` weights, per-phase recipes read by each framework's own code,
and schedule tables in `replay`."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from automixer.cli import app
from automixer.config import Config, parse_config
from automixer.data.loader import MixtureLoader
from automixer.errors import AutomixerError, BudgetError, ConfigError
from automixer.recipes import export_phases, load_recipe
from automixer.schedule import Phases, plan_schedules
from automixer.schedule.solve import schedule_constraints
from tests.conftest import small_config, write_config
from tests.test_loader import SIZES, _shards
from tests.test_recipes import _recipe

PHASES = [{"name": "main", "share": 0.75}, {"name": "anneal", "share": 0.25}]


def _config(tmp_path: Path, **overrides: object) -> Config:
    return parse_config(yaml.safe_dump(small_config(tmp_path, phases=PHASES, **overrides)))


def _err(tmp_path: Path, **overrides: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump(small_config(tmp_path, **overrides)), source="c.yaml")
    return info.value


def test_loader_switches_mixture_exactly_at_the_boundary():
    """Main: a and b only; anneal: c and d only. Every batch of a phase holds its own domains,
    each domain exactly its share of the phase's windows, and the switch is at step 9 of 12."""
    flat = {"a@main": 0.45, "b@main": 0.3, "c@main": 0.0, "d@main": 0.0}
    flat |= {"a@anneal": 0.0, "b@anneal": 0.0, "c@anneal": 0.15, "d@anneal": 0.1}
    loader = MixtureLoader(
        _shards(SIZES),
        flat,
        tokens=12 * 8 * 32,
        seq_len=32,
        batch_size=8,
        seed=1,
        phases=[("main", 0.75), ("anneal", 0.25)],
    )
    assert loader.steps == 12 and loader.decay_start == 9
    assert [loader.phase_at(s) for s in (0, 8, 9, 11)] == ["main", "main", "anneal", "anneal"]
    seen = {"main": np.zeros(4, int), "anneal": np.zeros(4, int)}
    for step in range(loader.steps):
        for i in loader.domain_of_rows(step):
            seen[loader.phase_at(step)][i] += 1
    # main: 72 windows at 0.6 / 0.4 (43.2, 28.8); anneal: 24 at 0.6 / 0.4 (14.4, 9.6)
    assert seen["main"].tolist() == [43, 29, 0, 0]
    assert seen["anneal"].tolist() == [0, 0, 14, 10]
    assert loader.max_abs_error() < 1 / 24
    # a resumed loader gives the same batches across the boundary
    assert all(np.array_equal(x, loader.batch(8 + k)) for k, x in enumerate(loader.iter_from(8)))


def test_one_phase_loader_is_the_loader_it_always_was():
    """The batches' digest as the loader before schedules (commit 29347ae) gave them."""
    w = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
    plain = MixtureLoader(_shards(SIZES), w, tokens=100_000, seq_len=32, batch_size=8, seed=7)
    assert plain.decay_start is None and len(plain.phases) == 1
    digest = hashlib.sha256()
    for batch in plain:
        digest.update(np.ascontiguousarray(batch).tobytes())
    assert digest.hexdigest() == (
        "2d42f3f0761c214f95f29e02b6110e1d3f1484f10e5d3a4778b48ea93cdb3bb3"
    )


def test_caps_broken_only_when_the_phases_are_summed():
    """Domain d holds 30k tokens (937 windows, about 3,750 at 4 epochs): 0.2 of each phase's
    12,500 windows is within that phase by phase, not over the run (5,000)."""
    flat = {"a@main": 0.4, "b@main": 0.0, "c@main": 0.0, "d@main": 0.1}
    flat |= {"a@anneal": 0.4, "b@anneal": 0.0, "c@anneal": 0.0, "d@anneal": 0.1}
    with pytest.raises(BudgetError) as e:
        MixtureLoader(
            _shards(SIZES),
            flat,
            tokens=800_000,
            seq_len=32,
            batch_size=8,
            phases=[("main", 0.5), ("anneal", 0.5)],
        )
    assert "'d'" in e.value.message and "\n" not in e.value.message


@pytest.mark.parametrize(
    "phases, field, needle",
    [
        ([{"name": "main", "share": 0.7}, {"name": "anneal", "share": 0.2}], "phases", "sum to"),
        ([{"name": "main", "share": 1.0}], "phases", "two or more"),
        (
            [{"name": "main", "share": 0.999}, {"name": "anneal", "share": 0.001}],
            "phases.1.share",
            "no whole batch",
        ),
        ([{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}], "phases", "distinct"),
    ],
)
def test_bad_phase_configs_are_one_line(tmp_path: Path, phases, field: str, needle: str):
    e = _err(tmp_path, phases=phases)
    assert needle in e.message and "\n" not in e.message
    assert e.field is not None and e.field.startswith(field.split(".")[0])
    result = CliRunner().invoke(
        app,
        ["data", str(write_config(tmp_path / "c.yaml", small_config(tmp_path, phases=phases)))],
    )
    assert result.exit_code == 2
    assert needle in result.output and "Traceback" not in result.output


def test_bounds_no_schedule_can_meet_and_rounds(tmp_path: Path):
    bounds = {"code@anneal": [0.6, 1.0], "bible": [0.5, 1.0]}
    e = _err(tmp_path, phases=PHASES, solve={"bounds": bounds})
    assert "phase 'anneal' fits" in e.message
    e = _err(tmp_path, phases=PHASES, solve={"bounds": {"code@warmup": [0.0, 0.5]}})
    assert "unknown domain" in e.message
    e = _err(tmp_path, phases=PHASES, sweep={"rounds": 2, "batch": 2, "n_runs": 12})
    assert "adaptive rounds" in e.message and e.field == "sweep.rounds"
    # cosine has no anneal for the last phase to sit in: one line, not a silent flat schedule
    e = _err(tmp_path, phases=PHASES, proxy={"schedule": "cosine"})
    assert "'cosine' has no anneal" in e.message and e.field == "proxy.schedule"


def test_one_phase_config_hash_and_names_unchanged(tmp_path: Path):
    plain = parse_config(yaml.safe_dump(small_config(tmp_path)))
    assert plain.weight_names == plain.domain_names == ["code", "bible", "dictionary"]
    phased = _config(tmp_path)
    assert phased.weight_names[:3] == ["code@main", "bible@main", "dictionary@main"]
    assert len(phased.weight_names) == 6


def test_design_holds_schedules_at_their_shares_and_under_whole_run_caps(tmp_path: Path):
    phases = Phases.of(_config(tmp_path))
    natural = {"code": 0.5, "bible": 0.3, "dictionary": 0.2}
    caps = {"code": 0.6, "bible": 1.0, "dictionary": 0.35}
    runs = plan_schedules(phases, natural, n_runs=24, seed=0, caps=caps, replicates=2)
    assert len(runs) == 26
    names = {r.name.split("-")[0] for r in runs}
    assert {"natural", "uniform", "constant", "phased"} <= names
    for r in runs:
        v = np.array([r.weights[n] for n in phases.weight_names])
        assert v[:3].sum() == pytest.approx(0.75) and v[3:].sum() == pytest.approx(0.25)
        totals = phases.totals(v)[0]
        assert all(totals[i] <= caps[d] + 1e-9 for i, d in enumerate(phases.domains))
        if r.name.startswith("constant"):  # the same mixture in both phases
            assert v[:3] / 0.75 == pytest.approx(v[3:] / 0.25)


def test_solver_constraints_over_schedules(tmp_path: Path):
    """Per-phase bounds, each phase at its share, caps over the sum of the phases."""
    cfg = _config(tmp_path, solve={"bounds": {"code@anneal": [0.5, 1.0]}})
    phases = Phases.of(cfg)
    natural = {"code": 0.5, "bible": 0.3, "dictionary": 0.2}
    c = schedule_constraints(
        cfg.solve.model_copy(update={"target_tokens": 1e6}),
        phases,
        natural,
        token_counts={"code": 1e6, "bible": 1e6, "dictionary": 0.05e6},
    )
    W = c.sample(200, np.random.default_rng(0))
    assert all(c.contains(w) for w in W)
    assert np.allclose(W[:, :3].sum(1), 0.75) and np.allclose(W[:, 3:].sum(1), 0.25)
    assert (W[:, 3] >= 0.5 * 0.25 - 1e-9).all()  # code is half of the anneal or more
    assert (W[:, 2] + W[:, 5] <= 0.2 + 1e-9).all()  # dictionary: 4 epochs of 0.05M at 1M


def test_per_phase_recipes_load_in_each_framework(tmp_path: Path):
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig, SourceMixtureList

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # megatron-core warns that Apex is not installed
        from megatron.core.datasets.utils import get_blend_from_list

    main = {"code": 0.6, "bible": 0.3, "dictionary": 0.1}
    anneal = {"code": 0.2, "bible": 0.2, "dictionary": 0.6}
    total = {d: 0.75 * main[d] + 0.25 * anneal[d] for d in main}
    recipe = _recipe(weights=total) | {}
    phased = dict(recipe)
    from automixer.recipes import _phase_list

    phased["phases"] = _phase_list(
        [
            {"name": "main", "share": 0.75, "weights": main},
            {"name": "anneal", "share": 0.25, "weights": anneal},
        ],
        1e9,
        recipe["export"],
    )
    assert phased["phases"][1]["start_tokens"] == 750_000_000
    assert phased["phases"][1]["start_step"] == round(750_000_000 / 4096)
    for fmt, name in [("yaml", "recipe.yaml"), ("json", "recipe.json")]:
        (path,) = export_phases(phased, fmt, tmp_path)
        assert path.name == name and load_recipe(path)["phases"] == phased["phases"]
    blends = export_phases(phased, "megatron", tmp_path)
    assert [p.name for p in blends] == ["megatron_blend.main.txt", "megatron_blend.anneal.txt"]
    for path, want in zip(blends, (main, anneal), strict=True):
        prefixes, weights = get_blend_from_list(path.read_text().split())
        assert prefixes == [f"{d}_text_document" for d in want]
        assert weights == pytest.approx(list(want.values()))
    for path, want, tokens in zip(
        export_phases(phased, "olmo-core-dataset", tmp_path),
        (main, anneal),
        (750_000_000, 250_000_000),
        strict=True,
    ):
        dataset = SourceMixtureDatasetConfig.from_yaml(path)
        dataset.validate()
        assert dataset.requested_tokens == tokens
        got = {s.source_name: s.target_ratio for s in dataset.source_list.sources}
        assert got == pytest.approx(want)
    for path in export_phases(phased, "olmo-core", tmp_path):
        SourceMixtureList.from_yaml(path).validate()
    hf = [json.loads(p.read_text()) for p in export_phases(phased, "hf-datasets", tmp_path)]
    assert [h["target_tokens"] for h in hf] == [750_000_000, 250_000_000]
    assert hf[1]["token_weights"] == pytest.approx(list(anneal.values()))
    import datasets

    # datasets' own interleave accepts each phase's probabilities
    sets = [datasets.Dataset.from_dict({"text": [d] * 50}) for d in anneal]
    mixed = datasets.interleave_datasets(sets, probabilities=hf[1]["probabilities"], seed=0)
    assert len(mixed) > 0


def _schedule_table(tmp_path: Path, own: bool) -> Path:
    """Runs whose score depends on the anneal's code share, not on the total."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        main, anneal = rng.dirichlet([1, 1, 1]), rng.dirichlet([1, 1, 1])
        s = (1.0, 1.0) if own else (0.8, 0.2)
        row = {"run": i}
        row |= {f"{d}@main": s[0] * w for d, w in zip("xyz", main, strict=True)}
        row |= {f"{d}@anneal": s[1] * w for d, w in zip("xyz", anneal, strict=True)}
        row["score_acc"] = 2 * anneal[0] + 0.3 * main[1] + 0.01 * rng.normal()
        rows.append(row)
    path = tmp_path / ("own.csv" if own else "shares.csv")
    pl.DataFrame(rows).write_csv(path)
    return path


def test_replay_reads_schedule_tables_and_compares_with_collapsed_totals(tmp_path: Path):
    shares = _schedule_table(tmp_path, own=False)
    out = tmp_path / "out"
    args = ["replay", str(shares), "--target", "score_acc", "--model", "linear", "--repeats", "1"]
    result = CliRunner().invoke(app, [*args, "--out-dir", str(out), "-q"])
    assert result.exit_code == 0, result.output
    compared = json.loads((out / "replay.json").read_text())["phases_against_total"]
    assert compared["phases"] == pytest.approx({"main": 0.8, "anneal": 0.2})
    assert compared["mean_per_phase"] > 0.9 > compared["mean_collapsed"]
    assert compared["standard_errors"] is None  # one repeat: no spread to read
    twice = [*args[:-1], "2", "--out-dir", str(out), "-q", "--no-solve"]
    assert CliRunner().invoke(app, twice).exit_code == 0
    se = json.loads((out / "replay.json").read_text())["phases_against_total"]["standard_errors"]
    assert 0 <= se["score_acc"]["difference"] < 0.2 and se["score_acc"]["per_phase"] >= 0
    solution = json.loads((out / "solution.json").read_text())["weights"]
    assert sum(v for k, v in solution.items() if k.endswith("@anneal")) == pytest.approx(0.2)
    own = _schedule_table(tmp_path, own=True)
    result = CliRunner().invoke(app, ["replay", str(own), "--target", "score_acc", "-q"])
    assert result.exit_code == 2 and "--phases" in result.output
    result = CliRunner().invoke(
        app,
        [
            *args[:1],
            str(own),
            *args[2:],
            "--phases",
            "main=0.8",
            "--phases",
            "anneal=0.2",
            "--out-dir",
            str(out),
            "-q",
            "--no-solve",
        ],
    )
    assert result.exit_code == 0, result.output
    again = json.loads((out / "replay.json").read_text())["phases_against_total"]
    assert again["per_phase"] == pytest.approx(compared["per_phase"])


def test_simulate_reads_a_schedule_table_with_its_shares(tmp_path: Path):
    own = _schedule_table(tmp_path, own=True)
    args = ["simulate", str(own), "--target", "score_acc", "--initial", "8", "--batch", "4"]
    args += ["--budget", "12", "--out", str(tmp_path / "sim")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--phases" in result.output
    result = CliRunner().invoke(app, [*args, "--phases", "main=0.8", "--phases", "anneal=0.2"])
    assert result.exit_code == 0, result.output
    assert "6 domains" in result.output  # three domains in each of two phases


def test_schedule_table_errors(tmp_path: Path):
    from automixer.schedule.tables import schedule_weights

    X = np.array([[0.5, 0.5, 0.3, 0.7]])
    with pytest.raises(AutomixerError, match="no weight column for domain 'z' in phase 'a'"):
        schedule_weights(["x@a", "y@a", "x@b", "z@b"], X, None, tmp_path / "t.csv")
    with pytest.raises(AutomixerError, match="'w' names no phase"):
        schedule_weights(["x@a", "w", "x@b", "y@b"], X, {"a": 0.5, "b": 0.5}, tmp_path)
    assert schedule_weights(["x", "y"], X[:, :2], None, tmp_path) is None


@pytest.mark.slow
def test_schedules_end_to_end(tmp_path: Path):
    """`automixer run` on a two-phase config: schedules trained through their phases, the
    solver's schedule beside the best constant mix, recipes per phase, the report's schedule,
    and `validate` against the best constant mix."""
    cfg = small_config(tmp_path, phases=PHASES)
    cfg["proxy"] = {"preset": "tiny", "tokens": 4096, "seq_len": 32, "batch_size": 8}
    cfg["proxy"] |= {"pack_size": 7}
    cfg["sweep"] |= {"n_runs": 9, "replicates": 1, "heartbeat_s": 1, "min_distance": 0.01}
    cfg["evals"] = {"suites": ["arc_easy", "hellaswag", "humaneval", "gsm8k"], "n_per_suite": 4}
    cfg["surrogate"] = {"cv_folds": 3, "cv_repeats": 1}
    cfg["solve"] = {"target_tokens": 1e6}
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg)), "-q"])
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "runs").iterdir())
    runs = pl.read_parquet(run_dir / "runs.parquet")
    assert "weight:code@anneal" in runs.columns and runs.height == 10
    solution = json.loads((run_dir / "solution.json").read_text())
    schedule = solution["schedule"]
    assert [p["name"] for p in schedule["phases"]] == ["main", "anneal"]
    assert sum(schedule["constant"]["weights"].values()) == pytest.approx(1.0)
    gain = schedule["gain"]
    assert gain["predicted"] == pytest.approx(
        solution["objective"]["predicted"] - schedule["constant"]["objective"]
    )
    assert "gain of phasing over the best constant mix: expected" in result.output
    assert gain["null_draws"] == 8 and gain["expected"] == pytest.approx(
        gain["predicted"] - gain["null_mean"]
    )
    recipe = load_recipe(run_dir / "recipes" / "recipe.yaml")
    assert [p["name"] for p in recipe["phases"]] == ["main", "anneal"]
    for d, v in recipe["mixture"].items():
        assert v["weight"] == pytest.approx(schedule["total"][d], abs=1e-6)
    for name in ("megatron_blend", "hf_interleave", "olmo_core_dataset"):
        assert len(list((run_dir / "recipes").glob(f"{name}.*.*"))) == 2
    assert "<h2>Schedule</h2>" in (run_dir / "report.html").read_text()
    args = ["--seeds", "2", "--n-per-suite", "3", "--width", "1", "--tokens-factor", "1", "-q"]
    result = CliRunner().invoke(app, ["validate", str(run_dir / "recipes" / "recipe.yaml"), *args])
    assert result.exit_code == 0, result.output
    validation = json.loads((run_dir / "validation.json").read_text())
    assert "best constant" in validation["margins"]
    assert validation["mixtures"]["solved"]["code@anneal"] == pytest.approx(
        0.25 * recipe["phases"][1]["weights"]["code"], abs=1e-6
    )


def _no_phase_effect_sweep(seed: int, n: int = 40):
    """Schedules of three domains over two phases (a quarter constant) whose measurements
    depend on their totals alone: phasing cannot matter."""
    rng = np.random.default_rng(seed)
    phases = Phases(("a", "b", "c"), ("main", "anneal"), (0.75, 0.25))
    rows = []
    for i in range(n):
        main = rng.dirichlet(np.ones(3) * 2)
        anneal = main if i % 4 == 0 else rng.dirichlet(np.ones(3) * 2)
        rows.append(np.r_[0.75 * main, 0.25 * anneal])
    X = np.array(rows)
    total = phases.totals(X)
    y = -10 * ((total - [0.5, 0.3, 0.2]) ** 2).sum(axis=1) + rng.normal(0, 0.05, n)
    return phases, X, y[:, None]


@pytest.mark.slow
def test_a_sweep_without_a_phase_effect_predicts_no_gain_beyond_its_interval():
    """The schedule is an argmax over twice the dimensions of the constant mix: on sweeps
    where only the totals matter its predicted gain is positive on noise alone. The expected
    gain (less what the same fit and search predict with the phases shuffled between runs)
    is level with 0, and the interval excludes 0 no more often than its level allows."""
    from automixer.config import SolveSection
    from automixer.modeling import gain_of_phasing, section_constraints
    from automixer.schedule.solve import constant_bounds
    from automixer.solve import Objective
    from automixer.surrogates import cross_validate, make_surrogate

    solve = SolveSection()
    prior = {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    predicted, expected, beyond = [], [], 0
    for seed in range(8):
        phases, X, Y = _no_phase_effect_sweep(seed)
        cv = cross_validate(X, Y, {"linear": make_surrogate("linear")}, repeats=3, seed=seed)
        constant = solve.model_copy(update={"bounds": constant_bounds(solve, phases)})
        phasing = gain_of_phasing(
            cv.deploy(X, Y, seed=seed),
            Objective.build(["y_acc"], {"y_acc": 1.0}, Y),
            schedule_constraints(solve, phases, prior),
            section_constraints(constant, list(phases.domains), prior),
            X,
            Y,
            cv.conformal(Y),
            phases,
            solve,
            seed,
        )
        predicted.append(phasing.gain)
        expected.append(phasing.expected)
        beyond += not (phasing.gain_lo <= 0 <= phasing.gain_hi)
    # the search's optimism: a gain from nothing (when written, on 7 of 8 sweeps, +0.041 on
    # average, against an expected -0.031)
    assert sum(p > 0 for p in predicted) >= 7
    assert abs(np.mean(expected)) < 2 * np.std(expected, ddof=1) / np.sqrt(len(expected))
    assert beyond <= 1  # 95% intervals: at most one of eight excludes 0
