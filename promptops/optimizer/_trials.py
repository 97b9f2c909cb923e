"""An optimization's trials read back from its Optuna storage, without MLflow: `promptops trials EXPERIMENT`
lists every trial (its configuration, scores, spend, state and MLflow run), and `promptops show
EXPERIMENT@trial:N` prints the prompt a trial compiled."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from promptops.artifact import Prompt, find_project_root
from promptops.errors import PromptopsError
from promptops.optimizer._experiment import load_experiment
from promptops.optimizer._front import RUNGS_ATTR
from promptops.optimizer._study import STUDY_PREFIX, TrialSummary, _display_storage, trial_summary


@dataclass(frozen=True)
class TrialListing:
    experiment: str
    study: str
    storage: str
    objectives: dict[str, str]
    trials: tuple[TrialSummary, ...]

    def summary(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "study": self.study, "storage": self.storage, "objectives": self.objectives,
                "trials": [asdict(trial) for trial in self.trials]}


def trials(experiment: str | Path, *, study: Optional[int] = None, storage: Optional[str] = None) -> TrialListing:
    """Every trial of the experiment's latest study (or study `promptops/NAME/<study>`), oldest first."""
    from optuna.trial import TrialState

    loaded, name, url = _study(experiment, study, storage)
    objectives = dict(zip(loaded.user_attrs.get("objectives") or [], (d.name.lower() for d in loaded.directions)))
    names = list(objectives)
    rows = []
    for trial in loaded.get_trials(deepcopy=False):
        row = trial_summary(trial, names)
        rungs = trial.user_attrs.get(RUNGS_ATTR)
        if trial.state != TrialState.COMPLETE:  # an unfinished trial has no objectives; a pruned one, its last rung's score
            last = rungs[-1] if rungs else {}
            row = dataclasses.replace(row, values={names[0]: last["score"]} if names and last.get("score") is not None else {})
        rows.append(row)
    return TrialListing(name, loaded.study_name, _display_storage(url), objectives, tuple(rows))


def trial_prompt(experiment: str | Path, number: int, *, study: Optional[int] = None, storage: Optional[str] = None) -> Prompt:
    """The prompt trial `number` compiled (its instructions, demos, model and params), as a prompt file holds it."""
    from promptops.artifact import parse_prompt

    loaded, name, _ = _study(experiment, study, storage)
    found = [trial for trial in loaded.get_trials(deepcopy=False) if trial.number == number]
    if not found:
        raise PromptopsError(f"study {loaded.study_name} has no trial {number}; it has trials 0 to {len(loaded.trials) - 1}"
                             if loaded.trials else f"study {loaded.study_name} has no trials yet")
    candidate = found[0].user_attrs.get("candidate")
    if candidate is None:
        raise PromptopsError(f"trial {number} of {loaded.study_name} kept no prompt ({found[0].state.name}: it did not finish"
                             " compiling and scoring); list the trials with promptops trials " + name)
    return parse_prompt(candidate, f"{loaded.study_name} trial {number}")


def parse_trial_reference(reference: str) -> Optional[tuple[str, int]]:
    """`banking_intent@trial:7` as (`banking_intent`, 7); None when the reference names no trial."""
    name, _, ref = reference.partition("@")
    if not ref.startswith("trial:"):
        return None
    number = ref.removeprefix("trial:")
    if not name or not number.isdigit():
        raise PromptopsError(f"{reference!r} is not EXPERIMENT@trial:N (for example banking_intent@trial:3)")
    return name, int(number)


def _study(experiment: str | Path, study: Optional[int], storage: Optional[str]) -> tuple[Any, str, str]:
    import optuna

    root = find_project_root()
    spec, _ = load_experiment(experiment, root)
    url = storage or f"sqlite:///{root / 'optuna.db'}"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise PromptopsError(f"no optimization has run here yet: {_display_storage(url)} does not exist (run promptops optimize "
                             f"{spec.name}, or name the study's --storage)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    prefix = f"{STUDY_PREFIX}/{spec.name}/"
    try:
        names = sorted((s.study_name for s in optuna.get_all_study_summaries(url, include_best_trial=False)
                        if s.study_name.startswith(prefix)), key=lambda n: int(n.rsplit("/", 1)[1]))
    except Exception as exc:
        raise PromptopsError(f"cannot open the Optuna storage {_display_storage(url)}: {str(exc).splitlines()[0]}") from None
    if not names:
        raise PromptopsError(f"no study of experiment {spec.name!r} in {_display_storage(url)}: run promptops optimize {spec.name}")
    wanted = names[-1] if study is None else f"{prefix}{study}"
    if wanted not in names:
        raise PromptopsError(f"experiment {spec.name!r} has no study {study} in {_display_storage(url)}; it has "
                             + ", ".join(n.rsplit("/", 1)[1] for n in names))
    return optuna.load_study(study_name=wanted, storage=url), spec.name, url
