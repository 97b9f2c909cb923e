"""promptops: prompts as versioned, evaluated, optimizable production artifacts.

The public API. Everything the CLI does is one call here, so a notebook can do it too:

    import promptops
    prompt = promptops.load_prompt("banking_intent")
    result = promptops.evaluate("banking_intent", split="dev", limit=30)
    result.score, result.cost_usd, result.latency_p95_s

Each function has real keyword parameters and returns a frozen result type exported here
(`EvalResult`, `Comparison`, `ChannelMove`, `CheckReport`, `OptimizationResult`, ...). Heavy
libraries (dspy, mlflow, llama.cpp) load on first use, not on import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from promptops._env import prepare_environment
from promptops._lazy import lazy_exports
from promptops.errors import PromptopsError

prepare_environment()

if TYPE_CHECKING:
    from datetime import date, datetime

    from promptops.artifact import MetricSpec, Prompt, PromptListing, list_prompts
    from promptops.evaluation import Comparison, EvalResult, JudgeCheck, ProgressCallback
    from promptops.models import LocalModelListing, ModelHealth
    from promptops.optimizer import OptimizationResult, Progress, TrialListing, optimize, parse_trial_reference, trial_prompt, trials
    from promptops.program import Approval, ApprovalRequest, Approver
    from promptops.runtime import (
        ABReport, Answer, FeedbackAdded, GuardedProgram, NeedsReview, ReplayResult, RunResult, TraceSummary, ab_report, add_feedback,
        record_feedback, replay,
    )
    from promptops.versioning import (
        ChannelMove, CheckReport, Drift, PromptDiff, PromptSource, PromptStatus, StatusReport, VersionHistory, check, diff, promote, rollback, show,
        status, sync, versions,
    )

# The packages' own functions and result types, re-exported as they are and loaded on first use, so
# `import promptops` stays fast; the functions defined below compose several packages.
_getattr, __dir__, _exports = lazy_exports(__name__, {
    "artifact": "MetricSpec Prompt PromptListing list_prompts",
    "evaluation": "Comparison EvalResult JudgeCheck",
    "models": "LocalModelListing ModelHealth",
    "optimizer": "OptimizationResult Progress TrialListing optimize parse_trial_reference trial_prompt trials",
    "program": "Approval ApprovalRequest",
    "runtime": "ABReport Answer FeedbackAdded GuardedProgram NeedsReview ReplayResult RunResult TraceSummary ab_report add_feedback "
               "record_feedback replay",
    "versioning": "ChannelMove CheckReport Drift PromptDiff PromptSource PromptStatus StatusReport VersionHistory check diff promote rollback "
                  "show status sync versions",
})
__getattr__ = _getattr
__all__ = sorted([
    *_exports, "PromptopsError", "add_failed_feedback", "check_judge", "compare", "doctor", "evaluate", "init_project",
    "list_models", "load", "load_prompt", "run", "traces",
])
__version__ = "0.1.0"

_DEFAULT_RESAMPLES = 10_000  # promptops.evaluation's DEFAULT_RESAMPLES and DEFAULT_CONFIDENCE, without importing scipy here
_DEFAULT_CONFIDENCE = 0.95


def init_project(path: "str | Path" = ".") -> Path:
    """Start a project in `path`: an example prompt with its eval set and experiment, a README and a
    .gitignore, committed to git; `promptops eval card_intent --limit 3` then runs there as it is.

    Refused, in one sentence, where a `prompts/` folder already exists.
    """
    from promptops.scaffold import init_project as write_project

    return write_project(path)


def doctor(models: Optional[list[str]] = None, *, timeout_s: float = 180.0) -> "list[ModelHealth]":
    """Load each embedded model (all by default) in a child process and make one constrained call.

    A crash of llama.cpp on this CPU is reported in the result, never raised in the caller.
    """
    from promptops.models import diagnose

    return diagnose(models, timeout_s=timeout_s)


def load_prompt(reference: "str | Path | Prompt") -> "Prompt":
    """A prompt by name (`banking_intent`, read from `prompts/banking_intent.yaml`) or by the path of that file.

    Only files in the project's `prompts/` folder are read: `../x`, an absolute path elsewhere or a symlink out of the
    project is refused (`PromptReferenceError`). `promptops.artifact.load_prompt_file` reads a prompt file anywhere."""
    from promptops.artifact import Prompt, load_prompt_file, resolve_prompt_path

    if isinstance(reference, Prompt):
        return reference
    return load_prompt_file(resolve_prompt_path(str(reference)))


def evaluate(
    prompt: "str | Path | Prompt",
    *,
    data: Optional[str | Path] = None,
    split: str = "dev",
    model: Optional[str] = None,
    limit: Optional[int] = None,
    threads: Optional[int] = None,
    cache: bool = True,
    metric: "str | MetricSpec | None" = None,
    track: bool = True,
    on_progress: "Optional[ProgressCallback]" = None,
) -> "EvalResult":
    """Evaluate a prompt on an eval split and, with `track`, log the run to MLflow.

    With `track`, the store is checked before any model call. If the run cannot be logged after the
    eval, `promptops.errors.UnloggedError` is raised: its `result` is the `EvalResult`, its `saved_to`
    the JSON file under `unlogged-runs/` that holds the run instead.

    `metric` overrides the prompt's: a name (`accuracy`, `f1`, `schema_validity`, `similarity`,
    `module:function`), a judge file (`judges/NAME.yaml`), or a `MetricSpec`.
    """
    import dataclasses

    from contextlib import nullcontext

    from promptops.evaluation import evaluate as evaluate_prompt
    from promptops.artifact import Prompt, errors_placed_in, find_project_root, resolve_prompt_path, written_values

    prompt_file = None if isinstance(prompt, Prompt) else resolve_prompt_path(str(prompt))
    loaded = load_prompt(prompt_file or prompt)
    if track:
        from promptops import tracking

        tracking.check_store()  # before the model calls: a store that does not answer is said now, not after them
    # An unknown model, metric or eval set that the prompt file names is reported at its line; one passed here is not.
    placing = errors_placed_in(prompt_file, written_values(loaded, model=not model, metric=metric is None, data=not data)) \
        if prompt_file else nullcontext()
    with placing:
        result = evaluate_prompt(
            loaded, data=data, split=split, model=model, limit=limit, threads=threads,
            cache=cache, metric=metric, on_progress=on_progress,
        )
    if not track:
        return result
    from promptops.versioning import file_revision

    revision = file_revision(prompt_file) if prompt_file else None
    run_id = tracking.log_eval(
        result,
        loaded.with_changes(model={**loaded.model.model_dump(), "id": model}) if model else loaded,
        prompt_file=prompt_file,
        git_commit=revision.commit if revision else None,
        git_dirty=revision.dirty if revision else True,
        root=find_project_root(),
    )
    return dataclasses.replace(result, run_id=run_id)


def load(
    reference: str,
    *,
    model: Optional[str] = None,
    cache: bool = True,
    key: Optional[str] = None,
    split: Optional[dict[str, float]] = None,
    guardrails: bool = True,
    trace: bool = True,
    approve: "Optional[Approver]" = None,
) -> "GuardedProgram | Any":
    """The prompt `reference` names, ready to serve: call it with the input fields, get a `dspy.Prediction`.

    `NAME@production` (or staging, candidate) reads the channel from git, or from MLflow's
    Prompt Registry (`prompts:/NAME@production`) when the repository is not available;
    `NAME@v3` and `NAME@<commit>` read that version; `NAME` alone the working file.

    The result applies the prompt's `guardrails:` (input checks, retries, caps, breaker,
    fallbacks) and traces each request to MLflow. Under `guardrails.output.min_confidence` a
    request whose answer is less sure returns a `NeedsReview` (the `Answer` held for a person)
    instead of a prediction: check `isinstance(result, promptops.NeedsReview)`. `key` names
    the user (per-key cap and rate limit; only its hash is traced). `split={"production": 0.9, "candidate": 0.1}` with a `key`
    picks a channel per user, stable across calls and processes (an A/B test; the arm is traced).
    `guardrails=False` returns the plain DSPy program.

    An agent (a prompt with `tools:`) runs DSPy's ReAct over its tools. A tool marked
    `approval: required` runs only if `approve` says so: it gets an `ApprovalRequest` (tool,
    arguments, trace id) and answers `Approval.approve()`, `Approval.deny(reason)`,
    `Approval.edit(args)` or a bool. Without `approve` such calls are denied; a denial is an
    observation the agent reacts to, and both the request and the answer are in the trace.
    """
    from promptops.versioning import served_version

    arm = None
    if split is not None:
        from promptops.runtime import choose_arm

        if key is None:
            raise PromptopsError("an A/B split needs a key (the user id) so each user stays in one arm")
        name = reference.partition("@")[0]
        arm = choose_arm(split, key, salt=name)
        reference = f"{name}@{arm}"
    served = served_version(reference)
    if not guardrails:
        from promptops.program import build_program

        return build_program(served.prompt, model=model, cache=cache)
    from promptops.runtime import GuardedProgram

    return GuardedProgram(served, model=model, cache=cache, key=key, arm=arm, trace=trace, approve=approve)


def check_judge(
    judge: str,
    data: "str | Path",
    *,
    limit: Optional[int] = None,
    cache: bool = True,
    track: bool = True,
    on_progress: "Optional[ProgressCallback]" = None,
) -> "JudgeCheck":
    """How far to trust a judge: its scores on rows a person labelled, as accuracy, Cohen's kappa and a confusion table.

    `judge` is a judge file (`NAME` for judges/NAME.yaml, or a path) or a prompt whose eval.metric is a judge;
    `data` is JSONL rows `{"inputs": {...}, "answer": {...}, "reference": {...}, "label": "pass"}` (reference optional).
    """
    import dataclasses

    from promptops.evaluation import check_judge as run_judge_check, find_judge

    spec = find_judge(judge)
    if track:
        from promptops import tracking

        tracking.check_store()
    result = run_judge_check(spec, data, limit=limit, cache=cache, on_progress=on_progress)
    if not track:
        return result
    from promptops import tracking

    return dataclasses.replace(result, run_id=tracking.log_judge_check(result, spec))




def list_models() -> "list[LocalModelListing]":
    """The embedded models and whether their weights are installed here."""
    from promptops.models import list_local_models

    return list_local_models()


def compare(
    a: str,
    b: str,
    *,
    data: "Optional[str | Path]" = None,
    split: str = "test",
    limit: Optional[int] = None,
    model: Optional[str] = None,
    metric: "str | MetricSpec | None" = None,
    threads: Optional[int] = None,
    cache: bool = True,
    resamples: int = _DEFAULT_RESAMPLES,
    confidence: float = _DEFAULT_CONFIDENCE,
    seed: int = 0,
    track: bool = True,
    on_progress: "Optional[ProgressCallback]" = None,
) -> "Comparison":
    """`NAME@A` against `NAME@B` (a version, commit, channel, or the working file without @) on the same examples of
    B's eval set: the difference with a paired bootstrap interval, McNemar's test, cost and latency; logged to MLflow."""
    from promptops.evaluation import EvalOptions
    from promptops.versioning import compare as compare_versions

    options = EvalOptions(data=data, split=split, limit=limit, model=model, metric=metric, threads=threads, cache=cache)
    return compare_versions(a, b, options, resamples=resamples, confidence=confidence, seed=seed, track=track, on_progress=on_progress)




















def run(
    reference: str,
    inputs: dict[str, Any],
    *,
    model: Optional[str] = None,
    key: Optional[str] = None,
    trace: bool = True,
    approve: "Optional[Approver]" = None,
    on_tool_calls: "Optional[Callable[[list[dict[str, Any]]], None]]" = None,
) -> "RunResult":
    """One request to `reference` (`NAME@production`, `@vN`, ...) within its guardrails; its trace is written before this
    returns. `result.review` is set when the answer is held for a person; a refusal raises `GuardrailError`."""
    from promptops.runtime import run_request

    return run_request(reference, inputs, model=model, key=key, trace=trace, approve=approve, on_tool_calls=on_tool_calls)


def traces(prompt: str, *, failed: bool = False, needs_review: bool = False, limit: int = 20) -> "list[TraceSummary]":
    """`prompt`'s most recent traced requests, newest first; only the refused or failed, or those held for review."""
    from promptops.runtime import search_traces

    return search_traces(prompt, failed=failed, needs_review=needs_review, limit=limit)






def add_failed_feedback(prompt: str, *, split: str = "dev", limit: int = 200) -> "FeedbackAdded":
    """Every recent failing request of `prompt` that has corrected outputs recorded, appended to its eval set; one commit."""
    from promptops.runtime import add_failed

    return add_failed(prompt, split=split, limit=limit)

