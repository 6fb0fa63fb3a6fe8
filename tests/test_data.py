from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from automixer.config import Config
from automixer.data.builtin import BUILTINS, clean_docstring
from automixer.data.pipeline import prepare_data
from automixer.data.sources import iter_raw_documents
from automixer.data.splits import ContaminationIndex, split_documents
from automixer.errors import DataError
from tests.conftest import small_config


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_corpora_yield_real_text(name: str):
    from automixer.config import DomainSection
    from automixer.data.sources import limit_documents

    dom = DomainSection(name=name, builtin=name, max_documents=3)
    docs = list(limit_documents(iter_raw_documents(dom, 0), dom, 64))
    assert len(docs) == 3
    assert all(len(d) >= 64 for d in docs)
    assert BUILTINS[name].licence


def test_docstring_cleaning_removes_doctests():
    doc = "Integrate f.\n\n>>> integrate(x, x)\nx**2/2\n\nThe result is exact.\n"
    cleaned = clean_docstring(doc)
    assert ">>>" not in cleaned and "x**2/2" not in cleaned
    assert "The result is exact." in cleaned
    numpy_style = "Sum.\n\nParameters\n----------\na : int\n\nExamples\n--------\n>>> s(1)\n"
    assert "Examples" not in clean_docstring(numpy_style)


def test_split_is_seeded_and_deduplicated():
    docs = [f"document number {i} " * 5 for i in range(400)]
    a = split_documents(docs + docs[:50], seed=1, val_fraction=0.1, dedup=True)
    b = split_documents(docs, seed=1, val_fraction=0.1, dedup=True)
    assert a.train == b.train and a.val == b.val
    assert a.duplicates == 50
    assert 20 <= len(a.val) <= 60
    assert not set(a.train) & set(a.val)
    c = split_documents(docs, seed=2, val_fraction=0.1, dedup=True)
    assert c.val != a.val


def test_contamination_check_flags_overlap():
    item = "Which technology was developed most recently? The cellular telephone was developed"
    index = ContaminationIndex([item], n=8)
    clean = "The Lord said unto Moses, go down and speak unto the people of the land."
    dirty = "Intro text. " + item + " and more text follows here."
    assert list(index.flag([clean, dirty])) == [False, True]
    assert list(index.contaminated_items([dirty])) == [True]
    assert list(index.contaminated_items([clean])) == [False]


def test_short_items_are_matched_whole():
    """OpenBookQA-sized items (fewer words than the n-gram) used never to match anything."""
    from automixer.evals.suites import load_suite

    short = [
        t for t in load_suite("openbookqa") if 6 <= len((t.context + t.gold_text()).split()) < 13
    ]
    assert short, "OpenBookQA has items under 13 words"
    item = short[0].context + short[0].gold_text()
    index = ContaminationIndex([item, "too few words here"], n=13)
    doc = "Some preface. " + item + " And a tail that goes on."
    assert index.flag([doc, "Nothing of the sort is said here at all."]).tolist() == [True, False]
    assert index.contaminated_items([doc]).tolist() == [True, False]
    assert index.unchecked == 1


