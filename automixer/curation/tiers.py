"""Quality tiers: a score per document, and cuts that split a source into tiers.

A score comes from a numeric field the data carries (FineWeb-Edu's `score`, a DCLM fastText
score) or from the built-in reference-corpus classifier: hashed word 1-2 gram features and a
logistic regression telling a reference corpus (an encyclopedia) from the source, the quality
filter of GPT-3-era pipelines. The classifier is cross-fitted: the source's documents fall in
two halves by their hash, each near-duplicate cluster wholly in one half, and each half is
scored by the model trained on the other, so no document is scored by a model that saw it or a
near-copy of it.

Cuts are descending: at quantiles of the source's own scores (equal shares by default) or at
given scores. Tier k holds the documents scoring at least cut k (and below cut k - 1); ties at
a cut go to the higher tier. Everything is deterministic: hashes, not random draws, pick the
halves and the reference sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from automixer.config import TierSpec
from automixer.errors import DataError

REFERENCE_BYTES = 2_000_000
"""Reference text the classifier trains on (the first documents of the reference corpus)."""
MAX_TRAIN_DOCS = 4000
"""Source documents per half that train the classifier (every document is scored)."""
HASH_FEATURES = 2**18


@dataclass(frozen=True)
class TierCut:
    """A source's scores cut into tiers."""

    ranks: np.ndarray
    """Each document's tier (0 = highest)."""
    cuts: list[float]
    """The score cuts, descending (quantile cuts resolved to scores)."""
    basis: str
    """'quantiles' or 'thresholds'."""


def cut_tiers(scores: np.ndarray, spec: TierSpec, *, source: str, index: int) -> TierCut:
    """Cut scores into `spec.names` tiers; an empty tier is one line naming the source."""
    basis, given = spec.cuts()
    scores = np.asarray(scores, dtype=np.float64)
    if basis == "quantiles":
        cuts = (
            [float(np.quantile(scores, q, method="lower")) for q in given] if len(scores) else given
        )
    else:
        cuts = given
    ranks = np.zeros(len(scores), dtype=np.int64)
    for c in cuts:
        ranks += scores < c
    counts = np.bincount(ranks, minlength=len(spec.names))
    empty = [n for n, c in zip(spec.names, counts, strict=True) if c == 0]
    if empty:
        raise DataError(
            f"tier '{empty[0]}' of '{source}' holds no documents (cuts at {basis} "
            f"{given}: scores {cuts}); move the cuts or use fewer tiers",
            field=f"domains[{index}].tiers",
        )
    return TierCut(ranks, [float(c) for c in cuts], basis)


def _features(texts: Sequence[str]) -> object:
    from sklearn.feature_extraction.text import HashingVectorizer

    vec = HashingVectorizer(
        n_features=HASH_FEATURES,
        ngram_range=(1, 2),
        alternate_sign=False,
        norm="l2",
        lowercase=True,
    )
    return vec.transform(texts)


def reference_scores(
    texts: Sequence[str], halves: np.ndarray, reference: Sequence[str]
) -> np.ndarray:
    """P(reference-like) of each text, cross-fitted over `halves` (0/1 per text)."""
    from scipy.sparse import vstack
    from sklearn.linear_model import LogisticRegression

    if len(reference) < 2:
        raise DataError("the reference corpus gives fewer than two documents")
    ref_half = np.arange(len(reference)) % 2
    X_src = _features(texts)
    X_ref = _features(reference)
    scores = np.zeros(len(texts))
    for h in (0, 1):
        train = np.flatnonzero(halves != h)[:MAX_TRAIN_DOCS]
        score_on = np.flatnonzero(halves == h)
        if not len(score_on):
            continue
        if not len(train):  # a source too small to hold two halves: train on all of it
            train = np.arange(len(texts))[:MAX_TRAIN_DOCS]
        ref = np.flatnonzero(ref_half != h)
        X = vstack([X_src[train], X_ref[ref]])  # type: ignore[index]
        y = np.r_[np.zeros(len(train)), np.ones(len(ref))]
        model = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced")
        model.fit(X, y)
        scores[score_on] = model.predict_proba(X_src[score_on])[:, 1]  # type: ignore[index]
    return scores


def halves_of(
    hashes: Sequence[str], cluster: Sequence[int] | np.ndarray | None = None
) -> np.ndarray:
    """0 or 1 per document, from its hash (its text): the cross-fitting halves. With
    `cluster` (each document's near-duplicate cluster, named by one of its documents), every
    document takes its cluster's half, so no document is scored by a model that trained on a
    near-copy of it."""
    own = np.array([int(h[-2:], 16) % 2 for h in hashes], dtype=np.int64)
    return own if cluster is None else own[np.asarray(cluster, dtype=np.int64)]


def cross_fitting_halves(texts: Sequence[str], hashes: Sequence[str]) -> np.ndarray:
    """The halves of a source's documents with each near-duplicate cluster (MinHash LSH at
    the default threshold, `automixer.curation.dedup`) in one half."""
    from automixer.curation.dedup import clusters, near_duplicate_pairs

    pairs = near_duplicate_pairs(texts).pairs
    return halves_of(hashes, clusters(len(texts), pairs))


def reference_texts(name: str, min_chars: int, index: int) -> list[str]:
    """The first `REFERENCE_BYTES` of a built-in corpus's documents."""
    from automixer.data.builtin import BUILTINS

    corpus = BUILTINS.get(name)
    if corpus is None:
        raise DataError(
            f"unknown reference corpus '{name}'; built-in corpora: {', '.join(BUILTINS)}",
            field=f"domains[{index}].tiers.reference",
        )
    out: list[str] = []
    size = 0
    for doc in corpus.read():
        doc = doc.strip()
        if len(doc) < min_chars:
            continue
        out.append(doc)
        size += len(doc.encode("utf-8"))
        if size >= REFERENCE_BYTES:
            break
    return out
