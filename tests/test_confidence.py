"""Label confidence: read from what a call returns, scored in evals, and acted on by `guardrails.output.min_confidence`.

A scripted model stands in for the model: it answers each message with a label and reports the
confidence the embedded engine would (`provider_data`), or token logprobs as a hosted model does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest
from click.testing import CliRunner

import promptops
from promptops.cli import main
from promptops.errors import PromptFileError
from promptops.testing import Reply

NAME = "banking_intent"
# text -> (label, confidence the engine reports)
ANSWERS = {
    "Where is my new card?": ("card_arrival", 0.92),
    "I lost my card on holiday": ("lost_or_stolen_card", 0.41),
    "How do I change my PIN?": ("change_pin", 0.75),
    "Why was I charged for cash?": ("exchange_rate", 0.55),  # wrong, and unsure
}
EXPECTED = {"Where is my new card?": "card_arrival", "I lost my card on holiday": "lost_or_stolen_card",
            "How do I change my PIN?": "change_pin", "Why was I charged for cash?": "cash_withdrawal_charge"}


def labels(*, reports: bool = True, logprobs: bool = False) -> dict[str, Reply]:
    """A script: the label `ANSWERS` gives a text, with its confidence as the embedded engine reports it unless
    `reports` is False, or as a hosted model's token logprobs (`logprobs`)."""
    script = {}
    for text, (label, confidence) in ANSWERS.items():
        if logprobs:  # a hosted model's tokens: the label in two, its first token carrying the doubt
            tokens = [('{"intent": "', -0.001), (label[:4], math.log(confidence)), (label[4:], 0.0), ('"}', -0.002)]
            script[text] = Reply({"intent": label}, logprobs=tokens)
        else:
            script[text] = Reply({"intent": label}, confidence={"intent": confidence} if reports else None)
    return script


@pytest.fixture(autouse=True)
def fresh_limits():
    """No breaker or bucket state from other tests' requests."""
    from promptops.runtime import _limits as limits

    limits.reset()
    yield
    limits.reset()


@pytest.fixture()
def label_model(project: Path, scripted_model):
    """banking_intent answers from `scripted/labels` (`labels()`); `label_model(reports=False)` moves it to
    `scripted/labels-only`, which reports no confidence."""
    scripted_model("labels", labels(), prompts=[NAME])

    def answer_with(*, reports: bool = True) -> None:
        if not reports:
            scripted_model("labels-only", labels(reports=False), prompts=[NAME])

    return answer_with


def write_prompt(project: Path, guardrails: str = "") -> Path:
    path = project / "prompts" / f"{NAME}.yaml"
    path.write_text(path.read_text() + guardrails)
    return path


def write_rows(project: Path) -> Path:
    folder = project / "experiments" / "data" / "confidence"
    folder.mkdir(parents=True)
    rows = [{"text": text, "intent": intent} for text, intent in EXPECTED.items()]
    (folder / "dev.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


# --- reading it from a call ---------------------------------------------------------------


def test_the_meter_reads_the_engines_confidence_also_from_the_cache(scripted_model) -> None:
    from promptops.models._metered import metering
    from promptops.program import build_program

    model = scripted_model("labels", labels())
    program = build_program(promptops.load_prompt(Path(__file__).parent.parent / "prompts" / f"{NAME}.yaml"), model=model.model_id)
    question = "Where is my new card? (confidence cache test)"
    with metering() as first:
        assert program(text=question).intent == "card_arrival"
    with metering() as second:
        program(text=question)
    assert len(model.requests) == 1 and second.cache_hits == 1
    assert first.confidence == second.confidence == {"intent": 0.92}
    assert second.calls[0].confidence == {"intent": 0.92}


def test_a_model_that_reports_nothing_has_no_confidence() -> None:
    from promptops.models._metered import CallMeter, ModelCall

    meter = CallMeter([ModelCall("m", 1, 1, 0.1, False, 0.0, confidence={"intent": 0.3}), ModelCall("m", 1, 1, 0.1, False, 0.0)])
    assert meter.confidence == {"intent": 0.3}  # the last call that reported one
    assert CallMeter([ModelCall("m", 1, 1, 0.1, False, 0.0)]).confidence is None


def litellm_response(content_tokens: list[tuple[str, float]]) -> Any:
    from litellm.types.utils import ModelResponse

    content = "".join(token for token, _ in content_tokens)
    logprobs = {"content": [{"token": token, "logprob": logprob, "bytes": None, "top_logprobs": []}
                            for token, logprob in content_tokens]}
    return ModelResponse(choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content},
                                   "logprobs": logprobs}])


