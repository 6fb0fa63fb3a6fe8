"""`automixer run`: the whole loop on a small config, end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from automixer.cli import app
from automixer.evals.suites import config_tasks, item_key
from automixer.recipes import load_recipe
from automixer.rundir import RunDir
from tests.conftest import small_config, write_config


@pytest.fixture(scope="module")
def looped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The whole loop on a small config: its run directory and the command's output."""
    tmp_path = tmp_path_factory.mktemp("loop")
    cfg = small_config(tmp_path)
    cfg["proxy"] = {
        "preset": "tiny",
        "tokens": 4096,
        "seq_len": 32,
        "batch_size": 8,
        "pack_size": 7,
    }
    cfg["sweep"] |= {"n_runs": 7, "replicates": 1, "heartbeat_s": 1, "min_distance": 0.01}
    cfg["evals"] = {"suites": ["arc_easy", "hellaswag", "humaneval", "gsm8k"], "n_per_suite": 4}
    cfg["surrogate"] = {"cv_folds": 3, "cv_repeats": 1}
    cfg["solve"] = {"target_tokens": 1e6}
    path = write_config(tmp_path / "run.yaml", cfg)
    result = CliRunner().invoke(app, ["run", str(path), "-q"])
    assert result.exit_code == 0, result.output
    return next((tmp_path / "runs").iterdir()), result.output


@pytest.mark.slow
def test_run_goes_from_data_to_recipes(looped: tuple[Path, str]):
    run_dir, output = looped
    assert pl.read_parquet(run_dir / "runs.parquet").height == 8
    assert (run_dir / "surrogates" / "cv.csv").is_file()
    solution = json.loads((run_dir / "solution.json").read_text())
    recipe = load_recipe(run_dir / "recipes" / "recipe.yaml")
    assert recipe["mixture"]["code"]["weight"] == round(solution["weights"]["code"], 8)
    assert recipe["config_hash"] == solution["config_hash"]
    assert recipe["target_tokens"] == 1_000_000
    for d, v in recipe["mixture"].items():  # at the budget the solver enforced
        assert v["epochs"] <= recipe["max_epochs"] * (1 + 1e-6), d
        assert v["available_basis"] == "counted"
    for name in [
        "recipe.json",
        "megatron_blend.txt",
        "olmo_core_sources.yaml",
        "olmo_core_dataset.yaml",
        "hf_interleave.json",
        "recipe.csv",
    ]:
        assert (run_dir / "recipes" / name).is_file()
    assert "run directory" in output
    report = (run_dir / "report.html").read_text()
    assert f"{solution['objective']['predicted']:+.3f}" in report
    assert f"{solution['optimism_gap']:+.3f}" in report
    assert report.count("data:image/png;base64,") >= 6
    assert "http://" not in report and "https://" not in report  # readable offline
    before = _snapshot(run_dir)
    _execute_notebook(run_dir)
    assert _snapshot(run_dir) == before  # the notebook reads the run, it rewrites nothing
    _validate(run_dir)
    _ladder(run_dir)
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    report = (run_dir / "report.html").read_text()
    assert report.index("Verdict:") < report.index("<h2>Summary")  # the first screen
    for check in ("signal over seed noise", "out-of-fold accuracy", "transfer ladder"):
        assert check in report and check in result.output
    assert "<h2>Transfer ladder</h2>" in report


def _ladder(run_dir: Path) -> None:
    """`automixer ladder`: the same mixtures and seeds at two scales."""
    args = ["--rungs", "1x1,1.5x2", "--runs", "2", "--seeds", "2", "--n-per-suite", "3", "-q"]
    result = CliRunner().invoke(app, ["ladder", str(run_dir), *args])
    assert result.exit_code == 0, result.output
    out = json.loads((run_dir / "ladder.json").read_text())
    assert [r["name"] for r in out["rungs"]] == ["1x1", "1.5x2"]
    assert out["rungs"][1]["active_params"] > out["rungs"][0]["active_params"]
    # the solved, natural and uniform mixtures, the sweep's best run, and --runs 2 sweep runs
    assert {"solved", "natural", "uniform", "best run"} <= set(out["mixtures"])
    assert len(out["mixtures"]) == 6
    assert set(out["objective"]["rank_correlation"]) == {"1x1->1.5x2"}
    assert set(out["objective"]["solved_margin"]) == {"1x1", "1.5x2"}
    assert "ability:math:bpb" in out["targets"]
    assert (run_dir / "ladder" / "1.5x2" / "solved-seed1.pt").is_file()
    assert "transfer ladder" in result.output


