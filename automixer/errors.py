"""Errors a user can cause: the CLI prints them as one line, exits non-zero, shows no traceback."""

from __future__ import annotations

from pathlib import Path


class AutomixerError(Exception):
    """A mistake in the user's input (a config, a file, a table), reported as one line."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        self.line = line
        super().__init__(self.format())

    def format(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        if self.field:
            where = f"{where}: {self.field}" if where else self.field
        return f"{where}: {self.message}" if where else self.message


class ConfigError(AutomixerError):
    """A config file that cannot be read or does not validate."""


class DataError(AutomixerError):
    """A data source that is missing, unreadable or empty."""


class BudgetError(AutomixerError):
    """A token budget that would repeat a domain more often than allowed."""


def os_error_line(e: OSError) -> str:
    """An operating-system error as one line naming the file and the cause ("No space left on
    device"), also for libraries that raise OSError with a message but no errno (pyarrow)."""
    where = f"{e.filename}: " if getattr(e, "filename", None) else ""
    cause = e.strerror or (str(e).strip().splitlines() or [""])[0] or type(e).__name__
    return f"{where}{cause}"


def database_error_line(e: BaseException) -> str | None:
    """A database error (the ledger's) as one line, or None when `e` is not one: SQLAlchemy's
    and Optuna's storage errors, with the root cause ("database or disk is full", "connection
    refused") and no connection string."""
    names = {type(x).__name__ for x in _chain(e)}
    if not names & {"OperationalError", "StorageInternalError", "InterfaceError", "DatabaseError"}:
        return None
    root = list(_chain(e))[-1]
    text = (str(root).strip().splitlines() or [""])[0]
    text = text.split("(Background on this error", 1)[0].strip()
    if "://" in text:  # a driver quoting its connection string
        text = type(root).__name__
    return f"the ledger's database: {text or type(root).__name__}"


def _chain(e: BaseException) -> list[BaseException]:
    out = [e]
    while out[-1].__cause__ is not None and len(out) < 10:
        out.append(out[-1].__cause__)
    return out
