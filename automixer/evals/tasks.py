"""The task format: one evaluation item per JSONL line.

    {"id": "arc_easy/0", "context": "Question: ...\\nAnswer:", "choices": [" a", " b"],
     "gold": 0, "suite": "arc_easy", "ability": "stem", "licence": "CC-BY-SA-4.0"}
    {"id": "gsm8k/0", "context": "Question: ...\\nAnswer:", "continuation": " ... 18.",
     "suite": "gsm8k", "ability": "math", "licence": "MIT"}

An item has either `choices` with a `gold` index (multiple choice, scored by log-likelihood) or
a gold `continuation`. `choice_contexts` optionally gives each choice its own context (as in
Winogrande's partial scoring). Every item's gold text is what bits per byte is measured on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from automixer.errors import AutomixerError
from automixer.registry import ABILITIES


@dataclass(frozen=True)
class Task:
    id: str
    context: str
    suite: str
    ability: str
    licence: str = "unknown"
    choices: tuple[str, ...] | None = None
    gold: int | None = None
    continuation: str | None = None
    choice_contexts: tuple[str, ...] | None = None

    @property
    def is_choice(self) -> bool:
        return self.choices is not None

    def requests(self) -> list[tuple[str, str]]:
        """(context, continuation) pairs to score: each choice, or the gold continuation."""
        if self.choices is None:
            assert self.continuation is not None
            return [(self.context, self.continuation)]
        ctxs = self.choice_contexts or (self.context,) * len(self.choices)
        return list(zip(ctxs, self.choices, strict=True))

    def gold_index(self) -> int:
        """Index of the gold request among `requests()`."""
        return self.gold if self.gold is not None else 0

    def gold_text(self) -> str:
        if self.choices is not None:
            assert self.gold is not None
            return self.choices[self.gold]
        assert self.continuation is not None
        return self.continuation

    def to_json(self) -> dict[str, Any]:
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(self).items()
            if v is not None
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        """The inverse of `to_json` (trusted data: no checks; see `task_from_dict`)."""
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**fields)


def task_from_dict(
    row: Any,
    *,
    file: str | Path = "<tasks>",
    line: int | None = None,
    known_suites: Sequence[str] | None = None,
) -> Task:
    """Validate one item; every problem names the file and line."""

    def bad(msg: str) -> AutomixerError:
        return AutomixerError(msg, file=file, line=line)

    if not isinstance(row, dict):
        raise bad("a task line must be a JSON object")
    for key in ("id", "context", "suite", "ability"):
        if not isinstance(row.get(key), str) or (not row[key] and key != "context"):
            raise bad(f"missing or non-text '{key}'")
    if known_suites is not None and row["suite"] not in known_suites:
        raise bad(f"unknown suite '{row['suite']}'; known: {', '.join(known_suites)}")
    if row["ability"] not in ABILITIES:
        raise bad(f"unknown ability '{row['ability']}'; choose from {', '.join(ABILITIES)}")
    choices = row.get("choices")
    continuation = row.get("continuation")
    if choices is None and continuation is None:
        raise bad("an item needs 'choices' with 'gold', or a gold 'continuation'")
    if choices is not None:
        if not isinstance(choices, list) or not choices:
            raise bad("'choices' must be a non-empty list (no choices given)")
        if not all(isinstance(c, str) and c for c in choices):
            raise bad("every choice must be non-empty text")
        gold = row.get("gold")
        if not isinstance(gold, int) or isinstance(gold, bool):
            raise bad("'gold' must be the index of the right choice")
        if not 0 <= gold < len(choices):
            raise bad(f"gold index {gold} is out of range for {len(choices)} choices")
        ctxs = row.get("choice_contexts")
        if ctxs is not None and (not isinstance(ctxs, list) or len(ctxs) != len(choices)):
            raise bad("'choice_contexts' must have one context per choice")
        return _task(
            row, choices=tuple(choices), gold=gold, choice_contexts=tuple(ctxs) if ctxs else None
        )
    if not isinstance(continuation, str) or not continuation:
        raise bad("'continuation' must be non-empty text")
    return _task(row, continuation=continuation)


def _task(row: dict[str, Any], **answer: Any) -> Task:
    return Task(
        row["id"],
        row["context"],
        row["suite"],
        row["ability"],
        str(row.get("licence", "unknown")),
        **answer,
    )


def load_jsonl(path: str | Path, known_suites: Sequence[str] | None = None) -> list[Task]:
    p = Path(path)
    if not p.is_file():
        raise AutomixerError("task file not found", file=p)
    tasks = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise AutomixerError(f"malformed task line: {e.msg}", file=p, line=lineno) from None
            tasks.append(task_from_dict(row, file=p, line=lineno, known_suites=known_suites))
    if not tasks:
        raise AutomixerError("no tasks in file", file=p)
    return tasks


def write_jsonl(tasks: Iterable[Task], path: str | Path) -> None:
    from automixer.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(t.to_json()) + "\n" for t in tasks))


def load_hf_tasks(
    path: str,
    *,
    split: str,
    suite: str,
    ability: str,
    context: str,
    choices: str | None = None,
    gold: str | None = None,
    continuation: str | None = None,
    name: str | None = None,
    licence: str = "unknown",
) -> list[Task]:
    """Items from a Hugging Face dataset (a hub name, or a local `save_to_disk` folder),
    mapping its columns onto the task format."""
    import datasets

    local = Path(path)
    ds: Any = (
        datasets.load_from_disk(str(local))
        if local.is_dir()
        else datasets.load_dataset(path, name, split=split)
    )
    if isinstance(ds, datasets.DatasetDict):
        ds = ds[split]
    out = []
    for i, row in enumerate(ds):
        item: dict[str, Any] = {
            "id": f"{suite}/{i}",
            "context": row[context],
            "suite": suite,
            "ability": ability,
            "licence": licence,
        }
        if choices is not None:
            item["choices"] = [" " + str(c) for c in row[choices]]
            item["gold"] = int(row[gold]) if gold is not None else 0
        else:
            assert continuation is not None
            item["continuation"] = " " + str(row[continuation])
        out.append(task_from_dict(item, file=path, line=i + 1))
    return out
