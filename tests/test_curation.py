"""The data side of the mix: near-duplicates against exact Jaccard, quality tiers, group bounds."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from automixer.cli import app
from automixer.config import Config, parse_config
from automixer.curation.dedup import jaccard, near_duplicate_pairs, removed, shingles
from automixer.data.pipeline import prepare_data
from automixer.design import plan_mixtures
from automixer.errors import AutomixerError, ConfigError, DataError
from automixer.solve.constraints import Constraints
from tests.conftest import small_config, write_config

_WORDS = [
    *["data", "mixture", "proxy", "model", "token", "corpus", "domain", "weight", "sweep"],
    *["science", "code", "math", "web", "book", "tier", "quality", "filter", "score"],
    *["reference", "classifier", "shingle", "jaccard", "minhash"],
]


def _planted(n_base: int, seed: int) -> tuple[list[str], list[str]]:
    """Random documents, and near-copies of some of them (a few words changed or dropped)."""
    rng = random.Random(seed)
    base = [
        " ".join(rng.choice(_WORDS) + str(rng.randrange(50)) for _ in range(120))
        for _ in range(n_base)
    ]
    copies = []
    for doc in base[: n_base // 3]:
        words = doc.split()
        for _ in range(rng.randrange(1, 4)):  # 1-3 edits: Jaccard from about 0.6 to 0.95
            k = rng.randrange(len(words))
            words[k] = rng.choice(_WORDS) + "x"
        copies.append(" ".join(words))
    return base, copies


def test_minhash_pairs_agree_with_exact_jaccard_on_planted_near_duplicates():
    base, copies = _planted(300, seed=3)
    texts = base + copies
    sets = [shingles(t) for t in texts]
    truth = {
        (i, j)
        for i, j in itertools.combinations(range(len(texts)), 2)
        if jaccard(sets[i], sets[j]) >= 0.8
    }
    assert 50 <= len(truth) <= 100  # the planted copies straddle the threshold
    found = near_duplicate_pairs(texts, threshold=0.8)
    got = {(i, j) for i, j, _ in found.pairs}
    precision = len(got & truth) / len(got)
    recall = len(got & truth) / len(truth)
    assert precision == 1.0  # every pair is confirmed by exact Jaccard
    assert recall >= 0.95, (recall, len(truth))  # 74 of 75 pairs when written
    assert all(s >= 0.8 for *_, s in found.pairs)


def test_minhash_recall_at_the_threshold():
    """Recall where it is hardest: 120 near-copies at exact Jaccard in [0.80, 0.85) (above
    that band every planted pair of the test above is found)."""
    from automixer.curation.dedup import near_copy

    rng = np.random.default_rng(0)
    words = [w + str(k) for w in _WORDS for k in range(40)]
    base = [" ".join(rng.choice(words, 400)) for _ in range(120)]
    copies = [near_copy(d, rng.uniform(0.8, 0.835), rng) for d in base]
    band = [k for k, (_, sim) in enumerate(copies) if 0.8 <= sim < 0.85]
    assert len(band) >= 110
    found = near_duplicate_pairs(base + [c for c, _ in copies])
    got = {(i, j) for i, j, _ in found.pairs}
    recall = np.mean([(k, 120 + k) in got for k in band])
    assert recall >= 0.85, recall


def test_removal_keeps_the_first_of_each_cluster_and_respects_domains():
    pairs = [(0, 1, 0.9), (1, 2, 0.9), (3, 4, 0.85)]
    assert removed(5, pairs).tolist() == [False, True, True, False, True]
    # per domain: 1 and 2 are in another domain than 0; 3 and 4 share a domain
    assert removed(5, pairs, [0, 1, 1, 2, 2]).tolist() == [False, False, True, False, True]


def test_cross_fitting_keeps_each_near_duplicate_cluster_in_one_half():
    """A document and its near-copies are scored by the same half's model, never by one that
    trained on a copy (by each document's own hash, about half the pairs were split)."""
    from automixer.curation.tiers import cross_fitting_halves, halves_of
    from automixer.data.splits import doc_hash

    base, copies = _planted(240, seed=5)
    texts = base + copies
    hashes = [doc_hash(t) for t in texts]
    pairs = near_duplicate_pairs(texts).pairs
    assert len(pairs) >= 40
    halves = cross_fitting_halves(texts, hashes)
    assert all(halves[i] == halves[j] for i, j, _ in pairs)
    own = halves_of(hashes)
    assert sum(own[i] != own[j] for i, j, _ in pairs) >= len(pairs) // 4  # what it fixes
    assert 0.35 < halves.mean() < 0.65  # still two halves


def test_reference_tiers_recomputed_from_nothing_are_identical(tmp_path: Path):
    """The reference scorer twice, each in a fresh cache: the same scores, cuts and tiers."""
    runs = []
    for name in ("one", "two"):
        cfg = small_config(tmp_path / name)
        cfg["domains"] = [
            {"name": "bible", "builtin": "bible", "max_documents": 100},
            {
                "name": "science",
                "builtin": "science",
                "max_documents": 200,
                "tiers": {"scorer": "reference", "reference": "wiki"},
            },
        ]
        runs.append(prepare_data(Config.model_validate(cfg), progress=False))
    a, b = (r.manifest()["domains"] for r in runs)
    for tier in ("science.high", "science.medium", "science.low"):
        assert a[tier]["tier"]["cuts"] == b[tier]["tier"]["cuts"]
        assert a[tier]["tier_scores"] == b[tier]["tier_scores"]
        assert np.array_equal(
            np.asarray(runs[0].domains[tier].train.open()),
            np.asarray(runs[1].domains[tier].train.open()),
        )


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tier_docs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "text": " ".join(rng.choice(_WORDS) for _ in range(60)) + f" document {i}",
            "score": round(rng.uniform(0, 5), 3),
        }
        for i in range(n)
    ]


