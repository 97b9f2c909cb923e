"""A JSON schema as a decoding plan: the text it fixes, the choices among known values, the free values.

DSPy's JSONAdapter asks for one JSON object whose properties are the output fields, in the
signature's order, and shows its demos as `json.dumps(outputs, indent=2)`. Under a grammar a
small model spells every brace, key and quote itself, a token of 1 to 3 characters at a time.
Most of that text is fixed by the schema, so the plan lays it out as `Text` (appended without
sampling), `Choice` (an enum, a boolean, a const-or-null: picked among its options by the
model's likelihood) and `Free` (a value the model writes under a grammar for that value only).

The layout is json.dumps' indent=2, the same text the demos show, with keys in declared order
(a free list or object inside is written in whatever layout its grammar allows).
Pure data: nothing here touches a model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional, Union

INDENT = "  "


@dataclass(frozen=True)
class Text:
    """Text the schema fixes: punctuation, keys, indentation."""

    text: str


@dataclass(frozen=True)
class Choice:
    """A value that must be one of `options` (JSON texts, each with the space that precedes it)."""

    path: str  # the output field, dotted for nested objects
    options: tuple[str, ...]


@dataclass(frozen=True)
class Free:
    """A value the model writes token by token under a grammar for this value alone."""

    path: str
    schema_json: str  # the value's schema without its null alternative
    numeric: bool  # a complete number may still go on ("4" then "2"), so only the grammar's end stops it
    nullable: bool = False  # null or a value: decided by likelihood before any value is sampled
    opening: str = ""  # the text every non-null value starts with (' "' for a string), when there is one


@dataclass(frozen=True)
class Switch:
    """A value whose schema depends on an earlier choice: an agent step's tool arguments, by the tool chosen.

    Declared in a schema as `x-promptops-depends-on: <field>` and `x-promptops-cases: {value: schema}`
    (promptops' agent adapter writes them for the embedded engine only).
    """

    path: str
    on: str  # the path of the choice it depends on
    cases: tuple[tuple[str, str], ...]  # (the choice's value as JSON text, the value's schema as JSON)
    level: int


Part = Union[Text, Choice, Free, Switch]


def compile_plan(schema: dict[str, Any]) -> Optional[tuple[Part, ...]]:
    """The plan for an object schema with declared properties; None for anything else (e.g. any JSON object)."""
    if not _is_fixed_object(schema):
        return None
    parts: list[Part] = []
    _object(schema, "", 0, parts)
    return tuple(_merge_text(parts))


def value_grammar_text(schema_json: str) -> str:
    """GBNF for one value preceded by the space json.dumps puts after a colon."""
    return _value_grammar_text(schema_json)


@lru_cache(maxsize=256)
def _value_grammar_text(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf = strict_strings(json_schema_to_gbnf(schema_json))
    renamed, count = re.subn(r"(?m)^root ::= ", "promptops-value ::= ", gbnf, count=1)
    if count != 1:
        raise ValueError(f"no root rule in the grammar for {schema_json}")
    return renamed + '\nroot ::= " " promptops-value\n'


def strict_strings(gbnf: str) -> str:
    """JSON strings hold no raw control characters (a newline is written \\n); llama-cpp-python's grammar allowed them."""
    return gbnf.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x7F\\x00-\\x1F]')


def _is_fixed_object(schema: Any) -> bool:
    return (
        isinstance(schema, dict)
        and schema.get("type") == "object"
        and isinstance(schema.get("properties"), dict)
        and bool(schema["properties"])
        and not schema.get("patternProperties")
    )


def _object(schema: dict[str, Any], path: str, level: int, parts: list[Part]) -> None:
    properties = list(schema["properties"].items())  # declared order, as the signature and the demos have it
    parts.append(Text("{"))
    for index, (name, sub) in enumerate(properties):
        parts.append(Text("\n" + INDENT * (level + 1) + json.dumps(name, ensure_ascii=False) + ":"))
        _value(sub if isinstance(sub, dict) else {}, f"{path}.{name}" if path else name, level + 1, parts)
        if index < len(properties) - 1:
            parts.append(Text(","))
    parts.append(Text("\n" + INDENT * level + "}"))


def value_parts(schema: dict[str, Any], path: str, level: int) -> tuple[Part, ...]:
    """The plan of one value (a case of a Switch, once its choice is known)."""
    parts: list[Part] = []
    _value(schema, path, level, parts)
    return tuple(_merge_text(parts))


def _value(schema: dict[str, Any], path: str, level: int, parts: list[Part]) -> None:
    cases = schema.get("x-promptops-cases")
    if isinstance(cases, dict) and isinstance(schema.get("x-promptops-depends-on"), str):
        parts.append(Switch(path, schema["x-promptops-depends-on"],
                            tuple((json.dumps(value, ensure_ascii=False), json.dumps(case, ensure_ascii=False))
                                  for value, case in cases.items()), level))
        return
    options = _options(schema)
    if options is not None and len(options) == 1:
        parts.append(Text(" " + options[0]))
    elif options is not None:
        parts.append(Choice(path, tuple(" " + option for option in options)))
    elif _is_fixed_object(schema):
        parts.append(Text(" "))
        _object(schema, path, level, parts)
    elif schema.get("type") == "object" and schema.get("properties") == {}:
        parts.append(Text(" {}"))  # a tool without arguments
    else:
        value, nullable = _without_null(schema)
        opening = ' "' if value.get("type") == "string" and not value.get("anyOf") else ""
        if nullable and not opening:
            value, nullable = schema, False  # no one token starts every value: the grammar keeps null among them
        parts.append(Free(path, json.dumps(value, ensure_ascii=False), _may_be_number(value), nullable, opening))


def _without_null(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema without a null alternative (`anyOf: [X, null]`, pydantic's Optional), and whether it had one."""
    alternatives = schema.get("anyOf")
    if isinstance(alternatives, list):
        rest = [a for a in alternatives if not (isinstance(a, dict) and a.get("type") == "null")]
        if len(rest) < len(alternatives) and rest:
            extra = {k: v for k, v in schema.items() if k not in ("anyOf", "title", "description", "default")}
            value = rest[0] if len(rest) == 1 and not extra else {**extra, "anyOf": rest}
            return value, True
    return schema, False


def _options(schema: dict[str, Any]) -> Optional[list[str]]:
    """Every JSON text the schema admits, when it admits a known few; None when it admits open text."""
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return _unique(json.dumps(value, ensure_ascii=False) for value in schema["enum"])
    if "const" in schema:
        return [json.dumps(schema["const"], ensure_ascii=False)]
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(alternatives, list) and alternatives:
        collected: list[str] = []
        for alternative in alternatives:
            found = _options(alternative) if isinstance(alternative, dict) else None
            if found is None:
                return None
            collected.extend(found)
        return _unique(collected)
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    texts = {"boolean": ["true", "false"], "null": ["null"]}
    if kinds and all(kind in texts for kind in kinds):
        return _unique(text for kind in kinds for text in texts[kind])
    return None


def _may_be_number(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if any(kind in ("integer", "number") for kind in kinds) or not schema:
        return True
    return any(_may_be_number(alternative) for alternative in (schema.get("anyOf") or schema.get("oneOf") or ()))


def _unique(texts: Any) -> list[str]:
    return list(dict.fromkeys(texts))


def _merge_text(parts: list[Part]) -> list[Part]:
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + part.text)
        else:
            merged.append(part)
    return merged
