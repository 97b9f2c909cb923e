"""A small deterministic in-memory bank: the tools of the `banking_agent` example.

Eight customers with fixed cards, balances, top-ups and cash withdrawals (fixed dates, never
computed from today), so an eval gives the same observations on every run. The state lives in
this module; `reset()` restores it from `CUSTOMERS`, so each test or eval starts from the same bank.
Every tool returns one or two sentences a support agent can relay, and raises `ValueError` with
a sentence the model can act on for an unknown customer or currency. A tool's docstring is one
line because `dspy.Tool` takes `__doc__` verbatim as the description the model reads.
"""

import copy
import threading

CUSTOMERS: dict[str, dict] = {
    "C-1001": {
        "name": "Amelia Hughes",
        "card": {"last_four": "4821", "status": "in_transit", "expected_delivery": "2026-12-03"},
        "balance_gbp": 245.10,
        "last_top_up": {"amount_gbp": 50.00, "date": "2026-11-28", "status": "completed"},
        "cash_withdrawals": [
            {"date": "2026-11-02", "amount_gbp": 150.00, "fee_gbp": 0.00},
            {"date": "2026-11-18", "amount_gbp": 100.00, "fee_gbp": 1.00},
        ],
        "account_open": True,
    },
    "C-1002": {
        "name": "Oliver Patel",
        "card": {"last_four": "7305", "status": "active"},
        "balance_gbp": 1320.55,
        "last_top_up": {
            "amount_gbp": 100.00,
            "date": "2026-11-29",
            "status": "failed",
            "reason": "the card issuer declined the payment",
        },
        "cash_withdrawals": [{"date": "2026-11-05", "amount_gbp": 60.00, "fee_gbp": 0.00}],
        "account_open": True,
    },
    "C-1003": {
        "name": "Sophie Clarke",
        "card": {"last_four": "1964", "status": "frozen"},
        "balance_gbp": 0.00,
        "last_top_up": {"amount_gbp": 20.00, "date": "2026-11-30", "status": "pending"},
        "cash_withdrawals": [],
        "account_open": True,
    },
    "C-1004": {
        "name": "Harry Evans",
        "card": {"last_four": "5532", "status": "active"},
        "balance_gbp": 87.40,
        "last_top_up": {"amount_gbp": 25.00, "date": "2026-11-26", "status": "completed"},
        "cash_withdrawals": [
            {"date": "2026-11-03", "amount_gbp": 200.00, "fee_gbp": 0.00},
            {"date": "2026-11-21", "amount_gbp": 80.00, "fee_gbp": 1.60},
        ],
        "account_open": True,
    },
    "C-1005": {
        "name": "Isla Thompson",
        "card": {"last_four": "0419", "status": "in_transit", "expected_delivery": "2026-12-08"},
        "balance_gbp": 510.00,
        "last_top_up": {
            "amount_gbp": 300.00,
            "date": "2026-11-27",
            "status": "failed",
            "reason": "the bank transfer reference did not match the account",
        },
        "cash_withdrawals": [{"date": "2026-11-12", "amount_gbp": 40.00, "fee_gbp": 0.00}],
        "account_open": True,
    },
    "C-1006": {
        "name": "George Wright",
        "card": {"last_four": "8876", "status": "active"},
        "balance_gbp": 12.75,
        "last_top_up": {"amount_gbp": 10.00, "date": "2026-11-30", "status": "pending"},
        "cash_withdrawals": [{"date": "2026-11-07", "amount_gbp": 300.00, "fee_gbp": 2.00}],
        "account_open": True,
    },
    "C-1007": {
        "name": "Mia Robinson",
        "card": {"last_four": "2290", "status": "frozen"},
        "balance_gbp": 2400.00,
        "last_top_up": {"amount_gbp": 500.00, "date": "2026-11-24", "status": "completed"},
        "cash_withdrawals": [],
        "account_open": True,
    },
    "C-1008": {
        "name": "Jack Walker",
        "card": {"last_four": "6143", "status": "active"},
        "balance_gbp": 64.30,
        "last_top_up": {
            "amount_gbp": 40.00,
            "date": "2026-11-25",
            "status": "failed",
            "reason": "top-ups from business cards are not supported",
        },
        "cash_withdrawals": [
            {"date": "2026-11-01", "amount_gbp": 120.00, "fee_gbp": 0.00},
            {"date": "2026-11-09", "amount_gbp": 130.00, "fee_gbp": 1.00},
            {"date": "2026-11-20", "amount_gbp": 50.00, "fee_gbp": 1.00},
        ],
        "account_open": True,
    },
}

# How many units of each currency one pound buys; any pair is quoted through GBP.
UNITS_PER_GBP: dict[str, float] = {"GBP": 1.0, "EUR": 1.17, "USD": 1.27, "JPY": 190.5, "CHF": 1.12}

FREE_CASH_PER_MONTH_GBP = 200.00
CASH_FEE_RATE = 0.02

# The documented rule for the example data: each intent's expected tool.
TOOLS_BY_INTENT: dict[str, str] = {
    "card_arrival": "track_card_delivery",
    "lost_or_stolen_card": "freeze_card",
    "change_pin": "send_pin_reset",
    "exchange_rate": "quote_exchange_rate",
    "top_up_failed": "check_top_up",
    "cash_withdrawal_charge": "explain_fee",
    "terminate_account": "close_account",
    "apple_pay_or_google_pay": "explain_wallet_setup",
}

_lock = threading.Lock()
_state: dict[str, dict] = {}
_pin_resets: dict[str, int] = {}


def reset() -> None:
    """Restore the bank to `CUSTOMERS`, with no PIN resets sent."""
    with _lock:
        _state.clear()
        _state.update(copy.deepcopy(CUSTOMERS))
        _pin_resets.clear()


reset()


def _known_id(customer_id: str) -> str:
    """The id as stored (a model may write ` c-1001`), or the error the agent sees as its observation."""
    normalized = customer_id.strip().upper()
    if normalized not in _state:
        raise ValueError(f"no customer '{customer_id}'; customer ids look like C-1001")
    return normalized


def _customer(customer_id: str) -> dict:
    return _state[_known_id(customer_id)]


def _currency(code: str) -> str:
    normalized = code.strip().upper()
    if normalized not in UNITS_PER_GBP:
        raise ValueError(f"unknown currency '{code}'; supported: {', '.join(sorted(UNITS_PER_GBP))}")
    return normalized


def _gbp(amount: float) -> str:
    return f"£{amount:,.2f}"


def exchange_rate(from_currency: str, to_currency: str) -> float:
    """Units of `to_currency` one unit of `from_currency` buys, through GBP, to 4 decimals."""
    source, target = _currency(from_currency), _currency(to_currency)
    return round(UNITS_PER_GBP[target] / UNITS_PER_GBP[source], 4)


def card_status(customer_id: str) -> str:
    """The customer's card status: active, in_transit or frozen."""
    return _customer(customer_id)["card"]["status"]


def account_open(customer_id: str) -> bool:
    """Whether the customer's account is open."""
    return _customer(customer_id)["account_open"]


def pin_resets(customer_id: str) -> int:
    """How many PIN resets have been sent to the customer since the last `reset()`."""
    return _pin_resets.get(_known_id(customer_id), 0)


def track_card_delivery(customer_id: str) -> str:
    """Tell where the customer's card is: on its way with the expected delivery date, or already delivered. Use it when a customer asks when their new card will arrive or whether it has been sent."""
    customer = _customer(customer_id)
    card = customer["card"]
    if card["status"] == "in_transit":
        return (
            f"{customer['name']}'s card ending {card['last_four']} has been posted "
            f"and is expected to arrive by {card['expected_delivery']}."
        )
    if "expected_delivery" in card:
        return (
            f"{customer['name']}'s card ending {card['last_four']} is on its way, expected by "
            f"{card['expected_delivery']}, and has been frozen."
        )
    return (
        f"{customer['name']}'s card ending {card['last_four']} was delivered and is {card['status']}; "
        "no other card is on its way."
    )


def freeze_card(customer_id: str) -> str:
    """Freeze the customer's card so no payment or cash withdrawal can be made with it. Use it when a card is lost, stolen or used by someone else; the customer can unfreeze it in the app if the card turns up."""
    with _lock:
        customer = _customer(customer_id)
        card = customer["card"]
        if card["status"] == "frozen":
            return f"{customer['name']}'s card ending {card['last_four']} was already frozen; nothing changed."
        card["status"] = "frozen"
    return (
        f"{customer['name']}'s card ending {card['last_four']} is now frozen; "
        "no payments or withdrawals can be made with it until it is unfrozen in the app."
    )


