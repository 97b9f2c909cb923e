"""Eval sets: JSONL or CSV files with explicit train/dev/test splits, checked row by row.

A dataset is either a folder holding one file per split (`train.jsonl`, `dev.csv`, ...) or a
single file with a `split` column. Every row must carry the prompt's input and output fields
with values of the declared types; the first bad row is reported by file and line. A prompt
whose outputs are all free text (`string`) may have rows with no outputs at all: a judge
scores those by its rubric alone (`Example.expected` is empty).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from promptops._text import read_utf8
from promptops.artifact import FieldSpec, Prompt, find_project_root
from promptops.errors import DatasetError

SPLITS = ("train", "dev", "test")
_SUFFIXES = (".jsonl", ".csv")
# Keys a row may hold besides the prompt's fields: its split (one-file datasets), the trace it came from (feedback),
# an agent's expected tool calls. Any other key is refused (a misspelt output would leave the row without it), except
# a key starting with `_`: the author's own note, never read.
EXTRA_KEYS = ("split", "trace_id", "expected_tools")


@dataclass(frozen=True)
class Example:
    """One checked row: what goes into the prompt and what should come out."""

    inputs: dict[str, Any]
    expected: dict[str, Any]
    source: str  # `file:line`, so a failing example can be found again
    expected_tools: Optional[tuple[dict[str, Any], ...]] = None  # an agent's expected tool calls: name, optionally args


@dataclass(frozen=True)
class Dataset:
    path: Path
    split: str
    examples: tuple[Example, ...]

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def digest(self) -> str:
        """16 hex digits of sha256 over the rows' inputs and expected outputs, in order: which data a run scored."""
        rows = [{"inputs": example.inputs, "expected": example.expected,
                 **({"expected_tools": example.expected_tools} if example.expected_tools is not None else {})}
                for example in self.examples]
        canonical = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def head(self, limit: Optional[int]) -> "Dataset":
        if limit is None:
            return self
        return Dataset(self.path, self.split, self.examples[: max(limit, 0)])


def default_data_path(prompt: Prompt, root: Optional[Path] = None) -> Path:
    """The prompt's own eval set (`eval.data`), or `experiments/data/NAME` by convention."""
    root = root or find_project_root()
    if prompt.eval.data:
        path = Path(prompt.eval.data)
        return path if path.is_absolute() else root / path
    return root / "experiments" / "data" / prompt.name


