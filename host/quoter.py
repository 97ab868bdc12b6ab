"""From a desired quote to order requests: what to enter, replace or cancel so our resting orders match it.

`QuoteManager.requests(locate, quote, now_ns)` compares the strategy's desired `Quote` with our open orders
of that instrument (read from OwnOrders, so it never disagrees with the gateway) and returns the requests
that close the difference; the agent passes each through the risk engine and the gateway. Per side:

- no desired order: cancel every open order of that side (once: not again while its cancel is in flight);
- a desired order and none open: a NEW request (once the answer to a cancel in flight on that side is in);
- one open and live: a REPLACE when its price is `requote_threshold_ticks` or more away from the desired
  price, its open shares differ from the desired size, or it is older than `max_quote_age_ms`;
- an order still pending (not accepted yet), or with a replace or cancel in flight: nothing until the
  exchange answers, so a side never has two requests racing;
- more than one live order on a side (e.g. after a restart): the extras are canceled.

A NEW or REPLACE that would reach our own order on the other side as it will rest after this batch (the risk
engine refuses a self-cross) is held back until that side has moved.

A request the risk engine refused is not asked again, unchanged, for `retry_after_ms`.

Order: when the new bid would reach our resting ask (the market moved up), the ask's requests come first, so
the two sides never cross each other on the way (the risk engine refuses a self-cross).
"""

from __future__ import annotations

from .orders import Order, OrderRequest, OrderState, OwnOrders, RequestKind, Side
from .strategy import Quote, QuoterConfig, tick_of

__all__ = ["QuoteManager"]


class QuoteManager:
    def __init__(self, orders: OwnOrders, config: QuoterConfig) -> None:
        self.orders = orders
        self.config = config
        self.placed_ns: dict[str, int] = {}  # token -> when we asked for the price it rests at
        # (locate, side) -> (kind, price, shares, until_ns) of a request the risk engine refused
        self._refused: dict[tuple[int, Side], tuple[RequestKind, int, int, int]] = {}

    def requests(self, locate: int, quote: Quote, now_ns: int) -> list[OrderRequest]:
        mine = self.orders.open_of(locate)
        bids = [o for o in mine if o.side is Side.BUY]
        asks = [o for o in mine if o.side is Side.SELL]
        buy = self._side(locate, Side.BUY, quote.bid, bids, now_ns)
        sell = self._side(locate, Side.SELL, quote.ask, asks, now_ns)
        if self._refused and (buy or sell):
            buy = [r for r in buy if not self._held_back(r, now_ns)]
            sell = [r for r in sell if not self._held_back(r, now_ns)]
        if not buy and not sell:
            return buy  # the common case: the quote stands
        # Never let one side reach our own other side, as it will rest once this batch is done (an order whose
        # answer is outstanding keeps its current price): such a request waits for the other side to move.
        if buy:
            lowest_ask = _resting_best(asks, sell, Side.SELL)
            if lowest_ask is not None:
                buy = [r for r in buy if r.kind is RequestKind.CANCEL or r.price < lowest_ask]
        if sell:
            highest_bid = _resting_best(bids, buy, Side.BUY)
            if highest_bid is not None:
                sell = [r for r in sell if r.kind is RequestKind.CANCEL or r.price > highest_bid]
        # When the market moves up the new bid may reach our resting ask (and the new ask our resting bid on
        # the way down): move the side that gets out of the way first, or the other would cross our own.
        if quote.bid is not None and any(o.price <= quote.bid[0] for o in asks):
            return sell + buy
        return buy + sell

    def placed(self, token: str, now_ns: int) -> None:
        """The gateway sent a NEW or REPLACE for `token` (the replacement token for a REPLACE)."""
        self.placed_ns[token] = now_ns

    def refused(self, request: OrderRequest, now_ns: int) -> None:
        """The risk engine refused `request`: the same request on that side waits `retry_after_ms` (a refused
        request asked again at once would only be refused again, once per BBO update)."""
        until = now_ns + self.config.retry_after_ms * 1_000_000
        self._refused[(request.locate, request.side)] = (request.kind, request.price, request.shares, until)

    def _held_back(self, request: OrderRequest, now_ns: int) -> bool:
        key = (request.locate, request.side)
        held = self._refused.get(key)
        if held is None:
            return False
        if now_ns >= held[3]:
            del self._refused[key]
            return False
        return held[:3] == (request.kind, request.price, request.shares)

    def forget(self, token: str) -> None:
        """The order is done: drop its placement time."""
        self.placed_ns.pop(token, None)

    def _side(
        self, locate: int, side: Side, want: tuple[int, int] | None, mine: list[Order], now_ns: int
    ) -> list[OrderRequest]:
        live = [o for o in mine if not o.cancel_pending]
        if want is None:
            return [_cancel(o) for o in live]
        price, shares = want
        if not live:
            if len(live) < len(mine):
                return []  # a cancel is in flight: the new order waits for its answer
            return [OrderRequest(RequestKind.NEW, locate, side, price, shares)]
        keep, extras = live[0], live[1:]
        out = [_cancel(o) for o in extras]
        if keep.state is OrderState.PENDING or keep.replacement:
            return out
        c = self.config
        moved = abs(keep.price - price) >= c.requote_threshold_ticks * tick_of(min(keep.price, price))
        resized = keep.open_shares != shares
        placed = self.placed_ns.setdefault(keep.token, now_ns)  # e.g. an order recovered from the journal
        aged = now_ns - placed > c.max_quote_age_ms * 1_000_000
        if moved or resized or aged:
            out.append(OrderRequest(RequestKind.REPLACE, locate, side, price, shares, existing_token=keep.token))
        return out


def _cancel(order: Order) -> OrderRequest:
    return OrderRequest(RequestKind.CANCEL, order.locate, order.side, existing_token=order.token)


def _resting_best(live: list[Order], requests: list[OrderRequest], side: Side) -> int | None:
    """The best price of our orders on `side` once `requests` (that side's) are done: a canceled or replaced
    order leaves or moves; one with an answer outstanding keeps its price. None when nothing would rest."""
    moved = {r.existing_token: r for r in requests if r.existing_token}
    prices = []
    for order in live:
        request = moved.get(order.token)
        if request is None:
            prices.append(order.price)
        elif request.kind is RequestKind.REPLACE:
            prices.append(request.price)
    prices += [r.price for r in requests if r.kind is RequestKind.NEW]
    if not prices:
        return None
    return max(prices) if side is Side.BUY else min(prices)
