"""The search: an Optuna study whose trials compile, score and price prompt variants.

Each trial samples a configuration, compiles a candidate with a DSPy optimizer on train,
and scores it on dev in rungs: a small slice first, the whole of dev only if no other trial
clearly dominates it there. Finished trials are stored by Optuna (sqlite by default), so an
interrupted study resumes where it stopped; model answers are cached by DSPy, so a trial
redone after a crash costs nothing twice. One budget covers every model call of the study.

Sampler: TPE (Optuna's multi-objective TPE) by default, seeded; a first trial always runs the
prompt as it is, so the front can be read against the baseline. NSGA-II needs populations of
dozens of trials before it adapts and suits long runs; `random` is the reference.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from promptops.artifact import (
    Prompt, errors_placed_in, find_project_root, load_prompt_file, place_in_file, resolve_prompt_path, written_values,
)
from promptops.models import Budget, BudgetExhausted, spending_limit
from promptops.evaluation import load_dataset
from promptops.errors import PromptopsError, TrackingError, UnknownPromptError
from promptops.evaluation import resolve_metric
from promptops.optimizer._candidates import TrialConfig, compile_candidate, configured_prompt, example_metric
from promptops.optimizer._experiment import Experiment, load_experiment
from promptops.optimizer._front import RUNGS_ATTR, FrontPoint, RungPruner, RungResult, pareto_front, pick_winner

STUDY_PREFIX = "promptops"
# Set by `--workers N` for the worker processes it starts: the study they were started for.
SPAWNED_FOR = "PROMPTOPS_WORKER_FOR_STUDY"


class StudyEndedError(PromptopsError):
    """A worker started by `--workers` found its study already concluded (a small study the others finished): not a failure."""

    exit_code = 0
# Repeats are free and do not count against n_trials; a space with fewer configurations than n_trials would draw
# repeats for ever, so the study stops after this many (or n_trials, if more).
MIN_REPEATS_BEFORE_STOP = 5
PARENT_RUN_WAIT_S = 60.0  # how long a joining worker waits for the study's MLflow parent run to be opened


@dataclass
class Progress:
    """What the live view shows; updated as trials start and finish."""

    study: str
    n_trials: int
    finished: int = 0
    pruned: int = 0
    failed: int = 0
    trial: Optional[int] = None
    stage: str = ""
    best: dict[str, float] = field(default_factory=dict)
    spent_usd: float = 0.0
    model_calls: int = 0
    max_cost_usd: Optional[float] = None
    max_model_calls: Optional[int] = None
    last: str = ""
    workers: list[str] = field(default_factory=list)  # with several workers: one line each (trial, stage, calls)


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class TrialSummary:
    number: int
    state: str
    params: dict[str, Any]
    values: dict[str, float]
    dev_n: int
    model_calls: int
    spent_usd: float
    run_id: Optional[str]
    baseline: bool = False  # the prompt file as committed
    repeat_of: Optional[int] = None  # a configuration drawn again, answered by that trial's result
    stopped_by: Optional[str] = None  # why a failed trial failed


def trial_summary(trial: Any, names: list[str]) -> TrialSummary:
    """An Optuna trial as promptops reports it: `values` by objective name, the dev rows of its last rung, its spend."""
    attrs = trial.user_attrs
    return TrialSummary(
        trial.number, trial.state.name, dict(trial.params), dict(zip(names, trial.values)) if trial.values else {},
        (attrs.get(RUNGS_ATTR) or [{}])[-1].get("n", 0), attrs.get("model_calls", 0), attrs.get("spent_usd", 0.0),
        attrs.get("mlflow_run_id"), bool(attrs.get("baseline")), attrs.get("repeat_of"), attrs.get("stopped_by"))


@dataclass(frozen=True)
class StudyOutcome:
    """What the search found: every trial, the front, the winner and why it stopped."""

    experiment: str
    study: str
    storage: str
    parent_run_id: str
    objectives: dict[str, str]
    trials: tuple[TrialSummary, ...]
    front: tuple[FrontPoint, ...]
    winner: Optional[FrontPoint]
    winner_prompt: Optional[Prompt]
    baseline_trial: Optional[int]
    stopped_by: Optional[str]
    spent_usd: float
    model_calls: int
    wall_time_s: float
    worker: str = ""  # this process, host:pid
    concluded_by: Optional[str] = None  # another worker that concludes the study (scores the front, writes the winner)
    worker_failures: tuple[str, ...] = ()  # --workers: the worker processes that exited with an error, and why


class StudyContext:
    """Everything a trial needs, loaded and checked once before any model call."""

    def __init__(self, experiment: Experiment, experiment_path: Path, root: Path):
        # A model, metric or eval set that does not resolve is reported at the line that names it: the experiment
        # file's, or the prompt file's where the experiment does not set it.
        try:
            self.prompt_file = resolve_prompt_path(experiment.prompt, root)
        except UnknownPromptError as exc:
            raise exc.placed(place_in_file(experiment_path, ("prompt",))) from None
        self.base = load_prompt_file(self.prompt_file)
        written = {("data",): experiment.data, ("metric",): experiment.metric if isinstance(experiment.metric, str) else None}
        for index, model in enumerate(experiment.search.models):
            written[("search", "models", index, "id")] = model.id
            written.update({("search", "models", index, "params", key): key for key in model.params})
        if experiment.search.reflection_model is not None:
            written[("search", "reflection_model", "id")] = experiment.search.reflection_model.id
            written.update({("search", "reflection_model", "params", key): key for key in experiment.search.reflection_model.params})
        in_prompt = written_values(self.base, model=False, metric=experiment.metric is None, data=experiment.data is None)
        with errors_placed_in(experiment_path, written), errors_placed_in(self.prompt_file, in_prompt):
            self._load(experiment, experiment_path, root)

    def _load(self, experiment: Experiment, experiment_path: Path, root: Path) -> None:
        from promptops.models import check_model_id, check_model_params

        self.experiment = experiment
        self.experiment_path = experiment_path
        self.root = root
        self.metric = resolve_metric(experiment.metric, self.base, root)  # the experiment's, else the prompt's
        self.metric_key = self.metric.key
        if self.metric.judge is not None:  # judging is spent from the study's budget: its model must be here too
            check_model_id(self.metric.judge.model_id)
            _check_available(self.metric.judge.model_id)
        self.objectives = dict(experiment.objectives) or {self.metric_key: "maximize", "cost_usd": "minimize"}
        first = list(self.objectives)[0]
        if first != self.metric_key:
            raise PromptopsError(f"{place_in_file(experiment_path, ('objectives', first))}: the first objective is {first!r} but"
                                 f" the metric is {self.metric.name!r}; make them the same")
        _check_agent_search(experiment, experiment_path, self.base)
        for model in experiment.search.models:
            check_model_id(model.id)
            check_model_params(model)
            _check_available(model.id)
        data = experiment.data or None
        self.train = load_dataset(self.base, data, "train").head(experiment.search.train_limit)
        _check_demos_fit(experiment, experiment_path, self.train)
        if experiment.search.reflection_model is not None:
            check_model_id(experiment.search.reflection_model.id)
            check_model_params(experiment.search.reflection_model)
            _check_available(experiment.search.reflection_model.id)
        self.dev = load_dataset(self.base, data, "dev").head(experiment.search.dev_limit)
        self.data = data
        self.score = example_metric(self.base, self.metric)
        self.instructions = [self.base.instructions, *[t for t in experiment.search.instructions if t.strip() != self.base.instructions.strip()]]
        self.rungs = [r for r in experiment.pruning.rungs if r < len(self.dev)] + [len(self.dev)]

    @property
    def objective_names(self) -> list[str]:
        return list(self.objectives)


def load_context(experiment: str | Path) -> StudyContext:
    """Read and check the experiment, its prompt, data and models: every mistake surfaces before a call is made."""
    root = find_project_root()
    spec, path = load_experiment(experiment, root)
    return StudyContext(spec, path, root)


def run_study(
    context: StudyContext,
    *,
    n_trials: Optional[int] = None,
    storage: Optional[str] = None,
    resume: bool = False,
    join: bool = False,
    on_progress: Optional[ProgressCallback] = None,
    on_session: Optional[Callable[[str, str], None]] = None,
) -> tuple[StudyOutcome, Any]:
    """Run (or resume, or join) the search until n_trials are complete or pruned, or a budget cap stops it.

    Any number of workers (processes, on any machine) can run one study: Optuna's storage hands
    out the trials and, by heartbeats, fails and retries the trial of a worker that died; the
    budget is the study's (`promptops.optimizer._shared`). When the study ends, one worker
    concludes it: waits for the others' last trials, picks the winner and returns it; the others
    return with `concluded_by` naming that worker. `on_session(study_name, storage)` is called once the
    study is open (and this process coordinates it): `--workers` starts the other workers there.
    Returns what was found and the budget, whose remainder the test comparison spends.
    """
    import optuna

    from promptops.optimizer import _runs as runs
    from promptops.optimizer._shared import Heartbeat, SharedBudget, SharedStudy

    spec = context.experiment
    storage = storage or f"sqlite:///{context.root / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open_study(context, storage, resume, join)
    n_trials = n_trials or spec.budget.n_trials
    previous = study.get_trials(deepcopy=False)
    shared = SharedStudy(storage, study.study_name)
    concluded = shared.settings().get("concluded_by") if join else None
    if concluded:
        shared.close()
        if os.environ.get(SPAWNED_FOR) == study.study_name:  # started by --workers, after the others did every trial
            raise StudyEndedError(f"study {study.study_name} has ended (worker {concluded} concluded it): nothing left to do")
        raise PromptopsError(f"study {study.study_name} has ended (worker {concluded} concluded it): nothing to join;"
                             " run without --join to start a new study, or --resume to extend it")
    shared.start(max_cost_usd=spec.budget.max_cost_usd, max_model_calls=spec.budget.max_model_calls, timeout_s=spec.budget.timeout_s,
                 carried_calls=sum(t.user_attrs.get("model_calls", 0) for t in previous),
                 carried_usd=sum(t.user_attrs.get("spent_usd", 0.0) for t in previous), new_session=not join,
                 coordinator=on_session is not None)
    budget = SharedBudget(shared)
    if on_session is not None:  # the other workers start (Python, imports) while this one opens the MLflow run
        on_session(study.study_name, storage)
    parent_run_id = study.user_attrs.get("mlflow_run_id")
    if join and parent_run_id is None:
        parent_run_id = _await_parent_run(study)
    if not join or parent_run_id is None:
        parent_run_id = runs.start_study_run(context.base.name, study.study_name, _study_params(context, storage, n_trials),
                                             parent_run_id)
        study.set_user_attr("mlflow_run_id", parent_run_id)
    progress = Progress(study.study_name, n_trials, max_cost_usd=budget.max_cost_usd, max_model_calls=budget.max_model_calls)
    started = time.perf_counter()
    stopped_by: Optional[str] = None
    concluded_by: Optional[str] = None
    try:
        with spending_limit(budget), Heartbeat(shared) as heartbeat:
            while True:
                _refresh(progress, study, context, budget)
                if on_progress:
                    on_progress(progress)
                optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, and queued again by Optuna's retry
                done, running = _count(study, "COMPLETE", "PRUNED", repeats=False), _count(study, "RUNNING")
                if done >= n_trials:
                    break
                repeated = _count(study, "COMPLETE", "PRUNED") - done
                if repeated >= max(n_trials, MIN_REPEATS_BEFORE_STOP):  # the sampler keeps drawing points it has tried
                    stopped_by = (f"the search space ran out of new configurations: {repeated} draws repeated earlier trials"
                                  f" after {done} distinct ones")
                    break
                if done + running >= n_trials:  # the last trials are other workers': wait for them (or for them to go stale)
                    heartbeat.show(None, "waiting for the other workers' last trials")
                    _load_conclusion_modules()
                    time.sleep(1.0)
                    continue
                try:
                    _run_trial(study, context, parent_run_id, budget, progress, on_progress, heartbeat,
                               claim=lambda: _claim_trial(study, shared, n_trials))
                except BudgetExhausted as exc:
                    stopped_by = str(exc)
                    break
            concluded_by = shared.claim_conclusion()
            if concluded_by is None:
                heartbeat.show(None, "concluding the study")
                _wait_for_running(study, progress, context, budget, on_progress)
                # A dead worker's trial, queued again by Optuna's retry after the others had stopped: it is redone
                # here, so a killed worker loses no configuration.
                while stopped_by is None and _count(study, "WAITING"):
                    try:
                        _run_trial(study, context, parent_run_id, budget, progress, on_progress, heartbeat)
                    except BudgetExhausted as exc:
                        stopped_by = str(exc)
                    _wait_for_running(study, progress, context, budget, on_progress)
    except BaseException as exc:
        try:
            others = any(w.alive and w.worker != shared.worker for w in shared.workers())
        except Exception:  # the storage is what failed: the original error says more
            others = False
        if not others:
            try:
                runs.finish_study_run(parent_run_id, "KILLED")  # the last worker standing; others would carry on
            except TrackingError:
                if not isinstance(exc, TrackingError):
                    raise
        shared.close()
        if isinstance(exc, TrackingError):  # MLflow failed, not the study: what the trials found is in Optuna's storage
            raise TrackingError(f"{exc}; the study {study.study_name} keeps every finished trial ({_display_storage(storage)}):"
                                f" once the store takes writes again, continue it with promptops optimize {spec.name} --resume") from None
        raise
    wall_time_s = time.perf_counter() - started
    if concluded_by is not None:
        total_calls, total_usd = shared.totals()
        return StudyOutcome(
            experiment=spec.name, study=study.study_name, storage=_display_storage(storage), parent_run_id=parent_run_id,
            objectives=context.objectives, trials=(), front=(), winner=None, winner_prompt=None, baseline_trial=None,
            stopped_by=stopped_by, spent_usd=total_usd, model_calls=total_calls, wall_time_s=round(wall_time_s, 1),
            worker=shared.worker, concluded_by=concluded_by), budget
    outcome = _conclude(study, context, storage, parent_run_id, stopped_by, budget, wall_time_s)
    return dataclasses.replace(outcome, worker=shared.worker), budget


# --- the study ------------------------------------------------------------------------


def _load_conclusion_modules() -> None:
    """What concluding imports (scipy.stats for the test comparison, matplotlib for the front's plot: about 2 s),
    loaded while this worker waits for the others' last trials rather than after them. Idempotent."""
    import scipy.stats  # noqa: F401

    from promptops.optimizer._front import load_plotting

    load_plotting()


def _await_parent_run(study: Any, timeout_s: float = PARENT_RUN_WAIT_S) -> Optional[str]:
    """The study's MLflow parent run, for a worker that joined before the study's first worker had opened it
    (that takes a few seconds, importing MLflow): waited for, so the study keeps one parent run. None if it
    does not appear within `timeout_s` (its first worker died before opening it): the joiner opens it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.25)
        parent_run_id = study.user_attrs.get("mlflow_run_id")
        if parent_run_id is not None:
            return parent_run_id
    return None


def _open_study(context: StudyContext, storage_url: str, resume: bool, join: bool = False) -> Any:
    """A new study `promptops/NAME/K`, or with `resume` or `join` the latest one of this experiment."""
    import optuna

    name = context.experiment.name
    try:
        storage = _storage(storage_url)
        existing = [s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
                    if s.study_name.startswith(f"{STUDY_PREFIX}/{name}/")]
    except Exception as exc:
        raise PromptopsError(f"cannot open the Optuna storage {_display_storage(storage_url)}: {str(exc).splitlines()[0]}") from None
    existing.sort(key=lambda s: int(s.study_name.rsplit("/", 1)[1]))
    directions = list(context.objectives.values())
    # A joining worker draws from its own seed: with the study's, every worker would draw the same configurations.
    sampler = _sampler(context.experiment, seed=(context.experiment.seed + os.getpid()) % 2**31 if join else None)
    pruner = RungPruner(margin=context.experiment.pruning.margin)
    if resume or join:
        flag = "--join" if join else "--resume"
        if not existing:
            raise PromptopsError(f"no study of experiment {name!r} in {_display_storage(storage_url)} to {flag.strip('-')};"
                                 f" run without {flag} to start one")
        study = optuna.load_study(study_name=existing[-1].study_name, storage=storage, sampler=sampler, pruner=pruner)
        recorded = study.user_attrs.get("experiment_hash")
        if recorded != context.experiment.content_hash:
            raise PromptopsError(
                f"{context.experiment_path} differs from the one study {study.study_name} runs; {flag} needs the same search space"
                " (budget changes are fine): use the study's experiment file, or run without " + flag
            )
        return study
    number = int(existing[-1].study_name.rsplit("/", 1)[1]) + 1 if existing else 1
    study = optuna.create_study(study_name=f"{STUDY_PREFIX}/{name}/{number}", storage=storage, directions=directions,
                                sampler=sampler, pruner=pruner)
    study.set_user_attr("experiment", name)
    study.set_user_attr("experiment_hash", context.experiment.content_hash)
    study.set_user_attr("objectives", context.objective_names)
    study.set_user_attr("prompt_hash", context.base.content_hash)
    study.enqueue_trial(_baseline_params(context), user_attrs={"baseline": True})
    return study


def _sampler(experiment: Experiment, seed: Optional[int] = None) -> Any:
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # multivariate TPE is "experimental" since 2.2

    seed = experiment.seed if seed is None else seed
    if experiment.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if experiment.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = max(3, min(10, experiment.budget.n_trials // 3))
    # constant_liar: a trial other workers are running counts as a poor result, so parallel workers spread out.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True,
                                      constant_liar=True)


def _as_committed(config: TrialConfig, base: Prompt) -> TrialConfig:
    """The baseline trial's configuration as the prompt file has it, for its MLflow params and the trial table:
    its own model, temperature, instruction, demos and calibration, and no optimizer."""
    from promptops.models import is_local

    return dataclasses.replace(
        config, model=base.model, optimizer="none", demos=len(base.demos), temperature=base.model.temperature,
        instruction_index=0, instruction=base.instructions,
        calibrate=bool(base.model.params.get("calibrate", "labels")) if is_local(base.model.id) else False,
        max_steps=base.loop.max_steps if base.is_agent else None, tool_variant=0, tool_descriptions=None)


def _baseline_params(context: StudyContext) -> dict[str, Any]:
    """The prompt as it is: its own model if the space has it, its instruction, no optimizer."""
    space = context.experiment.search
    ids = [m.id for m in space.models]
    params: dict[str, Any] = {"model": context.base.model.id if context.base.model.id in ids else ids[0], "optimizer": "none",
                              "instruction": 0}
    if "none" not in space.optimizers:
        params["optimizer"] = space.optimizers[0]
        params["demos"] = space.demo_choices[0]
    if isinstance(space.calibrate, list) and len(set(space.calibrate)) > 1:
        params["calibrate"] = bool(context.base.model.params.get("calibrate", "labels"))
    steps = space.step_choices
    if steps and len(steps) > 1:
        params["max_steps"] = min(steps, key=lambda count: abs(count - context.base.loop.max_steps))
    if space.tool_descriptions:
        params["tool_descriptions"] = 0
    if isinstance(space.temperature, list):
        params["temperature"] = min(space.temperature, key=lambda t: abs(t - context.base.model.temperature))
    elif not isinstance(space.temperature, (int, float)):
        params["temperature"] = min(max(context.base.model.temperature, space.temperature.low), space.temperature.high)
    return params


def _storage(url: str) -> Any:
    """Optuna's RDB storage with heartbeats: a trial whose worker stops beating for `STALE_S` is failed by the next
    worker that looks, and Optuna's `RetryHeartbeatStaleTrialCallback` queues its configuration again (DSPy's cache makes
    the redone part cheap). A live worker's trials keep beating, so no other worker fails them."""
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    from promptops.optimizer._shared import HEARTBEAT_S, STALE_S, engine_options

    def failed(study: Any, trial: Any) -> None:
        from promptops.optimizer import _runs as runs

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, trial)  # first: the sooner it is queued, the sooner a worker asking for a trial gets it
        if trial.user_attrs.get("mlflow_run_id"):
            runs.close_trial_run(trial.user_attrs["mlflow_run_id"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=2)
        return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=STALE_S, heartbeat_stale_trial_callback=failed,
                          engine_kwargs=engine_options(url))