@pytest.mark.slow
def test_report_opens_in_a_browser(looped: tuple[Path, str]):
    """The report in a real browser (Debian's chromium through Selenium, no browser download):
    it renders, every figure loads, the console is clean; a screenshot is kept for people."""
    from tests.browser import open_page

    run_dir, _ = looped
    report = run_dir / "report.html"
    if not report.is_file():
        CliRunner().invoke(app, ["report", str(run_dir)])
    shot = Path(os.environ.get("AUTOMIXER_SCREENSHOT_DIR", run_dir)) / "report.png"
    page = open_page(report, screenshot=shot)
    assert page.title.startswith("automixer report")
    assert page.images >= 6 and page.broken_images == []
    assert page.console_errors == []
    assert "Verdict:" in page.text
    assert shot.is_file() and shot.stat().st_size > 10_000


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _validate(run_dir: Path) -> None:
    """`automixer validate`: a wider model on the solved, natural and uniform mixtures and the
    sweep's best measured run."""
    args = ["--width", "1.5", "--tokens-factor", "2", "--n-per-suite", "3", "--seeds", "2", "-q"]
    recipe = run_dir / "recipes" / "recipe.yaml"
    result = CliRunner().invoke(app, ["validate", str(recipe), *args])
    assert result.exit_code == 0, result.output
    out = json.loads((run_dir / "validation.json").read_text())
    mixtures = {"solved", "natural", "uniform", "best run"}
    assert set(out["objective"]["values"]) == mixtures
    weights = {d: v["weight"] for d, v in load_recipe(recipe)["mixture"].items()}
    assert out["mixtures"]["solved"] == pytest.approx(weights)
    assert out["settings"]["tokens"] == 2 * 4096
    assert out["settings"]["params"]["active"] > out["settings"]["proxy_params"]["active"]
    for m in mixtures:
        assert f"{out['objective']['values'][m]:+.3f}" in result.output
        assert (run_dir / "validate" / f"{m}-seed0.pt").is_file()
    for b in ("natural", "uniform", "best run"):  # paired by seed, with a t interval
        margin = out["margins"][b]
        assert len(margin["per_seed"]) == 2 and margin["half_width"] is not None
        assert f"solved - {b}: {margin['mean']:+.3f} (95% t interval" in result.output
    assert "objective" in result.output and "ability:math:bpb" in result.output
    # Held-out items: 3 per suite, none of those the sweep scored or training holds.
    assert all(n == 3 for n in out["settings"]["items"].values())
    config = RunDir.open(run_dir).config
    manifest = json.loads((run_dir / "manifest.json").read_text())
    left_out = set(manifest["contaminated_items"])
    scored = {item_key(t) for t in config_tasks(config, exclude=left_out)}
    held = set(out["settings"]["item_keys"])
    assert len(held) == sum(out["settings"]["items"].values())
    assert not held & scored and not held & left_out
    again = CliRunner().invoke(
        app, ["eval", str(run_dir / "validate" / "solved-seed0.pt"), "--no-domains", "-q"]
    )
    assert again.exit_code == 0, again.output


def _execute_notebook(run_dir: Path) -> None:
    """notebooks/analysis.ipynb runs top to bottom on this run directory."""
    import os

    import nbformat
    from nbclient import NotebookClient

    root = Path(__file__).parents[1]
    nb = nbformat.read(root / "notebooks" / "analysis.ipynb", as_version=4)
    os.environ["AUTOMIXER_RUN_DIR"] = str(run_dir)
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(root)}}
        ).execute()
    finally:
        os.environ.pop("AUTOMIXER_RUN_DIR", None)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
