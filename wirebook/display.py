"""Human-readable rendering of wire values, driven by the field tables' kinds."""

from __future__ import annotations

from typing import Any

from .proto import itch
from .proto.fields import Kind


def format_price(units: int, decimals: int = 4) -> str:
    """Exact decimal rendering of an integer price (ITCH Price(4) by default); no float rounding."""
    scale = 10**decimals
    return f"{units // scale}.{units % scale:0{decimals}d}"


def format_timestamp(ns: int) -> str:
    """Nanoseconds since midnight as HH:MM:SS.nnnnnnnnn."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    minutes, s = divmod(seconds, 60)
    h, m = divmod(minutes, 60)
    return f"{h:02d}:{m:02d}:{s:02d}.{nanos:09d}"


def format_message(message: Any) -> str:
    """One ITCH message (a decoded namedtuple) on one line: type, name, then its fields."""
    layout = itch.layout_of(message.message_type)
    parts = [f"{message.message_type} {layout.name:<28}"]
    for f in layout.value_fields:
        if f.name == "message_type":
            continue
        v = getattr(message, f.name)
        if f.name == "timestamp":
            text = format_timestamp(v)
        elif f.kind is Kind.PRICE4:
            text = format_price(v, 4)
        elif f.kind is Kind.PRICE8:
            text = format_price(v, 8)
        else:
            text = str(v)
        parts.append(f"{f.name}={text}")
    return " ".join(parts)
