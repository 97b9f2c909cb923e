"""Contenders: prompts named by `NAME@REF`, compared on committed data, the comparison logged.

Where refs meet the evaluation: `contender` resolves a reference as `load` does, `compare` runs
evaluation's pairing of two refs and logs it, and `require_committed_data` keeps the gate on rows
a commit holds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from promptops.artifact import Prompt
from promptops.errors import PromptopsError
from promptops.evaluation import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, Comparison, Contender, EvalOptions, compare_contenders

if TYPE_CHECKING:
    from promptops.evaluation import ProgressCallback


def compare(
    a: str,
    b: str,
    options: "Optional[EvalOptions]" = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    track: bool = True,
    on_progress: "Optional[ProgressCallback]" = None,
) -> Comparison:
    """`NAME@A` against `NAME@B` (a version, commit, channel, or the working file without @) on the same examples of B's
    eval set (the test split unless `options` says); with `track`, the comparison is logged as an MLflow run (the store
    is checked first, and a comparison it cannot take is saved as JSON: `UnloggedError`)."""
    if track:
        from promptops import tracking

        tracking.check_store()
    comparison = compare_contenders(contender(a), contender(b), options or EvalOptions(split="test"), resamples=resamples,
                                    confidence=confidence, seed=seed, on_progress=on_progress)
    if track:
        from promptops import tracking

        comparison = dataclasses.replace(comparison, run_id=tracking.log_comparison(comparison, kind="compare"))
    return comparison


def contender(reference: str) -> Contender:
    """`NAME@v3`, `NAME@production`, `NAME@<commit>`, or `NAME` for the working file, as `load` resolves it."""
    from promptops.versioning._channels import served_version

    served = served_version(reference)
    short = served.commit[:8] if served.commit else None
    if served.label == "working file":
        label = f"working file ({short})" if short else "working file"
    else:
        label = f"{served.label} ({short})" if short else served.label
        label = f"{served.channel} {label}" if served.channel else label
    return Contender(reference, label, served.prompt, served.commit)


def require_committed_data(prompt: Prompt, data: Any = None, split: str = "test") -> None:
    """The gate judges committed data only: an uncommitted edit to the eval set would decide on rows no commit holds."""
    from promptops.versioning import _git as versions
    from promptops.evaluation import default_data_path, split_file
    from promptops.errors import where

    path = split_file(Path(data) if data else default_data_path(prompt), split,  # as load_dataset finds it
                      written=str(data) if data else prompt.eval.data)
    try:
        dirty = versions.has_uncommitted_changes(path)
    except PromptopsError:
        return  # outside a repository: nothing to compare against, as for the prompt file
    if dirty:
        raise PromptopsError(
            f"{where(path)} has uncommitted changes: the gate judges committed data only; commit them (or git stash) and run again")
