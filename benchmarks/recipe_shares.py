"""Hugging Face recipe: realised token shares against the recipe's weights, on real documents.

    python benchmarks/recipe_shares.py [--documents 20000] [--seeds 5]

Documents of four built-in corpora (CPython source files, Wikipedia articles, dictionary
entries, Bible chapters: lengths from tens to thousands of tokens) are tokenized with a
byte-level BPE trained on them. A recipe with fixed token weights is exported as
`hf_interleave.json`; `datasets.interleave_datasets` then draws documents with the exported
per-document probabilities, and the tokens each domain contributes are counted. The same is
done with the token weights passed as probabilities directly (what the earlier exporter did).
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json

import datasets
import numpy as np

from automixer.data.builtin import BUILTINS
from automixer.data.tokenizer import train_bpe
from automixer.recipes import build_recipe, to_hf_datasets

WEIGHTS = {"code": 0.15, "wiki": 0.35, "dictionary": 0.3, "bible": 0.2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--documents", type=int, default=20_000, help="documents drawn per seed")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--per-domain", type=int, default=300, help="documents read per domain")
    args = ap.parse_args()

    docs = {}
    for d in WEIGHTS:
        texts = []
        for t in BUILTINS[d].read():
            if t.strip():
                texts.append(t)
            if len(texts) >= args.per_domain:
                break
        docs[d] = texts
    tok = train_bpe([t for v in docs.values() for t in v], 4096)
    lengths = {
        d: np.array([len(e.ids) for e in tok.encode_batch(v, add_special_tokens=False)])
        for d, v in docs.items()
    }
    mean = {d: float(v.mean()) for d, v in lengths.items()}
    recipe = build_recipe(
        weights=WEIGHTS,
        target_tokens=None,
        max_epochs=4.0,
        supply={
            d: {
                "available_tokens": float(lengths[d].sum()),
                "available_basis": "counted",
                "source_bytes": 0,
                "bytes_per_token": 0.0,
                "documents": len(docs[d]),
            }
            for d in WEIGHTS
        },
        tokens_in="benchmark BPE",
        sources={d: {"source": {"builtin": d}, "licence": "", "path": d} for d in WEIGHTS},
        solution={},
        constraints={},
        objective={},
        cv_summary={},
        sweep={},
        exported_by={},
        export={},
    )
    spec = json.loads(to_hf_datasets(recipe))
    sets = [
        datasets.Dataset.from_dict(
            {"text": docs[d], "tokens": lengths[d].tolist(), "domain": [d] * len(docs[d])}
        )
        for d in WEIGHTS
    ]

    def shares(probabilities: list[float], seed: int) -> dict[str, float]:
        mixed = datasets.interleave_datasets(
            sets, probabilities=probabilities, seed=seed, stopping_strategy="all_exhausted"
        )
        drawn = mixed.select(range(min(args.documents, len(mixed))))
        tokens = np.array(drawn["tokens"])
        domain = np.array(drawn["domain"])
        out = {d: float(tokens[domain == d].sum()) for d in WEIGHTS}
        total = sum(out.values())
        return {d: v / total for d, v in out.items()}

    rows = []
    for seed in range(args.seeds):
        rows.append(
            {
                "seed": seed,
                "exported": shares(spec["probabilities"], seed),
                "token_weights_as_probabilities": shares(list(WEIGHTS.values()), seed),
            }
        )
    result = {"weights": WEIGHTS, "mean_tokens_per_document": mean}
    for kind in ("exported", "token_weights_as_probabilities"):
        mean_share = {d: float(np.mean([r[kind][d] for r in rows])) for d in WEIGHTS}
        worst = max(abs(r[kind][d] - WEIGHTS[d]) for r in rows for d in WEIGHTS)
        result[kind] = {"mean_share": mean_share, "max_abs_error": worst}
        print(
            f"{kind:32s} "
            + "  ".join(f"{d} {mean_share[d]:.3f}" for d in WEIGHTS)
            + f"  (max |share - weight| over {args.seeds} seeds: {worst:.4f})"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
