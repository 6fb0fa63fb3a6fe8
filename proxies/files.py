"""Writing training state to disk without ever leaving a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


class ProxyFileError(ValueError):
    """A proxy file that is missing, unreadable or not what it claims to be."""

    def __init__(self, message: str, *, file: str | Path) -> None:
        super().__init__(f"{file}: {message}")
        self.message = message
        self.file = str(file)


def atomic_save(path: str | Path, payload: Any) -> None:
    """`torch.save` to a temporary file beside `path`, then rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
