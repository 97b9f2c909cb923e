"""Everything promptops logs, against a real `mlflow server` whose backend store is PostgreSQL (`tracking_server` in
conftest.py: one server per session on a fresh database): an eval, promote, rollback and sync, a traced request with
feedback, an A/B report, a small study, a judged eval and an agent's version. The prompts answer from scripted models
on 127.0.0.1.

Each test reads what it wrote back through the server (`MlflowClient(tracking_uri=server)`), and checks that nothing
went to a local store in the project. The server's data lives for the whole session, so each test has a prompt of
its own (an example prompt copied under another name): its experiment and registry entries are its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Iterator

import pytest
from click.testing import CliRunner

import promptops
from promptops import tracking
from promptops.cli import main
from promptops.testing import FaultServer, last_user_message

REPO = Path(__file__).resolve().parent.parent
PRICE = "{input_per_million_usd: 1.0, output_per_million_usd: 2.0}"
JUDGE_PRICE = "{input_per_million_usd: 10.0, output_per_million_usd: 30.0}"


def label_for(body: dict) -> dict:
    """The scripted intent model: card questions are card_arrival, the rest exchange_rate; the judge passes titles
    that share a word with the request."""
    system = " ".join(str(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system")
    if "You grade one answer against a rubric" in system:
        answer = set(re.findall(r"\w+", last_user_message(body, "answer").lower()))
        request = set(re.findall(r"\w+", last_user_message(body, "request").lower()))
        if answer & request - {"a", "the", "my", "i", "is"}:
            return {"reason": "It names the problem the message names.", "score": "pass"}
        return {"reason": "It names a different problem.", "score": "fail"}
    text = last_user_message(body, "text").lower()
    if "summary" in system:  # the ticket-title prompt
        return {"summary": "Card problem" if "card" in text else "Something else"}
    return {"intent": "card_arrival" if "card" in text else "exchange_rate"}


@pytest.fixture()
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tracking-server-not-a-real-key")
    with FaultServer(answer=label_for) as running:
        yield running


def intent_prompt(project: Path, model: FaultServer, name: str, *, edit: tuple[str, str] | None = None) -> Path:
    """banking_intent under another name, on the scripted model, scored on banking_intent's eval set."""
    text = (REPO / "prompts" / "banking_intent.yaml").read_text()
    text = text.replace("name: banking_intent\n", f"name: {name}\n").replace(
        "  id: local/smollm2-135m\n", f"  id: openai/fault-model\n  api_base: {model.base_url}\n  price: {PRICE}\n")
    if edit:
        assert edit[0] in text
        text = text.replace(*edit)
    path = project / "prompts" / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture()
def promoted(git_project, model: FaultServer, commit_all) -> Callable[[str], Path]:
    """`promoted(name)`: the intent prompt `name`, committed as v1 and promoted to production (gated on 2 examples);
    returns the project root."""

    def promote(name: str) -> Path:
        root = Path(git_project.working_tree_dir)
        intent_prompt(root, model, name)
        commit_all(f"{name} v1")
        promptops.promote(name, limit=2)
        return root

    return promote


def server_client(server: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server)


def stored_in_postgres(database: str, query: str, *args: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname=database) as connection:
        return connection.execute(query, args).fetchall()


def assert_nothing_stored_locally(project: Path) -> None:
    """No sqlite store, file store or artifact folder in the project: everything went to the server."""
    written = sorted(p.name for p in project.iterdir() if p.name in ("mlflow.db", "mlruns", "mlartifacts"))
    assert written == [], f"a local MLflow store was written in the project: {written}"


# --- an eval ----------------------------------------------------------------------------------