def split_file(path: Path, split: str, *, written: Optional[str] = None) -> Path:
    """The file that holds `split`: the file itself, or `SPLIT.jsonl|csv` inside a folder.

    `written` is the path as the user wrote it (a flag's value, a file's `data:`), so an error can say where."""
    if split not in SPLITS:
        raise DatasetError(path, None, f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if path.is_file():
        return path
    if path.is_dir():
        for suffix in _SUFFIXES:
            candidate = path / f"{split}{suffix}"
            if candidate.is_file():
                return candidate
        raise DatasetError(path, None, f"no {split}.jsonl or {split}.csv in this folder", value=written)
    raise DatasetError(path, None, "no such dataset file or folder", value=written)


def load_dataset(prompt: Prompt, path: Optional[str | Path] = None, split: str = "dev") -> Dataset:
    """Rows of `split` checked against the prompt's fields."""
    source = Path(path) if path else default_data_path(prompt)
    file = split_file(source, split, written=str(path) if path else prompt.eval.data)
    split_column = source.is_file()
    rows, header_line = _read_rows_and_header(file)
    if header_line is not None and rows:  # a CSV file: its columns are checked once, at the header
        _check_keys(prompt, rows[0][1], file, header_line, "column")
    examples = []
    for line, row in rows:
        if header_line is None:
            _check_keys(prompt, row, file, line, "key")
        if split_column:
            if "split" not in row:
                raise DatasetError(file, line, "a single-file dataset needs a 'split' column (train, dev or test)")
            if row["split"] not in SPLITS:
                raise DatasetError(file, line, f"split {row['split']!r} is not one of {', '.join(SPLITS)}")
            if row["split"] != split:
                continue
        examples.append(_check_row(prompt, row, file, line, from_csv=file.suffix == ".csv"))
    return Dataset(file, split, tuple(examples))


def split_size(file: Path, split: str) -> Optional[int]:
    """Rows of `split` in `file` (a split's own file, or one file with a `split` column), unchecked; None if unreadable.

    Tells an eval of the whole split from one run with `--limit`."""
    try:
        rows = read_rows(file)
    except (DatasetError, OSError):
        return None
    if rows and all("split" in row for _, row in rows):
        return sum(row["split"] == split for _, row in rows)
    return len(rows)


def read_rows(file: Path) -> list[tuple[int, dict[str, Any]]]:
    """The rows of a .jsonl or .csv file with their line numbers, each a JSON object; unchecked against any prompt."""
    return _read_rows_and_header(file)[0]


def _read_rows_and_header(file: Path) -> tuple[list[tuple[int, dict[str, Any]]], Optional[int]]:
    """`read_rows`, and the line of a CSV file's header (None for JSON lines)."""
    if file.suffix not in _SUFFIXES:
        raise DatasetError(file, None, "datasets must be .jsonl or .csv files")
    content = read_utf8(file, DatasetError)
    if file.suffix == ".jsonl":
        rows = []
        with io.StringIO(content) as handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DatasetError(file, line, f"not valid JSON: {exc.msg}") from None
                if not isinstance(row, dict):
                    raise DatasetError(file, line, "each line must be a JSON object of field values")
                rows.append((line, row))
        return rows, None
    return _read_csv(file, content)


def _read_csv(file: Path, content: str) -> tuple[list[tuple[int, dict[str, Any]]], Optional[int]]:
    """A CSV file's rows, each at the line it starts on, and its header's line. Read strictly: an unclosed quote would
    otherwise swallow the rest of the file into one cell, silently."""
    header: Optional[list[str]] = None
    header_line: Optional[int] = None
    rows = []
    with io.StringIO(content, newline="") as handle:
        reader = csv.reader(handle, strict=True)
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    raise DatasetError(file, _unclosed_quote_line(content, start), "a quote opens here and is never closed:"
                                       " close it, or double a quote that is part of the text (\"\")") from None
                raise DatasetError(file, reader.line_num, f"not valid CSV: {exc}") from None
            if not cells:  # a blank line
                continue
            if header is None:
                header, header_line = cells, start
                for index, name in enumerate(cells):
                    if name in cells[:index]:
                        raise DatasetError(file, start, f"column {name!r} appears twice in the header (columns"
                                           f" {cells.index(name) + 1} and {index + 1}); rename or remove one")
                continue
            if len(cells) > len(header):
                raise DatasetError(file, start, "this row has more cells than the header")
            if len(cells) < len(header):
                raise DatasetError(file, start, f"this row has {len(cells)} cells and the header {len(header)}: write every"
                                   " cell, an empty one for a null")
            rows.append((start, dict(zip(header, cells))))
    return rows, header_line


def _unclosed_quote_line(content: str, start: int) -> int:
    """The line of the quote that opens the cell an unclosed record ends in, scanning from the record's first line as
    the csv module does: a quote opens a cell only at its start, and `""` inside a quoted cell is a quote."""
    with io.StringIO(content, newline="") as handle:  # lines as the csv module counts them
        text = "".join(handle.readlines()[start - 1:])
    line, opened, quoted, at_cell_start, index = start, start, False, True, 0
    while index < len(text):
        char = text[index]
        if quoted:
            if char == '"' and text[index + 1:index + 2] == '"':
                index += 1
            elif char == '"':
                quoted = False
        elif char == '"' and at_cell_start:
            quoted, opened = True, line
        line += char == "\n" or (char == "\r" and text[index + 1:index + 2] != "\n")
        at_cell_start = not quoted and char in ",\r\n"
        index += 1
    return opened


def _check_row(prompt: Prompt, row: dict[str, Any], file: Path, line: int, *, from_csv: bool) -> Example:
    # A free-text prompt's row may carry no output at all: a judge scores it by its rubric alone.
    outputs = prompt.outputs if not _rubric_only(prompt, row) else []
    for spec in prompt.inputs + outputs:
        if spec.name not in row:
            kind = "input" if spec in prompt.inputs else "output"
            raise DatasetError(file, line, f"missing {kind} field {spec.name!r}")
    values = {spec.name: _cell(spec, row[spec.name], file, line, from_csv) for spec in prompt.inputs + outputs}
    problem = prompt.check_example(values, outputs=bool(outputs))
    if problem:
        raise DatasetError(file, line, problem)
    return Example(
        inputs={spec.name: values[spec.name] for spec in prompt.inputs},
        expected={spec.name: values[spec.name] for spec in outputs},
        source=f"{file.name}:{line}",
        expected_tools=_expected_tools(prompt, row, file, line, from_csv) if "expected_tools" in row else None,
    )


def _check_keys(prompt: Prompt, row: dict[str, Any], file: Path, line: int, noun: str) -> None:
    """Every key is a field of the prompt, one of EXTRA_KEYS, or a note (`_...`): a misspelt `intnet` is not ignored."""
    import difflib

    fields = [spec.name for spec in prompt.inputs + prompt.outputs]
    for key in row:
        if key in fields or key in EXTRA_KEYS or key.startswith("_"):
            continue
        close = difflib.get_close_matches(key, fields + list(EXTRA_KEYS), n=1)
        if close:
            raise DatasetError(file, line, f"unknown {noun} {key!r}; did you mean {close[0]!r}?")
        raise DatasetError(file, line, f"unknown {noun} {key!r}: a row holds {prompt.name}'s fields ({', '.join(fields)}) and"
                                       f" optionally {', '.join(EXTRA_KEYS)}; start a note's name with _ (_{key})")


def _rubric_only(prompt: Prompt, row: dict[str, Any]) -> bool:
    """A row without any of the outputs, of a prompt whose outputs are all free text: nothing to match, only to judge."""
    return all(spec.type == "string" for spec in prompt.outputs) and not any(spec.name in row for spec in prompt.outputs)


def _expected_tools(prompt: Prompt, row: dict[str, Any], file: Path, line: int, from_csv: bool) -> tuple[dict[str, Any], ...]:
    """`expected_tools`: the tool calls an agent should make, `[{"name": ..., "args": {...}}]`, args optional."""
    value = row["expected_tools"]
    if from_csv:
        try:
            value = json.loads(value) if value else []
        except json.JSONDecodeError:
            raise DatasetError(file, line, "expected_tools must be a JSON list of {\"name\": ..., \"args\": {...}}") from None
    if not prompt.is_agent:
        raise DatasetError(file, line, f"expected_tools: {prompt.name} has no tools; only an agent's rows list expected tool calls")
    if not isinstance(value, list):
        raise DatasetError(file, line, "expected_tools must be a list of {\"name\": ..., \"args\": {...}}")
    names = [tool.tool_name for tool in prompt.tools]
    calls = []
    for index, call in enumerate(value):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or set(call) - {"name", "args"}:
            raise DatasetError(file, line, f"expected_tools[{index}] must be an object with a name and optional args")
        if call["name"] not in names:
            raise DatasetError(file, line, f"expected_tools[{index}]: {call['name']!r} is not a tool of {prompt.name}"
                                           f" ({', '.join(names)})")
        if "args" in call and not isinstance(call["args"], dict):
            raise DatasetError(file, line, f"expected_tools[{index}].args must be an object of argument values")
        calls.append(dict(call))
    return tuple(calls)


def _cell(spec: FieldSpec, value: Any, file: Path, line: int, from_csv: bool) -> Any:
    if not from_csv:
        return value
    # CSV cells are text: empty means null, structured types are written as JSON.
    if value == "" and spec.nullable:
        return None
    if spec.type in ("integer", "number", "boolean", "list", "object"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise DatasetError(file, line, f"field {spec.name!r}: {value!r} is not a valid {spec.type}") from None
    return value
