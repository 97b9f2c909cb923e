"""`optimize`: load the experiment, run the study, compare the winner on test, write it as a version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from promptops.optimizer._study import ProgressCallback, StudyOutcome
from promptops.optimizer._winner import AdoptedWinner, TestComparison

@dataclass(frozen=True)
class OptimizationResult:
    study: StudyOutcome
    test: Optional[TestComparison]
    adopted: Optional[AdoptedWinner]


def optimize(
    experiment: str | Path,
    *,
    n_trials: Optional[int] = None,
    storage: Optional[str] = None,
    resume: bool = False,
    join: bool = False,
    workers: int = 1,
    write_winner: bool = True,
    write_anyway: bool = False,
    on_progress: Optional[ProgressCallback] = None,
) -> OptimizationResult:
    """Search, pick the winner from the front, judge it against the reference on test with the gate, and
    commit it as the `candidate` version if it passes (or with `write_anyway`, regardless).

    `workers` > 1 starts that many worker processes in all (this one included) on one study; `join`
    adds this process as a worker to the experiment's running study, from any machine that reaches
    the storage. One worker concludes the study; the others return with `study.concluded_by`.
    """
    from promptops.versioning import require_committed_data
    from promptops.errors import PromptopsError
    from promptops.optimizer import _winner as winner
    from promptops.optimizer import _study as study
    from promptops.optimizer import _runs as runs
    from promptops.versioning import has_uncommitted_changes

    if write_anyway and not write_winner:
        raise PromptopsError("write_anyway=True commits the winner even if it fails the gate, write_winner=False commits"
                             " nothing: set one of them")
    if workers < 1:
        raise PromptopsError(f"--workers {workers}: give 1 or more")
    if (workers > 1 or join) and (storage is None or storage.startswith("sqlite")):
        # Optuna never recommends SQLite for parallel optimization: its one write lock serializes every worker, and
        # a queued trial (the baseline, a dead worker's retried one) can be taken by two of them.
        flag = f"--workers {workers}" if workers > 1 else "--join"
        where_ = f"--storage {storage}" if storage else "the default storage (sqlite:///optuna.db)"
        raise PromptopsError(f"{flag} needs a database server as --storage, e.g. postgresql://host/db: several processes on"
                             f" {where_} would race for SQLite's one write lock and can run a queued trial twice")
    context = study.load_context(experiment)
    if write_winner and _in_git(context.prompt_file) and has_uncommitted_changes(context.prompt_file):
        raise PromptopsError(
            f"{context.prompt_file.name} has uncommitted changes: commit them first, the winner is written as the next version on top"
        )
    if write_winner and _in_git(context.prompt_file):
        require_committed_data(context.base, context.data, "test")  # before any model call
    runs.check_store(context.root)  # before the study opens and workers start: every trial is logged there
    helpers = _Workers(context.experiment_path, n_trials, write_winner, write_anyway) if workers > 1 else None
    try:
        outcome, budget = study.run_study(
            context, n_trials=n_trials, storage=storage, resume=resume, join=join, on_progress=on_progress,
            on_session=(lambda name, url: helpers.start(workers - 1, url, context.root, name)) if helpers else None)
    except BaseException:
        if helpers:
            helpers.stop()
        raise
    if helpers:
        import dataclasses

        outcome = dataclasses.replace(outcome, worker_failures=tuple(helpers.wait()))
    if outcome.concluded_by is not None:  # another worker scores the front on test and writes the winner
        _close(budget)
        return OptimizationResult(outcome, None, None)
    test = adopted = None
    status = "FINISHED"
    try:
        if outcome.winner_prompt is not None:
            if on_progress:
                counts = [t.state for t in outcome.trials]
                on_progress(study.Progress(outcome.study, n_trials or context.experiment.budget.n_trials, counts.count("COMPLETE"),
                                           counts.count("PRUNED"), counts.count("FAIL"), stage="scoring the winner and the reference on test",
                                           spent_usd=budget.spent_usd, model_calls=budget.model_calls))
            test = winner.compare_on_test(outcome.winner_prompt, context.base, context.prompt_file, data=context.data,
                                          metric=context.metric, budget=budget)
            runs.log_test(outcome.parent_run_id, test)
            unchanged = outcome.winner_prompt.content_hash == context.base.content_hash
            if write_winner and not (test.passed or write_anyway or unchanged):
                adopted = winner.rejected(test)
                runs.tag_winner(outcome.parent_run_id, None, None)
            elif write_winner:
                metrics = {"candidate": {context.metric_key: outcome.winner.values[context.metric_key], "split": "dev",
                                         "test": test.winner_score, "test_reference": test.reference_score}}
                adopted = winner.adopt(outcome.winner_prompt, context.base, context.prompt_file, study=outcome.study,
                                       trial=outcome.winner.number, run_id=outcome.winner.run_id or outcome.parent_run_id,
                                       metrics=metrics, gate=test.verdict.summary() if test.verdict else None)
                runs.tag_winner(outcome.parent_run_id, adopted.version, adopted.commit)
    except BaseException:
        status = "FAILED"
        raise
    finally:
        runs.finish_study_run(outcome.parent_run_id, status)
        _close(budget)
    return OptimizationResult(outcome, test, adopted)


class _Workers:
    """The other worker processes of `--workers N`: `promptops optimize EXPERIMENT --storage URL --join`, here."""

    def __init__(self, experiment_path: Path, n_trials: Optional[int], write_winner: bool, write_anyway: bool):
        self.experiment_path = experiment_path
        self.options = (["--n-trials", str(n_trials)] if n_trials else []) + ([] if write_winner else ["--no-write"]) \
            + (["--write-anyway"] if write_anyway else [])
        self.processes: list = []
        self.logs: list = []

    def start(self, count: int, storage: str, root: Path, study_name: str) -> None:
        import os
        import subprocess
        import sys
        import tempfile

        from promptops.optimizer._study import SPAWNED_FOR

        for _ in range(count):
            log = tempfile.NamedTemporaryFile(prefix="promptops-worker-", suffix=".log", delete=False)
            command = [sys.executable, "-m", "promptops", "optimize", str(self.experiment_path), "--storage", storage, "--join",
                       "--json", *self.options]
            self.processes.append(subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                   stderr=log, env={**os.environ, SPAWNED_FOR: study_name}))
            self.logs.append(log)

    def wait(self) -> list[str]:
        """Wait for every worker; one that failed is named with the last line it wrote (its trial was retried)."""
        import os

        failed = []
        for process, log in zip(self.processes, self.logs):
            if process.wait() != 0:
                log.seek(0)
                lines = [line for line in log.read().decode("utf-8", "replace").splitlines() if line.strip()]
                failed.append(f"worker pid {process.pid} exited with {process.returncode}: {lines[-1] if lines else 'no output'}")
            log.close()
            os.unlink(log.name)
        return failed

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except Exception:
                process.kill()


def _close(budget: object) -> None:
    """The study's connections to its storage (a shared budget's)."""
    shared = getattr(budget, "shared", None)
    if shared is not None:
        shared.close()


def _in_git(path: Path) -> bool:
    from promptops.errors import PromptopsError
    from promptops.versioning import open_repo

    try:
        open_repo(path)
    except PromptopsError:
        return False
    return True
