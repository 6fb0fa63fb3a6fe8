"""Recipes, checked with each framework's own parsing code (megatron-core, ai2-olmo-core,
Hugging Face datasets), and the one budget they are written for."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from automixer.budget import check_budget, largest_feasible_budget
from automixer.errors import AutomixerError
from automixer.recipes import (
    NeedsBudget,
    build_recipe,
    document_probabilities,
    export,
    load_recipe,
    mixed_stream,
    to_hf_datasets,
)
from automixer.registry import EXPORT_FORMATS

WEIGHTS = {"code": 0.5, "bible": 0.3, "dictionary": 0.2}
AVAILABLE = {"code": 4e8, "bible": 2e8, "dictionary": 1e8}
DOCS = {"code": 1e5, "bible": 2e6, "dictionary": 5e3}


def _recipe(weights=WEIGHTS, target_tokens: float | None = 1e9, paths=None, max_epochs=4.0):
    paths = paths or {}
    return build_recipe(
        weights=weights,
        target_tokens=target_tokens,
        max_epochs=max_epochs,
        supply={
            d: {
                "available_tokens": AVAILABLE[d],
                "available_basis": "counted",
                "source_bytes": 3 * AVAILABLE[d],
                "bytes_per_token": 3.0,
                "documents": DOCS[d],
            }
            for d in weights
        },
        tokens_in="proxy: abc",
        sources={
            d: {"source": {"builtin": d}, "licence": "x", "path": paths.get(d, d)} for d in weights
        },
        solution={
            "objective": {"predicted": 1.2, "lo": 0.9, "hi": 1.5},
            "predicted": {"ability:code:bpb": {"mean": 2.0, "lo": 1.9, "hi": 2.1}},
        },
        constraints={"max_epochs": max_epochs},
        objective={"code": 1.0},
        cv_summary={"ability:code:bpb": {"model": "gp", "spearman": 0.9}},
        sweep={"name": "s", "config_hash": "h", "commit": "c"},
        exported_by={"commit": "e", "automixer": "0.1.0"},
        export={"megatron_json_key": "text", "global_batch_size": 4096, "seed": 7},
    )


def test_recipe_contents_and_provenance():
    r = _recipe()
    assert r["mixture"]["code"]["tokens"] == 500_000_000
    assert r["mixture"]["code"]["epochs"] == pytest.approx(1.25)
    assert r["mixture"]["code"]["mean_tokens_per_document"] == pytest.approx(4000)
    assert r["config_hash"] == "h" and r["sweep"]["commit"] == "c"
    assert r["exported_by"]["commit"] == "e" and r["tokens_in"] == "proxy: abc"
    assert r["predicted_objective"]["lo"] == 0.9


def test_no_recipe_breaks_its_repetition_cap():
    # dictionary at 0.2 of 1e10 tokens is 20 epochs of its 1e8: refused.
    with pytest.raises(AutomixerError, match="dictionary 20 epochs"):
        _recipe(target_tokens=1e10)
    r = _recipe(target_tokens=2e9)  # 4 epochs exactly: allowed
    assert max(v["epochs"] for v in r["mixture"].values()) == pytest.approx(4.0)


def test_canonical_formats_round_trip(tmp_path: Path):
    for fmt in ("yaml", "json"):
        assert load_recipe(export(_recipe(), fmt, tmp_path)) == _recipe()


def test_megatron_blend_reads_back_with_megatron_core(tmp_path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # megatron-core warns that Apex is not installed
        from megatron.core.datasets.utils import get_blend_from_list

    recipe = _recipe(paths={"code": "/data/megatron/code"})
    path = export(recipe, "megatron", tmp_path)
    # What Megatron-LM does with --data-args-path: split the file on whitespace.
    prefixes, weights = get_blend_from_list(path.read_text().split())
    assert prefixes == [
        "/data/megatron/code_text_document",
        "bible_text_document",
        "dictionary_text_document",
    ]
    assert weights == pytest.approx(list(WEIGHTS.values()))


def test_olmo_core_decodes_both_files(tmp_path: Path):
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig, SourceMixtureList

    recipe = _recipe(paths={"bible": "/data/olmo/bible"})
    sources = SourceMixtureList.from_yaml(export(recipe, "olmo-core", tmp_path))
    sources.validate()
    got = {s.source_name: s for s in sources.sources}
    assert set(got) == set(WEIGHTS)
    for d, w in WEIGHTS.items():
        assert got[d].target_ratio == pytest.approx(w)
        assert got[d].max_repetition_ratio == 4.0 and got[d].max_source_fraction == 1.0
    assert got["bible"].paths == ["/data/olmo/bible/*.npy"]
    dataset = SourceMixtureDatasetConfig.from_yaml(export(recipe, "olmo-core-dataset", tmp_path))
    dataset.validate()
    assert dataset.requested_tokens == 1_000_000_000
    assert dataset.global_batch_size == 4096 and dataset.seed == 7
    assert isinstance(dataset.source_list, SourceMixtureList)
    assert [s.source_name for s in dataset.source_list.sources] == list(WEIGHTS)
    with pytest.raises(NeedsBudget):
        export(_recipe(target_tokens=None), "olmo-core-dataset", tmp_path)


def test_olmo_core_builds_a_recipe_at_its_caps(tmp_path: Path):
    """OLMo-core counts the tokens in the files and refuses a source it cannot serve: a recipe
    whose domains sit exactly at their caps builds, with the weights as token shares."""
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig
    from olmo_core.data.types import NumpyDatasetDType

    global AVAILABLE
    saved = AVAILABLE
    AVAILABLE = {"code": 60_000, "bible": 20_000, "dictionary": 8_000}
    try:
        paths = {}
        for d, n in AVAILABLE.items():
            (tmp_path / d).mkdir()
            np.arange(n, dtype=np.uint32).tofile(tmp_path / d / "part-0.npy")
            paths[d] = str(tmp_path / d)
        budget = 100_000  # dictionary at 4 epochs can give 32,000 tokens: weight <= 0.32
        weights = {"code": 0.5, "bible": 0.18, "dictionary": 0.32}
        recipe = _recipe(weights, target_tokens=budget, paths=paths)
        config = SourceMixtureDatasetConfig.from_yaml(export(recipe, "olmo-core-dataset", tmp_path))
        config.render_tables = False
        config.global_batch_size = 1000
        built = config.build(npdtype=NumpyDatasetDType.uint32.as_np_dtype(), sequence_length=100)
        shares = {s.name: sum(p.tokens for p in s.path_tokens) for s in built.sources}
        total = sum(shares.values())
        for d, w in weights.items():
            assert shares[d] / total == pytest.approx(w, abs=0.01)
        with pytest.raises(AutomixerError, match="epochs"):  # one point past the cap
            _recipe({"code": 0.5, "bible": 0.17, "dictionary": 0.33}, budget, paths)
    finally:
        AVAILABLE = saved


def test_hf_probabilities_give_token_shares(tmp_path: Path):
    """Documents of very different lengths: interleave_datasets with the exported per-document
    probabilities gives token shares within 1 point of the weights."""
    import datasets

    lengths = {"code": 400, "bible": 25, "dictionary": 5}  # words per document
    global DOCS, AVAILABLE
    saved = DOCS, AVAILABLE
    DOCS = {d: 1000.0 for d in lengths}
    AVAILABLE = {d: 1000.0 * n * 50 for d, n in lengths.items()}  # mean tokens/doc = n * 50
    try:
        spec = json.loads(to_hf_datasets(_recipe(target_tokens=None)))
    finally:
        DOCS, AVAILABLE = saved
    assert spec["text_column"] == "text" and spec["stopping_strategy"] == "all_exhausted"
    assert spec["probabilities"] == pytest.approx(
        document_probabilities(list(WEIGHTS.values()), [n * 50 for n in lengths.values()])
    )
    # Each source's text under another column name, renamed to the one text column.
    sets = [
        datasets.Dataset.from_dict({f"body_{d}": [" ".join(["w"] * n)] * 2000}).rename_column(
            f"body_{d}", spec["text_column"]
        )
        for d, n in lengths.items()
    ]
    mixed = datasets.interleave_datasets(
        sets,
        probabilities=spec["probabilities"],
        seed=spec["seed"],
        stopping_strategy=spec["stopping_strategy"],
    ).select(range(40_000))
    words = np.array([len(t.split()) for t in mixed["text"]])
    tokens = {d: words[words == n].sum() for d, n in lengths.items()}
    total = sum(tokens.values())
    for d, w in WEIGHTS.items():
        assert tokens[d] / total == pytest.approx(w, abs=0.01)
    # Token weights given as document probabilities, as before, land far off.
    naive = np.array(list(WEIGHTS.values()))
    doc_share = naive * np.array(list(lengths.values()))
    assert doc_share[0] / doc_share.sum() > 0.9


def test_hf_sources_carry_load_dataset_arguments_and_the_budget():
    recipe = _recipe()
    recipe["mixture"]["code"]["source"] = {
        "hf": {"path": "org/set", "name": "cfg", "split": "train", "revision": "abc123"},
        "text_field": "content",
    }
    spec = json.loads(to_hf_datasets(recipe))
    code = spec["sources"][0]
    assert code["load_dataset"]["revision"] == "abc123" and code["text_field"] == "content"
    assert spec["target_tokens"] == 1_000_000_000
    expected_tokens = sum(
        p * m for p, m in zip(spec["probabilities"], spec["mean_tokens_per_document"], strict=True)
    )
    assert spec["documents"] * expected_tokens == pytest.approx(1e9, rel=1e-3)


def test_infeasible_budget_names_domains_and_the_largest_budget():
    supply = {"a": 1e6, "b": 1e7}
    best = largest_feasible_budget(supply, 4.0)
    assert best == pytest.approx(4 * 1.1e7, rel=1e-6)  # every domain at its cap
    check_budget(supply, 4.0, best * 0.999)
    with pytest.raises(
        AutomixerError, match=r"a holds 1e\+06.*largest feasible budget is 4\.4e\+07"
    ):
        check_budget(supply, 4.0, 1e9)
    # With an upper bound on b, less can be served.
    assert largest_feasible_budget(supply, 4.0, {"b": 0.5}) == pytest.approx(8e6, rel=1e-6)


def test_every_registered_format_is_written(tmp_path: Path):
    for fmt in EXPORT_FORMATS:
        assert export(_recipe(), fmt, tmp_path).is_file()


def test_bad_recipe_files(tmp_path: Path):
    (tmp_path / "r.yaml").write_text("mixture: {}\n")
    with pytest.raises(AutomixerError, match="not an automixer recipe"):
        load_recipe(tmp_path / "r.yaml")
    with pytest.raises(AutomixerError, match="not found"):
        load_recipe(tmp_path / "none.yaml")


def test_mixed_stream_follows_the_recipe(bundle_and_config):
    _, config = bundle_and_config
    recipe = _recipe(target_tokens=None)
    stream = mixed_stream(recipe, {d.name: d for d in config.domains}, seed=0)
    texts = [row["text"] for row, _ in zip(stream, range(50), strict=False)]
    assert len(texts) == 50 and all(isinstance(t, str) and t for t in texts)
