"""`automixer audit CONFIG`: near-duplicates within and across domains and tiers, and what
deduplication would remove.

Per domain (a tier is a domain): documents, bytes, tokens (bytes over the domain's bytes per
token in the proxy tokenizer), exact duplicates the data stage drops, near-duplicate pairs
within it and shared with other domains, and what per-domain and what global near-deduplication
would remove (documents, tokens). Then the make-up of what global deduplication removes against
the corpus's, by domain and, for tiered sources, by tier: the check behind "global deduplication
removes disproportionately high-quality data". Which copy of a cluster is removed depends on the
keep rule, so three figures stand side by side, each with its counts: keeping the first copy
in the config's order (tiers high to low), keeping a quality-blind copy (the smallest text
hash), and the order-free one, every document in a near-duplicate cluster.

Written to the run directory: audit.csv (the table), audit.json (settings, timings, make-up)
and audit.png (the make-up figure); the report shows them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from automixer.config import Config, load_config
from automixer.curation.dedup import (
    NUM_PERM,
    SHINGLE,
    clusters,
    keep_by_hash,
    near_duplicate_pairs,
    removed,
)
from automixer.io import atomic_path, atomic_write_json
from automixer.rundir import RunDir


def audit_table(
    config: Config,
    frames: dict[str, pl.DataFrame],
    bytes_per_token: dict[str, float],
    within: dict[str, int],
    threshold: float,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The audit of the domains' documents (`frames`: text and hash, in the config's order)."""
    names = list(frames)
    texts = [t for n in names for t in frames[n]["text"].to_list()]
    label = np.array([k for k, n in enumerate(names) for _ in range(frames[n].height)])
    size = np.array([len(t.encode("utf-8")) for t in texts], dtype=np.float64)
    # exact duplicates across domains: a document whose hash an earlier domain holds
    seen: set[str] = set()
    exact_across = np.zeros(len(names), dtype=np.int64)
    for k, n in enumerate(names):
        for h in frames[n]["hash"].to_list():
            if h in seen:
                exact_across[k] += 1
            seen.add(h)
    start = time.perf_counter()
    found = near_duplicate_pairs(texts, threshold=threshold)
    seconds = time.perf_counter() - start
    by_domain = removed(len(texts), found.pairs, label.tolist())
    by_global = removed(len(texts), found.pairs)
    blind = removed(len(texts), found.pairs, keep=keep_by_hash(texts))
    root = clusters(len(texts), found.pairs)
    in_cluster = np.bincount(root, minlength=len(texts))[root] > 1  # order-free
    pairs = np.array([(i, j) for i, j, _ in found.pairs], dtype=np.int64).reshape(-1, 2)
    same = label[pairs[:, 0]] == label[pairs[:, 1]] if len(pairs) else np.zeros(0, dtype=bool)
    rows = []
    for k, n in enumerate(names):
        mine = label == k
        bpt = bytes_per_token.get(n) or float("nan")
        touch = (label[pairs[:, 0]] == k) | (label[pairs[:, 1]] == k) if len(pairs) else same
        section = next(d for d in config.domains if d.name == n)
        rows.append(
            {
                "domain": n,
                "tier_of": section.tier.source if section.tier else None,
                "documents": int(mine.sum()),
                "bytes": int(size[mine].sum()),
                "tokens": round(size[mine].sum() / bpt) if bpt == bpt else None,
                "exact_duplicates": within.get(n, 0) + int(exact_across[k]),
                "near_pairs_within": int((touch & same).sum()),
                "near_pairs_across": int((touch & ~same).sum()),
                "domain_dedup_documents": int((by_domain & mine).sum()),
                "domain_dedup_tokens": round(size[by_domain & mine].sum() / bpt)
                if bpt == bpt
                else None,
                "global_dedup_documents": int((by_global & mine).sum()),
                "global_dedup_tokens": round(size[by_global & mine].sum() / bpt)
                if bpt == bpt
                else None,
                "global_blind_documents": int((blind & mine).sum()),
                "in_clusters_documents": int((in_cluster & mine).sum()),
                "in_clusters_bytes": int(size[in_cluster & mine].sum()),
            }
        )
    table = pl.DataFrame(rows)
    total_bytes = size.sum()
    removed_bytes = size[by_global].sum()

    def shares(members: np.ndarray, among: np.ndarray) -> dict[str, Any]:
        """What `members` hold of `among`'s bytes, of what each keep rule removes from it,
        and of its documents in any near-duplicate cluster, with the counts behind each."""
        out: dict[str, Any] = {
            "documents": int((members & among).sum()),
            "bytes": int(size[members & among].sum()),
            "corpus_share": _share(size, members & among, among),
        }
        for name, mask in (("removed", by_global), ("removed_blind", blind)):
            out[f"{name}_documents"] = int((members & among & mask).sum())
            out[f"{name}_bytes"] = int(size[members & among & mask].sum())
            out[f"{name}_share"] = _share(size, members & among & mask, among & mask)
            out[f"{name}_fraction"] = _share(size, members & among & mask, members & among)
        out["in_clusters_documents"] = int((members & among & in_cluster).sum())
        out["in_clusters_bytes"] = int(size[members & among & in_cluster].sum())
        out["in_clusters_share"] = _share(size, members & among & in_cluster, among & in_cluster)
        out["in_clusters_fraction"] = _share(size, members & among & in_cluster, members & among)
        return out

    everything = np.ones(len(texts), dtype=bool)
    makeup = {n: shares(label == k, everything) for k, n in enumerate(names)}
    tiers: dict[str, dict[str, Any]] = {}
    for d in config.domains:
        if d.tier is None:
            continue
        members = [e.name for e in config.domains if e.tier and e.tier.source == d.tier.source]
        source = np.isin(label, [names.index(m) for m in members])
        tiers.setdefault(d.tier.source, {})[d.tier.name] = shares(
            label == names.index(d.name), source
        )
    summary = {
        "shingle_words": SHINGLE,
        "threshold": threshold,
        "num_perm": NUM_PERM,
        "documents": len(texts),
        "candidate_pairs": found.candidates,
        "near_duplicate_pairs": len(found.pairs),
        "minhash_seconds": round(seconds, 3),
        "global_dedup_removes": {
            "documents": int(by_global.sum()),
            "bytes": int(removed_bytes),
            "share_of_bytes": float(removed_bytes / total_bytes) if total_bytes else 0.0,
        },
        "domain_dedup_removes": {
            "documents": int(by_domain.sum()),
            "bytes": int(size[by_domain].sum()),
        },
        "blind_dedup_removes": {
            "documents": int(blind.sum()),
            "bytes": int(size[blind].sum()),
        },
        "in_clusters": {"documents": int(in_cluster.sum()), "bytes": int(size[in_cluster].sum())},
        "keep_rules": {
            "removed": "global dedup keeping the first copy of each cluster in the config's "
            "order (tiers high to low: the highest tier's copy)",
            "removed_blind": "global dedup keeping the copy with the smallest text hash "
            "(quality-blind)",
            "in_clusters": "every document in a near-duplicate cluster, whichever is kept "
            "(order-free)",
        },
        "makeup_by_domain": makeup,
        "makeup_by_tier": tiers,
        "confirmed_by": "exact Jaccard of the shingle sets (every reported pair)",
    }
    return table, summary


