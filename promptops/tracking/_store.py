"""Where MLflow writes: the tracking URI, the configured `mlflow` module and a prompt's experiment.

The store is `MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db` at the project root: MLflow 3's
file store (`./mlruns`) refuses the Prompt Registry, which promotion needs, and sqlite does not.
A tracking server (`http://...`, any backend store) works the same way, read at every call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from promptops._secrets import redact
from promptops.artifact import find_project_root
from promptops.errors import TrackingError


def tracking_uri(root: Optional[Path] = None) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(root or find_project_root()) / 'mlflow.db'}"


def _mlflow(root: Optional[Path] = None) -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # On a tracking server MLflow writes two lines ("View run ... at: URL") to stdout as each run ends, which would
    # break `--json` output; promptops prints its own run ids.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # schema migrations and "creating experiment" are noise here
    mlflow.set_tracking_uri(tracking_uri(root))
    return mlflow


def _experiment(mlflow: Any, name: str) -> str:
    """The prompt's experiment; with a sqlite store its artifacts live beside the database, not in ./mlruns."""
    try:
        if mlflow.get_experiment_by_name(name) is None:
            uri = mlflow.get_tracking_uri()
            location = None
            if uri.startswith("sqlite:///"):
                location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name).as_uri()
            mlflow.create_experiment(name, artifact_location=location)
        experiment = mlflow.set_experiment(name)
    except Exception as exc:
        raise TrackingError(f"cannot open MLflow experiment {name!r} at {tracking_uri()}: {redact(str(exc)).splitlines()[0]}") from None
    return experiment.experiment_id


def _first_line(exc: BaseException) -> str:
    return (redact(str(exc)).strip().splitlines() or [type(exc).__name__])[0]


def _duplicate_row(exc: BaseException) -> bool:
    """A unique-constraint violation, as sqlite and PostgreSQL word it (through SQLAlchemy or MLflow): two processes
    inserted the same row (a dataset's name and digest) at once, and this one lost."""
    text = str(exc)
    return "UNIQUE constraint failed" in text or "duplicate key value violates unique constraint" in text
