"""Model strings, prices and the metering of calls, with a scripted model (`scripted/model`) in place of a model."""

from __future__ import annotations

import pytest

from promptops.artifact import ModelSpec, parse_prompt
from promptops.errors import UnknownModelError
from promptops.models import build_lm, check_model_id, price_of

PROMPT = parse_prompt("""
name: label
instructions: Label the text.
inputs: [{name: text}]
outputs: [{name: intent, type: enum, values: [card_arrival, change_pin]}]
""")


def program_on(model, *, price=(2.0, 8.0), cache: bool = True, instructions: str | None = None):
    """PROMPT on the scripted `model` at this price (USD per million input and output tokens), as `build_program` makes it."""
    from promptops.program import build_program

    prompt = PROMPT if instructions is None else PROMPT.with_changes(instructions=instructions)
    spec = {"id": model.model_id, "max_tokens": 20, "price": {"input_per_million_usd": price[0], "output_per_million_usd": price[1]}}
    return build_program(prompt.with_changes(model=spec), cache=cache)


def answer(intent: str):
    """A script that answers every request with this intent."""
    return lambda request: {"intent": intent}


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


def test_cost_is_tokens_times_price(scripted_model) -> None:
    from promptops.models._metered import metering

    program = program_on(scripted_model("model", answer("change_pin"), input_tokens=1000, output_tokens=50), cache=False)
    with metering() as meter:
        assert program(text="new pin please").intent == "change_pin"
    (call,) = meter.calls
    assert (call.input_tokens, call.output_tokens, call.cached) == (1000, 50, False)
    assert call.cost_usd == pytest.approx((1000 * 2.0 + 50 * 8.0) / 1e6)


def test_cache_hits_keep_their_tokens_and_cost_but_make_no_call(scripted_model) -> None:
    from promptops.models._metered import metering

    model = scripted_model("model", answer("card_arrival"))
    program = program_on(model)
    with metering() as first:
        program(text="where is my card? (cache test)")
    with metering() as second:
        program(text="where is my card? (cache test)")
    assert len(model.requests) == 1
    assert (first.model_calls, first.cache_hits) == (1, 0)
    assert (second.model_calls, second.cache_hits) == (0, 1)
    assert second.input_tokens == first.input_tokens == 100
    assert second.cost_usd == pytest.approx(first.cost_usd)


def test_any_change_of_prompt_model_or_parameters_misses_the_cache(scripted_model) -> None:
    model = scripted_model("model", answer("card_arrival"))
    program_on(model)(text="miss test")
    program_on(model, instructions="Label it differently.")(text="miss test")
    program = program_on(model)
    program.lm.kwargs["temperature"] = 0.7
    program(text="miss test")
    assert len(model.requests) == 3


def test_the_output_schema_reaches_the_engine(scripted_model) -> None:
    model = scripted_model("model", answer("card_arrival"))
    program_on(model, cache=False)(text="schema test")
    response_format = model.requests[0].config.response_format
    assert response_format["type"] == "json_schema"
    assert response_format["schema"]["properties"]["intent"]["enum"] == ["card_arrival", "change_pin"]


# --- engines registered for a prefix: the scripted model ----------------------------------------------


def test_a_scripted_model_answers_from_its_script_through_dspys_adapter_and_is_metered(scripted_model) -> None:
    from promptops.models._metered import metering

    seen = []

    def script(request):
        seen.append((request.inputs, request.outputs))
        return {"intent": "change_pin", "confidence": "not a field of the prompt"}

    program = program_on(scripted_model("model", script), cache=False)
    with metering() as meter:
        assert program(text="new pin please").intent == "change_pin"
    assert seen == [({"text": "new pin please"}, ("intent",))]  # the inputs as DSPy wrote them, the fields it asked for
    (call,) = meter.calls
    assert (call.model, call.input_tokens, call.output_tokens, call.cached) == ("scripted/model", 100, 10, False)
    assert call.cost_usd == pytest.approx((100 * 2.0 + 10 * 8.0) / 1e6)


def test_an_engine_prices_its_calls_unless_the_prompt_file_does(scripted_model) -> None:
    from promptops.models._metered import UsdPerMillion

    model = scripted_model("priced", answer("card_arrival"), usd_per_million=(3.0, 6.0))
    assert build_lm(ModelSpec(id=model.model_id)).price == UsdPerMillion(3.0, 6.0)
    configured = ModelSpec(id=model.model_id, price={"input_per_million_usd": 1, "output_per_million_usd": 2})
    assert build_lm(configured).price == UsdPerMillion(1, 2)
    assert build_lm(ModelSpec(id=model.model_id)).engine is model


def test_a_scripted_model_not_installed_is_refused_and_an_uninstalled_one_leaves_no_engine(scripted_model) -> None:
    from promptops.testing import ScriptedModel

    scripted_model("model", answer("card_arrival"))
    with pytest.raises(UnknownModelError, match="no scripted model 'nobody' is installed"):
        build_lm(ModelSpec(id="scripted/nobody"))
    with ScriptedModel("brief", answer("change_pin")) as brief:
        assert build_lm(ModelSpec(id=brief.model_id)).engine is brief
    with pytest.raises(UnknownModelError, match="no scripted model 'brief'"):
        build_lm(ModelSpec(id=brief.model_id))


def test_the_embedded_engines_prefix_cannot_be_taken() -> None:
    from promptops.models import register_engine

    with pytest.raises(ValueError, match="'local'"):
        register_engine("local", lambda spec: None)
