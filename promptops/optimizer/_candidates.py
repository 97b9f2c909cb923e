"""From a trial's configuration to a candidate prompt, compiled by DSPy's own optimizers on train.

A trial picks a model, an instruction, a temperature, a DSPy optimizer, a demo count and, for the
embedded models, whether their label choices are calibrated.
The optimizer (LabeledFewShot, BootstrapFewShot, BootstrapFewShotWithRandomSearch, MIPROv2
or GEPA) compiles the prompt's program on the train split; what it learned, instructions
and demos, is read back into a `Prompt`, so the candidate is an ordinary prompt file that
can be evaluated, diffed, committed and promoted like any other.
"""

from __future__ import annotations

from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from promptops.artifact import ModelSpec, Prompt
from promptops.evaluation import Dataset
from promptops.evaluation import Metric, field_scores, is_correct

ExampleMetric = Callable[[dict[str, Any], Optional[dict[str, Any]]], float]


@dataclass(frozen=True)
class TrialConfig:
    """One point of the search space."""

    model: ModelSpec
    optimizer: str
    demos: int
    temperature: float
    instruction_index: int
    instruction: str
    calibrate: Optional[bool] = False  # embedded models only: contextual calibration of label choices; None: the file's
    max_steps: Optional[int] = None  # agents: the loop's steps; None keeps the file's
    tool_variant: int = 0  # agents: 0 keeps the file's tool descriptions, N the experiment's tool_descriptions[N-1]
    tool_descriptions: Optional[dict[str, str]] = None  # that variant: tool name -> description

    def params(self) -> dict[str, Any]:
        """Flat, for MLflow params and the trial table."""
        params = {
            "model": self.model.id,
            "optimizer": self.optimizer,
            "demos": self.demos,
            "temperature": self.temperature,
            "instruction": self.instruction_index,
            "calibrate": self.calibrate,
        }
        if self.max_steps is not None:
            params["max_steps"] = self.max_steps
        if self.tool_descriptions is not None or self.tool_variant:
            params["tool_descriptions"] = self.tool_variant
        return params


def configured_prompt(base: Prompt, config: TrialConfig) -> Prompt:
    """The base prompt with the trial's model, temperature and instruction, before any optimizer runs."""
    from promptops.models import is_local

    overrides = {key: getattr(config.model, key) for key in config.model.model_fields_set}
    model = base.model.model_copy(update={**overrides, "temperature": config.temperature})
    if is_local(model.id) and config.calibrate is not None:  # None: as the prompt file has it
        params = {key: value for key, value in model.params.items() if key != "calibrate"}
        # Explicit both ways: unset, the embedded engine calibrates label choices by default.
        model = model.model_copy(update={"params": {**params, "calibrate": bool(config.calibrate)}})
    changes: dict[str, Any] = {"instructions": config.instruction, "model": model.model_dump(), "demos": []}
    if base.is_agent:
        loop = base.loop.model_dump()
        loop.update({"demos": []} if config.max_steps is None else {"demos": [], "max_steps": config.max_steps})
        changes["agent"] = loop
        descriptions = config.tool_descriptions or {}
        changes["tools"] = [tool.model_dump(exclude_defaults=True) | ({"description": descriptions[tool.tool_name]}
                                                                      if tool.tool_name in descriptions else {})
                            for tool in base.tools]
    return base.with_changes(**changes)


