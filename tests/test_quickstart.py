"""The quickstart's own config: its budget is one its corpora can serve. (That an exported
recipe keeps every domain within its repetition cap is checked on a run the tests make
themselves, `test_run.py`; a check of whatever `runs/` a checkout happens to hold skipped
everywhere else, CI included.)"""

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