def test_an_eval_is_logged_to_the_tracking_server(project: Path, tracking_server_store: str, tracking_server_database: str,
                                                  model: FaultServer) -> None:
    name = "intent_eval"
    intent_prompt(project, model, name)
    result = promptops.evaluate(name, split="dev", limit=6, cache=False)
    assert result.n == 6 and result.run_id and result.model_calls == 6

    client = server_client(tracking_server_store)
    run = client.get_run(result.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == name and experiment.artifact_location.startswith("mlflow-artifacts:")
    assert run.data.params["prompt"] == name and run.data.params["n"] == "6" and run.data.params["model"] == "openai/fault-model"
    assert run.data.metrics["accuracy"] == pytest.approx(result.score) and run.data.metrics["model_calls"] == 6
    assert run.data.metrics["cost_usd"] == pytest.approx(result.cost_usd) and result.cost_usd > 0
    assert run.data.tags["promptops.kind"] == "eval"
    assert stored_in_postgres(tracking_server_database, "SELECT name FROM runs WHERE run_uuid = %s", result.run_id) == [
        (f"eval {name} dev",)]  # the server's backend store is the PostgreSQL database
    assert {a.path for a in client.list_artifacts(result.run_id)} >= {"predictions.json", "prompt"}
    [dataset] = run.inputs.dataset_inputs
    assert dataset.dataset.digest == run.data.params["data_digest"]

    table = tracking.load_table(result.run_id)  # through promptops, from the server's artifact store
    assert list(table["predicted.intent"]) == [e.predicted["intent"] for e in result.examples]
    assert list(table["correct"]) == [e.correct for e in result.examples]
    assert tracking.last_evals(name)[result.prompt_hash]["run_id"] == result.run_id

    # The command line's --json stays one JSON object: MLflow prints a link per run to stdout on a server, unless told not to.
    out = CliRunner().invoke(main, ["eval", name, "--split", "dev", "--limit", "2", "--json"])
    assert out.exit_code == 0, out.output
    assert client.get_run(json.loads(out.stdout)["run_id"]).data.params["n"] == "2"
    assert_nothing_stored_locally(project)


# --- promote, rollback, sync ------------------------------------------------------------------


def registry_state(client, name: str) -> dict[str, str]:
    """Alias → the git commit its registry version was registered from, read from the server."""
    if client.get_prompt(name) is None:
        return {}
    state = {}
    for found in client.search_prompt_versions(name):  # search results leave aliases empty; a direct read fills them
        version = client.get_prompt_version(name, found.version)
        state.update({alias: version.tags["git_commit"] for alias in version.aliases})
    return state


def git_channels(name: str) -> dict[str, str]:
    from promptops.versioning import pointers

    return {channel: pointer.commit for channel, pointer in pointers(name).items()}


def test_promote_rollback_and_sync_keep_the_tracking_servers_registry_in_step_with_git(
        git_project, tracking_server_store: str, model: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, commit_all) -> None:
    from promptops.versioning import sync

    name = "intent_channels"
    client = server_client(tracking_server_store)
    root = Path(git_project.working_tree_dir)
    intent_prompt(root, model, name)
    first_commit = commit_all(f"{name} v1")
    first = promptops.promote(name, limit=4)
    assert (first.from_label, first.to_label, first.gate.passed) == (None, "v1", True)
    assert registry_state(client, name) == git_channels(name) == {"production": first_commit}

    intent_prompt(root, model, name, edit=("the one intent label", "exactly one intent label"))
    second_commit = commit_all(f"{name} v2: exactly one label")
    second = promptops.promote(name, limit=4)
    assert (second.from_label, second.to_label, second.gate.passed) == ("v1", "v2", True)
    assert registry_state(client, name) == {"production": second_commit}

    back = promptops.rollback(name)
    assert (back.from_label, back.to_label) == ("v2", "v1")
    assert registry_state(client, name) == git_channels(name) == {"production": first_commit}
    versions = {int(v.version): v.tags for v in client.search_prompt_versions(name)}
    assert sorted(tags["prompt_version"] for tags in versions.values()) == ["v1", "v2"]  # a rollback reuses v1's version

    # The gate's evals and comparison and each move's audit run are runs of the prompt's experiment on the server.
    experiment = client.get_experiment_by_name(name)
    kinds = sorted(r.data.tags["promptops.kind"] for r in client.search_runs([experiment.experiment_id]))
    assert kinds == ["eval", "eval", "eval", "gate", "promote", "promote", "rollback"]

    # A registry changed by hand on the server: sync reports it and puts git's channel back.
    v2 = next(version for version, tags in versions.items() if tags["prompt_version"] == "v2")
    client.set_prompt_alias(name, "production", v2)
    client.set_prompt_alias(name, "staging", v2)
    drifts = sync([name])
    assert sorted((d.channel, d.git_label, d.registry_label, d.repaired) for d in drifts) == [
        ("production", "v1", "v2", True), ("staging", None, "v2", True)]
    assert registry_state(client, name) == {"production": first_commit} and sync([name]) == []

    # Without the repository, the channel is served from the server's Prompt Registry.
    served_here = promptops.load(f"{name}@production").prompt
    monkeypatch.chdir(tmp_path)
    assert promptops.load(f"{name}@production").prompt == served_here
    assert "the one intent label" in served_here.instructions
    assert_nothing_stored_locally(root)


# --- a traced request and its feedback --------------------------------------------------------


def test_a_traced_request_and_its_feedback_are_on_the_tracking_server(git_project, tracking_server_store: str,
                                                                      model: FaultServer, promoted) -> None:
    from promptops.runtime import _feedback as feedback

    name = "intent_traced"
    root = promoted(name)

    program = promptops.load(f"{name}@production", cache=False)
    answer = program(text="I lost my card on the train")
    assert answer.intent == "card_arrival"  # wrong: the scripted model knows one card intent
    trace_id = program.last_trace_id
    promptops.record_feedback(trace_id, correct=False, expected={"intent": "lost_or_stolen_card"})

    trace = server_client(tracking_server_store).get_trace(trace_id)  # straight from the server (record_feedback waited for it)
    assert trace.info.tags["promptops.prompt"] == name and trace.info.tags["promptops.version"] == "v1"
    assert trace.info.tags["promptops.status"] == "ok" and float(trace.info.tags["promptops.cost_usd"]) > 0
    assert trace.data.spans[0].inputs == {"text": "I lost my card on the train"}
    assert trace.data.spans[0].outputs["intent"] == "card_arrival"
    assert len(trace.data.spans) > 1  # DSPy's spans under the request's
    assert "sk-test-tracking-server" not in json.dumps(trace.to_dict(), default=str)

    ours = tracking.get_trace(trace_id)  # through promptops: a plain record
    verdicts = [(a.name, a.value, a.source_type) for a in ours.assessments]
    assert verdicts == [("correct", False, "HUMAN"), ("intent", "lost_or_stolen_card", "HUMAN")]
    assert ours.expectations() == {"intent": "lost_or_stolen_card"}

    # The failure and its correction become an eval row, found by searching the server's traces.
    added = feedback.add_failed(name)
    assert [row.trace_id for row in added.rows] == [trace_id] and added.commit
    last_row = json.loads((root / added.rows[0].file).read_text().splitlines()[-1])
    assert last_row == {"text": "I lost my card on the train", "intent": "lost_or_stolen_card", "trace_id": trace_id}
    assert_nothing_stored_locally(root)


# --- an A/B report ----------------------------------------------------------------------------


def test_an_ab_report_reads_arms_and_feedback_from_the_tracking_server(git_project, tracking_server_store: str,
                                                                        model: FaultServer, promoted, commit_all) -> None:
    from promptops.runtime import ab_report
    from promptops.versioning import assign_channel

    name = "intent_ab"
    root = promoted(name)
    intent_prompt(root, model, name, edit=("the one intent label", "exactly one intent label"))
    commit_all(f"{name} v2")
    assign_channel(name, "v2", "candidate", action="assign", metrics={}, reason="A/B test")

    split = {"production": 0.5, "candidate": 0.5}
    arms = []
    for number in range(8):  # 3 candidates, 5 production: sticky assignment is a hash of the name and the key
        program = promptops.load(name, split=split, key=f"user-{number}", cache=False)
        program(text="Has my card been sent?")
        promptops.record_feedback(program.last_trace_id, correct=program.arm == "candidate" or number % 2 == 0)
        arms.append((program.arm, program.arm == "candidate" or number % 2 == 0))

    report = ab_report(name)
    by_arm = {arm.arm: arm for arm in report.arms}
    for arm in split:
        mine = [right for chosen, right in arms if chosen == arm]
        assert (by_arm[arm].traces, by_arm[arm].labeled, by_arm[arm].correct) == (len(mine), len(mine), sum(mine))
    assert by_arm["production"].versions == ("v1",) and by_arm["candidate"].versions == ("v2",)
    assert (by_arm["candidate"].traces, by_arm["production"].traces) == (3, 5)
    assert report.reference == "production" and report.unrouted == 0 and by_arm["candidate"].accuracy == 1.0
    client = server_client(tracking_server_store)
    traces = client.search_traces(locations=[client.get_experiment_by_name(name).experiment_id],
                                  filter_string="tags.`promptops.arm` = 'candidate'", include_spans=False)
    assert len(traces) == by_arm["candidate"].traces
    assert_nothing_stored_locally(root)


# --- a small study ----------------------------------------------------------------------------


STUDY = """\
name: intent_search
prompt: intent_study
search:
  models:
    - id: openai/fault-model
      api_base: {base_url}
      price: {price}
  optimizers: [none, labeled]
  demos: [1]
  instructions:
    - Pick the intent label that fits the customer's banking message.
  train_limit: 8
  dev_limit: 8
budget:
  n_trials: 3
  max_model_calls: 200
seed: 0
"""


def test_a_small_study_logs_its_parent_and_trial_runs_to_the_tracking_server(git_project, tracking_server_store: str,
                                                                            model: FaultServer, commit_all) -> None:
    name = "intent_study"
    root = Path(git_project.working_tree_dir)
    intent_prompt(root, model, name, edit=("  metric: accuracy\n", "  metric: accuracy\n  gate: {rule: not_worse, tolerance: 1.0}\n"))
    (root / "experiments" / "intent_search.yaml").write_text(STUDY.format(base_url=model.base_url, price=PRICE))
    commit_all(f"{name} and its experiment")
    labels = {row["text"]: row["intent"] for split in ("train", "dev", "test")
              for row in map(json.loads, (root / "experiments" / "data" / "banking_intent" / f"{split}.jsonl").open())}

    def follows_the_new_instruction(body: dict) -> dict:
        if "Pick the intent label" in json.dumps(body):
            return {"intent": labels[last_user_message(body, "text")]}
        return label_for(body)

    model.answer = follows_the_new_instruction
    result = promptops.optimize("intent_search")
    study = result.study
    assert len(study.trials) == 3 and study.model_calls > 0 and study.winner is not None

    client = server_client(tracking_server_store)
    parent = client.get_run(study.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["promptops.kind"] == "optimize"
    experiment_id = parent.info.experiment_id
    assert client.get_experiment(experiment_id).name == name
    children = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{study.parent_run_id}'")
    assert len(children) == 3 and {run.info.status for run in children} == {"FINISHED"}
    assert {run.info.run_id for run in children} == {t.run_id for t in study.trials}
    assert all({"model", "optimizer", "demos"} <= set(run.data.params) and "accuracy" in run.data.metrics for run in children)
    assert {a.path for a in client.list_artifacts(study.parent_run_id)} >= {"pareto_front.json", "pareto_front.png",
                                                                              "study_summary.json"}
    assert {a.path for a in client.list_artifacts(children[0].info.run_id, "candidate")} == {"candidate/prompt.yaml"}

    # The winner (the new instruction, which the model follows) is committed as the candidate, aliased on the server.
    assert result.test.winner_score == 1.0 and result.adopted.version == "v2"
    assert registry_state(client, name)["candidate"] == result.adopted.commit
    assert (root / "optuna.db").exists()  # Optuna's storage stays the project's sqlite file
    assert_nothing_stored_locally(root)


# --- a judged eval ----------------------------------------------------------------------------


ROWS = [
    {"text": "My card still has not arrived", "summary": "Card arrival"},
    {"text": "Where is my new card?", "summary": "Card arrival"},
    {"text": "How do I change my PIN?", "summary": "Change pin"},
    {"text": "What is the exchange rate today?", "summary": "Exchange rate"},
]


def test_a_judged_eval_puts_its_judge_dataset_and_feedback_on_the_tracking_server(project: Path, tracking_server_store: str,
                                                                                  model: FaultServer) -> None:
    name = "summary_judged"
    text = (REPO / "prompts" / "banking_summary.yaml").read_text().replace("name: banking_summary\n", f"name: {name}\n")
    text = text.replace("  id: local/smollm2-135m\n", f"  id: openai/fault-model\n  api_base: {model.base_url}\n  price: {PRICE}\n")
    text = text.replace("    judge: judges/ticket_title.yaml\n",
                        f"    judge:\n      rubric: The title names the customer's actual problem.\n      model:\n"
                        f"        id: openai/fault-model\n        api_base: {model.base_url}\n        price: {JUDGE_PRICE}\n")
    (project / "prompts" / f"{name}.yaml").write_text(text)
    data = project / "experiments" / "data" / "banking_summary" / "dev.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))

    result = promptops.evaluate(name, split="dev", cache=False)
    assert [r.judgement.value for r in result.examples] == ["pass", "pass", "fail", "fail"]

    client = server_client(tracking_server_store)
    experiment_id = client.get_run(result.run_id).info.experiment_id
    traces = client.search_traces(locations=[experiment_id], run_id=result.run_id)
    feedback = sorted((a.feedback.value, a.rationale) for t in traces for a in t.info.assessments if a.name == "judge")
    assert feedback == [(False, "It names a different problem."), (False, "It names a different problem."),
                        (True, "It names the problem the message names."), (True, "It names the problem the message names.")]
    assert sorted(a.source.source_type for t in traces for a in t.info.assessments if a.name == "judge") == ["LLM_JUDGE"] * 4

    import mlflow
    from mlflow.genai.datasets import search_datasets
    from mlflow.genai.scorers import get_scorer

    assert mlflow.get_tracking_uri() == tracking_server_store  # MLflow's fluent API, as promptops left it
    assert get_scorer(name="judge", experiment_id=experiment_id).name == "judge"
    [dataset] = search_datasets(experiment_ids=[experiment_id])
    assert dataset.name.startswith(f"{name}/dev@") and len(dataset.to_df()) == 4
    assert list(tracking.load_table(result.run_id)["judge.value"]) == ["pass", "pass", "fail", "fail"]
    assert_nothing_stored_locally(project)


# --- an agent: its version as a LoggedModel, its eval and its traces ---------------------------


def test_an_agents_version_eval_and_trace_are_linked_on_the_tracking_server(project: Path, tracking_server_store: str,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from promptops.runtime import _limits as limits
    from promptops.testing import ScriptedAgent, plan
    from tools import bank

    name = "agent_linked"
    rows = [json.loads(line) for line in (project / "experiments/data/banking_agent/dev.jsonl").read_text().splitlines()[:4]]
    plans = {row["text"]: plan([row["expected_tools"][0]["name"], row["expected_tools"][0].get("args") or {}],
                               outputs={"intent": row["intent"]}) for row in rows}
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tracking-server-not-a-real-key")
    bank.reset()
    limits.reset()
    with FaultServer(answer=ScriptedAgent(plans)) as agent_model:
        text = (REPO / "prompts" / "banking_agent.yaml").read_text().replace("name: banking_agent\n", f"name: {name}\n")
        text = text.replace("  id: local/smollm2-135m\n", f"  id: openai/fault-model\n  api_base: {agent_model.base_url}\n"
                                                         f"  price: {PRICE}\n").replace("  params:\n    calibrate: true\n", "")
        (project / "prompts" / f"{name}.yaml").write_text(text)
        result = promptops.evaluate(name, split="dev", limit=4, cache=False)
        program = promptops.load(name, cache=False)
        program(text=rows[0]["text"], customer_id=rows[0]["customer_id"])
    bank.reset()
    limits.reset()
    assert result.score == 1.0

    client = server_client(tracking_server_store)
    experiment_id = client.get_experiment_by_name(name).experiment_id
    [model] = client.search_logged_models(experiment_ids=[experiment_id])
    assert (model.name, model.model_type) == (name, "agent") and model.tags["promptops.content_hash"] == result.prompt_hash
    run = client.get_run(result.run_id)
    assert run.data.params["logged_model_id"] == model.model_id
    assert {m.key for m in client.get_logged_model(model.model_id).metrics} >= {"task_success", "cost_usd"}
    tracking.flush_traces()  # traces are written in the background: wait for it, as promptops' readers do
    trace = client.get_trace(program.last_trace_id)
    assert trace.info.trace_metadata["mlflow.modelId"] == model.model_id  # on the Agent versions page, under its traces
    assert trace.info.tags["promptops.prompt"] == name
    assert_nothing_stored_locally(project)


# --- and back ---------------------------------------------------------------------------------


def test_after_the_tracking_server_tests_runs_go_to_the_local_store_again(project: Path, mlflow_store: str, tracking_server: str,
                                                                          model: FaultServer) -> None:
    import mlflow

    assert mlflow.get_tracking_uri() == mlflow_store  # MLflow too, for tests that use it directly
    intent_prompt(project, model, "intent_local")
    result = promptops.evaluate("intent_local", split="dev", limit=2)
    assert server_client(mlflow_store).get_run(result.run_id).data.params["prompt"] == "intent_local"
    assert server_client(tracking_server).get_experiment_by_name("intent_local") is None
