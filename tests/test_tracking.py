"""`promptops.tracking`: the one package that talks to MLflow, and what an eval run records there."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "promptops"


def mlflow_imports(path: Path) -> list[int]:
    """Lines of `import mlflow...` and `from mlflow... import ...` in a source file."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "mlflow" for alias in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mlflow":
            lines.append(node.lineno)
    return lines


def test_no_module_outside_the_tracking_package_imports_mlflow() -> None:
    tracking = PACKAGE / "tracking"
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
                 if tracking not in path.parents for line in mlflow_imports(path)]
    assert offenders == []
    assert mlflow_imports(tracking / "_store.py"), "the check must see the imports the tracking package does have"


# --- what an eval run records: the rows it scored -------------------------------------------


@pytest.fixture()
def card_arrival_model(project: Path, scripted_model):
    """banking_intent answers from `scripted/card-arrival`, which says card_arrival to everything, never a model."""
    return scripted_model("card-arrival", lambda request: {"intent": "card_arrival"}, prompts=["banking_intent"])


def dataset_input(run_id: str):
    from promptops import tracking

    [data] = tracking.load_run(run_id).inputs.dataset_inputs
    return data


def test_an_eval_run_logs_the_rows_it_scored_as_a_dataset_input(
        project: Path, mlflow_store: str, card_arrival_model) -> None:
    import promptops
    from promptops import tracking
    from promptops.evaluation import load_dataset

    path = project / "prompts" / "banking_intent.yaml"
    path.write_text(path.read_text().replace("  metric: accuracy\n", "  metric: accuracy\n  threshold: 0.5\n"))
    result = promptops.evaluate("banking_intent", split="dev", limit=5)
    scored = load_dataset(promptops.load_prompt("banking_intent"), split="dev").head(5)
    assert result.n == 5 and result.data_digest == scored.digest and len(scored.digest) == 16

    data = dataset_input(result.run_id)
    assert data.dataset.digest == scored.digest and data.dataset.name == "experiments/data/banking_intent/dev.jsonl"
    assert json.loads(data.dataset.profile)["num_rows"] == result.n
    assert {tag.key: tag.value for tag in data.tags}["mlflow.data.context"] == "dev"
    run = tracking.load_run(result.run_id)
    assert run.data.params["data_digest"] == scored.digest
    assert (run.data.tags["promptops.metric"], run.data.tags["promptops.threshold"]) == ("accuracy", "0.5")


def test_the_same_rows_share_a_digest_and_a_changed_row_changes_it(
        project: Path, mlflow_store: str, card_arrival_model) -> None:
    import promptops

    first = promptops.evaluate("banking_intent", split="dev", limit=3)
    again = promptops.evaluate("banking_intent", split="dev", limit=3)
    assert first.data_digest == again.data_digest
    assert dataset_input(first.run_id).dataset.digest == dataset_input(again.run_id).dataset.digest == first.data_digest

    dev = project / "experiments" / "data" / "banking_intent" / "dev.jsonl"
    dev.write_text(dev.read_text().replace("pulled cash?", "took cash out?", 1))
    changed = promptops.evaluate("banking_intent", split="dev", limit=3)
    assert changed.data_digest != first.data_digest
    assert dataset_input(changed.run_id).dataset.digest == changed.data_digest
    assert promptops.evaluate("banking_intent", split="dev", limit=3, track=False).data_digest == changed.data_digest


