"""Shared fixtures: a throwaway project, an MLflow sqlite store, DSPy's cache, and the embedded model.

The environment is set before anything imports DSPy or MLflow, so no test writes to the
user's stores or caches and nothing reaches the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

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
