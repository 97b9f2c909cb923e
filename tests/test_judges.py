"""LLM judges and free-text prompts: the judge's scores, reasons and cost (apart from the prompt's), its cache and
budget, rubric-only rows, calibration against labelled rows, comparison and the gate on judge scores, an
optimization whose quality objective is a judge, all against scripted models on 127.0.0.1; and one eval of the
example free-text prompt on the embedded models."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

import promptops
from promptops.reports.markdown import comparison_markdown
from promptops.models import Budget, BudgetExhausted, spending_limit
from promptops.cli import main
from promptops.errors import PromptopsError
from promptops.testing import FaultServer, last_user_message

REPO = Path(__file__).resolve().parent.parent
NAME = "banking_summary"
PRICE = "{input_per_million_usd: 1.0, output_per_million_usd: 2.0}"
JUDGE_PRICE = "{input_per_million_usd: 10.0, output_per_million_usd: 30.0}"
RUBRIC = "The title names the customer's actual problem."


def scripted(body: dict) -> dict:
    """The prompt answers with a title; the judge passes an answer that shares a word with the reference or request."""
    system = " ".join(str(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system")
    if "You grade one answer against a rubric" in system:
        answer = last_user_message(body, "answer").lower()
        against = (last_user_message(body, "reference") if "[[ ## reference ## ]]" in last_user_message(body)
                   else last_user_message(body, "request")).lower()
        shared = sorted(set(re.findall(r"\w+", answer)) & set(re.findall(r"\w+", against)) - {"a", "the", "my", "i", "is"})
        if shared:
            return {"reason": f"It names {shared[0]}, as the message does.", "score": "pass"}
        return {"reason": "It names a different problem.", "score": "fail"}
    text = last_user_message(body, "text").lower()
    if "card" in text:
        return {"summary": "Card problem"}
    return {"summary": "Something else"}


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-judges-not-a-real-key")
    with FaultServer(answer=scripted) as running:
        yield running


def _point_at(project: Path, server: FaultServer, *, judge: str | None = None, rows: dict[str, list[dict]] | None = None) -> Path:
    """banking_summary on the scripted model, judged by the scripted judge (inline unless `judge` replaces the metric)."""
    path = project / "prompts" / f"{NAME}.yaml"
    text = (REPO / "prompts" / f"{NAME}.yaml").read_text().replace("  id: local/smollm2-135m\n",
                                    f"  id: openai/fault-model\n  api_base: {server.base_url}\n  price: {PRICE}\n")
    metric = judge or (f"    judge:\n      rubric: {RUBRIC}\n      model:\n        id: openai/fault-model\n"
                       f"        api_base: {server.base_url}\n        price: {JUDGE_PRICE}\n")
    text = text.replace("    judge: judges/ticket_title.yaml\n", metric)
    path.write_text(text)
    for split, lines in (rows or {}).items():
        folder = project / "experiments" / "data" / NAME
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in lines))
    return path


ROWS = [
    {"text": "My card still has not arrived", "summary": "Card arrival"},  # judge: pass (shares "card")
    {"text": "Where is my new card?", "summary": "Card arrival"},  # pass
    {"text": "How do I change my PIN?", "summary": "Change pin"},  # "Something else": fail
    {"text": "What is the exchange rate today?", "summary": "Exchange rate"},  # fail
]


def test_a_judge_scores_each_answer_with_a_reason_and_its_cost_is_reported_apart(project: Path, mlflow_store: str,
                                                                                  server: FaultServer) -> None:
    _point_at(project, server, rows={"dev": ROWS})
    result = promptops.evaluate(NAME, split="dev")

    assert result.metric == "judge" and result.n == 4
    judged = [r.judgement for r in result.examples]
    assert [j.value for j in judged] == ["pass", "pass", "fail", "fail"]
    assert [r.correct for r in result.examples] == [True, True, False, False]
    assert [r.score for r in result.examples] == [1.0, 1.0, 0.0, 0.0]
    assert judged[0].reason == "It names card, as the message does." and judged[2].reason == "It names a different problem."
    assert result.score == result.metrics["judge"] == 0.5 and result.metrics["judge_pass_rate"] == 0.5
    # The prompt's calls and the judge's are counted apart, each at its own price.
    assert result.model_calls == 4 and result.metrics["judge_calls"] == 4 and len(server.requests) == 8
    judge_cost = sum(j.input_tokens * 10.0 + j.output_tokens * 30.0 for j in judged) / 1e6
    prompt_cost = (result.input_tokens * 1.0 + result.output_tokens * 2.0) / 1e6
    assert result.metrics["judge_cost_usd"] == pytest.approx(judge_cost) and judge_cost > 0
    assert result.cost_usd == pytest.approx(prompt_cost)
    assert "accuracy" in result.metrics  # the rows have references: label match is reported beside the judge

    # The reasons are in the run's per-example table, and each verdict is an LLM_JUDGE feedback on a trace of the run.
    import mlflow

    from promptops import tracking

    table = tracking.load_table(result.run_id, root=project)
    assert list(table["judge.reason"]) == [j.reason for j in judged] and list(table["judge.value"]) == ["pass", "pass", "fail", "fail"]
    traces = mlflow.search_traces(run_id=result.run_id, return_type="list")
    feedback = [a for trace in traces for a in trace.info.assessments if a.name == "judge"]
    assert len(feedback) == 4 and {a.source.source_type for a in feedback} == {"LLM_JUDGE"}
    assert sorted(a.rationale for a in feedback) == sorted(j.reason for j in judged)

    # The judge saw the reference; a second eval is answered by DSPy's cache, and cached judging is free.
    judge_requests = [b for b in server.requests if "You grade one answer" in json.dumps(b)]
    assert all("[[ ## reference ## ]]" in last_user_message(b) for b in judge_requests)
    assert any("[[ ## reference ## ]]\nCard arrival" in last_user_message(b) for b in judge_requests)
    again = promptops.evaluate(NAME, split="dev", track=False)
    assert (again.model_calls, again.metrics["judge_calls"], again.metrics["judge_cache_hits"]) == (0, 0, 4)
    assert again.metrics["judge_cost_usd"] == 0 and len(server.requests) == 8
    assert [r.judgement.reason for r in again.examples] == [j.reason for j in judged]


def test_the_eval_output_shows_the_judge_its_cost_and_the_lowest_scored_answers(project: Path, mlflow_store: str,
                                                                              server: FaultServer) -> None:
    _point_at(project, server, rows={"dev": ROWS})
    out = CliRunner().invoke(main, ["eval", NAME, "--no-track", "--no-cache"], env={"COLUMNS": "160"})
    assert out.exit_code == 0, out.output
    assert "judge (primary)" in out.output and "judge cost (apart)" in out.output
    assert "judge calls / cache hits" in out.output and "4 / 0" in out.output
    assert "lowest judged answers" in out.output and "It names a different problem." in out.output

    CliRunner().invoke(main, ["eval", NAME, "--no-track", "--json"])  # fills DSPy's cache
    data = json.loads(CliRunner().invoke(main, ["eval", NAME, "--no-track", "--json"]).output)
    assert data["metric"] == "judge" and data["judge_calls"] == 0 and data["judge_cache_hits"] == 4
    assert data["judge_cost_usd"] == 0 and data["judge"] == 0.5


def test_rows_without_references_are_judged_by_the_rubric_alone(project: Path, mlflow_store: str, server: FaultServer) -> None:
    rows = [{"text": row["text"]} for row in ROWS]
    _point_at(project, server, rows={"dev": rows})
    result = promptops.evaluate(NAME, split="dev", track=False)
    assert [r.expected for r in result.examples] == [{}] * 4
    assert "accuracy" not in result.metrics and "f1" not in result.metrics
    judge_requests = [b for b in server.requests if "You grade one answer" in json.dumps(b)]
    assert len(judge_requests) == 4 and all("[[ ## reference ## ]]" not in last_user_message(b) for b in judge_requests)
    # Without a reference the scripted judge compares with the request: "card" messages pass.
    assert [r.judgement.value for r in result.examples] == ["pass", "pass", "fail", "fail"]

    with pytest.raises(PromptopsError, match=r"dev.jsonl:1: this row has no reference output, which metric 'similarity'"):
        promptops.evaluate(NAME, split="dev", metric="similarity", track=False)
    with pytest.raises(PromptopsError, match=r"dev.jsonl:1: .*metric 'accuracy'"):
        promptops.evaluate(NAME, split="dev", metric="accuracy", track=False)


def test_the_budget_caps_judging_too(project: Path, mlflow_store: str, server: FaultServer) -> None:
    _point_at(project, server, rows={"dev": ROWS})
    with spending_limit(Budget(max_model_calls=5)) as budget, pytest.raises(BudgetExhausted, match="max_model_calls=5"):
        promptops.evaluate(NAME, split="dev", track=False, cache=False)
    assert budget.model_calls == 5 and len(server.requests) == 5  # 3 answers and 2 judgements; the 6th call never left

    # A cost cap counts the judge's price too: the prompt's 4 calls alone would fit.
    prompt_only = promptops.evaluate(NAME, split="dev", metric="accuracy", track=False, cache=False)
    with spending_limit(Budget(max_cost_usd=prompt_only.cost_usd * 1.5)), pytest.raises(BudgetExhausted, match="max_cost_usd"):
        promptops.evaluate(NAME, split="dev", track=False, cache=False)


JUDGE_FILE = """\
name: title_check
rubric: {rubric}
model:
  id: openai/fault-model
  api_base: {base_url}
  price: {price}
