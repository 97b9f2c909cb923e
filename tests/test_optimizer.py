"""The optimizer: experiment files, the winner rule, rung pruning, hard budgets, and small
studies end to end on the embedded model (trials in MLflow, front, winner committed, resume)."""

from __future__ import annotations

import json

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SESSION_DSPY_CACHE

from promptops.models import Budget, BudgetExhausted, spending_limit
from promptops.errors import PromptopsError

NAME = "banking_intent"

# --- experiment files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("name: tiny\nprompt: banking_intent\nsearch:\n  models: [local/smollm2-135m]\n  optimiser: [none]\n", 5, "unknown key 'optimiser'"),
        ("name: tiny\nprompt: banking_intent\nsearch:\n  models: [local/smollm2-135m]\n  optimizers: [gepa]\n", 3, "reflection_model"),
        ("name: tiny\nprompt: banking_intent\nsearch:\n  models: [local/smollm2-135m]\n  demos: {low: 8, high: 2}\n", 5, "below low"),
        ("name: tiny\nprompt: banking_intent\nobjectives:\n  accuracy: maximize\n  dollars: minimize\nsearch:\n  models: [x/y]\n", 5,
         "objectives.dollars: unknown objective 'dollars'"),
        ("name: tiny\nprompt: banking_intent\nsearch:\n  models: [local/smollm2-135m\n", 5, "not valid YAML"),
        ("name: tiny\nprompt: banking_intent\nsearch:\n  models: []\n", 4, "at least 1"),
    ],
)
def test_a_bad_experiment_file_names_its_line(project: Path, text: str, line: int, message: str) -> None:
    from promptops.optimizer import load_experiment

    (project / "experiments" / "tiny.yaml").write_text(text)
    with pytest.raises(PromptopsError) as caught:
        load_experiment("tiny")
    assert f"tiny.yaml:{line}:" in str(caught.value) and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_example_experiment_is_valid_and_its_models_are_local(repo_root: Path, monkeypatch) -> None:
    from promptops.optimizer import load_experiment

    monkeypatch.chdir(repo_root)
    experiment, _ = load_experiment("banking_intent")
    assert [m.id for m in experiment.search.models] == ["local/smollm2-135m", "local/gemma3-270m"]
    assert list(experiment.objectives) == ["accuracy", "cost_usd"] and experiment.budget.max_cost_usd


# --- the winner and pruning ----------------------------------------------------------


def test_winner_is_the_cheapest_point_within_the_tolerance_of_the_best() -> None:
    from promptops.optimizer import FrontPoint, pick_winner

    names = ["accuracy", "cost_usd"]
    front = [
        FrontPoint(1, {"accuracy": 0.50, "cost_usd": 0.010}, {}, None),
        FrontPoint(2, {"accuracy": 0.495, "cost_usd": 0.002}, {}, None),
        FrontPoint(3, {"accuracy": 0.30, "cost_usd": 0.001}, {}, None),
    ]
    assert pick_winner(front, names, within=0.01).number == 2
    assert pick_winner(front, names, within=0.0).number == 1
    assert pick_winner(front, names, rule="best").number == 1
    assert pick_winner([], names) is None


def test_rung_pruner_keeps_cheap_trials_and_prunes_dominated_ones() -> None:
    import optuna
    from optuna.trial import TrialState, create_trial

    from promptops.optimizer import RungPruner

    study = optuna.create_study(directions=["maximize", "minimize"])
    for score, cost in ((0.6, 0.002), (0.5, 0.001)):
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=[score, cost],
                                     user_attrs={"rungs": [{"n": 16, "score": score, "costs": {"cost_usd": cost}}]}))

    def standing(score: float, cost: float):
        return create_trial(state=TrialState.COMPLETE, values=[0, 0],
                            user_attrs={"rungs": [{"n": 16, "score": score, "costs": {"cost_usd": cost}}]})

    pruner = RungPruner(margin=0.05)
    assert pruner.prune(study, standing(0.4, 0.003))  # worse and dearer than both
    assert not pruner.prune(study, standing(0.58, 0.003))  # within the margin of the best
    assert not pruner.prune(study, standing(0.1, 0.0005))  # weak, but the cheapest: may be on the front
    assert pruner.prune(study, standing(0.1, 0.00099))  # weak, and only 1% cheaper than a far better trial
    assert not pruner.prune(study, standing(0.1, 0.0009))  # 10% cheaper: it may be the front's cheap end
    assert not RungPruner(min_trials=3).prune(study, standing(0.0, 1.0))  # too few others to judge


