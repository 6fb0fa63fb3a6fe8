from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from automixer.data.loader import MixtureLoader
from proxies.layers import sliding_window_mask
from proxies.model import PackedLM
from proxies.moe import MoE
from proxies.optim import BatchedAdamW, BatchedMuon, newton_schulz, split_params
from proxies.presets import PRESETS, get_preset
from proxies.train import SilentCorruptionError, TrainConfig, train_one, train_pack

CFG = get_preset("tiny", vocab_size=512)
FAST = TrainConfig(lr=0.02, adam_lr=3e-3, log_every=1, eval_tokens=2048)


def _loader(seed: int, tokens: int = 8 * 32 * 6, weights: dict | None = None) -> MixtureLoader:
    rng = np.random.default_rng(123)
    # Two "domains" with different token statistics.
    shards = {
        "a": rng.integers(0, 256, 50_000).astype(np.uint16),
        "b": (rng.integers(0, 64, 50_000) * 8 % 512).astype(np.uint16),
    }
    return MixtureLoader(
        shards, weights or {"a": 0.7, "b": 0.3}, tokens, seq_len=32, batch_size=8, seed=seed
    )


def test_presets_report_parameter_counts():
    counts = PRESETS["quickstart"].param_counts()
    assert 0.8e6 < counts["active"] < 1.6e6 and counts["total"] > counts["active"]
    assert 80e6 < PRESETS["gpu-100m"].param_counts()["active"] < 160e6
    dense = get_preset("quickstart", dense=True).param_counts()
    assert dense["active"] == dense["total"]


def test_pack_equals_separate_training():
    seeds = [1, 2, 3]
    loaders = [
        _loader(s, weights=w)
        for s, w in zip(seeds, [{"a": 1.0}, {"b": 1.0}, {"a": 0.5, "b": 0.5}], strict=True)
    ]
    pack = train_pack(CFG, loaders, seeds, FAST)
    for p, s in enumerate(seeds):
        alone = train_one(CFG, loaders[p], s, FAST)
        curve_pack = np.array([v for _, v in pack[p].loss_curve])
        curve_alone = np.array([v for _, v in alone.loss_curve])
        np.testing.assert_allclose(curve_pack, curve_alone, rtol=1e-4, atol=1e-5)
        # Batched matmuls sum in another order than single ones; AdamW's normalised step turns
        # float noise in near-zero gradients into up to one step (adam_lr) of difference.
        for name, w in alone.state.items():
            torch.testing.assert_close(pack[p].state[name], w, rtol=0, atol=FAST.adam_lr)


def test_same_seed_bitwise_identical_weights():
    a = train_one(CFG, _loader(5), 7, FAST)
    b = train_one(CFG, _loader(5), 7, FAST)
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    c = train_one(CFG, _loader(5), 8, FAST)
    assert not torch.equal(a.state["head"], c.state["head"])


def test_silent_corruption_is_caught_at_next_check():
    cfg = TrainConfig(log_every=1, sdc_every=2)
    lo = _loader(0)

    def flip_at(when: int):
        def flip(step: int, model: PackedLM) -> None:
            if step == when:  # flip one low bit of one weight in replica 1, after the update
                with torch.no_grad():
                    bits = model.blocks[1].attn.wq.data[1].view(torch.int32)
                    bits[0, 0] ^= 1 << 3

        return flip

    # Flipped just before a check (steps 1, 3, 5 are checks): caught there, in that tensor.
    with pytest.raises(SilentCorruptionError) as info:
        train_pack(CFG, [lo, lo, lo], [4, 4, 4], cfg, on_step=flip_at(3))
    assert (info.value.step, info.value.replica, info.value.tensor) == (3, 1, "blocks.1.attn.wq")
    # Flipped between checks: the corruption spreads through the next update; still caught at
    # the next check.
    with pytest.raises(SilentCorruptionError) as info:
        train_pack(CFG, [lo, lo, lo], [4, 4, 4], cfg, on_step=flip_at(2))
    assert info.value.step == 3 and info.value.replica == 1
    # Without the flip the replicas stay bit-identical through every check.
    train_pack(CFG, [lo, lo], [4, 4], cfg)


