"""A trained proxy as one self-contained file: its weights, architecture, tokenizer and provenance.

The sweep writes one per finished run (`<run dir>/proxies/<run_id>.pt`) and `automixer validate`
one per model it trains; `automixer eval FILE` scores any of them. The file holds only tensors,
strings and numbers, so it loads with `torch.load(weights_only=True)`: opening a proxy file runs
no code from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from proxies.files import ProxyFileError, atomic_save
from proxies.model import PackedLM
from proxies.presets import ModelConfig

FORMAT = "automixer-proxy"
VERSION = 1


def save_proxy(
    path: Path,
    *,
    model_config: ModelConfig,
    state: Mapping[str, torch.Tensor],
    tokenizer: Tokenizer,
    config_yaml: str,
    meta: Mapping[str, Any],
) -> Path:
    """Write one proxy (its `state` without the pack axis, as `ProxyResult.state` holds it)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model_config.to_dict(),
        "state": {k: v.detach().cpu().contiguous() for k, v in state.items()},
        "tokenizer": tokenizer.to_str(),
        "config": config_yaml,
        "meta": dict(meta),
    }
    atomic_save(path, payload)
    return path


def looks_whole(path: str | Path) -> bool:
    """Whether a proxy file is whole, without loading it: torch's zip archive has its central
    directory at the end, which a truncated file lacks."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("data.pkl") for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def read_proxy(path: str | Path) -> dict[str, Any]:
    """The payload of a proxy file, checked; a clear error for anything else."""
    p = Path(path)
    if not p.is_file():
        raise ProxyFileError("proxy file not found", file=p)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, another format, a pickle with code in it
        raise ProxyFileError(f"not a readable proxy file ({type(e).__name__})", file=p) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ProxyFileError(
            "not an automixer proxy file (the sweep writes them under <run dir>/proxies/)",
            file=p,
        )
    if payload.get("version") != VERSION:
        raise ProxyFileError(
            f"proxy file version {payload.get('version')} (want {VERSION})", file=p
        )
    return payload


def load_proxy(path: str | Path) -> tuple[PackedLM, Tokenizer, dict[str, Any]]:
    """A pack of one holding the proxy, its tokenizer, and the rest of the payload."""
    payload = read_proxy(path)
    cfg = ModelConfig(**payload["model_config"])
    model = PackedLM(cfg, [0])
    try:
        model.load_state_dict({k: v.unsqueeze(0) for k, v in payload["state"].items()})
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ProxyFileError(f"weights do not fit the architecture: {first}", file=path) from None
    model.eval()
    return model, Tokenizer.from_str(payload["tokenizer"]), payload