def _tiered_config(tmp_path: Path, tiers: dict, **more: object) -> dict:
    web = _jsonl(tmp_path / "web.jsonl", _tier_docs(240, 0))
    cfg = small_config(tmp_path, **more)
    cfg["domains"] = [
        *cfg["domains"][:2],
        {"name": "web", "files": [str(web)], "tiers": tiers},
    ]
    return cfg


def test_tiers_from_a_data_field_are_named_counted_and_deterministic(tmp_path: Path):
    tiers = {"field": "score", "names": ["high", "low"], "thresholds": [2.5]}
    config = Config.model_validate(_tiered_config(tmp_path, tiers))
    assert config.domain_names[-2:] == ["web.high", "web.low"]
    bundle = prepare_data(config, progress=False)
    rows = bundle.manifest()["domains"]
    high, low = rows["web.high"], rows["web.low"]
    assert high["tier_of"] == low["tier_of"] == "web"
    assert high["tier_scores"][0] >= 2.5 > low["tier_scores"][1]
    scores = [r["score"] for r in _tier_docs(240, 0)]
    assert high["documents_train"] + high["documents_val"] == sum(s >= 2.5 for s in scores)
    assert low["documents_train"] + low["documents_val"] == sum(s < 2.5 for s in scores)
    # recomputed from nothing (a fresh cache): the same tiers, document for document
    (tmp_path / "again").mkdir()
    fresh = _tiered_config(tmp_path / "again", tiers)
    again = prepare_data(Config.model_validate(fresh), progress=False)
    for tier in ("web.high", "web.low"):
        assert again.domains[tier].train.path != bundle.domains[tier].train.path
        assert again.manifest()["domains"][tier]["tier_scores"] == rows[tier]["tier_scores"]
        a = np.asarray(again.domains[tier].train.open())
        b = np.asarray(bundle.domains[tier].train.open())
        assert np.array_equal(a, b)


