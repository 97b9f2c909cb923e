"""LLM judges: a rubric applied by a model, as a DSPy program, scoring one answer at a time.

The judge sees the request (the prompt's inputs), the answer, and the reference outputs when the
row has them; it writes a one-sentence reason, then its score (`pass`/`fail`, or 1 to 5). Its
model is a `MeteredLM` like the prompt's own, so DSPy's cache answers repeated judgements, every
call is admitted against the active budget (an optimization's caps include judging), and each
judgement's calls are metered in a scope of their own, so the judge's cost is reported apart.

A judge file (`judges/NAME.yaml`) holds one `JudgeSpec` that several prompts can name;
`check_judge` measures a judge against rows a person labelled (accuracy, Cohen's kappa).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from promptops._secrets import error_line
from promptops.errors import PromptFileError, PromptopsError
from promptops.artifact import JudgeSpec

JUDGES_FOLDER = "judges"


class JudgeFileError(PromptFileError):
    """A judge file that cannot be read or does not validate; the message names file and line."""


@dataclass(frozen=True)
class Judgement:
    """One answer as the judge scored it, and what judging it took."""

    value: Optional[str]  # as the judge wrote it: pass, fail, or 1 to 5; None when there was nothing to judge or it failed
    score: float  # in [0, 1]: pass 1, fail 0; on 1-5, (value - 1) / 4; 0 when value is None
    passed: bool
    reason: str
    judge: str  # the judge's name
    model: str
    model_calls: int = 0  # calls that reached the judge's model (cache hits are free and not counted here)
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Optional[float] = 0.0  # of the calls that reached the model; None when its price is unknown
    latency_s: float = 0.0
    error: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


# --- judge files ---------------------------------------------------------------------------


def judge_path(reference: str, root: Optional[Path] = None) -> Path:
    """`NAME` (judges/NAME.yaml) or a path, relative to the project root, as a path that exists."""
    from promptops.artifact import find_project_root

    root = root or find_project_root()
    candidate = Path(reference)
    if candidate.suffix not in (".yaml", ".yml"):
        candidate = Path(JUDGES_FOLDER) / f"{reference}.yaml"
    path = candidate if candidate.is_absolute() else root / candidate
    if not path.is_file():
        known = sorted(p.stem for p in (root / JUDGES_FOLDER).glob("*.yaml")) if (root / JUDGES_FOLDER).is_dir() else []
        hint = f"; judges here: {', '.join(known)}" if known else f"; {root / JUDGES_FOLDER} has no judge files"
        raise PromptopsError(f"no judge file {candidate}{hint}", value=reference)
    return path


def find_judge(reference: str, root: Optional[Path] = None) -> JudgeSpec:
    """A judge by file (`judges/NAME.yaml`, a name or a path), or the judge a prompt's `eval.metric` names."""
    from promptops.artifact import PROMPT_NAME, find_project_root

    root = root or find_project_root()
    try:
        return load_judge_file(judge_path(reference, root))
    except JudgeFileError:
        raise
    except PromptopsError as not_a_file:
        if Path(reference).suffix in (".yaml", ".yml") or not PROMPT_NAME.match(reference) \
                or not os.path.lexists(root / "prompts" / f"{reference}.yaml"):
            raise not_a_file from None
    from promptops.artifact import load_prompt_file, resolve_prompt_path
    from promptops.artifact import MetricSpec

    prompt = load_prompt_file(resolve_prompt_path(reference, root))  # a symlink out of the project is refused
    metric = prompt.eval.metric
    if not (isinstance(metric, MetricSpec) and metric.judge is not None):
        raise PromptopsError(f"prompt {reference!r} has no judge under eval.metric, and there is no judges/{reference}.yaml")
    if isinstance(metric.judge, str):
        return load_judge_file(judge_path(metric.judge, root))
    return metric.judge


def load_judge_file(path: str | Path) -> JudgeSpec:
    """A judge file validated as a `JudgeSpec`; its name must match the file's."""
    from promptops._text import read_utf8
    from promptops.artifact import parse_yaml_model

    path = Path(path)
    text = read_utf8(path, JudgeFileError)
    spec = parse_yaml_model(text, path, JudgeSpec, JudgeFileError,
                            not_a_mapping="a judge file must be a YAML mapping with a rubric, a model and a scale")
    if "name" not in (spec.model_fields_set or ()):
        spec = spec.model_copy(update={"name": path.stem})
    elif spec.name != path.stem:
        raise JudgeFileError(path, 1, f"name {spec.name!r} must match the file name {path.stem!r}")
    return spec


# --- running a judge -----------------------------------------------------------------------


