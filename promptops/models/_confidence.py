"""How sure the model was of each label it chose, read from what a call returned.

- The embedded engine reports it itself: the probability of the chosen option among the field's
  options, per enum or boolean field (`provider_data["promptops"]["confidence"]`, dotted paths for
  nested objects). DSPy caches provider_data with the answer, so a cache hit reports it too.
- A hosted model that returns token logprobs (OpenAI-style, asked for with `model.params:
  {logprobs: true}`) gives it per top-level enum or boolean field: the product of the
  probabilities of the tokens that spell the chosen value in the JSON answer.
- Anything else reports none (None): a hosted model without logprobs, free-text answers.

An answer is as sure as its least sure field (`least_sure`).
"""

from __future__ import annotations

import json
import math
from typing import Any, Collection, Iterable, Mapping, Optional, Sequence

TokenLogprob = tuple[str, float]  # (token text, natural-log probability)


def call_confidence(result: Any, call: Any = None) -> Optional[dict[str, float]]:
    """Confidence per output field of one DSPy call result; None when the model reported nothing to go on."""
    for response in getattr(result, "responses", ()) or ():
        data = response.provider_data if isinstance(response.provider_data, dict) else {}
        reported = (data.get("promptops") or {}).get("confidence")
        if isinstance(reported, dict) and reported:
            return {str(name): float(value) for name, value in reported.items()}
    tokens = token_logprobs(result)
    if not tokens:
        return None
    fields = label_fields(_response_schema(call))
    return label_confidence(tokens, fields) or None


def label_confidence(tokens: Sequence[TokenLogprob], fields: Collection[str]) -> dict[str, float]:
    """For each of `fields` in the JSON object the tokens spell: the product of the probabilities of the
    tokens that overlap its value (the label's characters, not its quotes)."""
    text = "".join(token for token, _ in tokens)
    spans = _top_level_value_spans(text)
    starts, position = [], 0
    for token, _ in tokens:
        starts.append(position)
        position += len(token)
    confidence = {}
    for name in fields:
        if name not in spans:
            continue
        start, end = spans[name]
        if end - start >= 2 and text[start] == '"' and text[end - 1] == '"':
            start, end = start + 1, end - 1
        overlapping = [logprob for (token, logprob), at in zip(tokens, starts) if at < end and at + len(token) > start]
        if overlapping:
            confidence[name] = round(math.exp(sum(overlapping)), 6)
    return confidence


def token_logprobs(result: Any) -> list[TokenLogprob]:
    """The answer's tokens with their logprobs: a native DSPy response's, else LiteLLM's raw choice's; [] when absent."""
    for response in getattr(result, "responses", ()) or ():
        if response.logprobs:
            return [(token.token, float(token.logprob)) for token in response.logprobs]
    raw = getattr(result, "raw", None)
    choices = (raw.get("choices") if isinstance(raw, dict) else getattr(raw, "choices", None)) or ()
    for choice in choices[:1]:
        logprobs = _get(choice, "logprobs")
        content = _get(logprobs, "content") if logprobs is not None else None
        pairs = [(_get(token, "token"), _get(token, "logprob")) for token in content or ()]
        if pairs and all(isinstance(token, str) and isinstance(logprob, (int, float)) for token, logprob in pairs):
            return [(token, float(logprob)) for token, logprob in pairs]
    return []


def label_fields(schema: Any) -> list[str]:
    """Top-level properties of a JSON schema whose value is a label: an enum or a boolean, nullable or not."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return []
    return [name for name, value in properties.items() if isinstance(value, dict) and _is_label(value)]


def least_sure(confidence: Optional[Mapping[str, float]], required: Iterable[str] = ()) -> tuple[Optional[str], Optional[float]]:
    """The field an answer is least sure of and how sure: a `required` field with no confidence comes first
    (None: nobody can vouch for it); with no confidence at all, (None, None)."""
    confidence = confidence or {}
    missing = [name for name in required if name not in confidence]
    if missing:
        return missing[0], None
    if not confidence:
        return None, None
    name = min(confidence, key=lambda key: confidence[key])
    return name, confidence[name]


def _is_label(schema: dict[str, Any]) -> bool:
    alternatives = schema.get("anyOf")
    if isinstance(alternatives, list):
        values = [a for a in alternatives if isinstance(a, dict) and a.get("type") != "null"]
        return len(values) == 1 and _is_label(values[0])
    return bool(schema.get("enum")) or schema.get("type") == "boolean"


def _response_schema(call: Any) -> Any:
    """The JSON schema the call asked the answer to fit (DSPy's JSONAdapter sends a pydantic model), or None."""
    if call is None:
        return None
    request = getattr(call, "request", None)
    response_format = request.config.response_format if request is not None else (call.legacy or {}).get("response_format")
    if isinstance(response_format, type) and hasattr(response_format, "model_json_schema"):
        return response_format.model_json_schema()
    if isinstance(response_format, dict):
        nested = response_format.get("json_schema")
        return (nested or {}).get("schema") if isinstance(nested, dict) else response_format.get("schema")
    return None


def _top_level_value_spans(text: str) -> dict[str, tuple[int, int]]:
    """Where each value of the JSON object in `text` starts and ends; {} when the text holds no readable object."""
    from json.decoder import scanstring

    decoder = json.JSONDecoder()
    position = text.find("{")
    spans: dict[str, tuple[int, int]] = {}
    if position < 0:
        return spans
    try:
        position = _skip_space(text, position + 1)
        while position < len(text) and text[position] == '"':
            key, position = scanstring(text, position + 1)
            position = _skip_space(text, position)
            if text[position] != ":":
                return spans
            start = _skip_space(text, position + 1)
            _, end = decoder.raw_decode(text, start)
            spans[key] = (start, end)
            position = _skip_space(text, end)
            if text[position] == ",":
                position = _skip_space(text, position + 1)
    except (ValueError, IndexError):  # cut off or not JSON: keep the values read so far
        pass
    return spans


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else getattr(value, key, None)