def _count(study: Any, *states: str, repeats: bool = True) -> int:
    """Trials in these states (names of `optuna.trial.TrialState`); without `repeats`, a configuration drawn again (answered
    by the earlier trial's result, no call made) is not counted: it is free and does not use up `n_trials`."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=tuple(TrialState[state] for state in states))
    return len(trials) if repeats else sum(1 for trial in trials if "repeat_of" not in trial.user_attrs)


def worker_line(worker: Any) -> str:
    """One worker in the live view: `host:pid: trial 7, scoring on dev[:8] · 41 calls`, `(silent)` once it stops beating."""
    trial = f"trial {worker.trial}, " if worker.trial is not None else ""
    return f"{worker.worker}{'' if worker.alive else ' (silent)'}: {trial}{worker.stage or 'starting'} · {worker.model_calls} calls"


def _wait_for_running(study: Any, progress: Progress, context: "StudyContext", budget: Any, on_progress) -> None:
    """Before the front is read: every other worker's trial finished, or failed as stale (its worker died)."""
    import optuna

    while True:
        optuna.storages.fail_stale_trials(study)
        running = _count(study, "RUNNING")
        if not running:
            return
        progress.trial, progress.stage = None, f"waiting for {running} running trial(s) of other workers"
        _refresh(progress, study, context, budget)
        if on_progress:
            on_progress(progress)
        time.sleep(1.0)


