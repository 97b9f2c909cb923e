"""The example bank's tools (tools/bank.py) and the banking_agent eval rows built on them."""

from __future__ import annotations

import importlib
import inspect
import json
from itertools import product
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "experiments" / "data"
SIZES = {"train": 64, "dev": 64, "test": 40}


@pytest.fixture()
def bank(monkeypatch: pytest.MonkeyPatch):
    """tools.bank imported from the project root, as agent files name it, in its initial state."""
    monkeypatch.syspath_prepend(str(REPO))
    module = importlib.import_module("tools.bank")
    module.reset()
    yield module
    module.reset()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(
    ("tool", "customer_id", "expected"),
    [
        ("track_card_delivery", "C-1001", "card ending 4821 has been posted and is expected to arrive by 2026-12-03"),
        ("track_card_delivery", "C-1002", "card ending 7305 was delivered and is active"),
        ("freeze_card", "C-1002", "Oliver Patel's card ending 7305 is now frozen"),
        ("freeze_card", "C-1003", "was already frozen; nothing changed"),
        ("send_pin_reset", "C-1004", "A PIN reset link has been sent to Harry Evans's registered phone"),
        ("check_top_up", "C-1001", "last top-up of £50.00 on 2026-11-28 completed; the balance is now £245.10"),
        ("check_top_up", "C-1002", "failed because the card issuer declined the payment"),
        ("check_top_up", "C-1003", "is still pending"),
        ("explain_fee", "C-1004", "free up to £200.00 a month, then 2% of the amount above that"),
        ("explain_fee", "C-1004", "£80.00 on 2026-11-21 (fee £1.60); £1.60 in fees"),
        ("explain_fee", "C-1007", "no recent cash withdrawals, so no fee was charged"),
        ("close_account", "C-1002", "account is now closed; the balance of £1,320.55 will be paid out"),
        ("close_account", "C-1003", "there is no balance to pay out"),
        ("explain_wallet_setup", "C-1002", "tap Card, then Add to Apple Wallet or Add to Google Pay"),
        ("explain_wallet_setup", "C-1007", "is frozen, so it cannot be added to Apple Pay or Google Pay"),
    ],
)
def test_each_tool_answers_for_a_known_customer(bank, tool: str, customer_id: str, expected: str) -> None:
    assert expected in getattr(bank, tool)(customer_id)


def test_customer_ids_are_read_leniently(bank) -> None:
    assert bank.track_card_delivery(" c-1001 ") == bank.track_card_delivery("C-1001")


def test_freeze_card_freezes_once(bank) -> None:
    assert bank.card_status("C-1001") == "in_transit"
    bank.freeze_card("C-1001")
    assert bank.card_status("C-1001") == "frozen"
    assert "already frozen" in bank.freeze_card("C-1001")
    assert "cannot be added" in bank.explain_wallet_setup("C-1001")
    assert "expected by 2026-12-03, and has been frozen" in bank.track_card_delivery("C-1001")


def test_close_account_closes_once(bank) -> None:
    assert bank.account_open("C-1005")
    assert "£510.00 will be paid out" in bank.close_account("C-1005")
    assert not bank.account_open("C-1005")
    assert "already closed" in bank.close_account("C-1005")


def test_pin_resets_are_counted_per_customer(bank) -> None:
    bank.send_pin_reset("C-1006")
    assert "Another PIN reset link (number 2)" in bank.send_pin_reset("C-1006")
    assert (bank.pin_resets("C-1006"), bank.pin_resets("C-1001")) == (2, 0)


def test_reset_restores_the_initial_bank(bank) -> None:
    bank.freeze_card("C-1002")
    bank.close_account("C-1002")
    bank.send_pin_reset("C-1002")
    bank.reset()
    assert (bank.card_status("C-1002"), bank.account_open("C-1002"), bank.pin_resets("C-1002")) == ("active", True, 0)
    assert bank.CUSTOMERS["C-1002"]["card"]["status"] == "active"  # the constant was never mutated


