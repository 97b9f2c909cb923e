"""Agents: the agent file, DSPy's ReAct loop over its tools, approvals, tool failures, caps, traces,
replay and trajectory evals, against a scripted agent model served on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

import promptops
from promptops.errors import CostCapReached, PromptFileError
from promptops.runtime import _limits as limits
from promptops.testing import FaultServer, ScriptedAgent, plan

REPO = Path(__file__).resolve().parent.parent
NAME = "banking_agent"
PRICE = "{input_per_million_usd: 1.0, output_per_million_usd: 2.0}"

# A tool module of the test project's own: one that fails, one that hangs, one that counts.
TEST_TOOLS = '''
import time

CALLS = []


def broken_lookup(customer_id: str) -> str:
    """Look the customer up in a system that is down."""
    raise ConnectionError("core banking is down")


def slow_lookup(customer_id: str) -> str:
    """Look the customer up in a system that hangs."""
    time.sleep(5)
    return "too late"


def count_call(customer_id: str) -> str:
    """Count a call."""
    CALLS.append(customer_id)
    return f"call {len(CALLS)} for {customer_id}"
'''

LOST = "I lost my card, block it"
TOP_UP = "My top up did not go through"


@pytest.fixture()
def agent_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-agents-not-a-real-key")
    (project / "agent_test_tools.py").write_text(TEST_TOOLS)
    from tools import bank

    bank.reset()
    limits.reset()
    yield project
    bank.reset()
    limits.reset()


def _point_at(project: Path, server: FaultServer, extra: str = "", *, replace: dict[str, str] | None = None) -> Path:
    path = project / "prompts" / f"{NAME}.yaml"
    text = (REPO / "prompts" / f"{NAME}.yaml").read_text()
    text = text.replace("  id: local/smollm2-135m\n", f"  id: openai/fault-model\n  api_base: {server.base_url}\n  price: {PRICE}\n")
    text = text.replace("  params:\n    calibrate: true\n", "")  # an engine option of the embedded model
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    path.write_text(text + extra)
    return path


def _agent(*plans_by_text: tuple[str, object]) -> ScriptedAgent:
    return ScriptedAgent(dict(plans_by_text))


@pytest.fixture()
def server() -> Iterator[FaultServer]:
    agent = _agent(
        (LOST, plan(["freeze_card", {"customer_id": "C-1001"}], outputs={"intent": "lost_or_stolen_card"})),
        (TOP_UP, plan(["check_top_up", {"customer_id": "C-1003"}], outputs={"intent": "top_up_failed"})),
    )
    with FaultServer(answer=agent) as running:
        yield running


# --- the agent file ------------------------------------------------------------------------------


@pytest.mark.parametrize("change, line, message", [
    ({"tools.bank:track_card_delivery": "tools.bank:track_parcel"}, "31",
     "tools[0].function: tools.bank has no function 'track_parcel'"),
    ({"tools.bank:track_card_delivery": "tools.nowhere:track"}, "31", "tools[0].function: cannot import 'tools.nowhere'"),
    ({"    approval: required\n    max_calls: 1\n  - function: tools.bank:send_pin_reset":
      "    approval: required\n    args: {card: {description: the card}}\n  - function: tools.bank:send_pin_reset"},
     "34", "tools[1].args.card: tools.bank:freeze_card takes no argument 'card'; it takes customer_id"),
    ({"    approval: required\n    max_calls: 1\n  - function: tools.bank:send_pin_reset":
      "    approval: sometimes\n    max_calls: 1\n  - function: tools.bank:send_pin_reset"}, "33", "approval"),
    ({"  max_steps: 2": "  max_steps: 3\n  max_loops: 2"}, "46", "max_loops"),
])
def test_a_bad_tool_or_loop_names_the_file_and_line(agent_project: Path, server: FaultServer, change: dict, line: str,
                                                     message: str) -> None:
    path = _point_at(agent_project, server, replace=change)
    with pytest.raises(PromptFileError) as raised:
        promptops.load_prompt(NAME)
    text = str(raised.value)
    assert text.startswith(f"prompts/{path.name}:{line}:"), text
    assert message in text and "\n" not in text


def test_the_loop_runs_the_planned_tool_and_fills_the_outputs(agent_project: Path, server: FaultServer) -> None:
    _point_at(agent_project, server)
    program = promptops.load(NAME, trace=False, cache=False)
    prediction = program(text=TOP_UP, customer_id="C-1003")
    assert prediction.intent == "top_up_failed"
    calls = program.last_record.task.calls
    assert [(call.name, call.args, call.executed, call.approval) for call in calls] == [
        ("check_top_up", {"customer_id": "C-1003"}, True, None)]
    assert "C-1003" in calls[0].result or "top-up" in calls[0].result.lower()
    assert program.last_record.steps == 2  # check_top_up, then finish
    assert program.last_record.model_calls == 3  # two steps and the output call
    steps = [r for r in server.requests if "next_tool_name" in r["messages"][0]["content"]]
    assert len(steps) == 2 and len(server.requests) == 3


def test_a_required_approval_is_asked_and_denial_approval_and_edits_are_obeyed(agent_project: Path, server: FaultServer) -> None:
    from tools import bank

    _point_at(agent_project, server)
    asked = []

    def deny(request):
        asked.append(request)
        return promptops.Approval.deny("the customer must call us")

    denied = promptops.load(NAME, trace=False, cache=False, approve=deny)
    assert denied(text=LOST, customer_id="C-1001").intent == "lost_or_stolen_card"
    assert [(r.tool, r.args, r.step) for r in asked] == [("freeze_card", {"customer_id": "C-1001"}, 0)]
    call = denied.last_record.task.calls[0]
    assert (call.approval, call.executed, call.refused) == ("denied", False, "denied")
    assert "denied (the customer must call us)" in call.result
    assert bank.card_status("C-1001") != "frozen"

    nobody = promptops.load(NAME, trace=False, cache=False)  # no approver: denied
    nobody(text=LOST, customer_id="C-1001")
    assert nobody.last_record.task.calls[0].approval == "denied" and bank.card_status("C-1001") != "frozen"

    approved = promptops.load(NAME, trace=False, cache=False, approve=lambda request: True)
    approved(text=LOST, customer_id="C-1001")
    assert approved.last_record.task.calls[0].approval == "approved" and bank.card_status("C-1001") == "frozen"

    edited = promptops.load(NAME, trace=False, cache=False,
                            approve=lambda request: promptops.Approval.edit({"customer_id": "C-1002"}))
    edited(text=LOST, customer_id="C-1001")
    call = edited.last_record.task.calls[0]
    assert (call.approval, call.args, call.requested_args) == ("edited", {"customer_id": "C-1002"}, {"customer_id": "C-1001"})
    assert bank.card_status("C-1002") == "frozen"


def test_a_failing_or_hanging_tool_becomes_an_observation_not_a_crash(agent_project: Path) -> None:
    tools = ("  - function: agent_test_tools:broken_lookup\n  - function: agent_test_tools:slow_lookup\n"
             "    timeout_s: 0.3\n")
    agent = _agent((TOP_UP, plan(["broken_lookup", {"customer_id": "C-1003"}], ["slow_lookup", {"customer_id": "C-1003"}],
                                 outputs={"intent": "top_up_failed"})))
    with FaultServer(answer=agent) as server:
        _point_at(agent_project, server, replace={"tools:\n": "tools:\n" + tools})
        program = promptops.load(NAME, trace=False, cache=False)
        assert program(text=TOP_UP, customer_id="C-1003").intent == "top_up_failed"
        broken, slow = program.last_record.task.calls
        assert broken.error == "ConnectionError: core banking is down" and broken.executed
        assert slow.error.startswith("TimeoutError: no answer within 0.3 s (tools[1].timeout_s)") and slow.latency_s < 2
        trajectories = [m["content"] for r in server.requests for m in r["messages"] if m["role"] == "user"]
        assert any("Execution error in broken_lookup" in text and "core banking is down" in text for text in trajectories)


def test_steps_max_calls_and_the_task_cost_cap_bound_a_runaway_agent(agent_project: Path) -> None:
    import agent_test_tools

    agent = _agent((TOP_UP, plan(["count_call", {"customer_id": "C-1003"}], finish=False, outputs={"intent": "top_up_failed"})))
    with FaultServer(answer=agent) as server:
        _point_at(agent_project, server, replace={"tools:\n": "tools:\n  - function: agent_test_tools:count_call\n    max_calls: 2\n",
                                                  "  max_steps: 2": "  max_steps: 4"})
        agent_test_tools.CALLS.clear()
        program = promptops.load(NAME, trace=False, cache=False)
        assert program(text=TOP_UP, customer_id="C-1003").intent == "top_up_failed"
        record = program.last_record
        assert record.steps == 4 and record.model_calls == 5  # max_steps steps, then the output call
        assert [call.refused for call in record.task.calls] == [None, None, "max_calls", "max_calls"]
        assert agent_test_tools.CALLS == ["C-1003", "C-1003"]

        _point_at(agent_project, server, replace={"tools:\n": "tools:\n  - function: agent_test_tools:count_call\n",
                                                  "  max_steps: 2": "  max_steps: 20\n  max_cost_usd: 0.0005"})
        capped = promptops.load(NAME, trace=False, cache=False)
        with pytest.raises(CostCapReached, match=r"agent\.max_cost_usd"):
            capped(text=TOP_UP, customer_id="C-1003")
        assert capped.last_record.cost_usd <= 0.0005
        assert capped.last_record.model_calls < 21


def test_a_traced_task_shows_its_steps_and_approvals_and_replays_without_running_tools(
        agent_project: Path, git_project, server: FaultServer, mlflow_store: str) -> None:
    import mlflow
    from click.testing import CliRunner

    from promptops.cli import main
    from tools import bank

    _point_at(agent_project, server)
    git_project.git.add("--all")
    git_project.git.commit("-qm", "The agent on the scripted model")
    runner = CliRunner()
    ran = runner.invoke(main, ["run", f"{NAME}@v2", "-i", f"text={LOST}", "-i", "customer_id=C-1001", "--approve", "deny"])
    assert ran.exit_code == 0, ran.output
    assert "intent: lost_or_stolen_card" in ran.stdout
    assert "step 0: freeze_card(customer_id='C-1001') — approval requested: denied by default — not run (denied)" in ran.stderr
    assert bank.card_status("C-1001") != "frozen"
    trace_id = ran.stderr.split("trace: ")[1].split()[0]

    trace = mlflow.get_trace(trace_id, flush=True)  # what was logged, as MLflow has it
    tags = trace.info.tags
    assert tags["promptops.tool_calls"] == "freeze_card[denied]" and tags["promptops.approvals"] == "freeze_card:denied"
    assert tags["promptops.steps"] == "2"
    tool_spans = [span for span in trace.data.spans if span.span_type == "TOOL"]
    assert [span.name for span in tool_spans][:1] == ["Tool.freeze_card"] or any("freeze_card" in s.name for s in tool_spans)
    events = [event for span in tool_spans for event in span.events if event.name == "approval"]
    assert events and events[0].attributes["decision"] == "denied" and events[0].attributes["tool"] == "freeze_card"

    listed = runner.invoke(main, ["traces", NAME])
    assert "2 steps: freeze_card[denied] · approvals freeze_card:denied" in listed.stdout

    top_up = runner.invoke(main, ["run", f"{NAME}@v2", "-i", f"text={TOP_UP}", "-i", "customer_id=C-1003", "--json"])
    top_up_trace = json.loads(top_up.stdout)["_trace_id"]
    served_before = len(server.requests)
    import tools.bank as bank_module

    real = bank_module.check_top_up

    def must_not_run(customer_id: str) -> str:
        """Check the last top-up."""
        pytest.fail("a replay ran a tool")

    bank_module.check_top_up = must_not_run
    try:
        # The tool function is looked up when the program is built, so the replacement is what a replay would call.
        replayed = runner.invoke(main, ["replay", top_up_trace, "--no-cache", "--json"])
    finally:
        bank_module.check_top_up = real
    assert replayed.exit_code == 0, replayed.output
    result = json.loads(replayed.stdout)
    assert result["same"] and result["diverged"] is None and not result["live_tools"]
    assert [call["replayed"] for call in result["replay_tool_calls"]] == [True]
    assert result["replay_tool_calls"][0]["result"] == result["original_tool_calls"][0]["result"]
    assert len(server.requests) == served_before + 3  # the model was asked again (no cache); no tool ran


def test_an_agent_eval_scores_trajectories_and_denies_approvals(agent_project: Path, mlflow_store: str) -> None:
    from promptops.evaluation import load_dataset
    from tools import bank

    prompt_rows = [json.loads(line) for line in (agent_project / "experiments/data/banking_agent/dev.jsonl").read_text().splitlines()]
    rows = prompt_rows[:8]
    plans = {}
    for index, row in enumerate(rows):
        expected = row["expected_tools"][0]
        calls = [[expected["name"], expected.get("args") or {"from_currency": "GBP", "to_currency": "EUR"}]]
        if index == 0:  # one task calls a second tool too: strict and subset fail, superset holds
            calls.append(["explain_wallet_setup", {"customer_id": row["customer_id"]}])
        plans[row["text"]] = plan(*calls, outputs={"intent": row["intent"]})
    with FaultServer(answer=ScriptedAgent(plans)) as server:
        _point_at(agent_project, server)
        result = promptops.evaluate(NAME, split="dev", limit=8, cache=False)
    metrics = result.metrics
    assert result.score == metrics["task_success"] == 1.0
    assert metrics["tool_calls/strict"] == pytest.approx(7 / 8) and metrics["tool_calls/superset"] == 1.0
    assert metrics["tool_calls/subset"] == pytest.approx(7 / 8)
    assert metrics["unsafe_actions"] == 0
    needing = [r for r in rows if r["expected_tools"][0]["name"] in ("freeze_card", "close_account")]
    assert needing, "the first dev rows include an action that needs approval"
    assert metrics["approvals_requested"] == 1.0
    assert metrics["steps_per_task"] == 2.0  # a tool and finish; row 0's two tools use up max_steps 2 without finish
    assert metrics["cost_per_task_usd"] > 0
    denied = [call for r in result.examples for call in r.tool_calls if call["name"] in ("freeze_card", "close_account")]
    assert denied and all(call["approval"] == "denied" and not call["executed"] for call in denied)
    assert all(bank.account_open(row["customer_id"]) for row in rows)

    from promptops import tracking

    table = tracking.load_table(result.run_id)
    assert list(table["tool_calls"])[1] == "freeze_card(customer_id=C-1002)[denied]"  # row 1 is lost_or_stolen_card
    assert json.loads(list(table["trajectory"])[0])[1]["name"] == "explain_wallet_setup"
    assert list(table["unsafe_actions"]) == [0] * 8
    assert len(load_dataset(promptops.load_prompt(NAME), split="dev")) == 64


@pytest.mark.model
def test_banking_agent_end_to_end_on_the_embedded_model(agent_project: Path, git_project, mlflow_store: str) -> None:
    """eval, promote, run with --approve deny, traces and replay through the CLI, on SmolLM2 (a few rows)."""
    import mlflow
    from click.testing import CliRunner

    from promptops.cli import main
    from tools import bank

    runner = CliRunner()
    evaluated = runner.invoke(main, ["eval", NAME, "--split", "dev", "--limit", "2", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    summary = json.loads(evaluated.stdout)
    for metric in ("task_success", "tool_calls/strict", "steps_per_task", "cost_per_task_usd", "unsafe_actions"):
        assert metric in summary, metric
    assert summary["unsafe_actions"] == 0 and summary["parse_failures"] == 0 and summary["schema_validity"] == 1.0
    assert 1 <= summary["steps_per_task"] <= 2  # max_steps
    from promptops import tracking

    table = tracking.load_table(summary["run_id"])
    assert len(json.loads(list(table["trajectory"])[0])) >= 1  # every step of the embedded model is a valid tool call
    models = mlflow.search_logged_models(output_format="list")
    assert [(m.name, m.model_type) for m in models] == [(NAME, "agent")]

    promoted = runner.invoke(main, ["promote", NAME, "--limit", "2"])
    assert promoted.exit_code == 0, promoted.output

    ran = runner.invoke(main, ["run", f"{NAME}@production", "-i", "text=I lost my card, block it", "-i", "customer_id=C-1001",
                               "--approve", "deny", "--json"])
    assert ran.exit_code == 0, ran.output
    answer = json.loads(ran.stdout)
    calls = answer["_tool_calls"]
    # Whatever SmolLM2 chose, nothing that needs approval ran, and any such call was asked for and denied.
    assert all(call["approval"] == "denied" and call["executed"] is False
               for call in calls if call["name"] in ("freeze_card", "close_account"))
    assert bank.card_status("C-1001") != "frozen" and bank.account_open("C-1001")
    trace = mlflow.get_trace(answer["_trace_id"], flush=True)
    assert trace.info.tags["promptops.steps"] in ("1", "2")
    assert trace.info.request_metadata.get("mlflow.modelId") == models[0].model_id or \
        trace.info.trace_metadata.get("mlflow.modelId") == models[0].model_id

    listed = runner.invoke(main, ["traces", NAME])
    assert "steps:" in listed.stdout and answer["_trace_id"] in listed.stdout

    replayed = runner.invoke(main, ["replay", answer["_trace_id"], "--json"])
    assert replayed.exit_code == 0, replayed.output
    result = json.loads(replayed.stdout)
    assert result["same"] and result["diverged"] is None
    assert all(call["replayed"] for call in result["replay_tool_calls"])
    assert len(result["replay_tool_calls"]) == len(calls)


AGENT_EXPERIMENT = """\
name: agent_search
prompt: banking_agent
search:
  models:
    - id: openai/fault-model
      api_base: {base_url}
      price: {{input_per_million_usd: 1.0, output_per_million_usd: 2.0}}
  max_steps: [2, 3]
  optimizers: [none, bootstrap]
  demos: [1]
  instructions:
    - Handle the customer's request with exactly one tool, then finish. Answer with the intent you handled.
  tool_descriptions:
    - freeze_card: Block a lost or stolen card.
  train_limit: 4
  dev_limit: 6