scale: pass_fail
"""


def test_judge_check_reports_agreement_kappa_and_confusion_on_labelled_rows(project: Path, mlflow_store: str,
                                                                            server: FaultServer) -> None:
    (project / "judges").mkdir(exist_ok=True)
    (project / "judges" / "title_check.yaml").write_text(JUDGE_FILE.format(rubric=RUBRIC, base_url=server.base_url, price=JUDGE_PRICE))
    # The scripted judge passes an answer sharing a word with the request. Labels: 4 pass and 4 fail; it agrees on 6.
    rows = [
        ("My card is lost", "Card lost", "pass"),  # judge pass: agree
        ("My card was declined", "Declined card", "pass"),  # pass: agree
        ("I want a refund", "Refund request", "pass"),  # pass: agree
        ("Where is my money?", "Missing transfer", "pass"),  # fail: disagree
        ("My card is lost", "Exchange rate", "fail"),  # fail: agree
        ("I want a refund", "Card delivery", "fail"),  # fail: agree
        ("Change my PIN please", "Top up", "fail"),  # fail: agree
        ("My card was declined", "Card delivery", "fail"),  # pass: disagree
    ]
    data = project / "labels.jsonl"
    data.write_text("".join(json.dumps({"inputs": {"text": t}, "answer": {"summary": a}, "label": label}) + "\n" for t, a, label in rows))

    check = promptops.check_judge("title_check", data)
    assert (check.n, check.accuracy, check.errors) == (8, 0.75, 0)
    assert check.confusion["pass"] == {"pass": 3, "fail": 1, "error": 0}
    assert check.confusion["fail"] == {"pass": 1, "fail": 3, "error": 0}
    # Cohen's kappa: observed 0.75, expected by chance 0.5 (both rate half pass): (0.75 - 0.5) / (1 - 0.5).
    assert check.kappa == pytest.approx(0.5)
    assert check.judge_calls == 8 and check.judge_cost_usd > 0 and check.run_id

    out = CliRunner().invoke(main, ["judge", "check", "title_check", "--data", str(data), "--no-track"], env={"COLUMNS": "160"})
    assert out.exit_code == 0, out.output
    assert "agreement" in out.output and "0.750" in out.output and "Cohen's kappa" in out.output and "0.500" in out.output
    assert "disagreements (2 of 2)" in out.output and "labels.jsonl:4" in out.output

    # The judge a prompt names is found by the prompt's name too.
    _point_at(project, server, judge="    judge: judges/title_check.yaml\n")
    data_json = json.loads(CliRunner().invoke(main, ["judge", "check", NAME, "--data", str(data), "--no-track", "--json"]).output)
    assert data_json["judge"] == "title_check" and data_json["kappa"] == pytest.approx(0.5)


def test_a_judge_on_the_1_to_5_scale_normalizes_scores_and_passes_at_pass_at(project: Path, mlflow_store: str) -> None:
    from promptops.artifact import JudgeSpec

    spec = JudgeSpec(rubric="r", scale="1-5", pass_at=3)
    assert [spec.normalized(v) for v in spec.labels] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [spec.passed(v) for v in spec.labels] == [False, False, True, True, True]
    assert JudgeSpec(rubric="r", scale="1-5").passing_score == 4


def test_bad_judge_files_rows_and_metrics_fail_with_one_sentence(project: Path, mlflow_store: str, server: FaultServer) -> None:
    (project / "judges").mkdir(exist_ok=True)
    (project / "judges" / "broken.yaml").write_text("name: broken\nrubric: r\nscale: 1-10\n")
    runner = CliRunner()
    labels = project / "labels.jsonl"
    labels.write_text(json.dumps({"inputs": {"text": "t"}, "answer": {"summary": "s"}, "label": "pass"}) + "\n")
    out = runner.invoke(main, ["judge", "check", "broken", "--data", str(labels)])
    assert out.exit_code == 1 and "broken.yaml:3: scale" in out.output and "Traceback" not in out.output

    (project / "judges" / "ok.yaml").write_text(JUDGE_FILE.format(rubric=RUBRIC, base_url=server.base_url, price=JUDGE_PRICE)
                                                .replace("title_check", "ok").replace("pass_fail", "1-5"))
    out = runner.invoke(main, ["judge", "check", "ok", "--data", str(labels)])
    assert out.exit_code == 1 and "labels.jsonl:1: label 'pass' is not on ok's 1-5 scale" in out.output

    out = runner.invoke(main, ["judge", "check", "missing", "--data", str(labels)])
    assert out.exit_code == 1 and "no judge file judges/missing.yaml; judges here: broken, ok" in out.output

    path = project / "prompts" / f"{NAME}.yaml"
    text = path.read_text()
    path.write_text(text.replace("    judge: judges/ticket_title.yaml\n", "    judge: judges/ticket_title.yaml\n    similarity: {}\n"))
    out = runner.invoke(main, ["eval", NAME, "--limit", "1", "--no-track"])
    assert out.exit_code == 1 and "banking_summary.yaml:19" in out.output and "exactly one of `judge:`" in out.output
    path.write_text(text.replace("judges/ticket_title.yaml", "judges/nowhere.yaml"))
    out = runner.invoke(main, ["eval", NAME, "--limit", "1", "--no-track"])
    assert out.exit_code == 1 and "no judge file judges/nowhere.yaml" in out.output and "Traceback" not in out.output


def test_compare_and_the_gate_use_the_judges_scores(project: Path, mlflow_store: str, server: FaultServer) -> None:
    from promptops.evaluation import Contender, EvalOptions, compare_contenders

    path = _point_at(project, server, rows={"test": ROWS * 3})
    before = promptops.load_prompt(path)
    # B: the same prompt, but its answers for PIN messages now name the PIN (and pass the judge).
    after = before.with_changes(instructions=before.instructions + "\nName the PIN when the customer asks about it.")

    def better(body: dict) -> dict:
        if "Name the PIN" in json.dumps(body) and "pin" in last_user_message(body, "text").lower():
            return {"summary": "Change pin"}
        return scripted(body)

    server.answer = better
    comparison = compare_contenders(Contender("a", "A", before), Contender("b", "B", after), EvalOptions(split="test"))
    assert comparison.metric == "judge" and (comparison.a_score, comparison.b_score) == (0.5, 0.75)
    assert comparison.difference.estimate == pytest.approx(0.25)
    assert len(comparison.changed) == 3 and all(change.b_correct for change in comparison.changed)  # fixed by the judge's pass
    assert "right = the judge's pass" in comparison_markdown(comparison)

    from promptops.evaluation import gate_verdict, rule_for

    verdict = gate_verdict(rule_for(after), comparison=comparison)
    assert verdict.metric == "judge" and verdict.candidate_score == 0.75


def _fresh(rows: list[dict], words: str) -> list[dict]:
    return [{**row, "text": f"{row['text']} ({words})"} for row in rows]


EXPERIMENT = """\
name: summary_search
prompt: banking_summary
search:
  models:
    - id: openai/fault-model
      api_base: {base_url}
      price: {price}
  optimizers: [none, bootstrap]
  demos: [2]
  instructions:
    - Title the ticket in a few words. Name the PIN when the customer asks about it.
