"""The only module that talks to MLflow: where runs go and what an eval run records.

The store is `MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db` at the project root: MLflow 3's
file store (`./mlruns`) refuses the Prompt Registry, which promotion needs, and sqlite does not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from promptops._secrets import redact, redact_mapping
from promptops.artifact import Prompt, find_project_root
from promptops.errors import TrackingError

if TYPE_CHECKING:
    from promptops.evaluation import EvalResult


def tracking_uri(root: Optional[Path] = None) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(root or find_project_root()) / 'mlflow.db'}"


def _mlflow(root: Optional[Path] = None) -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
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


def log_eval(
    result: "EvalResult",
    prompt: Prompt,
    *,
    prompt_file: Optional[Path] = None,
    git_commit: Optional[str] = None,
    git_dirty: bool = False,
    root: Optional[Path] = None,
) -> str:
    """One MLflow run per eval: params, metrics, the prompt as evaluated and a per-example table."""
    root = root or find_project_root()
    mlflow = _mlflow(root)
    _experiment(mlflow, prompt.name)
    params = redact_mapping(
        {
            "prompt": prompt.name,
            "prompt_hash": result.prompt_hash,
            "git_commit": git_commit or "none",
            "model": result.model,
            "temperature": prompt.model.temperature,
            "max_tokens": prompt.model.max_tokens,
            "dataset": _relative(result.dataset, root),
            "split": result.split,
            "n": result.n,
            "metric": result.metric,
            "demos": len(prompt.demos),
        }
    )
    metrics = {
        **{_metric_name(key): value for key, value in result.metrics.items()},
        "score": result.score,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "latency_p50_s": result.latency_p50_s,
        "latency_p95_s": result.latency_p95_s,
        "model_calls": result.model_calls,
        "cache_hits": result.cache_hits,
        "errors": result.errors,
        "parse_failures": result.parse_failures,
        "wall_time_s": result.wall_time_s,
    }
    if result.cost_usd is not None:
        metrics["cost_usd"] = result.cost_usd
    try:
        with mlflow.start_run(run_name=f"eval {prompt.name} {result.split}") as run:
            mlflow.set_tags({"promptops.kind": "eval", "promptops.git_dirty": str(git_dirty).lower()})
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.log_text(prompt.to_yaml(), f"prompt/{prompt_file.name if prompt_file else prompt.name + '.yaml'}")
            mlflow.log_table(data=predictions_table(result, prompt), artifact_file="predictions.json")
            return run.info.run_id
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot log the eval to MLflow at {tracking_uri(root)}: {redact(str(exc)).splitlines()[0]}") from None


def predictions_table(result: "EvalResult", prompt: Prompt) -> dict[str, list[Any]]:
    """Columns of the per-example table: inputs, expected and predicted per field, cost of each answer."""
    table: dict[str, list[Any]] = {"source": [r.source for r in result.examples]}
    for spec in prompt.inputs:
        table[spec.name] = [_cell(r.inputs.get(spec.name)) for r in result.examples]
    for spec in prompt.outputs:
        table[f"expected.{spec.name}"] = [_cell(r.expected.get(spec.name)) for r in result.examples]
        table[f"predicted.{spec.name}"] = [_cell((r.predicted or {}).get(spec.name)) for r in result.examples]
    table["correct"] = [r.correct for r in result.examples]
    table["error"] = [r.error or "" for r in result.examples]
    table["input_tokens"] = [r.input_tokens for r in result.examples]
    table["output_tokens"] = [r.output_tokens for r in result.examples]
    table["latency_s"] = [r.latency_s for r in result.examples]
    table["cached"] = [bool(r.cache_hits and not r.model_calls) for r in result.examples]
    return table


def load_run(run_id: str, root: Optional[Path] = None) -> Any:
    """The MLflow run, for tests and notebooks that check what was logged."""
    return _mlflow(root).get_run(run_id)


def load_table(run_id: str, artifact_file: str = "predictions.json", root: Optional[Path] = None) -> Any:
    mlflow = _mlflow(root)
    return mlflow.load_table(artifact_file, run_ids=[run_id])


def _metric_name(key: str) -> str:
    return key.replace(":", "_")


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path