def test_a_hosted_models_logprobs_give_each_label_the_probability_of_its_tokens() -> None:
    from typing import Literal

    import pydantic

    from promptops.models._confidence import call_confidence

    outputs = pydantic.create_model("DSPyProgramOutputs", intent=(Literal["card_arrival", "change_pin"], ...),
                                    urgent=(Optional[bool], ...), note=(str, ...))
    call = SimpleNamespace(request=None, legacy={"response_format": outputs})
    tokens = [('{"', -0.01), ("intent", 0.0), ('":', 0.0), (' "', 0.0), ("card", math.log(0.8)), ("_arrival", math.log(0.9)),
              ('",', -0.05), (' "urgent', 0.0), ('": ', 0.0), ("true", math.log(0.6)), (', "note": "', 0.0),
              ("asap", math.log(0.1)), ('"}', 0.0)]
    result = SimpleNamespace(responses=(), raw=litellm_response(tokens))
    # The label's own tokens count, not the quotes or keys around them; free text (note) has none.
    assert call_confidence(result, call) == {"intent": pytest.approx(0.72), "urgent": pytest.approx(0.6)}

    without = SimpleNamespace(responses=(), raw=litellm_response([('{"intent": "change_pin"}', 0.0)]))
    without.raw.choices[0].logprobs = None
    assert call_confidence(without, call) is None  # no logprobs: absent, not guessed


def test_logprobs_of_a_cut_off_answer_give_what_they_can() -> None:
    from promptops.models._confidence import label_confidence

    assert label_confidence([('{"intent": "ca', -0.1)], ["intent"]) == {}
    assert label_confidence([("not json at all", -0.1)], ["intent"]) == {}


def test_hosted_logprobs_reach_the_meter_through_dspy(scripted_model) -> None:
    from promptops.models._metered import metering
    from promptops.program import build_program

    model = scripted_model("hosted", labels(logprobs=True))
    program = build_program(promptops.load_prompt(Path(__file__).parent.parent / "prompts" / f"{NAME}.yaml"), model=model.model_id)
    question = "How do I change my PIN? (logprobs cache test)"
    with metering() as first:
        program(text=question)
    with metering() as cached:
        program(text=question)
    assert cached.cache_hits == 1
    assert first.confidence == cached.confidence == {"intent": pytest.approx(0.75)}


# --- the eval ---------------------------------------------------------------------------


def test_coverage_and_accuracy_at_the_threshold() -> None:
    from promptops.evaluation import ExampleResult, coverage_metrics

    def row(confidence: Optional[float], correct: bool) -> ExampleResult:
        return ExampleResult(0, "x", {}, {}, {}, correct, None, False, 0, 0, 0.0, 1, 0, 0.0, confidence=confidence)

    rows = [row(0.9, True), row(0.6, False), row(0.59, True), row(None, True)]
    assert coverage_metrics(rows, 0.6) == {"coverage": 0.5, "accuracy_at_threshold": 0.5}  # 0.6 itself is covered
    assert coverage_metrics(rows, 0.95) == {"coverage": 0.0}  # no row covered: no accuracy to report


