"""The decoding plan of a JSON schema (`promptops.models._plan`) and the content-free chat used for
calibration (`content_free`): pure data, no model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from promptops.models._llama_engine import content_free
from promptops.models._plan import Choice, Free, Text, compile_plan


def nullable_string(title: str) -> dict[str, Any]:
    """What pydantic writes for `Optional[str]` (a field declared `nullable: true`)."""
    return {"anyOf": [{"type": "string"}, {"type": "null"}], "title": title}


BOOKING = {  # restaurant_booking's outputs as DSPy's JSONAdapter sends them, in declared order
    "type": "object",
    "properties": {name: nullable_string(name.title()) for name in ("people", "date", "time", "first_name", "last_name")},
    "required": ["people", "date", "time", "first_name", "last_name"],
    "additionalProperties": False,
    "title": "DSPyProgramOutputs",
}

ROUTING = {  # a label, a flag, a nested object and a count
    "type": "object",
    "properties": {
        "intent": {"enum": ["card_arrival", "change_pin"], "title": "Intent", "type": "string"},
        "urgent": {"type": "boolean"},
        "guest": {"type": "object", "properties": {"name": {"type": "string"}, "vip": {"anyOf": [{"type": "boolean"}, {"type": "null"}]}},
                  "required": ["name", "vip"]},
        "count": {"type": "integer"},
    },
}


def filled(plan, values: dict[str, Any]) -> str:
    """The answer text the plan lays out for `values`: fixed text as is, each choice and free value as JSON."""
    text = []
    for part in plan:
        if isinstance(part, Text):
            text.append(part.text)
            continue
        value: Any = values
        for key in part.path.split("."):
            value = value[key]
        written = " " + json.dumps(value, ensure_ascii=False)
        if isinstance(part, Choice):
            assert written in part.options, (written, part.options)
        text.append(written)
    return "".join(text)


def test_keys_come_in_declared_order_not_alphabetical() -> None:
    plan = compile_plan(BOOKING)
    assert [part.path for part in plan if isinstance(part, Free)] == ["people", "date", "time", "first_name", "last_name"]
    assert plan[0] == Text('{\n  "people":')
    assert plan[-1] == Text("\n}")
    assert Text(',\n  "first_name":') in plan


def test_a_nullable_string_is_a_free_value_that_may_be_null() -> None:
    people = compile_plan(BOOKING)[1]
    assert people == Free("people", '{"type": "string"}', numeric=False, nullable=True, opening=' "')


def test_labels_are_choices_among_their_json_texts() -> None:
    plan = compile_plan(ROUTING)
    choices = {part.path: part.options for part in plan if isinstance(part, Choice)}
    assert choices == {"intent": (' "card_arrival"', ' "change_pin"'), "urgent": (" true", " false"),
                       "guest.vip": (" true", " false", " null")}
    nullable_label = compile_plan({"type": "object", "properties": {"intent": {"anyOf": [{"enum": ["a", "b"]}, {"type": "null"}]}}})
    assert nullable_label[1] == Choice("intent", (' "a"', ' "b"', " null"))


def test_a_value_the_schema_fixes_is_text() -> None:
    plan = compile_plan({"type": "object", "properties": {"kind": {"const": "booking"}, "n": {"type": "integer"}}})
    assert plan[0] == Text('{\n  "kind": "booking",\n  "n":')
    assert plan[1] == Free("n", '{"type": "integer"}', numeric=True)


def test_a_nested_object_is_laid_out_inside_its_parent() -> None:
    plan = compile_plan(ROUTING)
    assert Text(',\n  "guest": {\n    "name":') in plan
    assert Free("guest.name", '{"type": "string"}', numeric=False, opening=' "') in plan
    assert Text('\n  },\n  "count":') in plan


@pytest.mark.parametrize("schema", [
    {"type": "object"},  # any JSON object (json_object mode): nothing is fixed
    {"type": "object", "properties": {}},
    {"type": "object", "properties": {"a": {"type": "string"}}, "patternProperties": {"^x": {}}},
    {"type": "array", "items": {"type": "string"}},
    {"enum": ["a", "b"]},
])
def test_a_schema_without_declared_properties_has_no_plan(schema: dict) -> None:
    assert compile_plan(schema) is None


@pytest.mark.parametrize(("schema", "values"), [
    (BOOKING, {"people": "4", "date": None, "time": "7pm", "first_name": None, "last_name": None}),
    (BOOKING, {"people": None, "date": None, "time": None, "first_name": None, "last_name": None}),
    (ROUTING, {"intent": "change_pin", "urgent": False, "guest": {"name": "Ada", "vip": None}, "count": 2}),
])
def test_a_filled_plan_is_the_json_the_demos_show(schema: dict, values: dict) -> None:
    assert filled(compile_plan(schema), values) == json.dumps(values, indent=2)


def test_a_filled_plan_keeps_non_ascii_text_as_dspys_demos_do() -> None:
    values = {"people": "zwölf", "date": None, "time": None, "first_name": "Zoë", "last_name": None}
    assert filled(compile_plan(BOOKING), values) == json.dumps(values, indent=2, ensure_ascii=False)


def test_a_nullable_integer_may_still_be_null() -> None:
    (_, count, _) = compile_plan({"type": "object", "properties": {"count": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}})
    assert count.nullable or "null" in count.schema_json


# --- content_free ---------------------------------------------------------------------------

REMINDER = "Respond with a JSON object in the following order of fields: `intent` (must be formatted as a valid Python Literal['a', 'b'])."
SYSTEM = {"role": "system", "content": "Your input fields are:\n1. `text` (str)\n..."}
DEMO = [{"role": "user", "content": "[[ ## text ## ]]\nwhere is my card\n\n[[ ## asked_for ## ]]\npeople"},
        {"role": "assistant", "content": '{\n  "intent": "a"\n}'}]


def test_content_free_blanks_every_field_and_keeps_a_reminder_before_them() -> None:
    """promptops' adapter puts DSPy's reminder before the inputs, where it is shared by every request."""
    last = {"role": "user", "content": f"{REMINDER}\n\n[[ ## text ## ]]\nMy card\n\nhas not come\n\n[[ ## asked_for ## ]]\npeople, date"}
    messages = [SYSTEM, *DEMO, last]
    blank = content_free(messages)
    assert blank[:-1] == messages[:-1]  # instructions and demos untouched
    assert blank[-1] == {"role": "user", "content": f"{REMINDER}\n\n[[ ## text ## ]]\nN/A\n\n[[ ## asked_for ## ]]\nN/A"}


def test_content_free_keeps_a_reminder_after_the_fields() -> None:
    """DSPy's own layout: the reminder follows the inputs."""
    last = {"role": "user", "content": f"[[ ## text ## ]]\nMy card has not come\n\n[[ ## asked_for ## ]]\npeople\n\n{REMINDER}"}
    assert content_free([SYSTEM, last])[-1]["content"] == f"[[ ## text ## ]]\nN/A\n\n[[ ## asked_for ## ]]\nN/A\n\n{REMINDER}"


