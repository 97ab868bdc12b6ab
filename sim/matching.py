"""The exchange simulator's matching: the agent's OUCH 4.2 orders against a replayed ITCH market.

No sockets here: `MatchingEngine` is driven by two calls, `apply(messages)` (the next ITCH messages of the
replayed market, in feed order) and `handle(account, message)` (one decoded inbound OUCH message of an
account), and both return the outbound OUCH messages they cause, as `Outbound(account, bytes)`.

Replayed market
---------------
The replayed book is the golden model (wirebook.model.book.BookModel, lenient: messages about orders it
never saw are skipped), fed one batch at a time (the exchange passes one MoldUDP64 packet's messages).
Stock directory 'R' messages give stock locate -> symbol; a symbol is unknown until its 'R' was applied. The
engine's clock is the ITCH timestamp of the last message applied: every outbound message carries it (0
before the first message). The replayed orders never see the agent's orders: the agent is a price taker on
top of a market that does not react to it.

Taken shares. When an agent order trades against a replayed price level, the shares it took are remembered
for that (locate, side, price): they are not available again. Every decrease of the level's displayed
shares (the replay executing or canceling there) releases as many taken shares; a level that disappears
forgets them. So an agent cannot fill twice against the same displayed liquidity.

Rules
-----
Entering (and a Replace's new order). Validation, in this order, like Nasdaq:
  - the order token was already used by this account (Enter or Replace) -> ignored, no answer (OUCH: order
    tokens are day-unique; a duplicate is silently ignored). A token is used once any answer was sent,
    Rejected included.
  - a reject fault chose this order (`reject_reason` argument) -> Rejected with that reason.
  - unknown stock -> Rejected 'S'; the stock's trading state ('H' message) is not 'T' -> Rejected 'H'.
  - buy/sell indicator not B, S, T or E -> 'O'; display not a DISPLAY code -> 'D'; cross type other than
    'N' (or blank) -> 'R' (only the continuous market is simulated).
  - price 0, above MAX_LIMIT_PRICE ($199,999.99) or, at $1.00 and above, not a whole number of cents
    (100 Price(4) units) -> 'X'. Below $1.00 any Price(4) price is on tick.
  - shares above MAX_ORDER_SHARES (>= 1,000,000) -> 'Z' (shares exceed the safety threshold); 0 shares ->
    'O' (no documented code names it).
  - minimum quantity above the shares -> 'N'. Otherwise minimum quantity is not enforced.
A valid order is Accepted (its full shares, order state 'L', a new order reference number). Then, if it is
marketable (a buy at or above the replayed best ask, a sell at or below the best bid), it walks the
replayed opposite side best price first, taking at each level the shares available there (displayed minus
taken): one Executed per level, at the level's price, liquidity flag 'R'. What is left rests on the book at
its limit price, unless time in force is 0 (IOC): then Canceled with reason 'I' for the rest. Time in force
is otherwise not enforced (orders live until canceled or filled). Display types are all treated alike
(a lit limit order). Agent orders never trade with each other.

Resting orders fill, at their own limit price with liquidity flag 'A', after each applied batch:
  1. trade-through prints, in feed order: an ITCH execution of that stock (E at the executed order's price;
     C with printable 'Y' at its execution price; P at its price; Q at the cross price) strictly through
     a resting order's price (a print below our bid, above our offer) fills it up to the printed shares;
     the print's shares are shared among our orders best price first, then oldest first. A print at our
     price does not fill us (we would be behind the displayed queue).
  2. a crossed replayed book: a resting buy whose price is at or above replayed ask levels fills up to the
     shares available at those levels (sells symmetrically), best price first then oldest first; the
     levels' shares become taken.
One Executed per order per step; match numbers are unique and increasing over the whole engine. Nothing
fills while the stock is halted.

Replace (OUCH 4.2): the existing token is not a live order of the account, or the replacement token was
already used -> ignored (the replacement token is not consumed). The new details invalid (price, shares 0
or >= 1,000,000, display, minimum quantity) -> the existing order is Canceled (reason 'U', all its open
shares) and the replacement token is not consumed. Otherwise Replaced: the replacement token, the new price,
shares (the replacement's open shares), time in force, display, intermarket sweep and minimum quantity,
side, stock, firm, capacity and cross type of the existing order, a new order reference, the previous
token; the new order loses time priority and may execute at once (as on entry, IOC included).

Cancel: shares is the new intended open size. A live order with more open shares than that -> Canceled with
decrement = open - shares, reason 'U' (the order is dead at 0). A dead or unknown token, or a size at or
above the open shares -> ignored.

Modify Order 'M' and Trade Now 'N' are not simulated: ignored (`handle` returns no message).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..model.book import ASK, BID, BookModel
from ..proto import itch, itch_file, ouch

__all__ = ["AgentOrder", "MatchingEngine", "Outbound", "price_error"]

CENT = 100
"""$0.01 in Price(4) units: the tick of prices at $1.00 and above."""
DOLLAR = 10_000
_PRINT_TYPES = frozenset(b"ECPQ")
_PRICE_TYPES = frozenset(b"AFU")


class Outbound(NamedTuple):
    """One OUCH message for one account's sequenced stream."""

    account: str
    message: bytes


