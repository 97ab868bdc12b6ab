"""The BBO update record: what the card (and the golden model) emits when an instrument's top of book changes.

One 64-byte little-endian record (a cache line; eight 64-bit words for the card's DMA and UDP paths),
declared once here. The golden model, the gateware's record builder, the drivers' receive rings and the
host agent all use `RECORD` / `DTYPE`.

Fields:
- sequence: MoldUDP64 sequence number of the message that caused the change (for an ITCH file, the
  message's 1-based position in the file: the sequence it has when the file is sent as one session).
- itch_timestamp: the causing message's ITCH timestamp (ns since midnight).
- card_timestamp: the card's free-running clock when the record left the core (0 from the golden model).
  It is the only field that depends on when the record was made, so the canonical form zeroes it.
- locate: ITCH stock locate code of the instrument.
- flags: FLAG_* bits below.
- cause: type letter of the causing message (A F E C X D U H).
- bid_*/ask_*: best price (ITCH price units, 1/10000 dollar), aggregate shares and order count at that
  price; an empty side is all zero.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from .fields import ALPHA, PAD, PRICE4, UINT, Layout

RECORD = Layout(
    "bbo_update",
    (
        ("sequence", 0, 8, UINT),
        ("itch_timestamp", 8, 8, UINT),
        ("card_timestamp", 16, 8, UINT),
        ("locate", 24, 2, UINT),
        ("flags", 26, 1, UINT),
        ("cause", 27, 1, ALPHA),
        ("reserved_0", 28, 4, PAD),
        ("bid_price", 32, 4, PRICE4),
        ("bid_shares", 36, 4, UINT),
        ("bid_orders", 40, 4, UINT),
        ("ask_price", 44, 4, PRICE4),
        ("ask_shares", 48, 4, UINT),
        ("ask_orders", 52, 4, UINT),
        ("reserved_1", 56, 8, PAD),
    ),
    byteorder="little",
    description="top-of-book update for one instrument",
)
DTYPE: np.dtype = RECORD.wire_dtype
"""numpy dtype of a record, byte-exact (64 bytes, little-endian, reserved bytes zero)."""
SIZE = RECORD.length

FLAG_HALTED = 1 << 0
"""The instrument's trading state (ITCH 'H' message) is not 'T' (halted, paused or quotation only)."""
FLAG_DEGRADED = 1 << 1
"""The card could not track every order of this instrument (order-table overflow): the book may be wrong."""

TOP_FIELDS = ("bid_price", "bid_shares", "bid_orders", "ask_price", "ask_shares", "ask_orders")


def empty(n: int) -> np.ndarray:
    """n zeroed records (reserved bytes are zero, as the canonical form requires)."""
    return np.zeros(n, dtype=DTYPE)


def join(batches: list[np.ndarray]) -> np.ndarray:
    """Record batches as one array, in order (np.concatenate would drop the record dtype's padding)."""
    if len(batches) == 1:
        return batches[0]
    out = empty(sum(len(b) for b in batches))
    at = 0
    for b in batches:
        out[at : at + len(b)] = b
        at += len(b)
    return out


def canonical_bytes(records: np.ndarray) -> bytes:
    """The records' bytes with card_timestamp zeroed: equal for every engine that computes the same book."""
    if records.dtype != DTYPE:
        raise TypeError(f"need BBO records of dtype {DTYPE}, got {records.dtype}")
    canonical = records.copy()
    canonical["card_timestamp"] = 0
    raw = canonical.view(np.uint8).reshape(len(canonical), SIZE)
    for f in RECORD.fields:
        if f.name.startswith("reserved"):
            raw[:, f.offset : f.end] = 0
    return raw.tobytes()


class Digest:
    """SHA-256 over a stream of records in canonical form (fed batch by batch)."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.count = 0

    def update(self, records: np.ndarray) -> None:
        self._sha.update(canonical_bytes(records))
        self.count += len(records)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def digest(batches: Iterable[np.ndarray]) -> str:
    d = Digest()
    for batch in batches:
        d.update(batch)
    return d.hexdigest()