# --- one trial ------------------------------------------------------------------------


def _suggest(trial: Any, context: StudyContext) -> TrialConfig:
    space = context.experiment.search
    models = {m.id: m for m in space.models}
    model_id = trial.suggest_categorical("model", list(models))
    optimizer = trial.suggest_categorical("optimizer", list(space.optimizers))
    demos = 0
    if optimizer != "none":
        choices = space.demo_choices
        demos = trial.suggest_categorical("demos", choices) if len(choices) > 1 else choices[0]
    if isinstance(space.temperature, (int, float)):
        temperature = float(space.temperature)
    elif isinstance(space.temperature, list):
        temperature = float(trial.suggest_categorical("temperature", sorted(set(space.temperature))))
    else:
        temperature = trial.suggest_float("temperature", space.temperature.low, space.temperature.high)
    index = trial.suggest_categorical("instruction", list(range(len(context.instructions)))) if len(context.instructions) > 1 else 0
    choices = sorted(set(space.calibrate)) if isinstance(space.calibrate, list) else [space.calibrate]
    calibrate = bool(trial.suggest_categorical("calibrate", choices)) if len(choices) > 1 else choices[0]
    steps = space.step_choices
    max_steps = None if steps is None else (int(trial.suggest_categorical("max_steps", steps)) if len(steps) > 1 else steps[0])
    variant = 0
    if space.tool_descriptions:  # 0 is the file's own descriptions
        variant = int(trial.suggest_categorical("tool_descriptions", list(range(len(space.tool_descriptions) + 1))))
    return TrialConfig(models[model_id], optimizer, int(demos), temperature, int(index), context.instructions[index],
                       calibrate, max_steps, variant, space.tool_descriptions[variant - 1] if variant else None)


