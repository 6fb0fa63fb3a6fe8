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