def _write_sources(tmp: Path) -> None:
    rows = [{"body": f"record {i}: " + "lorem ipsum dolor sit amet " * 8} for i in range(60)]
    (tmp / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pl.DataFrame({"content": [r["body"].replace("record", "row") for r in rows]}).write_parquet(
        tmp / "b.parquet"
    )
    for i in range(5):
        (tmp / f"t{i}.txt").write_text(f"plain text file {i}. " + "the quick brown fox " * 20)


def _save_hf(folder: Path) -> None:
    """A Hugging Face dataset of 30 documents written with `save_to_disk`."""
    import datasets

    datasets.Dataset.from_dict({"text": [f"saved doc {i} " * 20 for i in range(30)]}).save_to_disk(
        str(folder)
    )


def test_local_and_hf_sources(tmp_path: Path):
    _write_sources(tmp_path)
    _save_hf(tmp_path / "saved")
    cfg = small_config(
        tmp_path,
        domains=[
            {"name": "jl", "files": [str(tmp_path / "*.jsonl")], "text_field": "body"},
            {"name": "pq", "files": [str(tmp_path / "*.parquet")], "text_field": "content"},
            {"name": "tx", "files": [str(tmp_path / "t*.txt")]},
            {"name": "hfdisk", "hf": {"path": str(tmp_path / "saved")}},
            {
                "name": "hfjson",
                "hf": {"path": "json", "data_files": [str(tmp_path / "a.jsonl")]},
                "text_field": "body",
            },
        ],
    )
    cfg["tokenizer"] = {"vocab_size": 300, "sample_bytes_per_domain": 20_000}
    cfg["data"] = {"dedup": False}
    bundle = prepare_data(Config.model_validate(cfg), progress=False)
    counts = {d: v.train.documents + v.val.documents for d, v in bundle.domains.items()}
    assert counts == {"jl": 60, "pq": 60, "tx": 5, "hfdisk": 30, "hfjson": 60}


def _prepare_error(tmp_path: Path, domains: list[dict], **kw: object) -> DataError:
    cfg = small_config(tmp_path, domains=domains, **kw)
    with pytest.raises(DataError) as info:
        prepare_data(Config.model_validate(cfg), progress=False)
    return info.value


def test_glob_that_matches_nothing(tmp_path: Path):
    e = _prepare_error(tmp_path, [{"name": "x", "files": [str(tmp_path / "none*.jsonl")]}])
    assert e.field == "domains[0].files" and "matches no file" in e.message


def test_unreadable_parquet(tmp_path: Path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    e = _prepare_error(tmp_path, [{"name": "x", "files": [str(tmp_path / "bad.parquet")]}])
    assert "unreadable parquet" in e.message and e.file and e.file.endswith("bad.parquet")


def test_domain_empty_after_filtering(tmp_path: Path):
    (tmp_path / "short.jsonl").write_text('{"text": "tiny"}\n{"text": "small"}\n')
    e = _prepare_error(
        tmp_path,
        [
            {"name": "ok", "builtin": "bible", "max_bytes": 50_000},
            {"name": "short", "files": [str(tmp_path / "short.jsonl")]},
        ],
    )
    assert e.field == "domains[1]" and "no training documents" in e.message


def test_cross_domain_duplicates_removed(tmp_path: Path):
    _write_sources(tmp_path)
    cfg = small_config(
        tmp_path,
        domains=[
            {"name": "first", "files": [str(tmp_path / "a.jsonl")], "text_field": "body"},
            {
                "name": "again",
                "files": [str(tmp_path / "a.jsonl"), str(tmp_path / "t*.txt")],
                "text_field": "body",
                "format": "auto",
            },
        ],
    )
    cfg["tokenizer"] = {"vocab_size": 300, "sample_bytes_per_domain": 20_000}
    bundle = prepare_data(Config.model_validate(cfg), progress=False)
    again = bundle.domains["again"]
    assert again.duplicates == 60
    assert again.train.documents + again.val.documents == 5


def test_decontamination_drops_training_docs(tmp_path: Path):
    cfg = Config.model_validate(small_config(tmp_path))
    clean = prepare_data(cfg, progress=False)
    # Real verses of the bible slice, used as "evaluation items": they must leave training.
    from automixer.config import DomainSection

    chapters = list(iter_raw_documents(DomainSection(name="b", builtin="bible"), 0))[:20]
    verses = [line.split(" ", 1)[1] for c in chapters for line in c.splitlines()[2:6]]
    verses = [v for v in verses if len(v.split()) >= 16]
    dirty = prepare_data(cfg, eval_texts=verses, progress=False)
    assert dirty.domains["bible"].contaminated >= 1
    assert dirty.domains["bible"].contamination_rate > 0
    assert dirty.domains["code"].contaminated == 0
    assert dirty.domains["bible"].train.documents < clean.domains["bible"].train.documents
    text = dirty.tokenizer.decode(list(map(int, dirty.domains["bible"].train.open())))
    assert not any(v in text for v in verses)


def test_items_found_in_training_are_reported_by_key(tmp_path: Path):
    from automixer.config import DomainSection

    cfg = Config.model_validate(small_config(tmp_path, data={"decontaminate": False}))
    chapters = list(iter_raw_documents(DomainSection(name="b", builtin="bible"), 0))[:3]
    verse = chapters[1].splitlines()[3].split(" ", 1)[1]
    assert len(verse.split()) >= 13
    items = {
        "quiz:1": "Q: what came next? " + verse,
        "quiz:2": "an item that is nowhere at all",
        "quiz:3": "In the beginning",  # 3 words: nothing can check it
    }
    bundle = prepare_data(cfg, eval_texts=items, progress=False)
    assert bundle.contaminated_items == {"quiz:1": ["bible"]}
    assert bundle.manifest()["unchecked_items"] == ["quiz:3"]
    assert bundle.domains["bible"].contaminated == 0  # reported, documents kept (decontaminate off)
    assert bundle.manifest()["contaminated_items"] == {"quiz:1": ["bible"]}
    assert bundle.domains["bible"].row()["eval_items_overlapping"] == 1


def test_shards_and_bytes_per_token(bundle_and_config):
    bundle, _ = bundle_and_config
    for d in bundle.domains.values():
        arr = d.train.open()
        assert arr.dtype == np.uint16 and len(arr) == d.train.tokens > 1000
        assert 1.5 < d.bytes_per_token < 8
    natural = bundle.natural_weights()
    assert abs(sum(natural.values()) - 1) < 1e-12
    decoded = bundle.tokenizer.decode(list(map(int, bundle.domains["code"].train.open()[:200])))
    assert len(decoded) > 1.5 * 200  # real text: several bytes per token


def test_cache_is_reused(bundle_and_config, monkeypatch):
    bundle, config = bundle_and_config
    from automixer.data import documents, shards, tokenizer

    mtimes = {d: v.train.path.stat().st_mtime_ns for d, v in bundle.domains.items()}

    def boom(*a, **k):
        raise AssertionError("rebuilt a cached piece")

    monkeypatch.setattr(tokenizer, "train_bpe", boom)
    monkeypatch.setattr(shards.Tokenizer, "encode_batch_fast", boom, raising=False)
    monkeypatch.setattr(documents, "iter_raw_documents", boom)
    again = prepare_data(config, progress=False)
    assert again.tokenizer_hash == bundle.tokenizer_hash
    assert {d: v.train.path.stat().st_mtime_ns for d, v in again.domains.items()} == mtimes


def test_adding_a_domain_builds_only_that_domain(tmp_path: Path):
    cfg = small_config(
        tmp_path, domains=[{"name": "bible", "builtin": "bible", "max_bytes": 80_000}]
    )
    cfg["tokenizer"] = {"path": None, "vocab_size": 300, "sample_bytes_per_domain": 10_000}
    first = prepare_data(Config.model_validate(cfg), progress=False)
    tok = first.tokenizer_path
    cfg["tokenizer"] = {"path": str(tok)}
    fixed = prepare_data(Config.model_validate(cfg), progress=False)
    before = fixed.domains["bible"].train.path.stat().st_mtime_ns
    cfg["domains"].append({"name": "code", "builtin": "code", "max_bytes": 80_000})
    grown = prepare_data(Config.model_validate(cfg), progress=False)
    assert grown.domains["bible"].train.path.stat().st_mtime_ns == before
    assert grown.domains["code"].train.tokens > 0


def test_source_size_counts_past_limits_for_local_sources_only(tmp_path: Path):
    """A local source is counted whole though max_documents stops what the proxies read; a
    Hub dataset is not read past its limit, so only what was read counts (and it says so)."""
    from automixer.budget import Supply

    _write_sources(tmp_path)
    _save_hf(tmp_path / "saved")
    cfg = small_config(
        tmp_path,
        domains=[
            {"name": "jl", "files": [str(tmp_path / "*.jsonl")], "text_field": "body",
             "max_documents": 10},
            {"name": "hf", "hf": {"path": str(tmp_path / "saved")}, "max_documents": 10},
        ],
    )  # fmt: skip
    cfg["tokenizer"] = {"vocab_size": 300, "sample_bytes_per_domain": 20_000}
    config = Config.model_validate(cfg)
    bundle = prepare_data(config, progress=False)
    rows = bundle.manifest()["domains"]
    assert rows["jl"]["source_documents"] == 60 and rows["jl"]["source_complete"]
    assert rows["hf"]["source_documents"] == 10 and not rows["hf"]["source_complete"]
    supply = Supply.from_manifest(bundle.manifest(), config)
    assert supply.sampled() == ["hf"]
    assert supply.domains["jl"].tokens > 5 * (rows["jl"]["tokens_train"] + rows["jl"]["tokens_val"])
