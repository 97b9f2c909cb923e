"""The DSPy optimizers a trial can run that need many calls (random search, MIPROv2, GEPA), each
compiled against a served model (the fault server on 127.0.0.1, answering by keyword) so the
plumbing is checked in seconds: every call counted by the budget, the result read back as a
valid prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from promptops.testing import FaultServer
from promptops.testing.fault_server import default_answer, last_user_message, request_schema

NAME = "banking_intent"
PROPOSED = "Read the customer's message and name the banking intent it expresses."
ASKED_FOR: list[str] = []  # the output fields of every request the server answered


def _answer(body: dict) -> dict:
    """Intents by keyword; for the optimizers' own signatures, a usable instruction or the plainest fitting value."""
    schema = request_schema(body) or {"type": "object", "properties": {}}
    properties = schema.get("properties", {})
    ASKED_FOR.extend(properties)
    if "intent" in properties:
        text = last_user_message(body, "text").lower()
        return {"intent": "card_arrival" if "card" in text else "exchange_rate"}
    answer = default_answer(schema)
    for name in properties:
        if "instruction" in name:
            answer[name] = PROPOSED
    return answer


@pytest.fixture()
def served_model(project: Path) -> Iterator[str]:
    with FaultServer(answer=_answer) as server:
        yield server.base_url


@pytest.mark.parametrize("optimizer", ["random_search", "mipro", "gepa"])
def test_a_costly_optimizer_compiles_within_the_budget_and_reads_back_a_valid_prompt(
    optimizer: str, served_model: str, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promptops
    from promptops.artifact import ModelSpec
    from promptops.models import Budget, spending_limit
    from promptops.evaluation import load_dataset
    from promptops.optimizer import TrialConfig, compile_candidate, example_metric

    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-used-by-the-local-server")
    base = promptops.load_prompt(NAME)
    model = ModelSpec(id="openai/fault-model", api_base=served_model, max_tokens=64,
                      price={"input_per_million_usd": 1.0, "output_per_million_usd": 4.0})
    config = TrialConfig(model, optimizer, 2, 0.0, 0, base.instructions)
    train = load_dataset(base, split="train").head(12)
    budget = Budget(max_model_calls=400)
    ASKED_FOR.clear()
    with spending_limit(budget):
        candidate = compile_candidate(base, config, train, example_metric(base, "accuracy"), seed=1,
                                      reflection_model=model if optimizer == "gepa" else None)
    assert 0 < budget.model_calls <= 400 and budget.spent_usd > 0  # the optimizer's own calls were counted
    assert candidate.model.id == "openai/fault-model"
    assert all(candidate.check_example(demo) is None for demo in candidate.demos) and len(candidate.demos) <= 2
    proposals = {"mipro": "proposed_instruction", "gepa": "new_instruction"}
    if optimizer in proposals:  # it asked for instructions; it keeps the original when no proposal scores better
        assert proposals[optimizer] in ASKED_FOR, sorted(set(ASKED_FOR))
        assert candidate.instructions in (base.instructions, PROPOSED)  # an unchanged instruction keeps its exact text
