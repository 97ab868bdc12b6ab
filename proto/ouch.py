"""Nasdaq OUCH 4.2 (equities order entry): every message, declared once as a field table.

OUCH messages ride in SoupBinTCP packets (wirebook.proto.soupbintcp): inbound messages (client -> Nasdaq) in
Unsequenced Data, outbound messages (Nasdaq -> client) in Sequenced Data. Each message type has one fixed
length. Integers are unsigned big-endian; prices are Price(4) (4 implied decimals); timestamps are
nanoseconds since midnight in 8 bytes; text is ASCII, left-justified and space-padded; order tokens are 14
bytes of client-chosen text, day-unique per OUCH account. 'U' and 'M' mean different messages in the two
directions, hence two tables, INBOUND and OUTBOUND.

Source: "O*U*C*H Version 4.2" (Nasdaq), the edition with Trade Now (inbound 'N'). Offsets and lengths were
checked against Wireshark's OUCH 4.x dissector (epan/dissectors/packet-ouch.c: the 4.2 additions 'M', 'T',
'G', 'F', the BBO weight indicator on 'A'/'U') and the Open Markets Initiative's OUCH 4.2 definitions
(Trade Now). Price Correction 'K' belongs to OUCH 4.0/4.1 and is not in 4.2.

The enumerations below list the codes the specification documents. Nasdaq reserves the right to add codes
("support all capital letters"), so decoding accepts any code; encoding an inbound message checks its
enumerated fields, so a typo never reaches the exchange.
"""

from __future__ import annotations

from typing import Any

from .errors import MalformedError, TruncatedError
from .fields import ALPHA, PRICE4, UINT, Layout

# --- enumerations --------------------------------------------------------------------------------------

BUY, SELL, SELL_SHORT, SELL_SHORT_EXEMPT = "B", "S", "T", "E"
BUY_SELL_INDICATOR = {
    BUY: "buy",
    SELL: "sell",
    SELL_SHORT: "sell short (client affirms ability to borrow)",
    SELL_SHORT_EXEMPT: "sell short exempt",
}

TIME_IN_FORCE_IMMEDIATE_OR_CANCEL = 0
TIME_IN_FORCE_MARKET_HOURS = 99_998  # live until the end of the market hours session
TIME_IN_FORCE_SYSTEM_HOURS = 99_999  # live until the end of the system hours session
"""Time in force is a number of seconds the order lives; these three values are special."""

MARKET_PRICE = 0x7FFF_FFFF
"""Price(4) $214,748.3647: the special price of market orders in a cross (e.g. Halt/IPO)."""
MAX_LIMIT_PRICE = 1_999_999_900
"""Price(4) $199,999.9900: the highest limit price."""
MAX_ORDER_SHARES = 999_999
"""Shares on Enter / Replace Order must be greater than zero and less than 1,000,000."""

DISPLAY = {
    "A": "attributable, price to display",
    "Y": "anonymous, price to comply",
    "N": "non-display",
    "P": "post-only",
    "I": "imbalance-only (opening and closing cross only)",
    "M": "mid-point peg",
    "W": "mid-point peg post-only",
    "L": "post-only and attributable, price to display",
    "O": "retail order type 1",
    "T": "retail order type 2",
    "Q": "retail price improvement order",
    "m": "mid-point peg and mid-point Trade Now",
    "n": "non-display and mid-point Trade Now",
}
OUTBOUND_DISPLAY = {**DISPLAY, "Z": "entered as displayed, changed to non-displayed (priced to comply)"}
"""Display codes Nasdaq may echo back in Accepted / Replaced / Order Priority Update."""

CAPACITY = {"A": "agency", "P": "principal", "R": "riskless", "O": "other (Nasdaq converts any other value)"}

INTERMARKET_SWEEP_ELIGIBILITY = {"Y": "eligible", "N": "not eligible", "y": "trade-at intermarket sweep order"}

CROSS_TYPE = {
    "N": "no cross (continuous market)",
    "O": "opening cross",
    "C": "closing cross",
    "H": "halt/IPO cross (market price only)",
    "S": "supplemental order",
    "R": "retail",
    "E": "extended life",
}