def _text(values: Any) -> str:
    """Field values as the judge reads them: one field as its bare value, several as `name: value` lines."""
    if values is None:
        return "(no answer)"
    if isinstance(values, dict):
        if len(values) == 1:
            values = next(iter(values.values()))
        else:
            return "\n".join(f"{name}: {_text(value) if isinstance(value, dict) else _scalar(value)}" for name, value in values.items())
    return _scalar(values)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _instructions(spec: JudgeSpec, with_reference: bool) -> str:
    reference = (" The reference is a correct answer for comparison; the answer need not match it word for word."
                 if with_reference else "")
    if spec.scale == "pass_fail":
        score = "the score: pass if the answer meets the rubric, fail if it does not."
    else:
        score = "the score from 1 (does not meet the rubric at all) to 5 (fully meets it)."
    steps = (f"First give the reason for your grade in one short sentence. Then {score}" if spec.reason_first
             else f"First {score} Then give the reason in one short sentence.")
    return f"You grade one answer against a rubric.{reference}\n\nRubric: {spec.rubric.strip()}\n\n{steps}"


class Judge:
    """A `JudgeSpec` ready to score answers; the program is built on first use and shared by threads."""

    def __init__(self, spec: JudgeSpec, *, cache: bool = True):
        self.spec = spec
        self.cache = cache
        self._programs: dict[bool, Any] = {}
        self._lm: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.spec.model_id

    def _program(self, with_reference: bool) -> Any:
        with self._lock:
            if self._lm is None:
                from promptops.models import build_lm

                self._lm = build_lm(self.spec.model_spec, cache=self.cache)
            program = self._programs.get(with_reference)
            if program is None:
                program = self._programs[with_reference] = _build_program(self.spec, self._lm, with_reference)
            return program

    def score(self, inputs: dict[str, Any], predicted: Optional[dict[str, Any]],
              expected: Optional[dict[str, Any]] = None) -> Judgement:
        """The judge's score of `predicted` for `inputs` (against `expected` when given), metered on its own."""
        from promptops.models import metering

        if predicted is None:
            return Judgement(None, 0.0, False, "no answer to judge", self.spec.name, self.model)
        with_reference = bool(expected)
        program = self._program(with_reference)
        fields = {"request": _text(inputs), "answer": _text(predicted)}
        if with_reference:
            fields["reference"] = _text(expected)
        value, reason, error = None, "", None
        with metering() as meter:
            try:
                prediction = program(**fields)
                value, reason = str(prediction.score), str(prediction.reason or "").strip()
            except Exception as exc:  # one failed judgement is a 0 with its error shown, not the end of the eval
                error = error_line(exc)
        sent = [call for call in meter.calls if not call.cached]
        costs = [call.cost_usd for call in sent]
        return Judgement(
            value=value,
            score=self.spec.normalized(value) if value is not None else 0.0,
            passed=self.spec.passed(value) if value is not None else False,
            reason=reason if value is not None else f"the judge failed: {error}",
            judge=self.spec.name,
            model=self.model,
            model_calls=len(sent),
            cache_hits=meter.cache_hits,
            input_tokens=sum(call.input_tokens for call in sent),
            output_tokens=sum(call.output_tokens for call in sent),
            cost_usd=None if any(cost is None for cost in costs) else round(sum(costs), 10),  # type: ignore[arg-type]
            latency_s=round(meter.latency_s, 6),
            error=error,
        )


