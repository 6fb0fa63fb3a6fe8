"""Where a domain's documents come from: built-in corpora, local files, Hugging Face datasets.

`iter_documents` yields a domain's raw documents; `source_fingerprint` is what the caches key on
(a change of source, version or file contents gives a new key); `source_licence` what the
manifest records.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automixer.config import DomainSection
from automixer.data.builtin import BUILTINS
from automixer.errors import DataError


def _field(index: int, name: str) -> str:
    return f"domains[{index}].{name}"


def resolve_files(domain: DomainSection, index: int) -> list[Path]:
    """Expand a domain's glob patterns; a pattern that matches nothing is an error."""
    out: list[Path] = []
    for pattern in domain.files or []:
        matches = sorted(
            p for p in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(p).is_file()
        )
        if not matches:
            raise DataError(f"'{pattern}' matches no file", field=_field(index, "files"))
        out.extend(Path(m) for m in matches)
    return out


def _format_of(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if ext == ".parquet":
        return "parquet"
    return "text"


def _open_text(path: Path) -> Any:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _score(value: Any, field: str, index: int, **where: Any) -> float:
    """A tier field's value as a number, or one line naming the file, row and field."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        got = "missing" if value is None else f"not numeric ({type(value).__name__})"
        raise DataError(
            f"the tier field '{field}' is {got}", field=_field(index, "tiers.field"), **where
        )
    if value != value:  # NaN
        raise DataError(
            f"the tier field '{field}' is NaN", field=_field(index, "tiers.field"), **where
        )
    return float(value)


def _read_file(
    path: Path, fmt: str, text_field: str, index: int, score_field: str | None = None
) -> Iterator[Any]:
    """A file's documents; with `score_field`, (text, score) pairs."""
    if fmt == "text":
        if score_field is not None:
            raise DataError(
                f"plain text carries no field '{score_field}' to tier by",
                file=path,
                field=_field(index, "tiers.field"),
            )
        try:
            with _open_text(path) as fh:
                yield fh.read()
        except (UnicodeDecodeError, OSError) as e:
            raise DataError(
                f"cannot read text: {e}", file=path, field=_field(index, "files")
            ) from None
    elif fmt == "jsonl":
        try:
            with _open_text(path) as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(
                            f"malformed JSON: {e.msg}", file=path, line=lineno
                        ) from None
                    if not isinstance(row, dict) or text_field not in row:
                        raise DataError(
                            f"no '{text_field}' key in this row (set text_field)",
                            file=path,
                            line=lineno,
                            field=_field(index, "text_field"),
                        )
                    value = row[text_field]
                    if not isinstance(value, str):
                        continue
                    if score_field is None:
                        yield value
                    else:
                        got = row.get(score_field)
                        yield value, _score(got, score_field, index, file=path, line=lineno)
        except (UnicodeDecodeError, OSError, EOFError) as e:
            raise DataError(f"cannot read: {e}", file=path) from None
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path)
            names = table.schema_arrow.names
        except Exception as e:  # pyarrow raises several types for damaged files
            raise DataError(f"unreadable parquet file: {e}", file=path) from None
        for col, key in ((text_field, "text_field"), (score_field, "tiers.field")):
            if col is not None and col not in names:
                raise DataError(
                    f"no column '{col}' (columns: {', '.join(names)})",
                    file=path,
                    field=_field(index, key),
                )
        cols = [text_field] + ([score_field] if score_field is not None else [])
        try:
            batches = list(table.iter_batches(columns=cols, batch_size=4096))
        except Exception as e:
            raise DataError(f"unreadable parquet file: {e}", file=path) from None
        row = 0
        for batch in batches:
            texts = batch.column(0).to_pylist()
            scores = batch.column(1).to_pylist() if score_field is not None else texts
            for value, got in zip(texts, scores, strict=True):
                row += 1
                if not isinstance(value, str):
                    continue
                if score_field is None:
                    yield value
                else:
                    yield value, _score(got, score_field, index, file=path, line=row)
    else:  # pragma: no cover - the config's Literal rules this out
        raise DataError(f"unknown format {fmt}", field=_field(index, "format"))


def _read_hf(domain: DomainSection, index: int, score_field: str | None = None) -> Iterator[Any]:
    assert domain.hf is not None
    hf = domain.hf
    import datasets

    try:
        local = Path(hf.path)
        if local.is_dir() and (
            (local / "dataset_info.json").is_file()
            or (local / "state.json").is_file()
            or (local / "dataset_dict.json").is_file()
        ):
            ds: Any = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if hf.split not in ds:
                    raise DataError(
                        f"split '{hf.split}' not in {list(ds)}", field=_field(index, "hf.split")
                    )
                ds = ds[hf.split]
        else:
            ds = datasets.load_dataset(
                hf.path,
                hf.name,
                split=hf.split,
                revision=hf.revision,
                data_files=hf.data_files,
                streaming=hf.streaming,
            )
    except DataError:
        raise
    except Exception as e:  # datasets raises many types: offline, missing, bad config
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"cannot load Hugging Face dataset '{hf.path}': {first}", field=_field(index, "hf")
        ) from None
    features = getattr(ds, "column_names", None)
    if features is not None and domain.text_field not in features:
        raise DataError(
            f"no column '{domain.text_field}' (columns: {', '.join(features)})",
            field=_field(index, "text_field"),
        )
    field = score_field
    if field is not None and features is not None and field not in features:
        raise DataError(
            f"no column '{field}' (columns: {', '.join(features)})",
            field=_field(index, "tiers.field"),
        )
    for n, row in enumerate(ds, 1):
        value = row.get(domain.text_field)
        if not isinstance(value, str):
            continue
        if field is None:
            yield value
        else:
            yield value, _score(row.get(field), field, index, line=n)