def test_content_free_without_field_headers_is_just_na() -> None:
    assert content_free([SYSTEM, {"role": "user", "content": "hello"}])[-1] == {"role": "user", "content": "N/A"}


def test_content_free_does_not_mistake_an_inputs_text_for_the_reminder() -> None:
    last = {"role": "user", "content": f"{REMINDER}\n\n[[ ## text ## ]]\nAn odd one\n\nRespond with care please"}
    assert content_free([SYSTEM, last])[-1]["content"] == f"{REMINDER}\n\n[[ ## text ## ]]\nN/A"


def test_content_free_keeps_an_empty_last_field() -> None:
    last = {"role": "user", "content": f"{REMINDER}\n\n[[ ## text ## ]]\nTable for 4\n\n[[ ## asked_for ## ]]"}
    assert content_free([SYSTEM, last])[-1]["content"] == f"{REMINDER}\n\n[[ ## text ## ]]\nN/A\n\n[[ ## asked_for ## ]]\nN/A"


def test_content_free_keeps_the_reminder_after_an_empty_last_field() -> None:
    last = {"role": "user", "content": f"[[ ## text ## ]]\nTable for 4\n\n[[ ## asked_for ## ]]\n\n{REMINDER}"}
    assert content_free([SYSTEM, last])[-1]["content"].endswith(REMINDER)
