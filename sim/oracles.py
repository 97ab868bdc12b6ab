"""Independent top-of-book oracles for the golden order-book model.

Two third-party libraries replay an ITCH 5.0 file (every message behind a 2-byte big-endian length
field that holds the true message length) and report the top-of-book *changes* in one common
format, the structured dtype :data:`ORACLE_BBO`:

``sequence``
    1-based index, in the file, of the message that caused the change (every frame counts,
    including types the oracle does not decode).
``locate``
    ITCH stock locate code of the book that changed.
``bid_price`` / ``ask_price``
    Integer ITCH price units (1/10000 dollar, exactly as on the wire); 0 for an empty side.
``bid_shares`` / ``ask_shares``, ``bid_orders`` / ``ask_orders``
    Aggregate displayed shares and number of orders at the best level; 0 for an empty side.

A row is emitted only when the six book columns of that locate differ from its previous row (or
from all-empty before its first row). Both adapters enforce that rule themselves, whatever the
library emits.

Oracles
-------
:func:`itch_book_bbo_changes` - ``itch-book`` 0.2.1 (C++ core). Drives ``itch_book._core.Session``
(the typed core under the public ``itch_book.Feed``; ``Feed`` adds a reader thread whose shutdown
costs ~40 ms per call): ``Session(tables=["bbo"], depth=0, symbols=[])``, ``feed(chunk)`` per chunk,
``take_bbo()`` and ``stats()``. Its ``bbo`` table is already one row per top-of-book change with
raw integer prices (``bid_px``/``ask_px`` int64; ``Feed`` only divides them for
``price_type="float"``), aggregate size (``*_sz``) and order count (``*_ct``). Its ``seq`` is
1-based but counts only well-formed frames of the 23 ITCH 5.0 types, so it is mapped back to the
file index when the file holds unknown-type or wrong-length frames. ~15-20 M msg/s on dense order
references; much slower (~0.3-2 M msg/s) on the RITCH sample, whose sparse references make the
paged order index allocate a page per order.

:func:`meatpy_bbo_changes` - ``meatpy`` 0.5.0 (pure Python). One ``ITCH50MarketProcessor`` per
instrument, fed with ``process_message(ITCH50MarketMessage.from_bytes(frame))``; the top of book is
read from ``processor.current_lob`` (``bid_levels[0]`` / ``ask_levels[0]``: ``price`` is the raw
integer price - meatpy never converts to float unless asked through ``best_bid()`` etc. -, the sum
of ``queue[i].volume`` the shares, ``len(queue)`` the order count). meatpy's documented usage feeds
every message to every processor, each one filtering (A/F by stock symbol, E/C/X/D/U by its own
set of live order references). Here each message goes only to the processor(s) that can act on it
(A/F by locate, the others through a reference->processor index kept as a superset of meatpy's own
sets) and only the touched book is re-read: same result, no per-symbol fan-out. Throughput is then
bounded by meatpy's own linear order searches: ~85 k msg/s on the RITCH sample, 60-100 k msg/s on
8-symbol random feeds with 60-300 live orders per book (the fan-out usage measures 56 k msg/s with
3 symbols, 31 k with 8, and falls further with the symbol count). Framing is done here: meatpy's
``ITCH50MessageReader`` raises on unknown types and on a zero length field. Processors are created
per locate on its first A/F, named after that message's stock field (no 'R' message needed; an A/F
of another symbol on the same locate is dropped by meatpy's symbol filter).

Both oracles support every column (:data:`ITCH_BOOK_COLUMNS`, :data:`MEATPY_COLUMNS`); the
sentinels :data:`UNSUPPORTED_U4` / :data:`UNSUPPORTED_U8` are reserved for an oracle that cannot
fill a column, and :func:`common_columns` gives the columns two oracles can be compared on.

Semantic differences
--------------------
On well-formed flow (nonzero unique references, executes/cancels within the order's shares) the
two oracles agree row for row, and with an independent dict-based reference book. Differences:

* Rejected adds: itch-book ignores an A/F (and the new order of a U, the old one is still removed)
  with order reference 0, zero shares or zero price, and counts it in ``stats["rejected"]``; meatpy
  books it (a zero-price bid then reports price 0 with nonzero shares). The RITCH sample's first A
  (message 9, locate 2, buy 1000 @ 53167) has reference 0: meatpy keeps that order for the whole
  day, so its rows 9-19 show 1000 more shares and one more order at the 53167 bid (9 meatpy rows vs
  8 itch-book rows there; identical everywhere else, and identical overall once that reference is
  rewritten to a nonzero one).
* Duplicate references: itch-book evicts the live order when an A/F reuses its reference (a U onto
  a live reference too); meatpy keeps both orders and a later D removes only the first it finds.
* Over-sized E/C/X: itch-book clamps; meatpy removes the order and raises
  ``VolumeInconsistencyException`` (caught here, so the book is the clamped one).
* E/C/X/D/U on an unknown reference are ignored by both. A second E/C/X/D on an order that a full
  E/C/X already removed: itch-book ignores it; meatpy still lists the reference as live and raises
  (``OrderNotFoundError`` / ``Exception("Deleting missing order.")``; caught here, book unchanged).
* C: both reduce the resting order at its own level; the execution price is ignored.
* Routing: itch-book and this meatpy adapter apply E/C/X/D/U to the book that owns the order,
  whatever locate the message header carries.
* meatpy checks FIFO priority on E (an E on an order that is not first at the best level) and
  raises ``ExecutionPriorityExceptionList`` at a later execute with another timestamp and at
  ``end_of_day`` (9 times mid-stream plus 3 at end of day on the RITCH sample). The book effect is
  the same either way; the adapter counts them (``stats["priority_violations"]``, 167 on RITCH).
* A zero length field: itch-book treats it as end of session and silently drops the rest (so the
  RITCH sample as published decodes to 0 messages and ``Feed`` raises "not an ITCH 5.0 stream");
  meatpy's reader raises ``ValueError("Empty message data")``. Both adapters raise ``ValueError``
  when data follows a zero length field and accept one only as the final frame.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from ..proto import itch

ORACLE_BBO = np.dtype(
    [
        ("sequence", "<u8"),
        ("locate", "<u2"),
        ("bid_price", "<u4"),
        ("bid_shares", "<u8"),
        ("bid_orders", "<u4"),
        ("ask_price", "<u4"),
        ("ask_shares", "<u8"),
        ("ask_orders", "<u4"),
    ]
)

BOOK_COLUMNS: tuple[str, ...] = (
    "bid_price",
    "bid_shares",
    "bid_orders",
    "ask_price",
    "ask_shares",
    "ask_orders",
)
ALL_COLUMNS: tuple[str, ...] = ("sequence", "locate", *BOOK_COLUMNS)

#: Value of a ``<u4`` column an oracle cannot provide (order counts, prices).
UNSUPPORTED_U4 = 0xFFFF_FFFF
#: Value of a ``<u8`` column an oracle cannot provide (shares).
UNSUPPORTED_U8 = 0xFFFF_FFFF_FFFF_FFFF

#: Columns each oracle fills with real values; any other column holds the sentinel.
ITCH_BOOK_COLUMNS: tuple[str, ...] = ALL_COLUMNS
MEATPY_COLUMNS: tuple[str, ...] = ALL_COLUMNS
SUPPORTED_COLUMNS: dict[str, tuple[str, ...]] = {"itch_book": ITCH_BOOK_COLUMNS, "meatpy": MEATPY_COLUMNS}

#: Fixed length (type byte included) of every ITCH 5.0 message type, from the project's field tables.
MESSAGE_LENGTHS: dict[int, int] = {ord(t): layout.length for t, layout in itch.MESSAGES.items()}

_BOOK_TYPES = frozenset(b"AFECXDU")
_EMPTY_TOP: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)
_ANY_DATE = dt.date(2000, 1, 3)  # itch-book wants a session date; only its ts_event column uses it

StrPath = str | os.PathLike[str]


def common_columns(*oracles: str) -> tuple[str, ...]:
    """Columns every named oracle (keys of :data:`SUPPORTED_COLUMNS`) supports, in dtype order."""
    return tuple(c for c in ALL_COLUMNS if all(c in SUPPORTED_COLUMNS[o] for o in oracles))


# ---------------------------------------------------------------------------------------------
# framing helpers


def _open_stream(path: StrPath) -> BinaryIO:
    """Binary stream of the file, gunzipped if it is gzip (itch-book and meatpy both accept .gz)."""
    f = open(path, "rb")  # returned to the caller, who closes it
    if f.read(2) == b"\x1f\x8b":
        f.seek(0)
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    f.seek(0)
    return f


def _read_bytes(path: StrPath) -> bytes:
    """Whole (gunzipped) file."""
    with _open_stream(path) as f:
        return f.read()


def _frames(data: bytes | memoryview) -> Iterator[tuple[int, int, int]]:
    """Yield ``(offset_of_payload, length, type_byte)`` per frame; stop at EOF.

    Raises ``ValueError`` on a truncated final frame or on a zero length field followed by more
    data (a writer that does not fill in lengths); a zero length as the very last frame ends the
    stream.
    """
    n = len(data)
    off = 0
    while off < n:
        if off + 2 > n:
            raise ValueError(f"truncated length field at byte {off}")
        length = (data[off] << 8) | data[off + 1]
        if length == 0:
            if off + 2 < n:
                raise ValueError(
                    f"zero length field at byte {off} with {n - off - 2} bytes after it: the file's "
                    "2-byte length fields are not true message lengths"
                )
            return
        start = off + 2
        if start + length > n:
            raise ValueError(f"truncated frame at byte {off}: length {length}, {n - start} bytes left")
        yield start, length, data[start]
        off = start + length


def _counted_frame_index(data: bytes) -> np.ndarray:
    """1-based file index of every frame itch-book counts in ``seq`` (known type, spec length)."""
    idx = [i for i, (_, length, typ) in enumerate(_frames(data), 1) if MESSAGE_LENGTHS.get(typ) == length]
    return np.asarray(idx, dtype=np.uint64)


def _keep_changes(out: np.ndarray) -> np.ndarray:
    """Drop rows whose six book columns equal the previous row of the same locate (or all-empty)."""
    if len(out) == 0:
        return out
    order = np.argsort(out["locate"], kind="stable")  # rows stay in sequence order per locate
    srt = out[order]
    same = np.ones(len(srt), dtype=bool)
    first = np.ones(len(srt), dtype=bool)
    first[1:] = srt["locate"][1:] != srt["locate"][:-1]
    for c in BOOK_COLUMNS:
        col = srt[c]
        prev = np.empty_like(col)
        prev[1:] = col[:-1]
        prev[first] = 0
        same &= col == prev
    keep = np.empty(len(out), dtype=bool)
    keep[order] = ~same
    return out[keep]


# ---------------------------------------------------------------------------------------------
# itch-book


def itch_book_bbo_changes(
    path: StrPath,
    *,
    stats: dict[str, Any] | None = None,
    chunk_bytes: int = 8 << 20,
    batch_rows: int = 1 << 20,
) -> np.ndarray:
    """Top-of-book changes of every instrument in ``path`` according to itch-book.

    ``stats`` (optional, filled in place) receives itch-book's ``Session.stats()`` (``messages``,
    ``unknown``, ``malformed``, ``missing_ref``, ``rejected``, ``clamped``, ``dup_ref``,
    ``crossed_books``, ...) plus ``rows_dropped`` (library rows that were not a change of the six
    columns; 0 so far).
    """
    from itch_book._core import Session

    session = Session(tables=["bbo"], depth=0, symbols=[])
    parts: list[dict[str, np.ndarray]] = []
    with _open_stream(path) as f:
        while chunk := f.read(chunk_bytes):
            session.feed(chunk)
            if session.rows() >= batch_rows:
                parts.append(session.take_bbo())
    parts.append(session.take_bbo())
    lib_stats: dict[str, Any] = dict(session.stats())
    if lib_stats["end_of_session"]:
        # itch-book stops silently at a zero length field; only accept one as the last frame
        # (_frames raises otherwise, e.g. on the RITCH sample whose length fields are all zero).
        for _ in _frames(_read_bytes(path)):
            pass
    if lib_stats["messages"] == 0 or lib_stats["pending_bytes"]:
        what = "truncated" if lib_stats["messages"] else "not an ITCH 5.0 stream"
        raise ValueError(
            f"{os.fspath(path)}: {what} ({lib_stats['messages']} messages decoded, "
            f"{lib_stats['pending_bytes']} trailing bytes)"
        )
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    seq = cols["seq"].astype(np.uint64)
    if lib_stats["unknown"] or lib_stats["malformed"]:
        # itch-book's seq (1-based) counts only well-formed frames of the 23 ITCH 5.0 types; map it
        # back to the index of the frame in the file.
        index = _counted_frame_index(_read_bytes(path))
        if len(index) != lib_stats["messages"]:
            raise RuntimeError(f"frame walk found {len(index)} frames, itch-book {lib_stats['messages']}")
        seq = index[seq.astype(np.int64) - 1]

    out = np.empty(len(seq), dtype=ORACLE_BBO)
    out["sequence"] = seq
    out["locate"] = cols["locate"]
    for side in ("bid", "ask"):
        px = cols[f"{side}_px"]
        if len(px) and (px.min() < 0 or px.max() > 0xFFFF_FFFF):
            raise ValueError(f"itch-book {side}_px outside the ITCH Price(4) range")
        out[f"{side}_price"] = px.astype(np.uint32)
        out[f"{side}_shares"] = cols[f"{side}_sz"]
        out[f"{side}_orders"] = cols[f"{side}_ct"]
    kept = _keep_changes(out)
    if stats is not None:
        stats.clear()
        stats.update(lib_stats)
        stats["rows_dropped"] = len(out) - len(kept)
    return kept


# ---------------------------------------------------------------------------------------------
# meatpy


class _MeatpyBook:
    """One meatpy processor (one instrument) plus the last top of book reported for it."""

    __slots__ = ("last", "locate", "proc")

    def __init__(self, proc: Any, locate: int) -> None:
        self.proc = proc
        self.locate = locate
        self.last = _EMPTY_TOP

    def top(self) -> tuple[int, int, int, int, int, int]:
        lob = self.proc.current_lob
        if lob is None:
            return _EMPTY_TOP
        bids, asks = lob.bid_levels, lob.ask_levels
        if bids:
            b = bids[0]
            bid = (int(b.price), int(sum(o.volume for o in b.queue)), len(b.queue))
        else:
            bid = (0, 0, 0)
        if asks:
            a = asks[0]
            ask = (int(a.price), int(sum(o.volume for o in a.queue)), len(a.queue))
        else:
            ask = (0, 0, 0)
        return bid + ask


def _meatpy_classes() -> tuple[Any, Any]:
    """Processor subclass whose books count FIFO-priority violations instead of raising later."""
    from meatpy.itch50 import ITCH50MarketProcessor
    from meatpy.lob import LimitOrderBook

    class CountingLimitOrderBook(LimitOrderBook):  # type: ignore[type-arg]
        violations = 0

        def skip_exception(self, e: Exception) -> bool:
            CountingLimitOrderBook.violations += 1
            return True

    class Processor(ITCH50MarketProcessor):
        def create_lob(self, timestamp: Any) -> None:  # mirrors ITCH50MarketProcessor.create_lob
            self.current_lob = CountingLimitOrderBook(timestamp)
            self.current_lob.decimals_adj = 10000

    return Processor, CountingLimitOrderBook


def meatpy_bbo_changes(
    path: StrPath,
    *,
    errors: Literal["count", "raise"] = "count",
    stats: dict[str, Any] | None = None,
) -> np.ndarray:
    """Top-of-book changes of every instrument in ``path`` according to meatpy.

    ``errors="count"`` (default) catches the exceptions meatpy raises while applying a message
    (over-sized executes/cancels, second delete of an order a full execute removed, ...), keeps the
    book as meatpy left it and counts them in ``stats["errors"]`` by exception class;
    ``errors="raise"`` lets them propagate. ``stats`` (optional, filled in place) also gets
    ``messages``, ``book_messages``, ``skipped_frames`` (unknown type or wrong length, not decoded),
    ``priority_violations`` and ``books``.
    """
    from meatpy.itch50.itch50_market_message import ITCH50MarketMessage

    if errors not in ("count", "raise"):
        raise ValueError("errors must be 'count' or 'raise'")
    processor_cls, lob_cls = _meatpy_classes()
    from_bytes = ITCH50MarketMessage.from_bytes
    book_date = dt.datetime(_ANY_DATE.year, _ANY_DATE.month, _ANY_DATE.day)

    data = _read_bytes(path)
    books: dict[int, _MeatpyBook] = {}
    # order reference -> books whose meatpy processor may hold it (superset of meatpy's own sets)
    owners: dict[int, tuple[_MeatpyBook, ...]] = {}
    rows: list[tuple[int, ...]] = []
    error_counts: dict[str, int] = {}
    messages = book_messages = skipped = 0
    view = memoryview(data)

    for seq, (start, length, typ) in enumerate(_frames(view), 1):
        messages = seq
        if MESSAGE_LENGTHS.get(typ) != length:  # unknown type or wrong length: not decoded
            skipped += 1
            continue
        if typ not in _BOOK_TYPES:
            continue
        book_messages += 1
        msg = from_bytes(bytes(view[start : start + length]))
        targets: tuple[_MeatpyBook, ...]
        if typ == 0x41 or typ == 0x46:  # A, F
            book = books.get(msg.stock_locate)
            if book is None:
                book = books[msg.stock_locate] = _MeatpyBook(processor_cls(msg.stock, book_date), msg.stock_locate)
            owned = owners.get(msg.order_ref, ())
            if book not in owned:
                owners[msg.order_ref] = (*owned, book)
            targets = (book,)
        elif typ == 0x44:  # D
            targets = owners.pop(msg.order_ref, ())
        elif typ == 0x55:  # U
            targets = owners.pop(msg.original_ref, ())
            if targets:
                owned = owners.get(msg.new_ref, ())
                owners[msg.new_ref] = owned + tuple(b for b in targets if b not in owned)
        else:  # E, C, X
            targets = owners.get(msg.order_ref, ())
        for book in targets:
            try:
                book.proc.process_message(msg)
            except Exception as exc:
                if errors == "raise":
                    raise
                name = type(exc).__name__
                error_counts[name] = error_counts.get(name, 0) + 1
            top = book.top()
            if top != book.last:
                book.last = top
                rows.append((seq, book.locate, *top))

    if messages == 0:
        raise ValueError(f"{os.fspath(path)}: no ITCH messages")
    if stats is not None:
        stats.clear()
        stats.update(
            messages=messages,
            book_messages=book_messages,
            skipped_frames=skipped,
            priority_violations=lob_cls.violations,
            books=len(books),
            errors=error_counts,
        )
    return np.array(rows, dtype=ORACLE_BBO)


__all__ = [
    "ALL_COLUMNS",
    "BOOK_COLUMNS",
    "ITCH_BOOK_COLUMNS",
    "MEATPY_COLUMNS",
    "MESSAGE_LENGTHS",
    "ORACLE_BBO",
    "SUPPORTED_COLUMNS",
    "UNSUPPORTED_U4",
    "UNSUPPORTED_U8",
    "common_columns",
    "itch_book_bbo_changes",
    "meatpy_bbo_changes",
]


if __name__ == "__main__":  # pragma: no cover - manual cross-check: python oracles.py FILE
    import sys
    import time

    target = Path(sys.argv[1])
    for name, fn in (("itch_book", itch_book_bbo_changes), ("meatpy", meatpy_bbo_changes)):
        info: dict[str, Any] = {}
        t0 = time.perf_counter()
        res = fn(target, stats=info)
        wall = time.perf_counter() - t0
        print(f"{name}: {len(res)} changes in {wall:.3f} s ({info.get('messages', 0) / wall:,.0f} msg/s) {info}")


# ---------------------------------------------------------------------------------------------
# the golden model's records in the oracles' format


def from_bbo_records(records: np.ndarray) -> np.ndarray:
    """wirebook.proto.bbo records (golden model or card) as :data:`ORACLE_BBO` top-of-book changes.

    Records that differ from the previous one of their instrument only in flags (a halt) are not
    top-of-book changes for the oracles and are dropped.
    """
    out = np.empty(len(records), dtype=ORACLE_BBO)
    for c in ALL_COLUMNS:
        out[c] = records[c]
    return _keep_changes(out)
