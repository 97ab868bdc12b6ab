"""The agent's own orders: what it asked for, what the exchange said, one state machine per order.

Every order the agent sends is an `Order` in `OwnOrders`, keyed by its OUCH order token. The gateway tells
`OwnOrders` what it sent and what came back; each transition happens in exactly one method here, which
refuses an event its order's state does not allow (`OrderStateError`, naming token, state and event) and
changes nothing then. The risk engine reads the same object (open orders, resting exposure, own prices),
so what risk checks against is what the gateway tracks.

States (OUCH 4.2 semantics):

    PENDING --accepted--> ACCEPTED --executed (part)--> PARTIALLY_FILLED --executed (rest)--> FILLED
       |                     |  \\--canceled (all)--> CANCELED          \\--canceled (rest)--> CANCELED
       \\--rejected--> REJECTED  \\--replaced--> REPLACED (the replacement is a new order, ACCEPTED)

A Cancel Order or Replace Order sent does not change the state: the order stays live until the exchange
answers (`cancel_pending`, `replacement` mark what is in flight). FILLED, CANCELED, REJECTED and REPLACED
are terminal ("done"); everything else is open.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "Order",
    "OrderRequest",
    "OrderState",
    "OrderStateError",
    "OwnOrders",
    "RequestKind",
    "Side",
    "TokenAllocator",
    "UnknownOrderError",
]


class Side(enum.Enum):
    """Order side, spelled as OUCH's Buy/Sell Indicator."""

    BUY = "B"
    SELL = "S"

    @property
    def sign(self) -> int:
        """+1 for a buy (a fill raises the position), -1 for a sell."""
        return 1 if self is Side.BUY else -1


class OrderState(enum.Enum):
    PENDING = "pending"  # sent, not yet accepted
    ACCEPTED = "accepted"  # live on the book, nothing filled
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    REPLACED = "replaced"  # this token was replaced by another order


OPEN_STATES = frozenset({OrderState.PENDING, OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED})
LIVE_STATES = frozenset({OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED})


class RequestKind(enum.Enum):
    NEW = "new"
    REPLACE = "replace"
    CANCEL = "cancel"


@dataclass(slots=True)
class OrderRequest:
    """What the strategy (or an operator) wants sent: the unit the risk engine judges.

    NEW: `locate`, `side`, `price` (Price(4) units), `shares`. REPLACE: `existing_token` and the new `price`
    and `shares` (side and instrument are the existing order's). CANCEL: `existing_token` (`shares` 0).
    """

    kind: RequestKind
    locate: int
    side: Side
    price: int = 0
    shares: int = 0
    existing_token: str = ""


class OrderStateError(ValueError):
    """An event that the order's current state does not allow (e.g. a fill of a rejected order)."""


class UnknownOrderError(KeyError):
    """An event for a token this agent never sent."""

    def __str__(self) -> str:
        return f"no order with token {self.args[0]!r}"


@dataclass(slots=True)
class Order:
    token: str
    locate: int
    stock: str
    side: Side
    price: int
    shares: int  # as entered (or as replaced to)
    state: OrderState = OrderState.PENDING
    open_shares: int = 0  # shares that can still trade: 0 once done
    filled_shares: int = 0
    reference: int = 0  # the exchange's order reference number, from Accepted / Replaced
    cancel_pending: bool = False
    replacement: str = ""  # token of a Replace Order in flight
    replacement_shares: int = 0  # its shares: once the exchange takes it, they rest (whatever filled before)
    replaces: str = ""  # token of the order this one replaced

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


class TokenAllocator:
    """Day-unique OUCH order tokens: a prefix and a counter, 14 ASCII characters at most.

    `start` lets a restarted agent continue after the last token its journal saw, so no token repeats.
    """

    WIDTH = 14

    def __init__(self, prefix: str = "WB", start: int = 1) -> None:
        if not prefix.isascii() or not prefix.isalnum() or len(prefix) > 6:
            raise ValueError(f"token prefix must be 1-6 ASCII letters or digits, got {prefix!r}")
        if start < 1:
            raise ValueError(f"token counter must start at 1 or more, got {start}")
        self.prefix = prefix
        self.next_number = start
        self._digits = self.WIDTH - len(prefix)

    def allocate(self) -> str:
        number = self.next_number
        if number >= 10**self._digits:
            raise OverflowError(f"token counter exhausted: {self._digits} digits after prefix {self.prefix!r}")
        self.next_number = number + 1
        return f"{self.prefix}{number:0{self._digits}d}"

    def number_of(self, token: str) -> int | None:
        """The counter value of a token this allocator made (any prefix match), else None."""
        if token.startswith(self.prefix) and token[len(self.prefix) :].isdigit():
            return int(token[len(self.prefix) :])
        return None


