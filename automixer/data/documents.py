"""A domain's documents, read from its source once and cached: text, hash and split, after the
domain's limits and exact deduplication within it (`cache_dir/docs/<domain>-<key>.parquet`);
token-file domains keep their tokens beside the decoded text."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tokenizers import Tokenizer

from automixer.config import Config, DomainSection
from automixer.data.sources import (
    SourceTally,
    iter_raw_documents,
    limit_documents,
    source_fingerprint,
)
from automixer.data.splits import split_documents, split_of
from automixer.data.tokenfiles import iter_token_documents
from automixer.data.tokenizer import EOS
from automixer.io import atomic_path, hash_json


def doc_key(domain: DomainSection, index: int, config: Config) -> dict[str, Any]:
    return {
        "source": source_fingerprint(domain, index),
        "min_chars": config.data.min_chars,
        "val_fraction": config.data.val_fraction,
        "seed": config.run.seed,
        "dedup": config.data.dedup,
        "version": 2,
    }


def load_domain_docs(
    domain: DomainSection, index: int, config: Config, cache: Path, progress: Any
) -> tuple[pl.DataFrame, str]:
    key = hash_json(doc_key(domain, index, config))
    path = cache / "docs" / f"{domain.name}-{key}.parquet"
    if path.is_file():
        return pl.read_parquet(path), key
    task = progress.add_task(f"reading {domain.name}", total=None)

    def counted(docs: Iterator[str]) -> Iterator[str]:
        for d in docs:
            progress.advance(task)
            yield d

    tally = SourceTally()
    raw = limit_documents(
        iter_raw_documents(domain, index),
        domain,
        config.data.min_chars,
        tally,
        count_rest=domain.hf is None,  # a Hub dataset is not read past its limits
    )
    split = split_documents(
        counted(raw),
        seed=config.run.seed,
        val_fraction=config.data.val_fraction,
        dedup=bool(config.data.dedup),
    )
    progress.update(task, total=progress.tasks[task].completed)
    frame = pl.DataFrame(
        {
            "text": split.train + split.val,
            "hash": split.train_hashes + split.val_hashes,
            "split": ["train"] * len(split.train) + ["val"] * len(split.val),
        },
        schema={"text": pl.String, "hash": pl.String, "split": pl.String},
    )
    frame = frame.with_columns(
        pl.lit(split.duplicates).alias("within_duplicates").cast(pl.Int64),
        pl.lit(tally.documents).alias("source_documents").cast(pl.Int64),
        pl.lit(tally.bytes).alias("source_bytes").cast(pl.Int64),
        pl.lit(tally.complete).alias("source_complete"),
    )
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)
    return frame, key


def load_token_docs(
    domain: DomainSection, index: int, config: Config, cache: Path, tokenizer: Tokenizer
) -> tuple[pl.DataFrame, str]:
    """A token-file domain's documents: their tokens (`ids`, as the files hold them), their
    decoded text (for the checks and byte counts), hash (of the tokens) and split; after the
    domain's limits and exact deduplication. Cached like text documents."""
    key = hash_json({**doc_key(domain, index, config), "tokenizer": hash_json(tokenizer.to_str())})
    path = cache / "docs" / f"{domain.name}-{key}.parquet"
    if path.is_file():
        return pl.read_parquet(path), key
    eos = tokenizer.token_to_id(EOS)
    vocab = tokenizer.get_vocab_size()
    texts: list[str] = []
    ids: list[bytes] = []
    hashes: list[str] = []
    splits: list[str] = []
    seen: set[str] = set()
    duplicates = n_docs = n_bytes = kept_bytes = 0
    stopped = False
    for doc in iter_token_documents(domain, index, eos if eos is not None else -1, vocab):
        text = tokenizer.decode(doc.tolist(), skip_special_tokens=True).strip()
        if len(text) < config.data.min_chars:
            continue
        size = len(text.encode("utf-8"))
        n_docs += 1  # the whole source is counted: every file is read to its end
        n_bytes += size
        stopped = stopped or (
            (domain.max_bytes is not None and kept_bytes + size > domain.max_bytes)
            or (domain.max_documents is not None and len(texts) >= domain.max_documents)
        )
        if stopped:
            continue
        blob = np.ascontiguousarray(doc, dtype=np.uint32).tobytes()
        digest = hashlib.blake2b(blob, digest_size=12).hexdigest()
        if config.data.dedup and digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        kept_bytes += size
        texts.append(text)
        ids.append(blob)
        hashes.append(digest)
        splits.append(split_of(digest, config.run.seed, config.data.val_fraction))
    frame = pl.DataFrame(
        {"text": texts, "hash": hashes, "split": splits, "ids": ids},
        schema={"text": pl.String, "hash": pl.String, "split": pl.String, "ids": pl.Binary},
    ).with_columns(
        pl.lit(duplicates).alias("within_duplicates").cast(pl.Int64),
        pl.lit(n_docs).alias("source_documents").cast(pl.Int64),
        pl.lit(n_bytes).alias("source_bytes").cast(pl.Int64),
        pl.lit(True).alias("source_complete"),
    )
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)
    return frame, key
