"""One gate for promote, check and the optimizer: a paired interval and McNemar's p, a documented rule,
the same numbers everywhere, and what decided kept in the audit trail. The scripted model `scripted/literal`
answers (the logic is under test, not the model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner
from conftest import ALWAYS_EXCHANGE_RATE, MISREAD

import promptops
from promptops import tracking
from promptops.versioning import read_channels
from promptops.cli import main

NAME = "banking_intent"


def verdict_numbers(text: str) -> str:
    """`accuracy 0.975 vs 1.000 (production v1): -0.025 (95% CI ...), McNemar p = 1, n = 40; rule ... fails: ...`"""
    found = re.search(r"accuracy \d\.\d{3} vs \d\.\d{3} \(production v1\): .*?; rule \S+ \(tolerance [\d.]+\) (passes|fails)", text)
    assert found, text
    return found.group(0)


def test_one_answer_worse_on_40_rows_fails_non_inferiority_and_check_prints_the_same_numbers(
        git_project, mlflow_store, literal_model, edit_prompt, commit_all) -> None:
    first = CliRunner().invoke(main, ["promote", NAME])
    assert first.exit_code == 0, first.output
    assert "accuracy 1.000 on n = 40, nothing to compare with; rule non_inferior (tolerance 0.02) passes" in first.stdout

    edit_prompt(NAME, "Read the customer's message", f"{MISREAD} Read the customer's message")
    commit_all("One misread")
    refused = CliRunner().invoke(main, ["promote", NAME])
    assert refused.exit_code == 1 and refused.stdout == ""
    [line] = refused.stderr.strip().splitlines()
    numbers = verdict_numbers(line)
    assert numbers.startswith("accuracy 0.975 vs 1.000 (production v1): -0.025 (95% CI -0.075 to +0.000), McNemar p = 1, n = 40;")
    assert line.endswith("fails: the interval's lower bound -0.075 is below -0.02: these 40 examples do not show it is not worse;"
                         " at a difference of -0.025 no number of examples would; nothing was changed")
    assert read_channels(NAME)["production"]["label"] == "v1"

    # check judges the same pair (production v1 against the file, which is v2) with the same gate: the same numbers
    checked = CliRunner().invoke(main, ["check", "--base", "HEAD~1", "--no-track"])
    assert checked.exit_code == 1, checked.output
    assert verdict_numbers(checked.stdout) == numbers

    # the point rule with a looser tolerance lets it through, and says so with the same numbers
    loose = CliRunner().invoke(main, ["promote", NAME, "--rule", "not_worse", "--tolerance", "0.05"])
    assert loose.exit_code == 0, loose.output
    assert verdict_numbers(loose.stdout) == numbers.replace("rule non_inferior (tolerance 0.02) fails",
                                                             "rule not_worse (tolerance 0.05) passes")

    # the audit entry names the rule, the numbers, the two eval runs and the data they judged
    entry = read_channels(NAME)["history"][-1]
    gate, evidence = entry["gate"], entry["evidence"]
    assert (gate["rule"], gate["tolerance"], gate["n"], gate["difference"], gate["ci_low"], gate["p_value"]) == (
        "not_worse", 0.05, 40, -0.025, -0.075, 1.0)
    assert evidence["rows"] == 40 and evidence["data"] == f"experiments/data/{NAME}/test.jsonl" and evidence["data_digest"]
    for side in ("candidate_run", "current_run"):
        run = tracking.load_run(evidence[side])
        assert run.data.params["data_digest"] == evidence["data_digest"]
        assert [i.dataset.digest for i in run.inputs.dataset_inputs] == [evidence["data_digest"]]
    comparison = tracking.load_run(evidence["comparison_run"])
    assert comparison.data.tags["promptops.gate.rule"] == "not_worse" and comparison.data.tags["promptops.gate.passed"] == "true"


def test_a_gate_rule_in_the_prompt_file_decides(git_project, mlflow_store, literal_model, edit_prompt, commit_all) -> None:
    promptops.promote(NAME)
    edit_prompt(NAME, "Read the customer's message", f"{MISREAD} Read the customer's message")
    edit_prompt(NAME, "  metric: accuracy\n", "  metric: accuracy\n  gate: {rule: not_worse, tolerance: 0.03}\n")
    commit_all("One misread, a looser gate")
    move = promptops.promote(NAME)
    assert move.to_label == "v2" and move.gate.passed and move.gate.decided_by == "not_worse (tolerance 0.03)"
    edit_prompt(NAME, "gate: {rule: not_worse, tolerance: 0.03}", "gate: {rule: sometimes}")
    result = CliRunner().invoke(main, ["eval", NAME, "--limit", "1", "--no-track"])
    assert result.exit_code == 1 and "prompts/banking_intent.yaml:" in result.stderr and "rule" in result.stderr


def test_a_refusal_says_how_many_rows_the_difference_would_need_and_superior_asks_for_better() -> None:
    """Issue 26: a real +0.083 on 60 rows (95% CI -0.067 to +0.233) fails non-inferiority at 0.02; about 128 rows would pass."""
    from promptops.artifact import GateSpec
    from promptops.evaluation import gate_verdict, rows_needed
    from promptops.evaluation._stats import Interval

    observed = Interval(0.083, -0.067, 0.233, 0.95, 2000)
    assert rows_needed(observed, 60, -0.02) == 128
    assert rows_needed(observed, 60, 0.0) == 196
    assert rows_needed(Interval(-0.025, -0.075, 0.0, 0.95, 2000), 40, -0.02) is None  # below the bound: no sample shows it
    assert rows_needed(Interval(0.0, 0.0, 0.0, 0.95, 2000), 40, -0.02) is None  # identical answers: the interval has no width

    class Side:
        def __init__(self, label: str) -> None:
            self.label = label

    class Result:
        metric, n, score, cost_usd = "accuracy", 60, 0.55, None

    class Paired:
        a, b, n, a_score, b_score, a_cost_usd, difference, b_result = Side("production v1"), Side("v2"), 60, 0.467, 0.55, None, observed, Result()

        class mcnemar:
            p_value = 0.3

    refused = gate_verdict(GateSpec(), comparison=Paired())
    assert not refused.passed and refused.reasons == (
        "the interval's lower bound -0.067 is below -0.02: these 60 examples do not show it is not worse; at this difference "
        "about 128 examples would (the interval narrows as 1/√n)",)
    superior = gate_verdict(GateSpec(rule="superior"), comparison=Paired())
    assert superior.decided_by == "superior" and superior.reasons[0].startswith(
        "the interval's lower bound -0.067 is not above 0: these 60 examples do not show it is better; at this difference about 196")
    Paired.difference = Interval(0.083, 0.01, 0.15, 0.95, 2000)
    assert gate_verdict(GateSpec(rule="superior"), comparison=Paired()).passed


def test_a_first_promotion_is_gated_against_the_version_before_it(git_project, mlflow_store, literal_model, edit_prompt,
                                                                   commit_all, assert_one_line_error) -> None:
    """Issue 26: with no production yet, v2 is compared with v1, and the verdict says so; v1 alone has nothing before it."""
    edit_prompt(NAME, "Read the customer's message", f"{MISREAD} Read the customer's message")
    commit_all("One misread")
    line = assert_one_line_error(CliRunner().invoke(main, ["promote", NAME, "--version", "v2"]))
    assert "accuracy 0.975 vs 1.000 (previous version v1, no production yet): -0.025 (95% CI -0.075 to +0.000)" in line, line
    assert line.endswith("nothing was changed")
    assert "production" not in read_channels(NAME)
    first = CliRunner().invoke(main, ["promote", NAME, "--version", "v1"])
    assert first.exit_code == 0 and "accuracy 1.000 on n = 40, nothing to compare with" in first.stdout, first.output


def test_a_rollback_goes_only_to_a_version_the_channel_served(git_project, mlflow_store, literal_model, edit_prompt,
                                                              commit_all, assert_one_line_error) -> None:
    """Issue 26: `rollback --to` a version production never served is a promote in disguise, and is refused."""
    promptops.promote(NAME)
    edit_prompt(NAME, "Read the customer's message", "Read the customer's message carefully.")
    commit_all("Carefully")
    edit_prompt(NAME, "carefully.", "very carefully.")
    commit_all("Very carefully")
    assert promptops.promote(NAME, version="v3").to_label == "v3"
    line = assert_one_line_error(CliRunner().invoke(main, ["rollback", NAME, "--to", "v2"]))
    assert line == ("Error: banking_intent production never served v2: a rollback goes back to a version production served "
                    "before (v1); to serve v2, promote it (through the gate): promptops promote banking_intent --version v2"), line
    assert read_channels(NAME)["production"]["label"] == "v3"
    assert promptops.rollback(NAME, to="v1").to_label == "v1"


# --- the optimizer's winner ---------------------------------------------------------------------


def test_a_winner_that_loses_on_test_writes_nothing_and_says_why(git_project, decided_study) -> None:
    base = promptops.load_prompt(NAME)
    decided_study(base.with_changes(instructions=f"{ALWAYS_EXCHANGE_RATE} {base.instructions}"))
    head, text = git_project.head.commit.hexsha, (Path(git_project.working_tree_dir) / "prompts" / f"{NAME}.yaml").read_text()
    result = promptops.optimize("tiny")
    assert result.adopted.version is None and not result.test.passed
    assert result.adopted.note.startswith("not written: the winner does not pass the gate against baseline")
    assert "rule non_inferior (tolerance 0.02) fails" in result.adopted.note and "--write-anyway" in result.adopted.note
    assert git_project.head.commit.hexsha == head and not git_project.is_dirty(untracked_files=True), git_project.git.status()
    assert (Path(git_project.working_tree_dir) / "prompts" / f"{NAME}.yaml").read_text() == text
    assert "candidate" not in tracking.registry_aliases(NAME)
    shown = json.loads(CliRunner().invoke(main, ["optimize", "tiny", "--json"]).stdout)
    assert shown["adopted"]["version"] is None and shown["test"]["verdict"]["passed"] is False


def test_a_winner_that_holds_up_on_test_is_written_as_the_candidate(git_project, decided_study) -> None:
    base = promptops.load_prompt(NAME)
    decided_study(base.with_changes(description=base.description + " Tuned."))
    result = promptops.optimize("tiny")
    assert result.test.passed and result.test.verdict.difference.estimate == 0.0
    assert result.adopted.version == "v2" and read_channels(NAME)["candidate"]["commit"] == result.adopted.commit
    assert read_channels(NAME)["history"][-1]["gate"]["passed"] is True


def test_an_adopted_winner_with_new_demos_commits_only_the_demos_lines(
        git_project, decided_study, edit_prompt, commit_all) -> None:
    root = Path(git_project.working_tree_dir)
    edit_prompt(NAME, "name: banking_intent\n", "# Owned by the support team.\nname: banking_intent\n")
    edit_prompt(NAME, "model:\n", "# Greedy decoding, a tiny model.\nmodel:\n")
    edit_prompt(NAME, "  temperature: 0.0\n", "  temperature: 0.0  # keep\n")
    commit_all("Comments")
    base = promptops.load_prompt(NAME)
    demos = [{"text": "Where is my new card?", "intent": "card_arrival"}, {"text": "I lost my card", "intent": "lost_or_stolen_card"}]
    decided_study(base.with_changes(demos=demos))

    result = promptops.optimize("tiny")
    assert result.adopted.version == "v3"  # v2 is the comments

    commit = result.adopted.commit
    diff = git_project.git.diff(f"{commit}~1", commit, "--unified=0", "--", f"prompts/{NAME}.yaml").splitlines()
    changed = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["+demos:", "+  - text: Where is my new card?", "+    intent: card_arrival",
                       "+  - text: I lost my card", "+    intent: lost_or_stolen_card"]
    assert "# Greedy decoding, a tiny model.\nmodel:\n" in (root / "prompts" / f"{NAME}.yaml").read_text()
    assert promptops.load_prompt(NAME).content_hash == base.with_changes(demos=demos).content_hash


def test_write_anyway_writes_a_rejected_winner(git_project, decided_study) -> None:
    base = promptops.load_prompt(NAME)
    decided_study(base.with_changes(instructions=f"{ALWAYS_EXCHANGE_RATE} {base.instructions}"))
    result = promptops.optimize("tiny", write_anyway=True)
    assert not result.test.passed and result.adopted.version == "v2"