def test_reference_scorer_tiers_a_builtin_source_by_quantiles(tmp_path: Path):
    cfg = small_config(tmp_path)
    cfg["domains"] = [
        {"name": "bible", "builtin": "bible", "max_documents": 200},
        {
            "name": "science",
            "builtin": "science",
            "max_documents": 300,
            "tiers": {"scorer": "reference", "reference": "wiki"},
        },
    ]
    config = Config.model_validate(cfg)
    rows = prepare_data(config, progress=False).manifest()["domains"]
    counts = [
        rows[f"science.{t}"]["documents_train"] + rows[f"science.{t}"]["documents_val"]
        for t in ("high", "medium", "low")
    ]
    assert sum(counts) >= 290 and max(counts) - min(counts) <= 3  # thirds of the source
    ranges = [rows[f"science.{t}"]["tier_scores"] for t in ("high", "medium", "low")]
    assert ranges[0][0] >= ranges[1][1] and ranges[1][0] >= ranges[2][1]
    assert rows["science.high"]["tier"]["score"] == "reference:wiki"


@pytest.mark.parametrize(
    ("tiers", "problem"),
    [
        ({"field": "score", "thresholds": [1.0, 2.0]}, "strictly descending"),
        ({"field": "score", "quantiles": [0.5]}, "needs 2 cuts"),
        ({"scorer": "reference", "field": "score"}, "exactly one of"),
        ({"field": "score", "names": ["a", "a"]}, "distinct tier names"),
    ],
)
def test_bad_tier_specs_are_one_line(tmp_path: Path, tiers: dict, problem: str):
    text = json.dumps(_tiered_config(tmp_path, tiers))
    with pytest.raises(ConfigError, match=problem) as info:
        parse_config(text, "c.yaml")
    assert "\n" not in str(info.value) and "tiers" in str(info.value)


def test_a_tier_field_missing_or_not_numeric_names_file_and_line(tmp_path: Path):
    rows = _tier_docs(20, 1)
    rows[7]["score"] = "high"
    cfg = _tiered_config(tmp_path, {"field": "score", "names": ["high", "low"]})
    _jsonl(Path(cfg["domains"][-1]["files"][0]), rows)
    with pytest.raises(DataError, match="not numeric") as info:
        prepare_data(Config.model_validate(cfg), progress=False)
    assert "web.jsonl" in str(info.value) and ":8" in str(info.value)
    assert "tiers.field" in str(info.value)
    del rows[7]["score"]
    _jsonl(Path(cfg["domains"][-1]["files"][0]), rows)
    with pytest.raises(DataError, match="is missing"):
        prepare_data(Config.model_validate(cfg), progress=False)


def test_groups_bound_the_design_and_the_solver():
    natural = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
    groups = [("ab", ["a", "b"], 0.0, 0.5), ("d", ["d"], 0.15, 1.0)]
    runs = plan_mixtures(natural, n_runs=40, seed=0, replicates=2, groups=groups)
    W = np.array([list(r.weights.values()) for r in runs])
    assert W[:, :2].sum(1).max() <= 0.5 + 1e-6 and W[:, 3].min() >= 0.15 - 1e-6
    assert np.allclose(W.sum(1), 1) and W.min() >= 0
    c = Constraints.build(list(natural), prior=natural, groups=groups)
    # the projection is the Euclidean one onto the intersection (checked against SLSQP)
    from scipy.optimize import minimize

    v = np.array([0.7, 0.4, -0.1, 0.0])
    cons = [
        {"type": "eq", "fun": lambda w: w.sum() - 1},
        {"type": "ineq", "fun": lambda w: 0.5 - w[:2].sum()},
        {"type": "ineq", "fun": lambda w: w[3] - 0.15},
    ]
    ref = minimize(
        lambda w: ((w - v) ** 2).sum(),
        np.full(4, 0.25),
        constraints=cons,
        bounds=[(0, 1)] * 4,
        method="SLSQP",
        options={"ftol": 1e-14},
    )
    assert np.allclose(c.project(v), ref.x, atol=1e-6)
    # the solver: a score that wants all of 'a' stops at the group's bound
    from automixer.solve.solvers import _exact

    w = _exact(lambda W: np.atleast_2d(W)[:, 0], c, np.array([c.project(np.full(4, 0.25))]))
    assert c.contains(w) and w[:2].sum() == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(AutomixerError, match="no mixture meets the group bounds"):
        Constraints.build(list(natural), groups=[("x", ["a"], 0.6, 1.0), ("y", ["a", "b"], 0, 0.5)])


