"""Documents to splits: exact deduplication, a seeded split by document, and decontamination
(`assemble_splits`: the data stage's step from every domain's documents to its splits; the
n-gram checks cached in `cache_dir/contamination/`).

The split of a document depends only on its text and the seed (a hash), so identical documents
always land in the same split, adding documents never moves the others, and a duplicate can never
straddle train and validation.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from automixer.config import Config
from automixer.errors import DataError
from automixer.io import atomic_path, hash_json

if TYPE_CHECKING:
    from automixer.data.curated import DomainDocs

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


MIN_WHOLE_WORDS = 6
"""Items shorter than the n-gram are matched whole down to this many words; shorter ones
(a few words) would match ordinary prose and are not checked."""


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _item_grams(words: list[str], n: int) -> set[int]:
    """An item's word n-grams; an item shorter than n words is one gram, itself whole."""
    if len(words) >= n:
        return {hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1)}
    return {hash(tuple(words))} if len(words) >= MIN_WHOLE_WORDS else set()


def _windows(words: list[str], lengths: Sequence[int]) -> Iterator[int]:
    for k in lengths:
        for i in range(len(words) - k + 1):
            yield hash(tuple(words[i : i + k]))


def too_short_to_check(text: str) -> bool:
    """An evaluation text of fewer than `MIN_WHOLE_WORDS` words: no n-gram or whole-item match
    can tell whether training text contains it."""
    return len(_words(text)) < MIN_WHOLE_WORDS


class ContaminationIndex:
    """Word n-grams of evaluation texts; asks whether a training text shares any of them.

    An item shorter than n words (a third of OpenBookQA's, a fifth of CommonsenseQA's) is
    matched whole: its full word sequence must occur in the training text. Items of fewer than
    `MIN_WHOLE_WORDS` words are not checked (`unchecked` counts them).
    """

    def __init__(self, texts: Sequence[str], n: int = 13) -> None:
        self.n = n
        words = [_words(t) for t in texts]
        self.item_ngrams = [_item_grams(w, n) for w in words]
        self.ngrams: set[int] = set().union(*self.item_ngrams) if self.item_ngrams else set()
        self.lengths = sorted({n} | {len(w) for w in words if MIN_WHOLE_WORDS <= len(w) < n})
        self.unchecked = sum(1 for w in words if len(w) < MIN_WHOLE_WORDS)

    def __len__(self) -> int:
        return len(self.item_ngrams)

    def overlaps(self, text: str) -> bool:
        if not self.ngrams:
            return False
        grams = self.ngrams
        return any(h in grams for h in _windows(_words(text), self.lengths))

    def flag(self, texts: Sequence[str]) -> np.ndarray:
        """A boolean mask over `texts`: True where a text shares an n-gram with an eval item."""
        return np.fromiter((self.overlaps(t) for t in texts), dtype=bool, count=len(texts))

    def contaminated_items(self, texts: Sequence[str]) -> np.ndarray:
        """A boolean mask over the evaluation items: True where an item's n-grams occur in
        `texts` (the training corpus)."""
        corpus: set[int] = set()
        for t in texts:
            corpus |= set(_windows(_words(t), self.lengths)) & self.ngrams
        return np.array([bool(g & corpus) for g in self.item_ngrams], dtype=bool)


def contaminated(
    index: Callable[[], ContaminationIndex], texts: Sequence[str], cache: Path, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Which training texts share an n-gram with an eval item (a mask over `texts`), and which
    items they contain (indices of items). Cached: the index is only built on a miss."""
    path = cache / "contamination" / f"{key}.npz"
    if path.is_file():
        with np.load(path) as saved:
            if len(saved["flags"]) == len(texts):
                return saved["flags"].astype(bool), saved["items"].astype(np.int64)
    if not texts:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    idx = index()
    flags = idx.flag(texts)
    flagged = [t for t, f in zip(texts, flags, strict=True) if f]
    items = np.flatnonzero(idx.contaminated_items(flagged))
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, flags=flags, items=items)
    return flags, items


@dataclass
class Splits:
    """Every domain's documents by split after exact deduplication across domains and
    decontamination, with what each lost and the evaluation items found in it."""

    domains: dict[str, SplitDocs]
    items: dict[str, list[str]]
    """Domain -> the evaluation items (by key) its training documents contain."""


def assemble_splits(
    config: Config,
    docs: Mapping[str, DomainDocs],
    near: Mapping[str, int],
    eval_texts: Mapping[str, str],
    cache: Path,
) -> Splits:
    """The domains' documents (`docs`, in the config's order, near-duplicates already dropped:
    `near` counts them) as train and validation splits: a document an earlier domain holds is
    an exact duplicate (with `data.dedup`), and with `data.decontaminate` a training document
    sharing an n-gram with an evaluation item is dropped (the items found are recorded either
    way). A domain left without training documents is one line naming it; a domain without a
    validation document gives up its last training one."""
    item_keys = list(eval_texts)
    texts = list(eval_texts.values())
    index = functools.cache(lambda: ContaminationIndex(texts, config.data.contamination_ngram))
    eval_key = eval_items_key(eval_texts)
    seen: set[str] = set()
    out: dict[str, SplitDocs] = {}
    found: dict[str, list[str]] = {}
    for i, domain in enumerate(config.domains):
        got = docs[domain.name]
        frame = got.frame
        split = SplitDocs(duplicates=got.within + near.get(domain.name, 0))
        for text, digest, part in zip(frame["text"], frame["hash"], frame["split"], strict=True):
            if config.data.dedup and digest in seen:
                split.duplicates += 1
                continue
            seen.add(digest)
            split.add(text, digest, part)
        if eval_texts:
            ngram = config.data.contamination_ngram
            flags, hits = contaminated(
                index, split.train, cache, f"{domain.name}-{got.key}-{eval_key}-{ngram}-v2"
            )
            found[domain.name] = [item_keys[k] for k in hits]
            if config.data.decontaminate and flags.any():
                keep = ~flags
                split.contaminated = int(flags.sum())
                split.train = [t for t, k in zip(split.train, keep, strict=True) if k]
                split.train_hashes = [h for h, k in zip(split.train_hashes, keep, strict=True) if k]
        if not split.train:
            raise DataError(
                f"domain '{domain.name}' has no training documents left after filtering "
                f"(min_chars={config.data.min_chars}, deduplication, decontamination)",
                field=f"domains[{i}]",
            )
        if not split.val:  # tiny domains: hold out the last training document
            split.val, split.val_hashes = [split.train.pop()], [split.train_hashes.pop()]
            if not split.train:
                raise DataError(
                    f"domain '{domain.name}' has a single document; it needs at least two "
                    "(one to train on, one to validate)",
                    field=f"domains[{i}]",
                )
        out[domain.name] = split
    return Splits(out, found)


def eval_items_key(eval_texts: Mapping[str, str]) -> str:
    """What the evaluation items checked against the corpora hash to."""
    return hash_json([[k, hashlib.sha1(t.encode()).hexdigest()] for k, t in eval_texts.items()])
