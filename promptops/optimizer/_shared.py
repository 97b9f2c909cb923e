"""What the workers of one study share through its Optuna storage's database: the budget, who is working, who concludes.

Optuna's RDB storage holds the trials and, with heartbeats, notices a worker that died; it does
not know a study's budget. Beside Optuna's tables, in the same database, promptops keeps two:

- `promptops_studies`: one row per study: its caps, its deadline (wall clock, so every machine
  agrees), and which worker concluded it (scored the front on test and wrote the winner);
- `promptops_workers`: one row per worker (`host:pid`): the calls and spend it made, the calls it
  has reserved and not yet settled, a heartbeat, and the trial and stage it is on (the live view).

A worker admits each model call against the whole study: in one transaction it locks the study's
row (an UPDATE of it, which PostgreSQL holds as a row lock and SQLite as its write lock), sums
every worker's spend and every live worker's reservations, and reserves the call in its own row
if the caps leave room. So the study's spend can pass a cap only by what calls in flight cost
beyond their estimate (a worker has up to one call in flight per eval thread). A killed worker's
reservations stop counting once its heartbeat is older than `STALE_S`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from promptops.models import BudgetExhausted, Reservation

HEARTBEAT_S = 5  # how often a worker says it is alive (and Optuna's trial heartbeat interval)
STALE_S = 20  # a worker (or a trial) silent for this long is taken for dead (Optuna's grace period)


def engine_options(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for the study's database, Optuna's storage and these tables alike: a server's
    connections are checked before use (a restarted server, a dropped idle connection); sqlite waits for its lock."""
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class WorkerState:
    worker: str
    model_calls: int
    spent_usd: float
    reserved_calls: int
    trial: Optional[int]
    stage: str
    alive: bool


