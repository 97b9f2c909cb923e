"""Prompt and agent files: what users write, read with the file and line of every mistake.

The pydantic models (one `Strict` base): `Prompt` with its fields, `ModelSpec` (a leaf the
judges and experiments share), the metric spec (a name, a judge or similarity), the guardrails,
tool and agent sections; YAML read/edit/write; tool references and their resolution; diffs.
Nothing here imports DSPy, MLflow or git at import time.
"""

from __future__ import annotations

from promptops.artifact._agent_spec import AgentSpec, GuardrailsSpec, ToolSpec
from promptops.artifact._base import Strict
from promptops.artifact._diff import PromptChange, diff_prompts
from promptops.artifact._files import PROMPT_NAME, atomic_write_text, check_prompt_file, find_project_root, resolve_prompt_path
from promptops.artifact._metric_spec import (
    BUILTIN_METRICS, JudgeSpec, MetricField, MetricSpec, SimilaritySpec, metric_name, score_range,
)
from promptops.artifact._model_spec import DEFAULT_MODEL, ModelSpec, Price
from promptops.artifact._prompt import (
    EvalSpec, FieldSpec, GateSpec, Prompt, PromptListing, list_prompts, load_prompt_file, parse_prompt, write_prompt_file,
    written_values,
)
from promptops.artifact._tools import ResolvedTool, ToolError, resolve_tools
from promptops.artifact._yaml import (
    compose_and_load, errors_placed_in, format_loc, line_of, parse_yaml_model, place_in_file, safe_load,
)

__all__ = [
    "AgentSpec", "BUILTIN_METRICS", "DEFAULT_MODEL", "PROMPT_NAME", "EvalSpec", "FieldSpec", "GateSpec", "GuardrailsSpec", "JudgeSpec",
    "MetricField", "MetricSpec", "ModelSpec", "Price", "Prompt", "PromptChange", "PromptListing", "ResolvedTool", "SimilaritySpec",
    "Strict", "ToolError", "ToolSpec", "atomic_write_text", "check_prompt_file", "compose_and_load", "diff_prompts", "errors_placed_in",
    "find_project_root", "format_loc", "line_of", "list_prompts", "load_prompt_file", "metric_name", "parse_prompt", "parse_yaml_model",
    "place_in_file", "resolve_prompt_path", "resolve_tools", "safe_load", "score_range", "write_prompt_file", "written_values",
]
