"""Secrets never reach MLflow, logs or printed errors (issue 25): the detector masks every real-shaped secret of the
corpus (`promptops.testing.secret_corpus`, generated at run time) and keeps every look-alike (commit SHAs, run and trace
ids, model names, prose...); and everything an eval, a traced request, an agent's failing tool, the Prompt Registry,
feedback, an audit and a study write to MLflow passes it."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptops._secrets import (
    ANCHORED_GITLEAKS_RULES,
    MASK,
    Detector,
    credential_in,
    detector,
    error_line,
    find_secrets,
    go_pattern,
    redact,
    redact_data,
    redact_mapping,
    redact_yaml,
)
from promptops.testing import KINDS, lookalike_samples, secret_samples

SECRETS = secret_samples(seed=25)
LOOKALIKES = lookalike_samples(seed=25)


def leaked(secret: str, text: str) -> bool:
    """The secret, or the middle half of it, is still in the text."""
    return secret in text or secret[len(secret) // 4: 3 * len(secret) // 4] in text


# --- the detector ------------------------------------------------------------------------------


def test_the_corpus_is_the_size_the_issue_asks_for() -> None:
    assert len(SECRETS) >= 40 and len({sample.kind for sample in SECRETS}) >= 15 and len(LOOKALIKES) >= 40
    for kind in ("password-assignment", "pwd-colon", "stripe-secret-key", "huggingface-token", "slack-bot-token",
                 "google-api-key", "jwt"):
        assert kind in KINDS
    assert secret_samples(seed=25) == SECRETS and secret_samples(seed=26) != SECRETS  # seeded: the same ones each run


@pytest.mark.parametrize("sample", SECRETS, ids=[f"{sample.kind}-{index % 2}" for index, sample in enumerate(SECRETS)])
def test_each_secret_shape_is_masked(sample) -> None:
    clean = redact(sample.text)
    assert not leaked(sample.secret, clean), clean
    assert MASK in clean


@pytest.mark.parametrize("sample", LOOKALIKES, ids=[f"{sample.kind}-{index}" for index, sample in enumerate(LOOKALIKES)])
def test_each_lookalike_is_kept(sample) -> None:
    assert redact(sample.text) == sample.text, [finding.rule for finding in find_secrets(sample.text)]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("password=hunter2", "password=***"),
        ("my pwd: s3cret!", "my pwd: ***"),
        ('{"password": "correct horse", "user": "ada"}', '{"password": "***", "user": "ada"}'),
        ("db_password: correcthorse", "db_password: ***"),
        ("psql failed: user=app password=b&zg!YJ1 host=db", "psql failed: user=app password=*** host=db"),
        ("GET /v1?token=abc123XYZ&page=2", "GET /v1?token=***&page=2"),
        ("export OPENAI_API_KEY=not-in-a-known-shape", "export OPENAI_API_KEY=***"),
        ("GET https://ada:hunter2@host/v1 with Bearer abc123def456", "GET https://***@host/v1 with Bearer ***"),
        ("Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b", "Authorization: Token ***"),
    ],
)
def test_named_secrets_are_masked_and_their_names_kept(text: str, masked: str) -> None:
    assert redact(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens: 32", "token: 32", "max_token=512", "Password: forgotten", "Forgot password? Click here",
        "api_key = ${OPENAI_API_KEY}", "password: ***", "token = entry[slot]", "page_token=token", "PWD=/home/ada",
        "api_key_env: OPENAI_API_KEY", "db_password: correcthorse battery staple", "Basic questions about the 2 cards",
        "postgresql://postgres@127.0.0.1:5432/mlflow",
        "cache_key: 3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c2e4b6d8f0a3f2a9c1e5b7d4a6f8e0c2b4d",
        "key_hash=3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c2e",
    ],
)
def test_values_that_only_sound_secret_are_kept(text: str) -> None:
    assert redact(text) == text, [finding.rule for finding in find_secrets(text)]


def test_redacting_twice_changes_nothing_more() -> None:
    for sample in SECRETS:
        once = redact(sample.text)
        assert redact(once) == once


def test_every_gitleaks_rule_and_allowlist_compiles_in_python() -> None:
    fresh = Detector.from_file()
    assert len(fresh.rules) > 220  # gitleaks' rules with a regex and keywords, and promptops' own
    for rule in fresh.rules:
        assert rule.pattern.pattern
        for allowlist in rule.allowlists:
            assert allowlist.regexes is not None


@pytest.mark.parametrize(
    ("go", "python"),
    [
        (r"\b(p8e-(?i)[a-z0-9]{32})", r"\b(p8e-(?i:[a-z0-9]{32}))"),
        (r"a(?i)b|c", r"a(?i:b)|(?i:c)"),
        (r"(?i)start", r"(?i)start"),
        (r"\b(pat[[:alnum:]]{14})\b", r"\b(pat[a-zA-Z0-9]{14})\b"),
        (r"x(?:\B|\s|\z)", r"x(?:\B|\s|\Z)"),
        (r"""(sk_live_\w+)(?:[\x60'"\s;]|\\[nr]|$)""", r"""(sk_live_\w+)(?:[\x60'"\s;.,:!?)\]}>|&\\]|$)"""),
    ],
)
def test_gitleaks_expressions_are_translated_to_pythons_syntax(go: str, python: str) -> None:
    assert go_pattern(go) == python
    re.compile(python)


