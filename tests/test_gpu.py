"""What only a CUDA device can check: bf16 autocast, torch.compile, the automatic device choice
and packs on the GPU. Selected with `-m gpu`; skipped where there is no CUDA device."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from proxies.presets import get_preset
from proxies.train import TrainConfig, pick_device, train_one, train_pack
from tests.test_proxies import CFG, FAST, _loader

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_auto_device_is_cuda():
    assert pick_device("auto").type == "cuda"


def test_bf16_pack_matches_separate_runs_and_learns():
    seeds = [1, 2, 3]
    loaders = [_loader(s, tokens=8 * 32 * 40) for s in seeds]
    pack = train_pack(CFG, loaders, seeds, FAST)
    for p, s in enumerate(seeds):
        curve = np.array([v for _, v in pack[p].loss_curve])
        assert curve[-5:].mean() < curve[:5].mean()
        alone = np.array([v for _, v in train_one(CFG, loaders[p], s, FAST).loss_curve])
        # bf16 matmuls round differently in a batched and a single product.
        np.testing.assert_allclose(curve, alone, rtol=3e-2, atol=3e-2)


def test_compiled_training_matches_eager():
    cfg = dataclasses.replace(FAST, compile=True)
    eager = train_one(CFG, _loader(0), 0, FAST)
    compiled = train_one(CFG, _loader(0), 0, cfg)
    a = np.array([v for _, v in eager.loss_curve])
    b = np.array([v for _, v in compiled.loss_curve])
    np.testing.assert_allclose(a, b, rtol=3e-2, atol=3e-2)


def test_a_pack_of_sixty_gpu_proxies_fits_and_trains():
    model_cfg = get_preset("gpu-40m", vocab_size=512)
    seeds = list(range(60))
    loaders = [_loader(s, tokens=8 * 32 * 4) for s in seeds]
    results = train_pack(model_cfg, loaders, seeds, TrainConfig(log_every=1, eval_tokens=1024))
    assert all(r.status == "done" for r in results)
