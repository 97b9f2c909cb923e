"""The exceptions users see.

Every user mistake raises a `PromptopsError` whose message is one sentence naming
the file, line, field or row at fault; the CLI prints it and exits non-zero.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Optional


class PromptopsError(Exception):
    """A problem the user can fix; the message says what and where.

    `value` is the string the user wrote that the message is about (a model string, a metric, a data path), when it
    can have come from several places (a flag, a prompt file, an experiment file): the code that knows where it was
    written says so with `placed`.
    """

    exit_code = 1

    def __init__(self, *args: object, value: Optional[str] = None):
        super().__init__(*args)
        self.value = value

    def placed(self, place: str) -> "PromptopsError":
        """This error, its message led by where its value was written (`prompts/x.yaml:22: model.id`, `--model`)."""
        self.args = (f"{place}: {self}",)
        self.value = None  # placed once: an outer caller does not place it again
        return self


def where(path: str | Path, line: int | None = None) -> str:
    """`file:line` as editors and terminals understand it, relative to the working folder when inside it."""
    text = str(path)
    try:  # the folders resolved, the file itself not: a symlink is named as the user sees it, not by its target
        absolute = Path(path).absolute()
        text = str((absolute.parent.resolve() / absolute.name).relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        pass
    return f"{text}:{line}" if line else text


class PromptFileError(PromptopsError):
    """A prompt file that cannot be read or does not validate."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line = str(path), line
        super().__init__(f"{where(path, line)}: {message}")


class UnknownPromptError(PromptopsError):
    """No prompt file with that name in the project."""


class PromptReferenceError(PromptopsError):
    """A prompt reference that is not a prompt's name: a path outside `prompts/`, `..`, or a symlink that leaves the project."""


class DatasetError(PromptopsError):
    """An eval set that cannot be read, or a row that does not match the prompt's fields."""

    def __init__(self, path: str | Path, line: int | None, message: str, *, value: Optional[str] = None):
        self.path, self.line = str(path), line
        super().__init__(f"{where(path, line)}: {message}", value=value)


class WriteRefusedError(PromptopsError):
    """The operating system refused a write promptops needs: permissions, a read-only file system, a full disk."""

    REFUSALS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)  # other OSErrors keep their traceback

    def __init__(self, path: str | Path, exc: OSError):
        self.path = str(path)
        if exc.errno == errno.EROFS:
            why = "the file system is read-only; run where the project can be written"
        elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
            why = "the disk is full; free some space and run the command again"
        else:
            folder = Path(path) if Path(path).is_dir() else Path(path).parent
            why = f"permission denied; make {where(folder)} writable for this user, or run as its owner"
        super().__init__(f"cannot write {where(path)}: {why}")


class UnknownModelError(PromptopsError):
    """A model string that no backend can serve."""


class UnknownParameterError(PromptopsError):
    """A `model.params` key the model's client cannot send, such as a misspelt `temprature`."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"model.params.{key}: {problem}", value=key)

    def placed(self, place: str) -> "PromptopsError":
        """The place names the key already (`prompts/x.yaml:24: model.params.temprature`): the problem follows it."""
        self.args = (f"{place}: {self.problem}",)
        self.value = None
        return self


class ModelUnavailableError(PromptopsError):
    """A known model whose weights or runtime are not installed here."""


class MetricError(PromptopsError):
    """A metric name or `module:function` that cannot be used."""


class TrackingError(PromptopsError):
    """The MLflow store cannot be reached or written."""


class UnloggedError(TrackingError):
    """Work that was done (and its model calls paid for) but that MLflow could not record.

    `saved_to` is the JSON file that holds the run instead (None if even that could not be written);
    `result` is the result itself (an `EvalResult`, a `Comparison`, ...), for the caller to show."""

    def __init__(self, message: str, *, saved_to: Path | None, result: object = None):
        self.saved_to, self.result = saved_to, result
        super().__init__(message)

    def with_result(self, result: object) -> "UnloggedError":
        return UnloggedError(str(self), saved_to=self.saved_to, result=result)


class RepositoryError(PromptopsError):
    """No git repository where one is needed, or git refused a change (commit, tag, reset)."""


class NothingToCommitError(RepositoryError):
    """A commit was asked for, but the paths are unchanged since HEAD."""


class UnknownVersionError(PromptopsError):
    """A version (`v3`), commit, tag or branch that does not name a version of the prompt."""


class GuardrailError(PromptopsError):
    """A request a loaded prompt refused or could not answer within its guardrails; `decision` names which."""

    decision = "refused"

    def __init__(self, message: str, *, trace_id: str | None = None):
        self.trace_id = trace_id
        super().__init__(message)


class InputRejected(GuardrailError):
    """An input of the wrong type, too long, or matching a deny pattern; no model was called."""

    decision = "input_rejected"


class RateLimited(GuardrailError):
    """The user key sent requests faster than the prompt's rate limit allows."""

    decision = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float, trace_id: str | None = None):
        self.retry_after_s = retry_after_s
        super().__init__(message, trace_id=trace_id)


class CostCapReached(GuardrailError):
    """The session's or the user key's spending cap leaves no room for another model call."""

    decision = "cost_cap"


class LoopGuardTripped(GuardrailError):
    """The request used up its model calls (max_calls_per_request) without an acceptable answer."""

    decision = "loop_guard"


class CircuitOpen(GuardrailError):
    """Every model the request could use has failed repeatedly and is resting until its cool-down ends."""

    decision = "circuit_open"


class InvalidOutput(GuardrailError):
    """The model's answers did not fit the prompt's output fields, retries included."""

    decision = "invalid_output"


class ModelCallFailed(GuardrailError):
    """The model (and every fallback) failed: server errors, timeouts or unreadable answers."""

    decision = "model_failed"
