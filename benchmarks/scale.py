"""Workers on one study: the same 24-trial study with 1, 2 and 4 worker processes, then 4 with one killed -9.

The study runs against a served model with a fixed latency: `promptops.testing.FaultServer` on
127.0.0.1, in this process, answering every call after `--latency-s` (no faults), as a hosted
model would. Each run is `promptops optimize scale --storage postgresql://... --workers N --json
--no-write` in a fresh git copy of the example project (prompts/, experiments/data/, tools/,
judges/), with its own PostgreSQL database, MLflow store (sqlite) and empty DSPy cache, so no
answer comes from a cache another run filled. The study is shaped to wait on the model, as one
against a hosted model does: each trial bootstraps 24 to 40 demos (one call after another) and
scores 8, then 16 dev rows (8 calls at a time); README "scale.py" says why.

Per run: wall time (launch to exit of the command), speed-up over the first run, trials per
minute, trial states, configurations evaluated and repeats (a configuration drawn again reuses the
earlier trial's result, waiting for it if it still runs), the share of the workers' time spent
evaluating, model calls counted by promptops (its `promptops_workers` table) against the requests
the server saw, spend against the cap (and what the server billed from its own token counts),
configurations evaluated twice (must be 0) and trials left RUNNING or WAITING (must be 0); with
the CPU the workers, their PostgreSQL backends and the whole machine used. The kill run kills a
worker other than the coordinator with -9 while it is inside a trial, once half the trials are
done; its trial must end FAIL (stale after 20 s without a heartbeat) and the retry Optuna
queues for it must finish.

    python benchmarks/scale.py [--out benchmarks/scale-results.json] [--latency-s 0.2] [--workers 1 2 4]
    python benchmarks/scale.py --smoke [--out FILE]  # seconds, not figures: 1 then 2 workers, 2 trials, 0.01 s a call, no kill

Exits 1 if a check fails (a trial lost or duplicated, calls or spend that do not add up, the
killed trial not retried).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
EXPERIMENT_NAME = "scale"
STUDY = f"promptops/{EXPERIMENT_NAME}/1"  # each run has its own database, so its study is the first
PRICE_IN, PRICE_OUT = 0.15, 0.60  # USD per million tokens: a small hosted model's price
CAP_USD, CAP_CALLS = 1.0, 5000  # caps that do not bind: reported against the spend
CAREFUL = "Read the whole message carefully"  # the instruction the served model answers best under

EXPERIMENT = """\
# benchmarks/scale.py: a study sized so that its time is spent waiting on the model.
name: {name}
prompt: banking_intent
search:
  models:
    - id: openai/fault-model
      api_base: {base_url}
      price: {{input_per_million_usd: {price_in}, output_per_million_usd: {price_out}}}
  optimizers: {optimizers}
  demos: {demos}
  temperature: {temperature}
  instructions:
    - {careful} and name the one intent it expresses.
    - Name the customer's intent.
    - Which banking intent is this message about?
  train_limit: {train_limit}
  dev_limit: {dev_limit}
budget:
  n_trials: {n_trials}
  max_cost_usd: {cap_usd}
  max_model_calls: {cap_calls}
pruning:
  rungs: {rungs}
  margin: 0.05
