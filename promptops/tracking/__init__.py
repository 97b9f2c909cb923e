"""The only package that talks to MLflow: runs, tables, the Prompt Registry, traces and assessments.

- `_store`: the tracking URI, the one-time check that the store answers (`check_store`), the prompt's experiment,
  and runs MLflow could not take, saved as JSON instead (`UnloggedError`).
- `_runs`: one run per eval, comparison, promotion or rollback; reading eval runs back.
- `_registry`: Prompt Registry versions and the channel aliases.
- `_study`: an optimization's parent run and its nested trial runs.
- `_traces`: the root span of a served request, MLflow's DSPy spans, searching and reading traces as `TraceRecord`s.
- `_assessments`: feedback and expectations on traces (`TraceAssessment` records).
- `_models`: agent versions as LoggedModels (MLflow's Agent versions page), linked to evals and traces.
- `_judging`: judged evals in MLflow's GenAI views (Judges, Datasets, a trace per example with its
  assessments) and judge checks as runs.

MLflow itself is imported inside the functions that use it, so importing this package stays cheap.
"""

from promptops.tracking._assessments import TraceAssessment, log_feedback
from promptops.tracking._runs import log_judge_check
from promptops.tracking._models import agent_model_id, mark_agent_version
from promptops.tracking._registry import (
    load_registered_text,
    mark_move_pending,
    pending_move,
    register_prompt_version,
    registry_aliases,
    registry_version_tags,
    registry_versions,
    set_alias,
)
from promptops.tracking._runs import last_evals, load_run, load_table, log_audit, log_comparison, log_eval, predictions_table
from promptops.tracking._store import check_store, display_uri, tracking_uri
from promptops.tracking._study import (
    close_trial_run,
    finish_study_run,
    log_front,
    log_test_comparison,
    log_trial,
    start_study_run,
    tag_study_winner,
)
from promptops.tracking._traces import (
    RequestSpan,
    TraceRecord,
    annotate_current_span,
    experiment_id,
    flush_traces,
    get_trace,
    request_span,
    search_traces,
    with_dspy_spans,
)

__all__ = [
    "RequestSpan",
    "TraceAssessment",
    "TraceRecord",
    "agent_model_id",
    "annotate_current_span",
    "check_store",
    "close_trial_run",
    "display_uri",
    "experiment_id",
    "finish_study_run",
    "flush_traces",
    "get_trace",
    "last_evals",
    "load_registered_text",
    "load_run",
    "load_table",
    "log_audit",
    "log_comparison",
    "log_eval",
    "log_feedback",
    "log_judge_check",
    "mark_agent_version",
    "mark_move_pending",
    "pending_move",
    "log_front",
    "log_test_comparison",
    "log_trial",
    "predictions_table",
    "register_prompt_version",
    "registry_aliases",
    "registry_version_tags",
    "registry_versions",
    "request_span",
    "search_traces",
    "set_alias",
    "start_study_run",
    "tag_study_winner",
    "tracking_uri",
    "with_dspy_spans",
]
