"""Branched schedule sweeps: the plan (mains, a crossed set of anneals, each phase within the
caps), a branch resumed from its main's checkpoint equal to its schedule trained whole, the
sweep end to end (mains checkpointed and never rows, branches recording their parent), and the
two-way reading of the anneal's effect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from typer.testing import CliRunner

from automixer.cli import app
from automixer.config import parse_config
from automixer.data.loader import MixtureLoader
from automixer.errors import ConfigError
from automixer.schedule import Phases
from automixer.schedule.branched import anneal_effects, branch_cost, plan_branched
from proxies.presets import get_preset
from proxies.train import TrainConfig, checkpoint_parts, save_parts, train_pack
from tests.conftest import small_config, write_config

PHASES = [{"name": "main", "share": 0.5}, {"name": "anneal", "share": 0.5}]
TINY = get_preset("tiny", vocab_size=512)


def test_plan_crosses_every_main_with_the_shared_anneals():
    phases = Phases(("a", "b", "c"), ("main", "anneal"), (0.5, 0.5))
    natural = {"a": 0.5, "b": 0.3, "c": 0.2}
    caps = {"a": 1.0, "b": 0.6, "c": 0.4}
    runs = plan_branched(phases, natural, n_runs=12, mains=3, seed=0, caps=caps, replicates=2)
    mains = [r for r in runs if r.stage == "main"]
    branches = [r for r in runs if r.stage == "branch"]
    assert len(mains) == 3 and len(branches) == 12
    assert [r.name for r in mains] == ["main-natural", "main-uniform", "main-dirichlet-2"]
    for m in mains:
        own = [b for b in branches if b.parent == m.run_id]
        assert len(own) == 4 and all(b.seed == m.seed for b in own)
        for b in own:  # the main phase is the parent's; every phase within the caps
            assert all(b.weights[f"{d}@main"] == m.weights[f"{d}@main"] for d in natural)
            for p in ("main", "anneal"):
                assert all(b.weights[f"{d}@{p}"] <= 0.5 * caps[d] + 1e-9 for d in natural)
            assert sum(b.weights.values()) == pytest.approx(1.0)
    # the shared anneals: the same three mixtures under every main
    shared = {
        tuple(round(b.weights[f"{d}@anneal"], 12) for d in natural)
        for b in branches
        if not b.run_id.endswith("own")
    }
    assert len(shared) == 3
    replicates = [r for r in runs if r.replicate_of]
    assert len(replicates) == 2 and replicates[0].replicate_of == "b000-own"
    assert replicates[0].weights == mains[0].weights and replicates[0].stage == "full"
    cost = branch_cost(phases, 12, 3, 2)
    assert cost["branched"] == pytest.approx(3 * 0.5 + 12 * 0.5 + 2) and cost["ratio"] < 0.7


def _loader(anneal: dict[str, float]) -> MixtureLoader:
    rng = np.random.default_rng(3)
    shards = {d: rng.integers(0, 512, 40_000).astype(np.uint16) for d in ("a", "b")}
    w = {"a@main": 0.35, "b@main": 0.15} | {f"{d}@anneal": 0.5 * v for d, v in anneal.items()}
    return MixtureLoader(
        shards, w, 16 * 4 * 32, 32, 4, seed=5, phases=[("main", 0.5), ("anneal", 0.5)]
    )


def test_a_branch_is_its_schedule_trained_whole(tmp_path: Path):
    """Main to the boundary on one loader, cut from a pack of two, resumed by a branch with
    another anneal: the same curve and weights as the branch's schedule trained from step 0."""
    cfg = TrainConfig(log_every=1, eval_tokens=0)
    first, second = {"a": 0.9, "b": 0.1}, {"a": 0.1, "b": 0.9}
    main = tmp_path / "main.pt"
    # a pack of two mains (the second is another seed), stopped at the boundary
    train_pack(TINY, [_loader(first), _loader(first)], [11, 12], cfg, checkpoint=main, max_steps=8)
    parts = checkpoint_parts(main)
    assert [p["seeds"] for p in parts] == [[11], [12]] and parts[0]["step"] == 8
    branch = save_parts(tmp_path / "branch.pt", [parts[0]])
    resumed = train_pack(TINY, [_loader(second)], [11], cfg, checkpoint=branch)[0]
    whole = train_pack(TINY, [_loader(second)], [11], cfg)[0]
    assert resumed.status == whole.status == "done"
    np.testing.assert_allclose(
        [v for _, v in resumed.loss_curve], [v for _, v in whole.loss_curve], rtol=1e-5
    )
    for k, v in whole.state.items():
        torch.testing.assert_close(resumed.state[k], v, rtol=1e-4, atol=1e-5)


