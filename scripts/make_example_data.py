"""Rebuild the example eval sets in experiments/data/ from the shared PolyAI data.

Kept for provenance: the subsets are committed, so nobody needs to run this. Sampling is
seeded, so a re-run writes the same rows. Source data: CC-BY-4.0, see experiments/data/README.md.
banking_agent is built from banking_intent's rows and the tools in tools/bank.py, not re-sampled.

    python scripts/make_example_data.py ../shared/data [TARGET]   # TARGET defaults to experiments/data
"""

from __future__ import annotations

import csv
import inspect
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BANKING_INTENTS = [
    "card_arrival",
    "lost_or_stolen_card",
    "change_pin",
    "exchange_rate",
    "top_up_failed",
    "cash_withdrawal_charge",
    "terminate_account",
    "apple_pay_or_google_pay",
]
BANKING_PER_INTENT = {"train": 16, "dev": 8, "test": 5}
# banking_agent keeps the first rows of each banking_intent split, in its order.
BANKING_AGENT_SIZES = {"train": 64, "dev": 64, "test": 40}
RESTAURANT_SIZES = {"train": 120, "dev": 60, "test": 60}
BANKING_SUMMARY_SIZES = {"train": 48, "dev": 40, "test": 60}
JUDGE_LABEL_ROWS = 40  # half labelled pass (the row's own intent), half fail (another intent)
RESTAURANT_SLOTS = ["people", "date", "time", "first_name", "last_name"]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def banking(source: Path, target: Path) -> None:
    rng = random.Random(77)

    def by_intent(file: str) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {intent: [] for intent in BANKING_INTENTS}
        with (source / file).open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["category"] in groups:
                    groups[row["category"]].append(row["text"].strip())
        return groups

    train_pool, test_pool = by_intent("train.csv"), by_intent("test.csv")
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for intent in BANKING_INTENTS:
        pool = rng.sample(train_pool[intent], BANKING_PER_INTENT["train"] + BANKING_PER_INTENT["dev"])
        splits["train"] += [{"text": t, "intent": intent} for t in pool[: BANKING_PER_INTENT["train"]]]
        splits["dev"] += [{"text": t, "intent": intent} for t in pool[BANKING_PER_INTENT["train"] :]]
        splits["test"] += [{"text": t, "intent": intent} for t in rng.sample(test_pool[intent], BANKING_PER_INTENT["test"])]
    for split, rows in splits.items():
        rng.shuffle(rows)
        write_jsonl(target / "banking_intent" / f"{split}.jsonl", rows)


def banking_agent(target: Path) -> None:
    """banking_intent's rows, each with a customer and the tool call its intent label calls for."""
    sys.path.insert(0, str(ROOT))  # tools/ is importable from the project root, as agent files name it
    from tools import bank

    for split, size in BANKING_AGENT_SIZES.items():
        with (target / "banking_intent" / f"{split}.jsonl").open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle][:size]
        agent_rows = []
        for index, row in enumerate(rows):
            customer_id = f"C-{1001 + index % len(bank.CUSTOMERS)}"
            tool = bank.TOOLS_BY_INTENT[row["intent"]]
            call: dict = {"name": tool}
            # Only the customer id is known from the row; a currency pair is neither labelled nor
            # usually in the message, so quote_exchange_rate's call is checked by name alone.
            if list(inspect.signature(getattr(bank, tool)).parameters) == ["customer_id"]:
                call["args"] = {"customer_id": customer_id}
            agent_rows.append(
                {"text": row["text"], "customer_id": customer_id, "intent": row["intent"], "expected_tools": [call]}
            )
        write_jsonl(target / "banking_agent" / f"{split}.jsonl", agent_rows)


def ticket_title(intent: str) -> str:
    """The reference summary of a message: its BANKING77 intent label as words (`card_arrival` -> `Card arrival`)."""
    words = intent.replace("_", " ").replace("?", "").strip()
    return words[:1].upper() + words[1:]


def banking_summary(source: Path, target: Path) -> None:
    """Messages of all 77 intents, each with its intent label as words as the reference ticket title; and rows for
    checking a judge: a held-out message with its own title (labelled pass) or another intent's (labelled fail)."""
    rng = random.Random(7077)
    with (source / "train.csv").open(encoding="utf-8") as handle:
        train_rows = [(row["text"].strip(), row["category"]) for row in csv.DictReader(handle)]
    with (source / "test.csv").open(encoding="utf-8") as handle:
        test_rows = [(row["text"].strip(), row["category"]) for row in csv.DictReader(handle)]
    pool = rng.sample(train_rows, BANKING_SUMMARY_SIZES["train"] + BANKING_SUMMARY_SIZES["dev"])
    held_out = rng.sample(test_rows, BANKING_SUMMARY_SIZES["test"] + JUDGE_LABEL_ROWS)
    splits = {"train": pool[: BANKING_SUMMARY_SIZES["train"]], "dev": pool[BANKING_SUMMARY_SIZES["train"] :],
              "test": held_out[: BANKING_SUMMARY_SIZES["test"]]}
    for split, rows in splits.items():
        write_jsonl(target / "banking_summary" / f"{split}.jsonl",
                    [{"text": text, "summary": ticket_title(intent)} for text, intent in rows])
    intents = sorted({intent for _, intent in train_rows})
    labelled = []
    for index, (text, intent) in enumerate(held_out[BANKING_SUMMARY_SIZES["test"] :]):
        if index % 2 == 0:
            labelled.append({"inputs": {"text": text}, "answer": {"summary": ticket_title(intent)}, "label": "pass"})
        else:
            other = rng.choice([name for name in intents if name != intent])
            labelled.append({"inputs": {"text": text}, "answer": {"summary": ticket_title(other)}, "label": "fail",
                             "note": f"the title of {other}, not of this message's {intent}"})
    write_jsonl(target / "banking_summary" / "judge_labels.jsonl", labelled)


def restaurant_row(record: dict) -> dict:
    text = record["userInput"]["text"]
    asked = list(dict.fromkeys((record.get("context") or {}).get("requestedSlots", [])))
    row = {"text": text, "asked_for": ", ".join(asked)}
    row.update({slot: None for slot in RESTAURANT_SLOTS})
    for label in record.get("labels", []):
        span = label["valueSpan"]
        row[label["slot"]] = text[span.get("startIndex", 0) : span["endIndex"]]
    return row


def restaurant(source: Path, target: Path) -> None:
    rng = random.Random(8000)
    train = json.loads((source / "train.json").read_text(encoding="utf-8"))
    test = json.loads((source / "test.json").read_text(encoding="utf-8"))
    pool = rng.sample(train, RESTAURANT_SIZES["train"] + RESTAURANT_SIZES["dev"])
    splits = {
        "train": pool[: RESTAURANT_SIZES["train"]],
        "dev": pool[RESTAURANT_SIZES["train"] :],
        "test": rng.sample(test, RESTAURANT_SIZES["test"]),
    }
    for split, records in splits.items():
        write_jsonl(target / "restaurant_booking" / f"{split}.jsonl", [restaurant_row(r) for r in records])


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "experiments" / "data"
    banking(source / "banking77", target)
    banking_agent(target)
    banking_summary(source / "banking77", target)
    restaurant(source / "restaurant8k", target)
    print(f"wrote example eval sets under {target}")
