"""Pre-trade risk: every request the agent would send is judged here before any byte goes out.

`RiskEngine.check(request, now_ns)` returns a `RiskDecision`: accepted, or rejected with one `RejectReason`
and a detail naming the limit, the value and the limit's value. The gateway calls it for every NEW, REPLACE
and CANCEL; only an accepted request is sent. The engine reads what the gateway tracks (`OwnOrders`), the
fills (`Positions`) and the card's top of book (`MarketView`); it does no I/O: each decision goes to one
`on_decision(request, decision, now_ns)` callback (the journal hooks in there), and engaging the kill switch
calls `on_kill(reason)` once (the agent cancels every open order there).

Units: prices Price(4) (1/10000 dollar), shares whole shares, money (notional, exposure, P&L) Price(4) *
shares, i.e. 1/10000 dollar. Money limits in `RiskLimits` are in dollars and are converted at each check,
so a limit changed at runtime (the control API assigns fields; pydantic validates each assignment) applies
to the next request.

CANCEL is always accepted, even with the kill switch engaged: it only reduces risk. It still takes a token
from the message bucket (see below). REPLACE is checked as the order it becomes: locate and side of the
existing order (`existing_token` in `OwnOrders`), the request's price and shares (the new open size); the
existing order is left out of the open-order count, the duplicate and the self-cross checks (it will be
gone), but its open shares stay in the position and exposure worst cases: until the exchange takes the
replace, the existing order can still fill, and the replacement then rests with all its shares.

Checks, in order, for a NEW or REPLACE (the first that fails is the reason):

1. KILL_SWITCH: the latched kill switch is engaged (`kill(reason)`, or a breach below). Until
   `reset_kill(operator)` every NEW and REPLACE is refused.
2. DAILY_LOSS: realized + unrealized P&L (`Positions`, marked to the BBO) at or below -`daily_loss_limit`.
   Engages the kill switch. Also evaluated on each `on_fill` and by `evaluate_loss()`.
3. UNKNOWN_ORDER (REPLACE of a token never sent), NOT_REPLACEABLE (the existing order is not live, or a
   replace of it is already in flight).
4. INVALID_ORDER: shares or price not positive, or a locate outside 0..65535.
5. RESTRICTED: the locate is in `restricted_locates` or its symbol (MarketView.symbols) in
   `restricted_symbols`.
6. ORDER_SIZE: shares > `max_order_shares`.
7. TICK_SIZE: price not a multiple of `tick` (prices >= $1) or of `sub_dollar_tick` (prices < $1).
8. ORDER_NOTIONAL: price * shares > `max_order_notional` dollars.
9. Market data for the locate: NO_MARKET_DATA (no BBO record ever, or both sides empty), STALE_MARKET_DATA
   (last record older than `max_data_age_ms`), FEED_GAP (`market.gap`), HALTED, DEGRADED_BOOK (the card
   could not track the instrument's book).
10. PRICE_COLLAR: |price - reference| > the collar, reference = the BBO mid when two-sided, else the side
    present; collar = the greater of `collar_percent` % of the reference and `collar_ticks` ticks (of the
    reference's tick size).
11. MAX_OPEN_ORDERS (a NEW would make more than `max_open_orders` open orders),
    MAX_OPEN_ORDERS_INSTRUMENT (more than `max_open_orders_per_instrument` on the locate).
12. SELF_CROSS: a buy at or above one of our open sells on the locate, or a sell at or below one of our open
    buys (open = pending, accepted or partly filled, cancel pending or not).
13. DUPLICATE: a NEW with the locate, side, price and shares of an open order, or of a NEW accepted within
    the last `duplicate_window_ms`; a REPLACE into the locate, side, price and shares of another open order.
14. POSITION_LIMIT: worst case on the order's side, position + open same-side shares (a REPLACE's existing
    order included; an order with a replace in flight counts its open shares and the replacement's, since
    it may fill before the replace lands and the replacement then rests in full) + this order's shares,
    above `max_long_shares` (buys) or below -`max_short_shares` (sells).
15. GROSS_EXPOSURE / NET_EXPOSURE: the exposure if that worst case filled: the other instruments' positions
    at their marks (`Positions.mark`) plus the locate's worst-case position at the order's price. Gross is
    the sum of |notional|, net the sum of signed notional (limit on its absolute value). An order is refused
    only when it takes the figure above the limit *and* raises it (the same figure without this order), so
    an order that reduces exposure is never refused for it.
16. ORDER_RATE: the order bucket (NEW and REPLACE: `orders_per_second`, burst `order_burst`) is empty.
    MESSAGE_RATE: the message bucket (every message: `messages_per_second`, burst `message_burst`) is empty.
    Buckets refill continuously with `now_ns` (a clock going back refills nothing). An accepted request takes
    one token from each bucket it counts in; a rejected one takes none. A CANCEL takes a message token even
    from an empty bucket: the level goes negative (down to -`message_burst`), so cancels beyond the rate
    delay later orders instead of being refused.

Automatic kill: DAILY_LOSS (above); more than `max_fills` fills within `fill_window_ms` (`on_fill(now_ns)`);
and, when `kill_after_rejects` > 0, that many rejects (KILL_SWITCH refusals not counted) within
`reject_window_ms`. `kill` keeps the first reason while engaged and calls `on_kill` only when it engages.

Performance: the accept path allocates nothing but the duplicate-window key (the decision is the `ACCEPTED`
singleton) and logs nothing. It reads the locate's open orders once (`OwnOrders.open_of`, linear in the
open orders); the portfolio figures (exposure, P&L) come from Positions, which keeps them current as fills
and marks move (`Positions.revision`).
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from ..proto import bbo
from .market import N_LOCATES, MarketView
from .orders import LIVE_STATES, Order, OrderRequest, OwnOrders, RequestKind, Side
from .positions import DOLLAR, Positions
from .validated import ConfigModel

__all__ = ["ACCEPTED", "RejectReason", "RiskDecision", "RiskEngine", "RiskLimits", "TokenBucket"]

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000

_UNSET = object()

Locate = Annotated[int, Field(ge=0, lt=N_LOCATES)]


class RiskLimits(ConfigModel):
    """The `[risk]` section: every limit the engine enforces. Money in dollars, times in milliseconds.

    Every count, size and rate is positive; percents are in (0, 100]. Assigning a field re-validates it
    (and the cross-field rules), so the control API cannot install a bad limit.
    """

    max_order_shares: int = Field(10_000, gt=0, description="shares in one order")
    max_order_notional: float = Field(500_000.0, gt=0, description="price * shares of one order, dollars")
    tick: int = Field(100, gt=0, description="tick in Price(4) units for prices >= $1 ($0.01)")
    sub_dollar_tick: int = Field(1, gt=0, description="tick in Price(4) units for prices < $1 ($0.0001)")
    collar_percent: float = Field(5.0, gt=0, le=100, description="price collar, percent of the reference")
    collar_ticks: int = Field(10, gt=0, description="price collar floor, ticks from the reference")
    max_long_shares: int = Field(50_000, gt=0, description="worst-case long position per instrument")
    max_short_shares: int = Field(50_000, gt=0, description="worst-case short position per instrument")
    max_gross_exposure: float = Field(5_000_000.0, gt=0, description="sum of |notional| at mark, dollars")
    max_net_exposure: float = Field(2_000_000.0, gt=0, description="|sum of signed notional| at mark, dollars")
    max_open_orders: int = Field(200, gt=0, description="open orders, all instruments")
    max_open_orders_per_instrument: int = Field(20, gt=0, description="open orders on one instrument")
    orders_per_second: float = Field(200.0, gt=0, description="NEW + REPLACE sustained rate")
    order_burst: int = Field(20, gt=0, description="NEW + REPLACE burst (bucket size)")
    messages_per_second: float = Field(500.0, gt=0, description="all messages incl. cancels, sustained rate")
    message_burst: int = Field(50, gt=0, description="all messages, burst (bucket size)")
    max_fills: int = Field(100, gt=0, description="fills within fill_window_ms before the kill switch trips")
    fill_window_ms: int = Field(1_000, gt=0)
    daily_loss_limit: float = Field(50_000.0, gt=0, description="loss (dollars) that trips the kill switch")
    duplicate_window_ms: int = Field(100, ge=0, description="a NEW repeating one sent this recently is refused")
    max_data_age_ms: int = Field(5_000, gt=0, description="oldest BBO record a price can be checked against")
    restricted_symbols: frozenset[str] = frozenset()
    restricted_locates: frozenset[Locate] = frozenset()
    kill_after_rejects: int = Field(0, ge=0, description="rejects within reject_window_ms that trip the kill; 0 off")
    reject_window_ms: int = Field(1_000, gt=0)

    def __setattr__(self, name: str, value: object) -> None:
        # pydantic runs the cross-field check after storing the value: put the old one back when it fails,
        # so a refused assignment changes nothing.
        before = self.__dict__.get(name, _UNSET)
        try:
            super().__setattr__(name, value)
        except ValidationError:
            if before is not _UNSET:
                self.__dict__[name] = before
            raise
        _revision[0] += 1

    @model_validator(mode="after")
    def _consistent(self) -> RiskLimits:
        if self.max_open_orders_per_instrument > self.max_open_orders:
            raise ValueError(
                f"max_open_orders_per_instrument ({self.max_open_orders_per_instrument}) must not exceed "
                f"max_open_orders ({self.max_open_orders})"
            )
        return self


_revision = [0]
"""Counts accepted assignments to any RiskLimits' field: an engine refreshes its copy when it moved."""