def test_anchored_rules_find_what_a_scan_of_the_whole_text_finds() -> None:
    """The rules tried only where a keyword starts (their keywords are common words) lose nothing: each of their
    alternatives begins with one of their keywords, so they find every secret a scan with gitleaks' own expression
    finds (and more where a scan's earlier match ran over the next key: `access code, credential: ...`)."""
    import tomllib

    from promptops._secrets import RULES_FILE

    original = {spec["id"]: spec["regex"] for spec in tomllib.loads(RULES_FILE.read_text())["rules"] if "regex" in spec}
    rules = {rule.id: rule for rule in detector().rules}
    texts = [sample.text for sample in SECRETS] + [sample.text for sample in LOOKALIKES] + [
        "config: secret_key = 'AbCdEf0123456789XyZ' ; auth_token: Zx9Yw8Vu7Ts6Rq5Po4", "PASSWORD=\"Tr0ub4dor&3x9\"",
        "the access code, credential: Qm93IG5vdyBicm93biBjb3c, api: NzY1NDMyMTA5ODc2NTQz",
        "password = \"aB3dE6gH9jK2\"", "administrator_login_password = \"Azure9876543\""]
    assert set(ANCHORED_GITLEAKS_RULES) <= set(rules)
    found = {rule_id: 0 for rule_id in (*ANCHORED_GITLEAKS_RULES, "secret-assignment")}
    for rule_id in (*ANCHORED_GITLEAKS_RULES, "secret-assignment"):
        rule = rules[rule_id]
        assert rule.anchored
        scanning = type(rule)(rule.id, original.get(rule_id, rule.source), rule.keywords, entropy=rule.entropy, secret_group=rule.secret_group,
                              allowlists=rule.allowlists, flags=rule.flags, lead=rule.lead, keep=rule.keep,
                              value_groups=rule.value_groups, gitleaks=rule.gitleaks)
        for text in texts:
            lowered = text.lower()
            starts = {keyword: [match.start() for match in re.finditer(re.escape(keyword), lowered)]
                      for keyword in rule.keywords}
            anchored = list(rule.findings(text, lowered, starts, detector().global_allowlist))
            scanned = list(scanning.findings(text, lowered, starts, detector().global_allowlist))
            assert {(f.start, f.end) for f in anchored} >= {(f.start, f.end) for f in scanned}, (rule_id, text)
            found[rule_id] += len(scanned)
    assert all(found.values()), found  # each rule found something to compare