def test_optimizer_groups_cover_every_parameter_once():
    model = PackedLM(CFG, [0, 1])
    muon, adamw = split_params(model)
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = {names[id(p)] for p in muon}
    adam_names = {names[id(p)] for p in adamw}
    assert "blocks.0.ffn.w1" in muon_names and "blocks.0.attn.wq" in muon_names
    assert "blocks.0.ffn.shared.w2" in muon_names
    assert {"embed", "head", "final_norm", "blocks.0.ffn.router"} <= adam_names
    assert not any("norm" in n for n in muon_names)
    assert len(muon_names) + len(adam_names) == len(list(model.parameters()))


def test_batched_muon_matches_torch_muon():
    torch.manual_seed(0)
    W = torch.randn(3, 5, 24, 16)  # pack of 3, 5 experts, (out, in) matrices
    grads = [torch.randn_like(W) for _ in range(3)]
    mine = torch.nn.Parameter(W.clone())
    opt = BatchedMuon([mine], lr=0.02, weight_decay=0.1, ns_dtype=torch.bfloat16)
    refs = [torch.nn.Parameter(W[p, e].clone()) for p in range(3) for e in range(5)]
    ref_opt = torch.optim.Muon(refs, lr=0.02, weight_decay=0.1)
    for g in grads:
        mine.grad = g.clone()
        opt.step()
        for i, r in enumerate(refs):
            r.grad = g[i // 5, i % 5].clone()
        ref_opt.step()
    for i, r in enumerate(refs):
        torch.testing.assert_close(mine.data[i // 5, i % 5], r.data, rtol=2e-2, atol=2e-3)
    G = torch.randn(4, 32, 8)
    ortho = newton_schulz(G, dtype=torch.float32)
    s = torch.linalg.svdvals(ortho)
    assert s.min() > 0.5 and s.max() < 1.5  # close to orthogonal


def test_stacked_newton_schulz_equals_one_parameter_at_a_time():
    from proxies.optim import newton_schulz_stacked

    g = torch.Generator().manual_seed(0)
    # two of one shape, one tall of the same shape transposed (stacked with them), one other
    Gs = [
        torch.randn(3, 5, 16, 24, generator=g),
        torch.randn(2, 16, 24, generator=g),
        torch.randn(4, 24, 16, generator=g),
        torch.randn(3, 8, 8, generator=g),
    ]
    stacked = newton_schulz_stacked(Gs, dtype=torch.float32)
    for G, got in zip(Gs, stacked, strict=True):
        want = torch.stack(
            [newton_schulz(m, dtype=torch.float32) for m in G.reshape(-1, *G.shape[-2:])]
        ).reshape(G.shape)
        assert got.shape == G.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_batched_adamw_matches_torch_adamw():
    torch.manual_seed(0)
    W = torch.randn(2, 6, 4)
    mine = torch.nn.Parameter(W.clone())
    ref = torch.nn.Parameter(W.clone())
    opt = BatchedAdamW([mine], lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95))
    ref_opt = torch.optim.AdamW([ref], lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    for _ in range(5):
        g = torch.randn_like(W)
        mine.grad, ref.grad = g.clone(), g.clone()
        opt.step()
        ref_opt.step()
    torch.testing.assert_close(mine.data, ref.data)
    frozen = mine.data.clone()
    mine.grad = torch.randn_like(W)
    opt.step(proxy_scale=torch.tensor([0.0, 1.0]))
    assert torch.equal(mine.data[0], frozen[0]) and not torch.equal(mine.data[1], frozen[1])


def test_routing_top_k_and_shared_expert():
    torch.manual_seed(0)
    moe = MoE(P=2, D=16, E=4, k=2, F_=8, n_shared=1)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 50, 16)
    _, top, gates = moe.route(x)
    assert top.shape == (2, 50, 2) and torch.all(top[..., 0] != top[..., 1])
    torch.testing.assert_close(gates.sum(-1), torch.ones(2, 50))
    assert int(moe(x)[3].sum()) == 2 * 50 * 2
    # The shared expert is always on: zeroing every routed expert leaves its output.
    with torch.no_grad():
        moe.w2.zero_()
    y0, _, _, _ = moe(x)
    assert moe.shared is not None
    torch.testing.assert_close(y0, moe.shared(x))
    assert y0.abs().sum() > 0


def test_expert_outputs_match_a_token_by_token_reference_in_value_and_gradients(monkeypatch):
    """Both ways of running the experts (each expert on its own rows, the CPU's; one batched
    matmul over a padded buffer, an accelerator's) against the MoE written out per token."""
    from torch.nn import functional as F

    import proxies.moe as moe_module

    torch.manual_seed(0)
    moe = MoE(P=2, D=16, E=4, k=2, F_=8, n_shared=1)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    with torch.no_grad():
        moe.router[0, 1] += 1.0  # uneven loads: the padded buffer pads most experts
    x = torch.randn(2, 40, 16)

    def reference() -> torch.Tensor:
        _, top, gates = moe.route(x)
        out = torch.zeros_like(x)
        for p in range(2):
            for n in range(40):
                for j in range(2):
                    e = int(top[p, n, j])
                    h = F.silu(moe.w1[p, e] @ x[p, n]) * (moe.w3[p, e] @ x[p, n])
                    out[p, n] = out[p, n] + gates[p, n, j] * (moe.w2[p, e] @ h)
        assert moe.shared is not None
        return out + moe.shared(x)

    def value_and_grads(forward) -> list[torch.Tensor]:
        moe.zero_grad()
        y = forward()
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        return [y.detach()] + [p.grad.clone() for p in (moe.w1, moe.w2, moe.w3, moe.router)]

    expected = value_and_grads(reference)
    ragged = value_and_grads(lambda: moe(x)[0])  # x is on the CPU: each expert its own rows
    monkeypatch.setattr(moe_module, "_experts_ragged", None)  # must not be called below
    moe.impl = "padded"
    padded = value_and_grads(lambda: moe(x)[0])
    for got in (ragged, padded):
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bias_balancing_moves_load_toward_uniform():
    torch.manual_seed(0)
    moe = MoE(P=1, D=16, E=4, k=1, F_=8, n_shared=0)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    with torch.no_grad():
        moe.router[0, 0] += 2.0  # expert 0 attracts almost everything
    x = torch.randn(1, 400, 16)
    x[..., :] += 0.5
    first = moe(x)[3].float()
    for _ in range(300):
        moe.update_bias(moe(x)[3], 0.01)
    last = moe(x)[3].float()
    assert (last.max() - last.min()) < 0.5 * (first.max() - first.min())


def test_grouped_query_attention_matches_repeated_heads_and_an_explicit_softmax(monkeypatch):
    """The kernel's own grouping of query heads over key/value heads (query head h reads
    key/value head h // (H / K), as repeat_interleave lays them out) and its masks, against
    attention written out: scores, mask, softmax, weighted values."""
    import proxies.layers as layers

    torch.manual_seed(0)
    x = torch.randn(2, 3, 20, 16)  # P, B, T, D

    def explicit(q, k, v, attn_mask=None, is_causal=False, enable_gqa=False):
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
        T = q.shape[-2]
        if is_causal:
            attn_mask = torch.ones(T, T, dtype=torch.bool).tril()
        scores = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
        return scores.masked_fill(~attn_mask, float("-inf")).softmax(-1) @ v

    for window in (None, 8):  # global, and a sliding window shorter than the sequence
        attn = layers.Attention(P=2, D=16, H=4, K=2, window=window, rope_base=10_000.0)
        for p in attn.parameters():
            torch.nn.init.normal_(p, std=0.3)
        got = attn(x)
        grads = torch.autograd.grad(got.sum(), [attn.wk, attn.wv])
        with monkeypatch.context() as m:
            m.setattr(layers.F, "scaled_dot_product_attention", explicit)
            want = attn(x)
            want_grads = torch.autograd.grad(want.sum(), [attn.wk, attn.wv])
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        for a, b in zip(grads, want_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_sliding_window_masking():
    m = sliding_window_mask(6, 3, torch.device("cpu"))
    assert m[5].tolist() == [False, False, False, True, True, True]
    assert not m[0, 1]  # causal
    cfg = get_preset("tiny", vocab_size=64, n_layers=1, global_every=4, window=4)
    model = PackedLM(cfg, [0])
    a = torch.randint(0, 64, (1, 1, 16))
    b = a.clone()
    b[0, 0, :5] = (b[0, 0, :5] + 1) % 64  # change tokens outside position 15's window
    la, _ = model(a)
    lb, _ = model(b)
    torch.testing.assert_close(la[0, 0, 15], lb[0, 0, 15])
    assert not torch.allclose(la[0, 0, 6], lb[0, 0, 6])


def test_nan_stops_one_proxy_and_the_pack_goes_on():
    loaders = [_loader(0), _loader(1)]
    cfg = TrainConfig(log_every=1)

    def poison(step: int, model: PackedLM) -> None:
        if step == 1:
            with torch.no_grad():
                model.head[1, 0, 0] = float("nan")

    res = train_pack(CFG, loaders, [0, 1], cfg, on_step=poison)
    assert res[0].status == "done" and res[1].status == "failed"
    assert "step 2" in (res[1].error or "")


def test_checkpoint_resume_gives_identical_results(tmp_path: Path):
    lo = _loader(3)
    cfg = TrainConfig(log_every=1, checkpoint_every=2)
    full = train_one(CFG, lo, 9, cfg)
    ck = tmp_path / "ck.pt"
    partial = train_one(CFG, lo, 9, cfg, checkpoint=ck, max_steps=3)
    assert partial.status == "running" and ck.is_file()
    resumed = train_one(CFG, lo, 9, cfg, checkpoint=ck)
    assert resumed.status == "done"
    assert [v for _, v in resumed.loss_curve] == [v for _, v in full.loss_curve]
    assert all(torch.equal(resumed.state[k], full.state[k]) for k in full.state)


def test_loss_falls_on_real_text(bundle_and_config):
    bundle, config = bundle_and_config
    loader = bundle.loader(
        {"code": 0.4, "bible": 0.3, "dictionary": 0.3}, config, seed=0, tokens=40 * 8 * 64
    )
    cfg = get_preset("tiny", vocab_size=bundle.tokenizer.get_vocab_size())
    res = train_one(
        cfg,
        loader,
        0,
        TrainConfig(log_every=1, eval_tokens=4096),
        val=bundle.val_arrays(),
        token_bytes=bundle.token_bytes,
    )
    curve = [v for _, v in res.loss_curve]
    assert np.mean(curve[-5:]) < np.mean(curve[:3]) - 1.0
    assert set(res.val_bpb) == {"code", "bible", "dictionary"}
    assert all(0.5 < v < 6 for v in res.val_bpb.values())


def test_fused_chunked_cross_entropy_matches_torch_in_value_and_gradients(monkeypatch):
    import torch.nn.functional as F

    import proxies.loss
    from proxies.loss import linear_cross_entropy

    monkeypatch.setitem(proxies.loss.CHUNK_BYTES, "cpu", 4 * 64 * 7)  # chunks of 7: ragged
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 16, generator=g, requires_grad=True)
    w = torch.randn(64, 16, generator=g, requires_grad=True)
    t = torch.randint(0, 64, (50,), generator=g)
    ours = linear_cross_entropy(x, w, t)
    (ours * 3.0).backward()
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    ref = F.cross_entropy(x @ w.T, t)
    (ref * 3.0).backward()
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(gx, x.grad)
    torch.testing.assert_close(gw, w.grad)
    with torch.no_grad():  # evaluation: the value alone
        torch.testing.assert_close(linear_cross_entropy(x, w, t), ref.detach())


def test_packed_fused_cross_entropy_matches_torch_per_proxy(monkeypatch):
    """The whole pack's output layer and loss at once (an accelerator's layout), in float32
    and with bf16 products (as on CUDA), against each proxy's plain loss."""
    import torch.nn.functional as F

    import proxies.loss
    from proxies.loss import packed_cross_entropy

    monkeypatch.setitem(proxies.loss.CHUNK_BYTES, "cpu", 4 * 64 * 3 * 7)  # 7 tokens a chunk
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 50, 16, generator=g, requires_grad=True)
    w = torch.randn(3, 64, 16, generator=g, requires_grad=True)
    t = torch.randint(0, 64, (3, 50), generator=g)
    weights = torch.tensor([1.0, -2.0, 0.5])
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        x.grad = w.grad = None
        ours = packed_cross_entropy(x, w, t, dtype=dtype)
        (ours * weights).sum().backward()
        gx, gw = x.grad.clone(), w.grad.clone()
        x.grad = w.grad = None
        ref = torch.stack(
            [F.cross_entropy((x[p].to(dtype) @ w[p].to(dtype).T).float(), t[p]) for p in range(3)]
        )
        (ref * weights).sum().backward()
        torch.testing.assert_close(ours, ref, rtol=tol, atol=tol)
        torch.testing.assert_close(gx, x.grad, rtol=tol, atol=tol * float(x.grad.abs().max()))
        torch.testing.assert_close(gw, w.grad, rtol=tol, atol=tol * float(w.grad.abs().max()))


def _page_faults(script: str) -> dict[str, int]:
    """The number a script prints, run in a fresh Python with glibc's defaults ("default") and
    with `keep_freed_pages` ("keep"), none of the caller's MALLOC_ settings passed on."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run = [sys.executable, "-c", script]
    return {
        mode: int(
            subprocess.run([*run, mode], capture_output=True, text=True, check=True, env=env).stdout
        )
        for mode in ("default", "keep")
    }


@pytest.mark.slow
def test_training_steps_reuse_freed_pages_with_keep_freed_pages():
    """Against glibc itself, each side in a fresh process: after the first ten steps, the
    quickstart proxy's steps fault (almost) no fresh pages in once `train_pack` has raised
    glibc's thresholds (the default side has train_pack's call switched off). Measured:
    8,000-18,000 pages over those 14 steps by default, 1,000-2,400 with them raised."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    script = """
