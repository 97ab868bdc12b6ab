"""The golden model: an exact ITCH 5.0 order-book engine that emits BBO update records.

This is the oracle the gateware is checked against, so it is written to be obviously right rather than
clever. State:

- `orders`: order reference -> Order (its instrument book, side, price level and shares remaining)
- per instrument (stock locate), an InstrumentBook with two Sides; a Side holds its price levels
  (price key -> Level: aggregate shares and order count) and its best Level. Bid prices are keyed by
  their negation so that on both sides the best level has the smallest key; the best is looked up again
  (min over the keys) only when the best level disappears.

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

import gc
from collections.abc import Iterator

import numpy as np

from ..proto import bbo, itch
from ..proto.itch_file import Chunk

BID, ASK = 0, 1
_U32_MAX = 0xFFFFFFFF

# Event codes of the columns the hot loop walks (one per message that can change a record).
_ADD, _EXECUTE, _CANCEL, _DELETE, _REPLACE, _TRADING_ACTION = range(6)
_EVENT_OF_TYPE = {"A": _ADD, "F": _ADD, "E": _EXECUTE, "C": _EXECUTE, "X": _CANCEL, "D": _DELETE,
                  "U": _REPLACE, "H": _TRADING_ACTION}  # fmt: skip
_DECODED_TYPES = "R" + "".join(_EVENT_OF_TYPE)
_TOP_COLUMNS = (*bbo.TOP_FIELDS, "flags")
_SHARES_FIELD = {"A": "shares", "F": "shares", "E": "executed_shares", "C": "executed_shares",
                 "X": "cancelled_shares", "U": "shares"}  # fmt: skip


class _Refused(Exception):
    """Raised inside the hot loop without a position; _run turns it into a BookError naming the message."""


class BookError(ValueError):
    """The feed asked the book to do something impossible; names the message's sequence number."""

    def __init__(self, sequence: int, message_type: str, what: str) -> None:
        self.sequence = sequence
        self.message_type = message_type
        super().__init__(f"sequence {sequence} ({message_type!r}): {what}")


class Level:
    """One price level of one side: aggregate shares and number of orders resting there."""

    __slots__ = ("key", "orders", "shares")

    def __init__(self, key: int) -> None:
        self.key = key  # price for asks, -price for bids: the best level has the smallest key
        self.shares = 0
        self.orders = 0


class Side:
    """The bid or ask side of one instrument."""

    __slots__ = ("best", "index", "levels")

    def __init__(self, index: int) -> None:
        self.index = index  # BID or ASK
        self.levels: dict[int, Level] = {}
        self.best: Level | None = None


class Order:
    __slots__ = ("book", "level", "shares", "side")

    def __init__(self, book: InstrumentBook, side: Side, level: Level, shares: int) -> None:
        self.book = book
        self.side = side
        self.level = level
        self.shares = shares


class InstrumentBook:
    """The order book of one instrument (stock locate) and its last emitted top of book."""

    __slots__ = ("halted", "last", "locate", "sides")

    def __init__(self, locate: int) -> None:
        self.locate = locate
        self.sides = (Side(BID), Side(ASK))
        self.halted = False
        self.last = (0, 0, 0, 0, 0, 0, 0)  # last emitted (bid p/s/n, ask p/s/n, flags)

    def top(self) -> tuple[int, int, int, int, int, int, int]:
        """(bid price, shares, orders, ask price, shares, orders, flags) as it stands now."""
        bid, ask = self.sides[BID].best, self.sides[ASK].best
        flags = bbo.FLAG_HALTED if self.halted else 0
        if bid is None:
            if ask is None:
                return (0, 0, 0, 0, 0, 0, flags)
            return (0, 0, 0, ask.key, ask.shares, ask.orders, flags)
        if ask is None:
            return (-bid.key, bid.shares, bid.orders, 0, 0, 0, flags)
        return (-bid.key, bid.shares, bid.orders, ask.key, ask.shares, ask.orders, flags)

    def depth(self, side: int) -> list[tuple[int, int, int]]:
        """(price, shares, orders) of every level of a side, best first."""
        levels = self.sides[side].levels
        return [(-k if side == BID else k, levels[k].shares, levels[k].orders) for k in sorted(levels)]


