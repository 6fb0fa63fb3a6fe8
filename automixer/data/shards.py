"""Token shards: one flat token array per domain and split on disk, read back memory-mapped.

Documents are tokenized in batches (the Rust tokenizer runs them in parallel), each followed by
the end-of-text token, and appended to a temporary file that is renamed into place when
complete. A shard's folder is named by the hash of (documents, tokenizer), so a shard is built
once, a domain added later builds only its own, and a build interrupted halfway starts that
shard again without touching finished ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from automixer.data.splits import SplitDocs
from automixer.data.tokenizer import EOS
from automixer.io import atomic_path, atomic_write_json, hash_json

BATCH_DOCS = 256


@dataclass(frozen=True)
class Shard:
    path: Path
    dtype: str
    tokens: int
    bytes: int
    documents: int

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / self.tokens if self.tokens else float("nan")

    def open(self) -> np.ndarray:
        """The tokens, memory-mapped (read-only)."""
        if self.tokens == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.tokens,))


def token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 2**16 else "uint32"


def build_shard(
    path: Path,
    docs: Sequence[str],
    tokenizer: Tokenizer,
    advance: Callable[[int], None] | None = None,
) -> Shard:
    """Tokenize `docs` into `path` (+ `path.json` metadata) unless a complete shard is there."""
    meta_path = path.with_suffix(".json")
    if meta_path.is_file() and path.is_file():
        meta = json.loads(meta_path.read_text())
        if path.stat().st_size == meta["tokens"] * np.dtype(meta["dtype"]).itemsize:
            if advance:
                advance(len(docs))
            return Shard(path, meta["dtype"], meta["tokens"], meta["bytes"], meta["documents"])
    eos = tokenizer.token_to_id(EOS)
    assert eos is not None, "the tokenizer must have the end-of-text token"
    dtype = token_dtype(tokenizer.get_vocab_size())
    n_tokens = 0
    n_bytes = 0
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        for start in range(0, len(docs), BATCH_DOCS):
            batch = list(docs[start : start + BATCH_DOCS])
            encodings = tokenizer.encode_batch_fast(batch, add_special_tokens=False)
            ids: list[int] = []
            for enc in encodings:
                ids.extend(enc.ids)
                ids.append(eos)
            arr = np.asarray(ids, dtype=dtype)
            arr.tofile(fh)
            n_tokens += arr.size
            n_bytes += sum(len(d.encode("utf-8")) for d in batch)
            if advance:
                advance(len(batch))
        fh.flush()
    shard = Shard(path, dtype, n_tokens, n_bytes, len(docs))
    atomic_write_json(
        meta_path, {"dtype": dtype, "tokens": n_tokens, "bytes": n_bytes, "documents": len(docs)}
    )
    return shard


def write_token_shard(path: Path, docs: Sequence[np.ndarray], n_bytes: int, dtype: str) -> Shard:
    """A shard of documents already tokenized (a token-file source): their tokens as they are,
    in order (no end-of-text added: the files' own separators, if any, are in the tokens)."""
    meta_path = path.with_suffix(".json")
    if meta_path.is_file() and path.is_file():
        meta = json.loads(meta_path.read_text())
        if path.stat().st_size == meta["tokens"] * np.dtype(meta["dtype"]).itemsize:
            return Shard(path, meta["dtype"], meta["tokens"], meta["bytes"], meta["documents"])
    n_tokens = 0
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        for doc in docs:
            arr = np.asarray(doc).astype(dtype, copy=False)
            arr.tofile(fh)
            n_tokens += arr.size
        fh.flush()
    atomic_write_json(
        meta_path, {"dtype": dtype, "tokens": n_tokens, "bytes": n_bytes, "documents": len(docs)}
    )
    return Shard(path, dtype, n_tokens, n_bytes, len(docs))


def domain_shards(
    name: str,
    split: SplitDocs,
    tokenizer: Tokenizer,
    tokenizer_hash: str,
    cache: Path,
    advance: Callable[[int], Any],
    token_ids: Mapping[str, bytes] | None = None,
) -> tuple[Shard, Shard]:
    """A domain's train and validation shards (`cache_dir/shards/<domain>-<key>/`, the key
    the documents' hashes and the tokenizer's): its text tokenized, or a token-file domain's
    tokens (`token_ids`, by document hash) written as they are."""
    key = hash_json(
        {
            "train": hash_json(split.train_hashes),
            "val": hash_json(split.val_hashes),
            "tokenizer": tokenizer_hash,
        }
    )
    folder = cache / "shards" / f"{name}-{key}"
    if token_ids is None:
        train = build_shard(folder / "train.bin", split.train, tokenizer, advance)
        val = build_shard(folder / "val.bin", split.val, tokenizer, advance)
        return train, val
    dtype = token_dtype(tokenizer.get_vocab_size())
    train, val = (
        write_token_shard(
            folder / f"{part}.bin",
            [np.frombuffer(token_ids[h], dtype=np.uint32) for h in hashes],
            sum(len(t.encode("utf-8")) for t in texts),
            dtype,
        )
        for part, hashes, texts in (
            ("train", split.train_hashes, split.train),
            ("val", split.val_hashes, split.val),
        )
    )
    advance(len(split.train) + len(split.val))
    return train, val
