"""From a config to ready token shards: read, filter, deduplicate, split, decontaminate, tokenize.

`prepare_data` builds what is missing and reuses every cached piece:

    cache_dir/docs/<domain>-<key>.parquet     documents with their hash and split
    cache_dir/tiers/<source>-<key>.parquet    a tiered source's document scores
    cache_dir/tokenizers/<key>/tokenizer.json the trained BPE
    cache_dir/shards/<key>/{train,val}.bin    token arrays (+ .json metadata)
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tokenizers import Tokenizer

from automixer.config import Config, DomainSection
from automixer.curation.dedup import near_duplicate_pairs, removed
from automixer.curation.tiers import cut_tiers, halves_of, reference_scores, reference_texts
from automixer.data.loader import MixtureLoader, weight_caps
from automixer.data.shards import Shard, build_shard, token_dtype, write_token_shard
from automixer.data.sources import (
    SourceTally,
    iter_raw_documents,
    iter_scored_documents,
    limit_documents,
    source_description,
    source_fingerprint,
    source_licence,
)
from automixer.data.splits import (
    ContaminationIndex,
    SplitDocs,
    doc_hash,
    split_documents,
    split_of,
    too_short_to_check,
)
from automixer.data.tokenfiles import iter_token_documents
from automixer.data.tokenizer import (
    EOS,
    bytes_per_token,
    get_tokenizer,
    load_target_tokenizer,
    token_byte_lengths,
)
from automixer.errors import DataError
from automixer.io import atomic_path, atomic_write_json, hash_json
from automixer.views import PlainProgress


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


def _progress(enabled: bool) -> Any:
    if not sys.stderr.isatty():  # a log: plain timestamped lines (automixer.views)
        return PlainProgress(enabled=enabled)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def _doc_key(domain: DomainSection, index: int, config: Config) -> dict[str, Any]:
    return {
        "source": source_fingerprint(domain, index),
        "min_chars": config.data.min_chars,
        "val_fraction": config.data.val_fraction,
        "seed": config.run.seed,
        "dedup": config.data.dedup,
        "version": 2,
    }


def _load_domain_docs(
    domain: DomainSection, index: int, config: Config, cache: Path, progress: Any
) -> tuple[pl.DataFrame, str]:
    key = hash_json(_doc_key(domain, index, config))
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


def _load_token_docs(
    domain: DomainSection, index: int, config: Config, cache: Path, tokenizer: Tokenizer
) -> tuple[pl.DataFrame, str]:
    """A token-file domain's documents: their tokens (`ids`, as the files hold them), their
    decoded text (for the checks and byte counts), hash (of the tokens) and split; after the
    domain's limits and exact deduplication. Cached like text documents."""
    key = hash_json({**_doc_key(domain, index, config), "tokenizer": hash_json(tokenizer.to_str())})
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


@dataclass
class _Tiered:
    """A tiered source's documents with each one's score and tier."""

    frame: pl.DataFrame
    key: str
    info: dict[str, Any]


def _source_section(domain: DomainSection) -> DomainSection:
    assert domain.tier is not None
    return domain.model_copy(update={"name": domain.tier.source, "tier": None, "tiers": None})


def _load_tiered(
    domain: DomainSection, config: Config, cache: Path, progress: Any, minted: dict[str, _Tiered]
) -> _Tiered:
    """The source of a tier domain read once, scored and cut (cached per source and spec)."""
    assert domain.tier is not None and domain.tiers is not None
    src, spec, index = domain.tier.source, domain.tiers, domain.tier.index
    if src in minted:
        return minted[src]
    section = _source_section(domain)
    frame, key = _load_domain_docs(section, index, config, cache, progress)
    spec_key = hash_json(
        {"docs": key, "spec": spec.model_dump(mode="json"), "min_chars": config.data.min_chars}
    )
    path = cache / "tiers" / f"{src}-{spec_key}.parquet"
    if path.is_file():
        scores = pl.read_parquet(path)["score"].to_numpy()
    else:
        scores = _score_documents(section, spec, index, frame, config)
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
    minted[src] = _Tiered(frame, spec_key, info)
    return minted[src]