class _LimitsCopy:
    """The limits as plain attributes: a pydantic field read costs about three times a slot read, and a check
    reads some twenty-five. Refreshed when a field is assigned (`_revision`) or the limits replaced."""

    __slots__ = (*RiskLimits.model_fields, "revision")

    def __init__(self, limits: RiskLimits) -> None:
        for name in RiskLimits.model_fields:
            setattr(self, name, getattr(limits, name))
        self.revision = _revision[0]


class RejectReason(enum.Enum):
    KILL_SWITCH = "kill_switch"
    DAILY_LOSS = "daily_loss"
    UNKNOWN_ORDER = "unknown_order"
    NOT_REPLACEABLE = "not_replaceable"
    INVALID_ORDER = "invalid_order"
    RESTRICTED = "restricted"
    ORDER_SIZE = "order_size"
    TICK_SIZE = "tick_size"
    ORDER_NOTIONAL = "order_notional"
    NO_MARKET_DATA = "no_market_data"
    STALE_MARKET_DATA = "stale_market_data"
    FEED_GAP = "feed_gap"
    HALTED = "halted"
    DEGRADED_BOOK = "degraded_book"
    PRICE_COLLAR = "price_collar"
    MAX_OPEN_ORDERS = "max_open_orders"
    MAX_OPEN_ORDERS_INSTRUMENT = "max_open_orders_instrument"
    SELF_CROSS = "self_cross"
    DUPLICATE = "duplicate"
    POSITION_LIMIT = "position_limit"
    GROSS_EXPOSURE = "gross_exposure"
    NET_EXPOSURE = "net_exposure"
    ORDER_RATE = "order_rate"
    MESSAGE_RATE = "message_rate"


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The engine's answer: `accepted`, else the `reason` and a `detail` naming limit, value and limit value."""

    accepted: bool
    reason: RejectReason | None = None
    detail: str = ""


