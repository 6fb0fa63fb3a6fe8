"""The accelerator's training step, checked on the CPU: grouped-GEMM experts against the MoE
written out per token, the whole step compiled with `fullgraph=True` (no graph break, no
recompilation from step to step) against the eager step, FlexAttention's sliding window
against the dense mask, and gradient accumulation against the whole batch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from proxies.layers import Attention
from proxies.moe import MoE, grouped_gemm_ok
from proxies.presets import get_preset
from proxies.train import TrainConfig, train_pack
from tests.test_proxies import _loader

TWO_LAYERS = get_preset("tiny", vocab_size=512, n_layers=2, global_every=2, window=16)
"""One sliding-window layer and one global one: every kind of layer, the least to compile."""


def _moe_reference(moe: MoE, x: torch.Tensor) -> torch.Tensor:
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


def test_grouped_experts_match_the_per_token_moe_in_value_and_gradients():
    torch.manual_seed(0)
    moe = MoE(P=2, D=16, E=4, k=2, F_=8, n_shared=1)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    with torch.no_grad():
        moe.bias[1, 2] = -10.0  # proxy 1's expert 2 is never chosen: an empty group
        moe.bias[0, 1] = 10.0  # proxy 0's expert 1 takes every token
    x = torch.randn(2, 40, 16)

    def value_and_grads(forward) -> list[torch.Tensor]:
        moe.zero_grad()
        y = forward()
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        return [y.detach()] + [p.grad.clone() for p in (moe.w1, moe.w2, moe.w3, moe.router)]

    expected = value_and_grads(lambda: _moe_reference(moe, x))
    moe.impl = "grouped"
    got = value_and_grads(lambda: moe(x)[0])
    loads = moe(x)[3]
    assert loads[1, 2] == 0 and loads[0, 1] == 40
    for a, b in zip(got, expected, strict=True):
        # the grouped GEMM multiplies in bf16 (8 bits of mantissa): relative error ~2^-8
        torch.testing.assert_close(a, b, rtol=3e-2, atol=3e-2 * float(b.abs().max()))


def test_grouped_gemm_needs_16_byte_rows():
    assert grouped_gemm_ok(torch.device("cpu"), 96, 384)
    assert not grouped_gemm_ok(torch.device("cpu"), 96, 100)


def test_the_compiled_step_has_no_graph_break_and_matches_the_eager_step():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    seeds = [0, 1]
    loaders = [_loader(s) for s in seeds]
    fast = TrainConfig(log_every=1, eval_tokens=2048)
    eager = train_pack(TWO_LAYERS, loaders, seeds, fast)
    compiled = train_pack(TWO_LAYERS, loaders, seeds, dataclasses.replace(fast, compile=True))
    # fullgraph=True makes a graph break an error; three graphs (loss with its backward, the
    # clipping, the update), each compiled once for all six steps: nothing recompiles
    assert not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] == 3
    for a, b in zip(eager, compiled, strict=True):
        assert b.status == "done"
        np.testing.assert_allclose(
            [v for _, v in b.loss_curve], [v for _, v in a.loss_curve], rtol=2e-3
        )


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_window_equals_the_dense_mask(monkeypatch):
    torch.manual_seed(0)
    attn = Attention(P=2, D=32, H=4, K=2, window=16, rope_base=10_000.0)
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():  # FlexAttention has no backward on a CPU (torch 2.13)
        dense = attn(x)
        attn.use_blocks(64, x.device)
        assert attn.blocks is not None
        # the block mask serves compiled graphs only; its eager reference stands in here
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        flex = attn(x)
        shorter = attn(x[:, :, :48])  # another length: the dense mask, not the block mask
    torch.testing.assert_close(flex, dense, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(shorter, dense[:, :, :48], rtol=1e-4, atol=1e-5)


def test_gradient_accumulation_equals_the_whole_batch():
    seeds = [3, 4]
    loaders = [_loader(s) for s in seeds]
    whole = train_pack(TWO_LAYERS, loaders, seeds, TrainConfig(log_every=1, eval_tokens=2048))
    halves = train_pack(
        TWO_LAYERS, loaders, seeds, TrainConfig(log_every=1, eval_tokens=2048, micro_batch=4)
    )
    for a, b in zip(whole, halves, strict=True):
        np.testing.assert_allclose(
            [v for _, v in b.loss_curve], [v for _, v in a.loss_curve], rtol=1e-4
        )
    with pytest.raises(ValueError, match="must divide"):
        train_pack(TWO_LAYERS, loaders, seeds, TrainConfig(micro_batch=3))
