"""Judged evals in MLflow's GenAI views: a trace per example with the judge's feedback, the judge on the Judges page,
the rows on the Datasets page, the judge's columns in the per-example table, and judge checks as runs.

The results are built here, as an eval of `banking_summary` under its `ticket_title` judge would return them:
what is under test is what MLflow records, not the model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import pytest

JUDGE_MODEL = "local/smollm2-135m"


def judgement(verdict: Optional[str], reason: str, *, judge: str = "ticket_title", error: Optional[str] = None):
    from promptops.evaluation import Judgement

    passed = verdict == "pass" or (verdict is not None and verdict.isdigit() and int(verdict) >= 4)
    score = {"pass": 1.0, "fail": 0.0}.get(verdict or "", (int(verdict) - 1) / 4 if verdict and verdict.isdigit() else 0.0)
    return Judgement(value=verdict, score=score, passed=passed, reason=reason, judge=judge, model=JUDGE_MODEL,
                     model_calls=0 if verdict is None else 1, input_tokens=140, output_tokens=18, cost_usd=0.0000016,
                     latency_s=0.5, error=error)


def judged_eval(prompt, verdicts: list[Optional[str]], *, similarity: bool = True, split: str = "dev"):
    """An `EvalResult` of the first rows of the split, each answer judged as `verdicts` says (None: the judge failed)."""
    from promptops.evaluation import load_dataset
    from promptops.evaluation import EvalResult, ExampleResult

    rows = load_dataset(prompt, split=split).head(len(verdicts))
    examples = []
    for index, (row, verdict) in enumerate(zip(rows.examples, verdicts)):
        verdict_of = (judgement(verdict, f"The title names what message {index} asks." if verdict == "pass"
                                else f"The title of message {index} names another problem.")
                      if verdict is not None else judgement(None, "the judge failed: ValueError: no score", error="ValueError: no score"))
        examples.append(ExampleResult(
            index=index, source=row.source, inputs=row.inputs, expected=row.expected,
            predicted={"summary": f"Title {index}"}, correct=verdict_of.passed, error=None, parse_failure=False,
            input_tokens=90, output_tokens=8, latency_s=0.4, model_calls=1, cache_hits=0, cost_usd=0.000001,
            score=verdict_of.score, judgement=verdict_of, similarity=round(0.9 - index / 20, 6) if similarity else None))
    scores = [e.score for e in examples]
    return EvalResult(
        prompt=prompt.name, prompt_hash=prompt.content_hash, model=prompt.model.id, dataset=str(rows.path), split=split,
        n=len(examples), metric="judge", score=sum(scores) / len(scores),
        metrics={"judge": sum(scores) / len(scores), "judge_pass_rate": sum(e.correct for e in examples) / len(examples)},
        cost_usd=0.00001, input_tokens=90 * len(examples), output_tokens=8 * len(examples), latency_p50_s=0.4,
        latency_p95_s=0.4, model_calls=len(examples), cache_hits=0, errors=0, parse_failures=0, wall_time_s=3.0,
        examples=tuple(examples), data_digest=rows.digest)


@pytest.fixture()
def summary(project: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch):
    """The free-text prompt whose eval.metric is the `ticket_title` judge file."""
    import promptops

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return promptops.load_prompt("banking_summary")


def run_traces(run_id: str) -> list:
    import mlflow

    from promptops import tracking

    experiment_id = tracking.load_run(run_id).info.experiment_id
    return mlflow.search_traces(locations=[experiment_id], run_id=run_id, return_type="list", order_by=["timestamp_ms ASC"])


def by_name(trace) -> dict:
    return {a.name: a for a in trace.info.assessments}


def test_a_judged_eval_logs_a_trace_per_example_with_the_judges_feedback(summary, project: Path) -> None:
    from mlflow.entities import AssessmentSourceType

    from promptops import tracking

    result = judged_eval(summary, ["pass", "fail", "pass", None])
    run_id = tracking.log_eval(result, summary, root=project)

    traces = run_traces(run_id)
    assert len(traces) == 4  # each linked to the run: MLflow's run view lists them
    sources = [trace.info.tags["promptops.source"] for trace in traces]
    assert sources == [example.source for example in result.examples]
    for trace, example in zip(traces, result.examples):
        root = trace.data.spans[0]
        assert root.inputs == example.inputs and root.outputs == example.predicted
        assessments = by_name(trace)
        assert assessments["summary"].expectation.value == example.expected["summary"]
        assert assessments["summary"].source.source_type == AssessmentSourceType.HUMAN
        feedback = assessments["ticket_title"]
        assert feedback.source.source_type == AssessmentSourceType.LLM_JUDGE and feedback.source.source_id == JUDGE_MODEL
        assert feedback.metadata["mlflow.assessment.sourceRunId"] == run_id
        if example.judgement.value is None:
            assert feedback.feedback.value is None and "no score" in feedback.feedback.error.error_message
        else:
            assert feedback.feedback.value is (example.judgement.value == "pass")
            assert feedback.rationale == example.judgement.reason
        similarity = assessments["similarity"]
        assert similarity.feedback.value == pytest.approx(example.similarity)
        assert similarity.source.source_type == AssessmentSourceType.CODE


def test_a_1_to_5_judges_feedback_is_the_integer_it_gave(summary, project: Path) -> None:
    from promptops import tracking
    from promptops.evaluation import load_judge_file

    five = load_judge_file(project / "judges" / "ticket_title.yaml").model_copy(update={"scale": "1-5"})
    result = judged_eval(summary, ["5", "2"], similarity=False)
    run_id = tracking.log_eval(result, summary, root=project, judge=five)

    assert [by_name(trace)["ticket_title"].feedback.value for trace in run_traces(run_id)] == [5, 2]


def test_the_judge_is_on_the_judges_page_once_and_a_new_rubric_is_a_new_version(summary, project: Path) -> None:
    from mlflow.genai.scorers import list_scorers
    from mlflow.genai.scorers.registry import list_scorer_versions

    from promptops import tracking
    from promptops.evaluation import load_judge_file
    from promptops.tracking._judging import register_judge

    first = tracking.log_eval(judged_eval(summary, ["pass", "fail"]), summary, root=project)
    tracking.log_eval(judged_eval(summary, ["pass", "pass", "fail"]), summary, root=project)
    experiment_id = tracking.load_run(first).info.experiment_id

    [judge] = list_scorers(experiment_id=experiment_id)
    assert (judge.name, judge.model, judge.scorer_version) == ("ticket_title", "promptops:/local/smollm2-135m", 1)
    assert "It passes if it names the" in judge.instructions and "{{ expectations }}" in judge.instructions
    assert len(list_scorer_versions(name="ticket_title", experiment_id=experiment_id)) == 1

    spec = load_judge_file(project / "judges" / "ticket_title.yaml")
    stricter = spec.model_copy(update={"rubric": spec.rubric + " It also fails if it is longer than six words."})
    assert register_judge(stricter, experiment_id) == 2
    assert register_judge(stricter, experiment_id) == 2
    assert [version for _, version in list_scorer_versions(name="ticket_title", experiment_id=experiment_id)] == [1, 2]


def test_judge_models_as_mlflow_model_uris() -> None:
    from promptops.tracking._judging import judge_model_uri

    assert judge_model_uri("openai/gpt-4o-mini") == "openai:/gpt-4o-mini"  # MLflow can run this one itself
    assert judge_model_uri("ollama/llama3.2:1b") == "ollama:/llama3.2:1b"
    assert judge_model_uri("local/smollm2-135m") == "promptops:/local/smollm2-135m"  # only promptops can


def test_the_rows_scored_are_one_evaluation_dataset_per_prompt_split_and_digest(summary, project: Path) -> None:
    from mlflow.genai.datasets import search_datasets

    from promptops import tracking

    result = judged_eval(summary, ["pass", "fail", "pass"])
    first = tracking.log_eval(result, summary, root=project)
    again = tracking.log_eval(result, summary, root=project)

    name = f"banking_summary/dev@{result.data_digest}"
    [dataset] = search_datasets(filter_string=f"name = '{name}'")
    assert dataset.tags["promptops.data_digest"] == result.data_digest and dataset.tags["promptops.split"] == "dev"
    records = dataset.to_df()
    rows = {inputs["text"]: expected["summary"] for inputs, expected in zip(records["inputs"], records["expectations"])}
    assert rows == {e.inputs["text"]: e.expected["summary"] for e in result.examples}
    for run_id in (first, again):  # the run names it among its inputs, beside the file it read
        names = {data.dataset.name for data in tracking.load_run(run_id).inputs.dataset_inputs}
        assert names == {name, "experiments/data/banking_summary/dev.jsonl"}

    other_rows = judged_eval(summary, ["pass", "fail", "pass", "pass"])
    tracking.log_eval(other_rows, summary, root=project)
    assert len(search_datasets(filter_string="name LIKE 'banking_summary/dev@%'")) == 2


def test_an_eval_that_loses_the_race_to_link_its_evaluation_dataset_links_the_one_inserted(summary, project: Path,
                                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes linking the same evaluation dataset to their runs for the first time: one insert wins, the other
    gets a unique-constraint error and links the row the first wrote."""
    import mlflow
    from mlflow import MlflowClient

    from promptops import tracking

    real = MlflowClient.log_inputs
    attempts = []

    def lose_the_race(self, run_id, datasets=None, models=None):
        if not any(data.dataset.name.startswith("banking_summary/dev@") for data in datasets or []):
            return real(self, run_id, datasets=datasets, models=models)  # the file's dataset, logged by the run itself
        attempts.append(run_id)
        if len(attempts) == 1:  # the other process's run links the same dataset first
            other = self.create_run(self.get_run(run_id).info.experiment_id).info.run_id
            real(self, other, datasets=datasets)
            raise mlflow.MlflowException("(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint"
                                         ' "uq_datasets_experiment_id_name_digest"')
        return real(self, run_id, datasets=datasets, models=models)

    monkeypatch.setattr(MlflowClient, "log_inputs", lose_the_race)
    result = judged_eval(summary, ["pass", "fail"])
    run_id = tracking.log_eval(result, summary, root=project)
    assert attempts == [run_id, run_id]
    names = {data.dataset.name for data in tracking.load_run(run_id).inputs.dataset_inputs}
    assert f"banking_summary/dev@{result.data_digest}" in names


