"""Several optimization workers on one study in PostgreSQL: Optuna's RDB storage with heartbeats hands out the
trials and retries a dead worker's, the budget is the study's (promptops.optimizer._shared), one worker concludes.

Against the local PostgreSQL (make test starts it) and a scripted model served on 127.0.0.1; the workers are real
processes (`promptops optimize --workers 3`, and one killed with -9 mid-trial)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from promptops.testing import FaultServer, last_user_message

NAME = "banking_intent"
CAREFUL = "Read the whole message carefully"  # the instruction that makes the scripted model right


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for one test, dropped afterwards."""
    from conftest import POSTGRES_URL, _postgres_execute

    name = f"promptops_test_{uuid.uuid4().hex[:10]}"
    _postgres_execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES_URL}/{name}"
    finally:
        _postgres_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _labels(root: Path) -> dict[str, str]:
    labels = {}
    for split in ("train", "dev", "test"):
        for line in (root / "experiments" / "data" / NAME / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            labels[row["text"]] = row["intent"]
    return labels


def _server(root: Path, delay_s: float) -> FaultServer:
    """Right with the careful instruction, else right only about cards; each answer takes `delay_s`."""
    labels = _labels(root)

    def answer(body: dict) -> dict:
        time.sleep(delay_s)
        text = last_user_message(body, "text")
        if CAREFUL in json.dumps(body):
            return {"intent": labels.get(text, "card_arrival")}
        return {"intent": "card_arrival"}

    return FaultServer(answer=answer)


EXPERIMENT = """\
name: parallel
prompt: banking_intent
search:
  models:
    - id: openai/fault-model
      api_base: {base_url}
      price: {{input_per_million_usd: 1.0, output_per_million_usd: 2.0}}
  optimizers: [none, labeled]
  demos: [1, 2, 3]
  instructions:
    - {careful} and name its intent.
    - Name the intent.
  # A range, not a list: no two trials draw the same configuration, so none is a free repeat, every trial spends
  # calls (the cap below binds whatever order the workers draw in) and none waits for another worker's trial.
  temperature: {{low: 0.0, high: 0.7}}
  train_limit: 8
  dev_limit: 8
budget:
  n_trials: {n_trials}
  max_model_calls: {calls}
pruning:
  rungs: [4]
seed: 3
"""


def _project(git_project, server: FaultServer, *, n_trials: int, calls: int) -> Path:
    root = Path(git_project.working_tree_dir)
    path = root / "prompts" / f"{NAME}.yaml"
    text = path.read_text().replace("  id: local/smollm2-135m\n", f"  id: openai/fault-model\n  api_base: {server.base_url}\n"
                                    "  price: {input_per_million_usd: 1.0, output_per_million_usd: 2.0}\n")
    path.write_text(text.replace("  metric: accuracy\n", "  metric: accuracy\n  gate: {rule: not_worse, tolerance: 1.0}\n"))
    test = root / "experiments" / "data" / NAME / "test.jsonl"
    test.write_text("".join(test.read_text().splitlines(keepends=True)[:8]))
    (root / "experiments" / "parallel.yaml").write_text(
        EXPERIMENT.format(base_url=server.base_url, careful=CAREFUL, n_trials=n_trials, calls=calls))
    git_project.git.add("--all")
    git_project.git.commit("-qm", "The router on a scripted model, and a search to run in parallel")
    return root


def _environment(mlflow_store: str, root: Path) -> dict[str, str]:
    """The workers' environment: the test's MLflow store, and a DSPy cache of their own (no answer from another test)."""
    return {**os.environ, "OPENAI_API_KEY": "sk-test-workers-not-a-real-key", "MLFLOW_TRACKING_URI": mlflow_store,
            "DSPY_CACHEDIR": str(root.parent / "dspy-cache")}


def _trials(url: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="promptops/parallel/1", storage=url)
    return study.get_trials(deepcopy=False)


def _workers(url: str) -> list[tuple[str, int | None]]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as db:
            return [(row[0], row[1]) for row in db.execute(sqlalchemy.text("SELECT worker, trial FROM promptops_workers"))]
    except Exception:
        return []
    finally:
        engine.dispose()


def _spent_calls(url: str) -> int:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.connect() as db:
        total = db.execute(sqlalchemy.text("SELECT SUM(model_calls) FROM promptops_workers")).scalar()
    engine.dispose()
    return int(total or 0)


def test_postgres_three_workers_one_killed_mid_trial_share_one_study_budget_and_winner(
        git_project, mlflow_store: str, postgres_url: str) -> None:
    import mlflow

    with _server(Path(git_project.working_tree_dir), delay_s=0.25) as server:
        root = _project(git_project, server, n_trials=10, calls=600)
        head_before = git_project.head.commit.hexsha
        command = [sys.executable, "-m", "promptops", "optimize", "parallel", "--storage", postgres_url, "--workers", "3", "--json"]
        coordinator = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env=_environment(mlflow_store, root))
        # Kill one of the other two workers with -9 while it is inside a trial.
        killed = None
        deadline = time.monotonic() + 240
        while killed is None and time.monotonic() < deadline and coordinator.poll() is None:
            time.sleep(0.3)
            for worker, trial in _workers(postgres_url):
                pid = int(worker.rsplit(":", 1)[1])
                if pid != coordinator.pid and trial is not None:
                    states = {t.number: t.state.name for t in _trials(postgres_url)}
                    if states.get(trial) == "RUNNING":
                        os.kill(pid, signal.SIGKILL)
                        killed = (pid, trial)
                        break
        out, err = coordinator.communicate(timeout=420)
        assert killed is not None, f"no worker was seen inside a trial: {_workers(postgres_url)} {[t.state.name for t in _trials(postgres_url)]} {err[-800:]}"
        assert coordinator.returncode == 0, err[-1500:]
        result = json.loads(out)

        trials = _trials(postgres_url)
        states = [t.state.name for t in trials]
        assert "RUNNING" not in states and "WAITING" not in states
        assert states.count("COMPLETE") + states.count("PRUNED") == 10  # the killed trial is redone, no other added
        killed_trial = trials[killed[1]]
        assert killed_trial.state.name == "FAIL"  # failed by another worker once its heartbeat went stale ...
        retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed[1]]
        assert len(retried) == 1 and retried[0].state.name in ("COMPLETE", "PRUNED")  # ... and its configuration redone
        evaluated = [tuple(sorted(t.params.items())) for t in trials
                     if t.state.name in ("COMPLETE", "PRUNED") and "repeat_of" not in t.user_attrs]
        assert len(evaluated) == len(set(evaluated)), [  # no configuration evaluated twice
            (t.number, t.state.name, t.params, t.system_attrs, {k: v for k, v in t.user_attrs.items() if k != "candidate"})
            for t in trials]
        workers = {worker for worker, _ in _workers(postgres_url)}
        assert len(workers) == 3 and f"{os.uname().nodename}:{killed[0]}" in workers

        # Spend: one budget for the study, the winner's test eval included. Every request the server saw was admitted;
        # the only ones not counted are those the killed worker had in flight (up to its eval's 8 threads).
        study = result
        counted = _spent_calls(postgres_url)
        assert study["model_calls"] <= counted <= 600
        assert counted <= len(server.requests) <= counted + 8
        assert result["adopted"] and result["adopted"]["commit"]

    # One parent run in MLflow; every trial, wherever it ran, is one of its children.
    mlflow.set_tracking_uri(mlflow_store)
    runs = mlflow.search_runs(experiment_names=[NAME], output_format="list")
    of_study = [r for r in runs if r.data.tags.get("promptops.study") == "promptops/parallel/1"]
    parents = [r for r in of_study if r.data.tags.get("promptops.kind") == "optimize"]
    children = [r for r in of_study if r.data.tags.get("promptops.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.run_id == study["parent_run_id"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {study["parent_run_id"]}
    assert {int(r.data.tags["promptops.trial"]) for r in children} == {t.number for t in trials}
    # One winner commit, by the coordinator.
    commits = list(git_project.iter_commits(f"{head_before}..HEAD", paths=f"prompts/{NAME}.yaml"))
    assert len(commits) == 1 and commits[0].hexsha == result["adopted"]["commit"]
    from promptops.versioning import read_channels

    assert read_channels(NAME, Path(git_project.working_tree_dir))["candidate"]["commit"] == commits[0].hexsha


def test_postgres_workers_spend_one_shared_cap_and_log_to_one_tracking_server(git_project, tracking_server: str,
                                                                              postgres_url: str) -> None:
    from mlflow import MlflowClient

    with _server(Path(git_project.working_tree_dir), delay_s=0.02) as server:
        root = _project(git_project, server, n_trials=30, calls=40)
        command = [sys.executable, "-m", "promptops", "optimize", "parallel", "--storage", postgres_url, "--workers", "3",
                   "--no-write", "--json"]
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300,
                              env=_environment(tracking_server, root))
        assert done.returncode == 0, done.stderr[-1500:]
        study = json.loads(done.stdout)
        # The cap is the study's, not each worker's: 3 workers together stay within 40 calls, the test eval included.
        assert "max_model_calls=40" in (study["stopped_by"] or "") and len(server.requests) <= 40
        assert _spent_calls(postgres_url) == len(server.requests)
    # Every worker logged to the one MLflow server (on PostgreSQL too): one parent run, the trials its children.
    client = MlflowClient(tracking_uri=tracking_server)
    parent = client.get_run(study["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{study['parent_run_id']}'")
    numbers = {int(run.data.tags["promptops.trial"]) for run in children}
    assert numbers == {trial.number for trial in _trials(postgres_url)} and len(numbers) >= 3
    assert not (root / "mlflow.db").exists()


def test_postgres_join_refuses_another_search_space_and_an_ended_study(git_project, mlflow_store: str, postgres_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from promptops.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-workers-not-a-real-key")
    with _server(Path(git_project.working_tree_dir), delay_s=0.0) as server:
        root = _project(git_project, server, n_trials=2, calls=100)
        runner = CliRunner()
        out = runner.invoke(main, ["optimize", "parallel", "--storage", postgres_url, "--join"])
        assert out.exit_code == 1 and "no study of experiment 'parallel'" in out.output and "to join" in out.output
        out = runner.invoke(main, ["optimize", "parallel", "--storage", postgres_url, "--no-write", "--json"])
        assert out.exit_code == 0, out.output
        out = runner.invoke(main, ["optimize", "parallel", "--storage", postgres_url, "--join"])
        assert out.exit_code == 1 and "has ended" in out.output and "concluded it" in out.output
        path = root / "experiments" / "parallel.yaml"
        path.write_text(path.read_text().replace("demos: [1, 2, 3]", "demos: [1, 2]"))
        out = runner.invoke(main, ["optimize", "parallel", "--storage", postgres_url, "--resume"])
        assert out.exit_code == 1 and "needs the same search space" in out.output and "Traceback" not in out.output


def test_postgres_shared_budget_counts_every_worker_and_forgets_a_dead_ones_reservations(postgres_url: str) -> None:
    from promptops.models import BudgetExhausted
    from promptops.reports.optimize_view import _status_lines
    from promptops.optimizer import _shared as shared_module
    from promptops.optimizer import SharedBudget, SharedStudy
    from promptops.optimizer import Progress, worker_line

    first = SharedStudy(postgres_url, "promptops/unit/1", worker="host-a:1")
    first.start(max_cost_usd=1.0, max_model_calls=3, timeout_s=None, coordinator=True)
    second = SharedStudy(postgres_url, "promptops/unit/1", worker="host-b:2")
    second.start(max_cost_usd=None, max_model_calls=None, timeout_s=None, new_session=False)  # a joiner keeps the caps
    a, b = SharedBudget(first), SharedBudget(second)
    assert (a.max_model_calls, b.max_model_calls) == (3, 3)

    held = a.admit(0.1)
    b.settle(b.admit(0.2), 0.25)
    assert (a.model_calls, b.spent_usd, b.own_model_calls, a.own_model_calls) == (1, 0.25, 1, 0)
    b.admit(0.1)  # the third call: a's reservation, b's call and this reservation fill the cap of 3
    with pytest.raises(BudgetExhausted, match="max_model_calls=3"):
        a.admit(0.0)
    # b dies holding its reservation: once it has been silent for STALE_S, its reservation no longer counts.
    with second.engine.begin() as db:
        import sqlalchemy

        db.execute(sqlalchemy.text("UPDATE promptops_workers SET heartbeat_epoch = heartbeat_epoch - :s WHERE worker = 'host-b:2'"),
                   {"s": shared_module.STALE_S + 1})
    a.settle(held, 0.5)
    with pytest.raises(BudgetExhausted, match="max_cost_usd"):  # 0.25 + 0.5 spent: 0.3 more would pass $1
        a.admit(0.3)
    a.settle(a.admit(0.1), 0.1)  # the dead worker's held call no longer blocks the third call
    assert a.model_calls == 3

    # The coordinator concludes; a joiner is told who does, while the coordinator is alive.
    assert second.claim_conclusion() == "host-a:1" and first.claim_conclusion() is None
    assert second.claim_conclusion() == "host-a:1"

    progress = Progress("promptops/unit/1", 10)
    first.beat(4, "scoring on dev[:8]")
    progress.workers = [worker_line(w) for w in first.workers()]
    assert "host-a:1: trial 4, scoring on dev[:8] · 2 calls" in _status_lines(progress)
    assert "host-b:2 (silent): starting · 1 calls" in _status_lines(progress)
    first.close()
    second.close()


def test_postgres_a_worker_joining_before_the_parent_run_is_open_waits_for_it(postgres_url: str) -> None:
    """`--workers` starts the other workers before opening the study's MLflow run (they import while it does): one that
    gets there first waits for the run rather than opening a second one, and opens it itself only if none appears."""
    import threading

    import optuna

    from promptops.optimizer._study import _await_parent_run, _storage

    study = optuna.create_study(study_name="promptops/early/1", storage=_storage(postgres_url))
    opened = threading.Timer(0.8, lambda: study.set_user_attr("mlflow_run_id", "run-of-the-first-worker"))
    started = time.monotonic()
    opened.start()
    joiner = optuna.load_study(study_name="promptops/early/1", storage=_storage(postgres_url))
    assert _await_parent_run(joiner, timeout_s=30) == "run-of-the-first-worker"
    assert 0.8 <= time.monotonic() - started < 10
    silent = optuna.create_study(study_name="promptops/early/2", storage=_storage(postgres_url))
    assert _await_parent_run(silent, timeout_s=0.6) is None


def test_postgres_workers_that_look_at_once_claim_no_more_trials_than_asked_for(postgres_url: str, monkeypatch) -> None:
    """Three workers that see one trial left at the same moment: each would start it (3 trials for --n-trials 2, issue
    25). Counted and asked under the study's lock, one gets it and the others get None. Optuna's `ask` is slowed so the
    window between looking and asking is wide open."""
    import threading

    import optuna

    from promptops.optimizer import SharedStudy
    from promptops.optimizer._study import _claim_trial, _storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="promptops/race/1", storage=_storage(postgres_url))
    ask = optuna.Study.ask
    monkeypatch.setattr(optuna.Study, "ask", lambda self, *args, **kwargs: (time.sleep(0.5), ask(self, *args, **kwargs))[1])
    claimed: list = []
    everyone_looks = threading.Barrier(3, timeout=30)
    workers = []
    for number in range(3):  # one after the other: the first registers the study's row
        shared = SharedStudy(postgres_url, "promptops/race/1", worker=f"host:{number}")
        shared.start(max_cost_usd=None, max_model_calls=None, timeout_s=None, new_session=number == 0)
        workers.append((shared, optuna.load_study(study_name="promptops/race/1", storage=_storage(postgres_url))))

    def worker(shared, study) -> None:
        everyone_looks.wait()
        claimed.append(_claim_trial(study, shared, 1))
        shared.close()

    threads = [threading.Thread(target=worker, args=pair) for pair in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(claimed) == 3 and sum(trial is not None for trial in claimed) == 1
    assert len(optuna.load_study(study_name="promptops/race/1", storage=postgres_url).trials) == 1
