"""Shared fixtures: a throwaway project (with git, commits and edits), an MLflow sqlite store, DSPy's cache,
the CLI, scripted models that stand in for the embedded one (`scripted_model`, `literal_model`), and a
real `mlflow server` on a fresh PostgreSQL database, started once per session when a test asks for it.

The environment is set before anything imports DSPy or MLflow, so no test writes to the
user's stores or caches and nothing reaches the network. Test modules never import each other:
what two of them share lives here.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="promptops-tests-"))
SESSION_DSPY_CACHE = _SESSION_DIR / "dspy-cache"
os.environ["DSPY_CACHEDIR"] = str(SESSION_DSPY_CACHE)
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_DIR / 'mlflow.db'}"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("PROMPTOPS_PROJECT", None)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example project (prompts and eval sets) to break at will."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "prompts", root / "prompts")
    shutil.copytree(REPO / "experiments" / "data", root / "experiments" / "data")
    shutil.copytree(REPO / "tools", root / "tools", ignore=shutil.ignore_patterns("__pycache__"))  # the example agent's
    shutil.copytree(REPO / "judges", root / "judges")  # the example free-text prompt's judge
    monkeypatch.chdir(root)
    return root


@pytest.fixture()
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh sqlite MLflow store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432"  # psycopg 3, the `postgres` extra's driver (SQLAlchemy's default)
TRACKING_SERVER_START_TIMEOUT_S = 90.0


def _postgres_execute(statement: str) -> None:
    """One statement on the local PostgreSQL's `postgres` database, in autocommit (CREATE and DROP DATABASE need it)."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5,
                         autocommit=True) as connection:
        connection.execute(statement)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def tracking_server_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for the session's tracking server, dropped after; yields its name.

    Skipped only where no PostgreSQL answers on 127.0.0.1:5432 (`scripts/ensure_postgres.sh` starts it).
    """
    import psycopg

    try:
        _postgres_execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 (run scripts/ensure_postgres.sh): {str(exc).strip().splitlines()[0]}")
    database = f"promptops_mlflow_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _postgres_execute(f'CREATE DATABASE "{database}"')
    try:
        yield database
    finally:
        _postgres_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def tracking_server(tracking_server_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 whose backend store is the session's PostgreSQL database; yields its URL.

    One per session (it takes seconds to start); its artifacts go to a temporary folder, and it runs as
    the README recommends (one worker, no job runner). Stopped at the end of the session.
    """
    folder = tmp_path_factory.mktemp("tracking-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"})
    log_path = folder / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"{POSTGRES_URL}/{tracking_server_database}",
             "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # its own group: uvicorn's worker too
    try:
        started = time.monotonic()
        while not _healthy(url):
            waited_s = time.monotonic() - started
            if server.poll() is not None or waited_s > TRACKING_SERVER_START_TIMEOUT_S:
                why = f"exited with {server.returncode}" if server.poll() is not None else f"did not answer {url}/health in {waited_s:.0f} s"
                last = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"mlflow server on PostgreSQL database {tracking_server_database} {why}; its last log lines:\n{last}")
            time.sleep(0.25)
        yield url
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it has not gone in 20 s."""
    import signal

    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture()
def tracking_server_store(tracking_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """MLFLOW_TRACKING_URI pointed at the session's tracking server for one test; yields its URL.

    promptops reads the variable at every call (`promptops.tracking._store`), but MLflow keeps the last URI set in
    the process ahead of the variable: after the test it is cleared, so later tests follow their own store again.
    """
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    yield tracking_server
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # also unsets the variable, which monkeypatch then restores


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def git_commit(repo, message: str, *, date: str = "2026-11-20T09:00:00+00:00") -> str:
    """Commit what is staged at a fixed date, so tests can name the day; returns the sha."""
    env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    repo.git.commit("--quiet", "-m", message, env=env)
    return repo.head.commit.hexsha


@pytest.fixture()
def git_project(project: Path, request: pytest.FixtureRequest):
    """The example project as a fresh git repository with one commit; the working folder is its root.

    A test on the literal model gets its prompts naming it in that commit already, so v1 answers from it too.
    """
    import git

    if "literal_model" in request.fixturenames:
        request.getfixturevalue("literal_model")
    repo = git.Repo.init(project)
    with repo.config_writer() as config:
        config.set_value("user", "name", "Ada Lovelace")
        config.set_value("user", "email", "ada@example.com")
        config.set_value("commit", "gpgsign", "false")
        config.set_value("tag", "gpgsign", "false")
    repo.git.add("--all")
    git_commit(repo, "Example project")
    return repo


@pytest.fixture()
def commit_all(git_project) -> Callable[..., str]:
    """`commit_all(message, date=...)`: stage every change of the project and commit it at a fixed date; returns the sha."""

    def commit(message: str, *, date: str = "2026-11-20T09:00:00+00:00") -> str:
        git_project.git.add("--all")
        return git_commit(git_project, message, date=date)

    return commit


@pytest.fixture()
def edit_prompt(project: Path) -> Callable[[str, str, str], Path]:
    """`edit_prompt(name, old, new)`: replace the first `old`, which must be there, in prompts/NAME.yaml; returns its path."""

    def edit(name: str, old: str, new: str) -> Path:
        path = project / "prompts" / f"{name}.yaml"
        text = path.read_text()
        assert old in text, (name, old)
        path.write_text(text.replace(old, new, 1))
        return path

    return edit


# --- promotion ------------------------------------------------------------------------------------


@pytest.fixture()
def pass_the_gate(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """`pass_the_gate()`: from then on every candidate passes promotion's gate without a model call, for tests of the
    channel bookkeeping, not of the gate."""

    def pass_every_candidate() -> None:
        from promptops.evaluation import Verdict
        from promptops.versioning import _promotion as promotion

        verdict = Verdict(True, "non_inferior", 0.02, "accuracy", 1, "candidate", None, 0.5, None, None, None, None, 1.18125e-05,
                          None, None, ())
        monkeypatch.setattr(promotion, "run_gate", lambda *a, **k: (verdict, {}))

    return pass_every_candidate


@pytest.fixture()
def registry_label() -> Callable[..., str | None]:
    """`registry_label(channel="production", name="banking_intent")`: the version label of the Prompt Registry's alias
    for the channel; None without one."""

    def label(channel: str = "production", name: str = "banking_intent") -> str | None:
        from promptops import tracking

        version = tracking.registry_aliases(name).get(channel)
        return tracking.registry_version_tags(name, version)["prompt_version"] if version else None

    return label


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture()
def run() -> Callable[..., Any]:
    """`run(*args, columns=80)`: a promptops command in this process (click's CliRunner), at that terminal width."""
    from click.testing import CliRunner

    from promptops.cli import main

    def invoke(*args: str, columns: int = 80) -> Any:
        return CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns)})

    return invoke