def test_the_per_example_table_has_the_score_the_judges_verdict_and_the_similarity(summary, project: Path) -> None:
    from promptops import tracking

    result = judged_eval(summary, ["pass", None])
    table = tracking.load_table(tracking.log_eval(result, summary, root=project))

    assert table["score"].tolist() == [1.0, 0.0]
    assert table["judge.value"].tolist() == ["pass", ""]  # the judge failed: the reason says how
    assert table["judge.reason"].tolist() == [e.judgement.reason for e in result.examples]
    assert table["judge.cost_usd"].tolist() == [0.0000016, 0.0000016]
    assert table["similarity"].tolist() == [0.9, 0.85]


def test_a_plain_eval_gets_no_judge_columns_and_no_traces(summary, project: Path) -> None:
    from promptops import tracking

    judged = judged_eval(summary, ["pass", "fail"])
    plain = dataclasses.replace(judged, metric="accuracy", examples=tuple(
        dataclasses.replace(e, judgement=None, similarity=None, score=None) for e in judged.examples))
    run_id = tracking.log_eval(plain, summary, root=project)

    columns = set(tracking.load_table(run_id).columns)
    assert not columns & {"score", "judge.value", "judge.reason", "judge.cost_usd", "similarity"}
    assert run_traces(run_id) == []
    assert len(tracking.load_run(run_id).inputs.dataset_inputs) == 1


