"""What changed between two versions of a prompt, section by section, for a person reviewing it.

Compares the validated `Prompt`s rather than the YAML text, so reformatting or key order is no
change, while a new enum value, a demo or a temperature is named with its old and new value.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from promptops.artifact._prompt import FieldSpec, Prompt
    from promptops.artifact._agent_spec import GuardrailsSpec

_MODEL_SETTINGS = ("id", "temperature", "max_tokens", "api_base")
_DEMO_WIDTH = 120


@dataclass(frozen=True)
class PromptChange:
    """One changed section: `summary` fits a line, `detail` shows the lines that changed."""

    section: str
    summary: str
    detail: str = ""


def diff_prompts(old: "Prompt", new: "Prompt", *, old_label: str = "old", new_label: str = "new") -> list[PromptChange]:
    """The changes from `old` to `new`, in file order; empty when they are the same prompt."""
    checks = (
        _name(old.name, new.name),
        _text("description", old.description, new.description, old_label, new_label),
        _text("instructions", old.instructions, new.instructions, old_label, new_label),
        _fields("inputs", old.inputs, new.inputs),
        _fields("outputs", old.outputs, new.outputs),
        _demos(old.demos, new.demos),
        _model(old, new),
        _mapping("config", old.config, new.config),
        _mapping("eval", old.eval.model_dump(), new.eval.model_dump()),
        _guardrails(old.guardrails, new.guardrails),
        _tools(old, new),
        _loop(old, new),
    )
    return [change for change in checks if change is not None]


def _name(old: str, new: str) -> Optional[PromptChange]:
    return None if old == new else PromptChange("name", f"name: {old} → {new}")


def _text(section: str, old: str, new: str, old_label: str, new_label: str) -> Optional[PromptChange]:
    if old == new:
        return None
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), f"{old_label}: {section}",
                                      f"{new_label}: {section}", lineterm=""))
    added = sum(1 for line in lines[2:] if line.startswith("+"))
    removed = sum(1 for line in lines[2:] if line.startswith("-"))
    if not old.strip():
        summary = f"{section} added"
    elif not new.strip():
        summary = f"{section} removed"
    else:
        summary = f"{section} changed: {_lines(added)} added, {removed} removed"
    return PromptChange(section, summary, "\n".join(lines))


def _lines(count: int) -> str:
    return "1 line" if count == 1 else f"{count} lines"


# --- fields ----------------------------------------------------------------------------


def _fields(section: str, old: "list[FieldSpec]", new: "list[FieldSpec]") -> Optional[PromptChange]:
    before = {spec.name: spec for spec in old}
    after = {spec.name: spec for spec in new}
    removed = [n for n in before if n not in after]
    added = [n for n in after if n not in before]
    changed = [n for n in after if n in before and before[n] != after[n]]
    parts = [f"{verb} {', '.join(map(repr, names))}" for verb, names in
             (("added", added), ("removed", removed), ("changed", changed)) if names]
    lines = [f"- {_describe_field(before[name])}" for name in removed]
    lines += [f"+ {_describe_field(after[name])}" for name in added]
    lines += [f"~ {name}: " + "; ".join(_field_changes(before[name], after[name])) for name in changed]
    kept_old = [n for n in before if n in after]
    kept_new = [n for n in after if n in before]
    if kept_old != kept_new:  # DSPy signatures keep field order, so order is a change
        parts.append("reordered")
        lines.append(f"~ order: {', '.join(kept_old)} → {', '.join(kept_new)}")
    if not parts:
        return None
    return PromptChange(section, f"{section}: {'; '.join(parts)}", "\n".join(lines))


def _describe_field(spec: "FieldSpec") -> str:
    text = f"{spec.name}: {_describe_type(spec)}"
    return f"{text} — {spec.description}" if spec.description else text


def _describe_type(spec: "FieldSpec") -> str:
    if spec.type == "enum":
        text = f"enum [{', '.join(spec.values or ())}]"
    elif spec.type == "list":
        text = f"list of {_describe_type(spec.items) if spec.items else 'string'}"
    elif spec.type == "object":
        text = "object {" + ", ".join(f"{f.name}: {_describe_type(f)}" for f in spec.fields or ()) + "}"
    else:
        text = spec.type
    return f"{text} or null" if spec.nullable else text


def _field_changes(old: "FieldSpec", new: "FieldSpec") -> list[str]:
    changes = []
    if old.type == new.type == "enum":
        added = [v for v in new.values or () if v not in (old.values or ())]
        removed = [v for v in old.values or () if v not in (new.values or ())]
        if added:
            changes.append(f"values added: {', '.join(added)}")
        if removed:
            changes.append(f"values removed: {', '.join(removed)}")
        if not added and not removed and old.values != new.values:
            changes.append("values reordered")
        if old.nullable != new.nullable:
            changes.append(f"nullable {old.nullable} → {new.nullable}")
    elif _describe_type(old) != _describe_type(new):
        changes.append(f"type {_describe_type(old)} → {_describe_type(new)}")
    if old.description != new.description:
        changes.append(f"description {_quote(old.description)} → {_quote(new.description)}")
    return changes or ["changed"]


# --- demos, model, mappings ------------------------------------------------------------


def _demos(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> Optional[PromptChange]:
    if old == new:
        return None
    old_keys, new_keys = [_canonical(d) for d in old], [_canonical(d) for d in new]
    removed_left = Counter(old_keys) - Counter(new_keys)
    added_left = Counter(new_keys) - Counter(old_keys)
    lines = []
    for index, key in enumerate(old_keys):
        if removed_left[key]:
            removed_left[key] -= 1
            lines.append(f"- demos[{index}]: {_one_line(old[index])}")
    for index, key in enumerate(new_keys):
        if added_left[key]:
            added_left[key] -= 1
            lines.append(f"+ demos[{index}]: {_one_line(new[index])}")
    removed = sum(1 for line in lines if line.startswith("-"))
    added = len(lines) - removed
    counts = [text for count, text in ((added, f"{added} added"), (removed, f"{removed} removed")) if count]
    summary = f"demos: {len(old)} → {len(new)} ({', '.join(counts) or 'reordered'})"
    return PromptChange("demos", summary, "\n".join(lines) or "same demos in a different order")


def _model(old: "Prompt", new: "Prompt") -> Optional[PromptChange]:
    settings = [(key, f"{_show(getattr(old.model, key))} → {_show(getattr(new.model, key))}")
                for key in _MODEL_SETTINGS if getattr(old.model, key) != getattr(new.model, key)]
    if old.model.price != new.model.price:
        settings.append(("price", f"{_price(old.model.price)} → {_price(new.model.price)}"))
    settings += _key_changes(old.model.params, new.model.params, "params.")
    return _settings_change("model", settings)


def _mapping(section: str, old: dict[str, Any], new: dict[str, Any]) -> Optional[PromptChange]:
    return _settings_change(section, _key_changes(old, new))


def _guardrails(old: "GuardrailsSpec", new: "GuardrailsSpec") -> Optional[PromptChange]:
    """Effective values, defaults included, so writing out a default is no change; an unset cap
    or rate limit (None) is absent, so setting one reads `added` and clearing it `removed`."""
    return _mapping("guardrails", _without_unset(old.model_dump(mode="json")), _without_unset(new.model_dump(mode="json")))


def _tools(old: "Prompt", new: "Prompt") -> Optional[PromptChange]:
    """An agent's tools by name: one added or removed, or a setting of one changed (`freeze_card.approval never → required`)."""
    def by_name(prompt: "Prompt") -> dict[str, Any]:
        return {tool.tool_name: _without_unset(tool.model_dump(mode="json", exclude={"name"})) for tool in prompt.tools}

    return _mapping("tools", by_name(old), by_name(new))