def example_metric(prompt: Prompt, metric: "Metric | str") -> ExampleMetric:
    """A per-example score in [0, 1] matching the eval's metric, for optimizers that score single answers.

    Called as score(example, predicted): the example holds inputs and expected outputs, as user metrics get it.
    A judge scores through the study's budget like every other call; similarity embeds the pair.
    """
    if isinstance(metric, str):
        metric = Metric(metric)
    user_metric = metric.function
    if user_metric is not None:
        return lambda expected, predicted: 0.0 if predicted is None else float(user_metric(expected, predicted))
    if metric.judge is not None:
        from promptops.evaluation import Judge

        judge = Judge(metric.judge)
        inputs = {spec.name for spec in prompt.inputs}

        def judged(example: dict[str, Any], predicted: Optional[dict[str, Any]]) -> float:
            given = {key: value for key, value in example.items() if key not in inputs}
            reference = given if any(value is not None for value in given.values()) else None
            return judge.score({key: example[key] for key in inputs if key in example}, predicted, reference).score

        judged.pass_mark = metric.judge.normalized(metric.judge.labels[0] if metric.judge.scale == "pass_fail"  # type: ignore[attr-defined]
                                                   else str(metric.judge.passing_score))
        return judged
    if metric.similarity is not None:
        from promptops.evaluation import similarities

        spec = metric.similarity
        fields = [field.name for field in prompt.outputs if field.type == "string"]

        def similar(example: dict[str, Any], predicted: Optional[dict[str, Any]]) -> float:
            if predicted is None:
                return 0.0
            values = similarities([str(predicted.get(name) or "") for name in fields],
                                             [str(example.get(name) or "") for name in fields], spec.model, api_base=spec.api_base)
            return sum(values) / len(values)

        similar.pass_mark = spec.threshold  # type: ignore[attr-defined]
        return similar
    if metric.name == "f1":
        return lambda expected, predicted: field_scores([(expected, predicted)], prompt.outputs)["micro"].f1
    return lambda expected, predicted: float(is_correct(expected, predicted, prompt.outputs))


def compile_candidate(
    base: Prompt,
    config: TrialConfig,
    train: Dataset,
    score: ExampleMetric,
    *,
    seed: int = 0,
    reflection_model: Optional[ModelSpec] = None,
) -> Prompt:
    """Run the trial's DSPy optimizer on `train` and return the prompt it produced."""
    import dspy

    from promptops.program import build_program, prediction_values

    prompt = configured_prompt(base, config)
    if config.optimizer == "none" or (config.demos == 0 and config.optimizer in ("labeled", "bootstrap", "random_search")):
        return prompt
    program = build_program(prompt)
    input_names = [spec.name for spec in prompt.inputs]
    trainset = [dspy.Example(**ex.inputs, **ex.expected).with_inputs(*input_names) for ex in train.examples]
    all_names = input_names + [spec.name for spec in prompt.outputs]

    def gold(example: Any) -> dict[str, Any]:
        return {name: example.get(name) for name in all_names}

    def dspy_metric(example: Any, prediction: Any, trace: Any = None, *_: Any) -> Any:
        value = score(gold(example), prediction_values(prompt, prediction))
        # A bootstrapped demo must be fully right, or pass the judge (or the similarity threshold).
        return value >= getattr(score, "pass_mark", 1.0) if trace is not None else value

    k = config.demos
    with _quiet_optimizers():
        compiled = _compile(config, program, prompt, trainset, dspy_metric, score, gold, seed, reflection_model, k)
    return _read_back(prompt, compiled)


