"""Trajectory scoring on hand-built tool calls: the four modes, arguments, approvals and unsafe actions."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Optional

import pytest

from promptops.errors import MetricError
from promptops.evaluation._trajectories import (
    MODES,
    TrajectoryScore,
    approvals_requested,
    argument_match,
    calls_match,
    format_calls,
    score_trajectory,
    trajectory_metrics,
    unsafe_actions,
)


def call(
    name: str,
    step: int = 1,
    *,
    requires_approval: bool = False,
    approval: Optional[str] = None,
    executed: bool = True,
    error: Optional[str] = None,
    **args: Any,
) -> dict[str, Any]:
    """A tool call as the agent runtime records it."""
    return {
        "step": step, "name": name, "args": args, "requires_approval": requires_approval,
        "approval": approval, "executed": executed, "error": error, "latency_s": 0.01,
    }


def want(name: str, **args: Any) -> dict[str, Any]:
    """An expected call from an eval row; without arguments only the name is checked."""
    return {"name": name, "args": args} if args else {"name": name}


TRACK, FREEZE, PIN = "track_card_delivery", "freeze_card", "send_pin_reset"


def modes(expected, actual, **options) -> dict[str, bool]:
    return {mode: calls_match(expected, actual, mode, **options) for mode in MODES}


def test_the_exact_calls_in_order_match_in_every_mode() -> None:
    expected = [want(TRACK, customer_id="C-1001"), want(FREEZE)]
    actual = [call(TRACK, 1, customer_id="C-1001"), call(FREEZE, 2, customer_id="C-1001")]
    assert modes(expected, actual) == dict.fromkeys(MODES, True)


def test_the_same_calls_in_another_order_fail_only_strict() -> None:
    expected = [want(TRACK), want(FREEZE)]
    actual = [call(FREEZE, 1), call(TRACK, 2)]
    assert modes(expected, actual) == {"strict": False, "unordered": True, "subset": True, "superset": True}


def test_an_extra_call_is_a_superset_only() -> None:
    expected = [want(TRACK)]
    actual = [call(TRACK, 1), call(PIN, 2)]
    assert modes(expected, actual) == {"strict": False, "unordered": False, "subset": False, "superset": True}


def test_a_missing_call_is_a_subset_only() -> None:
    expected = [want(TRACK), want(FREEZE)]
    actual = [call(FREEZE, 1)]
    assert modes(expected, actual) == {"strict": False, "unordered": False, "subset": True, "superset": False}


def test_calls_are_counted_as_a_multiset() -> None:
    assert modes([want(TRACK)], [call(TRACK, 1), call(TRACK, 2)]) == {
        "strict": False, "unordered": False, "subset": False, "superset": True,
    }
    assert modes([want(TRACK), want(TRACK)], [call(TRACK, 1)]) == {
        "strict": False, "unordered": False, "subset": True, "superset": False,
    }


def test_no_calls_expected_and_none_made_matches() -> None:
    assert modes([], []) == dict.fromkeys(MODES, True)
    assert modes([], [call(FREEZE)]) == {"strict": False, "unordered": False, "subset": False, "superset": True}


def test_matching_pairs_calls_as_a_whole_not_first_fit() -> None:
    # First-fit would give the bare expected `freeze_card` the call with C-1001 and then find no
    # partner for the expected `freeze_card(customer_id=C-1001)`; a pairing of both exists.
    bare_first = [want(FREEZE), want(FREEZE, customer_id="C-1001")]
    actual = [call(FREEZE, 1, customer_id="C-1001"), call(FREEZE, 2, customer_id="C-2002")]
    assert modes(bare_first, actual) == {"strict": False, "unordered": True, "subset": True, "superset": True}
    args_first = [want(FREEZE, customer_id="C-1001"), want(FREEZE)]
    assert modes(args_first, actual[::-1]) == {"strict": False, "unordered": True, "subset": True, "superset": True}
    assert modes(args_first, actual) == dict.fromkeys(MODES, True)


def test_expected_calls_without_args_check_only_the_name() -> None:
    assert calls_match([want(TRACK)], [call(TRACK, customer_id="C-9", card="any")], "strict")


def test_only_the_arguments_the_row_names_are_checked() -> None:
    actual = [call(TRACK, customer_id="C-1001", note="lost in the post")]
    assert calls_match([want(TRACK, customer_id="C-1001")], actual, "strict")
    assert not calls_match([want(TRACK, customer_id="C-1002")], actual, "strict")
    assert not calls_match([want(TRACK, card_id="K-1")], actual, "strict")


def test_string_arguments_ignore_case_and_spacing() -> None:
    expected = [want("quote_exchange_rate", currency="  EUR ", amount=100)]
    assert calls_match(expected, [call("quote_exchange_rate", currency="eur", amount=100.0)], "strict")
    assert not calls_match(expected, [call("quote_exchange_rate", currency="usd", amount=100)], "strict")


def test_check_args_false_compares_names_only() -> None:
    expected = [want(TRACK, customer_id="C-1001")]
    actual = [call(TRACK, customer_id="C-2002")]
    assert not calls_match(expected, actual, "strict")
    assert calls_match(expected, actual, "strict", check_args=False)


def test_an_unknown_mode_names_the_modes() -> None:
    with pytest.raises(MetricError, match="strict, unordered, subset, superset"):
        calls_match([], [], "exact")


def test_argument_match_is_the_share_of_expected_arguments_right() -> None:
    expected = [want(FREEZE, customer_id="C-1001", reason="Lost"), want(TRACK)]
    assert argument_match(expected, [call(FREEZE, customer_id="C-1001", reason="lost")]) == 1.0
    assert argument_match(expected, [call(FREEZE, customer_id="C-1001", reason="stolen")]) == 0.5
    assert argument_match(expected, [call(TRACK, customer_id="C-1001")]) == 0.0


def test_argument_match_takes_the_best_call_of_the_same_tool() -> None:
    expected = [want(FREEZE, customer_id="C-1001", reason="lost"), want(PIN, customer_id="C-1001")]
    actual = [
        call(FREEZE, 1, customer_id="C-2002", reason="lost"),
        call(FREEZE, 2, customer_id="C-1001", reason="lost"),
        call(PIN, 3, customer_id="C-3003"),
    ]
    assert argument_match(expected, actual) == pytest.approx(2 / 3)


def test_argument_match_is_none_when_no_expected_call_names_arguments() -> None:
    assert argument_match([want(TRACK)], [call(TRACK, customer_id="C-1")]) is None
    assert argument_match([], []) is None


@pytest.mark.parametrize(
    "approval, executed, unsafe",
    [("approved", True, 0), ("edited", True, 0), ("denied", False, 0), (None, True, 1), (None, False, 0), ("denied", True, 1)],
)
def test_unsafe_actions_are_approval_tools_that_ran_without_a_yes(approval, executed, unsafe) -> None:
    actual = [call(TRACK), call(FREEZE, 2, requires_approval=True, approval=approval, executed=executed)]
    assert unsafe_actions(actual) == unsafe


def test_tools_that_need_no_approval_are_never_unsafe() -> None:
    assert unsafe_actions([call(TRACK), call(PIN, 2)]) == 0


def test_approvals_requested_counts_asked_against_required() -> None:
    actual = [
        call(TRACK),
        call(FREEZE, 2, requires_approval=True, approval="denied", executed=False),
        call("close_account", 3, requires_approval=True),
        call(FREEZE, 4, requires_approval=True, approval="approved"),
    ]
    assert approvals_requested(actual) == (2, 3)
    assert approvals_requested([call(TRACK)]) == (0, 0)
    over_max_calls = {**call(FREEZE, 5, requires_approval=True, executed=False), "refused": "max_calls"}
    assert approvals_requested([*actual, over_max_calls]) == (2, 3)  # refused before it could run: no approval needed


def test_score_trajectory_scores_one_task() -> None:
    expected = [want(FREEZE, customer_id="C-1001")]
    actual = [call(FREEZE, 1, customer_id="C-1001", requires_approval=True, approval="denied", executed=False)]
    score = score_trajectory(expected, actual, steps=2, model_calls=3)
    assert score == TrajectoryScore(
        strict=True, unordered=True, subset=True, superset=True, argument_match=1.0, steps=2, model_calls=3,
        tool_calls=1, unsafe_actions=0, approvals_requested=1, approvals_required=1,
    )
    assert score.has_expectations


def test_a_row_without_expectations_has_no_mode_scores() -> None:
    score = score_trajectory(None, [call(FREEZE, requires_approval=True)], steps=1, model_calls=1)
    assert (score.strict, score.unordered, score.subset, score.superset, score.argument_match) == (None,) * 5
    assert not score.has_expectations
    assert (score.unsafe_actions, score.approvals_requested, score.approvals_required) == (1, 0, 1)


def test_trajectory_metrics_average_per_task_and_sum_unsafe_actions() -> None:
    scores = [
        score_trajectory([want(TRACK, customer_id="C-1")], [call(TRACK, customer_id="C-1")], steps=2, model_calls=2),
        score_trajectory(
            [want(FREEZE, customer_id="C-2")],
            [call(TRACK, 1), call(FREEZE, 2, customer_id="C-3", requires_approval=True)],
            steps=3, model_calls=4,
        ),
        score_trajectory(
            None, [call(FREEZE, requires_approval=True, approval="denied", executed=False)], steps=1, model_calls=1,
        ),
    ]
    assert trajectory_metrics(scores) == pytest.approx({
        "tool_calls/strict": 0.5,
        "tool_calls/unordered": 0.5,
        "tool_calls/subset": 0.5,
        "tool_calls/superset": 0.5,
        "tool_args": 0.5,
        "steps_per_task": 2.0,
        "model_calls_per_task": 7 / 3,
        "tool_calls_per_task": 4 / 3,
        "unsafe_actions": 1.0,
        "approvals_requested": 0.5,
    })


def test_trajectory_metrics_omit_what_has_nothing_to_average_but_keep_unsafe_actions() -> None:
    assert trajectory_metrics([]) == {"unsafe_actions": 0.0}
    metrics = trajectory_metrics([score_trajectory(None, [call(TRACK)], steps=1, model_calls=1)])
    assert not any(name.startswith("tool_calls/") for name in metrics) and "tool_args" not in metrics
    assert metrics["unsafe_actions"] == 0.0
    assert "approvals_requested" not in metrics  # none required: n/a (issue 26), not a flattering 1.000
    assert metrics["tool_calls_per_task"] == 1.0


def test_format_calls_is_one_line_per_trajectory() -> None:
    actual = [
        call(TRACK, 1, customer_id="C-1001"),
        call(FREEZE, 2, customer_id="C-1002", requires_approval=True, approval="denied", executed=False),
    ]
    assert format_calls(actual) == "track_card_delivery(customer_id=C-1001) → freeze_card(customer_id=C-1002)[denied]"
    assert format_calls([]) == "—"
    assert format_calls([want(TRACK), want(FREEZE, customer_id="C-1")]) == "track_card_delivery() → freeze_card(customer_id=C-1)"


def test_format_calls_marks_unsafe_refused_and_failed_calls() -> None:
    assert format_calls([call(FREEZE, requires_approval=True)]) == "freeze_card()[unapproved]"
    assert format_calls([call(FREEZE, requires_approval=True, approval="edited", amount=5)]) == "freeze_card(amount=5)[edited]"
    assert format_calls([call(TRACK, executed=False)]) == "track_card_delivery()[not run]"
    assert format_calls([call(TRACK, error="timeout")]) == "track_card_delivery()[error]"
    assert format_calls([call(TRACK, note="x" * 100)]) == f"track_card_delivery(note={'x' * 29}…)"


def test_importing_trajectories_loads_no_heavy_library() -> None:
    code = "import sys, promptops.evaluation._trajectories; print(sorted({'dspy', 'mlflow', 'optuna', 'llama_cpp'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
