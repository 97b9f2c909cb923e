"""Writing a new version into a prompt file a person wrote: only the changed values move, comments and layout stay."""

from __future__ import annotations

import difflib
import json
import shutil
import re
from pathlib import Path

import pytest

from promptops.artifact import Prompt, load_prompt_file, parse_prompt, write_prompt_file


def commented_banking_intent(repo_root: Path, folder: Path) -> Path:
    """The real banking_intent prompt with comments in the places people put them."""
    text = (repo_root / "prompts" / "banking_intent.yaml").read_text()
    for old, new in [
        ("name: banking_intent\n", "# Routes online-banking messages; owned by the support team.\nname: banking_intent\n"),
        ("instructions: |\n", "# Keep the instructions short: the model is tiny.\ninstructions: |\n"),
        ("  - name: text\n", "  - name: text  # as the customer typed it\n"),
        ("model:\n", "\n# Greedy decoding: do not raise the temperature.\nmodel:\n"),
        ("  temperature: 0.0\n", "  temperature: 0.0  # greedy\n"),
    ]:
        assert old in text
        text = text.replace(old, new, 1)
    path = folder / "banking_intent.yaml"
    path.write_text(text + "# end of banking_intent\n")
    return path


def comment_lines(text: str) -> list[str]:
    """The comments, in order (the test files have no `#` inside values)."""
    return [line[line.index("#"):] for line in text.splitlines() if "#" in line]


def block(lines: list[str], key: str) -> range:
    """The lines of a top-level key and its value, up to the next line at column 0 that is not a list item."""
    start = next(index for index, line in enumerate(lines) if line.startswith(f"{key}:"))
    end = next((index for index in range(start + 1, len(lines)) if lines[index][:1] not in (" ", "-", "")), len(lines))
    return range(start, end)


def changes(before: str, after: str) -> list[tuple[range, range]]:
    """The old and new line ranges of each change, as `git diff` would show them."""
    opcodes = difflib.SequenceMatcher(None, before.splitlines(), after.splitlines(), autojunk=False).get_opcodes()
    return [(range(i1, i2), range(j1, j2)) for tag, i1, i2, j1, j2 in opcodes if tag != "equal"]


def changed_line_count(before: str, after: str) -> int:
    return sum(len(old) + len(new) for old, new in changes(before, after))


def only_within(before: str, after: str, keys: list[str]) -> None:
    """Every changed line, old and new, lies inside the blocks of `keys`."""
    old_lines, new_lines = before.splitlines(), after.splitlines()
    old_blocks = [block(old_lines, key) for key in keys if any(line.startswith(f"{key}:") for line in old_lines)]
    new_blocks = [block(new_lines, key) for key in keys if any(line.startswith(f"{key}:") for line in new_lines)]
    for old, new in changes(before, after):
        assert all(any(index in b for b in old_blocks) for index in old), [old_lines[i] for i in old]
        assert all(any(index in b for b in new_blocks) for index in new), [new_lines[i] for i in new]


