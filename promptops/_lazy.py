"""Lazy re-exports for a package `__init__` (PEP 562): a name's module is imported on first use.

A package whose modules do heavy or side-effecting work (the promote lock, git, MLflow) re-exports
its public names this way, so importing one light name does not load the rest. Each such
`__init__` repeats the imports under `TYPE_CHECKING`, for type checkers and the import contracts;
tests/test_architecture.py checks that the two lists agree.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, names_by_module: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`__getattr__`, `__dir__` and `__all__` for `package`; `names_by_module` maps a submodule (`_git`) to its names, space-separated."""
    where = {name: module for module, names in names_by_module.items() for name in names.split()}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(where))

    return __getattr__, __dir__, sorted(where)
