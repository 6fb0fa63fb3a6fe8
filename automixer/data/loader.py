"""The mixture loader: weights + token budget -> deterministic batches in exactly those proportions.

The budget is cut into `steps * batch_size` windows of `seq_len + 1` tokens (inputs plus the
shifted target). Each domain gets its share of the windows by largest-remainder rounding, so the
realised share of tokens is within 1/windows of its weight and exactly zero for a zero weight.
A domain's windows are non-overlapping slices of its token stream, visited in a fresh seeded
permutation each epoch (no window repeats within an epoch). The domain order inside the budget
is a seeded shuffle. Everything derives from the seed: same seed, same batches.

Shapes: P proxies in a pack, B sequences per batch, L sequence length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from automixer.errors import AutomixerError, BudgetError
from automixer.mixture import WeightIssue, check_weights


@dataclass(frozen=True)
class DomainPlan:
    name: str
    weight: float
    windows: int
    """Windows (sequences) of this domain in the budget."""
    available: int
    """Distinct windows the domain's training tokens hold."""

    @property
    def epochs(self) -> float:
        return self.windows / self.available if self.available else 0.0


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to `total`, proportional to `weights` (zero stays zero)."""
    raw = weights * total
    counts = np.floor(raw).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        frac = np.where(weights > 0, raw - counts, -1.0)
        order = np.argsort(-frac, kind="stable")[:short]
        counts[order] += 1
    return counts


def allowed_windows(shard_tokens: int, seq_len: int, max_epochs: float) -> int:
    """How many windows a domain may give within `max_epochs` passes over its shard."""
    available = max(0, (shard_tokens - 1) // seq_len)
    return math.floor(max_epochs * available + 1e-9)


def weight_caps(
    shard_tokens: Mapping[str, int],
    tokens: int,
    seq_len: int,
    batch_size: int,
    max_epochs: float,
    phases: int = 1,
) -> dict[str, float]:
    """The largest weight of each domain that a `MixtureLoader` with this budget accepts (its
    largest-remainder rounding gives a domain at most ceil(w * windows) windows, and one more
    window per further phase: each phase rounds on its own). The design plans within these
    caps, so the loader never rejects a planned mixture."""
    n_windows = (tokens // (seq_len * batch_size)) * batch_size
    if n_windows < 1:
        return dict.fromkeys(shard_tokens, 0.0)
    slack = 1e-6 + (phases - 1)
    return {
        d: max(0.0, min(1.0, (allowed_windows(n, seq_len, max_epochs) - slack) / n_windows))
        for d, n in shard_tokens.items()
    }


@dataclass(frozen=True)
class PhasePlan:
    """One phase of a schedule in the loader: its steps and each domain's windows in it."""

    name: str
    start: int
    """First step of the phase."""
    steps: int
    weights: dict[str, float]
    """The phase's own mixture (summing to 1)."""
    windows: dict[str, int]


