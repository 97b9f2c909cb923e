"""Eval sets: split files and split columns, JSONL and CSV, bad rows reported by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptops import load_prompt
from promptops.evaluation import load_dataset
from promptops.errors import DatasetError


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_example_eval_sets_have_three_checked_splits(project: Path) -> None:
    for name, sizes in {"banking_intent": (128, 64, 40), "restaurant_booking": (120, 60, 60)}.items():
        prompt = load_prompt(name)
        for split, size in zip(("train", "dev", "test"), sizes):
            assert len(load_dataset(prompt, split=split)) == size


def test_banking_labels_cover_the_eight_intents(project: Path) -> None:
    prompt = load_prompt("banking_intent")
    labels = {ex.expected["intent"] for ex in load_dataset(prompt, split="test").examples}
    assert labels == set(prompt.outputs[0].values)


def test_restaurant_nulls_stand_for_absent_slots(project: Path) -> None:
    examples = load_dataset(load_prompt("restaurant_booking"), split="dev").examples
    assert any(ex.expected["first_name"] is None for ex in examples)
    assert any(ex.expected["people"] is not None for ex in examples)
    for ex in examples:  # every value is a span of the message
        assert all(v is None or v in ex.inputs["text"] for v in ex.expected.values())


def test_single_file_with_split_column(project: Path) -> None:
    path = write_jsonl(project / "one.jsonl", [
        {"text": "card?", "intent": "card_arrival", "split": "dev"},
        {"text": "pin", "intent": "change_pin", "split": "train"},
        {"text": "rate", "intent": "exchange_rate", "split": "dev"},
    ])
    dev = load_dataset(load_prompt("banking_intent"), path, "dev")
    assert [ex.inputs["text"] for ex in dev.examples] == ["card?", "rate"]
    assert dev.examples[1].source == "one.jsonl:3"


def test_csv_cells_empty_means_null(project: Path) -> None:
    path = project / "booking.csv"
    path.write_text("text,asked_for,people,date,time,first_name,last_name,split\n"
                    "table for two,,two,,,,,test\n"
                    "\"7pm, please\",time,,,7pm,,,test\n")
    rows = load_dataset(load_prompt("restaurant_booking"), path, "test").examples
    assert rows[0].expected == {"people": "two", "date": None, "time": None, "first_name": None, "last_name": None}
    assert rows[1].inputs == {"text": "7pm, please", "asked_for": "time"}


@pytest.mark.parametrize(
    ("rows", "line", "words"),
    [
        ([{"text": "a", "intent": "card_arrival"}, {"text": "b"}], 2, "missing output field 'intent'"),
        ([{"intent": "card_arrival"}], 1, "missing input field 'text'"),
        ([{"text": "a", "intent": "card_arrival"}, {"text": "a", "intent": "card_arival"}], 2, "field 'intent'"),
        ([{"text": 3, "intent": "card_arrival"}], 1, "field 'text'"),
    ],
)
def test_bad_rows_are_reported_by_file_and_line(project: Path, rows: list[dict], line: int, words: str) -> None:
    folder = project / "bad"
    write_jsonl(folder / "dev.jsonl", rows)
    with pytest.raises(DatasetError) as caught:
        load_dataset(load_prompt("banking_intent"), folder, "dev")
    assert str(caught.value).startswith(f"bad/dev.jsonl:{line}: ")
    assert words in str(caught.value)


def test_broken_json_line_and_missing_split(project: Path) -> None:
    folder = project / "broken"
    folder.mkdir()
    (folder / "dev.jsonl").write_text('{"text": "a", "intent": "card_arrival"}\n{"text": \n')
    prompt = load_prompt("banking_intent")
    with pytest.raises(DatasetError, match=r"dev.jsonl:2: not valid JSON"):
        load_dataset(prompt, folder, "dev")
    with pytest.raises(DatasetError, match=r"no test.jsonl or test.csv in this folder"):
        load_dataset(prompt, folder, "test")
    with pytest.raises(DatasetError, match=r"no such dataset file or folder"):
        load_dataset(prompt, project / "nowhere", "dev")
