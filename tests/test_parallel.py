"""`sweep.workers`: how many local worker processes a sweep runs, and their threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import automixer.sweep.parallel as parallel
from automixer.config import parse_config
from automixer.sweep.parallel import cores, plan_workers
from tests.conftest import small_config


def _config(tmp_path: Path, workers: object):
    cfg = small_config(tmp_path)
    cfg["proxy"] = {"preset": "tiny", "tokens": 4096, "seq_len": 32, "batch_size": 4}
    cfg["sweep"] = {"workers": workers}
    return parse_config(yaml.safe_dump(cfg), source="t.yaml")


@pytest.mark.skipif(cores() < 2, reason="needs two cores to compare")
def test_auto_measures_both_ways_once_per_machine_and_shape(tmp_path: Path, monkeypatch):
    config = _config(tmp_path, "auto")
    plan = plan_workers(config, vocab_size=512)
    n = cores()
    assert set(plan.measured) == {"one process", f"{n} processes"}
    assert all(v > 0 for v in plan.measured.values())
    faster = max(plan.measured, key=lambda k: plan.measured[k])
    assert (plan.workers, plan.threads) == ((1, n) if faster == "one process" else (n, 1))

    def measure_again(*_a: object, **_k: object) -> float:
        raise AssertionError("measured again")

    monkeypatch.setattr(parallel, "measure", measure_again)
    assert plan_workers(config, vocab_size=512) == plan  # cached in run.cache_dir
    with pytest.raises(AssertionError, match="measured again"):
        plan_workers(config, vocab_size=1024)  # another shape is measured


def test_a_number_of_workers_splits_the_cores(tmp_path: Path):
    plan = plan_workers(_config(tmp_path, 2), vocab_size=512)
    assert (plan.workers, plan.threads) == (2, max(1, cores() // 2))


def test_auto_on_an_accelerator_is_one_worker(tmp_path: Path, monkeypatch):
    import proxies.train

    monkeypatch.setattr(proxies.train, "pick_device", lambda _name: torch.device("cuda"))
    monkeypatch.setattr(parallel, "measure", lambda *a, **k: pytest.fail("measured"))
    plan = plan_workers(_config(tmp_path, "auto"), vocab_size=512)
    assert plan.workers == 1 and plan.measured == {}


def test_workers_must_be_a_positive_number_or_auto(tmp_path: Path):
    from automixer.errors import AutomixerError

    for bad in (0, "many"):
        with pytest.raises(AutomixerError, match=r"sweep\.workers"):
            _config(tmp_path, bad)
