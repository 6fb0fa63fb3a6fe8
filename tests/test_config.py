from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from automixer.config import Config, config_hash, dump_config, load_config, parse_config
from automixer.errors import ConfigError
from tests.conftest import small_config, write_config


def _err(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="c.yaml")
    return info.value


BASE = """\
domains:
  - name: code
    builtin: code
  - name: bible
    builtin: bible
"""


def test_minimal_config_gets_defaults():
    cfg = parse_config(BASE)
    assert cfg.domain_names == ["code", "bible"]
    assert cfg.sweep.n_runs == 60 and cfg.sweep.replicates == 3
    assert set(cfg.solve.objective) == {"code", "math", "stem", "commonsense"}


def test_every_field_has_a_docstring():
    def walk(model: type) -> None:
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no docstring"
            ann = info.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(Config)


def test_malformed_yaml_names_line():
    e = _err(BASE + "  - name: [unclosed\n")
    assert e.file == "c.yaml" and e.line == 7
    assert "malformed YAML" in e.message and "at line 6" in e.message


def test_unknown_key_suggests_nearest():
    e = _err(BASE + "tokenizer:\n  vocab_sise: 1000\n")
    assert e.field == "tokenizer.vocab_sise"
    assert "did you mean 'vocab_size'" in e.message
    assert e.line == 7


def test_unknown_key_in_list_item():
    e = _err("domains:\n  - name: code\n    bultin: code\n")
    assert e.field == "domains[0].bultin" and "did you mean 'builtin'" in e.message
    assert e.line == 3


@pytest.mark.parametrize(
    "weights, needle, field",
    [
        (
            "{code: 0.5, cod: 0.5}",
            "unknown domain 'cod' (did you mean 'code'?)",
            "sweep.anchors.a.cod",
        ),
        ("{code: -0.5, bible: 1.5}", "must be >= 0", "sweep.anchors.a.code"),
        ("{code: .nan, bible: 1.0}", "must be finite", "sweep.anchors.a.code"),
        ("{code: 0.5, bible: 0.4}", "off from 1 by -0.1", "sweep.anchors.a"),
    ],
)
def test_bad_weight_tables(weights: str, needle: str, field: str):
    e = _err(BASE + f"sweep:\n  anchors:\n    a: {weights}\n")
    assert needle in e.message
    assert e.field == field
    assert e.line == 8


def test_vocabulary_too_small():
    e = _err(BASE + "tokenizer:\n  vocab_size: 100\n")
    assert e.field == "tokenizer.vocab_size" and "too small" in e.message


def test_duplicate_key_and_domain():
    assert "appears twice" in _err(BASE + "run:\n  seed: 1\n  seed: 2\n").message
    e = _err(BASE + "  - name: code\n    builtin: code\n")
    assert "defined twice" in e.message and e.field == "domains[2].name"


def test_one_source_per_domain():
    e = _err("domains:\n  - name: x\n    builtin: code\n    files: [a.txt]\n")
    assert "exactly one source" in e.message and e.field == "domains[0]"


def test_bounds_checked():
    e = _err(BASE + "solve:\n  bounds:\n    cod: [0, 0.5]\n")
    assert "unknown domain" in e.message
    e = _err(BASE + "solve:\n  bounds:\n    code: [0.7, 1]\n    bible: [0.5, 1]\n")
    assert "lower bounds sum to 1.2" in e.message


def test_missing_file_and_empty(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "e.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(tmp_path / "e.yaml")


def test_resolved_yaml_round_trips_and_hash(tmp_path: Path):
    cfg = Config.model_validate(small_config(tmp_path))
    again = parse_config(dump_config(cfg))
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    moved = small_config(tmp_path / "elsewhere")
    assert config_hash(Config.model_validate(moved)) == config_hash(cfg)
    changed = small_config(tmp_path)
    changed["run"]["seed"] = 1
    assert config_hash(Config.model_validate(changed)) != config_hash(cfg)


def test_quickstart_config_loads():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "quickstart.yaml")
    assert len(cfg.domains) >= 5


def test_written_config_is_plain_yaml(tmp_path: Path):
    p = write_config(tmp_path / "c.yaml", small_config(tmp_path))
    assert yaml.safe_load(p.read_text())["domains"][0]["name"] == "code"
