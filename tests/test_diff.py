"""`promptops diff` on the guardrails section: caps, limits and fallbacks named with old and new values."""

from __future__ import annotations

import json
from pathlib import Path


from promptops.artifact import load_prompt_file
from promptops.artifact import PromptChange, diff_prompts

NAME = "banking_intent"


def test_a_changed_cost_cap_is_a_guardrails_change(project: Path) -> None:
    prompt = load_prompt_file(project / "prompts" / f"{NAME}.yaml")
    old = prompt.with_changes(guardrails={"cost_cap": {"session_usd": 0.5}})
    new = prompt.with_changes(guardrails={"cost_cap": {"session_usd": 1.0}})
    assert diff_prompts(old, new) == [PromptChange(
        "guardrails", "guardrails: cost_cap.session_usd 0.5 → 1.0", "cost_cap.session_usd: 0.5 → 1.0")]


def test_guardrails_added_removed_and_changed_keys(project: Path) -> None:
    prompt = load_prompt_file(project / "prompts" / f"{NAME}.yaml")
    old = prompt.with_changes(guardrails={"cost_cap": {"per_key_usd": 2.0}, "input": {"max_chars": 500}})
    new = prompt.with_changes(guardrails={
        "input": {"max_chars": 800, "deny": ["ignore (all )?previous"]},
        "rate_limit": {"per_minute": 30},
        "fallback": [{"version": "previous"}],
        "timeout_s": None,
    })
    (change,) = diff_prompts(old, new)
    assert change.section == "guardrails"
    assert change.detail.splitlines() == [
        "cost_cap.per_key_usd: removed (was 2.0)",
        'fallback: [] → [{"version": "previous"}]',  # an unset target (model: null) is left out
        'input.deny: [] → ["ignore (all )?previous"]',
        "input.max_chars: 500 → 800",
        "rate_limit.burst: added 1",  # the default a new rate limit gets
        "rate_limit.per_minute: added 30.0",
        "timeout_s: removed (was 60.0)",
    ]
    assert change.summary.startswith("guardrails: cost_cap.per_key_usd removed (was 2.0); fallback [] → ")


def test_guardrails_written_out_at_their_defaults_are_no_change(project: Path) -> None:
    prompt = load_prompt_file(project / "prompts" / f"{NAME}.yaml")
    assert diff_prompts(prompt, prompt.with_changes(guardrails={"output": {"retries": 1}, "timeout_s": 60})) == []


def test_diff_command_shows_a_cost_cap_change(git_project, run, commit_all) -> None:
    path = Path(git_project.working_tree_dir) / "prompts" / f"{NAME}.yaml"
    original = path.read_text()
    path.write_text(original + "guardrails:\n  cost_cap:\n    session_usd: 0.5\n")
    commit_all("Cap a session at 50 cents", date="2026-11-21T10:00:00+00:00")
    path.write_text(original + "guardrails:\n  cost_cap:\n    session_usd: 1.0\n")

    result = run("diff", f"{NAME}@v2", NAME)
    assert result.exit_code == 0, result.output
    for words in ("1 change", "guardrails: cost_cap.session_usd 0.5 → 1.0", "cost_cap.session_usd: 0.5 → 1.0"):
        assert words in result.stdout, words
    changes = json.loads(run("diff", f"{NAME}@v1", NAME, "--json").stdout)
    assert changes == [{"section": "guardrails", "summary": "guardrails: cost_cap.session_usd added 1.0",
                        "detail": "cost_cap.session_usd: added 1.0"}]
