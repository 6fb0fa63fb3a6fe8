"""From a config to ready token shards, stage by stage, each cached and reused:

    sources    automixer/data/sources.py    built-in corpora, local files, Hugging Face datasets
    documents  automixer/data/documents.py  cache_dir/docs/<domain>-<key>.parquet (text, hash,
                                            split; after the limits and exact dedup within)
    tiers and  automixer/data/curated.py    cache_dir/tiers/<source>-<key>.parquet (scores),
    dedup                                   cache_dir/near/<key>.parquet (`data.dedup: near`)
    splits     automixer/data/splits.py     exact dedup across domains, decontamination
                                            (cache_dir/contamination/)
    tokenizer  automixer/data/tokenizer.py  cache_dir/tokenizers/<key>/tokenizer.json
    shards     automixer/data/shards.py     cache_dir/shards/<domain>-<key>/{train,val}.bin

`prepare_data` runs them in order and returns a `DataBundle` (automixer/data/bundle.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automixer.config import Config
from automixer.data.bundle import DataBundle, DomainData
from automixer.data.curated import domain_documents, near_dedup
from automixer.data.shards import domain_shards
from automixer.data.sources import source_description, source_fingerprint, source_licence
from automixer.data.splits import assemble_splits, eval_items_key, too_short_to_check
from automixer.data.tokenizer import get_tokenizer, target_bytes_per_token
from automixer.views import data_progress

__all__ = ["DataBundle", "DomainData", "domain_documents", "prepare_data"]


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
    if not isinstance(eval_texts, Mapping):
        eval_texts = {str(i): t for i, t in enumerate(eval_texts)}
    first_tokenizer = None
    if any(d.tokens is not None for d in config.domains):  # the files' tokenizer reads them
        first_tokenizer = get_tokenizer(config.tokenizer, {}, cache, config.run.seed)
    with data_progress(progress) as bar:
        docs = domain_documents(config, cache, bar, first_tokenizer[0] if first_tokenizer else None)
        token_ids = {
            n: dict(zip(d.frame["hash"], d.frame["ids"], strict=True))
            for n, d in docs.items()
            if "ids" in d.frame.columns
        }
        near = near_dedup(docs, config, cache) if config.data.dedup == "near" else {}
        splits = assemble_splits(config, docs, near, eval_texts, cache)
        tokenizer, tok_path, tok_hash = first_tokenizer or get_tokenizer(
            config.tokenizer,
            {d: s.train for d, s in splits.domains.items()},
            cache,
            config.run.seed,
        )
        keys = {n: d.key for n, d in docs.items()}
        target_bpt = target_bytes_per_token(config, splits.domains, keys, cache)
        domains: dict[str, DomainData] = {}
        for i, domain in enumerate(config.domains):
            s, got = splits.domains[domain.name], docs[domain.name]
            n_docs, n_bytes, complete = got.sizes or (0, 0, True)
            task = bar.add_task(f"tokenizing {domain.name}", total=len(s.train) + len(s.val))

            def advance(n: int, task: Any = task) -> None:
                bar.advance(task, n)

            train, val = domain_shards(
                domain.name, s, tokenizer, tok_hash, cache, advance, token_ids.get(domain.name)
            )
            domains[domain.name] = DomainData(
                name=domain.name,
                source=source_description(domain),
                licence=source_licence(domain),
                fingerprint=source_fingerprint(domain, i)
                | ({"tier": got.tier} if got.tier is not None else {}),
                train=train,
                val=val,
                duplicates=s.duplicates,
                contaminated=s.contaminated,
                checked=bool(eval_texts),
                items=splits.items.get(domain.name, []),
                source_documents=n_docs,
                source_bytes=n_bytes,
                source_complete=complete,
                target_bytes_per_token=target_bpt.get(domain.name),
                tier=got.tier,
            )
    return DataBundle(
        domains=domains,
        tokenizer=tokenizer,
        tokenizer_path=tok_path,
        tokenizer_hash=tok_hash,
        eval_items_checked=len(eval_texts),
        unchecked_items=[k for k, t in eval_texts.items() if too_short_to_check(t)],
        inputs={"domains": keys, "tokenizer": tok_hash, "eval_items": eval_items_key(eval_texts)},
    )