def _run_trial(study, context: StudyContext, parent_run_id: str, budget: Any, progress: Progress, on_progress,
               heartbeat: Any = None, claim: Optional[Callable[[], Any]] = None) -> None:
    """One trial: `claim()`'s (None when the study's trials are all taken), else the next one Optuna hands out."""
    from optuna.storages._heartbeat import get_heartbeat_thread  # what Study.optimize beats with; ask/tell must do it itself

    trial = claim() if claim is not None else _ask(study)
    if trial is None:
        return
    with get_heartbeat_thread(trial._trial_id, study._storage):
        _trial_body(study, trial, context, parent_run_id, budget, progress, on_progress, heartbeat)


def _ask(study: Any) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        return study.ask()


def _claim_trial(study: Any, shared: Any, n_trials: int) -> Any:
    """The next trial, or None when `n_trials` are complete, pruned or running. Counted and asked under the study's
    lock: workers that look at the same moment would otherwise each see one trial left and all start it."""
    with shared.exclusively():
        if _count(study, "COMPLETE", "PRUNED", "RUNNING", repeats=False) >= n_trials:
            return None
        return _ask(study)


def _trial_body(study, trial, context: StudyContext, parent_run_id: str, budget: Any, progress: Progress, on_progress,
                heartbeat: Any) -> None:
    from optuna.trial import TrialState

    from promptops.evaluation import evaluate
    from promptops.optimizer import _runs as runs

    config = _suggest(trial, context)
    baseline = bool(trial.user_attrs.get("baseline"))
    if baseline:
        config = _as_committed(config, context.base)
    # The baseline trial is the file as committed (its demos too), whatever its params say: it answers for a later trial
    # only if that trial's configuration builds the very same prompt.
    earlier = None if baseline else _same_configuration(
        study, trial, with_baseline=config.optimizer == "none" and configured_prompt(context.base, config).content_hash == context.base.content_hash)
    if earlier is not None:
        _repeat(study, trial, earlier, context, parent_run_id, config, progress)
        return
    calls_before, spent_before = budget.own_model_calls, budget.own_spent_usd  # this worker's: the others spend meanwhile
    try:
        run_id = runs.log_trial(parent_run_id, study.study_name, trial.number, "RUNNING", config.params(), {}, None)
    except TrackingError:
        study.tell(trial, state=TrialState.FAIL)  # nothing was spent on it yet
        raise
    trial.set_user_attr("mlflow_run_id", run_id)

    def account() -> dict[str, float]:
        spent = {"model_calls": budget.own_model_calls - calls_before, "spent_usd": round(budget.own_spent_usd - spent_before, 10)}
        for key, value in spent.items():
            trial.set_user_attr(key, value)
        return spent

    def show(stage: str) -> None:
        progress.trial, progress.stage = trial.number, stage
        if heartbeat is not None:
            heartbeat.show(trial.number, stage)
        _refresh(progress, None, context, budget)
        if on_progress:
            on_progress(progress)

    candidate: Optional[Prompt] = None
    told = False  # Optuna has the trial's outcome: MLflow is told after it, so a store that fails loses no paid trial
    try:
        show(f"compiling ({config.optimizer}, {config.demos} demos, {config.model.id})")
        if baseline:  # the file as committed, demos, calibration and all: what every winner is measured against
            candidate = context.base
        else:
            candidate = compile_candidate(context.base, config, context.train, context.score, seed=context.experiment.seed + trial.number,
                                          reflection_model=context.experiment.search.reflection_model)
        trial.set_user_attr("compile_model_calls", budget.own_model_calls - calls_before)
        account()
        result = None
        rungs: list[dict[str, Any]] = []
        for step, size in enumerate(context.rungs):
            show(f"scoring on dev[:{size}]")
            result = evaluate(candidate, dataset=context.dev.head(size), metric=context.metric, split="dev")
            rung = RungResult(size, result.score, _rung_costs(result, context))
            rungs.append(rung.as_attr())
            trial.set_user_attr(RUNGS_ATTR, rungs)
            account()
            if step < len(context.rungs) - 1 and study.pruner.prune(study, _frozen(study, trial.number)):
                metrics = {**_trial_metrics(result, context), **account()}
                study.tell(trial, state=TrialState.PRUNED)
                told = True
                runs.log_trial(parent_run_id, study.study_name, trial.number, "PRUNED", {}, metrics, candidate.to_yaml(), run_id)
                progress.last = f"trial {trial.number} pruned after {size} dev examples ({context.metric_key} {result.score:.3f})"
                return
        assert result is not None
        values = [_objective_value(name, result, context) for name in context.objective_names]
        metrics = {**_trial_metrics(result, context), **account()}
        trial.set_user_attr("candidate", candidate.to_yaml())
        study.tell(trial, values)
        told = True
        runs.log_trial(parent_run_id, study.study_name, trial.number, "COMPLETE", {}, metrics, candidate.to_yaml(), run_id)
        progress.last = f"trial {trial.number}: " + ", ".join(f"{n} {v:.4g}" for n, v in zip(context.objective_names, values))
    except TrackingError:
        if not told:
            trial.set_user_attr("stopped_by", "MLflow could not log the trial")
            study.tell(trial, state=TrialState.FAIL)
        raise
    except BudgetExhausted as exc:
        _fail(study, trial, run_id, parent_run_id, candidate, account(), f"budget: {exc}")
        raise
    except KeyboardInterrupt:
        _fail(study, trial, run_id, parent_run_id, candidate, account(), "interrupted")
        raise
    except PromptopsError as exc:
        _fail(study, trial, run_id, parent_run_id, candidate, account(), str(exc))
        progress.last = f"trial {trial.number} failed: {exc}"


