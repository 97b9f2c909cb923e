"""Where MLflow writes: the tracking URI, the check that the store answers, the configured `mlflow` module, a prompt's
experiment, and where a run goes when MLflow cannot take it.

The store is `MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db` at the project root: MLflow 3's
file store (`./mlruns`) refuses the Prompt Registry, which promotion needs, and sqlite does not.
A tracking server (`http://...`, any backend store) works the same way, read at every call.

The store is checked once per process (and URI) before its first use: one request, with MLflow's
own retry and timeout settings turned down for it, so an unreachable server or a damaged
database is one sentence after a few seconds, not minutes of retries and a traceback.
"""

from __future__ import annotations

import json
import os
import re
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

from promptops._secrets import redact, redact_data
from promptops.artifact import find_project_root
from promptops.errors import TrackingError, UnloggedError, where

# The check of a tracking server: one request (no retries) that may take this long. MLflow's defaults for every
# other request stay: 7 retries with backoff and a 120 s timeout each, which is what a flaky network needs.
CHECK_TIMEOUT_S = 5
UNLOGGED_FOLDER = "unlogged-runs"  # at the project root: runs MLflow could not take, as JSON

_CHECKED: set[str] = set()  # stores that answered the check in this process
_DEFAULTS: set[str] = set()  # the projects' default stores this process has used
_CHECK_LOCK = threading.Lock()


def tracking_uri(root: Optional[Path] = None) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(root or find_project_root()) / 'mlflow.db'}"


def display_uri(root: Optional[Path] = None) -> str:
    """The tracking URI as messages show it: a user name, password or token in it masked."""
    return redact(tracking_uri(root))


def _origin() -> str:
    """Where the store was chosen, so a message can say what to change. (`mlflow.set_tracking_uri` sets the variable
    too: the project's default store, once set, is still the default.)"""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return "set by MLFLOW_TRACKING_URI" if uri and uri not in _DEFAULTS else "the project's default store"


def _configure(uri: str) -> Any:
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        _DEFAULTS.add(uri)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # On a tracking server MLflow writes two lines ("View run ... at: URL") to stdout as each run ends, which would
    # break `--json` output; promptops prints its own run ids.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # schema migrations and "creating experiment" are noise here
    # MLflow logs each database error with its traceback, then raises it: promptops says it once, in one sentence.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    mlflow.set_tracking_uri(uri)
    return mlflow


def _mlflow(root: Optional[Path] = None) -> Any:
    """`mlflow`, pointed at the store, which has answered once in this process (`check_store`)."""
    check_store(root)
    return _configure(tracking_uri(root))


def check_store(root: Optional[Path] = None) -> None:
    """Make sure the tracking store answers, before work that should end up in it; once per process and URI.

    A `TrackingError` says in one sentence what is wrong (the server does not answer, the folder
    of a sqlite store does not exist, the file is not a database), naming the store, with any
    credential in its URI masked, and where it was set.
    """
    uri = tracking_uri(root)
    if uri in _CHECKED:
        return
    with _CHECK_LOCK:
        if uri in _CHECKED:
            return
        problem = _sqlite_problem(uri)
        if problem is None:
            mlflow = _configure(uri)
            try:
                with _one_quick_request():
                    mlflow.MlflowClient().search_experiments(max_results=1)
            except Exception as exc:
                problem = _store_problem(uri, exc)
        if problem is not None:
            raise TrackingError(problem)
        _CHECKED.add(uri)


