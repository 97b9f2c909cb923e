"""Prompt files: the pydantic models, YAML read and write, and errors with file and line.

A prompt is one YAML file, `prompts/NAME.yaml`: one file is one git-diffable unit, so
every commit that touches it is a version of the prompt and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from promptops.errors import PromptFileError, PromptReferenceError, UnknownPromptError
from promptops.artifact._metric_spec import MetricField, metric_name, score_range
from promptops.artifact._tools import ToolError, resolve_tools
from promptops.artifact._agent_spec import AgentSpec, GuardrailsSpec, ToolSpec
from promptops._text import read_utf8
from promptops.artifact._yaml import line_of, parse_yaml_model
from promptops.artifact._base import Strict
from promptops.artifact._files import PROMPT_NAME, atomic_write_text, check_prompt_file, find_project_root
from promptops.artifact._model_spec import ModelSpec

FieldTypeName = Literal["string", "integer", "number", "boolean", "enum", "list", "object"]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FieldSpec(Strict):
    """One input or output field; `values` for enums, `items` for lists, `fields` for objects."""

    name: str
    type: FieldTypeName = "string"
    description: str = ""
    values: Optional[list[str]] = None
    items: Optional["FieldSpec"] = None
    fields: Optional[list["FieldSpec"]] = None
    nullable: bool = False

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, name: str) -> str:
        if not _IDENTIFIER.match(name) or keyword.iskeyword(name):
            raise ValueError(f"field name {name!r} must be a Python identifier (letters, digits, _)")
        return name

    @model_validator(mode="after")
    def _shape_matches_type(self) -> "FieldSpec":
        if self.type == "enum" and not self.values:
            raise ValueError(f"enum field {self.name!r} needs a non-empty `values` list of labels")
        if self.type == "enum" and self.values:
            _check_labels(self.name, self.values, self.nullable)
        if self.type != "enum" and self.values is not None:
            raise ValueError(f"field {self.name!r} has `values` but is not of type enum")
        if self.type == "object" and not self.fields:
            raise ValueError(f"object field {self.name!r} needs a non-empty `fields` list")
        if self.type != "object" and self.fields is not None:
            raise ValueError(f"field {self.name!r} has `fields` but is not of type object")
        if self.type != "list" and self.items is not None:
            raise ValueError(f"field {self.name!r} has `items` but is not of type list")
        if self.fields:
            _check_unique([f.name for f in self.fields], f"field {self.name!r}")
        return self

    @cached_property
    def python_type(self) -> Any:
        """The Python type DSPy and pydantic see: Literal for enums, a model for objects."""
        base: Any
        if self.type == "string":
            base = str
        elif self.type == "integer":
            base = int
        elif self.type == "number":
            base = float
        elif self.type == "boolean":
            base = bool
        elif self.type == "enum":
            base = Literal[tuple(self.values or ())]
        elif self.type == "list":
            base = list[(self.items.python_type if self.items else str)]
        else:
            members = {f.name: (f.python_type, Field(description=f.description or None)) for f in self.fields or ()}
            base = create_model(_class_name(self.name), __config__=ConfigDict(extra="forbid"), **members)
        return Optional[base] if self.nullable else base

    @cached_property
    def adapter(self) -> Any:
        from pydantic import TypeAdapter

        return TypeAdapter(self.python_type)


class GateSpec(Strict):
    """How promote, check and the optimizer decide that a candidate may replace a version (promptops.evaluation._gate)."""

    rule: Literal["non_inferior", "not_worse", "superior"] = "non_inferior"
    tolerance: float = Field(0.02, ge=0, le=1)  # in units of the primary metric
    confidence: float = Field(0.95, gt=0.5, lt=1)


class EvalSpec(Strict):
    """The prompt's default eval set, the metric its gate compares, and the score `promptops check` requires."""

    data: Optional[str] = None
    metric: MetricField = None  # a name, or a judge or similarity mapping (promptops.artifact._metric_spec)
    threshold: Optional[float] = None  # the primary metric's floor on the gate split
    gate: Optional[GateSpec] = None  # None: the default rule (GateSpec())

    @model_validator(mode="after")
    def _threshold_within_the_scores(self) -> "EvalSpec":
        """A floor the metric can never reach (`threshold: 60` for a share) would fail every check, whatever the prompt."""
        bounds = score_range(self.metric)
        if self.threshold is None or bounds is None:
            return self
        low, high = bounds
        name = metric_name(self.metric) or "accuracy or f1"
        threshold = self.threshold
        if low <= threshold <= high:
            return self
        if name == "judge" or Path(name).suffix in (".yaml", ".yml"):  # a judge, or a judge file
            raise ValueError(f"threshold: {threshold:g} is outside 0 to 1, the range of judge scores (pass 1, fail 0; a 1-5"
                             " score s counts (s - 1) / 4, so 4 is 0.75)")
        if high < threshold <= 100:
            raise ValueError(f"threshold: {threshold:g} is above {high:g}, the best {name} score: write {threshold:g}% as"
                             f" {threshold / 100:g}")
        raise ValueError(f"threshold: {threshold:g} is outside {low:g} to {high:g}, the range of {name} scores")