@dataclass(slots=True)
class AgentOrder:
    """A live order of the agent on the simulated book."""

    account: str
    token: str
    locate: int
    stock: str
    side: str  # OUCH buy/sell indicator: B, or S/T/E (all sell)
    price: int
    open_shares: int
    time_in_force: int
    firm: str
    display: str
    capacity: str
    intermarket_sweep_eligibility: str
    minimum_quantity: int
    cross_type: str
    reference: int
    priority: int  # arrival order: smaller is older

    @property
    def is_buy(self) -> bool:
        return self.side == ouch.BUY

    def better_first(self) -> tuple[int, int]:
        """Sort key: best price first (highest bid, lowest offer), then time priority."""
        return (-self.price if self.is_buy else self.price, self.priority)


def price_error(price: int) -> str | None:
    """Why a Price(4) limit price is refused ('X'), or None when it is valid."""
    if price <= 0:
        return "price must be above 0"
    if price > ouch.MAX_LIMIT_PRICE:
        return f"price {price} above the highest limit price {ouch.MAX_LIMIT_PRICE}"
    if price >= DOLLAR and price % CENT:
        return f"price {price} at $1.00 or above is not a multiple of {CENT} (one cent)"
    return None


class MatchingEngine:
    """The replayed book plus the agent's live orders; see the module docstring for every rule.

    `apply` and `handle` are not thread-safe: one thread (the exchange's loop) drives the engine.
    """

    def __init__(self) -> None:
        self.model = BookModel(lenient=True)
        self.sequence = 0  # sequence number of the last market message applied (the first is 1)
        self.timestamp = 0  # ITCH timestamp of the last market message applied
        self.locates: dict[str, int] = {}  # symbol -> stock locate, from 'R'
        self.orders: dict[tuple[str, str], AgentOrder] = {}  # (account, token) -> live order
        self._by_locate: dict[int, dict[tuple[str, str], AgentOrder]] = {}
        self._used_tokens: dict[str, set[str]] = {}
        self._references = itertools.count(1)
        self._matches = itertools.count(1)
        self._priorities = itertools.count(1)
        self._taken: dict[tuple[int, int, int], list[int]] = {}  # (locate, side, price) -> [taken, level shares]

    # --- replayed market ------------------------------------------------------------------------------

    def apply(self, messages: Sequence[bytes]) -> list[Outbound]:
        """Apply the next market messages (ITCH 5.0, without length prefix); returns the agent's fills."""
        if not messages:
            return []
        prints: list[tuple[int, int, int]] = []  # (locate, price, shares)
        added_prices: dict[int, int] = {}  # order reference -> price, for orders added in this batch
        touched: set[int] = set()
        for message in messages:
            kind = message[0]
            if kind == ord("R"):
                record = itch.decode(message)
                self.locates[record.stock] = record.stock_locate
            elif kind in _PRICE_TYPES:
                record = itch.decode(message)
                ref = record.new_order_reference_number if kind == ord("U") else record.order_reference_number
                added_prices[ref] = record.price
            elif kind in _PRINT_TYPES:
                printed = self._print_of(itch.decode(message), added_prices)
                if printed is not None:
                    prints.append(printed)
            touched.add(int.from_bytes(message[1:3], "big"))
        framed = b"".join(len(m).to_bytes(2, "big") + m for m in messages)
        self.model.apply_chunk(itch_file.read_all(framed), self.sequence + 1)
        self.sequence += len(messages)
        self.timestamp = int.from_bytes(messages[-1][5:11], "big")
        self._release_taken(touched)
        out: list[Outbound] = []
        for locate, price, shares in prints:
            out += self._fill_on_print(locate, price, shares)
        for locate in touched:
            if self._by_locate.get(locate):
                out += self._fill_on_cross(locate)
        return out

    def _print_of(self, record: Any, added_prices: dict[int, int]) -> tuple[int, int, int] | None:
        """(locate, price, shares) of an execution message, or None when it prints nothing we can price."""
        kind = record.message_type
        if kind == "E":
            price = added_prices.get(record.order_reference_number)
            if price is None:
                order = self.model.orders.get(record.order_reference_number)
                if order is None:
                    return None
                price = -order.level.key if order.side.index == BID else order.level.key
            return record.stock_locate, price, record.executed_shares
        if kind == "C":
            if record.printable != "Y":
                return None
            return record.stock_locate, record.execution_price, record.executed_shares
        if kind == "P":
            return record.stock_locate, record.price, record.shares
        return record.stock_locate, record.cross_price, record.shares  # Q

    def _level_shares(self, locate: int, side: int, price: int) -> int:
        book = self.model.books.get(locate)
        if book is None:
            return 0
        level = book.sides[side].levels.get(-price if side == BID else price)
        return 0 if level is None else level.shares

    def _release_taken(self, locates: set[int]) -> None:
        for key in [k for k in self._taken if k[0] in locates]:
            entry = self._taken[key]
            now = self._level_shares(*key)
            if now < entry[1]:
                entry[0] -= entry[1] - now
            entry[1] = now
            if now == 0 or entry[0] <= 0:
                del self._taken[key]

    def _take(self, locate: int, side: int, price: int, level_shares: int, shares: int) -> None:
        entry = self._taken.setdefault((locate, side, price), [0, level_shares])
        entry[0] += shares
        entry[1] = level_shares

    def _available(self, locate: int, side: int, price: int, level_shares: int) -> int:
        entry = self._taken.get((locate, side, price))
        return level_shares - (entry[0] if entry else 0)

    def _halted(self, locate: int) -> bool:
        book = self.model.books.get(locate)
        return book is not None and book.halted

    # --- agent fills ----------------------------------------------------------------------------------

    def _fill_on_print(self, locate: int, price: int, shares: int) -> list[Outbound]:
        if self._halted(locate):
            return []
        out = []
        through = [
            o for o in self._by_locate.get(locate, {}).values() if (o.price > price if o.is_buy else o.price < price)
        ]
        for order in sorted(through, key=AgentOrder.better_first):
            if shares == 0:
                break
            fill = min(shares, order.open_shares)
            shares -= fill
            out.append(self._execute(order, fill, order.price, "A"))
        return out

    def _fill_on_cross(self, locate: int) -> list[Outbound]:
        if self._halted(locate):
            return []
        out = []
        for order in sorted(self._by_locate[locate].values(), key=AgentOrder.better_first):
            filled = 0
            for level_price, level_shares in self._opposite_levels(order, order.price):
                take = min(
                    order.open_shares - filled, self._available(locate, _opposite(order), level_price, level_shares)
                )
                if take > 0:
                    self._take(locate, _opposite(order), level_price, level_shares, take)
                    filled += take
                if filled == order.open_shares:
                    break
            if filled:
                out.append(self._execute(order, filled, order.price, "A"))
        return out

    def _opposite_levels(self, order: AgentOrder, limit: int) -> Iterable[tuple[int, int]]:
        """(price, displayed shares) of the replayed levels the order can trade with, best first."""
        book = self.model.books.get(order.locate)
        if book is None:
            return
        for price, shares, _ in book.depth(_opposite(order)):
            if price > limit if order.is_buy else price < limit:
                return
            yield price, shares

    def _execute(self, order: AgentOrder, shares: int, price: int, liquidity: str) -> Outbound:
        order.open_shares -= shares
        if order.open_shares == 0:
            self._remove(order)
        message = ouch.encode_outbound(
            "E",
            timestamp=self.timestamp,
            order_token=order.token,
            executed_shares=shares,
            execution_price=price,
            liquidity_flag=liquidity,
            match_number=next(self._matches),
        )
        return Outbound(order.account, message)

    def _remove(self, order: AgentOrder) -> None:
        key = (order.account, order.token)
        del self.orders[key]
        del self._by_locate[order.locate][key]

    def _rest_or_take(self, order: AgentOrder) -> list[Outbound]:
        """A new order (entered or replacing): take marketable liquidity, then rest or (IOC) cancel."""
        out = []
        side = _opposite(order)
        if not self._halted(order.locate):
            for level_price, level_shares in list(self._opposite_levels(order, order.price)):
                take = min(order.open_shares, self._available(order.locate, side, level_price, level_shares))
                if take <= 0:
                    continue
                self._take(order.locate, side, level_price, level_shares, take)
                out.append(self._execute(order, take, level_price, "R"))
                if order.open_shares == 0:
                    return out
        if order.time_in_force == ouch.TIME_IN_FORCE_IMMEDIATE_OR_CANCEL:
            out.append(self._canceled(order, order.open_shares, "I"))
            self._remove(order)
        return out

    def _canceled(self, order: AgentOrder, decrement: int, reason: str) -> Outbound:
        message = ouch.encode_outbound(
            "C", timestamp=self.timestamp, order_token=order.token, decrement_shares=decrement, reason=reason
        )
        return Outbound(order.account, message)

    # --- inbound OUCH ---------------------------------------------------------------------------------

    def handle(self, account: str, message: Any, *, reject_reason: str | None = None) -> list[Outbound]:
        """One decoded inbound OUCH message (ouch.decode_inbound) of `account`; returns what it answers.

        `reject_reason` (a fault) rejects an Enter Order that would otherwise be checked, with that code.
        """
        kind = message.message_type
        if kind == "O":
            return self.enter(account, message, reject_reason=reject_reason)
        if kind == "U":
            return self.replace(account, message)
        if kind == "X":
            return self.cancel(account, message)
        return []

    def token_used(self, account: str, token: str) -> bool:
        return token in self._used_tokens.get(account, ())

    def enter(self, account: str, message: Any, *, reject_reason: str | None = None) -> list[Outbound]:
        """Enter Order: Accepted (and executions / IOC cancel), Rejected, or nothing for a duplicate token."""
        token = message.order_token
        if self.token_used(account, token):
            return []
        self._used_tokens.setdefault(account, set()).add(token)
        locate = self.locates.get(message.stock)
        reason = reject_reason
        if reason is None:
            if locate is None:
                reason = "S"
            elif self._halted(locate):
                reason = "H"
            elif message.buy_sell_indicator not in ouch.BUY_SELL_INDICATOR:
                reason = "O"
            elif (message.cross_type or "N") != "N":
                reason = "R"
            else:
                reason = _detail_error(message.price, message.shares, message.display, message.minimum_quantity)
        if reason is not None:
            rejected = ouch.encode_outbound("J", timestamp=self.timestamp, order_token=token, reason=reason)
            return [Outbound(account, rejected)]
        assert locate is not None
        order = AgentOrder(
            account=account,
            token=token,
            locate=locate,
            stock=message.stock,
            side=message.buy_sell_indicator,
            price=message.price,
            open_shares=message.shares,
            time_in_force=message.time_in_force,
            firm=message.firm,
            display=message.display,
            capacity=message.capacity,
            intermarket_sweep_eligibility=message.intermarket_sweep_eligibility,
            minimum_quantity=message.minimum_quantity,
            cross_type=message.cross_type or "N",
            reference=next(self._references),
            priority=next(self._priorities),
        )
        self._insert(order)
        accepted = ouch.encode_outbound(
            "A", timestamp=self.timestamp, order_token=token, bbo_weight_indicator=" ", **_live_order_fields(order)
        )
        return [Outbound(account, accepted), *self._rest_or_take(order)]

    def replace(self, account: str, message: Any) -> list[Outbound]:
        """Replace Order: Replaced (and executions), Canceled when the new details are invalid, or nothing."""
        old = self.orders.get((account, message.existing_order_token))
        new_token = message.replacement_order_token
        if old is None or self.token_used(account, new_token):
            return []
        if _detail_error(message.price, message.shares, message.display, message.minimum_quantity) is not None:
            out = [self._canceled(old, old.open_shares, "U")]
            self._remove(old)
            return out
        self._used_tokens.setdefault(account, set()).add(new_token)
        self._remove(old)
        order = AgentOrder(
            account=account,
            token=new_token,
            locate=old.locate,
            stock=old.stock,
            side=old.side,
            price=message.price,
            open_shares=message.shares,
            time_in_force=message.time_in_force,
            firm=old.firm,
            display=message.display,
            capacity=old.capacity,
            intermarket_sweep_eligibility=message.intermarket_sweep_eligibility,
            minimum_quantity=message.minimum_quantity,
            cross_type=old.cross_type,
            reference=next(self._references),
            priority=next(self._priorities),
        )
        self._insert(order)
        replaced = ouch.encode_outbound(
            "U", timestamp=self.timestamp, replacement_order_token=new_token, previous_order_token=old.token,
            bbo_weight_indicator=" ", **_live_order_fields(order),
        )  # fmt: skip
        return [Outbound(account, replaced), *self._rest_or_take(order)]

    def cancel(self, account: str, message: Any) -> list[Outbound]:
        """Cancel Order: Canceled (reason 'U') down to the intended size, or nothing."""
        order = self.orders.get((account, message.order_token))
        if order is None or message.shares >= order.open_shares:
            return []
        decrement = order.open_shares - message.shares
        order.open_shares = message.shares
        out = [self._canceled(order, decrement, "U")]
        if order.open_shares == 0:
            self._remove(order)
        return out

    def _insert(self, order: AgentOrder) -> None:
        key = (order.account, order.token)
        self.orders[key] = order
        self._by_locate.setdefault(order.locate, {})[key] = order

    # --- inspection -----------------------------------------------------------------------------------

    def top(self, stock: str) -> tuple[int, int, int, int]:
        """(bid price, bid shares, ask price, ask shares) of the replayed book of `stock` (0s when empty)."""
        locate = self.locates.get(stock)
        if locate is None:
            raise KeyError(f"stock {stock!r} has not been listed by a stock directory message yet")
        book = self.model.books.get(locate)
        if book is None:
            return (0, 0, 0, 0)
        bid_price, bid_shares, _, ask_price, ask_shares, _, _ = book.top()
        return (bid_price, bid_shares, ask_price, ask_shares)


def _live_order_fields(order: AgentOrder) -> dict[str, Any]:
    """The fields Accepted and Replaced both carry, for a live order."""
    return {
        "buy_sell_indicator": order.side, "shares": order.open_shares, "stock": order.stock, "price": order.price,
        "time_in_force": order.time_in_force, "firm": order.firm, "display": order.display,
        "order_reference_number": order.reference, "capacity": order.capacity,
        "intermarket_sweep_eligibility": order.intermarket_sweep_eligibility,
        "minimum_quantity": order.minimum_quantity, "cross_type": order.cross_type, "order_state": "L",
    }  # fmt: skip


def _opposite(order: AgentOrder) -> int:
    return ASK if order.is_buy else BID


def _detail_error(price: int, shares: int, display: str, minimum_quantity: int) -> str | None:
    """The reject code of invalid order details (shared by Enter and Replace), or None."""
    if price_error(price) is not None:
        return "X"
    if shares > ouch.MAX_ORDER_SHARES:
        return "Z"
    if shares == 0:
        return "O"
    if display not in ouch.DISPLAY:
        return "D"
    if minimum_quantity > shares:
        return "N"
    return None
