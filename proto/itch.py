"""NASDAQ TotalView-ITCH 5.0: every message type, declared once as a field table.

Source: "Nasdaq TotalView-ITCH 5.0" specification (current edition, with the Direct Listing with Capital
Raise 'O' message). Offsets and widths below are the specification's, byte for byte. All integers are
big-endian; prices are unsigned with 4 implied decimals (Price(4)) except the MWCB levels (Price(8));
timestamps are nanoseconds since midnight in 6 bytes; text is ASCII, left-justified, space-padded.

These tables are the single source of truth: the scalar codec, the numpy bulk decoder, the golden model's
input stage and (wirebook.hdl) the gateware decoder are all generated from `MESSAGES`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import MalformedError, TruncatedError
from .fields import ALPHA, PRICE4, PRICE8, UINT, Layout

# Every message starts with this 11-byte header.
HEADER = (
    ("message_type", 0, 1, ALPHA),
    ("stock_locate", 1, 2, UINT),
    ("tracking_number", 3, 2, UINT),
    ("timestamp", 5, 6, UINT),
)
HEADER_LENGTH = 11
HEADER_LAYOUT = Layout("message_header", HEADER, description="the header every ITCH 5.0 message starts with")


def _message(type_: str, name: str, description: str, *body: tuple) -> Layout:
    return Layout(name, HEADER + body, tag=type_.encode("ascii"), tag_field="message_type", description=description)


_ALL = (
    _message("S", "system_event", "System Event", ("event_code", 11, 1, ALPHA)),
    _message(
        "R",
        "stock_directory",
        "Stock Directory",
        ("stock", 11, 8, ALPHA),
        ("market_category", 19, 1, ALPHA),
        ("financial_status_indicator", 20, 1, ALPHA),
        ("round_lot_size", 21, 4, UINT),
        ("round_lots_only", 25, 1, ALPHA),
        ("issue_classification", 26, 1, ALPHA),
        ("issue_sub_type", 27, 2, ALPHA),
        ("authenticity", 29, 1, ALPHA),
        ("short_sale_threshold_indicator", 30, 1, ALPHA),
        ("ipo_flag", 31, 1, ALPHA),
        ("luld_reference_price_tier", 32, 1, ALPHA),
        ("etp_flag", 33, 1, ALPHA),
        ("etp_leverage_factor", 34, 4, UINT),
        ("inverse_indicator", 38, 1, ALPHA),
    ),
    _message(
        "H",
        "stock_trading_action",
        "Stock Trading Action",
        ("stock", 11, 8, ALPHA),
        ("trading_state", 19, 1, ALPHA),
        ("reserved", 20, 1, ALPHA),
        ("reason", 21, 4, ALPHA),
    ),
    _message(
        "Y",
        "reg_sho_restriction",
        "Reg SHO Short Sale Price Test Restricted Indicator",
        ("stock", 11, 8, ALPHA),
        ("reg_sho_action", 19, 1, ALPHA),
    ),
    _message(
        "L",
        "market_participant_position",
        "Market Participant Position",
        ("mpid", 11, 4, ALPHA),
        ("stock", 15, 8, ALPHA),
        ("primary_market_maker", 23, 1, ALPHA),
        ("market_maker_mode", 24, 1, ALPHA),
        ("market_participant_state", 25, 1, ALPHA),
    ),
    _message(
        "V",
        "mwcb_decline_level",
        "Market-Wide Circuit Breaker Decline Level",
        ("level_1", 11, 8, PRICE8),
        ("level_2", 19, 8, PRICE8),
        ("level_3", 27, 8, PRICE8),
    ),
    _message("W", "mwcb_status", "Market-Wide Circuit Breaker Status", ("breached_level", 11, 1, ALPHA)),
    _message(
        "K",
        "ipo_quoting_period_update",
        "IPO Quoting Period Update",
        ("stock", 11, 8, ALPHA),
        ("ipo_quotation_release_time", 19, 4, UINT),
        ("ipo_quotation_release_qualifier", 23, 1, ALPHA),
        ("ipo_price", 24, 4, PRICE4),
    ),
    _message(
        "J",
        "luld_auction_collar",
        "Limit Up - Limit Down Auction Collar",
        ("stock", 11, 8, ALPHA),
        ("auction_collar_reference_price", 19, 4, PRICE4),
        ("upper_auction_collar_price", 23, 4, PRICE4),
        ("lower_auction_collar_price", 27, 4, PRICE4),
        ("auction_collar_extension", 31, 4, UINT),
    ),
    _message(
        "h",
        "operational_halt",
        "Operational Halt",
        ("stock", 11, 8, ALPHA),
        ("market_code", 19, 1, ALPHA),
        ("operational_halt_action", 20, 1, ALPHA),
    ),
    _message(
        "A",
        "add_order",
        "Add Order - No MPID Attribution",
        ("order_reference_number", 11, 8, UINT),
        ("buy_sell_indicator", 19, 1, ALPHA),
        ("shares", 20, 4, UINT),
        ("stock", 24, 8, ALPHA),
        ("price", 32, 4, PRICE4),
    ),
    _message(
        "F",
        "add_order_mpid",
        "Add Order with MPID Attribution",
        ("order_reference_number", 11, 8, UINT),
        ("buy_sell_indicator", 19, 1, ALPHA),
        ("shares", 20, 4, UINT),
        ("stock", 24, 8, ALPHA),
        ("price", 32, 4, PRICE4),
        ("attribution", 36, 4, ALPHA),
    ),
    _message(
        "E",
        "order_executed",
        "Order Executed",
        ("order_reference_number", 11, 8, UINT),
        ("executed_shares", 19, 4, UINT),
        ("match_number", 23, 8, UINT),
    ),
    _message(
        "C",
        "order_executed_with_price",
        "Order Executed With Price",
        ("order_reference_number", 11, 8, UINT),
        ("executed_shares", 19, 4, UINT),
        ("match_number", 23, 8, UINT),
        ("printable", 31, 1, ALPHA),
        ("execution_price", 32, 4, PRICE4),
    ),
    _message(
        "X",
        "order_cancel",
        "Order Cancel",
        ("order_reference_number", 11, 8, UINT),
        ("cancelled_shares", 19, 4, UINT),
    ),
    _message("D", "order_delete", "Order Delete", ("order_reference_number", 11, 8, UINT)),
    _message(
        "U",
        "order_replace",
        "Order Replace",
        ("original_order_reference_number", 11, 8, UINT),
        ("new_order_reference_number", 19, 8, UINT),
        ("shares", 27, 4, UINT),
        ("price", 31, 4, PRICE4),
    ),
    _message(
        "P",
        "trade",
        "Trade Message (Non-Cross)",
        ("order_reference_number", 11, 8, UINT),
        ("buy_sell_indicator", 19, 1, ALPHA),
        ("shares", 20, 4, UINT),
        ("stock", 24, 8, ALPHA),
        ("price", 32, 4, PRICE4),
        ("match_number", 36, 8, UINT),
    ),
    _message(
        "Q",
        "cross_trade",
        "Cross Trade",
        ("shares", 11, 8, UINT),
        ("stock", 19, 8, ALPHA),
        ("cross_price", 27, 4, PRICE4),
        ("match_number", 31, 8, UINT),
        ("cross_type", 39, 1, ALPHA),
    ),
    _message("B", "broken_trade", "Broken Trade / Order Execution", ("match_number", 11, 8, UINT)),
    _message(
        "I",
        "noii",
        "Net Order Imbalance Indicator",
        ("paired_shares", 11, 8, UINT),
        ("imbalance_shares", 19, 8, UINT),
        ("imbalance_direction", 27, 1, ALPHA),
        ("stock", 28, 8, ALPHA),
        ("far_price", 36, 4, PRICE4),
        ("near_price", 40, 4, PRICE4),
        ("current_reference_price", 44, 4, PRICE4),
        ("cross_type", 48, 1, ALPHA),
        ("price_variation_indicator", 49, 1, ALPHA),
    ),
    _message(
        "N",
        "retail_price_improvement",
        "Retail Price Improvement Indicator",
        ("stock", 11, 8, ALPHA),
        ("interest_flag", 19, 1, ALPHA),
    ),
    _message(
        "O",
        "dlcr_price_discovery",
        "Direct Listing with Capital Raise Price Discovery",
        ("stock", 11, 8, ALPHA),
        ("open_eligibility_status", 19, 1, ALPHA),
        ("minimum_allowable_price", 20, 4, PRICE4),
        ("maximum_allowable_price", 24, 4, PRICE4),
        ("near_execution_price", 28, 4, PRICE4),
        ("near_execution_time", 32, 8, UINT),
        ("lower_price_range_collar", 40, 4, PRICE4),
        ("upper_price_range_collar", 44, 4, PRICE4),
    ),
)

MESSAGES: dict[str, Layout] = {layout.tag.decode("ascii"): layout for layout in _ALL}
"""Type letter -> field table, in specification order."""

TYPES: tuple[str, ...] = tuple(MESSAGES)
MAX_LENGTH = max(layout.length for layout in _ALL)

LENGTH_BY_TYPE_BYTE = np.zeros(256, dtype=np.uint8)
"""Type byte -> fixed message length, 0 for bytes that are not an ITCH 5.0 type (the framer's table)."""
for _type, _layout in MESSAGES.items():
    LENGTH_BY_TYPE_BYTE[ord(_type)] = _layout.length

BOOK_TYPES = "AFECXDU"
"""Messages that change the order book."""


def layout_of(message_type: str | bytes | int) -> Layout:
    """The field table of a type letter (given as 'A', b'A' or ord('A'))."""
    if isinstance(message_type, int):
        message_type = chr(message_type)
    elif isinstance(message_type, bytes):
        message_type = message_type.decode("ascii", "replace")
    try:
        return MESSAGES[message_type]
    except KeyError:
        raise KeyError(f"{message_type!r} is not an ITCH 5.0 message type (known: {''.join(TYPES)})") from None


def encode(message_type: str, **fields: Any) -> bytes:
    """One message's bytes (without the file format's length prefix)."""
    return layout_of(message_type).pack(**fields)


def decode(buf: bytes | bytearray | memoryview, offset: int = 0) -> Any:
    """Decode the message that starts at `offset`; returns its layout's namedtuple."""
    if offset >= len(buf):
        raise TruncatedError("ITCH message", offset, "a message type byte", "end of input")
    type_byte = buf[offset]
    length = int(LENGTH_BY_TYPE_BYTE[type_byte])
    if length == 0:
        raise MalformedError("ITCH message", offset, f"a type letter in {''.join(TYPES)}", repr(chr(type_byte)))
    return MESSAGES[chr(type_byte)].unpack(buf, offset)


def decode_bulk(
    buf: np.ndarray, offsets: np.ndarray, types: np.ndarray, only: str | None = None
) -> dict[str, np.ndarray]:
    """Decode many messages at once into one native structured array per type.

    `buf` is a uint8 array, `offsets` the start of each message in it (the type byte), `types` the type
    byte of each (as produced by wirebook.proto.itch_file). Each returned array has an extra `index` field:
    the message's position in `offsets`, so callers can restore the original order across types. `only`
    limits decoding to those type letters.
    """
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    counts = np.bincount(types, minlength=256)
    out: dict[str, np.ndarray] = {}
    for letter in only if only is not None else TYPES:
        type_byte = ord(letter)
        if not counts[type_byte]:
            continue
        layout = MESSAGES[letter]
        index = np.flatnonzero(types == type_byte)
        rows = _rows(buf, offsets[index], layout)
        decoded = np.empty(len(index), dtype=_with_index(layout))
        decoded["index"] = index
        out[letter] = layout.decode_array(rows, out=decoded)
    return out


def decode_headers(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The 11-byte header (type, stock locate, tracking number, timestamp) of every message, in order."""
    return HEADER_LAYOUT.decode_array(_rows(np.ascontiguousarray(buf, dtype=np.uint8), offsets, HEADER_LAYOUT))


def _rows(buf: np.ndarray, starts: np.ndarray, layout: Layout) -> np.ndarray:
    """(n, layout.length) copies of the bytes at `starts`, for layout.decode_array."""
    if len(starts) == 0:
        return np.empty((0, layout.length), dtype=np.uint8)
    if len(buf) < layout.length or int(starts.max()) > len(buf) - layout.length:
        raise TruncatedError(layout.name, int(starts.max()), f"{layout.length} bytes", "end of buffer")
    # Rows of a strided view: one memcpy per message instead of an (n, length) index matrix.
    windows = np.lib.stride_tricks.as_strided(
        buf, shape=(len(buf) - layout.length + 1, layout.length), strides=(1, 1), writeable=False
    )
    return windows[starts]


_INDEXED_DTYPES: dict[str, np.dtype] = {}


def _with_index(layout: Layout) -> np.dtype:
    dtype = _INDEXED_DTYPES.get(layout.name)
    if dtype is None:
        dtype = np.dtype([("index", "<i8"), *[(n, layout.native_dtype[n]) for n in layout.native_dtype.names]])
        _INDEXED_DTYPES[layout.name] = dtype
    return dtype
