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


def test_gpu_sizes_are_planned_from_memory_and_measured_at_most_twice():
    from automixer.sweep.devices import Trial, choose
    from proxies.moe import gemm_chunks
    from proxies.presets import get_preset
    from proxies.timing import estimate_bytes, plan_sizes

    gib = 2**30
    cfg = get_preset("gpu-40m")
    plan = plan_sizes(cfg, 1024, 64, most=63, memory_bytes=80 * gib)
    assert len(plan) == 2
    (pack, micro), fallback = plan
    assert estimate_bytes(cfg, pack, micro, 1024) <= 0.85 * 80 * gib
    assert 2 * micro > 64 or estimate_bytes(cfg, pack, 2 * micro, 1024) > 0.85 * 80 * gib
    assert fallback == (pack, micro // 2)
    # the estimate grows with the pack and the micro-batch
    assert estimate_bytes(cfg, 8, 8, 1024) < estimate_bytes(cfg, 8, 16, 1024)
    assert estimate_bytes(cfg, 8, 8, 1024) < estimate_bytes(cfg, 16, 8, 1024)
    # a smaller device never plans more tokens in one pass; a tiny one plans nothing
    small_pack, small_micro = plan_sizes(cfg, 1024, 64, 63, 24 * gib)[0]
    assert small_pack * small_micro <= pack * micro
    assert plan_sizes(cfg, 1024, 64, 63, gib // 4) == []
    # never more proxies than the sweep has
    assert plan_sizes(get_preset("quickstart"), 256, 16, 5, 80 * gib)[0][0] == 5
    # any planned pack runs its experts as grouped GEMMs of at most 1023 groups
    for preset in ("gpu-40m", "gpu-100m"):
        big = get_preset(preset)
        for p, _ in plan_sizes(big, 1024, 64, 63, 141 * gib):
            assert all((b - a) * big.n_experts <= 1023 for a, b in gemm_chunks(p, big.n_experts))

    made: list[tuple[int, int]] = []

    def trial(p: int, m: int) -> Trial:  # a device holding 64 sequences at once
        made.append((p, m))
        return Trial(p, m, None if p * m > 64 else 1000.0 * p * m)

    best, tried = choose(trial, [(16, 4), (16, 2)])  # the first fits: one compilation
    assert (best.pack, best.micro_batch) == (16, 4) and made == [(16, 4)]
    best, tried = choose(trial, [(16, 8), (16, 4)])  # out of memory: the second, and no more
    assert (best.pack, best.micro_batch) == (16, 4) and len(tried) == 2
    with pytest.raises(RuntimeError, match=r"16 proxies x 8 sequences.*set proxy\.pack_size"):
        choose(trial, [(16, 8), (32, 8)])
    with pytest.raises(RuntimeError, match="not one proxy fits"):
        choose(trial, [])


def test_on_a_cpu_auto_sizes_are_one_proxy_and_the_whole_batch(tmp_path: Path):
    from automixer.sweep.devices import resolve_sizes

    sizes = resolve_sizes(_config(tmp_path, 1), 512)
    assert (sizes.pack, sizes.micro_batch) == (1, 4)
