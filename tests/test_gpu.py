"""What only a CUDA device can check: bf16 autocast, torch.compile, the automatic device choice,
packs on the GPU, a step with no host synchronisation and the grouped GEMM on the device.
Selected with `-m gpu`; skipped where there is no CUDA device."""

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
    eager = train_one(CFG, _loader(0), 0, dataclasses.replace(FAST, compile=False))
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


def test_the_compiled_step_never_waits_for_the_host():
    """Steps 2 and 3 run under CUDA's sync debug mode "error": any host synchronisation in
    the batch's copy, the compiled loss and backward, the clipping, the update or the NaN
    bookkeeping raises."""
    loaders = [_loader(s) for s in (0, 1)]

    def watch(step: int, _model: object) -> None:
        if step == 1:  # after the compiling steps and the first loss read
            torch.cuda.set_sync_debug_mode("error")
        if step == 3:
            torch.cuda.set_sync_debug_mode(0)

    try:
        results = train_pack(
            CFG,
            loaders,
            [0, 1],
            TrainConfig(log_every=10**6, eval_tokens=0, compile=True),
            on_step=watch,
            max_steps=5,
        )
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(r.status == "running" for r in results)  # stopped early, none failed


def test_grouped_experts_on_the_device_match_the_cpu_reference():
    from proxies.moe import MoE
    from tests.test_device_step import _moe_reference

    torch.manual_seed(0)
    moe = MoE(P=2, D=64, E=4, k=2, F_=64, n_shared=1)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 256, 64)
    want = _moe_reference(moe, x).detach()
    moe = moe.cuda()
    moe.impl = "grouped"
    got = moe(x.cuda())[0].detach().cpu()
    torch.testing.assert_close(got, want, rtol=3e-2, atol=3e-2 * float(want.abs().max()))