@dataclass
class OwnOrders:
    """Every order of the session by token, with the transitions of the state machine above."""

    orders: dict[str, Order] = field(default_factory=dict)
    _open: dict[str, Order] = field(default_factory=dict)
    _open_by_locate: dict[int, dict[str, Order]] = field(default_factory=dict)  # the quoter asks per instrument
    _done: deque[str] = field(default_factory=deque)  # tokens of finished orders, oldest first (for prune)

    # --- reading -----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.orders)

    def __contains__(self, token: object) -> bool:
        return token in self.orders

    def get(self, token: str) -> Order:
        try:
            return self.orders[token]
        except KeyError:
            raise UnknownOrderError(token) from None

    def open_orders(self) -> Iterator[Order]:
        return iter(list(self._open.values()))

    @property
    def open_count(self) -> int:
        return len(self._open)

    def open_of(self, locate: int) -> list[Order]:
        mine = self._open_by_locate.get(locate)
        return list(mine.values()) if mine else []

    # --- transitions: what the agent sent ----------------------------------------------------------------

    def sent_new(self, token: str, locate: int, stock: str, side: Side, price: int, shares: int) -> Order:
        if token in self.orders:
            raise OrderStateError(f"order token {token!r} already used")
        order = Order(token, locate, stock, side, price, shares, open_shares=shares)
        self.orders[token] = order
        self._add_open(order)
        return order

    def sent_cancel(self, token: str) -> Order:
        order = self._require(token, OPEN_STATES, "cancel sent")
        order.cancel_pending = True
        return order

    def sent_replace(self, token: str, replacement: str, shares: int = 0) -> Order:
        """A Replace Order left for `token`: `replacement` is its token, `shares` the replacement's size."""
        order = self._require(token, LIVE_STATES, "replace sent")
        if order.replacement:
            raise OrderStateError(f"order {token!r}: replace sent while replace {order.replacement!r} is in flight")
        if replacement in self.orders:
            raise OrderStateError(f"replacement token {replacement!r} already used")
        order.replacement = replacement
        order.replacement_shares = shares
        return order

    # --- transitions: what the exchange said -------------------------------------------------------------

    def accepted(self, token: str, reference: int, price: int, shares: int) -> Order:
        order = self._require(token, {OrderState.PENDING}, "accepted")
        order.state = OrderState.ACCEPTED
        order.reference = reference
        order.price = price  # the exchange may adjust the price (e.g. price to comply)
        order.shares = shares
        order.open_shares = shares
        if shares == 0:  # accepted dead (e.g. an IOC that found nothing)
            self._finish(order, OrderState.CANCELED)
        return order

    def rejected(self, token: str) -> Order:
        order = self._require(token, {OrderState.PENDING}, "rejected")
        order.open_shares = 0
        self._finish(order, OrderState.REJECTED)
        return order

    def executed(self, token: str, shares: int) -> Order:
        order = self._require(token, LIVE_STATES, "executed")
        if not 0 < shares <= order.open_shares:
            raise OrderStateError(
                f"order {token!r}: execution of {shares} shares, expected 1..{order.open_shares} (its open shares)"
            )
        order.filled_shares += shares
        order.open_shares -= shares
        if order.open_shares == 0:
            self._finish(order, OrderState.FILLED)
        else:
            order.state = OrderState.PARTIALLY_FILLED
        return order

    def canceled(self, token: str, decrement: int) -> Order:
        order = self._require(token, LIVE_STATES, "canceled")
        if not 0 < decrement <= order.open_shares:
            raise OrderStateError(
                f"order {token!r}: cancel of {decrement} shares, expected 1..{order.open_shares} (its open shares)"
            )
        order.open_shares -= decrement
        if order.open_shares == 0:
            self._finish(order, OrderState.CANCELED)
        return order

    def replaced(self, previous: str, replacement: str, reference: int, price: int, shares: int) -> Order:
        """The exchange replaced `previous` by `replacement`: `shares` is the replacement's open size."""
        old = self._require(previous, LIVE_STATES, "replaced")
        if replacement in self.orders:
            raise OrderStateError(f"replacement token {replacement!r} already used")
        old.open_shares = 0
        old.replacement = replacement
        old.replacement_shares = 0
        self._finish(old, OrderState.REPLACED)
        new = Order(replacement, old.locate, old.stock, old.side, price, shares, replaces=previous)
        new.reference = reference
        new.open_shares = shares
        new.state = OrderState.ACCEPTED
        self.orders[replacement] = new
        if shares:
            self._add_open(new)
        else:
            new.state = OrderState.CANCELED
        return new

    def cancel_refused(self, token: str) -> Order:
        """A Cancel Order the exchange refused (Cancel Reject): the order stays as it was."""
        order = self.get(token)
        order.cancel_pending = False
        return order

    def priority_updated(self, token: str, price: int, reference: int) -> Order:
        """The exchange re-priced a live order (Order Priority Update): data, not a state change."""
        order = self._require(token, LIVE_STATES, "priority update")
        order.price = price
        order.reference = reference
        return order

    def replace_refused(self, token: str) -> Order:
        """A Replace Order the exchange did not act on (rejected, or the order was already gone)."""
        order = self.get(token)
        order.replacement = ""
        order.replacement_shares = 0
        return order

    # --- helpers -----------------------------------------------------------------------------------------

    def _require(self, token: str, states: set[OrderState] | frozenset[OrderState], event: str) -> Order:
        order = self.get(token)
        if order.state not in states:
            allowed = ", ".join(sorted(s.value for s in states))
            raise OrderStateError(f"order {token!r}: {event} in state {order.state.value}, expected {allowed}")
        return order

    def _add_open(self, order: Order) -> None:
        self._open[order.token] = order
        self._open_by_locate.setdefault(order.locate, {})[order.token] = order

    def _finish(self, order: Order, state: OrderState) -> None:
        order.state = state
        order.cancel_pending = False
        if self._open.pop(order.token, None) is not None:
            del self._open_by_locate[order.locate][order.token]
        self._done.append(order.token)

    def prune(self, keep_done: int) -> int:
        """Forget all but the `keep_done` most recently finished orders (the journal keeps them all): a day of
        requoting makes millions. A late message about a forgotten token is then an unknown token. Returns how
        many were forgotten."""
        done, orders = self._done, self.orders
        forgotten = 0
        while len(done) > keep_done:
            token = done.popleft()
            order = orders.get(token)
            if order is not None and not order.is_open:
                del orders[token]
                forgotten += 1
        return forgotten