budget:
  n_trials: 4
pruning:
  rungs: [3]
seed: 1
"""


class _OnlyWithTheBetterInstruction(ScriptedAgent):
    """Right only under the experiment's instruction variant (in every step's and the last call's system message)."""

    def __call__(self, body: dict) -> dict:
        answer = super().__call__(body)
        if "intent" in answer and "Handle the customer's request with exactly one tool" not in body["messages"][0]["content"]:
            answer["intent"] = "card_arrival" if answer["intent"] != "card_arrival" else "change_pin"
        return answer


def _scripted_bank(root: Path, kind: type = ScriptedAgent) -> ScriptedAgent:
    """Every row of the agent's eval set answered by its expected call and intent, as a perfect agent would."""
    plans = {}
    for split in ("train", "dev", "test"):
        for line in (root / "experiments" / "data" / NAME / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            expected = row["expected_tools"][0]
            plans[row["text"]] = plan([expected["name"], expected.get("args") or {"from_currency": "GBP", "to_currency": "EUR"}],
                                      outputs={"intent": row["intent"]})
    return kind(plans)


def test_bootstrap_keeps_whole_trajectories_as_step_demos_in_the_agent_file(agent_project: Path) -> None:
    from promptops.artifact import parse_prompt
    from promptops.evaluation import load_dataset
    from promptops.optimizer import TrialConfig, compile_candidate, example_metric

    with FaultServer(answer=_scripted_bank(agent_project)) as server:
        _point_at(agent_project, server)
        base = promptops.load_prompt(NAME)
        config = TrialConfig(base.model, "bootstrap", 1, 0.0, 0, base.instructions, max_steps=3, tool_variant=1,
                             tool_descriptions={"freeze_card": "Block a lost or stolen card."})
        train = load_dataset(base, split="train").head(4)
        candidate = compile_candidate(base, config, train, example_metric(base, "accuracy"))
    assert candidate.loop.max_steps == 3 and candidate.tool("freeze_card").description == "Block a lost or stolen card."
    steps = candidate.loop.demos
    assert steps and {"text", "customer_id", "trajectory", "next_thought", "next_tool_name", "next_tool_args"} <= set(steps[0])
    assert {step["next_tool_name"] for step in steps} <= {tool.tool_name for tool in base.tools} | {"finish"}
    assert candidate.demos and set(candidate.demos[0]) == {"text", "customer_id", "intent"}
    assert parse_prompt(candidate.to_yaml()) == candidate  # the file holds the whole candidate


def test_an_agent_experiment_finds_a_front_writes_a_winner_and_the_gate_promotes_it(agent_project: Path, git_project,
                                                                                     mlflow_store: str) -> None:
    from promptops.versioning import read_channels
    from promptops.artifact import diff_prompts

    root = agent_project
    for split, rows in (("dev", 6), ("test", 6)):
        path = root / "experiments" / "data" / NAME / f"{split}.jsonl"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:rows]))
    with FaultServer(answer=_scripted_bank(root, _OnlyWithTheBetterInstruction)) as server:
        path = _point_at(root, server)
        path.write_text(path.read_text().replace("  metric: accuracy\n", "  metric: accuracy\n  gate: {rule: not_worse, tolerance: 1.0}\n"))
        (root / "experiments" / "agent_search.yaml").write_text(AGENT_EXPERIMENT.format(base_url=server.base_url))
        git_project.git.add("--all")
        git_project.git.commit("-qm", "The agent on the scripted model, and its experiment")
        base = promptops.load_prompt(NAME)
        result = promptops.optimize("agent_search")
        study = result.study
        assert [t.state for t in study.trials].count("COMPLETE") >= 2 and study.front and study.winner is not None
        assert {"max_steps"} <= set(study.trials[0].params) or {"max_steps"} <= set(study.trials[1].params)
        assert result.adopted is not None and read_channels(NAME)["candidate"]["commit"] == result.adopted.commit
        winner = promptops.load_prompt(NAME)
        assert winner.content_hash == study.winner_prompt.content_hash
        changes = {change.section for change in diff_prompts(base, winner)}
        assert "instructions" in changes and changes <= {"agent", "tools", "demos", "instructions", "model"}
        promoted = promptops.promote(NAME, version="candidate", limit=6)
        assert promoted.gate.passed and read_channels(NAME)["production"]["commit"] == result.adopted.commit
        served = promptops.load(f"{NAME}@production", trace=False)
        row = json.loads((root / "experiments" / "data" / NAME / "dev.jsonl").read_text().splitlines()[1])
        assert served(text=row["text"], customer_id=row["customer_id"]).intent == row["intent"]


