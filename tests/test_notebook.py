"""notebooks/quickstart.ipynb runs from top to bottom, so it cannot rot.

It is executed as a reader would run it (a Jupyter kernel, cell by cell) in a copy of the
example project, on the embedded model, with every `limit=N` cut to 2 rows to keep it quick.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


def cell_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(output["text"])
        parts.extend(str(value) for key, value in output.get("data", {}).items() if key == "text/plain")
    return "\n".join(parts)


def test_the_quickstart_notebook_runs_on_the_embedded_model(project: Path, mlflow_store: str) -> None:
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code_cells:
        cell.source = re.sub(r"\blimit=\d+", "limit=2", cell.source)

    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(project)}}).execute()

    assert all(not [o for o in cell.outputs if o.get("output_type") == "error"] for cell in code_cells)
    outputs = {cell.source.splitlines()[0]: cell_text(cell) for cell in code_cells}
    summary = next(text for first, text in outputs.items() if first.startswith("result = promptops.evaluate"))
    assert "'n': 2" in summary and "cost_usd" in summary, summary
    refusal = next(text for first, text in outputs.items() if first.startswith("try:"))
    assert refusal.startswith("InputRejected - "), refusal
    served = next(text for first, text in outputs.items() if first.startswith("program = promptops.load"))
    label = re.match(r"\('([a-z_]+)',\s+'tr-[0-9a-f]+'", served)  # (intent, trace id, decisions)
    assert label and "'decision': 'answered'" in served, served