CUSTOMER_TYPE = {"R": "retail designated order", "N": "not a retail designated order", " ": "default of the port"}

EVENT_CODE = {"S": "start of day: always the first message", "E": "end of day: no new orders or replaces"}

ORDER_STATE = {"L": "order live", "D": "order dead"}

BBO_WEIGHT_INDICATOR = {
    "0": "0 - 0.2%",
    "1": "0.2 - 1%",
    "2": "1 - 2%",
    "3": "greater than 2%",
    " ": "unspecified",
    "S": "sets the QBBO while joining the NBBO",
    "N": "improves the NBBO upon entry",
}

CANCEL_REASON = {
    "U": "user requested (Cancel Order or Replace Order)",
    "I": "immediate or cancel: no further matches on the book",
    "T": "timeout: time in force expired",
    "S": "supervisory: canceled or reduced by a Nasdaq supervisory terminal",
    "D": "regulatory restriction (e.g. trade-through)",
    "Q": "self-match prevention",
    "Z": "system cancel",
    "C": "cross canceled: non-bookable cross order did not execute in the cross",
    "K": "market collars",
    "H": "halted: on-open order and the symbol stayed halted after the opening cross",
    "X": "open protection (opening price protection threshold)",
    "E": "closed: DAY order received after the closing cross",
    "F": "post-only cancel: would have been price slid for NMS",
    "G": "post-only cancel: would have been price slid by a contra-side displayed order",
}

BROKEN_TRADE_REASON = {"E": "erroneous", "C": "consent", "S": "supervisory", "X": "external"}

TRADE_CORRECTION_REASON = {"N": "adjusted to NAV"}

REFERENCE_PRICE_TYPE = {"I": "intraday indicative value"}

REJECT_REASON = {
    "T": "test mode",
    "H": "halted",
    "Z": "shares exceed configured safety threshold",
    "S": "invalid stock",
    "D": "invalid display type",
    "C": "Nasdaq is closed",
    "L": "firm not authorized for the requested clearing type on this account",
    "M": "outside of permitted times for the requested clearing type",
    "R": "order not allowed in this type of cross",
    "X": "invalid price",
    "N": "invalid minimum quantity",
    "O": "other",
    "W": "invalid mid-point post-only price",
    "a": "reject all enabled",
    "b": "easy to borrow (ETB) reject",
    "c": "restricted symbol list reject",
    "d": "ISO order restriction",
    "e": "odd lot order restriction",
    "f": "mid-point order restriction",
    "g": "pre-market order restriction",
    "h": "post-market order restriction",
    "i": "short sale order restriction",
    "j": "on open order restriction",
    "k": "on close order restriction",
    "l": "two sided quote reject",
    "m": "exceeded shares limit",
    "n": "exceeded dollar value limit",
}

LIQUIDITY_FLAG = {
    "A": "added",
    "R": "removed",
    "O": "opening cross",
    "M": "opening cross (imbalance-only)",
    "C": "closing cross",
    "L": "closing cross (imbalance-only)",
    "H": "halt/IPO cross",
    "K": "halt cross",
    "N": "halt cross, LULD trading pause in a pilot symbol",
    "J": "non-displayed adding liquidity",
    "W": "added post-only",
    "m": "removed liquidity at a mid-point",
    "k": "added liquidity via a mid-point order",
    "n": "mid-point extended life order execution",
    "0": "supplemental order execution",
    "4": "added displayed liquidity in a Group A symbol",
    "5": "added non-displayed liquidity in a Group A symbol",
    "6": "removed liquidity in a Group A symbol",
    "7": "displayed, liquidity-adding order improves the NBBO",
    "8": "displayed, liquidity-adding order sets the QBBO while joining the NBBO",
    "a": "added displayed liquidity in a SCIP symbol",
    "b": "displayed order improves the NBBO in a pilot symbol during the LULD pricing pilot timeframe",
    "c": "added displayed liquidity in a pilot symbol during the LULD pricing pilot timeframe",
    "d": "retail designated execution that removed liquidity",
    "e": "retail designated execution that added displayed liquidity",
    "f": "retail designated execution that added non-displayed liquidity",
    "g": "added non-displayed mid-point liquidity in a Group A symbol",
    "h": "removed liquidity in a pilot symbol during the LULD pricing pilot timeframe",
    "j": "RPI (retail price improving) order provides liquidity",
    "r": "retail order removes RPI liquidity",
    "t": "retail order removes price-improving non-displayed liquidity other than RPI",
    "x": "displayed order improves the NBBO in a SCIP symbol",
    "y": "displayed order sets the QBBO while joining the NBBO in a SCIP symbol",
}

