"""YAML files validated by pydantic models, with errors that name the file and the line.

Prompt files and experiment files are both hand-edited YAML; a mistake in either must be
reported as `file:line: one sentence`, found by walking the YAML node tree to the key
pydantic complains about.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)
FileError = Callable[[str | Path, Optional[int], str], Exception]

_NESTED_LOC = re.compile(r"^(?P<key>\w+)\[(?P<index>\d+)\]")


def parse_yaml_model(text: str, path: str | Path, model: type[Model], error: FileError, *, not_a_mapping: str) -> Model:
    """`text` validated as `model`; any problem raises `error(path, line, message)`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
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
        nested = _NESTED_LOC.match(message)
        if nested and (not loc or loc[-1] != nested["key"]):  # cross-field checks name their place: "demos[2]: ..."
            loc = (*loc, nested["key"], int(nested["index"]))
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
