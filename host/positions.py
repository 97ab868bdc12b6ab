"""Positions and P&L: what the agent's fills left it holding, per instrument and across instruments.

`Positions.on_fill(locate, side, shares, price)` applies one execution of one of the agent's orders. Per
ITCH stock locate it keeps the signed net position (shares, + long / - short), the cash the fills moved and
the cost of the open position, from which everything else follows:

- realized P&L = cash + open cost (average-cost method: closing shares realizes them against the average
  open price; a fill that goes through zero closes the whole position and opens the rest at the fill price);
- unrealized P&L = position * mark - open cost;
- realized + unrealized = cash + position * mark, the cash-flow P&L, exactly.

Units: prices are Price(4) units (1/10000 dollar), as in ITCH and OUCH; money (cash, cost, P&L, notional,
exposure) is Price(4) units times shares, i.e. 1/10000 dollar (`DOLLAR` units make one dollar). Cash, cost
and realized P&L are integers: when a fill closes part of a position the closed shares take their share of
the open cost rounded to the nearest unit and the remainder stays with the open shares, so nothing is lost
(realized + unrealized stays exact) and realized P&L is exact whenever the instrument is flat.

Mark price (`mark`): the mid of the instrument's BBO when both sides are present (may be half a unit), else
the side that is present, else the last fill price. Without a `MarketView` every instrument is marked at its
last fill price. Marks are floats; with Price(4) prices below 2**31 and positions below 2**20 shares every
figure is exact in a float.

`replay(fills)` rebuilds the whole state from a fill journal (recovery after a restart).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from .market import MarketView
from .orders import Side

__all__ = ["DOLLAR", "Fill", "FillLike", "InstrumentPosition", "Positions"]

DOLLAR = 10_000
"""Price(4) units in one dollar: also the money units (Price(4) * shares) in one dollar of notional or P&L."""


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of the agent's orders, as the journal records it (price in Price(4) units)."""

    locate: int
    side: Side
    shares: int
    price: int


class FillLike(Protocol):
    """Anything with a fill's four fields (`Fill`, the journal's recovered fills)."""

    @property
    def locate(self) -> int: ...
    @property
    def side(self) -> Side: ...
    @property
    def shares(self) -> int: ...
    @property
    def price(self) -> int: ...


@dataclass(slots=True)
class InstrumentPosition:
    """One instrument's book: signed position, cash and open cost (money units, see the module docstring)."""

    locate: int
    position: int = 0  # signed shares: + long, - short
    cash: int = 0  # -sum(side.sign * shares * price) over the fills
    cost: int = 0  # signed cost of the open position (+ for a long); 0 when flat
    last_price: int = 0  # price of the last fill, the mark of last resort
    bought: int = 0  # shares bought today
    sold: int = 0  # shares sold today
    fills: int = 0

    @property
    def realized(self) -> int:
        """Realized P&L in money units: what the closed shares made against the average open price."""
        return self.cash + self.cost

    @property
    def average_price(self) -> float:
        """Average open price of the position in Price(4) units; 0.0 when flat."""
        return self.cost / self.position if self.position else 0.0