def send_pin_reset(customer_id: str) -> str:
    """Send the customer a link to choose a new PIN for their card. Use it when a customer wants to change their PIN or has forgotten it."""
    with _lock:
        key = _known_id(customer_id)
        customer = _state[key]
        _pin_resets[key] = count = _pin_resets.get(key, 0) + 1
    sent = "A PIN reset link" if count == 1 else f"Another PIN reset link (number {count})"
    return (
        f"{sent} has been sent to {customer['name']}'s registered phone; "
        "it expires in 24 hours."
    )


def quote_exchange_rate(from_currency: str, to_currency: str) -> str:
    """Quote the exchange rate between two currencies, given as ISO codes such as GBP, EUR or USD. Use it when a customer asks what rate they will get when exchanging money or paying abroad."""
    rate = exchange_rate(from_currency, to_currency)
    source, target = _currency(from_currency), _currency(to_currency)
    return f"1 {source} = {rate:.4f} {target} at our current rate, with no fee for exchanges in the app."


def check_top_up(customer_id: str) -> str:
    """Check the customer's last top-up: completed, still pending, or failed and why. Use it when a customer says a top-up did not go through or has not arrived."""
    customer = _customer(customer_id)
    top_up = customer["last_top_up"]
    head = f"{customer['name']}'s last top-up of {_gbp(top_up['amount_gbp'])} on {top_up['date']}"
    if top_up["status"] == "completed":
        return f"{head} completed; the balance is now {_gbp(customer['balance_gbp'])}."
    if top_up["status"] == "pending":
        return f"{head} is still pending; bank transfers can take up to 2 working days to arrive."
    return f"{head} failed because {top_up['reason']}. No money was taken; the customer can try again."


def explain_fee(customer_id: str) -> str:
    """Explain the fees on the customer's recent cash withdrawals and the rule behind them. Use it when a customer asks why they were charged for taking out cash."""
    customer = _customer(customer_id)
    rule = (
        f"Cash withdrawals are free up to {_gbp(FREE_CASH_PER_MONTH_GBP)} a month, "
        f"then {CASH_FEE_RATE:.0%} of the amount above that."
    )
    withdrawals = customer["cash_withdrawals"]
    if not withdrawals:
        return f"{rule} {customer['name']} has no recent cash withdrawals, so no fee was charged."
    listed = ", ".join(
        f"{_gbp(w['amount_gbp'])} on {w['date']} (fee {_gbp(w['fee_gbp'])})" for w in withdrawals
    )
    total = sum(w["fee_gbp"] for w in withdrawals)
    return f"{rule} {customer['name']}'s recent withdrawals: {listed}; {_gbp(total)} in fees."


def close_account(customer_id: str) -> str:
    """Close the customer's account; any remaining balance is paid out to their linked bank account. Use it only when a customer clearly asks to close or delete their account."""
    with _lock:
        customer = _customer(customer_id)
        if not customer["account_open"]:
            return f"{customer['name']}'s account was already closed; nothing changed."
        customer["account_open"] = False
    balance = customer["balance_gbp"]
    payout = (
        f"the balance of {_gbp(balance)} will be paid out to the linked bank account within 3 working days"
        if balance
        else "there is no balance to pay out"
    )
    return f"{customer['name']}'s account is now closed; {payout}."


def explain_wallet_setup(customer_id: str) -> str:
    """Explain how to add the customer's card to Apple Pay or Google Pay, or why it cannot be added yet. Use it when a customer asks about Apple Pay, Google Pay or paying with their phone."""
    customer = _customer(customer_id)
    card = customer["card"]
    if card["status"] == "frozen":
        return (
            f"{customer['name']}'s card ending {card['last_four']} is frozen, so it cannot be added to "
            "Apple Pay or Google Pay until it is unfrozen in the app."
        )
    steps = (
        f"To add the card ending {card['last_four']}, open the app, tap Card, then Add to Apple Wallet "
        "or Add to Google Pay, and confirm with the code sent by text."
    )
    if card["status"] == "in_transit":
        return f"{steps} This works before the plastic card arrives."
    return steps


TOOLS = (
    track_card_delivery,
    freeze_card,
    send_pin_reset,
    quote_exchange_rate,
    check_top_up,
    explain_fee,
    close_account,
    explain_wallet_setup,
)
