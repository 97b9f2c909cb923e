"""Metrics on plain dicts: accuracy, null-aware per-field F1, schema validity, user metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptops.artifact import parse_prompt
from promptops.errors import MetricError
from promptops.evaluation import accuracy, default_metric, field_scores, load_user_metric, normalize, schema_validity

EXTRACT = parse_prompt("""
name: booking
instructions: extract
inputs: [{name: text}]
outputs:
  - {name: people, nullable: true}
  - {name: date, nullable: true}
""")
LABEL = parse_prompt("""
name: label
instructions: label
inputs: [{name: text}]
outputs: [{name: intent, type: enum, values: [a, b]}]
""")


def test_normalize_ignores_case_spacing_and_edge_punctuation() -> None:
    assert normalize("  Tomorrow  Night. ") == normalize("tomorrow night")
    assert normalize("") is None and normalize(None) is None
    assert normalize(3) == normalize(3.0)


def test_accuracy_counts_failed_answers_as_wrong() -> None:
    pairs = [({"intent": "a"}, {"intent": "a"}), ({"intent": "b"}, {"intent": "a"}), ({"intent": "b"}, None)]
    assert accuracy(pairs, LABEL.outputs) == pytest.approx(1 / 3)


def test_field_f1_is_null_aware() -> None:
    pairs = [
        ({"people": "4", "date": None}, {"people": "4", "date": None}),        # people TP; null/null counts nothing
        ({"people": "2", "date": "friday"}, {"people": "3", "date": None}),    # people FP+FN; date FN
        ({"people": None, "date": None}, {"people": None, "date": "today"}),   # date FP
        ({"people": "5", "date": "today"}, None),                              # failed answer: two FN
    ]
    scores = field_scores(pairs, EXTRACT.outputs)
    people, date, micro = scores["people"], scores["date"], scores["micro"]
    assert (people.true_positives, people.false_positives, people.false_negatives) == (1, 1, 2)
    assert people.precision == pytest.approx(0.5) and people.recall == pytest.approx(1 / 3)
    assert people.f1 == pytest.approx(0.4)
    assert (date.true_positives, date.false_positives, date.false_negatives) == (0, 1, 2)
    assert date.f1 == 0.0
    assert (micro.true_positives, micro.false_positives, micro.false_negatives) == (1, 2, 4)


def test_all_null_field_predicted_null_is_perfect() -> None:
    scores = field_scores([({"people": None, "date": None}, {"people": None, "date": None})], EXTRACT.outputs)
    assert scores["people"].f1 == 1.0


def test_nested_objects_are_scored_per_leaf() -> None:
    prompt = parse_prompt("""
name: nested
instructions: x
inputs: [{name: text}]
outputs:
  - name: booking
    type: object
    fields: [{name: date, nullable: true}, {name: time, nullable: true}]
""")
    scores = field_scores([({"booking": {"date": "mon", "time": None}}, {"booking": {"date": "Mon", "time": "9"}})], prompt.outputs)
    assert set(scores) == {"booking.date", "booking.time", "micro"}
    assert scores["booking.date"].true_positives == 1 and scores["booking.time"].false_positives == 1


def test_schema_validity() -> None:
    predictions = [{"intent": "a"}, {"intent": "c"}, None, {"intent": "b"}]
    assert schema_validity(predictions, LABEL) == 0.5


def test_default_metric() -> None:
    assert default_metric(LABEL) == "accuracy"
    assert default_metric(EXTRACT) == "f1"


def test_user_metric_is_imported_from_the_project(tmp_path: Path) -> None:
    (tmp_path / "my_metrics.py").write_text("def starts_right(example, prediction):\n    return float(prediction['intent'][0] == example['intent'][0])\n")
    metric = load_user_metric("my_metrics:starts_right", tmp_path)
    assert metric({"intent": "abc"}, {"intent": "axe"}) == 1.0
    with pytest.raises(MetricError, match="has no function 'nope'"):
        load_user_metric("my_metrics:nope", tmp_path)
    with pytest.raises(MetricError, match="cannot import 'no_such_module'"):
        load_user_metric("no_such_module:f", tmp_path)
    with pytest.raises(MetricError, match="unknown metric 'bleu'"):
        load_user_metric("bleu", tmp_path)