def test_an_eval_scores_coverage_at_the_prompts_threshold_and_shows_the_confidence(project: Path, label_model) -> None:
    write_prompt(project, "guardrails:\n  output: {min_confidence: 0.6}\n")
    data = write_rows(project)
    result = promptops.evaluate(NAME, data=data, split="dev", track=False)
    by_text = {r.inputs["text"]: r for r in result.examples}
    assert by_text["I lost my card on holiday"].confidence_by_field == {"intent": 0.41}
    assert by_text["I lost my card on holiday"].confidence == 0.41
    assert result.metrics["accuracy"] == 0.75
    assert result.metrics["coverage"] == 0.5  # 0.92 and 0.75
    assert result.metrics["accuracy_at_threshold"] == 1.0  # both right; the wrong answer was unsure
    summary = result.summary()
    assert summary["coverage"] == 0.5 and summary["min_confidence"] == 0.6 and summary["warnings"] == []

    shown = CliRunner().invoke(main, ["eval", NAME, "--data", str(data), "--no-track"], env={"COLUMNS": "100"})
    assert shown.exit_code == 0, shown.output
    assert "coverage (confidence ≥ 0.6)" in shown.stdout and "accuracy_at_threshold" in shown.stdout
    assert "confidence" in shown.stdout and "0.410" in shown.stdout and "0.920" in shown.stdout
    as_json = json.loads(CliRunner().invoke(main, ["eval", NAME, "--data", str(data), "--no-track", "--json"]).stdout)
    assert as_json["coverage"] == 0.5 and as_json["accuracy_at_threshold"] == 1.0


def test_without_confidence_the_eval_table_has_no_confidence_column(project: Path, label_model) -> None:
    label_model(reports=False)
    data = write_rows(project)
    result = promptops.evaluate(NAME, data=data, split="dev", track=False)
    assert all(r.confidence is None and r.confidence_by_field is None for r in result.examples)
    assert "coverage" not in result.metrics  # no threshold set
    shown = CliRunner().invoke(main, ["eval", NAME, "--data", str(data), "--no-track"], env={"COLUMNS": "100"})
    assert shown.exit_code == 0 and "confidence" not in shown.stdout


def test_a_threshold_no_answer_can_meet_is_warned_about(project: Path, label_model) -> None:
    label_model(reports=False)
    write_prompt(project, "guardrails:\n  output: {min_confidence: 0.6}\n")
    result = promptops.evaluate(NAME, data=write_rows(project), split="dev", track=False)
    assert result.metrics["coverage"] == 0.0 and "accuracy_at_threshold" not in result.metrics
    assert "logprobs" in result.summary()["warnings"][0]


def test_the_mlflow_eval_run_logs_coverage_and_each_rows_confidence(project: Path, mlflow_store: str, label_model) -> None:
    from promptops import tracking

    write_prompt(project, "guardrails:\n  output: {min_confidence: 0.6}\n")
    result = promptops.evaluate(NAME, data=write_rows(project), split="dev")
    run = tracking.load_run(result.run_id, root=project)
    assert run.data.metrics["coverage"] == 0.5 and run.data.metrics["accuracy_at_threshold"] == 1.0
    assert run.data.params["min_confidence"] == "0.6"
    table = tracking.load_table(result.run_id, root=project)
    assert sorted(table["confidence"]) == pytest.approx([0.41, 0.55, 0.75, 0.92])


# --- the guardrail ---------------------------------------------------------------------


def test_a_low_confidence_answer_goes_to_review_and_a_sure_one_is_returned(project: Path, label_model) -> None:
    write_prompt(project, "guardrails:\n  output: {min_confidence: 0.6}\n")
    program = promptops.load(NAME, trace=False)

    sure = program(text="Where is my new card?")
    assert not isinstance(sure, promptops.NeedsReview) and sure.intent == "card_arrival"
    assert program.last_record.answer.confidence_by_field == {"intent": 0.92}

    unsure = program(text="I lost my card on holiday")
    assert isinstance(unsure, promptops.NeedsReview)
    assert unsure.outputs == {"intent": "lost_or_stolen_card"} and isinstance(unsure.answer, promptops.Answer)
    assert (unsure.confidence, unsure.least_sure_field, unsure.threshold) == (0.41, "intent", 0.6)
    assert unsure.confidence_by_field == {"intent": 0.41}
    decisions = program.last_record.decisions
    assert [d["decision"] for d in decisions] == ["input_ok", "answered", "needs_review"]
    assert decisions[-1] == {"decision": "needs_review", "threshold": 0.6, "field": "intent", "confidence": 0.41}
    assert program._resolved_targets()[0].breaker.consecutive_failures == 0  # held for review is not a failure