def test_an_eval_that_loses_the_race_to_log_its_dataset_links_the_one_logged(
        project: Path, mlflow_store: str, card_arrival_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes logging the same rows for the first time: MLflow inserts the dataset once, the other gets a
    unique-constraint error (seen with two `promote` processes gating at once). The loser links the row the winner wrote."""
    import mlflow

    import promptops

    real = mlflow.log_input
    attempts = []

    def lose_the_race(dataset, context=None, **kwargs):
        attempts.append(context)
        if len(attempts) == 1:  # the other process inserts the same dataset first
            with mlflow.start_run(nested=True):
                real(dataset, context=context)
            raise mlflow.MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id,"
                                         " datasets.name, datasets.digest")
        return real(dataset, context=context, **kwargs)

    monkeypatch.setattr(mlflow, "log_input", lose_the_race)
    result = promptops.evaluate("banking_intent", split="dev", limit=3)
    assert attempts == ["dev", "dev"]
    assert dataset_input(result.run_id).dataset.digest == result.data_digest


def test_an_eval_whose_dataset_cannot_be_logged_fails_in_one_sentence(
        project: Path, mlflow_store: str, card_arrival_model, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    import promptops
    from promptops.errors import TrackingError

    attempts = []

    def refuse(dataset, context=None, **kwargs):
        attempts.append(context)
        raise mlflow.MlflowException("disk I/O error")

    monkeypatch.setattr(mlflow, "log_input", refuse)
    with pytest.raises(TrackingError, match="cannot log the eval to MLflow at .*: disk I/O error") as error:
        promptops.evaluate("banking_intent", split="dev", limit=3)
    assert attempts == ["dev"] and "\n" not in str(error.value)  # not retried: only a lost race is


def test_the_digest_reads_values_not_key_order() -> None:
    from promptops.evaluation import Dataset, Example

    one = Dataset(Path("dev.jsonl"), "dev", (Example({"a": 1, "b": [1, 2]}, {"intent": "x"}, "dev.jsonl:1"),))
    same = Dataset(Path("other.jsonl"), "dev", (Example({"b": [1, 2], "a": 1}, {"intent": "x"}, "other.jsonl:9"),))
    other = Dataset(Path("dev.jsonl"), "dev", (Example({"a": 1, "b": [2, 1]}, {"intent": "x"}, "dev.jsonl:1"),))
    assert one.digest == same.digest != other.digest


# --- searching traces: the filter is built here, from what the caller means ----------------------


def traced(experiment: str, prompt: str, status: str = "ok") -> str:
    """A request traced into `experiment`'s MLflow experiment, tagged as the runtime tags one of `prompt`."""
    import time

    from promptops import tracking

    with tracking.request_span(experiment, {"text": "where is my card?"}) as span:
        span.finish(events=[], outputs={"intent": "card_arrival"}, input_tokens=3, output_tokens=2, cost_usd=0.0,
                    attributes={}, tags={"promptops.prompt": prompt, "promptops.status": status})
    time.sleep(0.005)  # a distinct start time per trace, so newest-first is one order
    return span.trace_id


@pytest.mark.parametrize("name", [
    "it's",  # a single quote (a double quote alone is the case below with its single quote swapped for it)
    "x' OR tags.`promptops.status` = 'ok",  # would widen a filter that pasted the name between quotes
    """both ' and " quotes""",  # no MLflow string can hold it: searched wider, then checked on the records
])
def test_a_quote_in_a_prompt_name_neither_breaks_nor_widens_a_trace_search(name: str, mlflow_store: str) -> None:
    from promptops import tracking

    ok = traced(name, name)
    failed = traced(name, name, status="error")
    # names a broken filter would also match: the name's first word, a longer name, the name with its quotes swapped
    for other in {name.split("'")[0].split()[0], name + "x", name.replace("'", '"'), name.replace('"', "'")}:
        if other != name:
            traced(name, other)  # the same experiment: only the tag tells them apart
    held = traced(name, name, status="needs_review")

    found = tracking.search_traces(name, newest_first=True)
    assert [record.trace_id for record in found] == [held, failed, ok]
    assert all(record.tags["promptops.prompt"] == name for record in found)
    assert [r.trace_id for r in tracking.search_traces(name, exclude_statuses=("ok", "needs_review"))] == [failed]
    assert [r.trace_id for r in tracking.search_traces(name, tags={"promptops.status": "error"})] == [failed]
    assert [r.trace_id for r in tracking.search_traces(name, limit=2, newest_first=True)] == [held, failed]
    assert tracking.search_traces(name, since_ms=found[0].request_time_ms + 60_000) == []


def test_a_trace_reads_back_as_a_plain_record(mlflow_store: str) -> None:
    from promptops import tracking

    trace_id = traced("banking_intent", "banking_intent")
    tracking.flush_traces()  # written in the background: feedback needs the trace stored
    tracking.log_feedback(trace_id, correct=False, expected={"intent": "lost_or_stolen_card"})
    [searched] = tracking.search_traces("banking_intent")
    whole = tracking.get_trace(trace_id)
    assert searched.trace_id == whole.trace_id == trace_id and searched.state == "OK"
    assert searched.root_inputs is None and searched.request_preview  # a search reads no spans
    assert whole.root_inputs == {"text": "where is my card?"} and whole.root_outputs == {"intent": "card_arrival"}
    assert whole.root_attributes["mlflow.spanType"] == "CHAIN"
    assert [(a.name, a.kind, a.value) for a in whole.assessments] == [
        ("correct", "feedback", False), ("intent", "expectation", "lost_or_stolen_card")]
    assert whole.expectations() == searched.expectations() == {"intent": "lost_or_stolen_card"}
    assert tracking.get_trace("tr-0123456789abcdef0123456789abcdef") is None
