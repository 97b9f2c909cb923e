"""The architecture's contracts (README, "Architecture"): layers, one adapter per library, private modules, no cycle.

The contracts live in pyproject.toml ([tool.importlinter]); `lint-imports` checks them and so does this suite, so a
change that breaks one is red in CI. grimp, import-linter's graph, counts every import: at the top of a module, inside
functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
LAZY_PACKAGES = ["promptops.optimizer", "promptops.runtime", "promptops.versioning"]


def test_the_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 8 kept, 0 broken." in result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, targets = work[-1]
            for target in targets:
                if target not in graph.modules:
                    continue
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.find_modules_directly_imported_by(target)))))
                    break
                if target in on_stack:
                    low[module] = min(low[module], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == module:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return groups


def test_no_module_of_promptops_is_in_an_import_cycle() -> None:
    graph = grimp.build_graph("promptops", cache_dir=None)
    assert len(graph.modules) > 60
    assert _cycles(graph) == []


def test_the_cycle_counter_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "a.b", "a.c", "a.d"):
        graph.add_module(module)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.b")
    graph.add_import(importer="a.c", imported="a.d")
    assert _cycles(graph) == [["a.b", "a.c"]]


def _type_checking_names(package: str) -> dict[str, set[str]]:
    """What the package's `if TYPE_CHECKING:` block imports, by submodule."""
    tree = ast.parse(Path(importlib.util.find_spec(package).origin).read_text())
    names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                if not statement.module.startswith(package + "."):
                    continue  # the standard library's, for annotations
                names.setdefault(statement.module.rsplit(".", 1)[1], set()).update(alias.name for alias in statement.names)
    return names


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_a_lazy_package_exports_what_its_type_checking_block_imports(package: str) -> None:
    module = importlib.import_module(package)
    declared = _type_checking_names(package)
    assert declared, f"{package} has no TYPE_CHECKING block"
    assert sorted(module.__all__) == sorted(name for names in declared.values() for name in names)
    _resolve_each(module, package, declared)


def test_the_api_exports_the_packages_functions_and_result_types_lazily() -> None:
    import promptops

    declared = _type_checking_names("promptops")
    lazy = {module: names & set(promptops._exports) for module, names in declared.items()}
    assert sorted(name for names in lazy.values() for name in names) == sorted(promptops._exports)
    _resolve_each(promptops, "promptops", lazy)
    for name in promptops.__all__:
        assert getattr(promptops, name) is not None
    from promptops.evaluation import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES

    assert (promptops._DEFAULT_RESAMPLES, promptops._DEFAULT_CONFIDENCE) == (DEFAULT_RESAMPLES, DEFAULT_CONFIDENCE)


def _resolve_each(module, package: str, declared: dict[str, set[str]]) -> None:
    for submodule, names in declared.items():
        defined_in = importlib.import_module(f"{package}.{submodule}")
        for name in names:
            assert getattr(module, name) is getattr(defined_in, name)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_test_modules_do_not_import_each_other() -> None:
    tests = {path.stem for path in (REPO / "tests").glob("test_*.py")}
    for path in sorted((REPO / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in tests:
                pytest.fail(f"{path.name}:{node.lineno} imports from {node.module}: shared fixtures and helpers live in conftest.py")