def test_environment_secrets_and_key_shapes_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", "abcdef123456")
    text = "401 for key abcdef123456 and sk-proj-AAAAAAAAAAAA from the provider"
    assert redact(text) == f"401 for key {MASK} and {MASK} from the provider"
    monkeypatch.setenv("MY_SERVICE_API_KEY", "changed-value-42")  # the environment is read again once it changes
    assert redact("401 for key changed-value-42") == f"401 for key {MASK}"
    assert redact("401 for key abcdef123456") == "401 for key abcdef123456"


def test_mappings_drop_credential_names_but_keep_token_counts() -> None:
    clean = redact_mapping({"api_key": "x", "HF_TOKEN": "y", "max_tokens": 32, "model": "openai/gpt-4o-mini",
                            "headers": {"X-Note": "password=hunter2"}})
    assert clean == {"max_tokens": 32, "model": "openai/gpt-4o-mini", "headers": {"X-Note": "password=***"}}


def test_data_keeps_its_keys_and_masks_the_values_of_secret_names() -> None:
    value = {"inputs": {"text": "where is my card", "db_password": "correct horse", "client_secret": ["a", "b"]},
             "max_tokens": 32, "intent": "card_arrival", "api_key": None}
    assert redact_data(value) == {"inputs": {"text": "where is my card", "db_password": MASK, "client_secret": [MASK, MASK]},
                                  "max_tokens": 32, "intent": "card_arrival", "api_key": None}


def test_yaml_stays_loadable_and_a_tools_error_line_is_masked() -> None:
    from promptops.artifact import safe_load

    stripe = next(sample.secret for sample in SECRETS if sample.kind == "stripe-secret-key")
    assert safe_load(redact_yaml(f"name: x\nnote: {stripe}\n")) == {"name": "x", "note": MASK}
    line = error_line(ConnectionError(f"vault login failed for svc: password=Hunter2-Leak! key {stripe}"))
    assert line == f"ConnectionError: vault login failed for svc: password={MASK} key {MASK}"


@pytest.mark.parametrize("sample", [s for s in SECRETS if s.kind in ("stripe-secret-key", "huggingface-token", "jwt",
                                                                      "slack-bot-token", "google-api-key")][::2],
                         ids=lambda sample: sample.kind)
def test_a_prompt_files_params_refuse_each_shape_naming_the_rule(sample) -> None:
    found = credential_in({"extra_body": {"metadata": {"note": sample.text}}})
    assert found is not None
    place, why = found
    assert place == ("extra_body", "metadata", "note") and why.startswith("the value looks like a secret (")


def test_a_printed_error_is_masked(project: Path) -> None:
    from promptops.cli import main

    hf = next(sample.secret for sample in SECRETS if sample.kind == "huggingface-token")
    result = CliRunner().invoke(main, ["show", hf])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert hf not in result.output and MASK in result.output


def test_log_records_are_masked_once_the_cli_scrubs_them(repo_root: Path) -> None:
    """What MLflow, DSPy or LiteLLM log to the CLI's terminal: message and traceback masked (in a process of its own:
    the scrubber changes Python's log record factory for good)."""
    import subprocess
    import sys

    slack = next(sample.secret for sample in SECRETS if sample.kind == "slack-bot-token")
    code = textwrap.dedent(f"""
        import logging
        from promptops._secrets import scrub_log_records
        scrub_log_records(); scrub_log_records()
        logging.getLogger("LiteLLM").warning("auth failed for %s", {slack!r})
        try:
            raise ConnectionError("login failed: password=Hunter2-Leak!")
        except ConnectionError:
            logging.getLogger("mlflow.tracing").exception("export failed, run %s", "0123456789abcdef0123456789abcdef")
    """)
    completed = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=60,
                               env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert completed.returncode == 0, completed.stderr
    assert f"auth failed for {MASK}" in completed.stderr and slack not in completed.stderr
    assert "export failed, run 0123456789abcdef0123456789abcdef" in completed.stderr
    assert f"ConnectionError: login failed: password={MASK}" in completed.stderr and "Hunter2-Leak" not in completed.stderr


