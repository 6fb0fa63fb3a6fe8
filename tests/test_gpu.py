"""What only a CUDA device can check: bf16 autocast, the compiled step, the automatic device
choice, packs on the GPU, a step with no host synchronisation, the grouped GEMM (with an empty
group, forward and backward) and the fused output layer with its loss on the device.

Needs only torch, numpy and `proxies` (a lent machine's image has no more): `python -m pytest
-m gpu tests/test_gpu.py` where pytest is installed, `python tests/test_gpu.py` where it is not
(`benchmarks/device_check.sh` runs whichever it can). Skipped where there is no CUDA device.
Nothing here compiles a pack of 60 (the benchmark does, once)."""

from __future__ import annotations

import dataclasses
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, too

from proxies.moe import MoE
from proxies.presets import get_preset
from proxies.train import TrainConfig, pick_device, train_one, train_pack

try:
    import pytest

    pytestmark = [
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ]
except ImportError:  # run as a script on a machine without pytest
    pytest = None  # type: ignore[assignment]

CFG = get_preset("tiny", vocab_size=512)
FAST = TrainConfig(lr=0.02, adam_lr=3e-3, log_every=1, eval_tokens=0)


class _Tokens:
    """Batches from a skewed unigram over 64 of the 512 tokens: a loss a few steps lower."""

    def __init__(self, seed: int, steps: int = 6, batch_size: int = 8, seq_len: int = 32):
        self.seed, self.steps, self.batch_size, self.seq_len = seed, steps, batch_size, seq_len

    def batch(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        ids = np.minimum(rng.geometric(0.08, (self.batch_size, self.seq_len + 1)), 63)
        return ids * 8


def _moe_reference(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """The MoE written out token by token, in float32."""
    _, top, gates = moe.route(x)
    P, N, _ = x.shape
    out = torch.zeros_like(x)
    for p in range(P):
        for n in range(N):
            for j in range(moe.k):
                e = int(top[p, n, j])
                h = F.silu(moe.w1[p, e] @ x[p, n]) * (moe.w3[p, e] @ x[p, n])
                out[p, n] = out[p, n] + gates[p, n, j] * (moe.w2[p, e] @ h)
    assert moe.shared is not None
    return out + moe.shared(x)


def _value_and_grads(module: torch.nn.Module, forward, params) -> list[torch.Tensor]:
    module.zero_grad()
    y = forward()
    (y * torch.linspace(-1, 1, y.numel(), device=y.device).view_as(y)).sum().backward()
    return [y.detach().cpu()] + [p.grad.detach().cpu().clone() for p in params]


def test_auto_device_is_cuda():
    assert pick_device("auto").type == "cuda"


def test_bf16_pack_matches_separate_runs_and_learns():
    seeds = [1, 2, 3]
    loaders = [_Tokens(s, steps=40) for s in seeds]
    eager = dataclasses.replace(FAST, compile=False)
    pack = train_pack(CFG, loaders, seeds, eager)
    for p, s in enumerate(seeds):
        curve = np.array([v for _, v in pack[p].loss_curve])
        assert curve[-5:].mean() < curve[:5].mean()
        alone = np.array([v for _, v in train_one(CFG, loaders[p], s, eager).loss_curve])
        # bf16 matmuls round differently in a batched and a single product.
        np.testing.assert_allclose(curve, alone, rtol=3e-2, atol=3e-2)


def test_compiled_training_matches_eager():
    eager = train_one(CFG, _Tokens(0), 0, dataclasses.replace(FAST, compile=False))
    compiled = train_one(CFG, _Tokens(0), 0, dataclasses.replace(FAST, compile=True))
    a = np.array([v for _, v in eager.loss_curve])
    b = np.array([v for _, v in compiled.loss_curve])
    np.testing.assert_allclose(a, b, rtol=3e-2, atol=3e-2)


def test_a_pack_of_sixty_gpu_proxies_fits_and_trains():
    model_cfg = get_preset("gpu-40m", vocab_size=512)
    seeds = list(range(60))
    loaders = [_Tokens(s, steps=4) for s in seeds]
    results = train_pack(model_cfg, loaders, seeds, dataclasses.replace(FAST, compile=False))
    assert all(r.status == "done" for r in results)


def test_the_compiled_step_never_waits_for_the_host():
    """Steps 2 and 3 run under CUDA's sync debug mode "error": any host synchronisation in
    the batch's copy, the compiled regions and their backward, the clipping, the update or
    the NaN bookkeeping raises."""
    loaders = [_Tokens(s) for s in (0, 1)]

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


def test_grouped_experts_with_an_empty_group_match_the_reference_forward_and_backward():
    torch.manual_seed(0)
    moe = MoE(P=2, D=64, E=4, k=2, F_=64, n_shared=1)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.1)
    with torch.no_grad():
        moe.bias[1, 2] = -10.0  # proxy 1's expert 2 is never chosen: an empty group
        moe.bias[0, 1] = 10.0  # proxy 0's expert 1 takes every token
    x = torch.randn(2, 256, 64)
    params = (moe.w1, moe.w2, moe.w3, moe.router)
    want = _value_and_grads(moe, lambda: _moe_reference(moe, x), params)
    moe = moe.cuda()
    moe.impl = "grouped"
    xc = x.cuda()
    got = _value_and_grads(moe, lambda: moe(xc)[0], params)
    loads = moe(xc)[3].cpu()
    assert loads[1, 2] == 0 and loads[0, 1] == 256
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=3e-2, atol=3e-2 * float(b.abs().max()))


def test_fused_loss_on_the_device_matches_the_plain_one():
    from proxies.loss import packed_cross_entropy

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 700, 64, generator=g).cuda().requires_grad_()
    w = (0.1 * torch.randn(3, 4096, 64, generator=g)).cuda().requires_grad_()
    t = torch.randint(0, 4096, (3, 700), generator=g).cuda()
    ours = packed_cross_entropy(x, w, t)
    ours.sum().backward()
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    plain = torch.stack(
        [F.cross_entropy((x[p].bfloat16() @ w[p].bfloat16().T).float(), t[p]) for p in range(3)]
    )
    plain.sum().backward()
    torch.testing.assert_close(ours, plain, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(gx, x.grad, rtol=3e-2, atol=3e-2 * float(x.grad.abs().max()))
    torch.testing.assert_close(gw, w.grad, rtol=3e-2, atol=3e-2 * float(w.grad.abs().max()))


def main() -> int:
    """Run every test here without pytest; the exit status is the number that failed."""
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to run")
        return 0
    failed = 0
    for name, test in list(globals().items()):
        if name.startswith("test_") and callable(test):
            try:
                test()
                print(f"PASSED {name}", flush=True)
            except Exception:
                failed += 1
                print(f"FAILED {name}\n{traceback.format_exc()}", flush=True)
    print(f"{failed} failed", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