# --- budgets -------------------------------------------------------------------------


def test_budget_refuses_the_call_that_would_break_a_cap_and_counts_reservations() -> None:
    budget = Budget(max_cost_usd=1.0, max_model_calls=3)
    first = budget.admit(0.4)
    second = budget.admit(0.4)  # in flight at once: both reserved
    with pytest.raises(BudgetExhausted, match="max_cost_usd"):
        budget.admit(0.4)
    budget.settle(first, 0.1)
    budget.settle(second, 0.1)
    budget.settle(budget.admit(0.4), 0.1)
    with pytest.raises(BudgetExhausted, match="max_model_calls=3"):
        budget.admit(0.0)
    assert budget.model_calls == 3 and budget.spent_usd == pytest.approx(0.3)
    assert Budget.from_limits(timeout_s=1e-9).remaining_s == 0.0
    with pytest.raises(BudgetExhausted, match="time budget"):
        Budget.from_limits(timeout_s=1e-9).admit()


def test_metered_lm_stops_before_a_call_over_the_cap_and_cache_hits_are_free(scripted_model) -> None:
    import dspy

    from promptops.artifact import ModelSpec
    from promptops.models import build_lm

    model = scripted_model("model", {"": {"intent": "change_pin"}}, input_tokens=1000, output_tokens=10)
    # $1 per million tokens both ways: a call costs about $0.00101, the estimate is higher (max_tokens=100 out).
    lm = build_lm(ModelSpec(id=model.model_id, max_tokens=100, price={"input_per_million_usd": 1, "output_per_million_usd": 1}))
    budget = Budget(max_cost_usd=0.0035)
    with spending_limit(budget), dspy.context(lm=lm):
        answered = 0
        with pytest.raises(BudgetExhausted, match="max_cost_usd"):
            for index in range(10):
                lm(messages=[{"role": "user", "content": f"question {index} " * 20}])
                answered += 1
        lm(messages=[{"role": "user", "content": "question 0 " * 20}])  # cached: no admission needed
    assert len(model.requests) == answered == budget.model_calls
    assert 2 <= answered <= 3 and budget.spent_usd <= 0.0035
    assert lm.totals.cache_hits == 1


# --- end to end on the embedded model -------------------------------------------------


@pytest.fixture()
def study_project(git_project, tmp_path: Path, mlflow_store: str, monkeypatch, write_experiment, commit_all):
    """The example project with dev cut to 8 and test to 6 rows, a tiny experiment, a fresh DSPy cache."""
    import dspy

    root = Path(git_project.working_tree_dir)
    data = root / "experiments" / "data" / NAME
    for split, rows in (("dev", 8), ("test", 6)):
        path = data / f"{split}.jsonl"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:rows]))
    write_experiment()
    prompt = root / "prompts" / f"{NAME}.yaml"  # 6 test rows cannot show non-inferiority: the point rule, loosely
    prompt.write_text(prompt.read_text().replace("  metric: accuracy\n", "  metric: accuracy\n  gate: {rule: not_worse, tolerance: 1.0}\n"))
    commit_all("Tiny eval set and experiment")
    cache = tmp_path / "dspy-cache"
    monkeypatch.setenv("DSPY_CACHEDIR", str(cache))
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(cache))
    yield git_project
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(SESSION_DSPY_CACHE))


