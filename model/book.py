"""The golden model: an exact ITCH 5.0 order-book engine that emits BBO update records.

This is the oracle the gateware is checked against, so it is written to be obviously right rather than
clever. State:

- `orders`: order reference -> [locate, side, price, shares remaining]
- per instrument (stock locate) and side, `levels`: price key -> [aggregate shares, order count], and
  `best`: the best price key. Bid prices are keyed by their negation so that on both sides the best level
  is the smallest key; `best` is recomputed with min() only when the best level disappears.

Book messages: A/F add an order; E and C execute shares off an order (C's execution price does not move
the order's level); X cancels shares; D deletes the order; U replaces it (the old reference goes, the new
one is added on the same side and instrument with the new price and shares). An order whose remaining
shares reach zero leaves the book. H sets the instrument's trading state; the record's FLAG_HALTED is set
when that state is not 'T'. Other messages do not touch the book.

After each message the instrument's top of book (best bid and ask: price, aggregate shares, order count)
and flags are compared with the last record emitted for it; a difference emits one record, so a message
that changes the top twice (U) emits at most one.

Input that no real feed produces (an unknown or duplicate order reference, executing or canceling more
shares than remain, a message whose stock locate disagrees with its order's, a zero-share or zero-price
add) raises BookError naming the sequence number: the oracle never guesses. The one exception is opt-in:
with `lenient=True`, messages that refer to an order the book does not hold (a file that starts mid-day,
or a sampled file such as RITCH's) are skipped and counted in `skipped_unknown_order`; everything else is
still an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..proto import bbo
from ..proto.itch_file import Chunk

BID, ASK = 0, 1
_U32_MAX = 0xFFFFFFFF

# Event codes of the columns the hot loop walks (one per message that can change a record).
_ADD, _EXECUTE, _CANCEL, _DELETE, _REPLACE, _TRADING_ACTION = range(6)
_EVENT_OF_TYPE = {"A": _ADD, "F": _ADD, "E": _EXECUTE, "C": _EXECUTE, "X": _CANCEL, "D": _DELETE,
                  "U": _REPLACE, "H": _TRADING_ACTION}  # fmt: skip
_SHARES_FIELD = {"A": "shares", "F": "shares", "E": "executed_shares", "C": "executed_shares",
                 "X": "cancelled_shares", "U": "shares"}  # fmt: skip


class BookError(ValueError):
    """The feed asked the book to do something impossible; names the message's sequence number."""

    def __init__(self, sequence: int, message_type: str, what: str) -> None:
        self.sequence = sequence
        self.message_type = message_type
        super().__init__(f"sequence {sequence} ({message_type!r}): {what}")


@dataclass
class InstrumentBook:
    locate: int
    levels: tuple[dict[int, list[int]], dict[int, list[int]]] = field(default_factory=lambda: ({}, {}))
    best: list[int | None] = field(default_factory=lambda: [None, None])
    halted: bool = False
    last: tuple = (0, 0, 0, 0, 0, 0, 0)  # last emitted (bid p/s/n, ask p/s/n, flags)

    def top(self) -> tuple[int, int, int, int, int, int, int]:
        """(bid price, shares, orders, ask price, shares, orders, flags) as it stands now."""
        out = []
        for side in (BID, ASK):
            key = self.best[side]
            if key is None:
                out += (0, 0, 0)
            else:
                shares, count = self.levels[side][key]
                out += (-key if side == BID else key, shares, count)
        out.append(bbo.FLAG_HALTED if self.halted else 0)
        return tuple(out)  # type: ignore[return-value]

    def depth(self, side: int) -> list[tuple[int, int, int]]:
        """(price, shares, orders) of every level of a side, best first."""
        levels = self.levels[side]
        return [(-k if side == BID else k, *levels[k]) for k in sorted(levels)]


class BookModel:
    """Replays ITCH messages and emits BBO update records (wirebook.proto.bbo.DTYPE)."""

    def __init__(self, *, lenient: bool = False) -> None:
        self.lenient = lenient
        self.skipped_unknown_order = 0
        self.orders: dict[int, list[int]] = {}
        self.books: dict[int, InstrumentBook] = {}
        self.symbols: dict[int, str] = {}
        self.messages = 0
        self.updates = 0

    def book(self, locate: int) -> InstrumentBook:
        b = self.books.get(locate)
        if b is None:
            b = self.books[locate] = InstrumentBook(locate)
        return b

    # --- feeding -------------------------------------------------------------------------------------

    def apply_chunk(self, chunk: Chunk, first_sequence: int) -> np.ndarray:
        """Apply every message of a framed chunk; message i has sequence first_sequence + i."""
        return self.apply_decoded(chunk.decode(), len(chunk), first_sequence)

    def apply_decoded(self, by_type: dict[str, np.ndarray], count: int, first_sequence: int) -> np.ndarray:
        """Apply `count` messages given as itch.decode_bulk output (per-type arrays with an `index`)."""
        for rows in by_type.get("R", ()):
            self.symbols[int(rows["stock_locate"])] = rows["stock"].decode("ascii").rstrip()
        events = _event_columns(by_type, first_sequence)
        records = self._run(events)
        self.messages += count
        self.updates += len(records)
        return records

    def _run(self, events: Iterable[tuple]) -> np.ndarray:
        out: list[tuple] = []
        orders = self.orders
        books = self.books
        for seq, ts, event, type_byte, locate, ref, new_ref, side, shares, price in events:
            book = books.get(locate)
            if book is None:
                book = self.book(locate)
            # `touched`: the message may have changed the top of book (it acted at or better than the best)
            if event == _ADD:
                touched = self._add(seq, type_byte, book, ref, side, price, shares)
            elif event == _TRADING_ACTION:
                book.halted = side != 0
                touched = True
            elif (order := orders.get(ref)) is None:
                if not self.lenient:
                    raise BookError(seq, chr(type_byte), f"order {ref} is not on the book")
                self.skipped_unknown_order += 1
                continue
            elif order[0] != locate:
                raise BookError(seq, chr(type_byte), f"order {ref} is stock locate {order[0]}, not {locate}")
            elif event in (_EXECUTE, _CANCEL):
                if shares == 0 or shares > order[3]:
                    raise BookError(
                        seq, chr(type_byte), f"cannot take {shares} shares from order {ref} with {order[3]} left"
                    )
                touched = self._take(book, ref, order, shares)
            elif event == _DELETE:
                touched = self._take(book, ref, order, order[3])
            else:  # _REPLACE: the new order keeps the side and instrument of the original
                touched = self._take(book, ref, order, order[3])
                touched |= self._add(seq, type_byte, book, new_ref, order[1], price, shares)
            if touched:
                top = book.top()
                if top != book.last:
                    book.last = top
                    out.append((seq, ts, locate, top[6], type_byte, *top[:6]))
        return _to_records(out)

    def _add(
        self, seq: int, type_byte: int, book: InstrumentBook, ref: int, side: int, price: int, shares: int
    ) -> bool:
        """Add an order; True when it is at the best price of its side (so the top changed)."""
        if ref in self.orders:
            raise BookError(seq, chr(type_byte), f"order {ref} is already on the book")
        if shares == 0 or price == 0:
            raise BookError(seq, chr(type_byte), f"order {ref} adds {shares} shares at price {price}")
        self.orders[ref] = [book.locate, side, price, shares]
        key = -price if side == BID else price
        levels = book.levels[side]
        level = levels.get(key)
        if level is None:
            levels[key] = [shares, 1]
            best = book.best[side]
            if best is None or key < best:
                book.best[side] = key
        else:
            level[0] += shares
            level[1] += 1
            if level[0] > _U32_MAX:
                raise BookError(seq, chr(type_byte), f"aggregate shares at price {price} exceed 32 bits")
        return book.best[side] == key

    def _take(self, book: InstrumentBook, ref: int, order: list[int], shares: int) -> bool:
        """Remove `shares` from an order (all of them removes it) and its level; True when that was the best."""
        side, price = order[1], order[2]
        key = -price if side == BID else price
        levels = book.levels[side]
        level = levels[key]
        level[0] -= shares
        order[3] -= shares
        was_best = book.best[side] == key
        if order[3] == 0:
            del self.orders[ref]
            level[1] -= 1
            if level[1] == 0:
                del levels[key]
                if was_best:
                    book.best[side] = min(levels) if levels else None
        return was_best

    # --- results -------------------------------------------------------------------------------------

    def final_bbo(self) -> dict[str, dict[str, int]]:
        """Instrument (symbol when a stock directory named it, else locate) -> its top of book now."""
        out = {}
        for locate in sorted(self.books):
            bp, bs, bn, ap, as_, an, flags = self.books[locate].top()
            name = self.symbols.get(locate, str(locate))
            out[name] = {
                "locate": locate, "bid_price": bp, "bid_shares": bs, "bid_orders": bn,
                "ask_price": ap, "ask_shares": as_, "ask_orders": an, "flags": flags,
            }  # fmt: skip
        return out


def _event_columns(by_type: dict[str, np.ndarray], first_sequence: int) -> Iterator[tuple]:
    """The chunk's book events, in message order, as plain tuples for the hot loop.

    Columns: sequence, timestamp, event code, type byte, locate, order ref, new ref (U), side (BID/ASK; for
    H: 0 trading, 1 not), shares, price. Building them is vectorised per type; only the merge is ordered.
    """
    parts = []
    for letter, event in _EVENT_OF_TYPE.items():
        rows = by_type.get(letter)
        if rows is None or len(rows) == 0:
            continue
        n = len(rows)
        cols = np.zeros((n, 10), dtype=np.int64)
        cols[:, 0] = rows["index"] + first_sequence
        cols[:, 1] = rows["timestamp"]
        cols[:, 2] = event
        cols[:, 3] = ord(letter)
        cols[:, 4] = rows["stock_locate"]
        if event == _TRADING_ACTION:
            cols[:, 7] = rows["trading_state"] != b"T"
        elif event == _REPLACE:
            cols[:, 5] = rows["original_order_reference_number"]
            cols[:, 6] = rows["new_order_reference_number"]
        else:
            cols[:, 5] = rows["order_reference_number"]
        if event == _ADD:
            side = rows["buy_sell_indicator"]
            bad = (side != b"B") & (side != b"S")
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise BookError(int(cols[i, 0]), letter, f"buy/sell indicator {side[i]!r} is neither B nor S")
            cols[:, 7] = side == b"S"
        if letter in _SHARES_FIELD:
            cols[:, 8] = rows[_SHARES_FIELD[letter]]
        if event in (_ADD, _REPLACE):
            cols[:, 9] = rows["price"]
        parts.append(cols)
    if not parts:
        return iter(())
    merged = np.concatenate(parts)
    merged = merged[np.argsort(merged[:, 0], kind="stable")]
    return zip(*(merged[:, i].tolist() for i in range(merged.shape[1])))


_RECORD_COLUMNS = ("sequence", "itch_timestamp", "locate", "flags", "cause", *bbo.TOP_FIELDS)


def _to_records(rows: list[tuple]) -> np.ndarray:
    records = bbo.empty(len(rows))
    if rows:
        table = np.array(rows, dtype=np.int64)
        for i, name in enumerate(_RECORD_COLUMNS):
            if name == "cause":
                records[name] = table[:, i].astype(np.uint8).view("S1")
            else:
                records[name] = table[:, i]
    return records