INBOUND_CODES: dict[str, dict[str, str]] = {
    "buy_sell_indicator": BUY_SELL_INDICATOR,
    "display": DISPLAY,
    "capacity": CAPACITY,
    "intermarket_sweep_eligibility": INTERMARKET_SWEEP_ELIGIBILITY,
    "cross_type": CROSS_TYPE,
    "customer_type": CUSTOMER_TYPE,
}
"""Enumerated fields of inbound messages and their codes: encode_inbound refuses any other value.

The blank code (" ", e.g. customer type "default of the port") decodes as "" because text fields drop their
padding; encode_inbound takes either spelling.
"""
_INBOUND_CODES_UNPADDED = {name: {code.rstrip(" ") for code in codes} for name, codes in INBOUND_CODES.items()}

# --- message tables ------------------------------------------------------------------------------------

_TYPE = ("message_type", 0, 1, ALPHA)
_TIMESTAMP = ("timestamp", 1, 8, UINT)  # nanoseconds since midnight


def _inbound(type_: str, name: str, description: str, *body: tuple) -> Layout:
    return Layout(
        f"ouch_{name}", (_TYPE, *body), tag=type_.encode("ascii"), tag_field="message_type", description=description
    )


def _outbound(type_: str, name: str, description: str, *body: tuple) -> Layout:
    return Layout(
        f"ouch_{name}",
        (_TYPE, _TIMESTAMP, *body),
        tag=type_.encode("ascii"),
        tag_field="message_type",
        description=description,
    )


_INBOUND = (
    _inbound(
        "O",
        "enter_order",
        "Enter Order",
        ("order_token", 1, 14, ALPHA),
        ("buy_sell_indicator", 15, 1, ALPHA),
        ("shares", 16, 4, UINT),
        ("stock", 20, 8, ALPHA),
        ("price", 28, 4, PRICE4),
        ("time_in_force", 32, 4, UINT),
        ("firm", 36, 4, ALPHA),  # blank: the OUCH account's default firm
        ("display", 40, 1, ALPHA),
        ("capacity", 41, 1, ALPHA),
        ("intermarket_sweep_eligibility", 42, 1, ALPHA),
        ("minimum_quantity", 43, 4, UINT),
        ("cross_type", 47, 1, ALPHA),
        ("customer_type", 48, 1, ALPHA),
    ),
    _inbound(
        "U",
        "replace_order",
        "Replace Order",
        ("existing_order_token", 1, 14, ALPHA),
        ("replacement_order_token", 15, 14, ALPHA),
        ("shares", 29, 4, UINT),
        ("price", 33, 4, PRICE4),
        ("time_in_force", 37, 4, UINT),
        ("display", 41, 1, ALPHA),
        ("intermarket_sweep_eligibility", 42, 1, ALPHA),
        ("minimum_quantity", 43, 4, UINT),
    ),
    _inbound(
        "X",
        "cancel_order",
        "Cancel Order",
        ("order_token", 1, 14, ALPHA),
        ("shares", 15, 4, UINT),  # the new intended order size; 0 cancels the order
    ),
    _inbound(
        "M",
        "modify_order",
        "Modify Order",
        ("order_token", 1, 14, ALPHA),
        ("buy_sell_indicator", 15, 1, ALPHA),  # only between S, T and E
        ("shares", 16, 4, UINT),
    ),
    _inbound("N", "trade_now", "Trade Now", ("order_token", 1, 14, ALPHA)),
)

