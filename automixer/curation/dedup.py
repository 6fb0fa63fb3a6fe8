"""Near-duplicate documents: MinHash signatures and LSH (datasketch), confirmed by exact Jaccard.

A document's shingles are its word n-grams (`SHINGLE` words, lower-cased `\\w+` tokens; a
document shorter than that is one shingle, itself). Two documents are near-duplicates when the
Jaccard similarity of their shingle sets is at least `threshold`. MinHash LSH (num_perm
permutations, bands chosen by datasketch for the threshold, weighted toward recall) proposes
candidate pairs; each
candidate is confirmed by the exact Jaccard of the two shingle sets, so every reported pair is a
true near-duplicate at the threshold and the LSH's misses are the only error (recall, measured
in tests/test_curation.py against exact all-pairs Jaccard).

Shingles are hashed to 32 bits with blake2b (stable across processes, unlike Python's `hash`),
and those values are what datasketch permutes.

Removal keeps one document of each cluster (connected near-duplicates): the first in the order
the documents are given (the config's domain order, then the source's order: with tiers listed
high to low, the highest tier's copy), or, quality-blind, the copy with the smallest hash of its
text (`keep_by_hash`). Per-domain deduplication clusters within each domain only; global
deduplication across all of them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SHINGLE = 5
"""Words per shingle."""
THRESHOLD = 0.8
"""Jaccard similarity of shingle sets at which two documents are near-duplicates."""
NUM_PERM = 128
"""MinHash permutations."""
LSH_WEIGHTS = (0.1, 0.9)
"""datasketch's weights of false positives and false negatives when it picks the LSH bands:
recall first, since every candidate is confirmed by exact Jaccard (a false positive costs one
comparison). At 0.8 and 128 permutations this gives 14 bands of 9 rows; the even weights'
9 x 13 missed about a fifth of the pairs just above the threshold in tests/test_curation.py."""

_WORD = re.compile(r"\w+")


def shingles(text: str, n: int = SHINGLE) -> np.ndarray:
    """The distinct 32-bit hashes of a text's word n-grams, sorted."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        grams = [" ".join(words)]
    else:
        grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    hashes = {
        int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little") for g in grams
    }
    return np.fromiter(sorted(hashes), dtype=np.uint64, count=len(hashes))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted shingle-hash arrays."""
    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


@dataclass
class NearDuplicates:
    pairs: list[tuple[int, int, float]]
    """Confirmed pairs (i < j) with their exact Jaccard."""
    candidates: int
    """Pairs the LSH proposed (confirmed or not)."""
    threshold: float
    shingle: int
    num_perm: int


def near_duplicate_pairs(
    texts: Sequence[str],
    *,
    threshold: float = THRESHOLD,
    shingle: int = SHINGLE,
    num_perm: int = NUM_PERM,
    seed: int = 1,
) -> NearDuplicates:
    """Every pair of texts whose shingle sets have Jaccard >= threshold that MinHash LSH finds."""
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    sets = [shingles(t, shingle) for t in texts]
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    sketches = []
    first = MinHash(num_perm=num_perm, seed=seed)  # its permutations are drawn once, shared
    for i, s in enumerate(sets):
        m = MinHash(
            num_perm=num_perm,
            seed=seed,
            hashfunc=int,
            permutations=first.permutations,
            scheme=first.scheme,
        )
        m.update_batch(s.tolist())
        lean = LeanMinHash(m)
        sketches.append(lean)
        lsh.insert(i, lean, check_duplication=False)
    seen: set[tuple[int, int]] = set()
    pairs: list[tuple[int, int, float]] = []
    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            if j <= i or (i, j) in seen:
                continue
            seen.add((i, j))
            sim = jaccard(sets[i], sets[j])
            if sim >= threshold:
                pairs.append((i, j, sim))
    return NearDuplicates(sorted(pairs), len(seen), threshold, shingle, num_perm)


def clusters(
    n: int, pairs: Sequence[tuple[int, int, float]], groups: Sequence[int] | None = None
) -> np.ndarray:
    """Each document's cluster (connected near-duplicates), named by its earliest document.
    With `groups` (one label per document), only pairs within a group link."""
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    for i, j, _ in pairs:
        if groups is not None and groups[i] != groups[j]:
            continue
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)  # the earliest document is the cluster's root
    return np.array([root(i) for i in range(n)], dtype=np.int64)


def removed(
    n: int,
    pairs: Sequence[tuple[int, int, float]],
    groups: Sequence[int] | None = None,
    keep: Sequence[str] | None = None,
) -> np.ndarray:
    """A mask of the documents deduplication removes: all but one of each cluster of
    near-duplicates (the first, in the order given; with `keep`, one key per document, the
    document with the smallest key: `keep_by_hash`). With `groups` (one label per document),
    only pairs within a group link (per-domain deduplication)."""
    root = clusters(n, pairs, groups)
    if keep is None:
        return root != np.arange(n)
    kept: dict[int, int] = {}
    for i, r in enumerate(root.tolist()):
        if r not in kept or keep[i] < keep[kept[r]]:
            kept[r] = i
    mask = np.ones(n, dtype=bool)
    mask[list(kept.values())] = False
    return mask


def keep_by_hash(texts: Sequence[str]) -> list[str]:
    """A quality-blind keep key: the blake2b hash of each text (which copy of a cluster is
    kept then depends on nothing about the domains' order or tiers)."""
    return [hashlib.blake2b(t.encode("utf-8"), digest_size=8).hexdigest() for t in texts]


def near_copy(text: str, target: float, rng: np.random.Generator) -> tuple[str, float]:
    """A copy of `text` with words replaced (by random strings no text holds), one at a time,
    while the Jaccard similarity of the two shingle sets stays at or above `target`: the last
    such copy and its exact Jaccard (just above `target`). For measuring recall at a chosen
    similarity."""
    words = text.split()
    original = shingles(text)
    copy, sim = list(words), 1.0
    order = rng.permutation(len(words))
    for k in order:
        trial = list(copy)
        trial[k] = f"zq{rng.integers(10**9)}"
        s = jaccard(original, shingles(" ".join(trial)))
        if s < target:
            break
        copy, sim = trial, s
    return " ".join(copy), sim
