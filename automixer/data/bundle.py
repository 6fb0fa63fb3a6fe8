"""What the data stage hands on: each domain's shards and counts, and the bundle of all of them
with the tokenizer (the natural mixture, loaders, the domains table, the manifest)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tokenizers import Tokenizer

from automixer.config import Config
from automixer.data.loader import MixtureLoader, weight_caps
from automixer.data.shards import Shard
from automixer.data.tokenizer import token_byte_lengths


@dataclass
class DomainData:
    name: str
    source: str
    licence: str
    fingerprint: dict[str, Any]
    train: Shard
    val: Shard
    duplicates: int
    contaminated: int
    """Training documents dropped for sharing an n-gram with an evaluation item."""
    checked: bool
    """Whether the domain was checked against evaluation items at all."""
    items: list[str] = field(default_factory=list)
    """Evaluation items (by key) that share an n-gram with this domain's training documents."""
    source_documents: int = 0
    source_bytes: int = 0
    """Documents and UTF-8 bytes of the whole source (after the `min_chars` filter), counted
    past the domain's limits for local sources."""
    source_complete: bool = True
    """Whether `source_bytes` covers the whole source (False: reading stopped at a limit)."""
    target_bytes_per_token: float | None = None
    """Bytes per token of the full run's tokenizer (`tokenizer.target`) on this domain."""
    tier: dict[str, Any] | None = None
    """For a quality tier of a source: its source, name, score, cuts and score range."""

    @property
    def contamination_rate(self) -> float:
        total = self.train.documents + self.contaminated
        return self.contaminated / total if total else 0.0

    @property
    def bytes_per_token(self) -> float:
        return (self.train.bytes + self.val.bytes) / max(1, self.train.tokens + self.val.tokens)

    def row(self) -> dict[str, Any]:
        return {
            "domain": self.name,
            "source": self.source,
            "licence": self.licence,
            "documents_train": self.train.documents,
            "documents_val": self.val.documents,
            "tokens_train": self.train.tokens,
            "tokens_val": self.val.tokens,
            "bytes_train": self.train.bytes,
            "bytes_val": self.val.bytes,
            "bytes_per_token": round(self.bytes_per_token, 4),
            "source_documents": self.source_documents,
            "source_bytes": self.source_bytes,
            "source_complete": self.source_complete,
            "target_bytes_per_token": (
                round(self.target_bytes_per_token, 4) if self.target_bytes_per_token else None
            ),
            "duplicates_removed": self.duplicates,
            "contaminated_removed": self.contaminated,
            "contamination_rate": self.contamination_rate if self.checked else None,
            "eval_items_overlapping": len(self.items) if self.checked else None,
            "tier_of": self.tier["source"] if self.tier else None,
            "tier_scores": (
                [round(self.tier["score_min"], 6), round(self.tier["score_max"], 6)]
                if self.tier
                else None
            ),
        }


@dataclass
class DataBundle:
    """Everything the sweep needs from the data stage."""

    domains: dict[str, DomainData]
    tokenizer: Tokenizer
    tokenizer_path: Path
    tokenizer_hash: str
    eval_items_checked: int = 0
    unchecked_items: list[str] = field(default_factory=list)
    """Eval items too short to check for contamination (fewer than 6 words), by key."""
    inputs: dict[str, Any] = field(default_factory=dict)
    """What the training data and scoring were made from: each domain's source key (its
    files' sizes and times, a built-in corpus's package versions, a dataset's revision), the
    tokenizer's hash and the eval items' hash. A sweep's runs must all come from the same
    (`check_inputs`)."""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.domains)

    def train_arrays(self) -> dict[str, np.ndarray]:
        return {d: v.train.open() for d, v in self.domains.items()}

    def val_arrays(self) -> dict[str, np.ndarray]:
        return {d: v.val.open() for d, v in self.domains.items()}

    def natural_weights(self) -> dict[str, float]:
        """The natural mixture: each domain's share of training tokens."""
        total = sum(v.train.tokens for v in self.domains.values())
        return {d: v.train.tokens / total for d, v in self.domains.items()}

    def bytes_per_token(self) -> dict[str, float]:
        return {d: v.bytes_per_token for d, v in self.domains.items()}

    @functools.cached_property
    def token_bytes(self) -> np.ndarray:
        """The UTF-8 bytes each token id of the proxy tokenizer stands for."""
        return token_byte_lengths(self.tokenizer)

    def loader(
        self, weights: Mapping[str, float], config: Config, seed: int, tokens: int | None = None
    ) -> MixtureLoader:
        return MixtureLoader(
            self.train_arrays(),
            weights,
            tokens or config.proxy.tokens,
            config.proxy.seq_len,
            config.proxy.batch_size,
            seed=seed,
            max_epochs=config.data.max_epochs,
            phases=[(p.name, p.share) for p in config.phases] or None,
        )

    def loader_caps(self, config: Config, tokens: int | None = None) -> dict[str, float]:
        """The largest weight per domain that `loader` accepts at the proxies' budget (over
        the whole run, when the config has phases)."""
        return weight_caps(
            {d: v.train.tokens for d, v in self.domains.items()},
            tokens or config.proxy.tokens,
            config.proxy.seq_len,
            config.proxy.batch_size,
            config.data.max_epochs,
            phases=max(1, len(config.phases)),
        )

    def table(self) -> pl.DataFrame:
        return pl.DataFrame([v.row() for v in self.domains.values()])

    @property
    def contaminated_items(self) -> dict[str, list[str]]:
        """Evaluation items found in the training corpora -> the domains they were found in.
        The eval stage leaves these out of scoring."""
        out: dict[str, list[str]] = {}
        for d, v in self.domains.items():
            for key in v.items:
                out.setdefault(key, []).append(d)
        return dict(sorted(out.items()))

    def manifest(self) -> dict[str, Any]:
        return {
            **self.meta,
            "tokenizer": {
                "path": str(self.tokenizer_path),
                "hash": self.tokenizer_hash,
                "vocab_size": self.tokenizer.get_vocab_size(),
            },
            "eval_items_checked": self.eval_items_checked,
            "inputs": self.inputs,
            "contaminated_items": self.contaminated_items,
            "unchecked_items": self.unchecked_items,
            "natural_weights": self.natural_weights(),
            "domains": {
                d: {
                    **v.row(),
                    "fingerprint": v.fingerprint,
                    **({"tier": v.tier} if v.tier else {}),
                    "shards": {"train": str(v.train.path), "val": str(v.val.path)},
                }
                for d, v in self.domains.items()
            },
        }