import resource, sys, numpy as np, torch
import proxies.train as T
from automixer.data.loader import MixtureLoader
from proxies.presets import get_preset
torch.set_num_threads(1)
if sys.argv[1] == "default":
    T.keep_freed_pages = lambda: False
rng = np.random.default_rng(0)
shards = {"a": rng.integers(0, 2048, 100_000).astype(np.uint16)}
loader = MixtureLoader(shards, {"a": 1.0}, 24 * 16 * 128, 128, 16, seed=0)
marks = []
T.train_pack(
    get_preset("quickstart", vocab_size=2048), [loader], [0],
    T.TrainConfig(device="cpu", log_every=10**9, eval_tokens=0),
    on_step=lambda step, _m: marks.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt),
)
print(marks[-1] - marks[10])  # steps 11 to 24, after the heap has grown
"""
    faults = _page_faults(script)
    assert faults["default"] > 5000  # pages given back and faulted in again, step after step
    assert faults["keep"] < faults["default"] / 4


def test_keep_freed_pages_sets_glibc_s_thresholds():
    """Against glibc itself, in fresh processes: three 12 MB blocks (numpy's plain malloc)
    freed together are given back and faulted in again by default (measured: 10,568 faults
    over 10 rounds), and kept once the thresholds are raised (0); a user's own setting stands."""
    import os
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    script = """
import resource, sys, numpy as np
from proxies.alloc import keep_freed_pages
if sys.argv[1] == "keep":
    assert keep_freed_pages() and keep_freed_pages()  # a second call changes nothing
def round_():
    blocks = [np.ones(3 * 2**20, np.float32) for _ in range(3)]  # freed together on return
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = _page_faults(script)
    assert faults["default"] > 5000
    assert faults["keep"] < 20
    user = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "1000000"}
    keep = subprocess.run(
        [sys.executable, "-c", "from proxies.alloc import keep_freed_pages as k; print(k())"],
        capture_output=True,
        text=True,
        check=True,
        env=user,
    )
    assert keep.stdout.strip() == "False"  # a user's own setting stands
