"""promptops optimize vs DSPy's MIPROv2 (auto="light") run alone, on the same train/dev/test.

- promptops: `promptops.optimize(EXPERIMENT)` in a scratch copy of the project (its own Optuna
  store, MLflow store and empty DSPy cache); the winner's test score.
- MIPROv2 alone: `dspy.MIPROv2(metric, auto="light")` compiling the prompt's program on the same
  train split with dev as its validation set, on the prompt's own model (prompt model = task
  model); the compiled program's test score, through the same `evaluate`.

Both count every call that reached a model (the optimizers' own included) and wall time from
start to the test score. Prints the ratios promptops / MIPROv2 and can write them as JSON.

    python benchmarks/optimizer.py [--experiment banking_intent] [--out FILE]
    python benchmarks/optimizer.py --smoke [--out FILE]  # seconds: the same path on a few rows, not figures

--smoke cuts the scratch copy's data to 8 train, 4 dev and 4 test rows and its experiment to the
first model, 2 trials and a rung of 2; MIPROv2 runs with 2 candidates and 2 trials instead of light,
its proposer given neither the program's code nor a summary of the data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="banking_intent")
    parser.add_argument("--n-trials", type=int, help="override the experiment's budget.n_trials")
    parser.add_argument("--skip", choices=["promptops", "mipro"], help="run only the other arm")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--smoke", action="store_true", help="a few rows and trials: checks the script runs, in seconds")
    args = parser.parse_args()
    if args.smoke:
        args.out = args.out or Path(tempfile.mkdtemp(prefix="promptops-smoke-")) / "optimizer.json"
        if args.out.resolve().parent == ROOT / "benchmarks":
            parser.error("--smoke writes no results: give --out a path outside benchmarks/")
    if args.out:
        args.out = args.out.resolve()  # the script moves into its scratch project

    scratch = Path(tempfile.mkdtemp(prefix="promptops-bench-opt-"))
    project = _scratch_project(scratch)
    if args.smoke:
        _shrink(project, args.experiment)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlflow.db'}"
    os.environ["PROMPTOPS_PROJECT"] = str(project)
    os.chdir(project)
    sys.path.insert(0, str(ROOT))

    import dspy

    figures: dict[str, Any] = {"experiment": args.experiment, "smoke": args.smoke}
    if args.skip != "promptops":
        dspy.configure_cache(disk_cache_dir=str(scratch / "cache-promptops"))
        figures["promptops"] = _run_promptops(args.experiment, args.n_trials, scratch)
        print("promptops:", json.dumps(figures["promptops"]), flush=True)
    if args.skip != "mipro":
        dspy.configure_cache(disk_cache_dir=str(scratch / "cache-mipro"))
        figures["mipro_light"] = _run_mipro(args.experiment, SMOKE_MIPRO if args.smoke else None)
        print("MIPROv2 light:", json.dumps(figures["mipro_light"]), flush=True)
    if "promptops" in figures and "mipro_light" in figures:
        ours, theirs = figures["promptops"], figures["mipro_light"]
        figures["ratios_promptops_over_mipro"] = {
            "test_score": _ratio(ours["test_score"], theirs["test_score"]),
            "model_calls": _ratio(ours["model_calls"], theirs["model_calls"]),
            "wall_time_s": _ratio(ours["wall_time_s"], theirs["wall_time_s"]),
        }
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    if args.smoke:
        print(f"smoke figures: {args.out}")


def _scratch_project(scratch: Path) -> Path:
    """A throwaway git copy of prompts/ and experiments/, so the winner's commit lands there."""
    import git

    project = scratch / "project"
    shutil.copytree(ROOT / "prompts", project / "prompts")
    shutil.copytree(ROOT / "experiments", project / "experiments")
    repo = git.Repo.init(project)
    repo.git.add("--all")
    repo.git.commit("-q", "-m", "benchmark copy", env={"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                                                        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"})
    return project


SMOKE_ROWS = {"train": 8, "dev": 4, "test": 4}
# The proposer still writes an instruction, without the program's code and a data summary (long prompts: 40 s here).
SMOKE_MIPRO = {"num_candidates": 2, "num_trials": 2, "max_bootstrapped_demos": 1, "max_labeled_demos": 1,
               "program_aware_proposer": False, "data_aware_proposer": False}