class Positions:
    """Per-instrument positions and P&L from the agent's fills, marked to `market` (see the module docstring).

    `version` counts the fills applied: a reader caching figures derived from the positions (the risk
    engine) compares it to know when to recompute.
    """

    def __init__(self, market: MarketView | None = None) -> None:
        self.market = market
        self.instruments: dict[int, InstrumentPosition] = {}
        self._held: dict[int, InstrumentPosition] = {}  # the instruments with a non-zero position
        self.realized_total = 0
        self.version = 0
        # The portfolio figures, kept current as fills and marks move rather than summed on every read: twice
        # each held instrument's notional (exact integers: a mid may be half a unit), their sums, and the sum of
        # the held instruments' open cost. `revision` counts every change of them.
        self._notional2: dict[int, int] = {}
        self._gross2 = self._net2 = self._held_cost = 0
        self.revision = 0
        if market is not None:
            market.listeners.append(self._marks_moved)

    # --- fills ---------------------------------------------------------------------------------------------

    def on_fill(self, locate: int, side: Side, shares: int, price: int) -> InstrumentPosition:
        """Apply one fill: `shares` > 0 of `locate` bought (Side.BUY) or sold at `price` (Price(4), > 0).

        Returns the instrument's updated position. Raises ValueError (changing nothing) on a non-positive
        share count or price, or a side that is not a `Side`.
        """
        if not isinstance(side, Side):
            raise ValueError(f"fill of locate {locate}: side must be Side.BUY or Side.SELL, got {side!r}")
        if shares <= 0 or price <= 0:
            raise ValueError(
                f"fill of locate {locate}: shares and price must be > 0, got {shares} shares at {price} (Price(4))"
            )
        book = self.instruments.get(locate)
        if book is None:
            book = self.instruments[locate] = InstrumentPosition(locate)
        if book.position:
            self._held_cost -= book.cost
        realized_before = book.cash + book.cost
        sign = side.sign
        book.cash -= sign * shares * price
        position = book.position
        if position == 0 or (position > 0) == (sign > 0):  # opening or adding
            book.cost += sign * shares * price
        else:  # reducing, maybe through zero
            held = abs(position)
            closed = min(shares, held)
            if closed == held:
                book.cost = 0
            else:  # the closed shares take their part of the open cost, rounded half up to a whole unit
                book.cost -= _round_div(book.cost * closed, held)
            opened = shares - closed
            if opened:
                book.cost += sign * opened * price
        book.position = position + sign * shares
        book.last_price = price
        book.fills += 1
        if sign > 0:
            book.bought += shares
        else:
            book.sold += shares
        if book.position:
            self._held[locate] = book
            self._held_cost += book.cost
        else:
            self._held.pop(locate, None)
        self.realized_total += book.cash + book.cost - realized_before
        self.version += 1
        self._revalue(locate)
        return book

    def replay(self, fills: Iterable[FillLike]) -> None:
        """Forget everything and apply `fills` in order: the state a journal of the day's fills describes."""
        self.instruments.clear()
        self._held.clear()
        self.realized_total = 0
        self._notional2.clear()
        self._gross2 = self._net2 = self._held_cost = 0
        self.version += 1
        self.revision += 1
        for fill in fills:
            self.on_fill(fill.locate, fill.side, fill.shares, fill.price)

    @classmethod
    def from_fills(cls, fills: Iterable[FillLike], market: MarketView | None = None) -> Positions:
        """A new `Positions` rebuilt from a fill journal."""
        positions = cls(market)
        positions.replay(fills)
        return positions

    # --- one instrument ------------------------------------------------------------------------------------

    def get(self, locate: int) -> InstrumentPosition:
        """The instrument's position; a flat, fill-less one (not stored) if it never traded."""
        book = self.instruments.get(locate)
        return book if book is not None else InstrumentPosition(locate)

    def position(self, locate: int) -> int:
        """Signed net position in shares (+ long, - short); 0 if the instrument never traded."""
        book = self.instruments.get(locate)
        return book.position if book is not None else 0

    def mark(self, locate: int) -> float:
        """Mark price in Price(4) units: BBO mid, else the side present, else the last fill price (0 if none)."""
        return self._mark2(locate) / 2

    def _mark2(self, locate: int) -> int:
        """Twice the mark: an integer even for a mid."""
        market = self.market
        if market is not None:
            top = market.top(locate)
            if top is not None:
                bid, ask = top[0], top[2]
                if bid and ask:
                    return bid + ask
                if bid or ask:
                    return 2 * (bid or ask)
        book = self.instruments.get(locate)
        return 2 * book.last_price if book is not None else 0

    def _revalue(self, locate: int) -> None:
        """Bring one instrument's part of the portfolio figures up to date with its position and mark."""
        book = self._held.get(locate)
        new = book.position * self._mark2(locate) if book is not None else 0
        old = self._notional2.pop(locate, 0)
        if new:
            self._notional2[locate] = new
        self._gross2 += abs(new) - abs(old)
        self._net2 += new - old
        self.revision += 1

    def _marks_moved(self, locates: Iterable[int]) -> None:
        """MarketView.update's notification: the tops of `locates` changed."""
        held = self._held
        for locate in locates:
            if locate in held:
                self._revalue(locate)

    def realized(self, locate: int) -> int:
        book = self.instruments.get(locate)
        return book.cash + book.cost if book is not None else 0

    def unrealized(self, locate: int) -> float:
        """Unrealized P&L in money units: position * mark - open cost."""
        book = self._held.get(locate)
        return book.position * self.mark(locate) - book.cost if book is not None else 0.0

    def pnl(self, locate: int) -> float:
        """Realized + unrealized P&L of one instrument in money units."""
        return self.realized(locate) + self.unrealized(locate)

    def notional(self, locate: int) -> float:
        """Signed notional of the position at mark in money units (+ long, - short)."""
        book = self._held.get(locate)
        return book.position * self.mark(locate) if book is not None else 0.0

    # --- across instruments --------------------------------------------------------------------------------

    def held(self) -> Iterator[InstrumentPosition]:
        """The instruments whose position is not flat."""
        return iter(list(self._held.values()))

    def unrealized_total(self) -> float:
        return sum(book.position * self.mark(book.locate) - book.cost for book in self._held.values())

    def total_pnl(self) -> float:
        """Realized + unrealized P&L over every instrument, in money units."""
        return self.realized_total + self.unrealized_total()

    def gross_exposure(self) -> float:
        """Sum of |position| * mark over the instruments, in money units."""
        return sum(abs(book.position) * self.mark(book.locate) for book in self._held.values())

    def net_exposure(self) -> float:
        """Sum of position * mark over the instruments (longs minus shorts), in money units."""
        return sum(book.position * self.mark(book.locate) for book in self._held.values())

    def snapshot(self) -> tuple[float, float, float, _Halves]:
        """(gross exposure, net exposure, total P&L, {locate: signed notional}) in money units, from the figures
        kept current as fills and marks move (no pass over the instruments)."""
        net2 = self._net2
        return self._gross2 / 2, net2 / 2, self.realized_total + net2 / 2 - self._held_cost, _Halves(self._notional2)


class _Halves:
    """A read-only {locate: notional} view of the doubled notionals."""

    __slots__ = ("_doubled",)

    def __init__(self, doubled: dict[int, int]) -> None:
        self._doubled = doubled

    def get(self, locate: int, default: float = 0.0) -> float:
        doubled = self._doubled.get(locate)
        return default if doubled is None else doubled / 2

    def __getitem__(self, locate: int) -> float:
        return self._doubled[locate] / 2

    def __contains__(self, locate: object) -> bool:
        return locate in self._doubled

    def __len__(self) -> int:
        return len(self._doubled)

    def items(self) -> Iterator[tuple[int, float]]:
        return ((locate, doubled / 2) for locate, doubled in self._doubled.items())


def _round_div(numerator: int, denominator: int) -> int:
    """numerator / denominator (denominator > 0) rounded to the nearest integer, halves away from zero."""
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient
