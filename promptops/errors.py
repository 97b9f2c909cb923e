"""The exceptions users see.

Every user mistake raises a `PromptopsError` whose message is one sentence naming
the file, line, field or row at fault; the CLI prints it and exits non-zero.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class PromptopsError(Exception):
    """A problem the user can fix; the message says what and where."""

    exit_code = 1


def where(path: str | Path, line: int | None = None) -> str:
    """`file:line` as editors and terminals understand it, relative to the working folder when inside it."""
    text = str(path)
    try:
        text = str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        pass
    return f"{text}:{line}" if line else text


class PromptFileError(PromptopsError):
    """A prompt file that cannot be read or does not validate."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line = str(path), line
        super().__init__(f"{where(path, line)}: {message}")


class UnknownPromptError(PromptopsError):
    """No prompt file with that name in the project."""


class DatasetError(PromptopsError):
    """An eval set that cannot be read, or a row that does not match the prompt's fields."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line = str(path), line
        super().__init__(f"{where(path, line)}: {message}")


class UnknownModelError(PromptopsError):
    """A model string that no backend can serve."""


class ModelUnavailableError(PromptopsError):
    """A known model whose weights or runtime are not installed here."""


class MetricError(PromptopsError):
    """A metric name or `module:function` that cannot be used."""


class TrackingError(PromptopsError):
    """The MLflow store cannot be reached or written."""


class RepositoryError(PromptopsError):
    """No git repository where one is needed, or git refused a change (commit, tag, reset)."""


class NothingToCommitError(RepositoryError):
    """A commit was asked for, but the paths are unchanged since HEAD."""


class UnknownVersionError(PromptopsError):
    """A version (`v3`), commit, tag or branch that does not name a version of the prompt."""
