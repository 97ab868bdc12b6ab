"""The agent's view of the market: the top of book of every instrument, as the card's BBO records left it.

`MarketView.update(records, now_ns)` takes one batch of BBO update records (proto.bbo.DTYPE) from the card
and keeps, per ITCH stock locate, the last top of book and the host time it arrived. Everything the strategy
and the risk engine ask (best bid and ask, halted, degraded, age) is read from there.

A feed gap (the card reports missing MoldUDP64 sequences) makes every instrument's top unreliable until
the gap is filled or the book is rebuilt: `mark_gap` / `clear_gap` hold that state.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..proto import bbo

__all__ = ["MarketView"]

N_LOCATES = 1 << 16  # ITCH stock locate is 2 bytes


Top = tuple[int, int, int, int, int]
"""(bid_price, bid_shares, ask_price, ask_shares, flags) of one instrument, from its last BBO record."""

_FIELDS = ["locate", "bid_price", "bid_shares", "ask_price", "ask_shares", "flags"]


class MarketView:
    """Last top of book and its arrival time per stock locate; `symbols` maps locate -> stock symbol.

    Per-locate state is kept in Python lists indexed by locate rather than in a numpy array: the hot path
    reads a few fields of one instrument at a time, and a list index beats a numpy scalar access by an order
    of magnitude. A batch is converted once (`tolist`) and walked in order.
    """

    def __init__(self, symbols: dict[int, str] | None = None) -> None:
        self.top_of: list[Top | None] = [None] * N_LOCATES
        self.updated_ns: list[int] = [0] * N_LOCATES
        self.symbols: dict[int, str] = dict(symbols or {})
        self.gap_since_ns = 0  # 0: no gap outstanding
        self.updates = 0
        self.listeners: list[Callable[[list[int]], None]] = []  # told the locates of every batch (Positions)

    def update(self, records: np.ndarray, now_ns: int) -> list[int]:
        """Apply one batch in order (a later record of a locate wins); returns the locates it touched, each
        once, in the order of their first record."""
        if records.dtype != bbo.DTYPE:
            raise TypeError(f"need BBO records of dtype {bbo.DTYPE}, got {records.dtype}")
        top_of, updated = self.top_of, self.updated_ns
        touched: dict[int, None] = {}
        for locate, bid, bid_shares, ask, ask_shares, flags in records[_FIELDS].tolist():
            top_of[locate] = (bid, bid_shares, ask, ask_shares, flags)
            updated[locate] = now_ns
            touched[locate] = None
        self.updates += len(records)
        changed = list(touched)
        for listener in self.listeners:
            listener(changed)
        return changed

    # --- one instrument ------------------------------------------------------------------------------------

    def top(self, locate: int) -> Top | None:
        """The instrument's (bid_price, bid_shares, ask_price, ask_shares, flags); None if no record came."""
        return self.top_of[locate]

    def best_bid(self, locate: int) -> tuple[int, int]:
        """(price, shares) of the best bid; (0, 0) when the side is empty or the instrument unknown."""
        top = self.top_of[locate]
        return (top[0], top[1]) if top is not None else (0, 0)

    def best_ask(self, locate: int) -> tuple[int, int]:
        top = self.top_of[locate]
        return (top[2], top[3]) if top is not None else (0, 0)

    def halted(self, locate: int) -> bool:
        top = self.top_of[locate]
        return top is not None and bool(top[4] & bbo.FLAG_HALTED)

    def degraded(self, locate: int) -> bool:
        top = self.top_of[locate]
        return top is not None and bool(top[4] & bbo.FLAG_DEGRADED)

    def age_ns(self, locate: int, now_ns: int) -> int | None:
        """Host time since the instrument's last record; None if none ever arrived."""
        if self.top_of[locate] is None:
            return None
        return now_ns - self.updated_ns[locate]

    # --- the feed ------------------------------------------------------------------------------------------

    def mark_gap(self, now_ns: int) -> None:
        if not self.gap_since_ns:
            self.gap_since_ns = now_ns

    def clear_gap(self) -> None:
        self.gap_since_ns = 0

    @property
    def gap(self) -> bool:
        return self.gap_since_ns != 0
