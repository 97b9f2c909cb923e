"""The winner of a study becomes a new version of the prompt, with the `candidate` alias, if it passes the gate.

Its test-split score is measured beside the production version's (or, before any promotion,
the prompt as committed) on the same examples, and judged by the same gate as `promote`
(`promptops.evaluation._gate`): a winner picked on dev that does not hold up on test is reported, with both
scores and the interval, and nothing is written. Writing it is one step that fully happens or
leaves git and the registry as they were: the prompt file is committed, then the `candidate`
channel is moved in git and the registry; if the move fails the commit is undone. Promotion to
production stays the explicit, gated step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from promptops.artifact import Prompt, write_prompt_file
from promptops.models import Budget, BudgetExhausted, spending_limit
from promptops.errors import PromptopsError

if TYPE_CHECKING:
    from promptops.evaluation import Metric


@dataclass(frozen=True)
class TestComparison:
    """Winner and reference on the same test examples, and the gate's verdict; None where the budget did not allow the eval."""

    split: str
    n: int
    metric: str
    winner_score: Optional[float]
    reference_score: Optional[float]
    reference_label: str
    winner_cost_usd: Optional[float]
    reference_cost_usd: Optional[float]
    note: Optional[str] = None
    verdict: Any = None  # gate.Verdict, when both were measured
    comparison_run_id: Optional[str] = None

    @property
    def passed(self) -> bool:
        return self.verdict is not None and self.verdict.passed


@dataclass(frozen=True)
class AdoptedWinner:
    version: Optional[str]  # "v4"
    commit: Optional[str]
    channel_moved: bool
    note: str


def compare_on_test(winner: Prompt, base: Prompt, prompt_file: Path, *, data: Optional[str], metric: "str | Metric", budget: Budget,
                    track: bool = True) -> TestComparison:
    """Evaluate winner and reference on test, within what is left of the study's spend and call caps, and judge the pair.

    The timeout bounds the search, not this last measurement: a study stopped by its timeout
    still gets its winner scored.
    """
    from promptops import tracking
    from promptops.evaluation import gate_verdict, rule_for
    from promptops.evaluation import Contender, EvalOptions, compare_contenders
    from promptops.evaluation import load_dataset

    reference, label, commit = _reference(base, prompt_file)
    dataset = load_dataset(base, data, "test")
    spec = rule_for(base)
    comparison = verdict = note = run_id = None
    deadline, budget.deadline = budget.deadline, None  # the caps on spend and calls still hold
    try:
        with spending_limit(budget):
            comparison = compare_contenders(Contender(f"{base.name}@{commit or 'HEAD'}", label, reference, commit),
                                            Contender(f"{base.name} (winner)", "winner", winner, None),
                                            EvalOptions(split="test", metric=metric), dataset=dataset, confidence=spec.confidence)
    except BudgetExhausted as exc:
        note = f"test eval not finished: {exc}"
    finally:
        budget.deadline = deadline
    if comparison is None:
        return TestComparison("test", len(dataset), getattr(metric, "name", metric), None, None, label, None, None, note)
    verdict = gate_verdict(spec, comparison=comparison, threshold=base.eval.threshold)
    if track:
        run_id = tracking.log_comparison(comparison, kind="optimize-gate", verdict=verdict.summary())
    return TestComparison(
        split="test", n=comparison.n, metric=comparison.metric,
        winner_score=comparison.b_score, reference_score=comparison.a_score, reference_label=label,
        winner_cost_usd=comparison.b_cost_usd, reference_cost_usd=comparison.a_cost_usd,
        note=note, verdict=verdict, comparison_run_id=run_id,
    )


def _reference(base: Prompt, prompt_file: Path) -> tuple[Prompt, str, Optional[str]]:
    """Production if the prompt has one (its commit, as committed at HEAD), else the prompt as the study started from."""
    from promptops import versioning
    from promptops.versioning import resolve

    try:
        production = resolve(prompt_file, "production")
        return versioning.load_prompt_at(prompt_file, production.commit), f"production {production.label}", production.commit
    except PromptopsError:
        pass
    try:
        commit = versioning.file_revision(prompt_file).commit
    except PromptopsError:
        commit = None
    return base, "baseline (the prompt file as committed)", commit


def rejected(test: Optional[TestComparison]) -> AdoptedWinner:
    """What is said when the winner is not written because it did not pass the gate on test."""
    if test is None or test.verdict is None:
        why = test.note if test is not None and test.note else "it was not measured on test"
        return AdoptedWinner(None, None, False, f"not written: {why}, so the gate could not judge it (--write-anyway writes it regardless)")
    return AdoptedWinner(None, None, False,
                         f"not written: the winner does not pass the gate against {test.reference_label} on test: "
                         f"{test.verdict.line()} (--write-anyway writes it regardless)")


def adopt(winner: Prompt, base: Prompt, prompt_file: Path, *, study: str, trial: int, run_id: str, metrics: dict[str, Any],
          gate: Optional[dict[str, Any]] = None) -> AdoptedWinner:
    """Commit the winner as the prompt's next version and point `candidate` at it; all or nothing."""

    from promptops import versioning
    from promptops.versioning import resolve

    if winner.content_hash == base.content_hash:
        return AdoptedWinner(None, None, False, "the prompt as it is won: no new version written")
    try:
        repo = versioning.open_repo(prompt_file)
    except PromptopsError as exc:
        return AdoptedWinner(None, None, False, f"not written as a version ({exc}); the winner is in the MLflow run as an artifact")
    old_text = prompt_file.read_text(encoding="utf-8")
    head_before = versioning.head_commit(repo)
    write_prompt_file(winner, prompt_file)
    message = f"optimize {base.name}: winner of {study}, trial {trial}\n\nMLflow run: {run_id}"
    try:
        commit = versioning.commit_paths(repo, [prompt_file], message)
    except BaseException:
        prompt_file.write_text(old_text, encoding="utf-8")
        raise
    try:
        target = resolve(prompt_file, commit)
        versioning.assign_channel(base.name, commit, "candidate", action="optimize", metrics=metrics, gate=gate,
                                 reason=f"winner of {study} trial {trial} (MLflow run {run_id})")
    except BaseException:
        versioning.undo_commit(repo, head_before, [prompt_file])
        raise
    return AdoptedWinner(target.label, commit, True, f"committed as {target.label} and registered with the alias candidate")
