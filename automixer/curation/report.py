"""The report's curation sections: group totals, how much of each tier the recipe keeps, and
the near-duplicate audit when one was run."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping

import polars as pl

from automixer.config import Config, group_members
from automixer.rundir import RunDir


def groups_frame(config: Config, mixes: Mapping[str, Mapping[str, float]]) -> pl.DataFrame:
    """Each group's total weight in each mixture, beside its bounds."""
    rows = []
    for g in config.solve.groups:
        members = group_members(config, g)
        row: dict[str, object] = {"group": g.name, "members": ", ".join(members)}
        for name, w in mixes.items():
            row[name] = sum(float(w.get(m, 0.0)) for m in members)
        row |= {"min": g.min, "max": g.max}
        rows.append(row)
    return pl.DataFrame(rows)


def tiers_frame(
    config: Config, mixes: Mapping[str, Mapping[str, float]], manifest: Mapping
) -> pl.DataFrame | None:
    """Per tier: its share of the source's text, and the share of the source's weight each
    mixture gives it (how much of each tier the recipe keeps, relative to the natural split)."""
    rows = []
    domains = manifest.get("domains", {})
    for d in config.domains:
        if d.tier is None:
            continue
        siblings = [e.name for e in config.domains if e.tier and e.tier.source == d.tier.source]
        row: dict[str, object] = {"source": d.tier.source, "tier": d.tier.name}
        row["share of source bytes"] = (domains.get(d.name, {}).get("tier") or {}).get(
            "share_of_source_bytes"
        )
        for name, w in mixes.items():
            total = sum(float(w.get(s, 0.0)) for s in siblings)
            row[f"{name}: share of source weight"] = (
                float(w.get(d.name, 0.0)) / total if total else 0.0
            )
        rows.append(row)
    return pl.DataFrame(rows) if rows else None


def curation_sections(
    rd: RunDir, mixes: Mapping[str, Mapping[str, float]], table: object
) -> list[str]:
    """HTML sections (`table` renders a polars frame as HTML)."""
    out: list[str] = []
    config = rd.config
    if config.solve.groups:
        out.append(
            "<h2>Group bounds</h2><p>Total weight of each group in each mixture.</p>"
            + table(groups_frame(config, mixes))  # type: ignore[operator]
        )
    tiers = tiers_frame(config, mixes, rd.manifest())
    if tiers is not None:
        out.append(
            "<h2>Quality tiers</h2><p>How much of each tier the mixtures keep: each tier's "
            "share of its source's weight, against its share of the source's text.</p>"
            + table(tiers)  # type: ignore[operator]
        )
    audit = rd.file("audit.json")
    if audit.is_file():
        summary = json.loads(audit.read_text())
        rows = pl.read_csv(rd.file("audit.csv")) if rd.file("audit.csv").is_file() else None
        png = rd.file("audit.png")
        img = (
            f'<img src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">'
            if png.is_file()
            else ""
        )
        g = summary["global_dedup_removes"]
        out.append(
            "<h2>Near-duplicate audit</h2><p>"
            + html.escape(
                f"word {summary['shingle_words']}-gram shingles, Jaccard >= "
                f"{summary['threshold']:g}, MinHash LSH with {summary['num_perm']} "
                f"permutations, each pair confirmed by exact Jaccard: "
                f"{summary['near_duplicate_pairs']} pairs; global deduplication would remove "
                f"{g['documents']} documents ({g['share_of_bytes']:.2%} of bytes), per-domain "
                f"{summary['domain_dedup_removes']['documents']}. Which copy of a cluster is "
                "removed depends on the keep rule: global_dedup_* keeps the first copy in the "
                "config's order (tiers high to low), global_blind_documents a quality-blind "
                "one (the smallest text hash); in_clusters_* counts every document in a "
                "cluster, whichever is kept."
            )
            + "</p>"
            + img
            + (table(rows) if rows is not None else "")  # type: ignore[operator]
        )
    return out