class SharedStudy:
    """One study's shared rows, reached through SQLAlchemy on the storage URL."""

    def __init__(self, storage_url: str, study: str, worker: Optional[str] = None):
        import sqlalchemy

        self.study = study
        self.worker = worker or worker_name()
        self.engine = sqlalchemy.create_engine(storage_url, **engine_options(storage_url))
        self._create_tables()

    # -- set-up ----------------------------------------------------------------------------

    def _create_tables(self) -> None:
        from sqlalchemy import text

        with self.engine.begin() as db:
            db.execute(text(
                "CREATE TABLE IF NOT EXISTS promptops_studies (study VARCHAR(512) PRIMARY KEY, max_cost_usd FLOAT,"
                " max_model_calls INTEGER, deadline_epoch FLOAT, concluded_by VARCHAR(512), coordinator VARCHAR(512),"
                " locks INTEGER NOT NULL DEFAULT 0)"))
            db.execute(text(
                "CREATE TABLE IF NOT EXISTS promptops_workers (study VARCHAR(512) NOT NULL, worker VARCHAR(512) NOT NULL,"
                " model_calls INTEGER NOT NULL DEFAULT 0, spent_usd FLOAT NOT NULL DEFAULT 0,"
                " reserved_calls INTEGER NOT NULL DEFAULT 0, reserved_usd FLOAT NOT NULL DEFAULT 0,"
                " heartbeat_epoch FLOAT NOT NULL, trial INTEGER, stage VARCHAR(512), PRIMARY KEY (study, worker))"))

    def start(self, *, max_cost_usd: Optional[float], max_model_calls: Optional[int], timeout_s: Optional[float],
              carried_calls: int = 0, carried_usd: float = 0.0, new_session: bool = True, coordinator: bool = False) -> None:
        """Register this worker. A new session (a new study, or `--resume`) sets the caps and the deadline and
        reopens the conclusion; a joining worker keeps the session's. A study from before these tables gets
        its earlier spend (`carried_*`, from its trials) as a worker row of its own. The `coordinator` (the
        process that started workers with --workers) concludes the study while it is alive."""
        from sqlalchemy import text

        now = time.time()
        with self.engine.begin() as db:
            exists = db.execute(text("SELECT 1 FROM promptops_studies WHERE study = :s"), {"s": self.study}).first()
            if not exists:
                db.execute(text("INSERT INTO promptops_studies (study, locks) VALUES (:s, 0)"), {"s": self.study})
                if carried_calls or carried_usd:
                    db.execute(text("INSERT INTO promptops_workers (study, worker, model_calls, spent_usd, heartbeat_epoch)"
                                    " VALUES (:s, 'earlier runs', :c, :u, 0)"), {"s": self.study, "c": carried_calls, "u": carried_usd})
            if new_session:
                db.execute(text("UPDATE promptops_studies SET max_cost_usd = :usd, max_model_calls = :calls, deadline_epoch = :d,"
                                " concluded_by = NULL, coordinator = :c WHERE study = :s"),
                           {"usd": max_cost_usd, "calls": max_model_calls, "d": now + timeout_s if timeout_s else None,
                            "c": self.worker if coordinator else None, "s": self.study})
            mine = db.execute(text("SELECT 1 FROM promptops_workers WHERE study = :s AND worker = :w"),
                              {"s": self.study, "w": self.worker}).first()
            if mine:
                db.execute(text("UPDATE promptops_workers SET reserved_calls = 0, reserved_usd = 0, heartbeat_epoch = :h"
                                " WHERE study = :s AND worker = :w"), {"h": now, "s": self.study, "w": self.worker})
            else:
                db.execute(text("INSERT INTO promptops_workers (study, worker, heartbeat_epoch) VALUES (:s, :w, :h)"),
                           {"s": self.study, "w": self.worker, "h": now})

    def settings(self) -> dict[str, Any]:
        from sqlalchemy import text

        with self.engine.connect() as db:
            row = db.execute(text("SELECT max_cost_usd, max_model_calls, deadline_epoch, concluded_by FROM promptops_studies"
                                  " WHERE study = :s"), {"s": self.study}).mappings().first()
        return dict(row) if row else {}

    @contextmanager
    def exclusively(self) -> Iterator[None]:
        """Hold the study's lock (its row in `promptops_studies`, as `reserve` does) for the block: other workers'
        admissions and claims wait. On SQLite, which only one process may use (`optimize` refuses more), nothing is
        held: its lock is the whole database's, and Optuna's own writes in the block would wait for it forever."""
        from sqlalchemy import text

        if self.engine.dialect.name == "sqlite":
            yield
            return
        with self.engine.begin() as db:
            db.execute(text("UPDATE promptops_studies SET locks = locks + 1 WHERE study = :s"), {"s": self.study})
            yield

    # -- the budget ------------------------------------------------------------------------

    def reserve(self, estimated_cost_usd: float, *, check_deadline: bool = True) -> None:
        """Reserve one call against the study's caps, or raise `BudgetExhausted` (nothing reserved)."""
        from sqlalchemy import text

        now = time.time()
        with self.engine.begin() as db:
            db.execute(text("UPDATE promptops_studies SET locks = locks + 1 WHERE study = :s"), {"s": self.study})  # the lock
            caps = db.execute(text("SELECT max_cost_usd, max_model_calls, deadline_epoch FROM promptops_studies WHERE study = :s"),
                              {"s": self.study}).mappings().one()
            if check_deadline and caps["deadline_epoch"] is not None and now >= caps["deadline_epoch"]:
                raise BudgetExhausted("timeout", "the time budget ran out")
            totals = db.execute(text(
                "SELECT COALESCE(SUM(model_calls), 0) AS calls, COALESCE(SUM(spent_usd), 0) AS usd,"
                " COALESCE(SUM(CASE WHEN worker = :w OR heartbeat_epoch >= :fresh THEN reserved_calls ELSE 0 END), 0) AS held_calls,"
                " COALESCE(SUM(CASE WHEN worker = :w OR heartbeat_epoch >= :fresh THEN reserved_usd ELSE 0 END), 0) AS held_usd"
                " FROM promptops_workers WHERE study = :s"), {"s": self.study, "w": self.worker, "fresh": now - STALE_S}).mappings().one()
            calls = int(totals["calls"]) + int(totals["held_calls"])
            if caps["max_model_calls"] is not None and calls + 1 > caps["max_model_calls"]:
                raise BudgetExhausted("max_model_calls", f"the next model call would exceed max_model_calls={caps['max_model_calls']}")
            spent = float(totals["usd"]) + float(totals["held_usd"])
            if caps["max_cost_usd"] is not None and spent + estimated_cost_usd > caps["max_cost_usd"]:
                raise BudgetExhausted(
                    "max_cost_usd",
                    f"the next model call (about ${estimated_cost_usd:.6f}) would exceed max_cost_usd=${caps['max_cost_usd']:g}"
                    f" (${float(totals['usd']):.6f} spent)")
            db.execute(text("UPDATE promptops_workers SET reserved_calls = reserved_calls + 1, reserved_usd = reserved_usd + :e,"
                            " heartbeat_epoch = :h WHERE study = :s AND worker = :w"),
                       {"e": estimated_cost_usd, "h": now, "s": self.study, "w": self.worker})

    def settle(self, estimated_cost_usd: float, cost_usd: Optional[float], sent: bool) -> None:
        from sqlalchemy import text

        with self.engine.begin() as db:
            db.execute(text("UPDATE promptops_workers SET reserved_calls = reserved_calls - 1, reserved_usd = reserved_usd - :e,"
                            " model_calls = model_calls + :n, spent_usd = spent_usd + :c, heartbeat_epoch = :h"
                            " WHERE study = :s AND worker = :w"),
                       {"e": estimated_cost_usd, "n": 1 if sent else 0, "c": (cost_usd or 0.0) if sent else 0.0, "h": time.time(),
                        "s": self.study, "w": self.worker})

    def totals(self) -> tuple[int, float]:
        """Calls made and USD spent by every worker of the study."""
        from sqlalchemy import text

        with self.engine.connect() as db:
            row = db.execute(text("SELECT COALESCE(SUM(model_calls), 0), COALESCE(SUM(spent_usd), 0) FROM promptops_workers"
                                  " WHERE study = :s"), {"s": self.study}).one()
        return int(row[0]), float(row[1])

    # -- workers ---------------------------------------------------------------------------

    def beat(self, trial: Optional[int] = None, stage: Optional[str] = None) -> None:
        from sqlalchemy import text

        with self.engine.begin() as db:
            db.execute(text("UPDATE promptops_workers SET heartbeat_epoch = :h, trial = :t, stage = :g WHERE study = :s AND worker = :w"),
                       {"h": time.time(), "t": trial, "g": (stage or "")[:500], "s": self.study, "w": self.worker})

    def workers(self) -> list[WorkerState]:
        from sqlalchemy import text

        fresh = time.time() - STALE_S
        with self.engine.connect() as db:
            rows = db.execute(text("SELECT worker, model_calls, spent_usd, reserved_calls, trial, stage, heartbeat_epoch"
                                   " FROM promptops_workers WHERE study = :s ORDER BY worker"), {"s": self.study}).all()
        return [WorkerState(r[0], int(r[1]), float(r[2]), int(r[3]), r[4], r[5] or "", float(r[6]) >= fresh)
                for r in rows if r[0] != "earlier runs"]

    def claim_conclusion(self) -> Optional[str]:
        """Become the worker that concludes the study; None if this one is, else the name of the one that is."""
        from sqlalchemy import text

        with self.engine.begin() as db:
            claimed = db.execute(text(
                "UPDATE promptops_studies SET concluded_by = :w WHERE study = :s AND concluded_by IS NULL AND (coordinator IS NULL"
                " OR coordinator = :w OR NOT EXISTS (SELECT 1 FROM promptops_workers AS c WHERE c.study = :s"
                " AND c.worker = promptops_studies.coordinator AND c.heartbeat_epoch >= :fresh))"),
                {"w": self.worker, "s": self.study, "fresh": time.time() - STALE_S}).rowcount
            if claimed == 1:
                return None
            row = db.execute(text("SELECT concluded_by, coordinator FROM promptops_studies WHERE study = :s"), {"s": self.study}).one()
        if row[0] == self.worker:
            return None
        return row[0] or row[1]  # the coordinator concludes once its own last trial is done

    def close(self) -> None:
        self.engine.dispose()


