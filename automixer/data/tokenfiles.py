"""Token-file sources: the full run's own tokens, read with the frameworks' own readers.

- Megatron-LM indexed datasets (`prefix.bin` + `prefix.idx`), read with megatron-core's
  `IndexedDataset`: its `.idx` header declares the dtype and the document boundaries.
- OLMo-core numpy token files (`*.npy`, a headerless memmap of one dtype), documents found with
  OLMo-core's `iter_document_indices` (each document ends with the end-of-text token).

A document's tokens go into the proxies' shards as they are (no re-tokenisation); its text
(the tokenizer's decoding) serves only the contamination check, the near-duplicate audit and the
byte counts of bits per byte.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from automixer.config import DomainSection
from automixer.errors import DataError


def _field(index: int, name: str) -> str:
    return f"domains[{index}].tokens.{name}"


def token_files(domain: DomainSection, index: int) -> list[Path]:
    """The files a token domain names: `.npy` files, or Megatron prefixes (the path without
    `.bin`/`.idx`), each checked to exist (a prefix needs both halves)."""
    assert domain.tokens is not None
    out: list[Path] = []
    for pattern in domain.tokens.paths:
        expanded = os.path.expanduser(pattern)
        if domain.tokens.format == "megatron":
            found = sorted(glob.glob(expanded)) or sorted(glob.glob(expanded + ".bin"))
            prefixes = sorted({str(Path(p).with_suffix("")) for p in found})
        else:
            prefixes = [p for p in sorted(glob.glob(expanded)) if Path(p).is_file()]
        if not prefixes:
            raise DataError(f"'{pattern}' matches no file", field=_field(index, "paths"))
        for p in prefixes:
            path = Path(p)
            if domain.tokens.format == "megatron":
                for half in (".bin", ".idx"):
                    if not path.with_suffix(half).is_file():
                        raise DataError(
                            f"a Megatron indexed dataset needs {path.name}{half} beside the "
                            f"other half",
                            file=path.with_suffix(half),
                            field=_field(index, "paths"),
                        )
            out.append(path)
    return out


def _megatron_documents(path: Path, domain: DomainSection, index: int) -> Iterator[np.ndarray]:
    from megatron.core.datasets.indexed_dataset import _INDEX_HEADER, IndexedDataset

    assert domain.tokens is not None
    with path.with_suffix(".idx").open("rb") as fh:
        head = fh.read(len(_INDEX_HEADER))
    if head != _INDEX_HEADER:  # checked first: a dataset that fails to open warns when collected
        raise DataError(
            "not a Megatron indexed dataset (its .idx header does not match)",
            file=path.with_suffix(".idx"),
            field=_field(index, "paths"),
        )
    try:
        ds = IndexedDataset(str(path), mmap=True)
    except Exception as e:  # a damaged or foreign .idx: its header does not parse
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(
            f"not a Megatron indexed dataset ({first})",
            file=path.with_suffix(".idx"),
            field=_field(index, "paths"),
        ) from None
    declared = np.dtype(ds.index.dtype).name
    if domain.tokens.dtype is not None and declared != domain.tokens.dtype:
        raise DataError(
            f"the .idx header declares {declared}, the config says {domain.tokens.dtype}",
            file=path.with_suffix(".idx"),
            field=_field(index, "dtype"),
        )
    itemsize = np.dtype(ds.index.dtype).itemsize
    size = path.with_suffix(".bin").stat().st_size
    if size != int(np.sum(ds.index.sequence_lengths, dtype=np.int64)) * itemsize:
        raise DataError(
            f"the .bin holds {size} bytes, the .idx describes "
            f"{int(np.sum(ds.index.sequence_lengths, dtype=np.int64)) * itemsize}",
            file=path.with_suffix(".bin"),
            field=_field(index, "paths"),
        )
    bounds = ds.index.document_indices
    for d in range(len(bounds) - 1):
        seqs = [np.asarray(ds[i]) for i in range(int(bounds[d]), int(bounds[d + 1]))]
        if seqs:
            yield np.concatenate(seqs)


def _numpy_documents(
    path: Path, domain: DomainSection, index: int, eos: int
) -> Iterator[np.ndarray]:
    from olmo_core.data.utils import iter_document_indices

    assert domain.tokens is not None and domain.tokens.dtype is not None
    dtype = np.dtype(domain.tokens.dtype)
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise DataError(
            f"{size} bytes is not a whole number of {dtype.name} tokens (the dtype does not match)",
            file=path,
            field=_field(index, "dtype"),
        )
    if size == 0:
        return
    arr = np.memmap(path, dtype=dtype, mode="r")
    if int(arr[-1]) != eos:
        raise DataError(
            f"the last token is {int(arr[-1])}, not the end-of-text {eos}: a truncated file, "
            "or another dtype or end-of-text id",
            file=path,
            field=_field(index, "eos_token_id"),
        )
    for start, end in iter_document_indices(
        path, eos_token_id=eos, dtype=dtype, use_array_if_local=True
    ):
        yield np.asarray(arr[start:end])


def iter_token_documents(
    domain: DomainSection, index: int, eos: int, vocab_size: int
) -> Iterator[np.ndarray]:
    """Each document's tokens, file by file; a token id outside the tokenizer's vocabulary (a
    dtype or tokenizer that does not match the files) is one line naming the file."""
    assert domain.tokens is not None
    fmt = domain.tokens.format
    eos_id = domain.tokens.eos_token_id if domain.tokens.eos_token_id is not None else eos
    for path in token_files(domain, index):
        docs = (
            _megatron_documents(path, domain, index)
            if fmt == "megatron"
            else _numpy_documents(path, domain, index, eos_id)
        )
        for doc in docs:
            if len(doc) and int(doc.max()) >= vocab_size:
                raise DataError(
                    f"token id {int(doc.max())} is outside the tokenizer's vocabulary of "
                    f"{vocab_size} (another tokenizer or dtype made these files)",
                    file=path.with_suffix(".bin") if fmt == "megatron" else path,
                    field=_field(index, "dtype"),
                )
            yield doc


def tokens_fingerprint(domain: DomainSection, index: int) -> dict[str, Any]:
    """What the cache keys on: the files' paths, sizes and times."""
    assert domain.tokens is not None
    halves = (".bin", ".idx") if domain.tokens.format == "megatron" else ("",)
    files = []
    for p in token_files(domain, index):
        for half in halves:
            f = p.with_suffix(half) if half else p
            st = f.stat()
            files.append({"path": str(f.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return {
        "kind": "tokens",
        **domain.tokens.model_dump(mode="json"),
        "files": files,
        "max_documents": domain.max_documents,
        "max_bytes": domain.max_bytes,
    }


def token_file_sizes(domain: DomainSection, index: int) -> list[dict[str, Any]]:
    """Each file (a Megatron prefix or a `.npy` path, resolved) with the tokens it holds, for
    the recipes: Megatron's blend weights each prefix by its share of the domain's tokens."""
    assert domain.tokens is not None
    out = []
    for p in token_files(domain, index):
        if domain.tokens.format == "megatron":
            from megatron.core.datasets.indexed_dataset import IndexedDataset

            idx = IndexedDataset(str(p), mmap=True).index
            tokens = int(np.sum(idx.sequence_lengths, dtype=np.int64))
        else:
            assert domain.tokens.dtype is not None
            tokens = p.stat().st_size // np.dtype(domain.tokens.dtype).itemsize
        out.append({"path": str(p.resolve()), "tokens": tokens})
    return out
