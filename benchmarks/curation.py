"""The near-duplicate audit: MinHash LSH against exact Jaccard, and the audit's time and memory.

    python benchmarks/curation.py [--config configs/quickstart.yaml] [--docs 400]

1. Recall and precision of `automixer.curation.dedup.near_duplicate_pairs` at its defaults
   (word 5-gram shingles, Jaccard >= 0.8, 128 permutations) on real text with planted
   near-duplicates: `--docs` documents of the built-in bible and wiki corpora, for a third of
   them a copy at a Jaccard drawn uniformly from [0.8, 1.0] and for another third one from
   [0.6, 0.8) (`near_copy`). The truth is exact Jaccard over every pair; recall is given per
   band of it, the first band at the threshold.
2. `automixer audit CONFIG` in a child process, on a copy of the config with a fresh cache:
   wall time and peak resident memory, twice: the first run reads and tokenizes the corpora
   (cold), the second finds them cached (the usual case: `automixer run` has read them).

The last line is JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time

import numpy as np

from automixer.curation.dedup import jaccard, near_copy, near_duplicate_pairs, shingles
from automixer.data.builtin import BUILTINS

BINS = (0.8, 0.85, 0.9, 0.95, 1.0001)


def planted(n: int, seed: int) -> list[str]:
    """`n` real documents (bible and wiki, 80 to 400 words), and for a third of them a copy at
    a Jaccard drawn uniformly from [0.8, 1.0] (`near_copy`), for another third one drawn from
    [0.6, 0.8): pairs spread over the threshold's neighbourhood."""
    rng = np.random.default_rng(seed)
    docs: list[str] = []
    for name in ("bible", "wiki"):
        for doc in BUILTINS[name].read():
            words = doc.split()
            if len(words) >= 80:
                docs.append(" ".join(words[:400]))
            if len(docs) >= n // 2 * (1 if name == "bible" else 2):
                break
    third = len(docs) // 3
    copies = [near_copy(d, rng.uniform(0.8, 1.0), rng)[0] for d in docs[:third]]
    copies += [near_copy(d, rng.uniform(0.6, 0.8), rng)[0] for d in docs[third : 2 * third]]
    return docs + copies


def accuracy(n: int) -> dict:
    texts = planted(n, 0)
    sets = [shingles(t) for t in texts]
    start = time.perf_counter()
    truth = {
        (i, j): s
        for i, j in itertools.combinations(range(len(texts)), 2)
        if (s := jaccard(sets[i], sets[j])) >= 0.8
    }
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    found = near_duplicate_pairs(texts)
    lsh_s = time.perf_counter() - start
    got = {(i, j) for i, j, _ in found.pairs}
    by_bin = {}
    for lo, hi in itertools.pairwise(BINS):
        pairs = [p for p, s in truth.items() if lo <= s < hi]
        by_bin[f"[{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'}"] = {
            "pairs": len(pairs),
            "recall": sum(p in got for p in pairs) / len(pairs) if pairs else None,
        }
    return {
        "documents": len(texts),
        "true_pairs": len(truth),
        "found_pairs": len(got),
        "candidates": found.candidates,
        "recall": len(got & set(truth)) / len(truth) if truth else None,
        "recall_by_jaccard": by_bin,
        "precision": len(got & set(truth)) / len(got) if got else None,
        "exact_all_pairs_s": round(exact_s, 2),
        "minhash_lsh_s": round(lsh_s, 2),
    }


def audit(config: str) -> dict:
    """Two audits of `config` with a fresh cache and run folder (a temporary copy of it)."""
    import tempfile
    from pathlib import Path

    import yaml

    tmp = Path(tempfile.mkdtemp(prefix="automixer-audit-"))
    data = yaml.safe_load(Path(config).read_text())
    data.setdefault("run", {}).update(
        {"cache_dir": str(tmp / "cache"), "out_dir": str(tmp / "runs")}
    )
    copy = tmp / "config.yaml"
    copy.write_text(yaml.safe_dump(data))
    out = {}
    for label in ("first", "cached"):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "automixer.cli", "audit", str(copy), "-q"],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # GiB (KiB units)
        out[label] = {"seconds": round(seconds, 1), "peak_rss_gib_so_far": round(peak, 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--docs", type=int, default=400)
    args = ap.parse_args()
    acc = accuracy(args.docs)
    print(
        f"planted: {acc['documents']} documents, {acc['true_pairs']} pairs at Jaccard >= 0.8; "
        f"MinHash LSH found {acc['found_pairs']} (recall {acc['recall']:.3f}, precision "
        f"{acc['precision']:.3f}) in {acc['minhash_lsh_s']} s; exact all pairs took "
        f"{acc['exact_all_pairs_s']} s"
    )
    for band, v in acc["recall_by_jaccard"].items():
        recall = "-" if v["recall"] is None else f"{v['recall']:.3f}"
        print(f"  Jaccard {band}: {v['pairs']} pairs, recall {recall}")
    timing = audit(args.config)
    for label, t in timing.items():
        peak = t["peak_rss_gib_so_far"]
        print(f"audit {args.config} ({label}): {t['seconds']} s, peak RSS {peak} GiB")
    print(json.dumps({"accuracy": acc, "audit": timing}))


if __name__ == "__main__":
    main()
