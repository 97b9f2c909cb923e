"""The winner of a study becomes a new version of the prompt, with the `candidate` alias.

Its test-split score is measured beside the production version's (or, before any
promotion, the prompt as committed) on the same examples. Writing it is one step that
fully happens or leaves git and the registry as they were: the prompt file is committed,
then the `candidate` channel is moved in git and the registry; if the move fails the
commit is undone. Promotion to production stays the explicit, gated step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from promptops.artifact import Prompt, write_prompt_file
from promptops.budget import Budget, BudgetExhausted, spending_limit
from promptops.errors import PromptopsError


@dataclass(frozen=True)
class TestComparison:
    """Winner and reference on the same test examples; None where the budget did not allow the eval."""

    split: str
    n: int
    metric: str
    winner_score: Optional[float]
    reference_score: Optional[float]
    reference_label: str
    winner_cost_usd: Optional[float]
    reference_cost_usd: Optional[float]
    note: Optional[str] = None


@dataclass(frozen=True)
class AdoptedWinner:
    version: Optional[str]  # "v4"
    commit: Optional[str]
    channel_moved: bool
    note: str


def compare_on_test(winner: Prompt, base: Prompt, prompt_file: Path, *, data: Optional[str], metric: str, budget: Budget) -> TestComparison:
    """Evaluate winner and reference on test, within what is left of the study's spend and call caps.

    The timeout bounds the search, not this last measurement: a study stopped by its timeout
    still gets its winner scored.
    """
    from promptops.data import load_dataset
    from promptops.evaluation import evaluate

    reference, label = _reference(base, prompt_file)
    dataset = load_dataset(base, data, "test")
    scores: dict[str, Any] = {}
    note = None
    remaining = Budget(budget.max_cost_usd, budget.max_model_calls, None, budget.spent_usd, budget.model_calls)
    with spending_limit(remaining):
        for key, prompt in (("reference", reference), ("winner", winner)):
            if key == "winner" and prompt.content_hash == reference.content_hash:
                scores[key] = scores["reference"]
                continue
            try:
                scores[key] = evaluate(prompt, dataset=dataset, metric=metric, split="test")
            except BudgetExhausted as exc:
                note = f"test eval not finished: {exc}"
                break
    winner_result, reference_result = scores.get("winner"), scores.get("reference")
    budget.spent_usd, budget.model_calls = remaining.spent_usd, remaining.model_calls
    return TestComparison(
        split="test", n=len(dataset), metric=metric,
        winner_score=winner_result.score if winner_result else None,
        reference_score=reference_result.score if reference_result else None,
        reference_label=label,
        winner_cost_usd=winner_result.cost_usd if winner_result else None,
        reference_cost_usd=reference_result.cost_usd if reference_result else None,
        note=note,
    )


def _reference(base: Prompt, prompt_file: Path) -> tuple[Prompt, str]:
    """Production if the prompt has one, else the prompt as the study started from."""
    from promptops.promotion import read_channels

    try:
        from promptops import versions

        state = read_channels(base.name)
        if state.get("production"):
            return versions.load_prompt_at(prompt_file, state["production"]["commit"]), f"production v{state['production']['version']}"
    except PromptopsError:
        pass
    return base, "baseline (the prompt file as committed)"


def adopt(winner: Prompt, base: Prompt, prompt_file: Path, *, study: str, trial: int, run_id: str, metrics: dict[str, Any]) -> AdoptedWinner:
    """Commit the winner as the prompt's next version and point `candidate` at it; all or nothing."""
    from promptops import promotion, versions

    if winner.content_hash == base.content_hash:
        return AdoptedWinner(None, None, False, "the prompt as it is won: no new version written")
    try:
        repo = versions.open_repo(prompt_file)
    except PromptopsError as exc:
        return AdoptedWinner(None, None, False, f"not written as a version ({exc}); the winner is in the MLflow run as an artifact")
    old_text = prompt_file.read_text(encoding="utf-8")
    head_before = repo.head.commit.hexsha
    write_prompt_file(winner, prompt_file)
    message = f"optimize {base.name}: winner of {study}, trial {trial}\n\nMLflow run: {run_id}"
    try:
        commit = versions.commit_paths(repo, [prompt_file], message)
    except BaseException:
        prompt_file.write_text(old_text, encoding="utf-8")
        raise
    try:
        target = promotion.resolve_ref(prompt_file, commit)
        promotion.assign_channel(base.name, target.label, "candidate", action="optimize", metrics=metrics,
                                 reason=f"winner of {study} trial {trial} (MLflow run {run_id})")
    except BaseException:
        versions.undo_commit(repo, head_before, [prompt_file])
        raise
    return AdoptedWinner(target.label, commit, True, f"committed as {target.label} and registered with the alias candidate")
