"""An agent's tool references (`module:function`), imported and checked against the prompt file.

`resolve_tools` imports each function from the project root, takes its argument schema and
description from the function the way DSPy's `dspy.Tool` does, and applies the file's overrides;
a reference that does not import, or an override naming an argument the function does not take,
is a `ToolError` that names the place in the file.
"""

from __future__ import annotations

import copy
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from promptops.artifact._files import find_project_root
from promptops.errors import PromptopsError


class ToolError(PromptopsError):
    """A tool of the prompt file cannot be used; `loc` is its place in the file, e.g. ("tools", 1, "function")."""

    def __init__(self, loc: tuple[Any, ...], message: str):
        self.loc = loc
        super().__init__(message)


@dataclass(frozen=True)
class ResolvedTool:
    """A tool ready to hand to DSPy: the function, and the name, description and argument schema the model sees."""

    index: int
    name: str
    description: str
    args: dict[str, dict[str, Any]]
    arg_types: dict[str, Any]
    function: Callable[..., Any]
    requires_approval: bool
    timeout_s: float
    max_calls: Optional[int]


def resolve_tools(prompt: Any, root: Optional[Path] = None) -> list[ResolvedTool]:
    """The prompt's tools, imported and checked; `root` (default: the project root) is where modules are imported from."""
    import dspy

    folder = str(Path(root or find_project_root()).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    resolved = []
    for index, spec in enumerate(prompt.tools):
        function = _import_function(spec.function, index)
        try:
            inferred = dspy.Tool(function)
        except Exception as exc:  # a signature DSPy cannot describe (e.g. an untyped *args)
            raise ToolError(("tools", index, "function"), f"tools[{index}].function: DSPy cannot describe {spec.function}'s"
                            f" arguments ({type(exc).__name__}: {exc})") from None
        args = copy.deepcopy(inferred.args or {})
        for name, override in spec.args.items():
            if name not in args:
                takes = ", ".join(args) or "no arguments"
                raise ToolError(("tools", index, "args", name), f"tools[{index}].args.{name}: {spec.function} takes no argument"
                                f" {name!r}; it takes {takes}")
            if override.description is not None:
                args[name]["description"] = override.description
            if override.enum is not None:
                args[name]["enum"] = list(override.enum)
        description = " ".join((spec.description or inferred.desc or "").split())
        if not description:
            raise ToolError(("tools", index), f"tools[{index}]: {spec.function} has no docstring; give the tool a `description:`"
                            " (the model chooses tools by it)")
        arg_types = {name: kind for name, kind in (inferred.arg_types or {}).items() if name in args}
        resolved.append(ResolvedTool(index, spec.tool_name, description, args, arg_types, function, spec.approval == "required",
                                     spec.timeout_s, spec.max_calls))
    return resolved


def _import_function(reference: str, index: int) -> Callable[..., Any]:
    module_name, _, function_name = reference.partition(":")
    loc = ("tools", index, "function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself failing on import
        raise ToolError(loc, f"tools[{index}].function: cannot import {module_name!r} ({type(exc).__name__}: {exc});"
                        " tool modules are imported from the project root") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ToolError(loc, f"tools[{index}].function: {module_name} has no function {function_name!r}")
    return function