# --- everything that reaches MLflow -------------------------------------------------------------

LEAKY_TOOL = '''\
"""A tool whose backend fails with its credentials in the message, as a careless client library does."""

MESSAGES = {messages!r}


def open_vault(customer_id: str) -> str:
    """Open the customer's vault record."""
    raise ConnectionError(f"vault login failed for {{customer_id}}: " + " | ".join(MESSAGES))
'''

LEAKY_AGENT = """\
name: leaky_agent
description: An agent whose one tool fails with credentials in its error.
instructions: |
  Call open_vault for the customer, then finish.
{notes}
inputs:
  - name: text
  - name: customer_id
outputs:
  - name: intent
    type: enum
    values: [card_arrival, lost_or_stolen_card]
model:
  id: scripted/leaky-agent
  max_tokens: 64
tools:
  - function: leaky_vault_tools:open_vault
agent:
  max_steps: 3
eval:
  data: experiments/data/leaky_agent
  metric: accuracy
"""


def _agent_script(request):
    if "next_tool_name" in request.outputs:
        if "open_vault" in request.message and "Execution error" in request.message:
            return {"next_thought": "The vault failed; I finish.", "next_tool_name": "finish", "next_tool_args": {}}
        return {"next_thought": "I open the vault.", "next_tool_name": "open_vault", "next_tool_args": {"customer_id": "C-1001"}}
    return {name: ("card_arrival" if name == "intent" else "done") for name in request.outputs}