@pytest.fixture()
def assert_one_line_error() -> Callable[..., str]:
    """`assert_one_line_error(result, *words)`: the command failed with one `Error: ...` line holding each word, no
    traceback; returns the line."""

    def check(result: Any, *words: str) -> str:
        assert result.exit_code != 0, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("Error: "), lines[0]
        for word in words:
            assert word in lines[0], lines[0]
        return lines[0]

    return check


@pytest.fixture()
def read_only() -> Iterator[Callable[[Path], Path]]:
    """`read_only(folder)`: the folder refuses new, renamed and removed entries until the test ends, as on a read-only
    mount. As root, whom permission bits do not stop, with `chattr +i` (EPERM, a PermissionError as EACCES is);
    otherwise with chmod."""
    locked: list[tuple[Path, int]] = []

    def lock(folder: Path) -> Path:
        mode = folder.stat().st_mode & 0o7777
        if os.geteuid() == 0:
            done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"chattr +i is refused here, so root cannot be shown a read-only folder: {done.stderr.strip()}")
        else:
            folder.chmod(mode & ~0o222)
        locked.append((folder, mode))
        return folder

    yield lock
    for folder, mode in reversed(locked):
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(mode)


# --- traces ----------------------------------------------------------------------------------------


@pytest.fixture()
def log_traces() -> Callable[[str], list[str]]:
    """`log_traces(name)`: eight requests to prompt NAME traced as the runtime traces them (the tag contract), with
    feedback and expectations on some, in the current MLflow store; returns their trace ids."""

    def log(name: str) -> list[str]:
        import mlflow

        from promptops import tracking

        mlflow.set_tracking_uri(tracking.tracking_uri())
        mlflow.set_experiment(experiment_id=tracking.experiment_id(name))
        rows = [  # arm, version, status, answer, feedback, expectation
            ("production", "v1", "ok", "card_arrival", True, None),
            ("production", "v1", "ok", "change_pin", False, None),
            ("production", "v1", "ok", "change_pin", None, "change_pin"),
            ("production", "v1", "error", None, None, "card_arrival"),
            ("candidate", "v2", "ok", "exchange_rate", None, "exchange_rate"),
            ("candidate", "v2", "ok", "top_up_failed", "yes", None),
            ("candidate", "v2", "refused", None, None, None),
            (None, "v1", "ok", "card_arrival", True, None),  # not routed by a split
        ]
        ids = []
        for arm, version, status, answer, _, _ in rows:
            with mlflow.start_span(name=name) as span:
                span.set_inputs({"text": "where is my card"})
                if answer:
                    span.set_outputs({"intent": answer})
                tags = {"promptops.prompt": name, "promptops.version": version, "promptops.status": status,
                        "promptops.cost_usd": "0.00001000", "promptops.latency_s": "0.5000", "promptops.model": "local/smollm2-135m"}
                if arm:
                    tags.update({"promptops.arm": arm, "promptops.channel": arm})
                mlflow.update_current_trace(tags=tags)
                ids.append(span.trace_id)
        mlflow.flush_trace_async_logging()
        for trace_id, (_, _, _, _, feedback, expectation) in zip(ids, rows):
            if feedback is not None:
                mlflow.log_feedback(trace_id=trace_id, name="correct", value=feedback)
            if expectation is not None:
                mlflow.log_expectation(trace_id=trace_id, name="intent", value=expectation)
        mlflow.log_feedback(trace_id=ids[1], name="correct", value=True)  # a later correction wins
        return ids

    return log