class BookModel:
    """Replays ITCH messages and emits BBO update records (wirebook.proto.bbo.DTYPE)."""

    def __init__(self, *, lenient: bool = False) -> None:
        self.lenient = lenient
        self.skipped_unknown_order = 0
        self.orders: dict[int, Order] = {}
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
        by_type = itch.decode_bulk(chunk.buffer, chunk.offsets, chunk.types, only=_DECODED_TYPES)
        return self.apply_decoded(by_type, len(chunk), first_sequence)

    def apply_decoded(self, by_type: dict[str, np.ndarray], count: int, first_sequence: int) -> np.ndarray:
        """Apply `count` messages given as itch.decode_bulk output (per-type arrays with an `index`)."""
        for row in by_type.get("R", ()):
            self.symbols[int(row["stock_locate"])] = row["stock"].decode("ascii").rstrip()
        events = _Events(by_type, count, first_sequence)
        # The book makes no reference cycles (orders point at levels, sides and books, never back), so
        # refcounting frees everything; pausing the cyclic collector keeps it from rescanning every live
        # order while millions are allocated (a third of the loop's time otherwise).
        collecting = gc.isenabled()
        gc.disable()
        try:
            positions, tops = self._run(events, first_sequence)
        finally:
            if collecting:
                gc.enable()
        self.messages += count
        records = bbo.empty(len(positions))
        if len(positions):
            at = np.array(positions, dtype=np.int64)
            records["sequence"] = at + first_sequence
            records["itch_timestamp"] = events.timestamp[at]
            records["cause"] = events.type_byte[at].view("S1")
            records["locate"] = events.locate[at]
            table = np.array(tops, dtype=np.int64)
            for i, name in enumerate(_TOP_COLUMNS):
                records[name] = table[:, i]
        self.updates += len(records)
        return records

    def _run(self, events: _Events, first_sequence: int) -> tuple[list[int], list[tuple]]:
        """The hot loop: apply book events in order; returns (chunk position, top) of every change."""
        positions: list[int] = []
        tops: list[tuple] = []
        orders, books = self.orders, self.books
        add, take, new_book = self._add, self._take, self.book  # bound once: the loop runs per message
        emit_position, emit_top = positions.append, tops.append
        at = 0
        try:
            for at, event, locate, ref, new_ref, side, shares, price in events.rows():
                book = books.get(locate)
                if book is None:
                    book = new_book(locate)
                # `touched`: the message may have changed the top (it acted at or better than the best)
                if event == _ADD:
                    touched = add(book, ref, side, price, shares)
                elif event == _TRADING_ACTION:
                    book.halted = side != 0
                    touched = True
                elif (order := orders.get(ref)) is None:
                    if not self.lenient:
                        raise _Refused(f"order {ref} is not on the book")
                    self.skipped_unknown_order += 1
                    continue
                elif order.book is not book:
                    raise _Refused(f"order {ref} is stock locate {order.book.locate}, not {locate}")
                elif event == _EXECUTE or event == _CANCEL:  # noqa: SIM109 (hot loop: two compares beat a tuple)
                    if shares == 0 or shares > order.shares:
                        raise _Refused(f"cannot take {shares} shares from order {ref} with {order.shares} left")
                    touched = take(ref, order, shares)
                elif event == _DELETE:
                    touched = take(ref, order, order.shares)
                else:  # _REPLACE: the new order keeps the side and instrument of the original
                    touched = take(ref, order, order.shares)
                    touched |= add(book, new_ref, order.side.index, price, shares)
                if touched:
                    top = book.top()
                    if top != book.last:
                        book.last = top
                        emit_position(at)
                        emit_top(top)
        except _Refused as refused:
            raise BookError(at + first_sequence, chr(int(events.type_byte[at])), str(refused)) from None
        return positions, tops

    def _add(self, book: InstrumentBook, ref: int, side_index: int, price: int, shares: int) -> bool:
        """Add an order; True when it is at the best price of its side (so the top changed)."""
        if ref in self.orders:
            raise _Refused(f"order {ref} is already on the book")
        if shares == 0 or price == 0:
            raise _Refused(f"order {ref} adds {shares} shares at price {price}")
        side = book.sides[side_index]
        key = -price if side_index == BID else price
        level = side.levels.get(key)
        if level is None:
            level = side.levels[key] = Level(key)
            if side.best is None or key < side.best.key:
                side.best = level
        level.shares += shares
        level.orders += 1
        if level.shares > _U32_MAX:
            raise _Refused(f"aggregate shares at price {price} exceed 32 bits")
        self.orders[ref] = Order(book, side, level, shares)
        return side.best is level

    def _take(self, ref: int, order: Order, shares: int) -> bool:
        """Remove `shares` from an order (all of them removes it) and its level; True when that was the best."""
        level, side = order.level, order.side
        level.shares -= shares
        order.shares -= shares
        was_best = side.best is level
        if order.shares == 0:
            del self.orders[ref]
            level.orders -= 1
            if level.orders == 0:
                del side.levels[level.key]
                if was_best:
                    side.best = side.levels[min(side.levels)] if side.levels else None
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