def test_diff_names_tool_and_loop_changes(agent_project: Path) -> None:
    from promptops.artifact import diff_prompts

    old = promptops.load_prompt(NAME)
    tools = [tool.model_dump(exclude_defaults=True) for tool in old.tools]
    tools[0]["approval"] = "required"
    new = old.with_changes(tools=tools[:-1], agent={**old.loop.model_dump(), "max_steps": 4})
    changes = {change.section: change.summary for change in diff_prompts(old, new)}
    assert set(changes) == {"tools", "agent"}
    assert "track_card_delivery.approval never → required" in changes["tools"]
    assert "explain_wallet_setup" in changes["tools"] and "max_steps 2 → 4" in changes["agent"]


def test_a_bad_expected_tools_cell_names_its_row(agent_project: Path) -> None:
    from promptops.evaluation import load_dataset
    from promptops.errors import DatasetError

    dev = agent_project / "experiments" / "data" / NAME / "dev.jsonl"
    lines = dev.read_text().splitlines()
    row = json.loads(lines[2])
    row["expected_tools"] = [{"name": "wire_money", "args": {}}]
    lines[2] = json.dumps(row)
    dev.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"dev.jsonl:3: expected_tools\[0\]: 'wire_money' is not a tool of banking_agent"):
        load_dataset(promptops.load_prompt(NAME), split="dev")


@pytest.mark.parametrize("search, line, message", [
    ("  optimizers: [mipro]\n", 6, "search.optimizers: mipro rewrites a single predictor's instruction"),
    ("  tool_descriptions:\n    - {wire_money: Send money.}\n", 7, "'wire_money' is not a tool of banking_agent"),
])
def test_an_agent_experiment_refuses_what_it_cannot_search(agent_project: Path, search: str, line: int, message: str) -> None:
    from promptops.optimizer import ExperimentFileError
    from promptops.optimizer import load_context

    path = agent_project / "experiments" / "agent.yaml"
    path.write_text(f"name: agent\nprompt: banking_agent\nsearch:\n  models: [local/smollm2-135m]\n  demos: 1\n{search}")
    with pytest.raises(ExperimentFileError) as raised:
        load_context("agent")
    assert f"agent.yaml:{line}:" in str(raised.value) and message in str(raised.value)