def _score_documents(
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
    return reference_scores(texts, halves_of(hashes), reference)


def _tier_docs(domain: DomainSection, tiered: _Tiered) -> tuple[pl.DataFrame, dict[str, Any]]:
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
    tiered: dict[str, _Tiered] = {}
    out: dict[str, DomainDocs] = {}
    for i, domain in enumerate(config.domains):
        share, tier = 1.0, None
        if domain.tokens is not None:
            assert tokenizer is not None, "token files need their tokenizer"
            frame, key = _load_token_docs(domain, i, config, cache, tokenizer)
        elif domain.tier is not None:
            source = _load_tiered(domain, config, cache, progress, tiered)
            frame, tier = _tier_docs(domain, source)
            share = tier["share_of_source_bytes"]
            key = hash_json([source.key, domain.tier.name])
        else:
            frame, key = _load_domain_docs(domain, i, config, cache, progress)
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


def _check(
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


def _target_bytes_per_token(
    config: Config, splits: Mapping[str, SplitDocs], keys: Mapping[str, str], cache: Path
) -> dict[str, float]:
    """Bytes per token of the full run's tokenizer on each domain's training text (cached)."""
    spec = config.tokenizer.target
    if spec is None:
        return {}
    tok = load_target_tokenizer(spec)
    tok_key = hash_json(tok.to_str())
    out: dict[str, float] = {}
    for d, s in splits.items():
        path = cache / "target_bpt" / f"{d}-{keys[d]}-{tok_key}.json"
        if path.is_file():
            out[d] = float(json.loads(path.read_text())["bytes_per_token"])
            continue
        out[d] = bytes_per_token(tok, s.train)
        atomic_write_json(path, {"bytes_per_token": out[d], "tokenizer": spec})
    return out


def prepare_data(
    config: Config,
    *,
    eval_texts: Sequence[str] | Mapping[str, str] = (),
    progress: bool = True,
) -> DataBundle:
    """Build (or reuse) the documents, tokenizer and token shards of every domain.

    `eval_texts` (evaluation items, by key when a mapping) are checked against every domain's
    training documents: the items found are recorded per domain, and with
    `data.decontaminate` the training documents that contain them are dropped.
    """
    cache = Path(config.run.cache_dir)
    splits: dict[str, SplitDocs] = {}
    keys: dict[str, str] = {}
    sizes: dict[str, tuple[int, int, bool]] = {}
    found: dict[str, list[str]] = {}
    seen: set[str] = set()
    if not isinstance(eval_texts, Mapping):
        eval_texts = {str(i): t for i, t in enumerate(eval_texts)}
    item_keys = list(eval_texts)
    checked = bool(eval_texts)
    texts = list(eval_texts.values())
    index = functools.cache(lambda: ContaminationIndex(texts, config.data.contamination_ngram))
    eval_key = hash_json([[k, hashlib.sha1(t.encode()).hexdigest()] for k, t in eval_texts.items()])
    tiers: dict[str, dict[str, Any]] = {}
    first_tokenizer = None
    if any(d.tokens is not None for d in config.domains):  # the files' tokenizer reads them
        first_tokenizer = get_tokenizer(config.tokenizer, {}, cache, config.run.seed)
    with _progress(progress) as bar:
        docs = domain_documents(config, cache, bar, first_tokenizer[0] if first_tokenizer else None)
        token_ids = {
            n: dict(zip(d.frame["hash"], d.frame["ids"], strict=True))
            for n, d in docs.items()
            if "ids" in d.frame.columns
        }
        near = near_dedup(docs, config, cache) if config.data.dedup == "near" else {}
        for i, domain in enumerate(config.domains):
            got = docs[domain.name]
            frame, keys[domain.name] = got.frame, got.key
            if got.tier is not None:
                tiers[domain.name] = got.tier
            if got.sizes is not None:
                sizes[domain.name] = got.sizes
            out = SplitDocs(duplicates=got.within + near.get(domain.name, 0))
            for text, digest, split in zip(
                frame["text"], frame["hash"], frame["split"], strict=True
            ):
                if config.data.dedup and digest in seen:
                    out.duplicates += 1
                    continue
                seen.add(digest)
                out.add(text, digest, split)
            if checked:
                flags, hits = _check(
                    index,
                    out.train,
                    cache,
                    f"{domain.name}-{keys[domain.name]}-{eval_key}-{config.data.contamination_ngram}-v2",
                )
                found[domain.name] = [item_keys[i] for i in hits]
                if config.data.decontaminate and flags.any():
                    keep = ~flags
                    out.contaminated = int(flags.sum())
                    out.train = [t for t, k in zip(out.train, keep, strict=True) if k]
                    out.train_hashes = [h for h, k in zip(out.train_hashes, keep, strict=True) if k]
            if not out.train:
                raise DataError(
                    f"domain '{domain.name}' has no training documents left after filtering "
                    f"(min_chars={config.data.min_chars}, deduplication, decontamination)",
                    field=f"domains[{i}]",
                )
            if not out.val:  # tiny domains: hold out the last training document
                out.val, out.val_hashes = [out.train.pop()], [out.train_hashes.pop()]
                if not out.train:
                    raise DataError(
                        f"domain '{domain.name}' has a single document; it needs at least two "
                        "(one to train on, one to validate)",
                        field=f"domains[{i}]",
                    )
            splits[domain.name] = out

        tokenizer, tok_path, tok_hash = first_tokenizer or get_tokenizer(
            config.tokenizer, {d: s.train for d, s in splits.items()}, cache, config.run.seed
        )

        target_bpt = _target_bytes_per_token(config, splits, keys, cache)
        domains: dict[str, DomainData] = {}
        for i, domain in enumerate(config.domains):
            s = splits[domain.name]
            n_docs, n_bytes, complete = sizes.get(domain.name, (0, 0, True))
            task = bar.add_task(f"tokenizing {domain.name}", total=len(s.train) + len(s.val))
            shard_key = hash_json(
                {
                    "train": hash_json(s.train_hashes),
                    "val": hash_json(s.val_hashes),
                    "tokenizer": tok_hash,
                }
            )
            folder = cache / "shards" / f"{domain.name}-{shard_key}"
            advance = functools.partial(bar.advance, task)
            if domain.name in token_ids:  # the files' tokens, as they are
                held = token_ids[domain.name]
                dtype = token_dtype(tokenizer.get_vocab_size())
                train, val = (
                    write_token_shard(
                        folder / f"{part}.bin",
                        [np.frombuffer(held[h], dtype=np.uint32) for h in hashes],
                        sum(len(t.encode("utf-8")) for t in texts),
                        dtype,
                    )
                    for part, hashes, texts in (
                        ("train", s.train_hashes, s.train),
                        ("val", s.val_hashes, s.val),
                    )
                )
                advance(len(s.train) + len(s.val))
            else:
                train = build_shard(folder / "train.bin", s.train, tokenizer, advance)
                val = build_shard(folder / "val.bin", s.val, tokenizer, advance)
            domains[domain.name] = DomainData(
                name=domain.name,
                source=source_description(domain),
                licence=source_licence(domain),
                fingerprint=source_fingerprint(domain, i)
                | ({"tier": tiers[domain.name]} if domain.name in tiers else {}),
                train=train,
                val=val,
                duplicates=s.duplicates,
                contaminated=s.contaminated,
                checked=checked,
                items=found.get(domain.name, []),
                source_documents=n_docs,
                source_bytes=n_bytes,
                source_complete=complete,
                target_bytes_per_token=target_bpt.get(domain.name),
                tier=tiers.get(domain.name),
            )
    return DataBundle(
        domains=domains,
        tokenizer=tokenizer,
        tokenizer_path=tok_path,
        tokenizer_hash=tok_hash,
        eval_items_checked=len(eval_texts),
        unchecked_items=[k for k, t in eval_texts.items() if too_short_to_check(t)],
        inputs={"domains": dict(keys), "tokenizer": tok_hash, "eval_items": eval_key},
    )
