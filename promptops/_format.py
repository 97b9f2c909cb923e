"""Number and cell formatting shared by the markdown reports of `compare`, `check` and `ab-report`."""

from __future__ import annotations

import json
from typing import Any, Optional




def signed(value: float, digits: int = 3, *, prefix: str = "", suffix: str = "") -> str:
    """`+0.050`, `-$0.000012`, `+0.120 s`: the sign first, then the unit."""
    sign = "-" if value < 0 else "+"
    return f"{sign}{prefix}{abs(value):.{digits}f}{suffix}"


def interval(value: Any, digits: int = 3, *, prefix: str = "", suffix: str = "") -> str:
    """`+0.050 (95% CI -0.075 to +0.175)`"""
    return (f"{signed(value.estimate, digits, prefix=prefix, suffix=suffix)} ({value.confidence:.0%} CI "
            f"{signed(value.low, digits, prefix=prefix, suffix=suffix)} to {signed(value.high, digits, prefix=prefix, suffix=suffix)})")


def bounds(value: Any, digits: int = 3, *, prefix: str = "", suffix: str = "") -> str:
    """`-0.075 to +0.175`"""
    return f"{signed(value.low, digits, prefix=prefix, suffix=suffix)} to {signed(value.high, digits, prefix=prefix, suffix=suffix)}"


def p_value(value: float) -> str:
    """`0.0213`, or `< 0.001` where more digits would claim a precision nobody needs."""
    return f"{value:.3g}" if value >= 0.001 else "< 0.001"


def p_equals(value: float, name: str = "p") -> str:
    """`p = 0.0213` or `p < 0.001`."""
    text = p_value(value)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def usd(value: Optional[float], digits: int = 6) -> str:
    return "unknown" if value is None else f"${value:.{digits}f}"


def seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f} s"


def share(new: Optional[float], old: Optional[float]) -> str:
    """The relative change, `+4.2%`, or empty when it has no meaning."""
    if new is None or not old:
        return ""
    return f"{(new - old) / old * 100:+.1f}%"


def cell(value: Any, width: int = 60) -> str:
    """A value as one table cell: one line, pipes escaped, long text cut."""
    if value is None:
        text = "null"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"
