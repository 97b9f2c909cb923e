"""`promptops.tracking`: the one package that talks to MLflow, and what an eval run records there."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "promptops"


def mlflow_imports(path: Path) -> list[int]:
    """Lines of `import mlflow...` and `from mlflow... import ...` in a source file."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "mlflow" for alias in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mlflow":
            lines.append(node.lineno)
    return lines


def test_no_module_outside_the_tracking_package_imports_mlflow() -> None:
    tracking = PACKAGE / "tracking"
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
                 if tracking not in path.parents for line in mlflow_imports(path)]
    assert offenders == []
    assert mlflow_imports(tracking / "_store.py"), "the check must see the imports the tracking package does have"