def _share(size: np.ndarray, part: np.ndarray, whole: np.ndarray) -> float | None:
    """Bytes of `part` over bytes of `whole` (None when `whole` holds none)."""
    total = size[whole].sum()
    return float(size[part].sum() / total) if total else None


def makeup_figure(summary: dict[str, Any]) -> Any:
    """Bars: each domain's share of the corpus against its share of what global dedup removes
    (keeping the first copy, and keeping a quality-blind one) and of the documents in any
    near-duplicate cluster (order-free)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    makeup = summary["makeup_by_domain"]
    names = list(makeup)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names)), 3.5))
    bars = (
        ("corpus_share", "corpus (bytes)"),
        ("removed_share", "removed, keeping the first copy"),
        ("removed_blind_share", "removed, keeping a quality-blind copy"),
        ("in_clusters_share", "in near-duplicate clusters (order-free)"),
    )
    for k, (key, label) in enumerate(bars):
        heights = [makeup[n][key] or 0.0 for n in names]
        ax.bar(x + (k - 1.5) * 0.2, heights, 0.2, label=label)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("share")
    ax.set_title(
        f"near-duplicates (word {summary['shingle_words']}-gram Jaccard >= "
        f"{summary['threshold']:g}): {summary['global_dedup_removes']['share_of_bytes']:.1%} "
        "of bytes removed globally"
    )
    ax.legend()
    fig.tight_layout()
    return fig


def run_audit(
    config_path: Path, console: Console, *, threshold: float | None = None, progress: bool = True
) -> Path:
    """Read (or reuse) the domains' documents and write the audit to the run directory."""
    from automixer.data.curated import domain_documents
    from automixer.data.pipeline import prepare_data
    from automixer.views import data_progress

    config = load_config(config_path)
    rd = RunDir.for_config(config)
    rd.write_config()
    start = time.perf_counter()
    bundle = prepare_data(config, progress=progress)  # cached: the tokens per byte, per domain
    cache = Path(config.run.cache_dir)
    with data_progress(progress) as bar:
        docs = domain_documents(config, cache, bar)
    frames = {n: d.frame.select("text", "hash") for n, d in docs.items()}
    table, summary = audit_table(
        config,
        frames,
        bundle.bytes_per_token(),
        {n: d.within for n, d in docs.items()},
        threshold if threshold is not None else config.data.near_threshold,
    )
    summary["seconds"] = round(time.perf_counter() - start, 3)
    with atomic_path(rd.file("audit.csv")) as tmp:
        table.write_csv(tmp)
    fig = makeup_figure(summary)
    with atomic_path(rd.file("audit.png")) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    atomic_write_json(rd.file("audit.json"), {**rd.provenance(), **summary})
    show(table, summary, console)
    console.print(f"audit: {rd.file('audit.csv')}, {rd.file('audit.json')}, {rd.file('audit.png')}")
    return rd.path


