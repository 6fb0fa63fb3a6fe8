"""Shared fixtures: small real corpora (slices of the built-in ones) and a config that uses them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
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
        # one worker in this process: `auto` would measure the machine first (test_parallel)
        "sweep": {"workers": 1},
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


@pytest.fixture
def postgres_url() -> Iterator[str]:
    url = os.environ.get("AUTOMIXER_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("AUTOMIXER_REQUIRE_POSTGRES"):
            pytest.fail("AUTOMIXER_REQUIRE_POSTGRES is set but AUTOMIXER_TEST_POSTGRES_URL is not")
        pytest.skip("no PostgreSQL: set AUTOMIXER_TEST_POSTGRES_URL (.ci/run starts one)")
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"automixer_test_{uuid.uuid4().hex[:10]}"
    admin = dict(
        dbname=base.database or "postgres",
        user=base.username,
        password=base.password,
        host=base.host,
        port=base.port or 5432,
        autocommit=True,
    )
    with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]
