from __future__ import annotations

import numpy as np
import pytest

from automixer.data.loader import MixtureLoader, PackLoader, largest_remainder
from automixer.errors import AutomixerError, BudgetError


def _shards(sizes: dict[str, int]) -> dict[str, np.ndarray]:
    # Each domain's tokens encode its own index, so a window tells which domain it came from.
    return {
        d: np.full(n, i, dtype=np.uint16) + (np.arange(n, dtype=np.uint16) % 7) * 10
        for i, (d, n) in enumerate(sizes.items())
    }


SIZES = {"a": 200_000, "b": 100_000, "c": 50_000, "d": 30_000}


def test_proportions_match_weights(bundle_and_config):
    bundle, config = bundle_and_config
    weights = {"code": 0.55, "bible": 0.3, "dictionary": 0.15}
    loader = bundle.loader(weights, config, seed=3)
    assert loader.max_abs_error() <= 0.005
    counts = dict.fromkeys(weights, 0)
    for step in range(len(loader)):
        for i in loader.domain_of_rows(step):
            counts[loader.domains[i]] += loader.seq_len
    total = sum(counts.values())
    assert total == loader.tokens
    for d, w in weights.items():
        assert abs(counts[d] / total - w) <= 0.005


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_weight_is_exactly_zero(seed: int):
    loader = MixtureLoader(
        _shards(SIZES),
        {"a": 0.5, "b": 0.5 - 1e-3, "c": 1e-3, "d": 0.0},
        tokens=200_000,
        seq_len=32,
        batch_size=8,
        seed=seed,
    )
    assert loader.realized_shares()["d"] == 0.0
    for batch in loader:
        assert not np.any(batch % 10 == 3)  # no token of domain d (index 3) anywhere


def test_same_seed_same_batches():
    w = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
    one = MixtureLoader(_shards(SIZES), w, tokens=100_000, seq_len=32, batch_size=8, seed=7)
    two = MixtureLoader(_shards(SIZES), w, tokens=100_000, seq_len=32, batch_size=8, seed=7)
    other = MixtureLoader(_shards(SIZES), w, tokens=100_000, seq_len=32, batch_size=8, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(one, two, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(one, other, strict=True))
    resumed = list(one.iter_from(5))
    assert np.array_equal(resumed[0], one.batch(5))


def test_windows_without_replacement_within_an_epoch():
    tokens = {"a": np.arange(64 * 100 + 1, dtype=np.uint32)}
    loader = MixtureLoader(
        tokens, {"a": 1.0}, tokens=64 * 250, seq_len=64, batch_size=5, max_epochs=3
    )
    starts = [int(row[0]) for b in loader for row in b]
    assert len(set(starts[:100])) == 100  # first epoch: every window once
    assert len(set(starts[100:200])) == 100  # second epoch: every window again
    assert loader.epochs()["a"] == pytest.approx(2.5)


def test_epoch_cap_refuses_budget():
    with pytest.raises(BudgetError) as info:
        MixtureLoader(
            _shards(SIZES),
            {"a": 0.1, "d": 0.9},
            tokens=200_000,
            seq_len=32,
            batch_size=8,
            max_epochs=2,
        )
    assert "domain 'd'" in info.value.message and "max_epochs=2" in info.value.message
    assert info.value.field == "weights.d"


def test_bad_weights_rejected():
    with pytest.raises(AutomixerError, match="unknown domain 'e'"):
        MixtureLoader(_shards(SIZES), {"a": 0.5, "e": 0.5}, 10_000, 32, 8)
    with pytest.raises(AutomixerError, match="off from 1"):
        MixtureLoader(_shards(SIZES), {"a": 0.5, "b": 0.2}, 10_000, 32, 8)
    with pytest.raises(BudgetError, match="less than one batch"):
        MixtureLoader(_shards(SIZES), {"a": 1.0}, 100, 32, 8)


def test_pack_loader_stacks_mixtures():
    mixes = [{"a": 1.0}, {"b": 1.0}, {"a": 0.5, "c": 0.5}]
    pack = PackLoader([MixtureLoader(_shards(SIZES), w, 50_000, 32, 4, seed=1) for w in mixes])
    batch = pack.batch(0)
    assert batch.shape == (3, 4, 33)
    assert np.all(batch[0] % 10 == 0) and np.all(batch[1] % 10 == 1)


def test_largest_remainder_sums_exactly():
    rng = np.random.default_rng(0)
    for _ in range(100):
        w = rng.dirichlet(np.ones(7))
        w[rng.integers(7)] = 0
        w /= w.sum()
        c = largest_remainder(w, 1001)
        assert c.sum() == 1001 and np.all(np.abs(c - w * 1001) < 1) and np.all(c[w == 0] == 0)


def test_no_planned_mixture_is_refused_by_the_loader(bundle_and_config):
    """The design plans within the loader's own caps (whole windows, largest-remainder
    rounding), so the extreme, cap-bound mixtures are trained instead of failing."""
    from automixer.design import plan_mixtures

    bundle, config = bundle_and_config
    config = config.model_copy(update={"data": config.data.model_copy(update={"max_epochs": 1.0})})
    shortest = min(v.train.tokens for v in bundle.domains.values())
    tokens = int(2.5 * shortest) // 512 * 512  # whole batches; the smallest domain: <= ~0.4
    caps = bundle.loader_caps(config, tokens)
    assert min(caps.values()) < 0.5
    planned = plan_mixtures(
        bundle.natural_weights(), n_runs=40, seed=3, caps=caps, replicates=0, min_distance=0.01
    )
    bound = 0
    for run in planned:
        loader = bundle.loader(run.weights, config, seed=run.seed, tokens=tokens)
        bound += any(w > caps[d] - 1e-3 for d, w in run.weights.items())
        assert max(p.epochs for p in loader.plan) <= 1.0
    assert bound >= 2  # the test exercises the caps