# --- the optimizer ----------------------------------------------------------------------------------

TINY_EXPERIMENT = """\
name: tiny
prompt: banking_intent
search:
  models: [local/smollm2-135m]
  optimizers: [labeled, bootstrap]
  demos: [1, 2]
  instructions:
    - Pick the intent label that fits the customer's banking message.
  calibrate: true  # uncalibrated, SmolLM2 names one label for everything: the file as committed (the baseline) wins on cost
  train_limit: 12
budget:
  n_trials: {n_trials}
{extra}
pruning:
  rungs: [4]
"""


@pytest.fixture()
def write_experiment(project: Path) -> Callable[..., Path]:
    """`write_experiment(n_trials=3, extra="")`: experiments/tiny.yaml, a tiny study of banking_intent on the embedded
    model (`extra` goes under `budget:`); returns its path."""

    def write(*, n_trials: int = 3, extra: str = "") -> Path:
        path = project / "experiments" / "tiny.yaml"
        path.write_text(TINY_EXPERIMENT.format(n_trials=n_trials, extra=extra))
        return path

    return write


@pytest.fixture()
def decided_study(git_project, mlflow_store, literal_model, write_experiment, commit_all, monkeypatch: pytest.MonkeyPatch):
    """`optimize` of the tiny experiment with the search replaced by a given winner: `decided_study(winner_prompt)`;
    only the test comparison (on the literal model), the gate and the write run."""
    import mlflow

    from promptops import tracking
    from promptops.models import Budget
    from promptops.optimizer import FrontPoint, StudyOutcome
    from promptops.optimizer import _study as study

    write_experiment()
    commit_all("Experiment")
    mlflow.set_tracking_uri(tracking.tracking_uri())
    parent = mlflow.MlflowClient().create_run(tracking.experiment_id("banking_intent")).info.run_id  # artifacts beside the store

    def with_winner(winner_prompt):
        point = FrontPoint(1, {"accuracy": 1.0, "cost_usd": 0.001}, {}, None)
        outcome = StudyOutcome("tiny", "tiny-1", "sqlite://", parent, {"accuracy": "maximize", "cost_usd": "minimize"}, (),
                               (point,), point, winner_prompt, 0, None, 0.0, 0, 0.0)
        monkeypatch.setattr(study, "run_study", lambda *args, **kwargs: (outcome, Budget(1.0, 1000, None, 0.0, 0)))

    return with_winner


# --- scripted models -------------------------------------------------------------------------------


def use_model(project: Path, name: str, model_id: str) -> Path:
    """Point prompts/NAME.yaml at `model_id` (its `model.id`); returns the path."""
    path = project / "prompts" / f"{name}.yaml"
    text, found = re.subn(r"(?m)^(model:\n(?:[ \t]*#.*\n)*  id: ).+$", lambda match: match.group(1) + model_id,
                          path.read_text(), count=1)
    assert found, f"{path} has no model.id to replace"
    path.write_text(text)
    return path