class _Events:
    """A chunk's messages as columns indexed by chunk position, and the positions of the book events.

    Building them is vectorised per type (a scatter by each message's `index`); only the hot loop is
    sequential. For H messages `side` holds 1 when the trading state is not 'T'.
    """

    def __init__(self, by_type: dict[str, np.ndarray], count: int, first_sequence: int) -> None:
        self.type_byte = np.zeros(count, dtype=np.uint8)
        self.timestamp = np.zeros(count, dtype=np.uint64)
        self.locate = np.zeros(count, dtype=np.int64)
        self.event = np.full(count, -1, dtype=np.int64)
        self.ref = np.zeros(count, dtype=np.int64)
        self.new_ref = np.zeros(count, dtype=np.int64)
        self.side = np.zeros(count, dtype=np.int64)
        self.shares = np.zeros(count, dtype=np.int64)
        self.price = np.zeros(count, dtype=np.int64)
        for letter, event in _EVENT_OF_TYPE.items():
            rows = by_type.get(letter)
            if rows is None or len(rows) == 0:
                continue
            at = rows["index"]
            self.type_byte[at] = ord(letter)
            self.timestamp[at] = rows["timestamp"]
            self.locate[at] = rows["stock_locate"]
            self.event[at] = event
            if event == _TRADING_ACTION:
                self.side[at] = rows["trading_state"] != b"T"
                continue
            if event == _REPLACE:
                self.ref[at] = rows["original_order_reference_number"]
                self.new_ref[at] = rows["new_order_reference_number"]
            else:
                self.ref[at] = rows["order_reference_number"]
            if event == _ADD:
                side = rows["buy_sell_indicator"]
                bad = (side != b"B") & (side != b"S")
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise BookError(
                        first_sequence + int(at[i]), letter, f"buy/sell indicator {side[i]!r} is neither B nor S"
                    )
                self.side[at] = side == b"S"
            if letter in _SHARES_FIELD:
                self.shares[at] = rows[_SHARES_FIELD[letter]]
            if event in (_ADD, _REPLACE):
                self.price[at] = rows["price"]
        self.positions = np.flatnonzero(self.event >= 0)

    def rows(self) -> Iterator[tuple[int, int, int, int, int, int, int, int]]:
        """(position, event, locate, ref, new ref, side, shares, price) of each book event, in order."""
        p = self.positions
        columns = (self.event, self.locate, self.ref, self.new_ref, self.side, self.shares, self.price)
        return zip(p.tolist(), *(c[p].tolist() for c in columns))