class SharedBudget:
    """A `promptops.models._budget.Budget` whose spend is the whole study's, kept in its storage (see the module docstring).

    `spent_usd` and `model_calls` are the study's totals; `own_spent_usd` and `own_model_calls` this worker's.
    """

    def __init__(self, shared: SharedStudy):
        self.shared = shared
        settings = shared.settings()
        self.max_cost_usd = settings.get("max_cost_usd")
        self.max_model_calls = settings.get("max_model_calls")
        deadline_epoch = settings.get("deadline_epoch")
        self.deadline: Optional[float] = time.monotonic() + (deadline_epoch - time.time()) if deadline_epoch else None
        self.own_model_calls = 0
        self.own_spent_usd = 0.0
        self._lock = threading.Lock()

    def admit(self, estimated_cost_usd: float = 0.0) -> Reservation:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise BudgetExhausted("timeout", "the time budget ran out")
        # No deadline (the winner's test eval, after the search's time ran out): the caps on spend and calls still hold.
        self.shared.reserve(estimated_cost_usd, check_deadline=self.deadline is not None)
        return Reservation(estimated_cost_usd)

    def settle(self, reservation: Reservation, cost_usd: Optional[float], *, sent: bool = True) -> None:
        self.shared.settle(reservation.estimated_cost_usd, cost_usd, sent)
        if sent:
            with self._lock:
                self.own_model_calls += 1
                self.own_spent_usd += cost_usd or 0.0

    @property
    def model_calls(self) -> int:
        return self.shared.totals()[0]

    @property
    def spent_usd(self) -> float:
        return self.shared.totals()[1]

    @property
    def remaining_s(self) -> Optional[float]:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


class Heartbeat:
    """Keeps this worker's row fresh while it works (a thread), so its reservations and trials count as alive."""

    def __init__(self, shared: SharedStudy):
        self.shared = shared
        self.trial: Optional[int] = None
        self.stage = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="promptops-worker-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_S + 5)

    def show(self, trial: Optional[int], stage: str) -> None:
        """What this worker is doing, for the live view; written at once when it starts another trial."""
        changed = trial != self.trial
        self.trial, self.stage = trial, stage
        if changed:
            try:
                self.shared.beat(trial, stage)
            except Exception:
                pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.shared.beat(self.trial, self.stage)
            except Exception:  # a missed beat is retried; the study's own work reports a database that is gone
                pass
            self._stop.wait(HEARTBEAT_S)