def _build_program(spec: JudgeSpec, lm: Any, with_reference: bool) -> Any:
    import dspy

    from promptops.program import SharedPrefixJSONAdapter

    fields: dict[str, Any] = {"request": (str, dspy.InputField(desc="what the assistant was asked"))}
    fields["answer"] = (str, dspy.InputField(desc="the assistant's answer to grade"))
    if with_reference:
        fields["reference"] = (str, dspy.InputField(desc="a correct answer, for comparison"))
    from typing import Literal

    outputs = {"reason": (str, dspy.OutputField(desc="one short sentence")),
               "score": (Literal[spec.labels], dspy.OutputField())}  # type: ignore[valid-type]
    for name in ("reason", "score") if spec.reason_first else ("score", "reason"):
        fields[name] = outputs[name]
    signature = dspy.make_signature(fields, _instructions(spec, with_reference), signature_name="Judge")
    adapter = SharedPrefixJSONAdapter(text_limits={"reason": spec.reason_chars})

    class JudgeProgram(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.predict = dspy.Predict(signature)

        def forward(self, **inputs: Any) -> Any:
            with dspy.context(lm=lm, adapter=adapter):
                return self.predict(**inputs)

    return JudgeProgram()


# --- calibration: a judge against a person's labels ----------------------------------------


@dataclass(frozen=True)
class CheckedRow:
    source: str
    human: str
    judge: Optional[str]
    reason: str


@dataclass(frozen=True)
class JudgeCheck:
    """How often a judge agrees with people on labelled rows, with the chance-corrected agreement (Cohen's kappa)."""

    judge: str
    model: str
    data: str
    n: int
    accuracy: float
    kappa: float
    kappa_weights: Optional[str]  # None (unweighted) on pass_fail; "quadratic" on 1-5
    labels: tuple[str, ...]
    confusion: dict[str, dict[str, int]]  # confusion[human][judge]; judge "error" for a failed judgement
    errors: int
    judge_calls: int
    judge_cache_hits: int
    judge_cost_usd: Optional[float]
    wall_time_s: float
    rows: tuple[CheckedRow, ...] = field(repr=False)
    run_id: Optional[str] = None

    def summary(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        data.pop("rows")
        data["disagreements"] = [asdict(row) for row in self.rows if row.judge != row.human]
        return data


def check_judge(
    spec: JudgeSpec,
    data: str | Path,
    *,
    limit: Optional[int] = None,
    cache: bool = True,
    on_progress: Optional[Callable[[int, int], None]] = None,
) -> JudgeCheck:
    """Score every labelled row of `data` with the judge and compare with the person's label."""
    import time

    rows = read_labelled_rows(spec, Path(data))[: limit if limit is not None else None]
    if not rows:
        raise PromptopsError(f"{data}: no labelled rows to check the judge on")
    judge = Judge(spec, cache=cache)
    started = time.perf_counter()
    checked, judgements = [], []
    for index, row in enumerate(rows):
        judgement = judge.score(row.inputs, row.answer, row.reference)
        judgements.append(judgement)
        checked.append(CheckedRow(row.source, row.label, judgement.value, judgement.reason))
        if on_progress:
            on_progress(index + 1, len(rows))
    labels = spec.labels
    confusion = {human: {judged: 0 for judged in (*labels, "error")} for human in labels}
    for row in checked:
        confusion[row.human][row.judge if row.judge is not None else "error"] += 1
    answered = [row for row in checked if row.judge is not None]
    weights = "quadratic" if spec.scale == "1-5" else None
    costs = [j.cost_usd for j in judgements]
    return JudgeCheck(
        judge=spec.name, model=spec.model_id, data=str(data), n=len(checked),
        accuracy=round(sum(row.judge == row.human for row in checked) / len(checked), 6),
        kappa=round(cohens_kappa([r.human for r in answered], [r.judge for r in answered], labels, weights=weights), 6),  # type: ignore[misc]
        kappa_weights=weights, labels=labels, confusion=confusion,
        errors=len(checked) - len(answered),
        judge_calls=sum(j.model_calls for j in judgements), judge_cache_hits=sum(j.cache_hits for j in judgements),
        judge_cost_usd=None if any(c is None for c in costs) else round(sum(costs), 10),  # type: ignore[arg-type]
        wall_time_s=round(time.perf_counter() - started, 3), rows=tuple(checked),
    )


def cohens_kappa(first: Sequence[str], second: Sequence[str], labels: Sequence[str], *, weights: Optional[str] = None) -> float:
    """Cohen's kappa of two raters over `labels` (scikit-learn's); 0 with fewer than two rows or one label used by both alike."""
    if len(first) < 2:
        return 0.0
    from sklearn.metrics import cohen_kappa_score

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # perfect agreement on one label divides 0 by 0: sklearn warns and gives nan
        value = cohen_kappa_score(list(first), list(second), labels=list(labels), weights=weights)
    return 0.0 if value != value else float(value)


@dataclass(frozen=True)
class LabelledRow:
    source: str
    inputs: dict[str, Any]
    answer: dict[str, Any]
    reference: Optional[dict[str, Any]]
    label: str


def read_labelled_rows(spec: JudgeSpec, path: Path) -> list[LabelledRow]:
    """JSONL rows `{"inputs": {...}, "answer": {...}, "reference": {...}?, "label": ...}`; a bad row fails with its line."""
    from promptops.errors import DatasetError

    if path.suffix != ".jsonl":
        raise DatasetError(path, None, "labelled rows for a judge check must be a .jsonl file")
    if not path.is_file():
        raise DatasetError(path, None, "no such file")
    from promptops.evaluation._data import read_rows

    rows = []
    for line, row in read_rows(path):
        unknown = sorted(set(row) - {"inputs", "answer", "reference", "label", "note"})
        if unknown:
            raise DatasetError(path, line, f"unknown key {unknown[0]!r}: a row has inputs, answer, label and optionally reference")
        for key in ("inputs", "answer", "label"):
            if key not in row:
                raise DatasetError(path, line, f"missing {key!r}")
        for key in ("inputs", "answer", "reference"):
            if key in row and row[key] is not None and not isinstance(row[key], dict):
                raise DatasetError(path, line, f"{key} must be an object of field values, e.g. {{\"summary\": \"...\"}}")
        rows.append(LabelledRow(f"{path.name}:{line}", row["inputs"], row["answer"], row.get("reference") or None,
                                _label(spec, row["label"], path, line)))
    return rows


def _label(spec: JudgeSpec, value: Any, path: Path, line: int) -> str:
    from promptops.errors import DatasetError

    if spec.scale == "pass_fail" and isinstance(value, bool):
        return "pass" if value else "fail"
    text = str(value).strip().lower()
    if text not in spec.labels or (spec.scale == "1-5" and isinstance(value, bool)):
        allowed = "pass or fail (or true/false)" if spec.scale == "pass_fail" else "an integer from 1 to 5"
        raise DatasetError(path, line, f"label {value!r} is not on {spec.name}'s {spec.scale} scale: use {allowed}")
    return text