@contextmanager
def _one_quick_request() -> Iterator[None]:
    """MLflow's own settings for its HTTP requests (`mlflow.environment_variables`, read at each request), set for the
    check: no retries, a short timeout. Restored after, so the runs that follow keep the user's or MLflow's."""
    knobs = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
             "MLFLOW_HTTP_REQUEST_TIMEOUT": str(_check_timeout_s())}
    saved = {name: os.environ.get(name) for name in knobs}
    os.environ.update(knobs)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_timeout_s() -> int:
    """`CHECK_TIMEOUT_S`, or the user's MLFLOW_HTTP_REQUEST_TIMEOUT where it is shorter (whole seconds, as MLflow reads it)."""
    try:
        return max(1, min(CHECK_TIMEOUT_S, int(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", CHECK_TIMEOUT_S))))
    except ValueError:
        return CHECK_TIMEOUT_S


def _sqlite_file(uri: str) -> Optional[Path]:
    """The database file of a `sqlite:///PATH` store (`sqlite:////abs` or `sqlite:///rel`); None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").partition("?")[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def _sqlite_problem(uri: str) -> Optional[str]:
    """What is wrong with a sqlite store's path, before sqlite says "unable to open database file" for each."""
    path = _sqlite_file(uri)
    if path is None:
        return None
    if not path.parent.is_dir():
        return (f"the MLflow store {redact(uri)} ({_origin()}) is in a folder that does not exist, {path.parent}:"
                f" create the folder, or {_elsewhere()}")
    if path.is_dir():
        return f"the MLflow store {redact(uri)} ({_origin()}) is a folder, not a database file: {_elsewhere()}"
    return None


def _elsewhere() -> str:
    return "point MLFLOW_TRACKING_URI at another store"


def _store_problem(uri: str, exc: BaseException) -> str:
    """One sentence for a store that failed its check."""
    text = _chain_text(exc)
    path = _sqlite_file(uri)
    if path is not None:
        shown = f"{where(path)} ({_origin()})"
        if "file is not a database" in text or "database disk image is malformed" in text:
            return (f"the MLflow store {shown} is not a database sqlite can read (damaged, or another kind of file):"
                    f" move it aside and a new store starts there, or {_elsewhere()}")
        return f"cannot open the MLflow store {shown}: {_first_line(exc)}"
    shown = f"{redact(uri)} ({_origin()})"
    if uri.startswith(("http://", "https://")):
        return f"the MLflow tracking server {shown} {_server_failure(text)}"
    return f"cannot open the MLflow store {shown}: {_first_line(exc)}"


def _server_failure(text: str) -> str:
    """How a tracking server failed the check, from the text of MLflow's and requests' exceptions."""
    status = re.search(r"error code (\d{3})|status code (\d{3})|HTTP (\d{3})|too many (\d{3}) error responses", text)
    if "timeout" in text.lower() or "timed out" in text.lower():
        return f"did not answer within {_check_timeout_s()} s: check that it is up and reachable from here, or {_elsewhere()}"
    if status:
        code = next(group for group in status.groups() if group)
        return f"answered HTTP {code} to a search for experiments: check that it is an MLflow tracking server, and its log"
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return f"cannot be reached ({errno.group(1).strip().lower()}): start it, or {_elsewhere()}"
    return f"failed a search for experiments: {_first_line_of(text)}"


def _chain_text(exc: BaseException) -> str:
    """The text of an exception and of those it was raised from or during (MLflow wraps requests', SQLAlchemy's)."""
    parts, seen = [], set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return redact("\n".join(parts))


def _experiment(mlflow: Any, name: str) -> str:
    """The prompt's experiment; with a sqlite store its artifacts live beside the database, not in ./mlruns."""
    try:
        if mlflow.get_experiment_by_name(name) is None:
            uri = mlflow.get_tracking_uri()
            location = None
            if uri.startswith("sqlite:///"):
                location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name).as_uri()
            mlflow.create_experiment(name, artifact_location=location)
        experiment = mlflow.set_experiment(name)
    except Exception as exc:
        raise TrackingError(f"cannot open MLflow experiment {name!r} at {display_uri()}: {_first_line(exc)}") from None
    return experiment.experiment_id


def _first_line(exc: BaseException) -> str:
    return _first_line_of(redact(str(exc))) or type(exc).__name__


_DRIVER_ERROR = re.compile(r"^\((?:sqlite3|psycopg2?|pymysql|MySQLdb)\.[\w.]+\) (.+)$", re.MULTILINE)


def _first_line_of(text: str) -> str:
    """What an error says, in one line: the database driver's own words where SQLAlchemy quotes them (after its
    `(sqlite3.OperationalError) ` prefix, and after a note such as "raised as a result of Query-invoked autoflush"),
    else the first line."""
    driver = _DRIVER_ERROR.search(text)
    if driver:
        return driver.group(1).strip()
    return (text.strip().splitlines() or [""])[0]


def _duplicate_row(exc: BaseException) -> bool:
    """A unique-constraint violation, as sqlite and PostgreSQL word it (through SQLAlchemy or MLflow): two processes
    inserted the same row (a dataset's name and digest) at once, and this one lost."""
    text = str(exc)
    return "UNIQUE constraint failed" in text or "duplicate key value violates unique constraint" in text


def save_unlogged(kind: str, name: str, record: dict[str, Any], failure: TrackingError, *, result: Any = None,
                  root: Optional[Path] = None) -> UnloggedError:
    """A run MLflow could not take, written as JSON under the project's `unlogged-runs/` (else the system's temporary
    folder), so the work it records is not lost; returns the error to raise, which names the file.

    The record is redacted like everything logged. Nothing reads the file back: it is for the person, and for
    logging again by hand once the store is fixed."""
    import tempfile

    from promptops.artifact import atomic_write_text

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    file_name = f"{kind}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-{stamp}.json"
    text = json.dumps(redact_data({"kind": kind, "name": name, "tracking_uri": display_uri(root), "error": str(failure),
                                   "saved_at": stamp, **record}), indent=2, default=str, ensure_ascii=False)
    folders = [(root or find_project_root()) / UNLOGGED_FOLDER, Path(tempfile.gettempdir()) / "promptops" / UNLOGGED_FOLDER]
    for folder in folders:
        try:
            path = atomic_write_text(folder / file_name, text + "\n")
            break
        except OSError:
            continue
    else:
        return UnloggedError(f"{failure}; the results could not be saved in {folders[0]} or {folders[1]} either", saved_to=None,
                             result=result)
    return UnloggedError(f"{failure}; the results are saved in {where(path)} instead", saved_to=path, result=result)