def test_a_group_naming_no_domain_is_one_line(tmp_path: Path):
    cfg = small_config(
        tmp_path, solve={"groups": [{"name": "g", "domains": ["nope.*"], "max": 0.3}]}
    )
    with pytest.raises(ConfigError, match=r"unknown domain 'nope\.\*'") as info:
        parse_config(json.dumps(cfg), "c.yaml")
    assert "solve.groups[0].domains" in str(info.value)
    cfg = small_config(tmp_path, solve={"groups": [{"name": "g", "synthetic": True, "max": 0.1}]})
    with pytest.raises(ConfigError, match="synthetic"):
        parse_config(json.dumps(cfg), "c.yaml")


def test_audit_writes_the_table_and_the_makeup(tmp_path: Path):
    base, copies = _planted(60, seed=5)
    a = _jsonl(tmp_path / "a.jsonl", [{"text": t} for t in base])
    b = _jsonl(tmp_path / "b.jsonl", [{"text": t} for t in copies])
    cfg = small_config(tmp_path)
    cfg["domains"] = [{"name": "a", "files": [str(a)]}, {"name": "b", "files": [str(b)]}]
    path = write_config(tmp_path / "c.yaml", cfg)
    result = CliRunner().invoke(app, ["audit", str(path), "-q"])
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs").iterdir())
    summary = json.loads((run / "audit.json").read_text())
    import polars as pl

    table = pl.read_csv(run / "audit.csv")
    sets = [shingles(t) for t in base + copies]
    across = sum(
        jaccard(sets[i], sets[60 + j]) >= 0.8 for i in range(60) for j in range(len(copies))
    )
    row_b = table.filter(pl.col("domain") == "b").row(0, named=True)
    # every copy near-duplicating an original is removed by global dedup (the original comes
    # first), none by per-domain dedup (the copies differ from each other)
    assert row_b["near_pairs_across"] == across
    assert row_b["global_dedup_documents"] == across and row_b["domain_dedup_documents"] == 0
    assert summary["makeup_by_domain"]["b"]["removed_share"] == 1.0
    assert summary["makeup_by_domain"]["b"]["removed_documents"] == across
    # the order-free figure counts both copies of every pair, whichever is kept
    in_a = len({i for i in range(60) for j in range(len(copies))
                if jaccard(sets[i], sets[60 + j]) >= 0.8})  # fmt: skip
    row_a = table.filter(pl.col("domain") == "a").row(0, named=True)
    assert row_a["in_clusters_documents"] == in_a and row_b["in_clusters_documents"] == across
    # a quality-blind keep rule removes one copy of each pair too, from either side
    blind = row_a["global_blind_documents"] + row_b["global_blind_documents"]
    assert blind == across and 0 < row_b["global_blind_documents"] < across
    assert (run / "audit.png").stat().st_size > 0


def test_keep_rules_decide_which_tier_loses_and_the_order_free_figure_does_not():
    """One cross-tier pair: keeping the first copy (tiers listed high to low) always takes it
    from the low tier; a quality-blind rule takes one copy by its hash; the order-free count
    holds both copies whichever is kept."""
    from automixer.curation.dedup import clusters, keep_by_hash

    pairs = [(0, 3, 0.9)]  # document 0 (high tier) and 3 (low tier) are near-copies
    assert removed(4, pairs).tolist() == [False, False, False, True]
    texts = ["a b c", "d", "e", "a b c d"]
    blind = removed(4, pairs, keep=keep_by_hash(texts))
    assert blind.sum() == 1 and blind[[0, 3]].sum() == 1
    root = clusters(4, pairs)
    assert (np.bincount(root, minlength=4)[root] > 1).tolist() == [True, False, False, True]
