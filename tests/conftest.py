"""Shared fixtures: a throwaway project, an MLflow sqlite store, DSPy's cache, and the embedded model;
and a real `mlflow server` on a fresh PostgreSQL database, started once per session when a test asks for it.

The environment is set before anything imports DSPy or MLflow, so no test writes to the
user's stores or caches and nothing reaches the network.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

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
def git_project(project: Path):
    """The example project as a fresh git repository with one commit; the working folder is its root."""
    import git

    repo = git.Repo.init(project)
    with repo.config_writer() as config:
        config.set_value("user", "name", "Ada Lovelace")
        config.set_value("user", "email", "ada@example.com")
        config.set_value("commit", "gpgsign", "false")
        config.set_value("tag", "gpgsign", "false")
    repo.git.add("--all")
    git_commit(repo, "Example project")
    return repo
