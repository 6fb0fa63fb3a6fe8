"""Progress of long surrogate fits, reported to whoever is listening.

The libraries never print: a fit calls `reporter()` for the current callback (None when nobody
listens) and reports (round, problems still learning) for the GP's batched learning, or
(fit done, fits) for models fitted one by one. The pipeline listens with `listening(callback)`
around a fit and prints what it hears.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Callback = Callable[[str, int, int], None]
"""(what, done, of): e.g. ("gp", round, problems still learning) or ("linear", fits done,
fits)."""

_current: contextvars.ContextVar[Callback | None] = contextvars.ContextVar(
    "automixer_fit_progress", default=None
)


@contextlib.contextmanager
def listening(callback: Callback | None) -> Iterator[None]:
    token = _current.set(callback)
    try:
        yield
    finally:
        _current.reset(token)


def report(what: str, done: int, of: int) -> None:
    callback = _current.get()
    if callback is not None:
        callback(what, done, of)


def reporter() -> Callable[[int, int], None] | None:
    """The GP learner's hook: (round, problems still learning)."""
    callback = _current.get()
    if callback is None:
        return None
    return lambda done, of: callback("gp", done, of)