def _loop(old: "Prompt", new: "Prompt") -> Optional[PromptChange]:
    """The agent's loop and budgets, defaults included, so writing out a default is no change."""
    if not (old.is_agent or new.is_agent):
        return None
    return _mapping("agent", _without_unset(old.loop.model_dump(mode="json")), _without_unset(new.loop.model_dump(mode="json")))


def _without_unset(data: Any) -> Any:
    """`data` less None values and the sections that leaves empty, in lists too (a fallback step's unused target)."""
    if isinstance(data, list):
        return [_without_unset(item) for item in data]
    if not isinstance(data, dict):
        return data
    kept = {key: _without_unset(value) for key, value in data.items() if value is not None}
    return {key: value for key, value in kept.items() if value != {}}


def _settings_change(section: str, settings: list[tuple[str, str]]) -> Optional[PromptChange]:
    """`model: temperature 0.0 → 0.7` on one line; one `key: change` line each in the detail."""
    if not settings:
        return None
    summary = f"{section}: " + "; ".join(f"{key} {change}" for key, change in settings)
    return PromptChange(section, summary, "\n".join(f"{key}: {change}" for key, change in settings))


def _key_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """(key, change) for each changed key, nested dictionaries flattened to dotted keys."""
    before, after = _flatten(old, prefix), _flatten(new, prefix)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            changes.append((key, f"removed (was {_show(before[key])})"))
        elif key not in before:
            changes.append((key, f"added {_show(after[key])}"))
        elif before[key] != after[key]:
            changes.append((key, f"{_show(before[key])} → {_show(after[key])}"))
    return changes


def _flatten(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _price(price: Any) -> str:
    if price is None:
        return "none"
    return f"${price.input_per_million_usd}/M in, ${price.output_per_million_usd}/M out"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (str, int, float, bool)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _quote(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")


def _canonical(demo: dict[str, Any]) -> str:
    return json.dumps(demo, sort_keys=True, default=str)


def _one_line(demo: dict[str, Any]) -> str:
    text = json.dumps(demo, ensure_ascii=False, default=str)
    return text if len(text) <= _DEMO_WIDTH else text[: _DEMO_WIDTH - 3] + "..."