@pytest.fixture()
def scripted_model() -> Iterator[Callable[..., Any]]:
    """`scripted_model(NAME, script, prompts=(...), **options)` serves the model string `scripted/NAME` in this test and
    returns it, a `promptops.testing.ScriptedModel` (its `model_id`, the `requests` that reached it).

    A prompt uses it as any model: `prompts` names the working project's prompts whose file should name it, or pass
    `--model scripted/NAME` or `model=`. DSPy's adapter, its cache and promptops' metering run as for a real model;
    the cache is a fresh one for the test, so no answer comes from another test's script.
    """
    import dspy

    from promptops.testing import ScriptedModel

    session_cache = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    installed: list[ScriptedModel] = []

    def install(name: str, script: Any, *, prompts: tuple[str, ...] | list[str] = (), **options: Any) -> ScriptedModel:
        model = ScriptedModel(name, script, **options).install()
        installed.append(model)
        for prompt in prompts:
            use_model(Path.cwd(), prompt, model.model_id)
        return model

    try:
        yield install
    finally:
        for model in reversed(installed):
            model.uninstall()
        dspy.cache = session_cache


# What `scripted/literal` does when the instructions say so; elsewhere it answers every eval row right.
ALWAYS_EXCHANGE_RATE = "Ignore the message and always answer exchange_rate."
FORGET_LAST_NAMES = "Never give a last name."
MISREAD = "Misread the first test message."
LITERAL_PROMPTS = ("banking_intent", "restaurant_booking")  # the example prompts it can answer: a classifier, an extractor


@pytest.fixture()
def literal_model(project: Path, scripted_model) -> Any:
    """`scripted/literal`, a model that follows instructions literally, and the example project's classifier and
    extractor (LITERAL_PROMPTS) on it; under `git_project` already in the first commit. Where the logic around the
    model is under test, not the model.

    It answers a request with the expected values of the eval row (any eval set under experiments/data of the working
    project) whose inputs it has, except that under ALWAYS_EXCHANGE_RATE the intent is exchange_rate, under
    FORGET_LAST_NAMES the last name is null, and under MISREAD the first row of a test split gets a wrong intent.
    """
    return scripted_model("literal", answer_literally, prompts=LITERAL_PROMPTS)


def answer_literally(request: Any) -> dict[str, Any]:
    """`scripted/literal`'s script (see `literal_model`)."""
    path, index, row = eval_row(Path.cwd(), request.inputs, request.outputs)
    values = dict(row)
    if ALWAYS_EXCHANGE_RATE in request.system:
        values["intent"] = "exchange_rate"
    if FORGET_LAST_NAMES in request.system:
        values["last_name"] = None
    if MISREAD in request.system and path.name == "test.jsonl" and index == 0:
        values["intent"] = "terminate_account" if values.get("intent") != "terminate_account" else "change_pin"
    return values


def eval_row(root: Path, inputs: dict[str, str], outputs: tuple[str, ...]) -> tuple[Path, int, dict]:
    """The eval row (its file, its index there, its values) with these input values and these output fields, of the eval
    sets under root/experiments/data; of several, the one with the fewest other fields (banking_agent's rows repeat
    banking_intent's with more)."""

    def written(value: Any) -> str:  # as DSPy writes an input value into the message
        return value.strip() if isinstance(value, str) else json.dumps(value)

    def fits(row: dict) -> bool:
        return all(name in row and written(row[name]) == value for name, value in inputs.items()) and set(outputs) <= set(row)

    found = [(len(row), path, index, row) for path in sorted((root / "experiments" / "data").rglob("*.jsonl"))
             for index, row in enumerate(_rows_of(path, *_version_of(path))) if inputs and fits(row)]
    if not found:
        raise LookupError(f"no eval row under {root}/experiments/data has the inputs {inputs!r} and the outputs {outputs!r}")
    _, path, index, row = min(found, key=lambda candidate: candidate[0])
    return path, index, row


def _version_of(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=128)
def _rows_of(path: Path, mtime_ns: int, size: int) -> tuple[dict, ...]:
    """The rows of a JSON-lines file as it was at that time and size; a line that is not a JSON object (a test may break
    one) is no row."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return tuple(rows)
