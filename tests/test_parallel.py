"""`sweep.workers`: how many local worker processes a sweep runs, and their threads."""

from __future__ import annotations

import os
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


def test_a_node_with_four_gpus_runs_four_pinned_workers(tmp_path: Path, monkeypatch):
    import automixer.sweep.devices as devices
    from automixer.sweep.executors import worker_gpus

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(parallel, "measure", lambda *a, **k: pytest.fail("measured"))
    plan = plan_workers(_config(tmp_path, "auto"), vocab_size=512)
    assert plan.workers == 4 and plan.devices == ("0", "1", "2", "3")
    assert plan.threads == max(1, cores() // 4)
    assert worker_gpus(plan, 4) == ["0", "1", "2", "3"]
    assert "one worker per GPU" in parallel.describe(plan)
    # a scheduler that gave this job GPUs 5 and 7: the workers are pinned to those names
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert plan_workers(_config(tmp_path, "auto"), 512).devices == ("5", "7")
    # three workers asked for on two GPUs take them in turn
    assert plan_workers(_config(tmp_path, 3), 512).devices == ("5", "7", "5")
    # a device named in the config: one worker, on it, not pinned
    cfg = _config(tmp_path, "auto").model_copy(deep=True)
    cfg.proxy.device = "cuda:1"
    assert devices.worker_devices(cfg) == []
    # in the worker process, before CUDA starts: only its GPU is visible
    devices.pin_to("7")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"


def test_gpu_sizes_take_the_fastest_pack_whose_micro_batch_fits():
    from automixer.sweep.devices import Trial, choose

    def device(memory: int, overhead: float):
        """A device holding `memory` sequences at once, whose speed grows with the pack
        (per-pack overhead) and with the sequences in one pass."""

        def trial(pack: int, micro: int) -> Trial:
            if pack * micro > memory:
                return Trial(pack, micro, None)
            return Trial(pack, micro, 1000.0 * pack * micro / (1 + overhead / pack))

        return trial

    best, tried = choose(device(128, 8.0), batch_size=16, most=63)
    # every larger pack gains > 5%, so all are tried; the largest (63, never more than the
    # sweep's proxies) fits micro-batches of 2, 8 accumulated per step
    assert (best.pack, best.micro_batch) == (63, 2)
    assert [(t.pack, t.micro_batch) for t in tried] == [
        (8, 16), (16, 16), (16, 8), (32, 16), (32, 8), (32, 4),
        (63, 16), (63, 8), (63, 4), (63, 2),
    ]  # fmt: skip
    # a pack that gains under 5% stops the search (kept if it is faster at all)
    best, tried = choose(device(128, 0.01), batch_size=16, most=63)
    assert (best.pack, best.micro_batch) == (16, 8) and max(t.pack for t in tried) == 16
    best, tried = choose(device(128, 0.01), batch_size=16, most=63, packs=(8, 9, 64))
    assert (best.pack, best.micro_batch) == (8, 16) and max(t.pack for t in tried) == 9
    with pytest.raises(RuntimeError, match="not one proxy"):
        choose(lambda p, m: Trial(p, m, None), batch_size=4, most=8)


def test_on_a_cpu_auto_sizes_are_one_proxy_and_the_whole_batch(tmp_path: Path):
    from automixer.sweep.devices import resolve_sizes

    sizes = resolve_sizes(_config(tmp_path, 1), 512)
    assert (sizes.pack, sizes.micro_batch) == (1, 4)
