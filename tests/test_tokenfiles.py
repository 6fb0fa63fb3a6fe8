"""Token-file sources: Megatron indexed datasets and OLMo-core numpy files written by the
frameworks' own writers, read into the proxies' shards token for token, named by the recipes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from automixer.cli import app
from automixer.config import Config
from automixer.data.builtin import BUILTINS
from automixer.data.pipeline import prepare_data
from automixer.data.tokenizer import EOS, train_bpe
from automixer.errors import ConfigError, DataError
from automixer.recipes import export, load_recipe
from tests.conftest import small_config, write_config


def _tokenizer(tmp_path: Path) -> tuple[Path, object]:
    texts = [d for _, d in zip(range(300), BUILTINS["bible"].read(), strict=False)]
    tok = train_bpe(texts, 600, 2)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path, tok


def _docs(tok: object, corpus: str, n: int) -> list[np.ndarray]:
    texts = [d for d in (x.strip() for x in BUILTINS[corpus].read()) if len(d) >= 200][:n]
    return [np.array(tok.encode(t).ids, dtype=np.uint16) for t in texts]  # type: ignore[attr-defined]


def _megatron(prefix: Path, docs: list[np.ndarray]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # megatron-core warns that Apex is not installed
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    for d in docs:
        builder.add_document(d, [len(d)])  # an array: its tensor path warns under numpy 2
    builder.finalize(f"{prefix}.idx")
    return prefix


def _olmo(path: Path, docs: list[np.ndarray], eos: int) -> Path:
    from olmo_core.data.utils import write_array_to_disk

    flat = np.concatenate([np.append(d, eos) for d in docs]).astype(np.uint16)
    write_array_to_disk(flat, path)
    return path


def _config(tmp_path: Path) -> tuple[dict, list[np.ndarray], list[np.ndarray], int]:
    tok_path, tok = _tokenizer(tmp_path)
    eos = tok.token_to_id(EOS)  # type: ignore[attr-defined]
    mega = _docs(tok, "bible", 120)
    olmo = _docs(tok, "wiki", 40)
    _megatron(tmp_path / "mega", mega)
    _olmo(tmp_path / "olmo.npy", olmo, eos)
    cfg = small_config(tmp_path)
    cfg["domains"] = [
        {"name": "bible", "tokens": {"format": "megatron", "paths": [str(tmp_path / "mega")]}},
        {
            "name": "wiki",
            "tokens": {"format": "numpy", "paths": [str(tmp_path / "*.npy")], "dtype": "uint16"},
        },
        {"name": "code", "builtin": "code", "max_documents": 40},
    ]
    cfg["tokenizer"] = {"path": str(tok_path)}
    cfg["data"] = {"decontaminate": False}
    return cfg, mega, olmo, eos


def _sorted_docs(docs: list[np.ndarray]) -> list[tuple[int, ...]]:
    return sorted(tuple(int(t) for t in d) for d in docs)


def test_the_loaded_tokens_are_the_files_tokens(tmp_path: Path):
    cfg, mega, olmo, eos = _config(tmp_path)
    bundle = prepare_data(Config.model_validate(cfg), progress=False)
    # numpy: the shards hold the files' documents, each ended by its end-of-text token
    wiki = np.concatenate([bundle.domains["wiki"].train.open(), bundle.domains["wiki"].val.open()])
    cut = np.flatnonzero(wiki == eos) + 1
    got = [d for d in np.split(wiki, cut) if len(d)]
    assert _sorted_docs(got) == _sorted_docs([np.append(d, eos) for d in olmo])
    # megatron: the documents run together (no separator in the files), token for token
    bible = bundle.domains["bible"]
    both = np.concatenate([bible.train.open(), bible.val.open()])
    assert len(both) == sum(len(d) for d in mega)
    assert np.array_equal(np.sort(both), np.sort(np.concatenate(mega)))
    assert bible.train.documents + bible.val.documents == len(mega)
    rows = bundle.manifest()["domains"]
    assert rows["bible"]["source"].startswith("tokens:megatron")


def test_bad_token_files_are_one_line(tmp_path: Path):
    cfg, *_ = _config(tmp_path)
    wrong = dict(cfg["domains"][1])
    wrong["tokens"] = {**wrong["tokens"], "dtype": "uint32"}  # 2-byte tokens read as 4
    npy = tmp_path / "olmo.npy"
    data = npy.read_bytes()
    npy.write_bytes(data + b"\0" * (4 - len(data) % 4 if len(data) % 4 else 0))
    with pytest.raises(DataError, match="outside the tokenizer's vocabulary") as info:
        prepare_data(Config.model_validate({**cfg, "domains": [wrong]}), progress=False)
    assert "olmo.npy" in str(info.value) and "tokens.dtype" in str(info.value)
    npy.write_bytes(data + b"\0")  # a torn file: not whole tokens of any width
    with pytest.raises(DataError, match="not a whole number of uint32") as info:
        prepare_data(Config.model_validate({**cfg, "domains": [wrong]}), progress=False)
    assert "\n" not in str(info.value)
    mega = dict(cfg["domains"][0])
    mega["tokens"] = {**mega["tokens"], "dtype": "uint32"}
    with pytest.raises(DataError, match="declares uint16"):
        prepare_data(Config.model_validate({**cfg, "domains": [mega]}), progress=False)
    (tmp_path / "mega.idx").write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match="not a Megatron indexed dataset"):
        prepare_data(Config.model_validate({**cfg, "domains": [cfg["domains"][0]]}), progress=False)
    no_tok = {**cfg, "tokenizer": {}}
    from automixer.config import parse_config

    with pytest.raises(ConfigError, match="tokenizer that made them"):
        parse_config(yaml.safe_dump(no_tok), "c.yaml")


@pytest.mark.slow
def test_a_sweep_on_token_files_runs_and_its_recipes_name_them(tmp_path: Path):
    cfg, *_ = _config(tmp_path)
    cfg["proxy"] = {"preset": "tiny", "tokens": 4096, "seq_len": 32, "batch_size": 8}
    cfg["sweep"] |= {"n_runs": 8, "replicates": 1, "heartbeat_s": 1, "min_distance": 0.01}
    cfg["evals"] = {"suites": ["arc_easy", "humaneval"], "n_per_suite": 4}
    cfg["surrogate"] = {"cv_folds": 3, "cv_repeats": 1}
    cfg["solve"] = {"objective": {"stem": 1.0, "code": 1.0}}
    cfg["export"] = {"formats": ["yaml", "megatron", "olmo-core"]}
    path = write_config(tmp_path / "run.yaml", cfg)
    result = CliRunner().invoke(app, ["run", str(path), "-q"])
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs").iterdir())
    # Megatron cannot read the numpy files, nor OLMo-core the Megatron ones: each format is
    # skipped with its reason, and asked for by name it is one line
    assert "does not read numpy token files (domain 'wiki')" in result.output
    asked = CliRunner().invoke(app, ["export", str(run), "--format", "megatron"])
    assert asked.exit_code != 0 and "does not read numpy token files" in asked.output
    recipe = load_recipe(run / "recipes" / "recipe.yaml")
    files = {
        d: [f["path"] for f in v["source"]["tokens"]["files"]]
        for d, v in recipe["mixture"].items()
        if "tokens" in v["source"]
    }
    assert files == {
        "bible": [str((tmp_path / "mega").resolve())],
        "wiki": [str((tmp_path / "olmo.npy").resolve())],
    }

    def only(fmt_domains: list[str]) -> dict:
        mix = {d: recipe["mixture"][d] for d in fmt_domains}
        total = sum(v["weight"] for v in mix.values())
        return {
            **recipe,
            "mixture": {d: {**v, "weight": v["weight"] / total} for d, v in mix.items()},
        }

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.utils import get_blend_from_list
    from olmo_core.data.source_mixture import SourceMixtureList

    blend = export(only(["bible", "code"]), "megatron", tmp_path).read_text().split()
    prefixes, _ = get_blend_from_list(blend)
    assert str((tmp_path / "mega").resolve()) in prefixes
    sources = SourceMixtureList.from_yaml(export(only(["wiki"]), "olmo-core", tmp_path))
    assert sources.sources[0].paths == [str((tmp_path / "olmo.npy").resolve())]