def _same_configuration(study: Any, trial: Any, *, with_baseline: bool = True) -> Any:
    """A finished trial with exactly these parameters: TPE samples a good point again once it has found it.

    One that another worker is running now is waited for, so no configuration is evaluated twice;
    if that worker dies, its trial goes stale and this one evaluates the configuration itself."""
    import optuna
    from optuna.trial import TrialState

    while True:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
        # Only an earlier trial is waited for: two workers that drew the same point must not wait for each other.
        same = [t for t in trials if t.number < trial.number and t.params == trial.params
                and (with_baseline or not t.user_attrs.get("baseline"))]
        finished = next((t for t in same if t.state != TrialState.RUNNING), None)
        if finished is not None or not same:
            return finished
        time.sleep(1.0)
        optuna.storages.fail_stale_trials(study)


def _repeat(study, trial, earlier, context: StudyContext, parent_run_id: str, config: TrialConfig, progress: Progress) -> None:
    """Answer a repeated configuration with the earlier trial's result instead of recompiling and rescoring it.

    Optuna's FAQ recommends this for duplicated suggestions; the sampler still learns that the
    point was asked for, and no model call, not even a cached one, is spent on it.
    """
    from optuna.trial import TrialState

    from promptops.optimizer import _runs as runs

    for key in (RUNGS_ATTR, "candidate"):
        if key in earlier.user_attrs:
            trial.set_user_attr(key, earlier.user_attrs[key])
    trial.set_user_attr("repeat_of", earlier.number)
    state = "COMPLETE" if earlier.state == TrialState.COMPLETE else "PRUNED"
    metrics = dict(zip(context.objective_names, earlier.values)) if earlier.values else {}
    run_id = runs.log_trial(parent_run_id, study.study_name, trial.number, state, {**config.params(), "repeat_of": earlier.number},
                            {**metrics, "model_calls": 0}, earlier.user_attrs.get("candidate"))
    trial.set_user_attr("mlflow_run_id", run_id)
    if earlier.state == TrialState.COMPLETE:
        study.tell(trial, list(earlier.values))
    else:
        study.tell(trial, state=TrialState.PRUNED)
    progress.last = f"trial {trial.number} repeats trial {earlier.number}: its result is reused"