@pytest.mark.model
def test_small_study_logs_trials_computes_the_front_and_commits_the_winner(study_project) -> None:
    import optuna

    import promptops
    from promptops import tracking
    from promptops.versioning import read_channels

    repo = study_project
    head_before = repo.head.commit.hexsha
    seen = []
    result = promptops.optimize("tiny", on_progress=lambda p: seen.append((p.finished + p.pruned, p.model_calls)))
    study = result.study
    states = [t.state for t in study.trials]
    assert states[:2] == ["COMPLETE"] * 2 and states[2] in ("COMPLETE", "PRUNED")  # the pruner judges from the third trial on
    assert study.model_calls == sum(t.model_calls for t in study.trials) > 0
    assert study.front and study.winner.number in {p.number for p in study.front}
    assert seen[-1][0] == 3 and all(b >= a for a, b in zip([c for _, c in seen], [c for _, c in seen][1:]))

    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    children = mlflow.search_runs(experiment_names=[NAME], filter_string=f"tags.`mlflow.parentRunId` = '{study.parent_run_id}'")
    assert len(children) == 3 and set(children["status"]) == {"FINISHED"}
    assert {"params.model", "params.optimizer", "params.demos", "metrics.accuracy", "metrics.cost_usd",
            "metrics.model_calls", "metrics.latency_p95_s"} <= set(children.columns)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(study.parent_run_id)}
    assert {"pareto_front.json", "pareto_front.png", "study_summary.json"} <= artifacts
    assert mlflow.get_run(study.parent_run_id).info.status == "FINISHED"

    # The winner: test-compared, committed on top, and registered as the candidate.
    assert result.test.n == 6 and result.test.winner_score is not None and result.test.reference_score is not None
    assert result.test.passed and result.test.verdict.rule == "not_worse" and result.test.verdict.n == 6
    assert result.adopted.version == "v3" and repo.head.commit.parents[0].hexsha != head_before  # (v2: the fixture's gate line)
    assert f"winner of {study.study}" in repo.commit(result.adopted.commit).message
    assert read_channels(NAME)["candidate"]["commit"] == result.adopted.commit
    assert read_channels(NAME)["history"][-1]["gate"]["rule"] == "not_worse"
    assert tracking.registry_aliases(NAME)["candidate"]
    assert promptops.load(f"{NAME}@candidate").prompt.content_hash == study.winner_prompt.content_hash
    assert optuna.load_study(study_name=study.study, storage=study.storage).user_attrs["mlflow_run_id"] == study.parent_run_id


@pytest.mark.model
def test_a_cap_of_a_few_calls_stops_the_study_with_partial_results(study_project, write_experiment, commit_all) -> None:
    import promptops

    write_experiment(n_trials=5, extra="  max_model_calls: 10")
    commit_all("Cap the calls")
    head_before = study_project.head.commit.hexsha
    result = promptops.optimize("tiny")
    study = result.study
    assert study.stopped_by and "max_model_calls=10" in study.stopped_by
    assert study.model_calls <= 10
    states = [t.state for t in study.trials]
    assert states[0] == "COMPLETE" and states[-1] == "FAIL" and len(states) < 5
    assert study.front and study.front[0].number == 0 == study.baseline_trial  # the finished trial is kept and reported
    # the only finished trial is the file as committed: nothing to test, nothing to write
    assert study_project.head.commit.hexsha == head_before and result.adopted.version is None
    assert result.adopted.note == "the prompt as it is won: no new version written"


@pytest.mark.model
def test_kill_minus_nine_then_resume_finishes_without_redoing_trials(
        study_project, tmp_path: Path, write_experiment, commit_all) -> None:
    import optuna

    root = Path(study_project.working_tree_dir)
    write_experiment(n_trials=4)
    commit_all("Four trials")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    command = [sys.executable, "-m", "promptops", "optimize", "tiny", "--storage", storage, "--no-write", "--json"]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 240
    finished_before: list[int] = []
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="promptops/tiny/1", storage=storage)
        except KeyError:
            continue
        states = {t.number: t.state.name for t in study.get_trials(deepcopy=False)}
        if list(states.values()).count("COMPLETE") >= 1 and "RUNNING" in states.values():
            finished_before = [n for n, s in states.items() if s == "COMPLETE"]
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=30)
    assert finished_before, f"the study never had a finished and a running trial at once: {process.stderr.read().decode()[-500:]}"

    resumed = subprocess.run([*command, "--resume"], cwd=root, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert resumed.returncode == 0, resumed.stderr[-800:]
    study = optuna.load_study(study_name="promptops/tiny/1", storage=storage)
    trials = study.get_trials(deepcopy=False)
    # a configuration drawn again is answered by the earlier trial, free, and not one of the 4 (issue 26)
    complete = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED") and "repeat_of" not in t.user_attrs]
    assert len(complete) == 4
    assert [t.state.name for t in trials].count("FAIL") == 1  # the killed trial, queued again and redone
    for number in finished_before:  # finished trials were not run again
        assert trials[number].state.name == "COMPLETE"
    configs = [tuple(sorted(t.params.items())) for t in complete]
    killed = next(t for t in trials if t.state.name == "FAIL")
    assert configs.count(tuple(sorted(killed.params.items()))) >= 1


def test_a_configuration_sampled_twice_is_one_point_of_the_front() -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from promptops.optimizer import pareto_front

    study = optuna.create_study(directions=["maximize", "minimize"])
    space = {"model": CategoricalDistribution(["a", "b"])}
    for model, values in (("a", [0.5, 2.0]), ("b", [0.3, 1.0]), ("a", [0.5, 2.0])):
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=values, params={"model": model}, distributions=space))
    assert [(p.number, p.params["model"]) for p in pareto_front(study, ["accuracy", "cost_usd"])] == [(0, "a"), (1, "b")]


