"""Shared fixtures: small real corpora (slices of the built-in ones) and a config that uses them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMALL_DOMAINS = [
    {"name": "code", "builtin": "code", "max_bytes": 300_000},
    {"name": "bible", "builtin": "bible", "max_bytes": 300_000},
    {"name": "dictionary", "builtin": "dictionary", "max_bytes": 300_000},
]


def small_config(tmp: Path, **overrides: object) -> dict:
    """A config dict over slices of the built-in corpora; writes nothing."""
    cfg: dict = {
        "run": {
            "name": "t",
            "out_dir": str(tmp / "runs"),
            "cache_dir": str(tmp / "cache"),
            "seed": 0,
        },
        "domains": [dict(d) for d in SMALL_DOMAINS],
        "tokenizer": {"vocab_size": 512, "sample_bytes_per_domain": 100_000},
        "proxy": {"tokens": 65_536, "seq_len": 64, "batch_size": 8},
    }
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def bundle_and_config(tmp_path_factory: pytest.TempPathFactory):
    """Data prepared once per test session from the small config."""
    from automixer.config import Config
    from automixer.data.pipeline import prepare_data

    tmp = tmp_path_factory.mktemp("data")
    config = Config.model_validate(small_config(tmp))
    return prepare_data(config, progress=False), config