def _frozen(study: Any, number: int) -> Any:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _fail(study, trial, run_id, parent_run_id, candidate, spent, reason: str) -> None:
    from optuna.trial import TrialState

    from promptops._secrets import redact
    from promptops.optimizer import _runs as runs

    trial.set_user_attr("stopped_by", redact(reason))  # the study's storage keeps it: a provider's error may quote a key
    study.tell(trial, state=TrialState.FAIL)
    runs.log_trial(parent_run_id, study.study_name, trial.number, "FAIL", {}, spent,
                   candidate.to_yaml() if candidate is not None else None, run_id)


def _rung_costs(result: Any, context: StudyContext) -> dict[str, float]:
    """Per-example costs, so a small rung and all of dev compare."""
    return {name: _objective_value(name, result, context) / (result.n if name in ("cost_usd", "tokens") else 1)
            for name in context.objective_names[1:]}


def _objective_value(name: str, result: Any, context: StudyContext) -> float:
    if name == context.metric_key:
        return float(result.score)
    if name == "cost_usd":
        return float(result.cost_usd or 0.0)
    if name == "tokens":
        return float(result.input_tokens + result.output_tokens)
    return float(getattr(result, name))


def _trial_metrics(result: Any, context: StudyContext) -> dict[str, float]:
    metrics = {key.replace(":", "_"): value for key, value in result.metrics.items()}
    metrics.update({
        "score": result.score, "dev_n": result.n, "cost_usd": result.cost_usd or 0.0,
        "cost_per_1k_requests_usd": 1000 * (result.cost_usd or 0.0) / max(result.n, 1),
        "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
        "latency_p50_s": result.latency_p50_s, "latency_p95_s": result.latency_p95_s,
        "eval_model_calls": result.model_calls, "cache_hits": result.cache_hits,
        "parse_failures": result.parse_failures, "errors": result.errors, "truncated": result.truncated,
    })
    return metrics


