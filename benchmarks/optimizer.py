"""promptops optimize vs DSPy's MIPROv2 (auto="light") run alone, on the same train/dev/test.

- promptops: `promptops.optimize(EXPERIMENT)` in a scratch copy of the project (its own Optuna
  store, MLflow store and empty DSPy cache); the winner's test score.
- MIPROv2 alone: `dspy.MIPROv2(metric, auto="light")` compiling the prompt's program on the same
  train split with dev as its validation set, on the prompt's own model (prompt model = task
  model); the compiled program's test score, through the same `evaluate`.

Both count every call that reached a model (the optimizers' own included) and wall time from
start to the test score. Prints the ratios promptops / MIPROv2 and can write them as JSON.

    python benchmarks/optimizer.py [--experiment banking_intent] [--out FILE]
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
    args = parser.parse_args()
    if args.out:
        args.out = args.out.resolve()  # the script moves into its scratch project

    scratch = Path(tempfile.mkdtemp(prefix="promptops-bench-opt-"))
    project = _scratch_project(scratch)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlflow.db'}"
    os.environ["PROMPTOPS_PROJECT"] = str(project)
    os.chdir(project)
    sys.path.insert(0, str(ROOT))

    import dspy

    figures: dict[str, Any] = {"experiment": args.experiment}
    if args.skip != "promptops":
        dspy.configure_cache(disk_cache_dir=str(scratch / "cache-promptops"))
        figures["promptops"] = _run_promptops(args.experiment, args.n_trials, scratch)
        print("promptops:", json.dumps(figures["promptops"]), flush=True)
    if args.skip != "mipro":
        dspy.configure_cache(disk_cache_dir=str(scratch / "cache-mipro"))
        figures["mipro_light"] = _run_mipro(args.experiment)
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
        "front": [{"trial": p.number, **p.values, **p.params} for p in study.front],
        "winner": study.winner.params if study.winner else None,
        "stopped_by": study.stopped_by,
    }


def _run_mipro(experiment: str) -> dict[str, Any]:
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
        optimizer = dspy.MIPROv2(metric=metric, prompt_model=program.lm, task_model=program.lm, auto="light", num_threads=1,
                                 seed=0, verbose=False)
        error = None
        try:
            compiled = optimizer.compile(program, trainset=examples("train")[: context.experiment.search.train_limit],
                                         valset=examples("dev"))
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