def _shrink(project: Path, experiment: str) -> None:
    """--smoke: the copy's experiment cut to its first model, 2 trials and a rung of 2, on SMOKE_ROWS of its data."""
    import git
    import yaml

    from promptops.artifact import load_prompt_file, resolve_prompt_path
    from promptops.evaluation import default_data_path, split_file
    from promptops.optimizer import load_experiment

    spec, path = load_experiment(experiment, project)
    data = project / spec.data if spec.data else default_data_path(load_prompt_file(resolve_prompt_path(spec.prompt, project)), project)
    for split, rows in SMOKE_ROWS.items():
        file = split_file(data, split)
        file.write_text("".join(file.read_text().splitlines(keepends=True)[:rows]))
    raw = yaml.safe_load(path.read_text())
    raw["search"].update(models=raw["search"]["models"][:1], optimizers=["none", "labeled"], demos=[2], calibrate=False,
                         train_limit=SMOKE_ROWS["train"])
    raw["search"].pop("dev_limit", None)
    raw["budget"] = {**raw.get("budget", {}), "n_trials": 2, "timeout_s": 300}
    raw["pruning"] = {**raw.get("pruning", {}), "rungs": [2]}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    repo = git.Repo(project)
    repo.git.add("--all")
    repo.git.commit("-q", "-m", "smoke: a few rows, 2 trials", env={
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"})


def _run_promptops(experiment: str, n_trials: int | None, scratch: Path) -> dict[str, Any]:
    import promptops

    started = time.perf_counter()
    result = promptops.optimize(experiment, n_trials=n_trials, storage=f"sqlite:///{scratch / 'optuna.db'}", write_winner=False)
    wall = time.perf_counter() - started
    study = result.study
    return {
        "test_score": result.test.winner_score if result.test else None,
        "baseline_test_score": result.test.reference_score if result.test else None,
        "model_calls": study.model_calls,  # the test evals run within the study's budget: included
        "spent_usd": round(study.spent_usd, 6),
        "wall_time_s": round(wall, 1),
        "trials": len(study.trials),
        "trial_states": [t.state for t in study.trials],
        "front": [{"trial": p.number, **p.values, **p.params} for p in study.front],
        "winner": study.winner.params if study.winner else None,
        "stopped_by": study.stopped_by,
    }


def _run_mipro(experiment: str, settings: dict[str, int] | None = None) -> dict[str, Any]:
    """MIPROv2 light, or with `settings` (num_candidates, then compile's options) in place of auto="light"."""
    import dspy

    from promptops.models import Budget, spending_limit
    from promptops.evaluation import load_dataset
    from promptops.evaluation import evaluate
    from promptops.optimizer._candidates import _read_back, example_metric
    from promptops.optimizer import load_context
    from promptops.program import build_program, prediction_values

    context = load_context(experiment)
    prompt = context.base
    program = build_program(prompt)
    inputs = [spec.name for spec in prompt.inputs]
    names = inputs + [spec.name for spec in prompt.outputs]

    def examples(split: str) -> list[Any]:
        return [dspy.Example(**e.inputs, **e.expected).with_inputs(*inputs) for e in load_dataset(prompt, context.data, split).examples]

    score = example_metric(prompt, context.metric)

    def metric(example: Any, prediction: Any, trace: Any = None) -> Any:
        value = score({n: example.get(n) for n in names}, prediction_values(prompt, prediction))
        return value >= 1.0 if trace is not None else value

    counter = Budget()  # no caps: it only counts the calls that reach the model
    started = time.perf_counter()
    with spending_limit(counter):
        settings = dict(settings or {})
        size = {"auto": None, "num_candidates": settings.pop("num_candidates")} if settings else {"auto": "light"}
        optimizer = dspy.MIPROv2(metric=metric, prompt_model=program.lm, task_model=program.lm, num_threads=1, seed=0,
                                 verbose=False, **size)
        error = None
        try:
            compiled = optimizer.compile(program, trainset=examples("train")[: context.experiment.search.train_limit],
                                         valset=examples("dev"), **({**settings, "minibatch": False} if settings else {}))
            candidate = _read_back(prompt, compiled)
        except Exception as exc:  # a weak proposer can break MIPROv2; the figure says so instead of crashing
            error, candidate = f"{type(exc).__name__}: {exc}"[:300], prompt
        test = evaluate(candidate, dataset=load_dataset(prompt, context.data, "test"), metric=context.metric, split="test")
    wall = time.perf_counter() - started
    return {
        "test_score": test.score,
        "model_calls": counter.model_calls,
        "spent_usd": round(counter.spent_usd, 6),
        "wall_time_s": round(wall, 1),
        "demos": len(candidate.demos),
        "instructions_changed": candidate.instructions.strip() != prompt.instructions.strip(),
        "error": error,
    }


def _ratio(a: Any, b: Any) -> Any:
    if a is None or b in (None, 0):
        return None
    return round(a / b, 3)


if __name__ == "__main__":
    main()
