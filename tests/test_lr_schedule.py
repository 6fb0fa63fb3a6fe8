"""The learning-rate schedule the training step actually runs, at every step, against the
schedule the config describes: warmup over a share of the tokens, warmup-stable-decay landing on
a tenth of the peak at the last step, for a proxy's length and a validation model's 4x."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import proxies.train as train
from automixer.data.loader import MixtureLoader
from proxies.optim import lr_multiplier
from proxies.presets import get_preset
from proxies.train import TrainConfig, train_pack

CFG = get_preset("tiny", vocab_size=512)


def _phased_loader(steps: int) -> MixtureLoader:
    rng = np.random.default_rng(0)
    shards = {"a": rng.integers(0, 512, 60_000).astype(np.uint16)}
    shards["b"] = rng.integers(0, 512, 60_000).astype(np.uint16)
    # flat over the phases: each phase's weights sum to its share
    weights = {"a@main": 0.525, "b@main": 0.225, "a@anneal": 0.05, "b@anneal": 0.2}
    return MixtureLoader(
        shards,
        weights,
        tokens=steps * 4 * 32,
        seq_len=32,
        batch_size=4,
        seed=1,
        phases=[("main", 0.75), ("anneal", 0.25)],
    )


def _multipliers_run(monkeypatch: pytest.MonkeyPatch, loader: MixtureLoader) -> list[float]:
    """The multiplier each optimizer step of a real training run was given."""
    seen: list[float] = []
    original = train.optimizer_step

    def spy(model, opt, active, mult, loads):  # type: ignore[no-untyped-def]
        seen.append(float(mult))
        return original(model, opt, active, mult, loads)

    monkeypatch.setattr(train, "optimizer_step", spy)
    cfg = TrainConfig(warmup_fraction=0.05, schedule="wsd", log_every=10**6, eval_tokens=0)
    train_pack(CFG, [loader], [0], cfg)
    return seen


@pytest.mark.parametrize(
    "steps, anneal, warmup",
    [
        # a quickstart proxy: 24 steps, 18 main and 6 anneal; 5% warmup is 1.2 steps
        (24, 18, [1 / 1.2]),
        # validate's default 4x the tokens: 96 steps, 72 and 24; warmup 4.8 steps
        (96, 72, [1 / 4.8, 2 / 4.8, 3 / 4.8, 4 / 4.8]),
    ],
)
def test_wsd_runs_the_configured_schedule_at_every_step(monkeypatch, steps, anneal, warmup):
    loader = _phased_loader(steps)
    assert (loader.steps, loader.decay_start) == (steps, anneal)
    got = _multipliers_run(monkeypatch, loader)
    assert len(got) == steps
    n = steps - anneal
    expected = warmup + [1.0] * (anneal - len(warmup))
    # the anneal: linear from the peak to 0.1 of it, one n-th of the way per step, so the
    # first anneal step is already below the peak and the last one is at 0.1 exactly
    expected += [1.0 - 0.9 * k / n for k in range(1, n + 1)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got[anneal] < 1.0 and got[anneal - 1] == 1.0
    assert math.isclose(got[-1], 0.1, abs_tol=1e-6)


def test_a_proxy_and_a_longer_model_warm_up_over_the_same_share_of_tokens():
    """At the same share of training, the same multiplier: step 0 of 24 ends where step 3 of 96
    does (1/24 of the tokens), step 1 of 48 there too."""
    for short, long_, steps_short, steps_long in [(0, 3, 24, 96), (1, 3, 48, 96)]:
        a = lr_multiplier(short, steps_short, 0.05, "wsd")
        b = lr_multiplier(long_, steps_long, 0.05, "wsd")
        assert math.isclose(a, b) and a < 1.0


def test_one_phase_schedules_end_exactly_at_their_final_value():
    for steps in (10, 24, 97):
        wsd = [lr_multiplier(i, steps, 0.05, "wsd") for i in range(steps)]
        cosine = [lr_multiplier(i, steps, 0.05, "cosine") for i in range(steps)]
        d = int(steps * 0.8)  # the last fifth decays
        assert wsd[d - 1] == 1.0 and wsd[d] < 1.0
        assert math.isclose(wsd[-1], 0.1) and math.isclose(cosine[-1], 0.1)
        after_warmup = cosine[math.ceil(steps * 0.05) :]
        assert all(x >= y for x, y in itertools.pairwise(after_warmup))
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_multiplier(0, 10, 0.05, "linear")
