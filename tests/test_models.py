"""Model strings, prices and the metering of calls, with a scripted engine in place of a model."""

from __future__ import annotations

import pytest

from promptops.artifact import ModelSpec, parse_prompt
from promptops.errors import UnknownModelError
from promptops.models import build_lm, check_model_id, price_of
from scripted import ScriptedEngine

PROMPT = parse_prompt("""
name: label
instructions: Label the text.
inputs: [{name: text}]
outputs: [{name: intent, type: enum, values: [card_arrival, change_pin]}]
""")


def scripted_program(engine: ScriptedEngine, *, price=(2.0, 8.0), cache: bool = True, instructions: str | None = None):
    from promptops.models._metered import MeteredLM, UsdPerMillion
    from promptops.program import PromptProgram

    prompt = PROMPT if instructions is None else PROMPT.with_changes(instructions=instructions)
    lm = MeteredLM("scripted/model", engine=engine, price=UsdPerMillion(*price), cache=cache, temperature=0.0, max_tokens=20)
    return PromptProgram(prompt, lm)


def test_local_models_have_a_nominal_price_proportional_to_size() -> None:
    small = price_of(ModelSpec(id="local/smollm2-135m"))
    large = price_of(ModelSpec(id="local/gemma3-270m"))
    assert small and large and small[0] > 0 and small[1] > 0
    assert large[0] == pytest.approx(2 * small[0])
    assert price_of(ModelSpec(id="openai/gpt-4o-mini")) is None  # hosted: DSPy prices from the provider table
    configured = ModelSpec(id="openai/my-finetune", price={"input_per_million_usd": 3, "output_per_million_usd": 6})
    assert price_of(configured) == (3, 6)


@pytest.mark.parametrize("model", ["gpt4", "local/llama-70b", "gguf:/no/such/file.gguf", "openai/"])
def test_unknown_model_strings_are_refused_before_any_call(model: str) -> None:
    with pytest.raises(UnknownModelError):
        check_model_id(model)


def test_hosted_model_strings_build_a_dspy_lm_without_calling_it() -> None:
    lm = build_lm(ModelSpec(id="openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1"))
    assert lm.model == "openai/gpt-4o-mini" and lm.price is None


def test_cost_is_tokens_times_price() -> None:
    from promptops.models._metered import metering

    program = scripted_program(ScriptedEngine({"intent": "change_pin"}, input_tokens=1000, output_tokens=50), cache=False)
    with metering() as meter:
        assert program(text="new pin please").intent == "change_pin"
    (call,) = meter.calls
    assert (call.input_tokens, call.output_tokens, call.cached) == (1000, 50, False)
    assert call.cost_usd == pytest.approx((1000 * 2.0 + 50 * 8.0) / 1e6)


def test_cache_hits_keep_their_tokens_and_cost_but_make_no_call() -> None:
    from promptops.models._metered import metering

    engine = ScriptedEngine({"intent": "card_arrival"})
    program = scripted_program(engine)
    with metering() as first:
        program(text="where is my card? (cache test)")
    with metering() as second:
        program(text="where is my card? (cache test)")
    assert len(engine.requests) == 1
    assert (first.model_calls, first.cache_hits) == (1, 0)
    assert (second.model_calls, second.cache_hits) == (0, 1)
    assert second.input_tokens == first.input_tokens == 100
    assert second.cost_usd == pytest.approx(first.cost_usd)


def test_any_change_of_prompt_model_or_parameters_misses_the_cache() -> None:
    engine = ScriptedEngine({"intent": "card_arrival"})
    scripted_program(engine)(text="miss test")
    scripted_program(engine, instructions="Label it differently.")(text="miss test")
    program = scripted_program(engine)
    program.lm.kwargs["temperature"] = 0.7
    program(text="miss test")
    assert len(engine.requests) == 3


def test_the_output_schema_reaches_the_engine() -> None:
    engine = ScriptedEngine({"intent": "card_arrival"})
    scripted_program(engine, cache=False)(text="schema test")
    response_format = engine.requests[0].config.response_format
    assert response_format["type"] == "json_schema"
    assert response_format["schema"]["properties"]["intent"]["enum"] == ["card_arrival", "change_pin"]