def iter_raw_documents(domain: DomainSection, index: int) -> Iterator[str]:
    """A domain's documents as its source gives them (before filtering and limits)."""
    return _iter_source(domain, index, None)


def iter_scored_documents(
    domain: DomainSection, index: int, field: str
) -> Iterator[tuple[str, float]]:
    """(text, score) of each document, the score from the numeric data field `field` (a tier
    field): missing or not numeric is one line naming the file and row."""
    if domain.builtin is not None:
        raise DataError(
            f"the built-in corpus '{domain.builtin}' carries no field '{field}'; tier it with "
            "scorer: reference",
            field=_field(index, "tiers.field"),
        )
    return _iter_source(domain, index, field)


def _iter_source(domain: DomainSection, index: int, field: str | None) -> Iterator[Any]:
    if domain.builtin is not None:
        corpus = BUILTINS.get(domain.builtin)
        if corpus is None:
            from difflib import get_close_matches

            near = get_close_matches(domain.builtin, list(BUILTINS), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise DataError(
                f"unknown built-in corpus '{domain.builtin}'{hint}; known: {', '.join(BUILTINS)}",
                field=_field(index, "builtin"),
            )
        yield from corpus.read()
    elif domain.files is not None:
        for path in resolve_files(domain, index):
            fmt = _format_of(path, domain.format)
            yield from _read_file(path, fmt, domain.text_field, index, field)
    else:
        yield from _read_hf(domain, index, field)


@dataclass
class SourceTally:
    """What the whole source holds (documents and UTF-8 bytes after the `min_chars` filter),
    whether or not the domain's limits stop reading before its end."""

    documents: int = 0
    bytes: int = 0
    complete: bool = True
    """False when reading stopped at a limit without counting the rest."""


def limit_documents(
    docs: Iterable[str],
    domain: DomainSection,
    min_chars: int,
    tally: SourceTally | None = None,
    *,
    count_rest: bool = False,
) -> Iterator[str]:
    """Drop short documents and stop at the domain's document and byte limits. With a `tally`,
    count the source's documents and bytes; with `count_rest`, read on past the limits to count
    the whole source (for local sources: reading them is cheap)."""
    n_docs = 0
    n_bytes = 0
    stopped = False
    for doc in docs:
        doc = doc.strip()
        if len(doc) < min_chars:
            continue
        size = len(doc.encode("utf-8"))
        if tally is not None:
            tally.documents += 1
            tally.bytes += size
        if stopped:
            continue
        if domain.max_bytes is not None and n_bytes + size > domain.max_bytes:
            if n_docs == 0:  # a first document larger than the cap is cut, not dropped
                yield doc.encode("utf-8")[: domain.max_bytes].decode("utf-8", "ignore")
            stopped = True
        else:
            yield doc
            n_docs += 1
            n_bytes += size
            stopped = domain.max_documents is not None and n_docs >= domain.max_documents
        if stopped and not (tally is not None and count_rest):
            if tally is not None:
                tally.complete = False
            return


def source_fingerprint(domain: DomainSection, index: int) -> dict[str, Any]:
    """Everything about the source that changes its documents (for cache keys and manifests)."""
    base: dict[str, Any] = {"max_documents": domain.max_documents, "max_bytes": domain.max_bytes}
    if domain.tokens is not None:
        from automixer.data.tokenfiles import tokens_fingerprint

        return tokens_fingerprint(domain, index)
    if domain.builtin is not None:
        corpus = BUILTINS.get(domain.builtin)
        versions = corpus.versions() if corpus else {}
        return {
            **base,
            "kind": "builtin",
            "name": domain.builtin,
            "versions": versions,
            "reader": 2,
        }
    if domain.files is not None:
        files = [
            {"path": str(p.resolve()), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
            for p in resolve_files(domain, index)
        ]
        return {
            **base,
            "kind": "files",
            "files": files,
            "format": domain.format,
            "text_field": domain.text_field,
        }
    assert domain.hf is not None
    files = [
        {
            "path": str(Path(p).resolve()),
            "size": Path(p).stat().st_size,
            "mtime_ns": Path(p).stat().st_mtime_ns,
        }
        for pattern in domain.hf.data_files or []
        for p in sorted(glob.glob(pattern))
    ]
    return {
        **base,
        "kind": "hf",
        **domain.hf.model_dump(),
        "text_field": domain.text_field,
        "local_files": files,
    }


def source_licence(domain: DomainSection) -> str:
    if domain.licence:
        return domain.licence
    if domain.builtin is not None and domain.builtin in BUILTINS:
        return BUILTINS[domain.builtin].licence
    return "unknown"


def source_description(domain: DomainSection) -> str:
    if domain.builtin is not None:
        corpus = BUILTINS.get(domain.builtin)
        versions = ", ".join(f"{k} {v}" for k, v in (corpus.versions() if corpus else {}).items())
        return f"builtin:{domain.builtin} ({versions})"
    if domain.files is not None:
        return "files:" + ",".join(domain.files)
    if domain.tokens is not None:
        return f"tokens:{domain.tokens.format}:" + ",".join(domain.tokens.paths)
    assert domain.hf is not None
    return (
        f"hf:{domain.hf.path}"
        + (f"/{domain.hf.name}" if domain.hf.name else "")
        + f"[{domain.hf.split}]"
    )