class Prompt(Strict):
    """A versionable prompt: instructions, typed fields, demos, model and agent config."""

    name: str
    description: str = ""
    instructions: str
    inputs: list[FieldSpec] = Field(min_length=1)
    outputs: list[FieldSpec] = Field(min_length=1)
    demos: list[dict[str, Any]] = Field(default_factory=list)
    model: ModelSpec = Field(default_factory=ModelSpec)
    config: dict[str, Any] = Field(default_factory=dict)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    guardrails: GuardrailsSpec = Field(default_factory=GuardrailsSpec)
    tools: list[ToolSpec] = Field(default_factory=list)  # an agent's tools; none for a single-call prompt
    agent: Optional[AgentSpec] = None  # the agent's loop; the defaults when tools are given without it

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, name: str) -> str:
        if not PROMPT_NAME.match(name):
            raise ValueError(f"prompt name {name!r} must be lowercase letters, digits, '_' or '-'")
        return name

    @field_validator("instructions")
    @classmethod
    def _instructions_say_something(cls, instructions: str) -> str:
        if not instructions.strip():
            raise ValueError("the text is blank: write what the model should do with the inputs")
        return instructions

    @model_validator(mode="after")
    def _fields_and_demos_agree(self) -> "Prompt":
        _check_unique([f.name for f in self.inputs + self.outputs], "inputs and outputs")
        for index, demo in enumerate(self.demos):
            problem = self.check_example(demo)
            if problem:
                raise ValueError(f"demos[{index}]: {problem}")
        if self.agent is not None and not self.tools:
            raise ValueError("agent: an agent needs tools: list them under `tools:` (module:function each), or remove `agent:`")
        seen_tools: set[str] = set()
        for index, tool in enumerate(self.tools):
            if tool.tool_name in seen_tools:
                raise ValueError(f"tools[{index}]: a second tool named {tool.tool_name!r}; give one of them another `name:`")
            seen_tools.add(tool.tool_name)
        for index, demo in enumerate(self.loop.demos):
            problem = self.check_step_demo(demo, seen_tools)
            if problem:
                raise ValueError(f"agent.demos[{index}]: {problem}")
        if self.guardrails.output.min_confidence is not None and not any(_chooses_a_label(spec) for spec in self.outputs):
            raise ValueError("guardrails.output.min_confidence: no output field is an enum or a boolean, so no answer has a"
                             " label confidence to check; remove it, or make the routing field `type: enum`")
        return self

    @property
    def is_agent(self) -> bool:
        """A prompt with tools runs as an agent (DSPy ReAct); one without is a single model call."""
        return bool(self.tools)

    @property
    def loop(self) -> AgentSpec:
        """The agent's loop settings, the defaults where the file has no `agent:` section."""
        return self.agent or AgentSpec()

    def tool(self, name: str) -> Optional[ToolSpec]:
        return next((tool for tool in self.tools if tool.tool_name == name), None)

    def check_step_demo(self, demo: dict[str, Any], tools: set[str]) -> Optional[str]:
        """The first way a step demo fails: every input, the trajectory so far, and a step choosing a known tool."""
        problem = self.check_example(demo, outputs=False)
        if problem:
            return problem
        for key in ("trajectory", "next_thought", "next_tool_name", "next_tool_args"):
            if key not in demo:
                return f"missing {key!r} (a step demo holds the inputs, the trajectory so far and the step taken)"
        if demo["next_tool_name"] not in tools | {"finish"}:
            return f"next_tool_name {demo['next_tool_name']!r} is not a tool of this agent (nor finish)"
        if not isinstance(demo["next_tool_args"], dict):
            return "next_tool_args must be a mapping of argument values"
        return None

    def field(self, name: str) -> FieldSpec:
        return next(f for f in self.inputs + self.outputs if f.name == name)

    @property
    def label_fields(self) -> list[str]:
        """Top-level outputs that choose among known values (enum, boolean): every model that reports confidence covers them."""
        return [spec.name for spec in self.outputs if spec.type in ("enum", "boolean")]

    def check_example(self, example: dict[str, Any], *, inputs: bool = True, outputs: bool = True) -> Optional[str]:
        """The first way `example` fails the prompt's fields, or None if it fits."""
        wanted = (self.inputs if inputs else []) + (self.outputs if outputs else [])
        for spec in wanted:
            if spec.name not in example:
                kind = "input" if spec in self.inputs else "output"
                return f"missing {kind} field {spec.name!r}"
            try:
                spec.adapter.validate_python(example[spec.name])
            except ValidationError as exc:
                return f"field {spec.name!r}: {_first_error(exc)}"
        return None

    @property
    def content_hash(self) -> str:
        """Identity of the content, independent of YAML formatting."""
        data = self.model_dump(mode="json")
        if self.guardrails == GuardrailsSpec():
            del data["guardrails"]  # sections added after a version was written do not change its identity
        for later in ("tools", "agent"):  # likewise an agent's sections, on a prompt that has none
            if not data.get(later):
                del data[later]
        for later in ("threshold", "gate"):  # likewise fields added later, while unset
            if data["eval"].get(later) is None:
                del data["eval"][later]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def with_changes(self, **changes: Any) -> "Prompt":
        """A validated copy, e.g. with another model or new demos."""
        return Prompt.model_validate({**self.model_dump(), **changes})

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_defaults=True)
        data = {"name": self.name, **data}
        return yaml.dump(data, Dumper=_BlockStyleDumper, sort_keys=False, allow_unicode=True, width=100)