def demos_from(repo_root: Path, name: str, count: int) -> list[dict]:
    lines = (repo_root / "experiments" / "data" / name / "train.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:count]]


def test_a_winner_with_new_demos_and_instructions_keeps_comments_order_and_defaults(repo_root: Path, tmp_path: Path) -> None:
    path = commented_banking_intent(repo_root, tmp_path)
    before = path.read_text()
    base = load_prompt_file(path)
    winner = base.with_changes(demos=demos_from(repo_root, "banking_intent", 3),
                               instructions=base.instructions + "Answer with the label alone.\n")

    write_prompt_file(winner, path)
    after = path.read_text()

    assert load_prompt_file(path).content_hash == winner.content_hash
    assert comment_lines(after) == comment_lines(before)
    assert "  temperature: 0.0  # greedy\n" in after  # a value equal to the default stays where the author wrote it
    keys = [line.split(":")[0] for line in after.splitlines() if line[:1].isalpha()]
    assert keys == ["name", "description", "instructions", "inputs", "outputs", "demos", "model", "eval"]
    assert "instructions: |\n" in after
    only_within(before, after, ["instructions", "demos"])
    assert [(len(old), len(new)) for old, new in changes(before, after)] == [(0, 1), (0, 7)]  # one line, one block added
    assert "demos:\n  - text: " in after  # new sections follow the file's own indentation
    # the comment above `model:` stays above it, after the inserted demos
    assert "\n\n# Greedy decoding: do not raise the temperature.\nmodel:\n" in after


def test_new_demos_replace_old_ones_line_by_line_with_nulls_written_as_null(repo_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "restaurant_booking.yaml"
    text = re.sub(r"(?m)^demos:\n(?: .*\n)*", "", (repo_root / "prompts" / "restaurant_booking.yaml").read_text())
    text = text.replace("model:\n", "# two demos were enough in March\ndemos: []\n# local by default\nmodel:\n", 1)
    path.write_text(text.replace("outputs:\n", "outputs:  # each one copied as written\n", 1))
    base = load_prompt_file(path)
    first, second = demos_from(repo_root, "restaurant_booking", 8)[6:8]

    write_prompt_file(base.with_changes(demos=[first, second]), path)
    two = path.read_text()
    assert "demos:\n  - text: " in two and "    people: null\n" in two
    assert comment_lines(two) == comment_lines(text.replace("outputs:\n", "outputs:  # each one copied as written\n"))
    assert load_prompt_file(path).demos == [first, second]

    winner = base.with_changes(demos=[first, {**second, "time": "8pm"}],
                               instructions=base.instructions.replace("Use null", "Write null"))
    write_prompt_file(winner, path)
    three = path.read_text()
    assert load_prompt_file(path).content_hash == winner.content_hash
    assert [len(old) for old, _ in changes(two, three)] == [1, 1]  # the instructions' second line and one demo value
    only_within(two, three, ["instructions", "demos"])

    write_prompt_file(winner.with_changes(demos=[]), path)
    emptied = path.read_text()
    assert "demos:" not in emptied and "# local by default\nmodel:\n" in emptied
    assert load_prompt_file(path).demos == []


def test_a_new_model_id_changes_one_line(repo_root: Path, tmp_path: Path) -> None:
    path = commented_banking_intent(repo_root, tmp_path)
    before = path.read_text()
    base = load_prompt_file(path)
    winner = base.with_changes(model={**base.model.model_dump(), "id": "local/gemma3-270m"})
    write_prompt_file(winner, path)
    after = path.read_text()
    assert changed_line_count(before, after) == 2
    assert "  id: local/gemma3-270m\n" in after
    assert load_prompt_file(path).content_hash == winner.content_hash


def test_a_winner_equal_to_the_file_writes_nothing(repo_root: Path, tmp_path: Path) -> None:
    path = commented_banking_intent(repo_root, tmp_path)
    before, stat = path.read_bytes(), path.stat()
    write_prompt_file(load_prompt_file(path), path)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_file_in_another_layout_keeps_it(tmp_path: Path) -> None:
    """Unindented lists, flow style, `True`, `~` and quotes: ruamel would rewrite some of them; only the changed line moves."""
    text = """\
name: sentiment
instructions: "Label the review."
inputs:
- name: review
  nullable: True
outputs:
- name: label
  type: enum
  values: [positive,  negative]
demos:
- {review: great, label: positive}
- review: ~
  label: negative
model:
  id: 'local/smollm2-135m'
  temperature: 0.2
  price:
    input_per_million_usd: 1.5
    output_per_million_usd: 2
config: {retries: 2}
"""
    path = tmp_path / "sentiment.yaml"
    path.write_text(text)
    base = load_prompt_file(path)

    write_prompt_file(base.with_changes(model={**base.model.model_dump(), "id": "local/other"}), path)
    assert changes(text, path.read_text()) == [(range(14, 15), range(14, 15))]
    assert "  id: 'local/other'\n" in path.read_text()  # the author's quotes stay

    write_prompt_file(base.with_changes(instructions="Label the review.\nBe brief.\n"), path)
    assert 'instructions: "Label' not in path.read_text() and "instructions: |\n  Label the review.\n  Be brief.\n" in path.read_text()

    cheaper = base.with_changes(model={**base.model.model_dump(), "price": None},
                                demos=[{"review": "great", "label": "positive"}, {"review": "yes", "label": "positive"}])
    write_prompt_file(cheaper, path)
    after = path.read_text()
    assert load_prompt_file(path) == cheaper
    assert "price" not in after and "  temperature: 0.2\n" in after and "  nullable: True\n" in after
    assert "- review: 'yes'\n" in after  # YAML 1.1 would read a plain yes as true


def test_a_missing_or_broken_file_is_written_whole(tmp_path: Path) -> None:
    prompt = parse_prompt("name: fresh\ninstructions: Say hi.\ninputs: [{name: text}]\noutputs: [{name: reply}]\n")
    path = write_prompt_file(prompt, tmp_path / "fresh.yaml")
    assert path.read_text() == prompt.to_yaml()
    path.write_text("name: fresh\ninstructions: [unclosed\n")
    write_prompt_file(prompt, path)
    assert path.read_text() == prompt.to_yaml()


@pytest.mark.parametrize("name", ["banking_intent", "restaurant_booking"])
def test_the_example_prompts_take_new_demos_as_an_added_block(repo_root: Path, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    # As shipped, without the demos restaurant_booking comes with: a prompt that has none gains a block.
    path.write_text(re.sub(r"(?m)^demos:\n(?: .*\n)*", "", (repo_root / "prompts" / f"{name}.yaml").read_text()))
    before = path.read_text()
    winner: Prompt = load_prompt_file(path).with_changes(demos=demos_from(repo_root, name, 2))
    write_prompt_file(winner, path)
    [(old, new)] = changes(before, path.read_text())
    assert len(old) == 0 and path.read_text().splitlines()[new.start] == "demos:"
    assert load_prompt_file(path).content_hash == winner.content_hash


def test_model_params_are_changed_added_and_removed_key_by_key(repo_root: Path, tmp_path: Path) -> None:
    path = commented_banking_intent(repo_root, tmp_path)
    path.write_text(path.read_text().replace("  max_tokens: 32\n", "  max_tokens: 32\n  params:\n    top_p: 0.9  # nucleus\n    stop: null\n"))
    before = path.read_text()
    base = load_prompt_file(path)
    winner = base.with_changes(model={**base.model.model_dump(), "params": {"top_p": 0.8, "repeat_penalty": 1.1}})
    write_prompt_file(winner, path)
    after = path.read_text()
    assert load_prompt_file(path) == winner
    assert "    top_p: 0.8  # nucleus\n    repeat_penalty: 1.1\n" in after and "stop" not in after
    assert changed_line_count(before, after) == 4
    assert comment_lines(after) == comment_lines(before)
