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


# --- Prompt Registry ------------------------------------------------------------------
# A registry version holds the prompt file's exact YAML as its template, tagged with the git
# commit and version it came from, so `prompts:/NAME@production` can rebuild the program when
# only the tracking server is reachable.


def _client(root: Optional[Path] = None) -> Any:
    mlflow = _mlflow(root)
    return mlflow.MlflowClient()


def register_prompt_version(
    prompt: Prompt, *, git_commit: str, label: str, metrics: Optional[dict[str, float]] = None, root: Optional[Path] = None
) -> int:
    """The registry version holding exactly this content at this commit; registered once, reused after."""
    client = _client(root)
    try:
        for version in _registry_versions(client, prompt.name):
            if version.tags.get("git_commit") == git_commit and version.tags.get("content_hash") == prompt.content_hash:
                return int(version.version)
        tags = {"git_commit": git_commit, "prompt_version": label, "content_hash": prompt.content_hash, "model": prompt.model.id}
        tags.update({f"metric.{key}": f"{value:.6g}" for key, value in (metrics or {}).items()})
        registered = client.register_prompt(
            name=prompt.name, template=prompt.to_yaml(), commit_message=f"{label} ({git_commit[:8]})", tags=redact_mapping(tags)
        )
        return int(registered.version)
    except Exception as exc:
        raise TrackingError(f"cannot register {prompt.name} {label} in the MLflow Prompt Registry: {_first_line(exc)}") from None


def registry_aliases(name: str, root: Optional[Path] = None) -> dict[str, int]:
    """Alias → registry version for every version of the prompt."""
    client = _client(root)
    aliases: dict[str, int] = {}
    try:
        for version in _registry_versions(client, name):
            # search results leave aliases empty; a direct read fills them
            for alias in client.get_prompt_version(name, version.version).aliases or ():
                aliases[alias] = int(version.version)
    except Exception as exc:
        raise TrackingError(f"cannot read the MLflow Prompt Registry for {name}: {_first_line(exc)}") from None
    return aliases


def registry_versions(name: str, root: Optional[Path] = None) -> dict[int, dict[str, str]]:
    """Registry version → its tags, for every version of the prompt still in the registry."""
    client = _client(root)
    try:
        return {int(version.version): dict(version.tags) for version in _registry_versions(client, name)}
    except Exception as exc:
        raise TrackingError(f"cannot read the MLflow Prompt Registry for {name}: {_first_line(exc)}") from None


def registry_version_tags(name: str, version: int, root: Optional[Path] = None) -> dict[str, str]:
    return dict(_client(root).get_prompt_version(name, version).tags)


def set_alias(name: str, alias: str, version: Optional[int], root: Optional[Path] = None) -> None:
    """Point `alias` at `version`, or remove it when version is None."""
    client = _client(root)
    try:
        if version is None:
            if alias in registry_aliases(name, root):
                client.delete_prompt_alias(name, alias)
        else:
            client.set_prompt_alias(name, alias, int(version))
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot set alias {alias!r} of {name} in the MLflow Prompt Registry: {_first_line(exc)}") from None


def load_registered_text(name: str, alias: str, root: Optional[Path] = None) -> tuple[str, dict[str, str]]:
    """The YAML and tags of `prompts:/NAME@alias`."""
    mlflow = _mlflow(root)
    try:
        version = mlflow.genai.load_prompt(f"prompts:/{name}@{alias}", link_to_model=False, cache_ttl_seconds=0)
    except Exception as exc:
        raise TrackingError(f"cannot load prompts:/{name}@{alias} from {tracking_uri(root)}: {_first_line(exc)}") from None
    return version.template, dict(version.tags)


def log_audit(name: str, entry: dict[str, Any], root: Optional[Path] = None) -> str:
    """A promotion or rollback as an MLflow run in the prompt's experiment, for the record."""
    mlflow = _mlflow(root)
    _experiment(mlflow, name)
    try:
        with mlflow.start_run(run_name=f"{entry['action']} {name} {entry['channel']}") as run:
            mlflow.set_tags({"promptops.kind": entry["action"], "promptops.channel": entry["channel"]})
            mlflow.log_params(redact_mapping({k: v for k, v in entry.items() if not isinstance(v, dict)}))
            for side, values in (entry.get("metrics") or {}).items():
                mlflow.log_metrics({f"{side}.{key}": value for key, value in values.items() if isinstance(value, (int, float))})
            mlflow.log_dict(entry, "audit.json")
            return run.info.run_id
    except Exception as exc:
        raise TrackingError(f"cannot write the audit run for {name} to MLflow: {_first_line(exc)}") from None


def _registry_versions(client: Any, name: str) -> list[Any]:
    if client.get_prompt(name) is None:
        return []
    versions, token = [], None
    while True:
        page = client.search_prompt_versions(name, max_results=100, page_token=token)
        versions.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return versions


def _first_line(exc: BaseException) -> str:
    return (redact(str(exc)).strip().splitlines() or [type(exc).__name__])[0]


def last_evals(name: str, root: Optional[Path] = None) -> dict[str, dict[str, Any]]:
    """The latest eval run of each prompt content hash: hash → {metric, score, cost_usd, run_id}."""
    mlflow = _mlflow(root)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        return {}
    runs = mlflow.MlflowClient().search_runs(
        [experiment.experiment_id], "tags.`promptops.kind` = 'eval'", order_by=["attributes.start_time DESC"], max_results=200
    )
    latest: dict[str, dict[str, Any]] = {}
    for run in runs:
        content_hash = run.data.params.get("prompt_hash")
        if content_hash and content_hash not in latest:
            latest[content_hash] = {
                "metric": run.data.params.get("metric"),
                "score": run.data.metrics.get("score"),
                "cost_usd": run.data.metrics.get("cost_usd"),
                "split": run.data.params.get("split"),
                "n": run.data.params.get("n"),
                "run_id": run.info.run_id,
            }
    return latest