_OUTBOUND = (
    _outbound("S", "system_event", "System Event", ("event_code", 9, 1, ALPHA)),
    _outbound(
        "A",
        "accepted",
        "Accepted",
        ("order_token", 9, 14, ALPHA),
        ("buy_sell_indicator", 23, 1, ALPHA),
        ("shares", 24, 4, UINT),
        ("stock", 28, 8, ALPHA),
        ("price", 36, 4, PRICE4),
        ("time_in_force", 40, 4, UINT),
        ("firm", 44, 4, ALPHA),
        ("display", 48, 1, ALPHA),
        ("order_reference_number", 49, 8, UINT),
        ("capacity", 57, 1, ALPHA),
        ("intermarket_sweep_eligibility", 58, 1, ALPHA),
        ("minimum_quantity", 59, 4, UINT),
        ("cross_type", 63, 1, ALPHA),
        ("order_state", 64, 1, ALPHA),
        ("bbo_weight_indicator", 65, 1, ALPHA),
    ),
    _outbound(
        "U",
        "replaced",
        "Replaced",
        ("replacement_order_token", 9, 14, ALPHA),
        ("buy_sell_indicator", 23, 1, ALPHA),
        ("shares", 24, 4, UINT),
        ("stock", 28, 8, ALPHA),
        ("price", 36, 4, PRICE4),
        ("time_in_force", 40, 4, UINT),
        ("firm", 44, 4, ALPHA),
        ("display", 48, 1, ALPHA),
        ("order_reference_number", 49, 8, UINT),
        ("capacity", 57, 1, ALPHA),
        ("intermarket_sweep_eligibility", 58, 1, ALPHA),
        ("minimum_quantity", 59, 4, UINT),
        ("cross_type", 63, 1, ALPHA),
        ("order_state", 64, 1, ALPHA),
        ("previous_order_token", 65, 14, ALPHA),
        ("bbo_weight_indicator", 79, 1, ALPHA),
    ),
    _outbound(
        "C",
        "canceled",
        "Canceled",
        ("order_token", 9, 14, ALPHA),
        ("decrement_shares", 23, 4, UINT),  # incremental, not cumulative
        ("reason", 27, 1, ALPHA),
    ),
    _outbound(
        "D",
        "aiq_canceled",
        "AIQ Canceled",
        ("order_token", 9, 14, ALPHA),
        ("decrement_shares", 23, 4, UINT),
        ("reason", 27, 1, ALPHA),  # always 'Q', self-match prevention
        ("quantity_prevented_from_trading", 28, 4, UINT),
        ("execution_price", 32, 4, PRICE4),
        ("liquidity_flag", 36, 1, ALPHA),
    ),
    _outbound(
        "E",
        "executed",
        "Executed",
        ("order_token", 9, 14, ALPHA),
        ("executed_shares", 23, 4, UINT),  # incremental
        ("execution_price", 27, 4, PRICE4),
        ("liquidity_flag", 31, 1, ALPHA),
        ("match_number", 32, 8, UINT),
    ),
    _outbound(
        "B",
        "broken_trade",
        "Broken Trade",
        ("order_token", 9, 14, ALPHA),
        ("match_number", 23, 8, UINT),
        ("reason", 31, 1, ALPHA),
    ),
    _outbound(
        "G",
        "executed_with_reference_price",
        "Executed with Reference Price",
        ("order_token", 9, 14, ALPHA),
        ("executed_shares", 23, 4, UINT),
        ("execution_price", 27, 4, PRICE4),
        ("liquidity_flag", 31, 1, ALPHA),
        ("match_number", 32, 8, UINT),
        ("reference_price", 40, 4, PRICE4),
        ("reference_price_type", 44, 1, ALPHA),
    ),
    _outbound(
        "F",
        "trade_correction",
        "Trade Correction",
        ("order_token", 9, 14, ALPHA),
        ("executed_shares", 23, 4, UINT),
        ("execution_price", 27, 4, PRICE4),
        ("liquidity_flag", 31, 1, ALPHA),
        ("match_number", 32, 8, UINT),
        ("reason", 40, 1, ALPHA),
    ),
    _outbound("J", "rejected", "Rejected", ("order_token", 9, 14, ALPHA), ("reason", 23, 1, ALPHA)),
    _outbound("P", "cancel_pending", "Cancel Pending", ("order_token", 9, 14, ALPHA)),
    _outbound("I", "cancel_reject", "Cancel Reject", ("order_token", 9, 14, ALPHA)),
    _outbound(
        "T",
        "order_priority_update",
        "Order Priority Update",
        ("order_token", 9, 14, ALPHA),
        ("price", 23, 4, PRICE4),
        ("display", 27, 1, ALPHA),
        ("order_reference_number", 28, 8, UINT),
    ),
    _outbound(
        "M",
        "order_modified",
        "Order Modified",
        ("order_token", 9, 14, ALPHA),
        ("buy_sell_indicator", 23, 1, ALPHA),
        ("shares", 24, 4, UINT),  # shares outstanding after the modify
    ),
)

