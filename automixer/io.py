"""Small file helpers: atomic writes (a crash never leaves a half-written file) and hashing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, *, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one step, with the
    usual permissions (0666 less the umask; `private`: 0600, for files holding secrets)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o600 if private else 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json_dict(path: str | Path) -> dict[str, Any]:
    """A JSON object from a cache file; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def hash_json(data: Any, length: int = 16) -> str:
    """A stable short hash of JSON-able data (keys sorted)."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit of the checkout that holds automixer (with '+dirty' if it has changes)."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token", "key", "credential")
"""A URL query parameter whose name holds one of these is a secret (?password=, ?sslpassword=,
?api_key=, ?access_token=, ...)."""


def mask_url(url: str) -> str:
    """A database URL with every secret replaced by ***: the password, and query parameters
    that carry one (`SECRET_KEYS`), for logs, messages and saved configs."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
        query = {
            k: ("***" if any(s in k.lower() for s in SECRET_KEYS) else v)
            for k, v in u.query.items()
        }
        return u.set(query=query).render_as_string(hide_password=True)
    except Exception:  # not a database URL; say nothing of it
        return "<storage>"


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's info logging and experimental-feature warnings off for a block, then back."""
    import warnings

    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(before)
