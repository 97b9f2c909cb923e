"""Engine options in prompt files and experiments: decoding, calibration, and the names that keep caches apart."""

from __future__ import annotations

import json

import pytest

from promptops.artifact import ModelSpec, parse_prompt
from promptops.errors import PromptopsError
from promptops.models import build_lm, engine_model_name
from promptops.optimizer import TrialConfig, configured_prompt
from promptops.optimizer import Experiment

PROMPT = parse_prompt("""
name: router
instructions: Route the message.
inputs: [{name: text}]
outputs: [{name: intent, type: enum, values: [a, b]}]
model: {id: local/smollm2-135m, params: {n_ctx: 2048}}
""")


def test_engine_options_change_the_model_name_dspy_caches_under() -> None:
    assert engine_model_name("local/smollm2-135m", {}) == "local/smollm2-135m"
    assert engine_model_name("local/smollm2-135m", {"decoding": "guided"}) == "local/smollm2-135m"
    assert engine_model_name("local/smollm2-135m", {"calibrate": True}) == "local/smollm2-135m[calibrate]"
    assert engine_model_name("local/smollm2-135m", {"calibrate": "labels"}) == "local/smollm2-135m"  # the default
    assert engine_model_name("local/smollm2-135m", {"calibrate": False}) == "local/smollm2-135m[uncalibrated]"
    assert engine_model_name("local/smollm2-135m", {"decoding": "grammar", "calibrate": True}) == \
        "local/smollm2-135m[decoding=grammar,calibrate]"
    lm = build_lm(ModelSpec(id="local/smollm2-135m", params={"calibrate": True}), cache=False)
    assert lm.model == "local/smollm2-135m[calibrate]" and lm._engine_spec.calibrate is True
    assert "calibrate" not in lm.kwargs  # an engine option, not a request parameter DSPy would refuse


def test_engine_options_are_refused_where_they_cannot_apply() -> None:
    with pytest.raises(PromptopsError, match="apply to the embedded engine only"):
        build_lm(ModelSpec(id="openai/gpt-4o-mini", params={"calibrate": True}))
    with pytest.raises(ValueError, match="decoding must be one of guided, guided-sampled, grammar"):
        build_lm(ModelSpec(id="local/smollm2-135m", params={"decoding": "beam"}))
    with pytest.raises(ValueError, match="calibrate must be true, false or 'labels'"):
        build_lm(ModelSpec(id="local/smollm2-135m", params={"calibrate": "sometimes"}))


def test_label_choices_are_calibrated_by_default_on_the_embedded_engine() -> None:
    """Issue 26: uncalibrated, the embedded models give one label to almost every input; calibration of the label
    choice is the default, and null-or-a-value decisions (extraction slots) stay uncalibrated unless asked for."""
    lm = build_lm(ModelSpec(id="local/smollm2-135m"), cache=False)
    assert lm._engine_spec.calibrate == "labels"
    assert build_lm(ModelSpec(id="local/smollm2-135m", params={"calibrate": False}), cache=False)._engine_spec.calibrate is False


def test_a_trial_turns_calibration_on_for_embedded_models_only() -> None:
    local = TrialConfig(ModelSpec(id="local/smollm2-135m"), "none", 0, 0.0, 0, "Route it.", calibrate=True)
    prompt = configured_prompt(PROMPT, local)
    assert prompt.model.params == {"n_ctx": 2048, "calibrate": True}
    assert local.params()["calibrate"] is True
    off = configured_prompt(prompt, TrialConfig(ModelSpec(id="local/smollm2-135m"), "none", 0, 0.0, 0, "Route it."))
    assert off.model.params == {"n_ctx": 2048, "calibrate": False}  # explicit: unset, label choices are calibrated
    hosted = TrialConfig(ModelSpec(id="openai/gpt-4o-mini"), "none", 0, 0.0, 0, "Route it.", calibrate=True)
    assert "calibrate" not in configured_prompt(PROMPT, hosted).model.params


def test_an_experiment_can_search_calibration() -> None:
    experiment = Experiment.model_validate({
        "name": "x", "prompt": "router", "metric": "accuracy",
        "search": {"models": ["local/smollm2-135m"], "calibrate": [False, True]},
        "budget": {"n_trials": 4},
    })
    assert experiment.search.calibrate == [False, True]


def test_a_react_step_schema_makes_the_arguments_depend_on_the_tool() -> None:
    import dspy

    from promptops.models._plan import Choice, Switch, compile_plan, value_parts
    from promptops.program import react_step_format

    def freeze_card(card_id: str) -> str:
        """Block a card."""
        return card_id

    react = dspy.ReAct("question -> answer", tools=[freeze_card])
    embedded = react_step_format(react.tools, embedded=True, thought_chars=50)["json_schema"]["schema"]
    assert embedded["required"] == ["next_thought", "next_tool_name", "next_tool_args"]
    assert embedded["properties"]["next_thought"]["maxLength"] == 50
    plan = compile_plan(embedded)
    [choice] = [part for part in plan if isinstance(part, Choice)]
    [switch] = [part for part in plan if isinstance(part, Switch)]
    assert choice.options == (' "freeze_card"', ' "finish"') and switch.on == "next_tool_name"
    cases = dict(switch.cases)
    assert json.loads(cases['"freeze_card"'])["properties"] == {"card_id": {"type": "string"}}
    assert value_parts(json.loads(cases['"finish"']), "next_tool_args", 1)[0].text == " {}"  # finish takes no arguments
    hosted = react_step_format(react.tools, embedded=False)["json_schema"]["schema"]
    assert "x-promptops-cases" not in json.dumps(hosted) and len(hosted["properties"]["next_tool_args"]["anyOf"]) == 2
