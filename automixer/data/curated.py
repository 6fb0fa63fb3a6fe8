"""The curation stage of the data pipeline: every domain's documents with tiered sources read
once, scored and cut into tiers (`cache_dir/tiers/<source>-<key>.parquet`), and, with
`data.dedup: near`, near-duplicates dropped within domains or across all of them
(`cache_dir/near/<key>.parquet`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tokenizers import Tokenizer

from automixer.config import Config, DomainSection
from automixer.curation.dedup import near_duplicate_pairs, removed
from automixer.curation.tiers import (
    cross_fitting_halves,
    cut_tiers,
    reference_scores,
    reference_texts,
)
from automixer.data.documents import load_domain_docs, load_token_docs
from automixer.data.sources import iter_scored_documents
from automixer.data.splits import doc_hash
from automixer.errors import DataError
from automixer.io import atomic_path, hash_json


@dataclass
class Tiered:
    """A tiered source's documents with each one's score and tier."""

    frame: pl.DataFrame
    key: str
    info: dict[str, Any]


def source_section(domain: DomainSection) -> DomainSection:
    assert domain.tier is not None
    return domain.model_copy(update={"name": domain.tier.source, "tier": None, "tiers": None})


def load_tiered(
    domain: DomainSection, config: Config, cache: Path, progress: Any, minted: dict[str, Tiered]
) -> Tiered:
    """The source of a tier domain read once, scored and cut (cached per source and spec)."""
    assert domain.tier is not None and domain.tiers is not None
    src, spec, index = domain.tier.source, domain.tiers, domain.tier.index
    if src in minted:
        return minted[src]
    section = source_section(domain)
    frame, key = load_domain_docs(section, index, config, cache, progress)
    spec_key = hash_json(
        {
            "docs": key,
            "spec": spec.model_dump(mode="json"),
            "min_chars": config.data.min_chars,
            "halves": "near-duplicate clusters",
        }
    )
    path = cache / "tiers" / f"{src}-{spec_key}.parquet"
    if path.is_file():
        scores = pl.read_parquet(path)["score"].to_numpy()
    else:
        scores = score_documents(section, spec, index, frame, config)
        with atomic_path(path) as tmp:
            pl.DataFrame({"hash": frame["hash"], "score": scores}).write_parquet(tmp)
    cut = cut_tiers(scores, spec, source=src, index=index)
    info = {
        "source": src,
        "score": f"field:{spec.field}" if spec.field else f"{spec.scorer}:{spec.reference}",
        "basis": cut.basis,
        "cuts": cut.cuts,
        "names": list(spec.names),
    }
    frame = frame.with_columns(pl.Series("score", scores), pl.Series("rank", cut.ranks))
    minted[src] = Tiered(frame, spec_key, info)
    return minted[src]


def score_documents(
    section: DomainSection, spec: Any, index: int, frame: pl.DataFrame, config: Config
) -> np.ndarray:
    """A score per document of `frame`: the data field's value, or the reference classifier's."""
    texts = frame["text"].to_list()
    hashes = frame["hash"].to_list()
    if spec.field is not None:
        by_hash: dict[str, float] = {}
        for text, value in iter_scored_documents(section, index, spec.field):
            by_hash.setdefault(doc_hash(text), value)
        missing = sum(h not in by_hash for h in hashes)
        if missing:
            raise DataError(
                f"{missing} of '{section.name}''s documents have no '{spec.field}' value",
                field=f"domains[{index}].tiers.field",
            )
        return np.array([by_hash[h] for h in hashes], dtype=np.float64)
    reference = reference_texts(spec.reference, config.data.min_chars, index)
    if section.builtin == spec.reference:
        raise DataError(
            f"'{section.name}' is itself the reference corpus '{spec.reference}'",
            field=f"domains[{index}].tiers.reference",
        )
    return reference_scores(texts, cross_fitting_halves(texts, hashes), reference)


def tier_docs(domain: DomainSection, tiered: Tiered) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The tier's documents and what the manifest records of it."""
    assert domain.tier is not None
    frame = tiered.frame
    part = frame.filter(pl.col("rank") == domain.tier.rank)
    share = int(part["text"].str.len_bytes().sum()) / max(
        1, int(frame["text"].str.len_bytes().sum())
    )
    info = {
        **tiered.info,
        "name": domain.tier.name,
        "rank": domain.tier.rank,
        "score_min": float(part["score"].min()),  # type: ignore[arg-type]
        "score_max": float(part["score"].max()),  # type: ignore[arg-type]
        "share_of_source_bytes": float(share),
    }
    return part, info