budget:
  n_trials: 4
  max_model_calls: {calls}
seed: 1
"""


def test_an_optimization_whose_objective_is_a_judge_counts_judging_in_its_budget(project: Path, mlflow_store: str,
                                                                                 server: FaultServer, git_project) -> None:
    rows = _fresh(ROWS, "in the search")  # answers no earlier test left in DSPy's cache
    path = _point_at(project, server, rows={"train": rows, "dev": rows, "test": rows * 2})
    git_project.git.add("--all")
    git_project.git.commit("--quiet", "-m", "Scripted summary prompt")

    def better(body: dict) -> dict:
        if "Name the PIN" in json.dumps(body) and "pin" in last_user_message(body, "text").lower():
            return {"summary": "Change pin"}
        return scripted(body)

    server.answer = better
    (project / "experiments" / "summary_search.yaml").write_text(EXPERIMENT.format(base_url=server.base_url, price=PRICE, calls=200))
    result = promptops.optimize("summary_search")
    outcome = result.study
    assert outcome.objectives == {"judge": "maximize", "cost_usd": "minimize"}
    judge_requests = [b for b in server.requests if "You grade one answer" in json.dumps(b)]
    assert judge_requests and len(judge_requests) < len(server.requests)
    assert outcome.model_calls == len(server.requests) <= 200  # the judge's calls are in the study's count
    assert outcome.winner is not None and outcome.winner.values["judge"] == 0.75
    assert result.test is not None and result.test.metric == "judge"
    assert (result.test.winner_score, result.test.reference_score) == (0.75, 0.5)

    # A cap smaller than one trial's judging stops the study before the call that would pass it.
    server.reset()
    _point_at(project, server, rows={split: _fresh(ROWS, "under a cap") for split in ("train", "dev")})
    (project / "experiments" / "summary_search.yaml").write_text(EXPERIMENT.format(base_url=server.base_url, price=PRICE, calls=6)
                                                                 .replace("seed: 1", "seed: 2"))
    capped = promptops.optimize("summary_search", write_winner=False).study
    assert capped.model_calls == 6 and "max_model_calls=6" in capped.stopped_by and len(server.requests) == 6


@pytest.mark.model
def test_the_free_text_example_is_judged_on_the_embedded_models(project: Path, mlflow_store: str, repo_root: Path) -> None:
    out = CliRunner().invoke(main, ["eval", NAME, "--split", "dev", "--limit", "3", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["metric"] == "judge" and data["n"] == 3 and data["errors"] == 0
    assert data["judge_calls"] == 3 and 0 <= data["judge"] <= 1 and data["judge_cost_usd"] > 0
    from promptops import tracking

    table = tracking.load_table(data["run_id"], root=project)
    assert len(table["judge.reason"]) == 3 and all(isinstance(reason, str) for reason in table["judge.reason"])


def test_similarity_scores_free_text_against_the_references_with_a_threshold(project: Path, mlflow_store: str,
                                                                           server: FaultServer) -> None:
    _point_at(project, server, rows={"dev": ROWS})
    result = promptops.evaluate(NAME, split="dev", metric="similarity", track=False)
    assert result.metric == "similarity" and "judge_calls" not in result.metrics and result.model_calls + result.cache_hits == 4
    by_text = {r.inputs["text"]: r for r in result.examples}
    # "Card problem" is nearer "Card arrival" than "Something else" is to "Change pin" (all-MiniLM-L6-v2).
    card, pin = by_text["Where is my new card?"], by_text["How do I change my PIN?"]
    assert card.similarity > pin.similarity and card.score == card.similarity
    assert result.score == result.metrics["similarity"] == pytest.approx(sum(r.similarity for r in result.examples) / 4, abs=1e-6)
    assert [r.correct for r in result.examples] == [r.similarity >= 0.7 for r in result.examples]

    # The threshold is the prompt's: between the two, the card titles pass and the others do not.
    threshold = round((card.similarity + pin.similarity) / 2, 3)
    _point_at(project, server, judge=f"    similarity: {{threshold: {threshold}}}\n")
    result = promptops.evaluate(NAME, split="dev", track=False)
    assert result.metric == "similarity" and [r.correct for r in result.examples] == [True, True, False, False]
    assert result.metrics["similarity_pass_rate"] == 0.5