def test_when_mlflow_refuses_the_assessments_the_eval_fails_with_one_sentence(summary, project: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.genai.datasets

    from promptops import tracking
    from promptops.errors import TrackingError

    def refuse(**_):
        raise RuntimeError("evaluation datasets need a database store\nsecond line")

    monkeypatch.setattr(mlflow.genai.datasets, "create_dataset", refuse)
    with pytest.raises(TrackingError) as error:
        tracking.log_eval(judged_eval(summary, ["pass"]), summary, root=project)
    message = str(error.value)
    assert message.startswith("eval run ") and "is logged, but not its assessments" in message
    assert "evaluation datasets need a database store" in message and "\n" not in message


def test_a_judge_check_is_a_run_with_accuracy_kappa_and_the_disagreements(summary, project: Path) -> None:
    import mlflow
    from mlflow.genai.scorers import list_scorers

    from promptops import tracking
    from promptops.evaluation import CheckedRow, JudgeCheck, load_judge_file

    spec = load_judge_file(project / "judges" / "ticket_title.yaml")
    rows = (CheckedRow("judge_labels.jsonl:1", "pass", "pass", "It names the card order."),
            CheckedRow("judge_labels.jsonl:2", "fail", "pass", "It names a passcode."),
            CheckedRow("judge_labels.jsonl:3", "pass", None, "the judge failed: ValueError: no score"),
            CheckedRow("judge_labels.jsonl:4", "fail", "fail", "It names another problem."))
    check = JudgeCheck(
        judge="ticket_title", model=JUDGE_MODEL, data=str(project / "experiments/data/banking_summary/judge_labels.jsonl"),
        n=4, accuracy=0.5, kappa=0.2, kappa_weights=None, labels=("pass", "fail"),
        confusion={"pass": {"pass": 1, "fail": 0, "error": 1}, "fail": {"pass": 1, "fail": 1, "error": 0}},
        errors=1, judge_calls=3, judge_cache_hits=0, judge_cost_usd=0.0000048, wall_time_s=2.5, rows=rows)

    run_id = tracking.log_judge_check(check, spec, root=project)

    run = tracking.load_run(run_id)
    assert mlflow.get_experiment(run.info.experiment_id).name == "judges/ticket_title"
    assert {key: run.data.metrics[key] for key in ("accuracy", "kappa", "n", "errors", "judge_calls")} == {
        "accuracy": 0.5, "kappa": 0.2, "n": 4, "errors": 1, "judge_calls": 3}
    assert run.data.metrics["judge_cost_usd"] == pytest.approx(0.0000048)
    assert (run.data.params["judge"], run.data.params["model"], run.data.params["scale"]) == ("ticket_title", JUDGE_MODEL, "pass_fail")
    assert run.data.params["data"] == "experiments/data/banking_summary/judge_labels.jsonl"
    confusion = tracking.load_table(run_id, "confusion.json")
    assert confusion.to_dict("list") == {"human": ["pass", "fail"], "judge.pass": [1, 1], "judge.fail": [0, 1], "judge.error": [1, 0]}
    disagreements = tracking.load_table(run_id, "disagreements.json")
    assert disagreements["source"].tolist() == ["judge_labels.jsonl:2", "judge_labels.jsonl:3"]
    assert disagreements["judge"].tolist() == ["pass", "error"]
    assert [judge.name for judge in list_scorers(experiment_id=run.info.experiment_id)] == ["ticket_title"]