FieldSpec.model_rebuild()


class _BlockStyleDumper(yaml.SafeDumper):
    """Multi-line text (instructions) as `|` blocks, so diffs stay readable."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockStyleDumper.add_representer(str, _represent_text)


def _check_unique(names: list[str], where_: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"field name {name!r} appears twice in {where_}")
        seen.add(name)


def _check_labels(name: str, labels: list[str], nullable: bool) -> None:
    """An enum chooses: two labels at least (one and null, when nullable), each listed once."""
    if len(labels) == 1 and not nullable:
        raise ValueError(f"values: enum field {name!r} has one label ({labels[0]!r}), so there is nothing to choose; add the"
                         " other labels, make it nullable (the label or null), or make it type: string")
    for index, label in enumerate(labels):
        if label in labels[:index]:
            raise ValueError(f"values[{index}]: label {label!r} repeats values[{labels.index(label)}]; list each label once")


def _chooses_a_label(spec: FieldSpec) -> bool:
    """An enum or boolean field, or an object holding one: what a label confidence is reported for."""
    return spec.type in ("enum", "boolean") or any(_chooses_a_label(field) for field in spec.fields or ())


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) or "Value"


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    return f"{location}: {message}" if location else message


def written_values(prompt: Prompt, *, model: bool = True, metric: bool = True, data: bool = True) -> dict[tuple[Any, ...], str]:
    """The values of a prompt file that other packages check (its model string and parameter names, metric, judge, eval
    set), by their place in the file, for `errors_placed_in`; `model=False` (metric, data) leaves out one a caller
    overrides (`--model`)."""
    values: dict[tuple[Any, ...], str] = {("model", "params", key): key for key in prompt.model.params}  # sent on any model
    if model:
        values[("model", "id")] = prompt.model.id
    if data and prompt.eval.data:
        values[("eval", "data")] = prompt.eval.data
    spec = prompt.eval.metric if metric else None
    if isinstance(spec, str):
        values[("eval", "metric")] = spec
    elif spec is not None and spec.judge is not None:
        if isinstance(spec.judge, str):
            values[("eval", "metric", "judge")] = spec.judge
        elif isinstance(spec.judge.model, str):
            values[("eval", "metric", "judge", "model")] = spec.judge.model
        else:
            values[("eval", "metric", "judge", "model", "id")] = spec.judge.model_id
    return values


# --- reading and writing -------------------------------------------------------------


def parse_prompt(text: str, path: str | Path = "<string>") -> Prompt:
    """Validate YAML text as a prompt; errors carry the file and the line at fault."""
    return parse_yaml_model(
        text, path, Prompt, PromptFileError,
        not_a_mapping="a prompt file must be a YAML mapping with name, instructions, inputs and outputs",
    )


def load_prompt_file(path: str | Path) -> Prompt:
    path = Path(path)
    try:
        text = read_utf8(path, PromptFileError)
    except FileNotFoundError:
        check_prompt_file(path)  # a broken symlink says so
        raise UnknownPromptError(f"{path}: no such prompt file") from None
    prompt = parse_prompt(text, path)
    if path.suffix in (".yaml", ".yml") and path.stem != prompt.name:
        raise PromptFileError(path, line_of(yaml.compose(text), ("name",)), f"name {prompt.name!r} must match the file name {path.stem!r}")
    if prompt.is_agent:  # a tool that does not import, or does not take the arguments the file describes
        try:
            resolve_tools(prompt, find_project_root(path.resolve().parent))
        except ToolError as exc:
            raise PromptFileError(path, line_of(yaml.compose(text), exc.loc), str(exc)) from None
    return prompt


def write_prompt_file(prompt: Prompt, path: str | Path) -> Path:
    """Write atomically: a crash leaves the old file or the new one, never half of one.

    An existing file is edited in place (promptops.artifact._edit): only the values that changed are
    rewritten, so the author's comments, key order and layout stay and the git diff shows the
    change alone; a file that already says `prompt` is not touched at all. A new file, or one
    that is not a valid prompt, is written whole from `prompt.to_yaml()`.
    """
    path = Path(path)
    text = _edited_prompt_text(prompt, path)
    if text is None:
        return path
    return atomic_write_text(path, text)


def _edited_prompt_text(prompt: Prompt, path: Path) -> Optional[str]:
    """The new text of the file, or None when it already holds exactly `prompt`."""
    from ruamel.yaml import YAMLError

    from promptops.artifact._edit import edit_yaml_text

    try:
        old_text = path.read_text(encoding="utf-8")
        old = parse_prompt(old_text, path)
    except (FileNotFoundError, UnicodeDecodeError, PromptFileError):
        return prompt.to_yaml()
    before, after = old.model_dump(mode="json"), prompt.model_dump(mode="json")
    if _as_json(before) == _as_json(after):
        return None

    def reads_as_prompt(text: str) -> bool:
        try:
            return _as_json(parse_prompt(text, path).model_dump(mode="json")) == _as_json(after)
        except PromptFileError:
            return False

    try:
        text = edit_yaml_text(old_text, before, after, compact=prompt.model_dump(mode="json", exclude_defaults=True),
                              check=reads_as_prompt)
    except YAMLError:
        text = None
    return text if text is not None else prompt.to_yaml()  # correct content beats kept formatting


def _as_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class PromptListing:
    """One file in `prompts/`: the prompt, or the one sentence (file:line) saying why it cannot be read."""

    name: str
    path: Path
    prompt: Optional[Prompt]
    error: Optional[str]

    def summary(self) -> dict[str, Any]:
        prompt = self.prompt
        return {"name": self.name, "path": str(self.path), "model": prompt.model.id if prompt else None,
                "outputs": [f.name for f in prompt.outputs] if prompt else None, "demos": len(prompt.demos) if prompt else None,
                "description": prompt.description if prompt else None, "error": self.error}


def list_prompts(root: str | Path | None = None) -> list[PromptListing]:
    """Every prompt file of the project, by name; a broken file is listed with its error, not raised."""
    folder = (Path(root) if root else find_project_root()) / "prompts"
    listings = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            check_prompt_file(path, folder.parent)  # a folder, a broken symlink, a link out of the project
            listings.append(PromptListing(path.stem, path, load_prompt_file(path), None))
        except (PromptFileError, PromptReferenceError) as exc:
            listings.append(PromptListing(path.stem, path, None, str(exc)))
    return listings
