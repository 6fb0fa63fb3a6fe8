from __future__ import annotations

from pathlib import Path

import pytest

from automixer.errors import AutomixerError
from automixer.recipes import (
    build_recipe,
    export,
    load_recipe,
    mixed_stream,
    weights_from_export,
)
from automixer.registry import EXPORT_FORMATS

WEIGHTS = {"code": 0.5, "bible": 0.3, "dictionary": 0.2}
DOMAINS = {d: {"source": f"builtin:{d}", "licence": "x", "tokens_train": 1e6} for d in WEIGHTS}


def _recipe():
    return build_recipe(
        weights=WEIGHTS,
        target_tokens=1e9,
        domains=DOMAINS,
        tokenizer={"hash": "abc", "vocab_size": 512},
        solution={
            "objective": {"predicted": 1.2, "lo": 0.9, "hi": 1.5},
            "predicted": {"ability:code:bpb": {"mean": 2.0, "lo": 1.9, "hi": 2.1}},
        },
        constraints={"max_epochs": 4.0},
        objective={"code": 1.0},
        cv_summary={"ability:code:bpb": {"model": "gp", "spearman": 0.9}},
        provenance={"config_hash": "h", "commit": "c", "automixer": "0.1.0", "sweep": "s"},
    )


def test_recipe_contents():
    r = _recipe()
    assert r["mixture"]["code"]["tokens"] == 500_000_000
    assert r["mixture"]["code"]["epochs"] == pytest.approx(500.0)
    assert r["config_hash"] == "h" and r["commit"] == "c"
    assert r["predicted_objective"]["lo"] == 0.9


@pytest.mark.parametrize("fmt", sorted(EXPORT_FORMATS))
def test_every_format_round_trips(tmp_path: Path, fmt: str):
    path = export(_recipe(), fmt, tmp_path)
    back = weights_from_export(path.read_text(), fmt)
    assert back == pytest.approx(WEIGHTS)
    if fmt in ("yaml", "json"):
        assert load_recipe(path) == _recipe()


def test_bad_recipe_files(tmp_path: Path):
    (tmp_path / "r.yaml").write_text("mixture: {}\n")
    with pytest.raises(AutomixerError, match="not an automixer recipe"):
        load_recipe(tmp_path / "r.yaml")
    with pytest.raises(AutomixerError, match="not found"):
        load_recipe(tmp_path / "none.yaml")
    with pytest.raises(AutomixerError, match="unknown format"):
        export(_recipe(), "parquet", tmp_path)


def test_mixed_stream_follows_the_recipe():
    from automixer.config import DomainSection

    sections = {d: DomainSection(name=d, builtin=d, max_documents=400) for d in WEIGHTS}
    stream = mixed_stream(_recipe(), sections, seed=0)
    texts = [row["text"] for _, row in zip(range(300), stream, strict=False)]
    assert len(texts) == 300
    n_code = sum(t.lstrip().startswith(('"""', "#", "import", "from", 'r"""')) for t in texts)
    assert n_code > 60  # about half are code documents