ACCEPTED = RiskDecision(True)
"""The one accepted decision: the accept path allocates none."""


class TokenBucket:
    """A token bucket refilled by the caller's clock: `rate` tokens per second, at most `burst` held.

    The level is kept in nano-tokens (integers), so refills are exact. Starts full.
    """

    __slots__ = ("_last_ns", "level")

    def __init__(self, burst: int) -> None:
        self.level = burst * NS_PER_S
        self._last_ns: int | None = None

    def refill(self, now_ns: int, rate: float, burst: int) -> int:
        """Refill to `now_ns` and return the level in nano-tokens (one token is NS_PER_S)."""
        last = self._last_ns
        if last is None or now_ns > last:
            if last is not None:
                self.level = min(burst * NS_PER_S, self.level + int((now_ns - last) * rate))
            self._last_ns = now_ns
        return self.level

    def take(self, floor: int) -> None:
        """Take one token; the level does not go below `floor` tokens."""
        self.level = max(floor * NS_PER_S, self.level - NS_PER_S)


class RiskEngine:
    """Pre-trade checks for every request (see the module docstring); the kill switch; the reject counts.

    State: `killed`, `kill_reason`, `kill_reset_by` (the operator of the last reset), `rejects`
    (Counter[RejectReason]), `accepted` (count of accepted requests).
    """

    def __init__(
        self,
        limits: RiskLimits,
        orders: OwnOrders,
        positions: Positions,
        market: MarketView,
        on_decision: Callable[[OrderRequest, RiskDecision, int], None] | None = None,
        on_kill: Callable[[str], None] | None = None,
    ) -> None:
        self.limits = limits  # the property below: keeps the copy the checks read
        self.orders = orders
        self.positions = positions
        self.market = market
        self.on_decision = on_decision
        self.on_kill = on_kill
        self.killed = False
        self.kill_reason = ""
        self.kill_reset_by = ""
        self.rejects: Counter[RejectReason] = Counter()
        self.accepted = 0
        self.order_bucket = TokenBucket(limits.order_burst)
        self.message_bucket = TokenBucket(limits.message_burst)
        self._fill_times: deque[int] = deque()
        self._reject_times: deque[int] = deque()
        self._recent_new: dict[tuple[int, Side, int, int], int] = {}  # (locate, side, price, shares) -> ns sent
        self._portfolio_key: int | None = None
        self._portfolio: tuple[float, float, float, Any] = (0.0, 0.0, 0.0, {})  # notionals: a {locate: .} view

    @property
    def limits(self) -> RiskLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: RiskLimits) -> None:
        self._limits = limits
        self._copy = _LimitsCopy(limits)

    def _limits_now(self) -> _LimitsCopy:
        copy = self._copy
        if copy.revision != _revision[0]:
            copy = self._copy = _LimitsCopy(self._limits)
        return copy

    # --- the check -----------------------------------------------------------------------------------------

    def check(self, request: OrderRequest, now_ns: int) -> RiskDecision:
        """Judge one request at host time `now_ns`: ACCEPTED, or a rejection naming the limit broken."""
        if request.kind is RequestKind.CANCEL:
            limits = self._limits_now()
            self.message_bucket.refill(now_ns, limits.messages_per_second, limits.message_burst)
            self.message_bucket.take(-limits.message_burst)
            decision = ACCEPTED
        else:
            decision = self._check_order(request, now_ns)
        if decision is ACCEPTED:
            self.accepted += 1
        else:
            self._rejected(decision.reason, now_ns)
        if self.on_decision is not None:
            self.on_decision(request, decision, now_ns)
        return decision

    def _check_order(self, request: OrderRequest, now_ns: int) -> RiskDecision:
        if self.killed:
            return RiskDecision(False, RejectReason.KILL_SWITCH, f"kill switch engaged: {self.kill_reason}")
        limits = self._limits_now()
        gross, net, pnl, notionals = self._portfolio_figures()
        loss_limit = limits.daily_loss_limit * DOLLAR
        if pnl <= -loss_limit:
            detail = _loss_detail(pnl, limits.daily_loss_limit)
            self.kill(detail)
            return RiskDecision(False, RejectReason.DAILY_LOSS, detail)

        replacing: Order | None = None
        if request.kind is RequestKind.REPLACE:
            replacing = self.orders.orders.get(request.existing_token)
            if replacing is None:
                return RiskDecision(
                    False, RejectReason.UNKNOWN_ORDER, f"replace of token {request.existing_token!r}: no such order"
                )
            if replacing.state not in LIVE_STATES or replacing.replacement:
                state = f"replace {replacing.replacement!r} in flight" if replacing.replacement else "not live"
                return RiskDecision(
                    False,
                    RejectReason.NOT_REPLACEABLE,
                    f"replace of token {request.existing_token!r}: order is {replacing.state.value}, {state};"
                    " expected accepted or partially filled with no replace in flight",
                )
            locate = replacing.locate
            side = replacing.side
        else:
            locate = request.locate
            side = request.side
        price = request.price
        shares = request.shares

        if shares <= 0 or price <= 0 or not 0 <= locate < N_LOCATES:
            return RiskDecision(
                False,
                RejectReason.INVALID_ORDER,
                f"order of locate {locate}: {shares} shares at {price}; expected shares > 0, price > 0,"
                f" locate 0..{N_LOCATES - 1}",
            )
        market = self.market
        if limits.restricted_locates and locate in limits.restricted_locates:
            return RiskDecision(False, RejectReason.RESTRICTED, f"locate {locate} is in restricted_locates")
        if limits.restricted_symbols:
            symbol = market.symbols.get(locate, "").strip()
            if symbol in limits.restricted_symbols:
                return RiskDecision(
                    False, RejectReason.RESTRICTED, f"locate {locate} symbol {symbol!r} is in restricted_symbols"
                )
        if shares > limits.max_order_shares:
            return RiskDecision(
                False,
                RejectReason.ORDER_SIZE,
                f"order of {shares} shares > max_order_shares {limits.max_order_shares}",
            )
        tick = limits.tick if price >= DOLLAR else limits.sub_dollar_tick
        if price % tick:
            return RiskDecision(
                False,
                RejectReason.TICK_SIZE,
                f"price {price} (Price(4)) is not a multiple of the tick {tick} for prices"
                f" {'>=' if price >= DOLLAR else '<'} $1",
            )
        if price * shares > limits.max_order_notional * DOLLAR:
            return RiskDecision(
                False,
                RejectReason.ORDER_NOTIONAL,
                f"order notional ${price * shares / DOLLAR:,.2f} > max_order_notional"
                f" ${limits.max_order_notional:,.2f}",
            )

        # --- market data and price collar
        top = market.top(locate)
        if top is None or not (top[0] or top[2]):
            return RiskDecision(False, RejectReason.NO_MARKET_DATA, f"locate {locate}: no BBO (no side present)")
        bid, _, ask, _, flags = top
        age = market.age_ns(locate, now_ns) or 0
        if age > limits.max_data_age_ms * NS_PER_MS:
            return RiskDecision(
                False,
                RejectReason.STALE_MARKET_DATA,
                f"locate {locate}: BBO is {age / NS_PER_MS:.1f} ms old > max_data_age_ms {limits.max_data_age_ms}",
            )
        if market.gap:
            return RiskDecision(
                False, RejectReason.FEED_GAP, f"feed gap outstanding since {market.gap_since_ns} ns: BBO unreliable"
            )
        if flags & bbo.FLAG_HALTED:
            return RiskDecision(False, RejectReason.HALTED, f"locate {locate} is halted")
        if flags & bbo.FLAG_DEGRADED:
            return RiskDecision(False, RejectReason.DEGRADED_BOOK, f"locate {locate}: the card's book is degraded")
        reference = (bid + ask) / 2 if bid and ask else (bid or ask)
        reference_tick = limits.tick if reference >= DOLLAR else limits.sub_dollar_tick
        collar = max(reference * limits.collar_percent / 100, limits.collar_ticks * reference_tick)
        if abs(price - reference) > collar:
            return RiskDecision(
                False,
                RejectReason.PRICE_COLLAR,
                f"price {price} is {abs(price - reference):g} from the reference {reference:g} (Price(4)) > collar"
                f" {collar:g} (max of collar_percent {limits.collar_percent}% and collar_ticks {limits.collar_ticks})",
            )

        # --- our own open orders on the locate: one pass
        sign = side.sign
        same_side = 0
        open_here = 0
        duplicate: Order | None = None
        crossing: Order | None = None
        for order in self.orders.open_of(locate):
            if order is replacing:
                same_side += order.open_shares  # it can still fill before the exchange replaces it
                continue
            open_here += 1
            if order.side is side:
                same_side += order.open_shares + order.replacement_shares  # a replace in flight may add its own
                if order.price == price and order.shares == shares and duplicate is None:
                    duplicate = order
            elif crossing is None and (order.price <= price if sign > 0 else order.price >= price):
                crossing = order
        if replacing is None:
            if self.orders.open_count >= limits.max_open_orders:
                return RiskDecision(
                    False,
                    RejectReason.MAX_OPEN_ORDERS,
                    f"{self.orders.open_count} open orders: one more > max_open_orders {limits.max_open_orders}",
                )
            if open_here >= limits.max_open_orders_per_instrument:
                return RiskDecision(
                    False,
                    RejectReason.MAX_OPEN_ORDERS_INSTRUMENT,
                    f"locate {locate}: {open_here} open orders, one more > max_open_orders_per_instrument"
                    f" {limits.max_open_orders_per_instrument}",
                )
        if crossing is not None:
            return RiskDecision(
                False,
                RejectReason.SELF_CROSS,
                f"{side.name.lower()} at {price} would cross our own {crossing.side.name.lower()}"
                f" {crossing.token!r} at {crossing.price} on locate {locate}",
            )
        if duplicate is not None:
            return RiskDecision(
                False,
                RejectReason.DUPLICATE,
                f"{side.name.lower()} {shares} at {price} on locate {locate} repeats open order {duplicate.token!r}",
            )
        key = None
        if replacing is None:
            key = (locate, side, price, shares)
            sent = self._recent_new.get(key)
            if sent is not None and now_ns - sent < limits.duplicate_window_ms * NS_PER_MS:
                return RiskDecision(
                    False,
                    RejectReason.DUPLICATE,
                    f"{side.name.lower()} {shares} at {price} on locate {locate} repeats one sent"
                    f" {(now_ns - sent) / NS_PER_MS:.1f} ms ago < duplicate_window_ms {limits.duplicate_window_ms}",
                )

        # --- position, worst case on the order's side
        position = self.positions.position(locate)
        worst_before = position + sign * same_side
        worst = worst_before + sign * shares
        if sign > 0 and worst > limits.max_long_shares:
            return RiskDecision(
                False,
                RejectReason.POSITION_LIMIT,
                f"locate {locate}: worst-case long {worst} shares (position {position} + open buys {same_side} +"
                f" {shares}) > max_long_shares {limits.max_long_shares}",
            )
        if sign < 0 and worst < -limits.max_short_shares:
            return RiskDecision(
                False,
                RejectReason.POSITION_LIMIT,
                f"locate {locate}: worst-case short {-worst} shares (position {position} - open sells {same_side} -"
                f" {shares}) > max_short_shares {limits.max_short_shares}",
            )

        # --- exposure across instruments, if the worst case filled at this price
        here = notionals.get(locate, 0.0)
        gross_others = gross - abs(here)
        net_others = net - here
        gross_after = gross_others + abs(worst * price)
        if gross_after > limits.max_gross_exposure * DOLLAR and gross_after > gross_others + abs(worst_before * price):
            return RiskDecision(
                False,
                RejectReason.GROSS_EXPOSURE,
                f"gross exposure ${gross_after / DOLLAR:,.2f} if filled > max_gross_exposure"
                f" ${limits.max_gross_exposure:,.2f}",
            )
        net_after = net_others + worst * price
        if abs(net_after) > limits.max_net_exposure * DOLLAR and abs(net_after) > abs(
            net_others + worst_before * price
        ):
            return RiskDecision(
                False,
                RejectReason.NET_EXPOSURE,
                f"net exposure ${net_after / DOLLAR:,.2f} if filled: |net| > max_net_exposure"
                f" ${limits.max_net_exposure:,.2f}",
            )

        # --- throttles: checked last, so that only an accepted request takes tokens
        if self.order_bucket.refill(now_ns, limits.orders_per_second, limits.order_burst) < NS_PER_S:
            return RiskDecision(
                False,
                RejectReason.ORDER_RATE,
                f"order rate above orders_per_second {limits.orders_per_second:g} (burst {limits.order_burst})",
            )
        if self.message_bucket.refill(now_ns, limits.messages_per_second, limits.message_burst) < NS_PER_S:
            return RiskDecision(
                False,
                RejectReason.MESSAGE_RATE,
                f"message rate above messages_per_second {limits.messages_per_second:g} (burst {limits.message_burst})",
            )
        self.order_bucket.take(0)
        self.message_bucket.take(0)
        if key is not None and limits.duplicate_window_ms:
            recent = self._recent_new
            recent[key] = now_ns
            if len(recent) > 4096:  # forget the ones outside the window
                horizon = now_ns - limits.duplicate_window_ms * NS_PER_MS
                self._recent_new = {k: t for k, t in recent.items() if t > horizon}
        return ACCEPTED

    # --- events the agent reports ---------------------------------------------------------------------------

    def on_fill(self, now_ns: int) -> None:
        """One fill of ours arrived at `now_ns` (call after `Positions.on_fill`): the fill-rate and loss checks.

        More than `max_fills` fills within `fill_window_ms`, or the daily loss limit reached, engage the kill
        switch.
        """
        limits = self.limits
        times = self._fill_times
        times.append(now_ns)
        horizon = now_ns - limits.fill_window_ms * NS_PER_MS
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) > limits.max_fills:
            self.kill(f"fill rate: {len(times)} fills within {limits.fill_window_ms} ms > max_fills {limits.max_fills}")
        self.evaluate_loss()

    def evaluate_loss(self) -> bool:
        """Check the daily loss limit now (the agent may call this after each market batch); True if breached.

        A breach engages the kill switch.
        """
        pnl = self._portfolio_figures()[2]
        if pnl <= -self.limits.daily_loss_limit * DOLLAR:
            self.kill(_loss_detail(pnl, self.limits.daily_loss_limit))
            return True
        return False

    # --- kill switch -----------------------------------------------------------------------------------------

    def kill(self, reason: str) -> None:
        """Engage the latched kill switch (manual or automatic); `on_kill(reason)` is called when it engages."""
        if self.killed:
            return
        self.killed = True
        self.kill_reason = reason
        if self.on_kill is not None:
            self.on_kill(reason)

    def reset_kill(self, operator: str) -> None:
        """Release the kill switch: an operator's decision, named. The fill and reject windows start afresh."""
        if not operator or not operator.strip():
            raise ValueError("reset_kill needs the operator's name, got an empty string")
        self.killed = False
        self.kill_reason = ""
        self.kill_reset_by = operator
        self._fill_times.clear()
        self._reject_times.clear()

    # --- helpers -----------------------------------------------------------------------------------------------

    def _rejected(self, reason: RejectReason | None, now_ns: int) -> None:
        assert reason is not None
        self.rejects[reason] += 1
        limit = self.limits.kill_after_rejects
        if not limit or reason is RejectReason.KILL_SWITCH:
            return
        times = self._reject_times
        times.append(now_ns)
        horizon = now_ns - self.limits.reject_window_ms * NS_PER_MS
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= limit:
            self.kill(
                f"reject burst: {len(times)} rejects within {self.limits.reject_window_ms} ms >= kill_after_rejects"
                f" {limit} (last: {reason.value})"
            )

    def _portfolio_figures(self) -> tuple[float, float, float, dict[int, float]]:
        """(gross, net, total P&L, {locate: notional}) in money units, recomputed when marks or fills changed."""
        key = self.positions.revision
        if key != self._portfolio_key:
            self._portfolio = self.positions.snapshot()
            self._portfolio_key = key
        return self._portfolio


def _loss_detail(pnl: float, limit: float) -> str:
    return f"daily loss: P&L ${pnl / DOLLAR:,.2f} <= -daily_loss_limit ${limit:,.2f}"
