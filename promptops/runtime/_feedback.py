"""The feedback loop: what users said about a traced answer, and failing requests turned into eval rows.

- `record_feedback(trace_id, correct=..., expected=...)`: an app reports an outcome; it is kept
  on the trace as MLflow assessments (feedback `correct`, one expectation per output field).
- `add_feedback(trace_id, expected)`: the request's inputs and the corrected outputs become a row
  of the prompt's eval set (one commit), so the next optimize and promotion gate score it.
- `add_failed(name)`: every failing trace that has corrected outputs recorded, at once.

Rows keep `trace_id`, so a request is added once and can be traced back.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from promptops._text import read_utf8
from promptops.errors import DatasetError, PromptopsError

if TYPE_CHECKING:
    from promptops.tracking import TraceRecord


@dataclass(frozen=True)
class AddedRow:
    trace_id: str
    file: str
    line: int


@dataclass(frozen=True)
class FeedbackAdded:
    prompt: str
    split: str
    rows: tuple[AddedRow, ...]
    commit: Optional[str]
    skipped: tuple[tuple[str, str], ...] = field(default=())  # (trace id, why)


def record_feedback(trace_id: str, *, correct: Optional[bool] = None, expected: Optional[dict[str, Any]] = None,
                    source: str = "promptops") -> None:
    """Attach an outcome to a traced request: whether the answer was right, and what it should have been."""
    from promptops import tracking
    from promptops.runtime import _tracing as tracing

    tracing.get(trace_id)  # a clear error for an unknown id, before writing anything
    tracking.log_feedback(trace_id, correct=correct, expected=expected, source=source)


def add_feedback(trace_id: str, expected: Optional[dict[str, Any]] = None, *, split: str = "dev") -> FeedbackAdded:
    """Append the traced request with `expected` outputs (or those recorded on the trace) to the eval set; one commit."""
    from promptops.runtime import _tracing as tracing

    trace = tracing.get(trace_id)
    name = _prompt_name(trace)
    prompt = _current_prompt(name)
    corrected = {**trace.expectations(), **_typed(prompt, expected or {})}
    row = _row(prompt, trace, corrected)
    if expected:
        record_feedback(trace_id, expected=_typed(prompt, expected))
    return _append_rows(prompt, [row], split, f"Feedback: trace {trace_id} of {name} added to {split}")


def add_failed(name: str, *, split: str = "dev", limit: int = 200) -> FeedbackAdded:
    """Every recent failing request of `name` (error status, or feedback `correct` = false) with corrected outputs recorded."""
    from promptops.runtime import _tracing as tracing

    prompt = _current_prompt(name)
    rows, skipped = [], []
    already = _trace_ids_in(prompt, split)
    for found in tracing.find(name, limit=limit):  # tags and assessments only; spans are read for the rows kept
        trace_id = found.trace_id
        if not _failed(found) or trace_id in already:
            continue
        expected = found.expectations()  # the newest per output field
        missing = [spec.name for spec in prompt.outputs if spec.name not in expected]
        if missing:
            skipped.append((trace_id, f"no expected {missing[0]!r} recorded: promptops feedback add {trace_id}"
                                      f" --expected {missing[0]}=..."))
            continue
        try:
            rows.append(_row(prompt, tracing.get(trace_id), expected))
        except PromptopsError as exc:
            skipped.append((trace_id, str(exc)))
    if not rows:
        return FeedbackAdded(name, split, (), None, tuple(skipped))
    added = _append_rows(prompt, rows, split, f"Feedback: {len(rows)} failing request(s) of {name} added to {split}")
    return FeedbackAdded(name, split, added.rows, added.commit, tuple(skipped))


# --- reading traces ----------------------------------------------------------------------


def _prompt_name(trace: TraceRecord) -> str:
    name = trace.tags.get("promptops.prompt")
    if not name:
        raise PromptopsError(f"trace {trace.trace_id} was not written by a promptops request (no promptops.prompt tag)")
    return name


def _current_prompt(name: str) -> Any:
    from promptops.artifact import load_prompt_file, resolve_prompt_path

    return load_prompt_file(resolve_prompt_path(name))


def _failed(trace: TraceRecord) -> bool:
    if trace.tags.get("promptops.status") == "error":
        return True
    verdicts = [a.value for a in trace.assessments if a.name == "correct" and a.kind == "feedback"]
    return bool(verdicts) and verdicts[-1] is False


def _typed(prompt: Any, values: dict[str, Any]) -> dict[str, Any]:
    """`--expected field=value` arrives as text: parse lists, objects and numbers as JSON, check every field."""
    from pydantic import ValidationError

    typed = {}
    names = [spec.name for spec in prompt.outputs]
    for key, value in values.items():
        if key not in names:
            raise PromptopsError(f"{prompt.name} has no output field {key!r}; its outputs are {', '.join(names)}")
        spec = prompt.field(key)
        if isinstance(value, str) and spec.type in ("integer", "number", "boolean", "list", "object"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise PromptopsError(f"expected {key}={value!r} is not a valid {spec.type} (write it as JSON)") from None
        try:
            typed[key] = spec.adapter.validate_python(value)
        except ValidationError as exc:
            raise PromptopsError(f"expected {key}={value!r} does not fit the field: {exc.errors()[0]['msg']}") from None
        typed[key] = typed[key].model_dump() if hasattr(typed[key], "model_dump") else typed[key]
    return typed


def _row(prompt: Any, trace: TraceRecord, expected: dict[str, Any]) -> dict[str, Any]:
    from promptops.runtime import _tracing as tracing

    inputs, _ = tracing.root_inputs_outputs(trace)
    row = {**{spec.name: inputs.get(spec.name) for spec in prompt.inputs}, **expected, "trace_id": trace.trace_id}
    problem = prompt.check_example(row)
    if problem:
        raise PromptopsError(f"trace {trace.trace_id} cannot become a row of {prompt.name}'s eval set: {problem}")
    return row


# --- writing the eval set ------------------------------------------------------------------


def _split_path(prompt: Any, split: str) -> tuple[Path, bool]:
    """The file the split lives in (created as SPLIT.jsonl in a dataset folder if missing) and whether it has a split column."""
    from promptops.evaluation import SPLITS, default_data_path, split_file

    if split not in SPLITS:
        raise PromptopsError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    source = default_data_path(prompt)
    if source.is_dir():
        try:
            return split_file(source, split), False
        except DatasetError:
            return source / f"{split}.jsonl", False
    return split_file(source, split), True


def _trace_ids_in(prompt: Any, split: str) -> set[str]:
    path, _ = _split_path(prompt, split)
    if not path.exists():
        return set()
    text = read_utf8(path, DatasetError)
    if path.suffix == ".csv":
        return {row.get("trace_id") or "" for row in csv.DictReader(io.StringIO(text))} - {""}
    ids = set()
    for line in text.splitlines():
        if line.strip():
            try:
                ids.add(json.loads(line).get("trace_id"))
            except (json.JSONDecodeError, AttributeError):
                continue
    return ids - {None}


def _append_rows(prompt: Any, rows: list[dict[str, Any]], split: str, message: str) -> FeedbackAdded:
    """Append atomically and commit; if the commit fails, the file is put back as it was."""
    from promptops import versioning
    from promptops.artifact import atomic_write_text

    path, split_column = _split_path(prompt, split)
    duplicates = _trace_ids_in(prompt, split) & {row["trace_id"] for row in rows}
    if duplicates:
        raise PromptopsError(f"trace {sorted(duplicates)[0]} is already a row of {_shown(path)}; nothing was added")
    old_text = read_utf8(path, DatasetError) if path.exists() else None
    text = old_text or ""
    if text and not text.endswith("\n"):
        text += "\n"
    first_line = text.count("\n") + 1
    if split_column:
        rows = [{**row, "split": split} for row in rows]
    if path.suffix == ".csv":
        text = _with_csv_rows(text, rows, path)
    else:
        text += "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    repo = versioning.open_repo(path)
    atomic_write_text(path, text)
    try:
        commit = versioning.commit_paths(repo, [path], message)
    except BaseException:
        if old_text is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_text(path, old_text)
        raise
    added = tuple(AddedRow(row["trace_id"], _shown(path), first_line + offset) for offset, row in enumerate(rows))
    return FeedbackAdded(prompt.name, split, added, commit)


def _with_csv_rows(text: str, rows: list[dict[str, Any]], path: Path) -> str:
    header = next(csv.reader(io.StringIO(text)), None) if text else None
    columns = list(header or [])
    for row in rows:
        columns += [key for key in row if key not in columns]
    if header is not None and columns != header:
        raise PromptopsError(f"{_shown(path)} has no trace_id column: add one to its header to take feedback rows")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    if header is None:
        writer.writeheader()
    for row in rows:
        writer.writerow({key: json.dumps(value) if isinstance(value, (list, dict)) else value for key, value in row.items()})
    return text + buffer.getvalue()


def _shown(path: Path) -> str:
    from promptops.errors import where

    return where(path)
