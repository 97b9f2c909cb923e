"""The MLflow side of an optimization study: one parent run, one nested run per trial, the front and its plot.

Runs are addressed by id through `MlflowClient`, never through MLflow's "active run", so a
resumed study reopens its own parent run and a crash cannot leave another run active.
Everything logged is redacted: a model's params may name an endpoint, never a key.
"""

from __future__ import annotations

from typing import Any, Optional

from promptops._secrets import redact, redact_data, redact_mapping, redact_yaml
from promptops.errors import TrackingError
from promptops.tracking._store import _experiment, _first_line, _mlflow, display_uri


def _client() -> Any:
    return _mlflow().MlflowClient()


def _guard(action: str):
    """Turn an MLflow failure into one sentence naming the store."""

    def wrap(function):
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except TrackingError:
                raise
            except Exception as exc:
                raise TrackingError(f"cannot {action} in MLflow at {display_uri()}: {_first_line(exc)}") from None

        run.__doc__, run.__name__ = function.__doc__, function.__name__
        return run

    return wrap


@_guard("start the optimization run")
def start_study_run(prompt_name: str, study_name: str, params: dict[str, Any], resume_run_id: Optional[str] = None) -> str:
    """The parent run of a study; a resumed study reopens the run it started with."""
    client = _client()
    if resume_run_id:
        client.update_run(resume_run_id, status="RUNNING")
        return resume_run_id
    experiment_id = _experiment(_mlflow(), prompt_name)
    run = client.create_run(experiment_id, run_name=f"optimize {study_name}", tags={"promptops.kind": "optimize", "promptops.study": study_name})
    _log(client, run.info.run_id, params=params)
    return run.info.run_id


@_guard("log a trial")
def log_trial(
    parent_run_id: str,
    study_name: str,
    number: int,
    state: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    candidate_yaml: Optional[str],
    run_id: Optional[str] = None,
) -> str:
    """One nested run per trial: its configuration, what it scored and cost, and the candidate prompt."""
    client = _client()
    if run_id is None:
        parent = client.get_run(parent_run_id)
        run = client.create_run(
            parent.info.experiment_id,
            run_name=f"trial {number}",
            tags={"mlflow.parentRunId": parent_run_id, "promptops.kind": "trial", "promptops.study": study_name,
                  "promptops.trial": str(number)},
        )
        run_id = run.info.run_id
        _log(client, run_id, params=params)
    _log(client, run_id, metrics=metrics, tags={"promptops.trial_state": state})
    if candidate_yaml is not None:
        client.log_text(run_id, redact_yaml(candidate_yaml), "candidate/prompt.yaml")
    if state != "RUNNING":
        client.set_terminated(run_id, status={"COMPLETE": "FINISHED", "PRUNED": "FINISHED"}.get(state, "FAILED"))
    return run_id


@_guard("close a trial run")
def close_trial_run(run_id: str, status: str = "KILLED") -> None:
    """A trial that was interrupted (Ctrl-C, kill -9) ends as KILLED, not forever RUNNING."""
    client = _client()
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status=status)


@_guard("log the Pareto front")
def log_front(parent_run_id: str, table: dict[str, list[Any]], figure: Any, summary: dict[str, Any], metrics: dict[str, float]) -> None:
    client = _client()
    client.log_table(parent_run_id, data=redact_data(table), artifact_file="pareto_front.json")
    if figure is not None:
        client.log_figure(parent_run_id, figure, "pareto_front.png")
    client.log_dict(parent_run_id, redact_data(summary), "study_summary.json")
    _log(client, parent_run_id, metrics=metrics)


@_guard("close the optimization run")
def finish_study_run(parent_run_id: str, status: str) -> None:
    _client().set_terminated(parent_run_id, status=status)


def _log(client: Any, run_id: str, *, params: Optional[dict[str, Any]] = None, metrics: Optional[dict[str, float]] = None,
         tags: Optional[dict[str, str]] = None) -> None:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.time import get_current_time_millis

    now = get_current_time_millis()
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in (metrics or {}).items() if value is not None],
        params=[Param(key, str(value)[:6000]) for key, value in redact_mapping(params or {}).items()],
        tags=[RunTag(key, redact(str(value))) for key, value in (tags or {}).items()],
    )


@_guard("log the test comparison")
def log_test_comparison(parent_run_id: str, test: Any) -> None:
    """The winner and the reference on the test split, side by side on the parent run."""
    client = _client()
    metrics = {"test_winner_score": test.winner_score, "test_reference_score": test.reference_score,
               "test_winner_cost_usd": test.winner_cost_usd, "test_reference_cost_usd": test.reference_cost_usd, "test_n": test.n}
    tags = {"promptops.test_reference": test.reference_label}
    verdict = getattr(test, "verdict", None)
    if verdict is not None:
        summary = verdict.summary()
        metrics.update({"test_gate_difference": summary["difference"], "test_gate_ci_low": summary["ci_low"],
                        "test_gate_ci_high": summary["ci_high"], "test_gate_p_value": summary["p_value"]})
        tags.update({"promptops.gate.passed": str(verdict.passed).lower(), "promptops.gate.rule": verdict.rule,
                     "promptops.gate.tolerance": str(verdict.tolerance)})
    _log(client, parent_run_id, metrics=metrics, tags=tags)


@_guard("tag the winner")
def tag_study_winner(parent_run_id: str, version: Optional[str], commit: Optional[str]) -> None:
    tags = {"promptops.winner_version": version or "unchanged"}
    if commit:
        tags["promptops.winner_commit"] = commit
    _log(_client(), parent_run_id, tags=tags)