@dataclass
class DomainDocs:
    """A domain's documents as read (after its limits and exact deduplication within it)."""

    frame: pl.DataFrame
    """text, hash, split (and score, rank for a tier)."""
    key: str
    """What the documents were made from (the cache key; a tier's includes its cut)."""
    sizes: tuple[int, int, bool] | None
    """(documents, bytes, complete) of the whole source; a tier holds its share by bytes."""
    within: int
    """Exact duplicates dropped within the source (counted on a tiered source's first tier:
    they were dropped before scoring)."""
    tier: dict[str, Any] | None = None


def domain_documents(
    config: Config, cache: Path, progress: Any, tokenizer: Tokenizer | None = None
) -> dict[str, DomainDocs]:
    """Every domain's documents, in the config's order (cached; a tiered source is read and
    scored once; token files need the `tokenizer` that made them)."""
    tiered: dict[str, Tiered] = {}
    out: dict[str, DomainDocs] = {}
    for i, domain in enumerate(config.domains):
        share, tier = 1.0, None
        if domain.tokens is not None:
            assert tokenizer is not None, "token files need their tokenizer"
            frame, key = load_token_docs(domain, i, config, cache, tokenizer)
        elif domain.tier is not None:
            source = load_tiered(domain, config, cache, progress, tiered)
            frame, tier = tier_docs(domain, source)
            share = tier["share_of_source_bytes"]
            key = hash_json([source.key, domain.tier.name])
        else:
            frame, key = load_domain_docs(domain, i, config, cache, progress)
        within = int(frame["within_duplicates"][0]) if frame.height else 0
        if domain.tier is not None and domain.tier.rank > 0:
            within = 0
        sizes = (
            (
                round(int(frame["source_documents"][0]) * share),
                round(int(frame["source_bytes"][0]) * share),
                bool(frame["source_complete"][0]),
            )
            if frame.height
            else None
        )
        out[domain.name] = DomainDocs(frame, key, sizes, within, tier)
    return out


def near_dedup(docs: dict[str, DomainDocs], config: Config, cache: Path) -> dict[str, int]:
    """`data.dedup: near`: drop near-duplicates (MinHash LSH, `automixer.curation.dedup`)
    within each domain or across all of them (`data.near_scope`), keeping the first of each
    cluster; `docs` is filtered in place. Returns how many each domain lost (cached)."""
    names = list(docs)
    key = hash_json(
        [[docs[n].key for n in names], config.data.near_scope, config.data.near_threshold]
    )
    path = cache / "near" / f"{key}.parquet"
    if path.is_file():
        drop = pl.read_parquet(path)["removed"].to_numpy()
    else:
        texts = [t for n in names for t in docs[n].frame["text"].to_list()]
        labels = [k for k, n in enumerate(names) for _ in range(docs[n].frame.height)]
        found = near_duplicate_pairs(texts, threshold=config.data.near_threshold)
        groups = labels if config.data.near_scope == "domain" else None
        drop = removed(len(texts), found.pairs, groups)
        with atomic_path(path) as tmp:
            pl.DataFrame({"removed": drop}).write_parquet(tmp)
    counts: dict[str, int] = {}
    start = 0
    for n in names:
        size = docs[n].frame.height
        keep = ~drop[start : start + size]
        start += size
        counts[n] = int((~keep).sum())
        docs[n].frame = docs[n].frame.filter(pl.Series(keep))
        docs[n].key = hash_json([docs[n].key, key])
    return counts