# --- progress and the end -------------------------------------------------------------


def _refresh(progress: Progress, study: Any, context: StudyContext, budget: Any) -> None:
    from optuna.trial import TrialState

    shared = getattr(budget, "shared", None)
    if shared is not None:  # the study's totals, in one query
        progress.model_calls, progress.spent_usd = shared.totals()
    else:
        progress.spent_usd, progress.model_calls = budget.spent_usd, budget.model_calls
    if study is None:
        return
    if shared is not None:
        workers = shared.workers()
        progress.workers = [] if len(workers) < 2 else [worker_line(w) for w in workers]
    trials = study.get_trials(deepcopy=False)
    progress.finished = sum(t.state == TrialState.COMPLETE for t in trials)
    progress.pruned = sum(t.state == TrialState.PRUNED for t in trials)
    progress.failed = sum(t.state == TrialState.FAIL for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    progress.best = {}
    for index, (name, direction) in enumerate(context.objectives.items()):
        values = [t.values[index] for t in complete]
        if values:
            progress.best[name] = max(values) if direction == "maximize" else min(values)


def _conclude(study, context: StudyContext, storage: str, parent_run_id: str, stopped_by, budget: Budget, wall_time_s: float) -> StudyOutcome:
    from optuna.trial import TrialState

    from promptops.optimizer import _runs as runs
    from promptops.optimizer._front import front_figure

    names = context.objective_names
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    front = pareto_front(study, names) if complete else []
    rule = context.experiment.winner
    winner = pick_winner(front, names, rule=rule.rule, within=rule.within)
    baseline = next((t.number for t in trials if t.user_attrs.get("baseline") and t.state == TrialState.COMPLETE), None)
    summaries = tuple(trial_summary(t, names) for t in trials)
    table: dict[str, list[Any]] = {"trial": [p.number for p in front]}
    for name in names:
        table[name] = [p.values[name] for p in front]
    for key in ("model", "optimizer", "demos", "temperature", "instruction"):
        table[key] = [p.params.get(key, 0 if key == "demos" else None) for p in front]
    table["winner"] = [winner is not None and p.number == winner.number for p in front]
    table["mlflow_run_id"] = [p.run_id for p in front]
    summary = {
        "study": study.study_name, "storage": _display_storage(storage), "objectives": context.objectives,
        "trials": {"complete": len(complete), "pruned": sum(t.state == TrialState.PRUNED for t in trials),
                   "failed": sum(t.state == TrialState.FAIL for t in trials)},
        "spent_usd": round(budget.spent_usd, 8), "model_calls": budget.model_calls, "stopped_by": stopped_by,
        "winner_trial": winner.number if winner else None, "baseline_trial": baseline,
        "winner_rule": rule.model_dump(),
    }
    metrics = {"spent_usd": budget.spent_usd, "model_calls": budget.model_calls, "front_size": len(front),
               "trials_complete": len(complete)}
    if winner:
        metrics.update({f"winner_{k}": v for k, v in winner.values.items()})
    figure = front_figure(study, names, winner, baseline) if complete else None
    runs.log_front(parent_run_id, table, figure, summary, metrics)
    if figure is not None:
        import matplotlib.pyplot as plt

        plt.close(figure)
    winner_prompt = None
    if winner is not None:
        from promptops.artifact import parse_prompt

        winner_prompt = parse_prompt(study.trials[winner.number].user_attrs["candidate"], f"trial {winner.number}")
    return StudyOutcome(
        experiment=context.experiment.name, study=study.study_name, storage=_display_storage(storage),
        parent_run_id=parent_run_id, objectives=context.objectives, trials=summaries, front=tuple(front), winner=winner,
        winner_prompt=winner_prompt, baseline_trial=baseline, stopped_by=stopped_by, spent_usd=budget.spent_usd,
        model_calls=budget.model_calls, wall_time_s=round(wall_time_s, 1),
    )


def _study_params(context: StudyContext, storage: str, n_trials: int) -> dict[str, Any]:
    spec = context.experiment
    return {
        "experiment": spec.name, "experiment_hash": spec.content_hash, "prompt": context.base.name,
        "prompt_hash": context.base.content_hash, "metric": context.metric.name,
        "objectives": ",".join(f"{k}:{v}" for k, v in context.objectives.items()), "sampler": spec.sampler, "seed": spec.seed,
        "models": ",".join(m.id for m in spec.search.models), "optimizers": ",".join(spec.search.optimizers),
        "demos": str(spec.search.demo_choices), "instructions": len(context.instructions), "rungs": str(context.rungs),
        "train_n": len(context.train), "dev_n": len(context.dev), "n_trials": n_trials,
        "max_cost_usd": spec.budget.max_cost_usd, "max_model_calls": spec.budget.max_model_calls,
        "timeout_s": spec.budget.timeout_s, "storage": _display_storage(storage),
    }


def _display_storage(storage: str) -> str:
    from promptops._secrets import redact

    return redact(storage.split("@")[-1] if "@" in storage else storage)  # never a database password


def _check_agent_search(experiment: Experiment, path: Path, prompt: Any) -> None:
    """Agent dimensions only for an agent, naming its tools; DSPy optimizers that can be read back into an agent file."""
    import yaml

    from promptops.optimizer._experiment import ExperimentFileError
    from promptops.artifact import line_of

    space = experiment.search

    def fail(loc: tuple[Any, ...], message: str) -> None:
        raise ExperimentFileError(path, line_of(yaml.compose(path.read_text(encoding="utf-8")), loc), message)

    if not prompt.is_agent:
        if space.max_steps is not None:
            fail(("search", "max_steps"), f"search.max_steps: {prompt.name} has no tools, so it has no loop to size")
        if space.tool_descriptions:
            fail(("search", "tool_descriptions"), f"search.tool_descriptions: {prompt.name} has no tools to describe")
        return
    names = {tool.tool_name for tool in prompt.tools}
    for index, variant in enumerate(space.tool_descriptions):
        unknown = sorted(set(variant) - names)
        if unknown:
            fail(("search", "tool_descriptions", index, unknown[0]), f"search.tool_descriptions[{index}]: {unknown[0]!r} is"
                 f" not a tool of {prompt.name} ({', '.join(sorted(names))})")
    unfit = [name for name in space.optimizers if name in ("mipro", "gepa")]
    if unfit:
        fail(("search", "optimizers"), f"search.optimizers: {unfit[0]} rewrites a single predictor's instruction, which an"
             " agent file cannot hold yet; for agents use none, labeled, bootstrap or random_search (demos of whole trajectories)")


def _check_demos_fit(experiment: Experiment, path: Path, train: Any) -> None:
    """A trial cannot show more demos than the train split has (DSPy would quietly show fewer)."""
    from promptops.errors import where
    from promptops.optimizer._experiment import ExperimentFileError
    from promptops.artifact import compose_and_load, line_of

    most = max(experiment.search.demo_choices)
    if most > len(train):
        node, _ = compose_and_load(path.read_text(encoding="utf-8"))
        raise ExperimentFileError(path, line_of(node, ("search", "demos")),
                                  f"search.demos: {most} demos is more than the {len(train)} examples of {where(train.path)}; lower the demos")


def _check_available(model_id: str) -> None:
    """A local model whose weights are missing fails here, before the study starts."""
    from promptops.models import is_local
    from promptops.models import local_model

    if is_local(model_id) and model_id.startswith("local/"):
        local_model(model_id).locate()