def test_branched_config_errors(tmp_path: Path):
    for overrides, needle in [
        ({"sweep": {"design": "branched"}}, "give phases"),
        ({"phases": PHASES, "sweep": {"design": "branched", "n_runs": 10, "mains": 4}}, "multiple"),
        (
            {"phases": PHASES, "sweep": {"design": "branched", "n_runs": 8, "mains": 4}},
            "at least 3",
        ),
    ]:
        with pytest.raises(ConfigError, match=needle):
            parse_config(yaml.safe_dump(small_config(tmp_path, **overrides)))


@pytest.mark.slow
def test_branched_sweep_end_to_end(tmp_path: Path):
    cfg = small_config(tmp_path, phases=PHASES)
    cfg["proxy"] = {"preset": "tiny", "tokens": 4096, "seq_len": 32, "batch_size": 8}
    cfg["sweep"] = {"workers": 1, "design": "branched", "mains": 3, "n_runs": 9}
    cfg["sweep"] |= {"replicates": 1, "heartbeat_s": 1, "min_distance": 0.01}
    cfg["evals"] = {"suites": ["arc_easy", "hellaswag", "humaneval", "gsm8k"], "n_per_suite": 4}
    cfg["surrogate"] = {"cv_folds": 3, "cv_repeats": 1}
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "b.yaml", cfg)), "-q"])
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "runs").iterdir())
    runs = pl.read_parquet(run_dir / "runs.parquet")
    assert runs.height == 10 and (runs["status"] == "done").all()
    branches = runs.filter(pl.col("parent").is_not_null())
    assert branches.height == 9 and set(branches["parent"]) == {"t000", "t001", "t002"}
    assert sorted(p.name for p in (run_dir / "branches").iterdir()) == [
        "t000.pt",
        "t001.pt",
        "t002.pt",
    ]
    design = json.loads((run_dir / "design.json").read_text())
    assert sum(r.get("stage") == "main" for r in design["runs"]) == 3
    effects = json.loads((run_dir / "surrogates" / "anneal_effects.json").read_text())
    assert effects["mains"] == 3 and effects["targets"]
    assert "anneal" in result.output


def test_anneal_effects_find_a_planted_anneal_effect_and_no_interaction():
    rng = np.random.default_rng(0)
    M, A = 8, 5
    main_effect = rng.normal(0, 1.0, M)
    anneal_effect = np.array([0.0, 0.5, -0.5, 1.0, -1.0])
    parents, anneals, y, flat = [], [], [], []
    for m in range(M):
        for a in range(A):
            parents.append(f"t{m}")
            anneals.append(f"a{a}")
            y.append(main_effect[m] + anneal_effect[a] + rng.normal(0, 0.1))
            flat.append(main_effect[m] + rng.normal(0, 0.1))
    out = anneal_effects(parents, anneals, {"y": np.array(y), "flat": np.array(flat)}, draws=400)
    planted, none = out
    assert planted.p_anneal < 1e-6 and planted.anneal_lo > 0.4
    assert planted.anneal_lo <= anneal_effect.std(ddof=1) <= planted.anneal_hi + 0.1
    assert planted.interaction_sd < 0.2
    assert none.p_anneal > 0.01 and none.anneal_sd < 0.15


def test_dry_run_counts_a_branched_sweeps_tokens_once_per_main(tmp_path: Path):
    """4 mains x half the run, 16 branches x the other half, 1 replicate whole: 11 runs' tokens."""
    cfg = small_config(tmp_path, phases=PHASES)
    cfg["proxy"] = {"preset": "tiny", "tokens": 4096, "seq_len": 32, "batch_size": 8}
    cfg["sweep"] = {"workers": 1, "design": "branched", "mains": 4, "n_runs": 16, "replicates": 1}
    path = write_config(tmp_path / "b.yaml", cfg)
    result = CliRunner().invoke(app, ["data", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"{int((4 * 0.5 + 16 * 0.5 + 1) * 4096):,} training tokens in all" in result.output
