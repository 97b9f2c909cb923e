"""promptops: prompts as versioned, evaluated, optimizable production artifacts.

The public API. Everything the CLI does is a call here, so a notebook can do it too:

    import promptops
    prompt = promptops.load_prompt("banking_intent")
    result = promptops.evaluate("banking_intent", split="dev", limit=30)
    result.score, result.cost_usd, result.latency_p95_s

Heavy libraries (dspy, mlflow, llama.cpp) load on first use, not on import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from promptops._env import prepare_environment
from promptops.errors import PromptopsError

prepare_environment()

if TYPE_CHECKING:
    from promptops.artifact import Prompt
    from promptops.evaluation import EvalResult, ProgressCallback
    from promptops.evaluation import JudgeCheck
    from promptops.artifact import MetricSpec
    from promptops.models import ModelHealth
    from promptops.program import Approval, ApprovalRequest, Approver
    from promptops.runtime import Answer, NeedsReview

__all__ = ["Answer", "Approval", "ApprovalRequest", "EvalResult", "NeedsReview", "Prompt", "PromptopsError", "check", "check_judge", "compare",
           "doctor", "evaluate",
           "init_project", "load", "load_prompt", "optimize", "promote", "record_feedback", "rollback"]
__version__ = "0.1.0"


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
) -> Any:
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


def compare(a: str, b: str, **options: Any) -> Any:
    """`NAME@A` against `NAME@B` on the same examples, with intervals and McNemar's test; see `promptops.versioning.compare`."""
    from promptops.versioning import compare as compare_versions

    return compare_versions(a, b, **options)


def check(base: Optional[str] = None, **options: Any) -> Any:
    """Every prompt changed since `base` against its production version, as a CI gate; see `promptops.versioning._check.check`."""
    from promptops.versioning import check as check_changes

    return check_changes(base, **options)


def optimize(experiment: "str | Path", **options: Any) -> Any:
    """Search prompt and model variants within the experiment's budget; see `promptops.optimizer.optimize`.

    The winner is committed as the prompt's next version with the `candidate` alias;
    promoting it to production stays the explicit, gated step.
    """
    from promptops.optimizer import optimize as run_optimization

    return run_optimization(experiment, **options)


def promote(name: str, **options: Any) -> Any:
    """Move a channel (default production) to a version, through the eval gate; see `promotion.promote`."""
    from promptops.versioning import promote as promote_version

    return promote_version(name, **options)


def rollback(name: str, **options: Any) -> Any:
    """Move a channel back to its previous version; see `promotion.rollback`."""
    from promptops.versioning import rollback as rollback_channel

    return rollback_channel(name, **options)


def __getattr__(name: str) -> Any:
    # Types re-exported lazily so `import promptops` stays fast.
    if name == "Prompt":
        from promptops.artifact import Prompt

        return Prompt
    if name == "EvalResult":
        from promptops.evaluation import EvalResult

        return EvalResult
    if name in ("Approval", "ApprovalRequest"):
        from promptops import program

        return getattr(program, name)
    if name in ("Answer", "NeedsReview"):
        from promptops import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'promptops' has no attribute {name!r}")