class MixtureLoader:
    """Batches of token windows drawn from several domains in fixed proportions.

    Args:
        shards: domain name -> 1-D token array (usually a memmap of a training shard).
        weights: domain name -> weight; validated with `check_weights`.
        tokens: token budget (inputs counted; it is rounded down to whole batches).
        seq_len, batch_size: window length and windows per batch.
        seed: fixes the order of domains and of windows.
        max_epochs: refuse a budget that would repeat a domain more often than this.
        phases: (name, share of the tokens) of each training phase, in order. The weights are
            then keyed `domain@phase`, each a share of the whole run (a phase's weights sum to
            its share): phase k takes its share of the steps (whole steps, largest remainder),
            and within it each domain exactly its share of the phase's windows. A domain's
            windows continue one permutation across phases, and the repetition limit holds
            over the whole run.
    """

    def __init__(
        self,
        shards: Mapping[str, np.ndarray],
        weights: Mapping[str, float],
        tokens: int,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        max_epochs: float = 4.0,
        phases: Sequence[tuple[str, float]] | None = None,
    ) -> None:
        self.domains = list(shards)
        names = [f"{d}@{p}" for p, _ in phases for d in self.domains] if phases else self.domains
        try:
            w = check_weights(weights, names)
        except WeightIssue as e:
            raise AutomixerError(str(e), field="weights" + (f".{e.key}" if e.key else "")) from None
        self.weights = w
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.steps = tokens // (seq_len * batch_size)
        if self.steps < 1:
            raise BudgetError(
                f"a budget of {tokens} tokens is less than one batch "
                f"({batch_size} x {seq_len} tokens)",
                field="proxy.tokens",
            )
        self.n_windows = self.steps * batch_size
        self._shards = {d: shards[d] for d in self.domains}
        self.phases = self._plan_phases(w, phases)
        counts = [sum(ph.windows[d] for ph in self.phases) for d in self.domains]
        w_arr = np.array(  # each domain's weight over the whole run
            [sum(v for k, v in w.items() if k.split("@")[0] == d) for d in self.domains],
            dtype=np.float64,
        )
        self.plan: list[DomainPlan] = []
        for d, weight, count in zip(self.domains, w_arr, counts, strict=True):
            available = max(0, (len(shards[d]) - 1) // seq_len)
            self.plan.append(DomainPlan(d, float(weight), int(count), available))
        for p in self.plan:
            if p.windows == 0:
                continue
            if p.available == 0:
                raise BudgetError(
                    f"domain '{p.name}' has {len(shards[p.name])} training tokens, fewer than one "
                    f"window of {seq_len + 1}",
                    field=f"weights.{p.name}",
                )
            if p.windows > allowed_windows(len(shards[p.name]), seq_len, max_epochs):
                cap = max_epochs * p.available / self.n_windows
                raise BudgetError(
                    f"domain '{p.name}' would be seen {p.epochs:.2f} times "
                    f"({p.windows} windows of its {p.available}), more than "
                    f"data.max_epochs={max_epochs:g}; lower its weight to <= {cap:.4f}, lower "
                    "proxy.tokens or raise data.max_epochs",
                    field=f"weights.{p.name}",
                )
        self._build_index()

    def _plan_phases(
        self, w: Mapping[str, float], phases: Sequence[tuple[str, float]] | None
    ) -> list[PhasePlan]:
        if not phases:
            w_arr = np.array([w[d] for d in self.domains], dtype=np.float64)
            counts = largest_remainder(w_arr, self.n_windows)
            return [
                PhasePlan(
                    "all",
                    0,
                    self.steps,
                    dict(w),
                    dict(zip(self.domains, map(int, counts), strict=True)),
                )
            ]
        shares = np.array([s for _, s in phases], dtype=np.float64)
        steps = largest_remainder(shares / shares.sum(), self.steps)
        out, start = [], 0
        for (name, _), n in zip(phases, steps, strict=True):
            block = np.array([w[f"{d}@{name}"] for d in self.domains], dtype=np.float64)
            if n < 1 or block.sum() <= 0:
                raise BudgetError(
                    f"phase '{name}' gets {int(n)} of the {self.steps} steps and weight "
                    f"{block.sum():.4g}: a phase needs both",
                    field="phases",
                )
            own = block / block.sum()
            counts = largest_remainder(own, int(n) * self.batch_size)
            out.append(
                PhasePlan(
                    name,
                    start,
                    int(n),
                    dict(zip(self.domains, map(float, own), strict=True)),
                    dict(zip(self.domains, map(int, counts), strict=True)),
                )
            )
            start += int(n)
        return out

    @property
    def decay_start(self) -> int | None:
        """The first step of the last phase (where warmup-stable-decay decays), or None."""
        return self.phases[-1].start if len(self.phases) > 1 else None

    def phase_at(self, step: int) -> str:
        """The phase that batch `step` belongs to."""
        return next(p.name for p in self.phases if p.start <= step < p.start + p.steps)

    def _build_index(self) -> None:
        parts = []
        for k, ph in enumerate(self.phases):
            # one phase: the seed stream the loader has always used (the same batches as before)
            key = [self.seed, 0x6D6978] if len(self.phases) == 1 else [self.seed, 0x6D6978, k]
            rng = np.random.default_rng(key)
            part = np.repeat(
                np.arange(len(self.domains), dtype=np.int32),
                [ph.windows[d] for d in self.domains],
            )
            rng.shuffle(part)
            parts.append(part)
        labels = np.concatenate(parts)
        starts = np.empty(self.n_windows, dtype=np.int64)
        for i, p in enumerate(self.plan):
            if p.windows == 0:
                continue
            pos = np.flatnonzero(labels == i)
            order = []
            need = p.windows
            epoch = 0
            while need > 0:
                perm = np.random.default_rng([self.seed, i, epoch, 0x776E64]).permutation(
                    p.available
                )
                order.append(perm[:need])
                need -= len(order[-1])
                epoch += 1
            starts[pos] = np.concatenate(order).astype(np.int64) * self.seq_len
        self._labels = labels
        self._starts = starts
        self._offsets = np.arange(self.seq_len + 1, dtype=np.int64)

    @property
    def tokens(self) -> int:
        """Input tokens served over the whole budget."""
        return self.n_windows * self.seq_len

    def realized_shares(self) -> dict[str, float]:
        return {p.name: p.windows / self.n_windows for p in self.plan}

    def epochs(self) -> dict[str, float]:
        return {p.name: p.epochs for p in self.plan}

    def max_abs_error(self) -> float:
        """The largest gap between a weight and its realised share (within each phase)."""
        return max(
            abs(ph.windows[d] / (ph.steps * self.batch_size) - ph.weights[d])
            for ph in self.phases
            for d in self.domains
        )

    def domain_of_rows(self, step: int) -> np.ndarray:
        """Domain index of each row of batch `step` (for per-domain statistics)."""
        return self._labels[step * self.batch_size : (step + 1) * self.batch_size]

    def batch(self, step: int) -> np.ndarray:
        """Batch `step` as an int64 array of shape (B, L+1)."""
        if not 0 <= step < self.steps:
            raise IndexError(f"step {step} outside 0..{self.steps - 1}")
        rows = slice(step * self.batch_size, (step + 1) * self.batch_size)
        labels = self._labels[rows]
        starts = self._starts[rows]
        out_BL = np.empty((self.batch_size, self.seq_len + 1), dtype=np.int64)
        for i in np.unique(labels):
            mask = labels == i
            idx = starts[mask][:, None] + self._offsets
            out_BL[mask] = self._shards[self.domains[i]][idx]
        return out_BL

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iter_from(0)

    def iter_from(self, step: int) -> Iterator[np.ndarray]:
        """Batches from `step` on (resuming a run mid-way gives the same remaining batches)."""
        for s in range(step, self.steps):
            yield self.batch(s)


class PackLoader:
    """P mixture loaders in lockstep: batches of shape (P, B, L+1) for a pack of proxies."""

    def __init__(self, loaders: Sequence[MixtureLoader]) -> None:
        if not loaders:
            raise ValueError("a pack needs at least one loader")
        shapes = {(lo.steps, lo.batch_size, lo.seq_len) for lo in loaders}
        if len(shapes) != 1:
            raise ValueError(f"loaders in a pack must share steps, batch and length: {shapes}")
        self.loaders = list(loaders)
        self.steps = loaders[0].steps

    def batch(self, step: int) -> np.ndarray:
        return np.stack([lo.batch(step) for lo in self.loaders])

    def __len__(self) -> int:
        return self.steps

    def iter_from(self, step: int) -> Iterator[np.ndarray]:
        for s in range(step, self.steps):
            yield self.batch(s)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iter_from(0)