@pytest.mark.parametrize(
    "tool",
    ["track_card_delivery", "freeze_card", "send_pin_reset", "check_top_up", "explain_fee", "close_account",
     "explain_wallet_setup", "card_status", "account_open", "pin_resets"],
)
def test_an_unknown_customer_is_named_with_the_id_format(bank, tool: str) -> None:
    with pytest.raises(ValueError) as raised:
        getattr(bank, tool)("1001")
    assert str(raised.value) == "no customer '1001'; customer ids look like C-1001"


def test_an_unknown_currency_names_the_supported_ones(bank) -> None:
    with pytest.raises(ValueError) as raised:
        bank.quote_exchange_rate("GBP", "btc")
    assert str(raised.value) == "unknown currency 'btc'; supported: CHF, EUR, GBP, JPY, USD"


def test_exchange_rates_go_through_gbp(bank) -> None:
    assert bank.quote_exchange_rate("eur", "Usd").startswith("1 EUR = 1.0855 USD")
    assert bank.quote_exchange_rate("USD", "JPY").startswith("1 USD = 150.0000 JPY")
    for source, target in product(bank.UNITS_PER_GBP, repeat=2):
        # one unit of source is 1/units(source) pounds, each pound buys units(target)
        through_gbp = round(1 / bank.UNITS_PER_GBP[source] * bank.UNITS_PER_GBP[target], 4)
        assert bank.exchange_rate(source, target) == pytest.approx(through_gbp, abs=1e-4)
        assert f"1 {source} = {bank.exchange_rate(source, target):.4f} {target}" in bank.quote_exchange_rate(
            source, target
        )


def test_cash_fees_follow_the_stated_rule(bank) -> None:
    for customer in bank.CUSTOMERS.values():
        withdrawn_by_month: dict[str, float] = {}
        for withdrawal in customer["cash_withdrawals"]:
            month = withdrawal["date"][:7]
            before = withdrawn_by_month.get(month, 0.0)
            withdrawn_by_month[month] = after = before + withdrawal["amount_gbp"]
            above = max(0.0, after - max(before, bank.FREE_CASH_PER_MONTH_GBP))
            assert withdrawal["fee_gbp"] == pytest.approx(round(above * bank.CASH_FEE_RATE, 2))


def test_the_tools_are_the_mapping_targets(bank) -> None:
    assert sorted(bank.TOOLS_BY_INTENT.values()) == sorted(tool.__name__ for tool in bank.TOOLS)


def test_each_tool_builds_a_dspy_tool_from_its_signature(bank) -> None:
    import dspy

    for function in bank.TOOLS:
        tool = dspy.Tool(function)
        assert tool.name == function.__name__
        assert tool.desc and "\n" not in tool.desc
        assert list(tool.args) == list(inspect.signature(function).parameters)
        assert all(schema["type"] == "string" for schema in tool.args.values())


@pytest.mark.parametrize("split", SIZES)
def test_banking_agent_rows_are_banking_intent_rows_with_their_tool(bank, split: str) -> None:
    rows = read_jsonl(DATA / "banking_agent" / f"{split}.jsonl")
    source = read_jsonl(DATA / "banking_intent" / f"{split}.jsonl")[: SIZES[split]]
    assert len(rows) == SIZES[split]
    assert [(row["text"], row["intent"]) for row in rows] == [(row["text"], row["intent"]) for row in source]
    for index, row in enumerate(rows):
        assert row["customer_id"] == f"C-{1001 + index % 8}"
        assert row["customer_id"] in bank.CUSTOMERS
        [call] = row["expected_tools"]
        assert call["name"] == bank.TOOLS_BY_INTENT[row["intent"]]
        if call["name"] == "quote_exchange_rate":
            assert "args" not in call  # the currencies are not labelled; only the name is checked
        else:
            assert call["args"] == {"customer_id": row["customer_id"]}