INBOUND: dict[str, Layout] = {layout.tag.decode("ascii"): layout for layout in _INBOUND}
"""Type letter -> field table, client -> Nasdaq, in specification order."""
OUTBOUND: dict[str, Layout] = {layout.tag.decode("ascii"): layout for layout in _OUTBOUND}
"""Type letter -> field table, Nasdaq -> client, in specification order."""
MAX_MESSAGE_LENGTH = max(layout.length for layout in (*_INBOUND, *_OUTBOUND))


# --- codec ---------------------------------------------------------------------------------------------


def _layout(table: dict[str, Layout], direction: str, message_type: str, fields: dict[str, Any]) -> Layout:
    if "message_type" in fields:
        raise ValueError("the OUCH message type is the first argument, not a field")
    try:
        return table[message_type]
    except KeyError:
        known = "".join(table)
        raise KeyError(f"{message_type!r} is not an OUCH 4.2 {direction} message type (known: {known})") from None


def encode_inbound(message_type: str, /, **fields: Any) -> bytes:
    """A client -> Nasdaq message. Enumerated fields must hold a documented code (INBOUND_CODES)."""
    layout = _layout(INBOUND, "inbound", message_type, fields)
    for name, codes in _INBOUND_CODES_UNPADDED.items():
        if name in fields and str(fields[name]).rstrip(" ") not in codes:
            raise ValueError(f"OUCH {layout.description}.{name}: {fields[name]!r} is not one of {sorted(codes)}")
    return layout.pack(fields)


def encode_outbound(message_type: str, /, **fields: Any) -> bytes:
    """A Nasdaq -> client message (for exchange simulators and tests)."""
    return _layout(OUTBOUND, "outbound", message_type, fields).pack(fields)


def _decode(message: bytes | bytearray | memoryview, table: dict[str, Layout], direction: str) -> Any:
    if len(message) == 0:
        raise TruncatedError(f"OUCH {direction} message", 0, "a message type byte", "0 bytes")
    layout = table.get(chr(message[0]))
    if layout is None:
        raise MalformedError(
            f"OUCH {direction} message",
            0,
            f"an {direction} message type in {''.join(table)}",
            repr(bytes(message[:1])),
        )
    what = f"OUCH {direction} '{chr(message[0])}' {layout.description}"
    if len(message) < layout.length:
        raise TruncatedError(what, 0, f"{layout.length} bytes", f"{len(message)} bytes")
    if len(message) > layout.length:
        raise MalformedError(what, layout.length, "end of message", f"{len(message) - layout.length} more bytes")
    return layout.unpack(message)


def decode_inbound(message: bytes | bytearray | memoryview) -> Any:
    """Decode one client -> Nasdaq message (a whole Unsequenced Data payload); offsets in errors are in it."""
    return _decode(message, INBOUND, "inbound")


def decode_outbound(message: bytes | bytearray | memoryview) -> Any:
    """Decode one Nasdaq -> client message (a whole Sequenced Data payload); offsets in errors are in it."""
    return _decode(message, OUTBOUND, "outbound")
