"""YAML files validated by pydantic models, with errors that name the file and the line.

Prompt files and experiment files are both hand-edited YAML; a mistake in either must be
reported as `file:line: one sentence`, found by walking the YAML node tree to the key
pydantic complains about. Every YAML promptops reads goes through `Loader`, which refuses a
key written twice in one mapping (PyYAML would silently keep the second).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from promptops._text import FileError
from promptops.errors import PromptopsError, where

Model = TypeVar("Model", bound=BaseModel)

# A validator may start its message with the place it means, below the field it validates:
# "demos[2]: ...", "low: ...", "extra_headers.X-Api-Key: ..." or "instructions[0] is empty".
_PLACE = re.compile(r"^(?P<path>[\w-]+(?:\[\d+\])*(?:\.[\w-]+(?:\[\d+\])*)*)(?P<colon>: )?")
_PLACE_PART = re.compile(r"([\w-]+)|\[(\d+)\]")


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that has the same key twice; `problem_mark` is the second one."""


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key written twice in one mapping is refused, naming both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: keys written here may override merged ones
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key; PyYAML refuses it itself
                    continue
                if first is not key_node:
                    raise DuplicateKeyError(None, None, f"key {key!r} repeats the one on line {first.start_mark.line + 1}",
                                            key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def compose_and_load(text: str) -> tuple[Optional[yaml.Node], Any]:
    """The node tree (for line numbers) and the data of `text`, parsed once with `Loader`."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def safe_load(text: str) -> Any:
    """`yaml.safe_load`, refusing duplicate keys (`DuplicateKeyError`, a `yaml.YAMLError`)."""
    return compose_and_load(text)[1]


def parse_yaml_model(text: str, path: str | Path, model: type[Model], error: FileError, *, not_a_mapping: str) -> Model:
    """`text` validated as `model`; any problem raises `error(path, line, message)`."""
    try:
        node, data = compose_and_load(text)
    except DuplicateKeyError as exc:
        raise error(path, exc.problem_mark.line + 1, str(exc.problem)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(path, line, f"not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise error(path, 1, not_a_mapping)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt key also shows up as a missing one; the misspelling is the useful report.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = tuple(first["loc"])
        field = format_loc(loc)
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = f"required key {loc[-1]!r} is missing"
        elif first["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        place = _PLACE.match(message) if first["type"] not in ("missing", "extra_forbidden") else None
        if place and (place["colon"] or "[" in place["path"]):
            parts = [name or int(index) for name, index in _PLACE_PART.findall(place["path"])]
            loc = (*loc, *parts[bool(loc) and loc[-1] == parts[0]:])  # "demos[2]" from the demos validator: demos once
            if place["colon"]:  # the place goes in front, as a reader writes it
                field, message = format_loc(loc), message[place.end():]
        line = line_of(node, loc)
        prefix = f"{field}: " if field and first["type"] not in ("missing", "extra_forbidden") else ""
        raise error(path, line, f"{prefix}{message}") from None


def format_loc(loc: tuple[Any, ...]) -> str:
    """pydantic's location as a reader writes it: `search.models[1].id`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> Optional[int]:
    """1-based line of the deepest YAML node on the path `loc`."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def place_in_file(path: str | Path, loc: tuple[Any, ...]) -> str:
    """`file:line: key` of the value at `loc` in a YAML file (without the line when the file cannot be read now)."""
    try:
        node = compose_and_load(Path(path).read_text(encoding="utf-8"))[0]
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        node = None
    return f"{where(path, line_of(node, loc) if node is not None else None)}: {format_loc(loc)}"


@contextmanager
def errors_placed_in(path: str | Path, written: dict[tuple[Any, ...], Any]) -> Iterator[None]:
    """An error about a value this YAML file sets, at `written`'s place (`("model", "id")`), is led by its file, line and
    key: `prompts/x.yaml:22: model.id: unknown model 'gpt5': ...`. The packages that check a model string, a metric or
    a data path do not know which file wrote it; the caller that read the file does. Other errors pass unchanged."""
    try:
        yield
    except PromptopsError as exc:
        loc = next((loc for loc, value in written.items() if value is not None and exc.value == value), None)
        if loc is not None:
            exc.placed(place_in_file(path, loc))
        raise
