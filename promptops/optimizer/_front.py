"""The Pareto front of a study, the rule that picks its winner, and the rung pruner.

Optuna computes the front (`study.best_trials`) and draws it; what is ours is the choice
among its points, and pruning: Optuna's pruners read `trial.report()`, which multi-objective
studies refuse (optuna#3450), so `RungPruner` is a `BasePruner` that reads the per-rung
results each trial stores as user attributes.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import optuna

RUNGS_ATTR = "rungs"


@dataclass(frozen=True)
class FrontPoint:
    """A Pareto-optimal trial with its objective values by name."""

    number: int
    values: dict[str, float]
    params: dict[str, Any]
    run_id: Optional[str]


def pareto_front(study: optuna.Study, objective_names: Sequence[str]) -> list[FrontPoint]:
    """The completed trials no other trial beats on every objective, best primary metric first.

    A configuration the sampler proposed twice (the repeat reuses the first result) is one point.
    """
    points: list[FrontPoint] = []
    for trial in sorted(study.best_trials, key=lambda t: t.number):
        if any(point.params == trial.params for point in points):
            continue
        points.append(FrontPoint(trial.number, dict(zip(objective_names, trial.values)), dict(trial.params),
                                 trial.user_attrs.get("mlflow_run_id")))
    primary = objective_names[0]
    return sorted(points, key=lambda p: (-p.values[primary], p.number))


def pick_winner(front: Sequence[FrontPoint], objective_names: Sequence[str], *, rule: str = "cheapest_within", within: float = 0.01) -> Optional[FrontPoint]:
    """Default: the cheapest point within `within` of the best primary metric (ties: the better metric, then the earlier trial).

    A point of accuracy is rarely worth a multiple of the bill; `rule: best` ignores cost.
    """
    if not front:
        return None
    primary = objective_names[0]
    best = max(point.values[primary] for point in front)
    if rule == "best" or len(objective_names) == 1:
        return min((p for p in front if p.values[primary] == best), key=lambda p: p.number)
    cost = objective_names[1]
    near = [p for p in front if p.values[primary] >= best - within - 1e-12]
    return min(near, key=lambda p: (p.values[cost], -p.values[primary], p.number))


@dataclass(frozen=True)
class RungResult:
    """A trial's standing after a rung: its quality and costs per example on the first `n` dev examples."""

    n: int
    score: float
    costs: dict[str, float]

    def as_attr(self) -> dict[str, Any]:
        return {"n": self.n, "score": self.score, "costs": self.costs}


class RungPruner(optuna.pruners.BasePruner):
    """Prune a trial whose rung result is clearly dominated.

    With cost objectives: another trial scored at least `margin` better on the same rung
    and cost no more on every cost objective, give or take `cost_slack` (relative: a
    0.7% dearer prompt that scores 0.5 against 0.125 still dominates). With quality alone:
    the trial is `margin` below the median of the others at that rung. A weak but clearly
    cheaper trial is kept: it may be the cheap end of the front.
    """

    def __init__(self, margin: float = 0.05, min_trials: int = 2, cost_slack: float = 0.05):
        self.margin = margin
        self.min_trials = min_trials
        self.cost_slack = cost_slack

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        rungs = trial.user_attrs.get(RUNGS_ATTR) or []
        if not rungs:
            return False
        mine = rungs[-1]
        step = len(rungs) - 1
        others = []
        for other in study.get_trials(deepcopy=False):
            their = other.user_attrs.get(RUNGS_ATTR) or []
            if other.number != trial.number and len(their) > step and their[step]["n"] == mine["n"]:
                others.append(their[step])
        if len(others) < self.min_trials:
            return False
        if not mine["costs"]:
            return mine["score"] + self.margin < statistics.median(o["score"] for o in others)
        return any(
            o["score"] >= mine["score"] + self.margin
            and all(o["costs"].get(k, float("inf")) <= v * (1 + self.cost_slack) for k, v in mine["costs"].items())
            for o in others
        )


def load_plotting() -> Any:
    """Optuna's matplotlib Pareto-front plot, on the Agg backend (no screen)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        from optuna.visualization.matplotlib import plot_pareto_front
    return plot_pareto_front


def front_figure(study: optuna.Study, objective_names: Sequence[str], winner: Optional[FrontPoint], baseline: Optional[int] = None) -> Any:
    """Optuna's Pareto-front plot, cost on x and the quality metric on y, with the winner and baseline marked."""
    import warnings

    plot_pareto_front = load_plotting()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if len(objective_names) >= 2:
            axes = plot_pareto_front(
                study,
                targets=lambda t: (t.values[1], t.values[0]),
                target_names=[objective_names[1], objective_names[0]],
            )
        else:
            from optuna.visualization.matplotlib import plot_optimization_history

            axes = plot_optimization_history(study, target_name=objective_names[0])
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if len(objective_names) >= 2:
        for number, label, marker in ((baseline, "baseline", "s"), (winner.number if winner else None, "winner", "*")):
            trial = trials.get(number) if number is not None else None
            if trial is not None and trial.values:
                axes.scatter([trial.values[1]], [trial.values[0]], marker=marker, s=220, facecolors="none",
                             edgecolors="black", linewidths=1.5, label=label, zorder=5)
        axes.legend(loc="best")
    axes.set_title(f"{study.study_name}: Pareto front")
    figure = axes.figure
    figure.set_size_inches(8, 5.5)
    figure.tight_layout()
    return figure
