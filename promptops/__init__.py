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

    from promptops.artifact import MetricSpec, Prompt, PromptListing
    from promptops.evaluation import Comparison, EvalResult, JudgeCheck, ProgressCallback
    from promptops.models import LocalModelListing, ModelHealth
    from promptops.optimizer import OptimizationResult, Progress
    from promptops.program import Approval, ApprovalRequest, Approver
    from promptops.runtime import ABReport, Answer, FeedbackAdded, GuardedProgram, NeedsReview, ReplayResult, RunResult, TraceSummary
    from promptops.versioning import ChannelMove, CheckReport, Drift, PromptDiff, PromptSource, PromptStatus, VersionHistory

# The result types, loaded on first use so `import promptops` stays fast.
_getattr, __dir__, _types = lazy_exports(__name__, {
    "artifact": "MetricSpec Prompt PromptListing",
    "evaluation": "Comparison EvalResult JudgeCheck",
    "models": "LocalModelListing ModelHealth",
    "optimizer": "OptimizationResult Progress",
    "program": "Approval ApprovalRequest",
    "runtime": "ABReport Answer FeedbackAdded GuardedProgram NeedsReview ReplayResult RunResult TraceSummary",
    "versioning": "ChannelMove CheckReport Drift PromptDiff PromptSource PromptStatus VersionHistory",
})
__getattr__ = _getattr
__all__ = sorted([
    *_types, "PromptopsError", "ab_report", "add_failed_feedback", "add_feedback", "check", "check_judge", "compare", "diff",
    "doctor", "evaluate", "init_project", "list_models", "list_prompts", "load", "load_prompt", "optimize", "promote",
    "record_feedback", "replay", "rollback", "run", "show", "status", "sync", "traces", "versions",
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
    """A prompt by name (`banking_intent`, looked up in `prompts/`) or by path to its YAML file."""
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

    `metric` overrides the prompt's: a name (`accuracy`, `f1`, `schema_validity`, `similarity`,
    `module:function`), a judge file (`judges/NAME.yaml`), or a `MetricSpec`.
    """
    import dataclasses

    from promptops.evaluation import evaluate as evaluate_prompt
    from promptops.artifact import Prompt, find_project_root, resolve_prompt_path

    prompt_file = None if isinstance(prompt, Prompt) else resolve_prompt_path(str(prompt))
    loaded = load_prompt(prompt_file or prompt)
    result = evaluate_prompt(
        loaded, data=data, split=split, model=model, limit=limit, threads=threads,
        cache=cache, metric=metric, on_progress=on_progress,
    )
    if not track:
        return result
    from promptops import tracking
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
    result = run_judge_check(spec, data, limit=limit, cache=cache, on_progress=on_progress)
    if not track:
        return result
    from promptops import tracking

    return dataclasses.replace(result, run_id=tracking.log_judge_check(result, spec))


def record_feedback(trace_id: str, *, correct: Optional[bool] = None, expected: Optional[dict[str, Any]] = None) -> None:
    """Tell promptops how a traced request went: was the answer right, what should it have been.

    Kept on the MLflow trace; `promptops feedback add --from-failed NAME` turns the corrected
    failures into eval rows, and `promptops ab-report NAME` counts the verdicts per arm.
    """
    from promptops.runtime import record_feedback as record

    record(trace_id, correct=correct, expected=expected)


def list_prompts() -> "list[PromptListing]":
    """Every prompt file of the project; a file that cannot be read is listed with its error, not raised."""
    from promptops.artifact import list_prompts as listings

    return listings()


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


def check(
    base: Optional[str] = None,
    *,
    split: str = "test",
    limit: Optional[int] = None,
    rule: Optional[str] = None,
    tolerance: Optional[float] = None,
    model: Optional[str] = None,
    track: bool = True,
    resamples: int = _DEFAULT_RESAMPLES,
    seed: int = 0,
    on_progress: "Optional[ProgressCallback]" = None,
) -> "CheckReport":
    """Every prompt changed since `base` (default: where HEAD left main) against its production version, by the gate
    `promote` applies: the CI check. `report.passed`, and `reports.markdown.check_markdown(report)` for a PR comment."""
    from promptops.versioning import check as check_changes

    return check_changes(base, split=split, limit=limit, rule=rule, tolerance=tolerance, model=model, track=track,
                         resamples=resamples, seed=seed, on_progress=on_progress)


def optimize(
    experiment: "str | Path",
    *,
    n_trials: Optional[int] = None,
    storage: Optional[str] = None,
    resume: bool = False,
    join: bool = False,
    workers: int = 1,
    write_winner: bool = True,
    write_anyway: bool = False,
    on_progress: "Optional[Callable[[Progress], None]]" = None,
) -> "OptimizationResult":
    """Search prompt and model variants within the experiment's budget; the Pareto front, the winner, its test comparison.

    The winner is committed as the prompt's next version with the `candidate` alias if it passes the gate on test;
    promoting it to production stays the explicit, gated step. `workers` > 1 runs that many processes on one study;
    `join` adds this process to the experiment's running study.
    """
    from promptops.optimizer import optimize as run_optimization

    return run_optimization(experiment, n_trials=n_trials, storage=storage, resume=resume, join=join, workers=workers,
                            write_winner=write_winner, write_anyway=write_anyway, on_progress=on_progress)


def promote(
    name: str,
    *,
    version: Optional[str] = None,
    channel: str = "production",
    data: "Optional[str | Path]" = None,
    split: str = "test",
    limit: Optional[int] = None,
    rule: Optional[str] = None,
    tolerance: Optional[float] = None,
    max_cost_usd: Optional[float] = None,
    force: bool = False,
    reason: Optional[str] = None,
) -> "ChannelMove":
    """Move `channel` of prompt `name` to `version` (default: the latest committed) through the eval gate, in git and
    MLflow's Prompt Registry, all or nothing. `force` (with a `reason`) promotes past a failed gate."""
    from promptops.versioning import promote as promote_version

    return promote_version(name, version=version, channel=channel, data=data, split=split, limit=limit, rule=rule,
                           tolerance=tolerance, max_cost_usd=max_cost_usd, force=force, reason=reason)


def rollback(name: str, *, channel: str = "production", to: Optional[str] = None, reason: Optional[str] = None) -> "ChannelMove":
    """Move `channel` of prompt `name` back to the version it served before its last move (or to `to`); no gate."""
    from promptops.versioning import rollback as rollback_channel

    return rollback_channel(name, channel=channel, to=to, reason=reason)


def status() -> "list[PromptStatus]":
    """Every prompt: its channels' versions, whether the working file differs from production, its last full eval."""
    from promptops.versioning import status as prompt_status

    return prompt_status()


def sync(prompts: Optional[list[str]] = None, *, repair: bool = True) -> "list[Drift]":
    """Where MLflow's Prompt Registry aliases disagree with the channels in git, and (with `repair`) set them as git says."""
    from promptops.versioning import sync as sync_registry

    return sync_registry(prompts, repair=repair)


def versions(prompt: str) -> "VersionHistory":
    """Every committed version of `prompt`'s file (v1 the oldest), with its channels and last full eval."""
    from promptops.versioning import versions as history

    return history(prompt)


def show(reference: str) -> "PromptSource":
    """`NAME@REF`'s file as it was at that version, commit, tag, branch or channel; `NAME` alone: the working file."""
    from promptops.versioning import show as source

    return source(reference)


def diff(old: str, new: str) -> "PromptDiff":
    """What changed from `old` to `new` (`NAME@REF` each, `NAME` for the working file), section by section."""
    from promptops.versioning import diff as prompt_diff

    return prompt_diff(old, new)


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


def replay(trace_id: str, *, version: Optional[str] = None, model: Optional[str] = None, cache: bool = True,
           live_tools: bool = False) -> "ReplayResult":
    """Re-run a traced request (against another version or model if given) and pair its outputs with the original's.
    An agent's tools return their recorded results unless `live_tools`."""
    from promptops.runtime import replay as replay_trace

    return replay_trace(trace_id, version=version, model=model, cache=cache, live_tools=live_tools)


def add_feedback(trace_id: str, expected: Optional[dict[str, Any]] = None, *, split: str = "dev") -> "FeedbackAdded":
    """Append a traced request's inputs with its `expected` outputs (or those recorded on the trace) to its prompt's eval
    set `split`, as one commit."""
    from promptops.runtime import add_feedback as append

    return append(trace_id, expected, split=split)


def add_failed_feedback(prompt: str, *, split: str = "dev", limit: int = 200) -> "FeedbackAdded":
    """Every recent failing request of `prompt` that has corrected outputs recorded, appended to its eval set; one commit."""
    from promptops.runtime import add_failed

    return add_failed(prompt, split=split, limit=limit)


def ab_report(
    prompt: str,
    *,
    since: "Optional[str | date | datetime]" = None,
    reference: Optional[str] = None,
    resamples: int = _DEFAULT_RESAMPLES,
    confidence: float = _DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> "ABReport":
    """Per-arm outcomes of `prompt`'s A/B split, from its traces and their feedback, with intervals and Fisher's test."""
    from promptops.runtime import ab_report as report

    return report(prompt, since=since, reference=reference, resamples=resamples, confidence=confidence, seed=seed)