seed: 0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--latency-s", type=float, default=0.2, help="the served model's time per call")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="one run per count; speed-up is against the first")
    parser.add_argument("--trials", type=int, default=24, help="budget.n_trials of the study")
    parser.add_argument("--kill-workers", type=int, default=4, help="workers of the kill run; 0 skips it")
    parser.add_argument("--kill-after", type=int, help="kill once this many trials are done (default: half of --trials)")
    # The study's shape (README, "scale.py"): trials whose time goes to sequential calls, as bootstrapping's does.
    parser.add_argument("--optimizers", default="[bootstrap]", help="search.optimizers")
    parser.add_argument("--demos", default="{low: 24, high: 40, step: 4}", help="search.demos")
    parser.add_argument("--train-limit", type=int, default=128, help="search.train_limit")
    parser.add_argument("--dev-limit", type=int, default=16, help="search.dev_limit")
    parser.add_argument("--rungs", default="[8]", help="pruning.rungs")
    # A range, not a list: no configuration is drawn twice, so every run evaluates all its trials (a repeat
    # costs nothing, and how many a run draws depends on how the workers' draws interleave).
    parser.add_argument("--temperature", default="{low: 0.0, high: 0.7}", help="search.temperature")
    parser.add_argument("--keep", action="store_true", help="keep each run's scratch folder (project, MLflow store, logs)")
    parser.add_argument("--smoke", action="store_true", help="1 then 2 workers on 2 small trials, no kill: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.latency_s, args.workers, args.trials, args.kill_workers = 0.01, [1, 2], 2, 0
        args.demos, args.train_limit, args.dev_limit, args.rungs = "{low: 1, high: 2, step: 1}", 8, 4, "[2]"
        args.out = (args.out or Path(tempfile.mkdtemp(prefix="promptops-smoke-")) / "scale.json").resolve()
        if args.out.parent == ROOT / "benchmarks":
            parser.error("--smoke writes no results: give --out a path outside benchmarks/")

    os.environ.update({"OPENAI_API_KEY": "sk-bench-not-a-key", "MLFLOW_DISABLE_TELEMETRY": "true",
                       "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    os.environ.pop("PROMPTOPS_PROJECT", None)
    sys.path.insert(0, str(ROOT))
    space = {"optimizers": args.optimizers, "demos": args.demos, "temperature": args.temperature, "train_limit": args.train_limit,
             "dev_limit": args.dev_limit, "rungs": args.rungs, "n_trials": args.trials}
    figures: dict[str, Any] = {"machine": _machine(), "latency_s": args.latency_s, "search": space, "cap_usd": CAP_USD,
                               "cap_calls": CAP_CALLS, "smoke": args.smoke, "runs": []}
    plan = [(count, False) for count in args.workers] + ([(args.kill_workers, True)] if args.kill_workers else [])
    for count, kill in plan:
        print(f"-- {count} worker(s){', one killed -9 midway' if kill else ''}", flush=True)
        run = _run(count, kill_after=(args.kill_after or args.trials // 2) if kill else None, latency_s=args.latency_s, space=space,
                   keep=args.keep)
        figures["runs"].append(run)
        print(json.dumps({k: v for k, v in run.items() if k not in ("timeline", "workers_seen")}), flush=True)
    first = figures["runs"][0]
    for run in figures["runs"]:
        run["speed_up"] = round(first["wall_s"] / run["wall_s"], 2)
        run["speed_up_search"] = round(first["search_s"] / run["search_s"], 2)
        run["speed_up_calls_per_s"] = round(run["calls_per_s"] / first["calls_per_s"], 2)
    figures["checks_failed"] = [f"{run['label']}: {problem}" for run in figures["runs"] for problem in run["problems"]]
    _print_table(figures)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    if args.smoke:
        print(f"smoke figures: {args.out}")
    if figures["checks_failed"]:
        print("checks failed:\n  " + "\n  ".join(figures["checks_failed"]))
        sys.exit(1)


# --- one run --------------------------------------------------------------------------------


def _run(workers: int, *, kill_after: Optional[int], latency_s: float, space: dict[str, Any], keep: bool) -> dict[str, Any]:
    from promptops.testing import FaultServer

    scratch = Path(tempfile.mkdtemp(prefix="promptops-bench-scale-"))
    database = f"promptops_scale_{uuid.uuid4().hex[:10]}"
    url = f"{POSTGRES}/{database}"
    calls = _CallClock()
    server = FaultServer(answer=_answer(ROOT / "experiments" / "data" / "banking_intent", latency_s, calls))
    _postgres(f"CREATE DATABASE {database}")
    try:
        with server:
            project = _project(scratch, server.base_url, space)
            env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}", "DSPY_CACHEDIR": str(scratch / "dspy-cache")}
            command = [sys.executable, "-m", "promptops", "optimize", EXPERIMENT_NAME, "--storage", url, "--workers", str(workers),
                       "--json", "--no-write"]
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            self_before = resource.getrusage(resource.RUSAGE_SELF)
            machine_before = _machine_cpu()
            started = time.perf_counter()
            with open(scratch / "stdout.json", "w") as out, open(scratch / "stderr.log", "w") as err:
                coordinator = subprocess.Popen(command, cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
                with _CpuSampler(coordinator.pid, database) as sampler:
                    seen, killed = _watch(url, coordinator, started, kill_after)
                    try:
                        coordinator.wait(timeout=1800)
                    except subprocess.TimeoutExpired:
                        coordinator.kill()
                        raise
            wall_s = time.perf_counter() - started
            machine_after = _machine_cpu()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            own = resource.getrusage(resource.RUSAGE_SELF)
            served = server.log
            requests = len(server.requests)
        stderr = (scratch / "stderr.log").read_text(errors="replace")
        stdout = (scratch / "stdout.json").read_text(errors="replace")
        if coordinator.returncode != 0:
            print(f"promptops optimize exited with {coordinator.returncode}:\n{stderr[-3000:]}", file=sys.stderr)
        result = json.loads(stdout) if coordinator.returncode == 0 and stdout.strip() else {}
        run = _measure(url, workers, kill_after is not None, killed, wall_s, result, served, requests, calls, started,
                       space["n_trials"], sampler)
        run["exit_code"] = coordinator.returncode
        run["cpu_s"] = {
            "workers": round((children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime), 1),
            "postgres": round(sampler.total()[1], 1),
            "benchmark_and_server": round((own.ru_utime + own.ru_stime) - (self_before.ru_utime + self_before.ru_stime), 1),
            "machine": round(machine_after[0] - machine_before[0], 1),
        }
        run["machine_busy_share"] = round((machine_after[0] - machine_before[0]) / max(machine_after[1] - machine_before[1], 1e-9), 3)
        if coordinator.returncode != 0:
            run["problems"].append(f"promptops optimize exited with {coordinator.returncode}: {stderr.strip().splitlines()[-1:]}")
        run["worker_failures"] = result.get("worker_failures", [])
        run["workers_seen"] = seen
        if keep:
            run["scratch"] = str(scratch)
        return run
    finally:
        _postgres(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _watch(url: str, coordinator: subprocess.Popen, started: float,
           kill_after: Optional[int]) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
    """Until the command exits, every half second: which worker is on which trial (from promptops_workers).

    With `kill_after`, once that many trials are done, kill -9 a worker other than the coordinator while its trial runs."""
    import sqlalchemy

    seen: dict[str, dict[str, Any]] = {}
    killed: Optional[dict[str, Any]] = None
    engine = sqlalchemy.create_engine(url)
    try:
        while coordinator.poll() is None:
            time.sleep(0.5)
            try:
                with engine.connect() as db:
                    states = dict(db.execute(sqlalchemy.text(
                        "SELECT t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = :n"),
                        {"n": STUDY}).all())
                    workers = db.execute(sqlalchemy.text(
                        "SELECT worker, trial, stage FROM promptops_workers WHERE study = :n"), {"n": STUDY}).all()
            except sqlalchemy.exc.SQLAlchemyError:  # the tables are not there yet
                continue
            now = round(time.perf_counter() - started, 1)
            for worker, trial, stage in workers:
                entry = seen.setdefault(worker, {"first_seen_s": now, "first_evaluation_s": None, "trials": []})
                if trial is not None and str(states.get(trial, "")).endswith("RUNNING"):  # shown once it compiles: not a repeat
                    entry["first_evaluation_s"] = entry["first_evaluation_s"] or now
                    if trial not in entry["trials"]:
                        entry["trials"].append(trial)
            done = sum(str(state).endswith(("COMPLETE", "PRUNED")) for state in states.values())
            if kill_after is None or killed is not None or done < kill_after:
                continue
            for worker, trial, stage in workers:
                pid = int(worker.rsplit(":", 1)[1])
                if pid != coordinator.pid and trial is not None and str(states.get(trial, "")).endswith("RUNNING") \
                        and (stage or "").startswith(("compiling", "scoring")):
                    os.kill(pid, signal.SIGKILL)
                    killed = {"worker": worker, "pid": pid, "trial": trial, "stage": stage, "trials_done": done, "at_s": now,
                              "at_epoch": time.time()}
                    break
        return seen, killed
    finally:
        engine.dispose()


def _measure(url: str, workers: int, kill: bool, killed: Optional[dict[str, Any]], wall_s: float, result: dict[str, Any],
             served: list, requests: int, calls: "_CallClock", started: float, n_trials: int,
             sampler: "_CpuSampler") -> dict[str, Any]:
    import optuna
    import sqlalchemy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as db:
        rows = db.execute(sqlalchemy.text("SELECT worker, model_calls, spent_usd FROM promptops_workers WHERE study = :n"),
                          {"n": STUDY}).all()
    engine.dispose()
    states = [t.state.name for t in trials]
    counted_calls = sum(int(row[1]) for row in rows)
    counted_usd = sum(float(row[2]) for row in rows)
    billed_usd = sum(entry.prompt_tokens * PRICE_IN + entry.completion_tokens * PRICE_OUT for entry in served) / 1e6
    evaluated = [tuple(sorted(t.params.items())) for t in trials
                 if t.state.name in ("COMPLETE", "PRUNED") and "repeat_of" not in t.user_attrs]
    duplicates = len(evaluated) - len(set(evaluated))
    lost = [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    finished = states.count("COMPLETE") + states.count("PRUNED")
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    by_number = {t.number: t for t in trials}
    repeats = [t for t in trials if "repeat_of" in t.user_attrs]
    waited_s = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in repeats if t.datetime_start and t.datetime_complete)
    # A repeat drawn while the trial it repeats was still running: two workers drew the same point at about the same time.
    drawn_together = sum(1 for t in repeats if t.datetime_start and by_number[t.user_attrs["repeat_of"]].datetime_complete
                         and t.datetime_start < by_number[t.user_attrs["repeat_of"]].datetime_complete)
    evaluating_s = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                       if "repeat_of" not in t.user_attrs and t.datetime_start and t.datetime_complete)
    durations = sorted((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                       if t.datetime_start and t.datetime_complete and "repeat_of" not in t.user_attrs)
    search_cpu = sampler.between(min(starts).timestamp(), max(ends).timestamp()) if starts and ends else (0.0, 0.0, 0.0)
    search_s = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    problems = []
    if duplicates:
        problems.append(f"{duplicates} configuration(s) evaluated twice")
    if lost:
        problems.append(f"trials left RUNNING or WAITING: {lost}")
    if finished < n_trials:
        problems.append(f"only {finished} trials finished")
    in_flight = 8 if kill else 0  # the killed worker's eval threads may have had calls out that it never counted
    if not counted_calls <= requests <= counted_calls + in_flight:
        problems.append(f"the server saw {requests} requests, promptops counted {counted_calls}")
    if counted_usd > CAP_USD:
        problems.append(f"spent ${counted_usd:.6f}, over the cap ${CAP_USD}")
    if not kill and abs(billed_usd - counted_usd) > 1e-6:
        problems.append(f"promptops counted ${counted_usd:.6f}, the server billed ${billed_usd:.6f}")
    run: dict[str, Any] = {
        "label": f"{workers} worker{'s' if workers > 1 else ''}" + (", one killed -9" if kill else ""),
        "workers": workers,
        "killed_run": kill,
        "wall_s": round(wall_s, 1),
        "search_s": round(search_s, 1),
        "search_cpu_cores": {"workers": round(search_cpu[0] / max(search_s, 1e-9), 2),
                             "postgres": round(search_cpu[1] / max(search_s, 1e-9), 2),
                             "machine": round(search_cpu[2] / max(search_s, 1e-9), 2)},
        "trials_per_min": round(60 * finished / wall_s, 2),
        "calls_per_s": round(counted_calls / wall_s, 2),
        "trials": {"COMPLETE": states.count("COMPLETE"), "PRUNED": states.count("PRUNED"), "FAIL": states.count("FAIL"),
                   "repeats": sum("repeat_of" in t.user_attrs for t in trials), "total": len(trials)},
        "configurations_evaluated": len(evaluated),
        "evaluated_per_min": round(60 * len(evaluated) / wall_s, 2),
        "repeats_drawn_while_first_ran": drawn_together,
        "repeat_wait_worker_s": round(waited_s, 1),
        "worker_time_evaluating_share": round(evaluating_s / max(workers * search_s, 1e-9), 2),
        "worker_time_waiting_on_repeats_share": round(waited_s / max(workers * search_s, 1e-9), 2),
        "trial_s_median": round(durations[len(durations) // 2], 2) if durations else None,
        "model_calls_counted": counted_calls,
        "server_requests": requests,
        "spent_usd": round(counted_usd, 6),
        "billed_usd_by_server": round(billed_usd, 6),
        "cap_usd": CAP_USD,
        "cap_calls": CAP_CALLS,
        "duplicates": duplicates,
        "lost": len(lost),
        "model_in_flight_share": round(calls.busy_s(started) / wall_s, 3),
        "calls_in_flight_mean": round(calls.call_s() / wall_s, 2),
        "stopped_by": result.get("stopped_by"),
        "problems": problems,
        "timeline": [{"trial": t.number, "state": t.state.name, "calls": t.user_attrs.get("model_calls", 0),
                      "compile_calls": t.user_attrs.get("compile_model_calls", 0), "params": t.params,
                      "start_s": round((t.datetime_start - min(starts)).total_seconds(), 2) if t.datetime_start else None,
                      "duration_s": round((t.datetime_complete - t.datetime_start).total_seconds(), 2)
                      if t.datetime_start and t.datetime_complete else None,
                      "repeat_of": t.user_attrs.get("repeat_of"), "retry_of": t.system_attrs.get("failed_trial")}
                     for t in trials],
    }
    if kill:
        run["killed"] = killed
        if killed is None:
            problems.append("no worker was seen inside a trial to kill")
        else:
            victim = next(t for t in trials if t.number == killed["trial"])
            retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed["trial"]]
            killed["trial_state"] = victim.state.name
            killed["failed_s_after_kill"] = round(victim.datetime_complete.timestamp() - killed.pop("at_epoch"), 1) \
                if victim.datetime_complete else None
            killed["retry_trial"] = retries[0].number if retries else None
            killed["retry_state"] = retries[0].state.name if retries else None
            if victim.state.name != "FAIL":
                problems.append(f"the killed worker's trial {victim.number} is {victim.state.name}, not FAIL")
            if len(retries) != 1 or retries[0].state.name not in ("COMPLETE", "PRUNED"):
                problems.append(f"the killed trial's retry did not finish: {[(t.number, t.state.name) for t in retries]}")
            if killed["worker"] not in [row[0] for row in rows]:
                problems.append("the killed worker has no row in promptops_workers")
    return run


# --- measuring ------------------------------------------------------------------------------


class _CpuSampler:
    """Every half second: the CPU seconds used so far by the coordinator and its worker processes, and by the machine."""

    def __init__(self, root_pid: int, database: str):
        self.root_pid = root_pid
        self.database = database
        self.samples: list[tuple[float, float, float, float]] = []  # (epoch, workers' CPU s, their PostgreSQL backends', machine busy)
        self._seen: dict[int, float] = {}  # CPU of each process last seen, so a worker that exits still counts
        self._backends: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "_CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        while not self._stop.is_set():
            parents: dict[int, int] = {}
            cpu: dict[int, float] = {}
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                parents[int(entry.name)] = int(fields[1])
                cpu[int(entry.name)] = (float(fields[11]) + float(fields[12])) / ticks
            tree = {self.root_pid}
            for _ in range(3):  # the coordinator, its workers, anything they start
                tree |= {pid for pid, parent in parents.items() if parent in tree}
            for pid in tree:
                if pid in cpu:
                    self._seen[pid] = cpu[pid]
            for pid in cpu:
                if pid in self._backends or self._is_backend(pid):
                    self._backends[pid] = cpu[pid]
            self.samples.append((time.time(), sum(self._seen.values()), sum(self._backends.values()), _machine_cpu()[0]))
            self._stop.wait(0.5)

    def _is_backend(self, pid: int) -> bool:
        """A PostgreSQL backend serving this run's database (its title names the database)."""
        try:
            return f" {self.database} ".encode() in (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return False

    def between(self, start_epoch: float, end_epoch: float) -> tuple[float, float, float]:
        """(workers', PostgreSQL's, machine busy) CPU s from the sample at or before start to the one at or after end."""
        before = max((s for s in self.samples if s[0] <= start_epoch), default=self.samples[0])
        after = min((s for s in self.samples if s[0] >= end_epoch), default=self.samples[-1])
        return after[1] - before[1], after[2] - before[2], after[3] - before[3]

    def total(self) -> tuple[float, float, float]:
        return self.between(self.samples[0][0], self.samples[-1][0])


class _CallClock:
    """When each call arrived and left the served model: how much of a run a call was in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: list[tuple[float, float]] = []

    def add(self, start: float, end: float) -> None:
        with self._lock:
            self.spans.append((start, end))

    def call_s(self) -> float:
        return sum(end - start for start, end in self.spans)

    def busy_s(self, since: float) -> float:
        """Seconds during which at least one call was in flight."""
        busy, reach = 0.0, since
        for start, end in sorted(self.spans):
            if end > reach:
                busy += end - max(start, reach)
                reach = end
        return busy


# --- the served model -----------------------------------------------------------------------


def _answer(data: Path, latency_s: float, clock: _CallClock):
    """A model that takes `latency_s` per call. On dev and test rows it is right on 90% of messages under the careful
    instruction and on 40% otherwise, so the search has something to find; on train rows on 40% whatever the prompt,
    so a trial's bootstrapping costs about the same number of calls in every run (it depends on the demo count only).
    Which rows it gets right is fixed by the message."""
    from promptops.testing import last_user_message

    labels, train = {}, set()
    for split in ("train", "dev", "test"):
        for line in (data / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            labels[row["text"]] = row["intent"]
            if split == "train":
                train.add(row["text"])

    def answer(body: dict) -> dict:
        start = time.perf_counter()
        time.sleep(latency_s)
        text = last_user_message(body, "text")
        careful = text not in train and CAREFUL in json.dumps(body)
        right = zlib.crc32(text.encode()) % 10 < (9 if careful else 4)
        intent = labels.get(text, "card_arrival")
        clock.add(start, time.perf_counter())
        return {"intent": intent if right else ("exchange_rate" if intent == "card_arrival" else "card_arrival")}

    return answer


# --- set-up ---------------------------------------------------------------------------------


def _project(scratch: Path, base_url: str, space: dict[str, Any]) -> Path:
    """The example project as a git repository, its router served by the FaultServer, and the experiment `scale`."""
    import git

    project = scratch / "project"
    for folder in ("prompts", "tools", "judges"):
        shutil.copytree(ROOT / folder, project / folder, ignore=shutil.ignore_patterns("channels", "__pycache__"))
    shutil.copytree(ROOT / "experiments" / "data", project / "experiments" / "data")
    path = project / "prompts" / "banking_intent.yaml"
    path.write_text(path.read_text().replace(
        "  id: local/smollm2-135m\n",
        f"  id: openai/fault-model\n  api_base: {base_url}\n"
        f"  price: {{input_per_million_usd: {PRICE_IN}, output_per_million_usd: {PRICE_OUT}}}\n"))
    (project / "experiments" / f"{EXPERIMENT_NAME}.yaml").write_text(EXPERIMENT.format(
        name=EXPERIMENT_NAME, base_url=base_url, price_in=PRICE_IN, price_out=PRICE_OUT, careful=CAREFUL, cap_usd=CAP_USD,
        cap_calls=CAP_CALLS, **space))
    repo = git.Repo.init(project)
    repo.git.add("--all")
    repo.git.commit("-q", "-m", "benchmark copy", env={"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                                                        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"})
    return project


def _postgres(statement: str) -> None:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5,
                         autocommit=True) as connection:
        connection.execute(statement)


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores, from /proc/stat."""
    fields = [float(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    total = sum(fields[:8])
    idle = fields[3] + fields[4]
    return (total - idle) / ticks, total / ticks


def _machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import dspy
    import mlflow
    import optuna

    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "dspy": dspy.__version__, "optuna": optuna.__version__, "mlflow": mlflow.__version__,
            "load_average_before": os.getloadavg()}


def _print_table(figures: dict[str, Any]) -> None:
    header = ("run", "wall s", "speed-up", "search s", "trials/min", "C/P/F", "evaluated (repeats)", "calls/s",
              "calls counted/server", "spend / cap", "dup", "lost", "evaluating", "CPU cores")
    rows = [(run["label"], f"{run['wall_s']:.1f}", f"{run['speed_up']:.2f}x", f"{run['search_s']:.1f}", f"{run['trials_per_min']:.1f}",
             "/".join(str(run["trials"][k]) for k in ("COMPLETE", "PRUNED", "FAIL")),
             f"{run['configurations_evaluated']} ({run['trials']['repeats']})", f"{run['calls_per_s']:.1f}",
             f"{run['model_calls_counted']}/{run['server_requests']}", f"${run['spent_usd']:.4f} / ${run['cap_usd']:g}",
             str(run["duplicates"]), str(run["lost"]), f"{run['worker_time_evaluating_share']:.0%}",
             f"{run['search_cpu_cores']['machine']:.2f}")
            for run in figures["runs"]]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    print(f"\nlatency {figures['latency_s']} s per call; {figures['machine']['cpu']}, {figures['machine']['cores']} cores."
          " evaluating: the share of the workers' search time spent in trials that were not repeats;"
          " CPU cores: the machine's, during the search")
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
    for run in figures["runs"]:
        if run.get("killed"):
            k = run["killed"]
            print(f"killed {k['worker']} at {k['at_s']} s in trial {k['trial']} ({k['stage']}): {k['trial_state']}"
                  f" {k['failed_s_after_kill']} s after the kill, retried as trial {k['retry_trial']}: {k['retry_state']}")


if __name__ == "__main__":
    main()
