"""The quickstart's own config: its budget is one its corpora can serve, and the recipe that
`make quickstart` exported keeps every domain within its repetition cap."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from automixer.cli import app

ROOT = Path(__file__).parents[1]
CONFIG = ROOT / "configs" / "quickstart.yaml"


@pytest.mark.slow
def test_quickstart_budget_is_one_its_corpora_can_serve(tmp_path: Path):
    """The data stage refuses a budget the data cannot serve (before anything trains)."""
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["run"] |= {"out_dir": str(tmp_path / "runs"), "cache_dir": str(ROOT / ".cache/automixer")}
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["data", str(path), "-q"])
    assert result.exit_code == 0, result.output
    cfg["solve"]["target_tokens"] = 1e9  # a hundred times more: refused, with the largest
    path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["data", str(path), "-q"])
    assert result.exit_code == 2 and "largest feasible budget" in result.output


def test_the_exported_quickstart_recipe_respects_its_caps():
    recipes = sorted(ROOT.glob("runs/quickstart-*/recipes/recipe.yaml"))
    if not recipes:
        pytest.skip("no quickstart run here yet (make quickstart)")
    for path in recipes:
        recipe = yaml.safe_load(path.read_text())
        if recipe.get("automixer_recipe") != 2:
            continue  # from an older automixer
        for d, v in recipe["mixture"].items():
            assert v["epochs"] <= recipe["max_epochs"] * (1 + 1e-6), (path, d)
