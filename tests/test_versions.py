"""Versions from git: numbering, resolving refs, reading old text, diffs, commits and tags, and the CLI."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from promptops.artifact import load_prompt_file
from promptops.artifact import diff_prompts
from promptops.errors import NothingToCommitError, PromptFileError, RepositoryError, UnknownVersionError
from promptops.versioning._git import (
    commit_paths,
    delete_tag,
    has_uncommitted_changes,
    load_prompt_at,
    open_repo,
    parse_prompt_ref,
    prompt_versions,
    read_text_at,
    relative_path,
    reset_paths_to,
    resolve_version,
    tag,
    undo_commit,
)

DEMO = "demos:\n  - text: When will my new card arrive?\n    intent: card_arrival\n"
EXTRA_INSTRUCTION = "  Answer with the label only, nothing else.\n"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.fixture()
def history(git_project, commit_all):
    """banking_intent with four versions and one unrelated commit between v3 and v4.

    v1 example project, v2 one more instruction line, v3 a demo, (README only), v4 temperature 0.7.
    """
    repo = git_project
    root = Path(repo.working_tree_dir)
    prompt = root / "prompts" / "banking_intent.yaml"
    edit(prompt, "inputs:\n", EXTRA_INSTRUCTION + "inputs:\n")
    commit_all("Ask for the label only\n\nThe model kept explaining itself.", date="2026-11-21T10:00:00+01:00")
    edit(prompt, "model:\n", DEMO + "model:\n")
    commit_all("Add a card_arrival demo", date="2026-11-22T10:00:00+00:00")
    (root / "README.md").write_text("# A project\n")
    commit_all("Document the project", date="2026-11-23T10:00:00+00:00")
    edit(prompt, "temperature: 0.0", "temperature: 0.7")
    commit_all("Warmer sampling", date="2026-11-25T10:00:00+00:00")
    return repo, prompt


# --- reading history ---------------------------------------------------------------------


def test_every_commit_that_changed_the_file_is_a_version(history) -> None:
    repo, prompt = history
    versions = prompt_versions(prompt)
    assert [v.label for v in versions] == ["v1", "v2", "v3", "v4"]
    assert [v.message for v in versions] == ["Example project", "Ask for the label only", "Add a card_arrival demo", "Warmer sampling"]
    assert versions[-1].commit == repo.head.commit.hexsha and versions[-1].short == repo.head.commit.hexsha[:8]
    assert versions[1].date == datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc) and versions[1].date.tzinfo
    assert versions[0].author == "Ada Lovelace <ada@example.com>"


def test_a_prompt_never_committed_has_no_versions(git_project) -> None:
    new = Path(git_project.working_tree_dir) / "prompts" / "new_prompt.yaml"
    new.write_text("name: new_prompt\n")
    assert prompt_versions(new) == []
    with pytest.raises(UnknownVersionError, match="no committed versions yet"):
        resolve_version(new, "v1")


def test_resolve_by_number_sha_tag_branch_and_relative_ref(history) -> None:
    repo, prompt = history
    v1, v2, v3, v4 = prompt_versions(prompt)
    assert resolve_version(prompt, "v2") == v2
    assert resolve_version(prompt, v3.short) == v3
    assert resolve_version(prompt, v3.commit) == v3
    assert resolve_version(prompt, "HEAD") == v4
    assert resolve_version(prompt, "HEAD~1") == v3  # the README commit: v3 was still in effect
    assert resolve_version(prompt, "HEAD~2") == v3
    repo.create_tag("reviewed", ref=v2.commit, message="reviewed")
    assert resolve_version(prompt, "reviewed") == v2
    assert resolve_version(prompt, repo.active_branch.name) == v4


def test_unknown_versions_say_what_exists(history) -> None:
    _, prompt = history
    with pytest.raises(UnknownVersionError, match=r"prompt 'banking_intent' has no version v9; it has v1\.\.v4"):
        resolve_version(prompt, "v9")
    with pytest.raises(UnknownVersionError, match="neither a version"):
        resolve_version(prompt, "no-such-branch")
    with pytest.raises(UnknownVersionError, match="neither a version"):
        resolve_version(prompt, "--all")
    with pytest.raises(UnknownVersionError, match="is a channel of prompt"):
        resolve_version(prompt, "production")


def test_a_ref_from_before_the_file_existed(history, commit_all) -> None:
    repo, _ = history
    root = Path(repo.working_tree_dir)
    later = root / "prompts" / "later.yaml"
    later.write_text((root / "prompts" / "banking_intent.yaml").read_text().replace("name: banking_intent", "name: later"))
    commit_all("Add a later prompt")
    assert resolve_version(later, "HEAD").number == 1
    with pytest.raises(UnknownVersionError, match="did not exist at HEAD~1"):
        resolve_version(later, "HEAD~1")


def test_read_and_load_at_a_version(history) -> None:
    _, prompt = history
    v1, v2, v3, v4 = prompt_versions(prompt)
    assert EXTRA_INSTRUCTION not in read_text_at(prompt, v1.commit)
    assert EXTRA_INSTRUCTION in read_text_at(prompt, v2.commit)
    assert read_text_at(prompt, v4.commit) == prompt.read_text()  # byte for byte, final newline included
    assert load_prompt_at(prompt, v2.commit).demos == []
    assert load_prompt_at(prompt, v3.commit).demos == [{"text": "When will my new card arrive?", "intent": "card_arrival"}]
    assert load_prompt_at(prompt, v4.commit) == load_prompt_file(prompt)


def test_a_broken_old_version_names_file_commit_and_line(history) -> None:
    repo, prompt = history
    edit(prompt, "  - name: text\n", "  - name: text\n   oops: [\n")
    sha = commit_paths(repo, [prompt], "Break the file")
    with pytest.raises(PromptFileError, match=rf"prompts/banking_intent\.yaml@{sha[:8]}:8: not valid YAML"):
        load_prompt_at(prompt, sha)


def test_paths_and_refs() -> None:
    assert parse_prompt_ref("banking_intent@v2") == ("banking_intent", "v2")
    assert parse_prompt_ref("banking_intent@HEAD@{1}") == ("banking_intent", "HEAD@{1}")
    assert parse_prompt_ref("banking_intent") == ("banking_intent", None)
    with pytest.raises(UnknownVersionError, match="NAME@VERSION"):
        parse_prompt_ref("banking_intent@")


def test_outside_a_repository(project: Path) -> None:
    with pytest.raises(RepositoryError, match="not inside a git repository"):
        open_repo(project / "prompts" / "banking_intent.yaml")


def test_relative_path_is_posix_and_inside(git_project, tmp_path: Path) -> None:
    root = Path(git_project.working_tree_dir)
    assert relative_path(git_project, root / "prompts" / "banking_intent.yaml") == "prompts/banking_intent.yaml"
    with pytest.raises(RepositoryError, match="outside the git repository"):
        relative_path(git_project, tmp_path / "elsewhere.yaml")


# --- diffs -------------------------------------------------------------------------------


def test_diff_names_instructions_demos_and_model(history) -> None:
    _, prompt = history
    v1, v2, v3, v4 = (load_prompt_at(prompt, v.commit) for v in prompt_versions(prompt))
    assert diff_prompts(v1, v1) == []
    changes = {change.section: change for change in diff_prompts(v1, v3)}
    assert set(changes) == {"instructions", "demos"}
    assert changes["instructions"].summary == "instructions changed: 1 line added, 0 removed"
    assert "+Answer with the label only, nothing else." in changes["instructions"].detail
    assert "@@" in changes["instructions"].detail
    assert changes["demos"].summary == "demos: 0 → 1 (1 added)"
    assert changes["demos"].detail.startswith("+ demos[0]: ") and "card_arrival" in changes["demos"].detail
    (model,) = diff_prompts(v3, v4)
    assert (model.section, model.summary, model.detail) == ("model", "model: temperature 0.0 → 0.7", "temperature: 0.0 → 0.7")


def test_diff_names_fields_enum_values_and_config(history) -> None:
    _, prompt = history
    old = load_prompt_at(prompt, prompt_versions(prompt)[1].commit)  # v2: no demos to break
    intent = old.outputs[0].model_copy(update={"values": [*old.outputs[0].values[:-1], "refund"]})
    confidence = {"name": "confidence", "type": "number"}
    new = old.with_changes(outputs=[intent.model_dump(), confidence], config={"retries": 2},
                           model={**old.model.model_dump(), "id": "openai/gpt-4o-mini", "params": {"top_p": 0.9}})
    changes = {change.section: change for change in diff_prompts(old, new)}
    assert set(changes) == {"outputs", "model", "config"}
    assert changes["outputs"].summary == "outputs: added 'confidence'; changed 'intent'"
    assert "+ confidence: number" in changes["outputs"].detail
    assert "~ intent: values added: refund; values removed: apple_pay_or_google_pay" in changes["outputs"].detail
    assert "id: local/smollm2-135m → openai/gpt-4o-mini" in changes["model"].detail
    assert "params.top_p: added 0.9" in changes["model"].detail
    assert changes["config"].summary == "config: retries added 2"


# --- changing history --------------------------------------------------------------------


def test_commit_paths_commits_exactly_those_paths(history) -> None:
    repo, prompt = history
    root = Path(repo.working_tree_dir)
    edit(prompt, "temperature: 0.7", "temperature: 0.2")
    (root / "prompts" / "other.yaml").write_text("name: other\n")
    (root / "README.md").unlink()
    (root / "experiments" / "data" / "README.md").write_text("unrelated, not to be committed\n")
    sha = commit_paths(repo, [prompt, root / "prompts" / "other.yaml", root / "README.md", root / "never.yaml"], "Cooler")
    assert sha == repo.head.commit.hexsha
    assert sorted(repo.head.commit.stats.files) == ["README.md", "prompts/banking_intent.yaml", "prompts/other.yaml"]
    assert prompt_versions(prompt)[-1].commit == sha and prompt_versions(prompt)[-1].label == "v5"
    assert not has_uncommitted_changes(prompt)
    assert has_uncommitted_changes(root / "experiments" / "data" / "README.md")
    with pytest.raises(NothingToCommitError, match="nothing to commit: prompts/banking_intent.yaml unchanged"):
        commit_paths(repo, [prompt], "Again")


def test_has_uncommitted_changes(history) -> None:
    repo, prompt = history
    assert not has_uncommitted_changes(prompt)
    edit(prompt, "temperature: 0.7", "temperature: 0.1")
    assert has_uncommitted_changes(prompt)
    repo.git.add("--all")
    edit(prompt, "temperature: 0.1", "temperature: 0.7")
    assert has_uncommitted_changes(prompt)  # staged, though the work tree matches HEAD again
    repo.git.reset("--quiet")
    assert not has_uncommitted_changes(prompt)
    untracked = prompt.with_name("untracked.yaml")
    untracked.write_text("name: untracked\n")
    assert has_uncommitted_changes(untracked)


def test_tags_are_annotated_idempotent_and_never_moved(history) -> None:
    repo, prompt = history
    v1, v2, *_ = prompt_versions(prompt)
    tag(repo, "banking_intent/approved", v1.commit, "approved by review")
    tag(repo, "banking_intent/approved", v1.short, "approved again")  # same commit: nothing to do
    assert repo.tags["banking_intent/approved"].tag.message == "approved by review"
    assert resolve_version(prompt, "banking_intent/approved") == v1
    with pytest.raises(RepositoryError, match=f"already marks {v1.short}, not {v2.short}"):
        tag(repo, "banking_intent/approved", v2.commit, "moved")
    with pytest.raises(RepositoryError, match="could not create tag"):
        tag(repo, "bad..name", v1.commit, "invalid")
    delete_tag(repo, "banking_intent/approved")
    delete_tag(repo, "banking_intent/approved")
    assert "banking_intent/approved" not in [t.name for t in repo.tags]


def test_reset_undoes_a_commit_and_keeps_other_changes(history) -> None:
    repo, prompt = history
    root = Path(repo.working_tree_dir)
    before = repo.head.commit.hexsha
    edit(prompt, "temperature: 0.7", "temperature: 0.3")
    sha = commit_paths(repo, [prompt], "Try 0.3")
    notes = root / "notes.txt"
    notes.write_text("work in progress\n")
    with pytest.raises(RepositoryError, match="HEAD moved"):
        reset_paths_to(repo, before, expected_head=before)
    reset_paths_to(repo, before, expected_head=sha)
    assert repo.head.commit.hexsha == before
    assert "temperature: 0.7" in prompt.read_text() and not has_uncommitted_changes(prompt)
    assert notes.read_text() == "work in progress\n"
    with pytest.raises(RepositoryError, match="not an ancestor of HEAD"):
        reset_paths_to(repo, sha)


def test_undo_commit_only_undoes_its_own_paths(history) -> None:
    repo, prompt = history
    root = Path(repo.working_tree_dir)
    before = repo.head.commit.hexsha
    channels = root / "prompts" / "banking_intent.channels.yaml"
    channels.write_text("production: 4\n")
    commit_paths(repo, [channels], "Promote v4")
    undo_commit(repo, before, [channels])
    assert repo.head.commit.hexsha == before and not channels.exists()
    channels.write_text("production: 4\n")
    commit_paths(repo, [channels], "Promote v4")
    (root / "README.md").write_text("someone else\n")
    commit_paths(repo, [root / "README.md"], "Someone else's commit")
    with pytest.raises(RepositoryError, match="they also change README.md"):
        undo_commit(repo, before, [channels])


def test_reset_refuses_to_overwrite_uncommitted_edits_of_the_same_file(history) -> None:
    repo, prompt = history
    before = repo.head.commit.hexsha
    edit(prompt, "temperature: 0.7", "temperature: 0.3")
    sha = commit_paths(repo, [prompt], "Try 0.3")
    edit(prompt, "temperature: 0.3", "temperature: 0.4")
    with pytest.raises(RepositoryError, match="git could not reset"):
        reset_paths_to(repo, before)
    assert repo.head.commit.hexsha == sha and "temperature: 0.4" in prompt.read_text()


# --- the command line --------------------------------------------------------------------


def test_versions_command(history, run) -> None:
    result = run("versions", "banking_intent")
    assert result.exit_code == 0, result.output
    for words in ("banking_intent: 4 versions", "v4", "Warmer sampling", "2026-11-25"):
        assert words in result.stdout, words
    listed = json.loads(run("versions", "banking_intent", "--json").stdout)
    assert [v["version"] for v in listed] == ["v1", "v2", "v3", "v4"]
    assert listed[3]["message"] == "Warmer sampling" and listed[3]["date"].startswith("2026-11-25T10:00:00")


def test_version_table_takes_extra_columns(history, capsys: pytest.CaptureFixture[str]) -> None:
    from promptops.reports import tables as render

    _, prompt = history
    render.version_table("banking_intent", prompt_versions(prompt), extra_columns={"channel": {2: "production"}})
    table = capsys.readouterr().out
    assert "channel" in table
    assert [line for line in table.splitlines() if "production" in line][0].split()[0] == "v2"


def test_show_prints_the_file_as_it_was(history, run) -> None:
    _, prompt = history
    v1 = prompt_versions(prompt)[0]
    result = run("show", "banking_intent@v1")
    assert result.exit_code == 0, result.output
    header, _, body = result.stdout.partition("\n")
    assert header == f"# banking_intent v1 ({v1.short}, 2026-11-20, Ada Lovelace <ada@example.com>): Example project"
    assert body == read_text_at(prompt, v1.commit)
    assert yaml.safe_load(result.stdout)["name"] == "banking_intent"  # the header is a comment
    working = run("show", "banking_intent")
    assert working.stdout.startswith("# banking_intent (working file prompts/banking_intent.yaml)")


def test_diff_command(history, run) -> None:
    result = run("diff", "banking_intent@v1", "banking_intent@v3")
    assert result.exit_code == 0, result.output
    for words in ("banking_intent v1", "→ banking_intent v3", "2 changes", "instructions changed",
                  "+Answer with the label only", "demos: 0 → 1 (1 added)"):
        assert words in result.stdout, words
    changes = json.loads(run("diff", "banking_intent@v3", "banking_intent", "--json").stdout)
    assert [c["section"] for c in changes] == ["model"]
    assert "no differences" in run("diff", "banking_intent@v4", "banking_intent").stdout


@pytest.mark.parametrize("args, words", [
    (("show", "banking_intent@v9"), ("has no version v9; it has v1..v4",)),
    (("diff", "banking_intent@v1", "banking_intent@nope"), ("'nope' is neither a version",)),
    (("show", "banking_intent@staging"), ("banking_intent has no staging version yet",)),
    (("show", "no_such_prompt@v1"), ("unknown prompt 'no_such_prompt'",)),
    (("versions", "no_such_prompt"), ("unknown prompt 'no_such_prompt'", "banking_intent")),
])
def test_command_errors(history, args, words, run, assert_one_line_error) -> None:
    assert_one_line_error(run(*args), *words)


def test_commands_outside_a_repository(project: Path, run, assert_one_line_error) -> None:
    assert_one_line_error(run("versions", "banking_intent"), "not inside a git repository")
    assert_one_line_error(run("show", "banking_intent@v1"), "not inside a git repository")
