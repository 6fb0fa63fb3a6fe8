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


def test_a_pack_of_more_than_1023_experts_runs_as_several_grouped_gemms(monkeypatch):
    """CUTLASS's grouped GEMM refuses 1024 groups or more: a pack of 64 proxies x 16 experts
    (1,024) runs as two GEMMs of 32 proxies each, and equals the ragged path."""
    torch.manual_seed(0)
    moe = MoE(P=64, D=16, E=16, k=2, F_=16, n_shared=1)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(64, 12, 16)
    groups: list[int] = []
    real = F.grouped_mm

    def counted(a, b, *, offs, **kw):
        groups.append(offs.numel())
        return real(a, b, offs=offs, **kw)

    def value_and_grads() -> list[torch.Tensor]:
        moe.zero_grad()
        y = moe(x)[0]
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        return [y.detach()] + [p.grad.clone() for p in (moe.w1, moe.w2, moe.w3)]

    ragged = value_and_grads()
    moe.impl = "grouped"
    monkeypatch.setattr(F, "grouped_mm", counted)
    grouped = value_and_grads()
    assert groups and max(groups) <= 1023
    assert sorted(set(groups)) == [512]  # two GEMMs of 32 proxies, for w1|w3 and for w2
    for a, b in zip(grouped, ragged, strict=True):
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
    # fullgraph=True makes a graph break an error; three graphs (the sliding-window block, the
    # global block, the output layer with the loss), each compiled once for all six steps:
    # nothing recompiles
    assert not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] == 3
    for a, b in zip(eager, compiled, strict=True):
        assert b.status == "done"
        np.testing.assert_allclose(
            [v for _, v in b.loss_curve], [v for _, v in a.loss_curve], rtol=2e-3
        )
    # regional compilation: four layers (three sliding-window, one global) reuse the same
    # three graphs' code: nothing new is compiled for depth
    deeper = get_preset("tiny", vocab_size=512, n_layers=4, global_every=4, window=16)
    train_pack(deeper, loaders, seeds, dataclasses.replace(fast, compile=True), max_steps=2)
    assert not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] == 3


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


BLOCKED = ("pydantic", "polars", "optuna")
"""What a lent GPU machine's image lacks (it has torch, numpy, pyyaml, rich, typer,
scikit-learn and tokenizers)."""


def test_the_device_benchmark_runs_with_only_torch_numpy_and_proxies(tmp_path):
    """`python benchmarks/gpu_speed.py` from another directory, with pydantic, polars and
    optuna unimportable and no PYTHONPATH to the repository: every `proxies` module imports
    and the benchmark writes one JSON line per row as it goes."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    blocker = tmp_path / "blocked"
    blocker.mkdir()
    for name in BLOCKED:
        (blocker / f"{name}.py").write_text('raise ImportError("not on the lent machine")\n')
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    root = Path(__file__).resolve().parents[1]
    modules = sorted(p.stem for p in (root / "proxies").glob("*.py") if p.stem != "__init__")
    check = "; ".join(f"import proxies.{m}" for m in modules) + "; import automixer.config"
    probe = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    # everything in proxies imports; automixer (pydantic) fails: the block works
    assert "not on the lent machine" in probe.stderr and "automixer/config.py" in probe.stderr
    rows = tmp_path / "rows.jsonl"
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "gpu_speed.py"), "--device", "cpu",
         "--quick", "--out", str(rows)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [r["what"] for r in written] == [
        "gpu-40m pack", "gpu-40m alone", "quickstart pack of 60"
    ]  # fmt: skip
    assert all(r["tokens_per_s"] > 0 for r in written)
    assert json.loads(done.stdout.splitlines()[-1])["runs"] == [
        {k: v for k, v in r.items() if k not in ("device", "torch")} for r in written
    ]


def test_the_accelerator_layout_equals_the_cpu_layout_in_loss_and_every_gradient():
    """The whole model in the accelerator's layout (grouped bf16 experts, one embedding
    lookup, the pack's fused output layer and loss) against the CPU's (ragged float32
    experts, one proxy at a time): the same losses, and every parameter's gradient, within
    bf16 tolerance."""
    from proxies.model import PackedLM

    cfg = get_preset("tiny", vocab_size=512, n_layers=2, global_every=2, window=16)
    batch = torch.randint(0, 512, (3, 4, 33), generator=torch.Generator().manual_seed(0))

    def losses_and_grads(model: PackedLM) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce, aux, _ = model.losses(batch)
        (ce + aux).sum().backward()
        return ce.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    cpu = PackedLM(cfg, [0, 1, 2])
    fast = PackedLM(cfg, [0, 1, 2]).device_layout(32, torch.device("cpu"))
    assert all(m.impl == "grouped" for m in fast.moe_layers()) and fast.vectorised
    want_ce, want = losses_and_grads(cpu)
    got_ce, got = losses_and_grads(fast)
    torch.testing.assert_close(got_ce, want_ce, rtol=1e-2, atol=1e-2)
    for name, g in want.items():
        torch.testing.assert_close(
            got[name], g, rtol=5e-2, atol=5e-2 * float(g.abs().max()), msg=name
        )