def _context(secret: str, content: str) -> str:
    middle = secret[len(secret) // 4: 3 * len(secret) // 4]
    at = content.find(middle)
    return content[max(0, at - 150): at + len(middle) + 60]


def _stored_texts(tmp_path: Path) -> dict[str, str]:
    """Everything the sqlite store and its artifacts hold, file by file (the database as text, bytes it cannot decode
    replaced): params, tags, metrics, runs, traces, spans, assessments, registry versions and artifact files."""
    files = [*tmp_path.glob("mlflow.db*"), *(path for path in (tmp_path / "mlartifacts").rglob("*") if path.is_file())]
    return {str(path.relative_to(tmp_path)): path.read_bytes().decode("utf-8", errors="replace") for path in files}


def test_no_secret_reaches_mlflow_from_an_eval_a_trace_an_agent_the_registry_feedback_an_audit_or_a_study(
        project: Path, mlflow_store: str, scripted_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each shape of the corpus, placed in eval inputs, a model's error, a prompt's instructions, a tool's error,
    served requests, feedback and the optimizer's records, is absent from every param, tag, metric name, artifact
    file and trace (spans, events, trace info, request metadata) in the store; the look-alikes in the same places stay."""
    import mlflow

    import promptops
    from promptops import tracking
    from promptops.runtime import flush_traces, record_feedback

    samples = secret_samples(seed=2025, per_kind=1)
    # Look-alikes in the same eval rows stay as they are (those JSON writes no escape in).
    lookalikes = [sample.text for sample in LOOKALIKES if not set(sample.text) & set('"/\\')]
    failing = samples[0].text  # the model fails on this one, quoting it

    def answer(request):
        text = request.inputs.get("text", "")
        if text == failing.strip():
            raise RuntimeError(f"provider said 401 for the request {text}")
        return {"intent": "card_arrival"}

    scripted_model("leaky", answer, prompts=("banking_intent",))
    scripted_model("leaky-agent", _agent_script)

    # The prompt's instructions and eval rows hold every secret shape.
    prompt_file = project / "prompts" / "banking_intent.yaml"
    notes = "\n".join(f"  Note {index}: {line}" for index, sample in enumerate(samples) for line in sample.text.splitlines())
    text = prompt_file.read_text()
    prompt_file.write_text(text.replace("instructions: |\n", f"instructions: |\n{notes}\n", 1))
    data = project / "experiments" / "data" / "leaky"
    data.mkdir(parents=True)
    (data / "dev.jsonl").write_text("".join(json.dumps({"text": text, "intent": "card_arrival"}) + "\n"
                                            for text in [sample.text for sample in samples] + lookalikes))
    result = promptops.evaluate("banking_intent", data=str(data))
    assert result.n == len(samples) + len(lookalikes) and result.errors == 1

    # Served requests, one failing, and feedback on one of them.
    program = promptops.load("banking_intent")
    for sample in samples[1:6]:
        program(text=sample.text)
    with pytest.raises(Exception):
        program(text=failing)
    flush_traces()
    traced = tracking.search_traces("banking_intent")
    assert len(traced) == 6
    record_feedback(traced[0].trace_id, correct=False, expected={"intent": samples[7].text})

    # An agent whose tool fails with credentials in its message: a served request and an eval.
    (project / "leaky_vault_tools.py").write_text(LEAKY_TOOL.format(messages=[sample.text for sample in samples]))
    (project / "prompts" / "leaky_agent.yaml").write_text(LEAKY_AGENT.format(notes=textwrap.indent(samples[9].text, "  ")))
    agent_data = project / "experiments" / "data" / "leaky_agent"
    agent_data.mkdir(parents=True)
    (agent_data / "dev.jsonl").write_text(json.dumps({"text": samples[3].text, "customer_id": "C-1001", "intent": "card_arrival"}) + "\n")
    promptops.load("leaky_agent")(text=samples[4].text, customer_id="C-1001")
    flush_traces()
    agent_result = promptops.evaluate("leaky_agent")
    assert agent_result.examples[0].tool_calls and "Execution error" in agent_result.examples[0].tool_calls[0]["result"]

    # The registry, an audit run and a study's runs.
    prompt = promptops.load_prompt("banking_intent")
    tracking.register_prompt_version(prompt, git_commit="0123456789abcdef0123456789abcdef01234567", label="v1",
                                     metrics={"accuracy": 1.0})
    tracking.log_audit("banking_intent", {"action": "promote", "channel": "production", "from": "v1", "to": "v2",
                                          "reason": samples[11].text, "gate": {"note": samples[12].text}})
    parent = tracking.start_study_run("banking_intent", "leaky-study", {"instructions": samples[13].text, "demos": 2})
    tracking.log_trial(parent, "leaky-study", 0, "COMPLETE", {"instructions": samples[14].text}, {"accuracy": 1.0},
                       prompt.to_yaml())
    tracking.log_front(parent, {"instructions": [samples[15].text], "accuracy": [1.0]}, None,
                       {"winner": samples[16].text}, {"front_size": 1.0})

    stored = _stored_texts(Path(mlflow_store.removeprefix("sqlite:///")).parent)
    assert any(name.endswith("predictions.json") for name in stored) and any("traces" in name or "db" in name for name in stored)
    leaks = [(sample.kind, name) for sample in samples for name, content in stored.items() if leaked(sample.secret, content)]
    assert leaks == [], [(kind, name, _context(sample.secret, stored[name])) for sample in samples for kind, name in leaks
                         if kind == sample.kind][:6]
    commit = "0123456789abcdef0123456789abcdef01234567"
    kept = [*lookalikes, commit, result.prompt_hash, traced[0].trace_id, "card_arrival"]
    assert [value for value in kept if not any(value in content for content in stored.values())] == []

    # Through MLflow's own API too: params, tags and metric names of every run; every trace whole.
    client = mlflow.MlflowClient()
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            logged = json.dumps([run.data.params, run.data.tags, list(run.data.metrics)])
            assert not [sample.kind for sample in samples if leaked(sample.secret, logged)]
        for trace in mlflow.search_traces(locations=[experiment.experiment_id], return_type="list"):
            whole = mlflow.get_trace(trace.info.trace_id).to_json()
            assert not [sample.kind for sample in samples if leaked(sample.secret, whole)], trace.info.trace_id