def show(table: pl.DataFrame, summary: dict[str, Any], console: Console) -> None:
    out = Table(
        title=f"near-duplicates: word {summary['shingle_words']}-gram shingles, Jaccard >= "
        f"{summary['threshold']:g}, MinHash LSH ({summary['num_perm']} permutations), each pair "
        "confirmed by exact Jaccard",
        title_justify="left",
    )
    cols = {
        "domain": "domain",
        "documents": "docs",
        "tokens": "tokens",
        "exact_duplicates": "exact dups",
        "near_pairs_within": "near pairs within",
        "near_pairs_across": "near pairs across",
        "domain_dedup_documents": "per-domain removes",
        "global_dedup_documents": "global removes",
    }
    for c in cols.values():
        out.add_column(c, justify="left" if c == "domain" else "right")
    for row in table.iter_rows(named=True):
        out.add_row(*(f"{row[k]:,}" if isinstance(row[k], int) else str(row[k]) for k in cols))
    console.print(out)
    g = summary["global_dedup_removes"]
    console.print(
        f"global near-dedup would remove {g['documents']:,} documents "
        f"({g['share_of_bytes']:.2%} of bytes); per-domain "
        f"{summary['domain_dedup_removes']['documents']:,}"
    )
    for source, tiers in summary["makeup_by_tier"].items():
        for t, v in tiers.items():
            console.print(
                f"{source}.{t}: {v['corpus_share']:.0%} of the source's bytes "
                f"({v['documents']:,} documents); in near-duplicate clusters "
                f"{v['in_clusters_documents']:,} documents ({_pct(v['in_clusters_fraction'])} "
                f"of its bytes); global dedup removes {v['removed_documents']:,} keeping the "
                f"first copy ({_pct(v['removed_share'])} of what it removes from the source), "
                f"{v['removed_blind_documents']:,} keeping a quality-blind copy "
                f"({_pct(v['removed_blind_share'])})"
            )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