@pytest.mark.model
def test_a_repeated_configuration_reuses_the_earlier_result_without_model_calls(study_project) -> None:
    import promptops

    root = Path(study_project.working_tree_dir)
    (root / "experiments" / "one_point.yaml").write_text(
        "name: one_point\nprompt: banking_intent\nsearch:\n  models: [local/smollm2-135m]\n  optimizers: [none]\n"
        "budget:\n  n_trials: 3\npruning:\n  rungs: [4]\n"
    )
    result = promptops.optimize("one_point", write_winner=False)
    trials = result.study.trials
    # One configuration, the file as it is: every later draw repeats trial 0, free and not counted against n_trials,
    # until the study sees the space has nothing new (issue 26: a repeat used to count as one of the n_trials).
    assert [t.state for t in trials] == ["COMPLETE"] * 6
    assert trials[0].model_calls > 0 and [t.model_calls for t in trials[1:]] == [0] * 5
    assert [t.values for t in trials[1:]] == [trials[0].values] * 5
    assert [p.number for p in result.study.front] == [0]
    assert result.study.stopped_by == "the search space ran out of new configurations: 5 draws repeated earlier trials after 1 distinct ones"


def test_the_baseline_trial_is_the_file_as_committed_with_its_demos(git_project, mlflow_store, literal_model, commit_all) -> None:
    """Issue 26: trial 0 used to be the file's model and instruction with no demos (logged `demos 0`), a false baseline."""
    import mlflow

    import promptops
    from promptops import tracking

    root = Path(git_project.working_tree_dir)
    prompt_file = root / "prompts" / f"{NAME}.yaml"
    prompt_file.write_text(prompt_file.read_text() + "demos:\n  - {text: 'Where is my new card?', intent: card_arrival}\n"
                           "  - {text: 'What rate do you give for euros?', intent: exchange_rate}\n")
    (root / "experiments" / "with_demos.yaml").write_text(
        "name: with_demos\nprompt: banking_intent\nsearch:\n  models: [scripted/literal]\n  optimizers: [none, labeled]\n"
        "  demos: [1]\n  train_limit: 8\n  dev_limit: 8\nbudget:\n  n_trials: 3\npruning:\n  rungs: [4]\n")
    commit_all("Two demos, and a search")
    committed = promptops.load_prompt(NAME)
    assert len(committed.demos) == 2
    result = promptops.optimize("with_demos", write_winner=False)
    baseline = result.study.trials[0]
    assert result.study.baseline_trial == 0 and baseline.state == "COMPLETE"
    study = __import__("optuna").load_study(study_name=result.study.study, storage=result.study.storage)
    assert promptops.artifact.parse_prompt(study.trials[0].user_attrs["candidate"], "trial 0").content_hash == committed.content_hash
    mlflow.set_tracking_uri(tracking.tracking_uri())
    runs = mlflow.search_runs(experiment_names=[NAME], filter_string=f"tags.`mlflow.parentRunId` = '{result.study.parent_run_id}'")
    first = runs[runs["params.trial"] == "0"] if "params.trial" in runs else runs.sort_values("start_time").head(1)
    assert first["params.demos"].tolist() == ["2"] and first["params.optimizer"].tolist() == ["none"], first.T

    # Issue 26: every trial without MLflow, and a trial's prompt, at 80 columns
    from click.testing import CliRunner

    from promptops.cli import main

    listed = CliRunner().invoke(main, ["trials", "with_demos"], env={"COLUMNS": "80"})
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, listed.stdout
    assert lines[0].startswith(result.study.study) and any(line.lstrip().startswith("0 base") for line in lines), listed.stdout
    data = json.loads(CliRunner().invoke(main, ["trials", "with_demos", "--json"]).stdout)
    assert [trial["number"] for trial in data["trials"]] == [0, 1, 2] and data["trials"][0]["baseline"] is True
    assert data["trials"][0]["run_id"] == result.study.trials[0].run_id
    shown = CliRunner().invoke(main, ["show", "with_demos@trial:0"])
    assert shown.exit_code == 0 and "What rate do you give for euros?" in shown.stdout, shown.output
    missing = CliRunner().invoke(main, ["show", "with_demos@trial:9"])
    assert missing.exit_code == 1 and "has no trial 9; it has trials 0 to 2" in missing.stderr, missing.output