def test_an_answer_without_a_confidence_goes_to_review_under_a_threshold(project: Path, label_model) -> None:
    label_model(reports=False)  # e.g. a hosted model that gives no logprobs
    write_prompt(project, "guardrails:\n  output: {min_confidence: 0.6}\n")
    review = promptops.load(NAME, trace=False)(text="Where is my new card?")
    assert isinstance(review, promptops.NeedsReview)
    assert (review.confidence, review.least_sure_field, review.confidence_by_field) == (None, "intent", {})
    assert "no reported confidence" in review.reason


def test_without_a_threshold_nothing_is_held(project: Path, label_model) -> None:
    answer = promptops.load(NAME, trace=False)(text="I lost my card on holiday")
    assert answer.intent == "lost_or_stolen_card"


def test_run_prints_a_held_answer_and_its_trace_records_the_decision(project: Path, mlflow_store: str, label_model) -> None:
    import mlflow

    from promptops.runtime import _tracing as tracing

    write_prompt(project, "guardrails:\n  output: {min_confidence: 0.6}\n")
    runner = CliRunner()
    held = runner.invoke(main, ["run", NAME, "--input", "text=I lost my card on holiday"])
    assert held.exit_code == 3, held.output
    assert held.stdout.startswith("NEEDS REVIEW: intent is 0.410 sure, below guardrails.output.min_confidence 0.6")
    assert "intent: lost_or_stolen_card" in held.stdout
    as_json = runner.invoke(main, ["run", NAME, "--input", "text=I lost my card on holiday", "--json"])
    payload = json.loads(as_json.stdout)
    assert as_json.exit_code == 3 and payload["intent"] == "lost_or_stolen_card"
    assert payload["_needs_review"]["confidence"] == 0.41 and payload["_confidence"] == {"intent": 0.41}
    answered = runner.invoke(main, ["run", NAME, "--input", "text=Where is my new card?", "--json"])
    assert answered.exit_code == 0 and json.loads(answered.stdout)["_confidence"] == {"intent": 0.92}

    traces = tracing.search_traces(NAME)
    assert [t.status for t in traces] == ["ok", "needs_review", "needs_review"]
    assert traces[1].decisions == "input_ok,answered,needs_review" and traces[1].confidence == {"intent": 0.41}
    assert traces[0].confidence == {"intent": 0.92}
    assert [t.trace_id for t in tracing.search_traces(NAME, needs_review=True)] == [t.trace_id for t in traces[1:]]
    assert tracing.search_traces(NAME, failed=True) == []  # held for review is answered, not failed
    event = next(e for e in mlflow.get_trace(traces[1].trace_id, flush=True).data.spans[0].events if e.name == "needs_review")
    assert event.attributes["confidence"] == 0.41 and event.attributes["field"] == "intent"
    listed = runner.invoke(main, ["traces", NAME, "--needs-review"], env={"COLUMNS": "100"})
    assert listed.exit_code == 0 and "needs_review" in listed.stdout and "confidence intent 0.410" in listed.stdout


# --- the prompt file ------------------------------------------------------------------------


def test_a_threshold_that_is_not_a_probability_is_refused_in_one_line(project: Path) -> None:
    path = write_prompt(project, "guardrails:\n  output:\n    min_confidence: 1.5\n")
    with pytest.raises(PromptFileError) as caught:
        promptops.load_prompt(NAME)
    line = len(path.read_text().splitlines())
    assert str(caught.value) == (f"prompts/{NAME}.yaml:{line}: guardrails.output.min_confidence: 1.5 is not a probability:"
                                 " use a number above 0 and at most 1, e.g. 0.6")
    refused = CliRunner().invoke(main, ["eval", NAME, "--no-track"])
    assert refused.exit_code == 1 and refused.stderr.strip().splitlines() == [f"Error: {caught.value}"]


def test_a_threshold_on_a_prompt_without_labels_is_refused(project: Path) -> None:
    path = project / "prompts" / "restaurant_booking.yaml"
    path.write_text(path.read_text() + "guardrails:\n  output: {min_confidence: 0.6}\n")
    with pytest.raises(PromptFileError, match="min_confidence: no output field is an enum or a boolean"):
        promptops.load_prompt("restaurant_booking")
