"""Prompt files: loading, validation errors with file and line, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptops.artifact import load_prompt_file, parse_prompt, resolve_prompt_path, write_prompt_file
from promptops.errors import PromptFileError, UnknownPromptError

GOOD = """\
name: sentiment
instructions: |
  Label the review.
  Be brief.
inputs:
  - name: review
outputs:
  - name: label
    type: enum
    values: [positive, negative]
  - name: details
    type: object
    nullable: true
    fields:
      - name: aspect
        nullable: true
      - name: stars
        type: integer
demos:
  - review: great
    label: positive
    details: {aspect: null, stars: 5}
model:
  id: local/smollm2-135m
  temperature: 0.2
  max_tokens: 64
  price: {input_per_million_usd: 1.5, output_per_million_usd: 2}
config:
  retries: 2
"""


def test_examples_in_the_repo_load(repo_root: Path) -> None:
    for path in sorted((repo_root / "prompts").glob("*.yaml")):
        prompt = load_prompt_file(path)
        assert prompt.name == path.stem
        assert prompt.inputs and prompt.outputs


def test_a_full_prompt_loads_with_types_enums_and_nested_objects() -> None:
    prompt = parse_prompt(GOOD)
    label, details = prompt.outputs
    assert label.values == ["positive", "negative"]
    assert details.fields[1].type == "integer"
    assert prompt.model.price.output_per_million_usd == 2
    assert prompt.config == {"retries": 2}
    assert prompt.check_example({"review": "x", "label": "negative", "details": None}) is None
    assert "label" in prompt.check_example({"review": "x", "label": "meh", "details": None})
    assert "stars" in prompt.check_example({"review": "x", "label": "positive", "details": {"aspect": "a", "stars": "many"}})


def test_round_trip_through_yaml_keeps_content_and_hash(tmp_path: Path) -> None:
    prompt = parse_prompt(GOOD)
    path = write_prompt_file(prompt, tmp_path / "sentiment.yaml")
    again = load_prompt_file(path)
    assert again == prompt
    assert again.content_hash == prompt.content_hash
    assert "instructions: |" in path.read_text()  # multi-line text stays a readable block
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_content_hash_changes_with_content_not_formatting() -> None:
    prompt = parse_prompt(GOOD)
    reformatted = parse_prompt(GOOD.replace("temperature: 0.2", "temperature:    0.2"))
    assert reformatted.content_hash == prompt.content_hash
    assert parse_prompt(GOOD.replace("Be brief.", "Be short.")).content_hash != prompt.content_hash


@pytest.mark.parametrize(
    ("change", "line", "words"),
    [
        (("type: enum", "type: enumm"), 9, "outputs[0].type"),
        (("instructions: |", "instruction: |"), 2, "unknown key 'instruction'"),
        (("  - name: review\n", "  - name: review\n   bad: [\n"), 7, "not valid YAML"),
        (("max_tokens: 64", "max_tokens: 0"), 26, "max_tokens"),
        (("    label: positive\n", "    label: great\n"), 20, "demos[0]"),
        (("  retries: 2", "  retries: 2\n    x: 1\n  y: 2"), 30, "not valid YAML"),
        (("    values: [positive, negative]\n", ""), 8, "needs a non-empty `values`"),
        (("temperature: 0.2", "temperature: 0.2\n  params: {api_key: sk-123}"), 26, "secret"),
    ],
)
def test_bad_files_name_file_line_and_problem(change: tuple[str, str], line: int, words: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(PromptFileError) as caught:
        parse_prompt(text, "prompts/sentiment.yaml")
    message = str(caught.value)
    assert message.startswith(f"prompts/sentiment.yaml:{line}: "), message
    assert words in message
    assert "\n" not in message


def test_params_may_name_token_counts_but_not_secrets() -> None:
    prompt = parse_prompt(GOOD.replace("temperature: 0.2", "temperature: 0.2\n  params: {max_tokens_per_call: 5, top_p: 0.9}"))
    assert prompt.model.params["top_p"] == 0.9
    for secret in ("api_key", "HF_TOKEN", "client_secret"):
        with pytest.raises(PromptFileError, match="looks like a secret"):
            parse_prompt(GOOD.replace("temperature: 0.2", f"temperature: 0.2\n  params: {{{secret}: x}}"))


def test_missing_required_key_is_reported() -> None:
    with pytest.raises(PromptFileError, match="required key 'outputs' is missing"):
        parse_prompt("name: x\ninstructions: hi\ninputs: [{name: a}]\n", "p.yaml")


def test_file_name_must_match_prompt_name(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(GOOD)
    with pytest.raises(PromptFileError, match=r"other.yaml:1: name 'sentiment' must match the file name 'other'"):
        load_prompt_file(path)


def test_unknown_prompt_lists_the_known_ones(project: Path) -> None:
    with pytest.raises(UnknownPromptError, match="unknown prompt 'nope'; known prompts: banking_agent, banking_intent, banking_summary, restaurant_booking"):
        resolve_prompt_path("nope")
    assert resolve_prompt_path("banking_intent") == project / "prompts" / "banking_intent.yaml"


def test_an_atomic_write_keeps_the_file_mode_and_a_new_file_gets_the_umasks(tmp_path) -> None:
    import os
    import stat

    from promptops.artifact import atomic_write_text

    existing = tmp_path / "shared.yaml"
    existing.write_text("a: 1\n")
    existing.chmod(0o644)
    atomic_write_text(existing, "a: 2\n")
    assert stat.S_IMODE(existing.stat().st_mode) == 0o644 and existing.read_text() == "a: 2\n"
    umask = os.umask(0o022)
    try:
        new = atomic_write_text(tmp_path / "new.yaml", "b: 1\n")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