def _compile(config, program, prompt, trainset, dspy_metric, score, gold, seed, reflection_model, k) -> Any:
    import dspy

    # Small validation slices keep the optimizers' own search within a trial's share of the budget.
    valset = trainset[-min(len(trainset) // 2, 16):] or trainset
    fitset = trainset[: len(trainset) - len(valset)] or trainset
    if config.optimizer == "labeled":
        compiled = dspy.LabeledFewShot(k=k).compile(program, trainset=trainset, sample=True)
    elif config.optimizer == "bootstrap":
        optimizer = dspy.BootstrapFewShot(metric=dspy_metric, max_bootstrapped_demos=k, max_labeled_demos=k, max_rounds=1)
        compiled = optimizer.compile(program, trainset=trainset)
    elif config.optimizer == "random_search":
        optimizer = dspy.BootstrapFewShotWithRandomSearch(
            metric=dspy_metric, max_bootstrapped_demos=k, max_labeled_demos=k, num_candidate_programs=3, num_threads=1,
        )
        compiled = optimizer.compile(program, trainset=fitset, valset=valset)
    elif config.optimizer == "mipro":
        optimizer = dspy.MIPROv2(
            metric=dspy_metric, prompt_model=program.lm, task_model=program.lm, auto=None, num_candidates=3,
            max_bootstrapped_demos=k, max_labeled_demos=k, num_threads=1, seed=seed, verbose=False,
        )
        compiled = optimizer.compile(
            program, trainset=fitset, valset=valset, num_trials=4, minibatch=len(valset) > 8, minibatch_size=8,
        )
    elif config.optimizer == "gepa":
        compiled = _gepa(program, prompt, trainset=fitset, valset=valset, score=score, gold=gold,
                         reflection_model=reflection_model, seed=seed)
    else:  # the experiment file's schema admits nothing else
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    return compiled


@contextmanager
def _quiet_optimizers() -> Iterator[None]:
    """DSPy's optimizers print and draw tqdm bars; the optimize view is ours, so their chatter goes to the debug log."""
    import io
    import logging

    buffer = io.StringIO()
    dspy_logger = logging.getLogger("dspy")
    level = dspy_logger.level
    dspy_logger.setLevel(logging.ERROR)
    root_logger = logging.getLogger()
    root_level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # DSPy's module copies warn through the root logger
    try:
        with redirect_stdout(buffer), redirect_stderr(buffer):
            yield
    finally:
        dspy_logger.setLevel(level)
        root_logger.setLevel(root_level)
        if buffer.getvalue().strip():
            logging.getLogger("promptops.optimizer").debug(buffer.getvalue())


def _gepa(program, prompt, *, trainset, valset, score, gold, reflection_model, seed) -> Any:
    """GEPA rewrites the instruction from a stronger model's reflection on failed answers."""
    import dspy

    from promptops.models import build_lm
    from promptops.program import prediction_values

    def feedback_metric(example: Any, prediction: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        expected, predicted = gold(example), prediction_values(prompt, prediction)
        value = score(expected, predicted)
        outputs = [spec.name for spec in prompt.outputs]
        wrong = {k: (expected[k], (predicted or {}).get(k)) for k in outputs if expected[k] != (predicted or {}).get(k)}
        text = "correct" if not wrong else "; ".join(f"{k}: expected {e!r}, got {g!r}" for k, (e, g) in wrong.items())
        return dspy.Prediction(score=value, feedback=text)

    reflection_lm = build_lm(reflection_model)
    optimizer = dspy.GEPA(metric=feedback_metric, reflection_lm=reflection_lm, max_metric_calls=2 * len(valset) + 4 * 8,
                          reflection_minibatch_size=4, seed=seed, num_threads=1, track_stats=False)
    return optimizer.compile(program, trainset=trainset, valset=valset)


def _read_back(prompt: Prompt, compiled: Any) -> Prompt:
    """Instructions and demos the optimizer settled on, as prompt file content; unusable demos are dropped.

    For an agent, the demos of its last call (inputs and outputs) are the prompt's `demos`, and the
    bootstrapped steps (inputs, the trajectory so far and the step taken) its `agent.demos`, so a
    whole successful trajectory is kept; the instruction stays the file's (ReAct adds its own)."""
    if prompt.is_agent:
        return _read_back_agent(prompt, compiled)
    predictor = compiled.predict
    names = [spec.name for spec in prompt.inputs + prompt.outputs]
    demos = []
    for demo in predictor.demos:
        values = {name: _plain(demo.get(name)) for name in names}
        if prompt.check_example(values) is None and values not in demos:
            demos.append(values)
    instructions = (predictor.signature.instructions or "").strip() or prompt.instructions
    if instructions == prompt.instructions.strip():
        instructions = prompt.instructions  # unchanged: keep the file's own text, trailing newline included
    return prompt.with_changes(instructions=instructions, demos=demos)


def _read_back_agent(prompt: Prompt, compiled: Any) -> Prompt:
    names = [spec.name for spec in prompt.inputs + prompt.outputs]
    demos = []
    for demo in compiled.react.extract.predict.demos:
        values = {name: _plain(demo.get(name)) for name in names}
        if prompt.check_example(values) is None and values not in demos:
            demos.append(values)
    step_names = [spec.name for spec in prompt.inputs] + ["trajectory", "next_thought", "next_tool_name", "next_tool_args"]
    steps = []
    for demo in compiled.react.react.demos:
        values = {name: _plain(demo.get(name)) for name in step_names}
        tools = {tool.tool_name for tool in prompt.tools}
        if prompt.check_step_demo(values, tools) is None and values not in steps:
            steps.append(values)
    candidate = prompt.with_changes(demos=demos, agent={**prompt.loop.model_dump(), "demos": steps})
    return candidate


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
