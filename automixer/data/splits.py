"""Documents to splits: exact deduplication, a seeded split by document, and decontamination.

The split of a document depends only on its text and the seed (a hash), so identical documents
always land in the same split, adding documents never moves the others, and a duplicate can never
straddle train and validation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

_WORD = re.compile(r"\w+")


def doc_hash(text: str) -> str:
    """Identity of a document for exact deduplication (whitespace at the ends ignored)."""
    return hashlib.blake2b(text.strip().encode("utf-8"), digest_size=12).hexdigest()


def split_of(digest: str, seed: int, val_fraction: float) -> str:
    """'val' for a seeded `val_fraction` of documents, else 'train'."""
    h = hashlib.blake2b(f"{seed}:{digest}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "little") / 2**64
    return "val" if u < val_fraction else "train"


@dataclass
class SplitDocs:
    """One domain's documents after deduplication, by split."""

    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    train_hashes: list[str] = field(default_factory=list)
    val_hashes: list[str] = field(default_factory=list)
    duplicates: int = 0
    """Documents dropped as exact duplicates (within the domain, or of an earlier domain)."""
    contaminated: int = 0
    """Training documents dropped because they share an n-gram with an evaluation item."""

    def add(self, text: str, digest: str, split: str) -> None:
        if split == "val":
            self.val.append(text)
            self.val_hashes.append(digest)
        else:
            self.train.append(text)
            self.train_hashes.append(digest)


def split_documents(
    docs: Iterable[str],
    *,
    seed: int,
    val_fraction: float,
    dedup: bool,
    seen: set[str] | None = None,
) -> SplitDocs:
    """Deduplicate and split documents. `seen` carries hashes across domains (first one wins)."""
    seen = set() if seen is None else seen
    out = SplitDocs()
    for text in docs:
        digest = doc_hash(text)
        if dedup:
            if digest in seen:
                out.duplicates += 1
                continue
            seen.add(digest)
        out.add(text, digest, split_of(digest, seed, val_fraction))
    return out


def _ngrams(text: str, n: int) -> set[int]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {hash(tuple(words))} if words else set()
    return {hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1)}


class ContaminationIndex:
    """Word n-grams of evaluation texts; asks whether a training text shares any of them.

    Items shorter than n words are matched as a whole (their full word sequence must appear as
    a document of that length; short items rarely collide, and are better judged by the eval
    suites' own contamination report).
    """

    def __init__(self, texts: Sequence[str], n: int = 13) -> None:
        self.n = n
        self.item_ngrams = [_ngrams(t, n) for t in texts]
        self.ngrams: set[int] = set().union(*self.item_ngrams) if self.item_ngrams else set()

    def __len__(self) -> int:
        return len(self.item_ngrams)

    def overlaps(self, text: str) -> bool:
        if not self.ngrams:
            return False
        words = _WORD.findall(text.lower())
        n = self.n
        grams = self.ngrams
        return any(hash(tuple(words[i : i + n])) in grams for i in range(len(words) - n + 1))

    def flag(self, texts: Sequence[str]) -> np.ndarray:
        """A boolean mask over `texts`: True where a text shares an n-gram with an eval item."""
        return np.fromiter((self.overlaps(t) for t in texts), dtype=bool, count=len(texts))

    def contaminated_items(self, texts: Sequence[str]) -> np.ndarray:
        """A boolean mask over the evaluation items: True where an item's n-grams occur in
        `texts` (the training corpus)."""
        corpus: set[int] = set()
        for t in texts:
            corpus |= _ngrams(t, self.n) & self.ngrams
        return np.array([bool(g & corpus) for g in self.item_ngrams], dtype=bool)
