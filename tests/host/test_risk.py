"""Pre-trade risk: each check at its limit (accepted) and just past it (refused with its reason), the kill
switch, runtime limit changes, bad configuration, and properties over random sessions: nothing accepted
breaks a limit (re-verified here with plain code), nothing new is accepted once the kill switch is engaged."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from itertools import count

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirebook.host.market import MarketView
from wirebook.host.orders import Order, OrderRequest, OwnOrders, RequestKind, Side
from wirebook.host.positions import DOLLAR, Positions
from wirebook.host.risk import ACCEPTED, RejectReason, RiskDecision, RiskEngine, RiskLimits
from wirebook.host.validated import ConfigError, validate_section
from wirebook.proto import bbo

B, S = Side.BUY, Side.SELL
R = RejectReason
T0 = 1_000_000_000  # host clock at the start of every test: 1 s
MS = 1_000_000

LIMITS = {
    "max_order_shares": 1_000,
    "max_order_notional": 20_000.0,
    "collar_percent": 5.0,
    "collar_ticks": 10,
    "max_long_shares": 2_000,
    "max_short_shares": 2_000,
    "max_gross_exposure": 100_000.0,
    "max_net_exposure": 60_000.0,
    "max_open_orders": 6,
    "max_open_orders_per_instrument": 4,
    "orders_per_second": 1_000.0,
    "order_burst": 100,
    "messages_per_second": 1_000.0,
    "message_burst": 100,
    "max_fills": 5,
    "fill_window_ms": 1_000,
    "daily_loss_limit": 1_000.0,
    "duplicate_window_ms": 50,
    "max_data_age_ms": 500,
}


class World:
    """An engine wired to its own OwnOrders, Positions and MarketView, plus a gateway's bookkeeping."""

    def __init__(self, **limits: object) -> None:
        self.market = MarketView({1: "AAPL    ", 2: "MSFT", 3: "TSLA"})
        self.orders = OwnOrders()
        self.positions = Positions(self.market)
        self.limits = RiskLimits(**{**LIMITS, **limits})
        self.decisions: list[tuple[OrderRequest, RiskDecision, int]] = []
        self.kills: list[str] = []
        self.engine = RiskEngine(
            self.limits,
            self.orders,
            self.positions,
            self.market,
            on_decision=lambda r, d, t: self.decisions.append((r, d, t)),
            on_kill=self.kills.append,
        )
        self.now = T0
        self._tokens: Iterator[int] = count(1)
        for locate in (1, 2, 3):
            self.quote(locate, 99_900, 100_100)  # $9.99 x $10.01, mid $10.00

    def quote(self, locate: int, bid: int, ask: int, flags: int = 0) -> None:
        record = bbo.empty(1)
        record["locate"], record["flags"] = locate, flags
        record["bid_price"], record["bid_shares"] = bid, 100 if bid else 0
        record["ask_price"], record["ask_shares"] = ask, 100 if ask else 0
        self.market.update(record, self.now)

    def check(
        self, kind: RequestKind, locate: int, side: Side, price: int, shares: int, token: str = ""
    ) -> RiskDecision:
        return self.engine.check(OrderRequest(kind, locate, side, price, shares, token), self.now)

    def new(self, locate: int, side: Side, price: int, shares: int) -> RiskDecision:
        return self.check(RequestKind.NEW, locate, side, price, shares)

    def rest(self, locate: int, side: Side, price: int, shares: int) -> str:
        """An open, accepted order of ours, put on the book without asking risk."""
        token = f"T{next(self._tokens)}"
        self.orders.sent_new(token, locate, "X", side, price, shares)
        self.orders.accepted(token, next(self._tokens), price, shares)
        return token


def refused(decision: RiskDecision, reason: RejectReason, *words: str) -> bool:
    assert not decision.accepted, decision
    assert decision.reason is reason, decision
    for word in words:
        assert word in decision.detail, (word, decision.detail)
    return True


# --- one test per check ---------------------------------------------------------------------------------


def test_order_size() -> None:
    w = World()
    assert w.new(1, B, 100_000, 1_000) is ACCEPTED
    assert refused(w.new(1, B, 100_000, 1_001), R.ORDER_SIZE, "1001", "max_order_shares 1000")


def test_invalid_order() -> None:
    w = World()
    assert refused(w.new(1, B, 100_000, 0), R.INVALID_ORDER, "shares > 0")
    assert refused(w.new(1, B, 0, 10), R.INVALID_ORDER)
    assert refused(w.new(70_000, B, 100_000, 10), R.INVALID_ORDER, "locate 70000")


def test_order_notional() -> None:
    w = World(max_order_shares=10_000, max_order_notional=10_000.0)
    assert w.new(1, B, 100_000, 1_000) is ACCEPTED  # exactly $10,000
    assert refused(w.new(1, B, 100_100, 1_000), R.ORDER_NOTIONAL, "$10,010.00", "max_order_notional $10,000.00")


def test_tick_size() -> None:
    w = World()
    assert w.new(1, B, 100_100, 10) is ACCEPTED
    assert refused(w.new(1, B, 100_150, 10), R.TICK_SIZE, "100150", "tick 100", ">= $1")
    w.quote(2, 4_990, 5_010)  # a sub-dollar stock: $0.0001 ticks
    assert w.new(2, B, 5_001, 10) is ACCEPTED
    w.limits.sub_dollar_tick = 10
    assert refused(w.new(2, B, 5_001, 10), R.TICK_SIZE, "tick 10", "< $1")


def test_price_collar_percent_of_mid() -> None:
    w = World()  # mid 100_000, 5%: 5_000
    assert w.new(1, B, 105_000, 10) is ACCEPTED
    assert w.new(1, S, 95_000, 10) is ACCEPTED
    assert refused(w.new(1, B, 105_100, 10), R.PRICE_COLLAR, "105100", "reference 100000", "collar 5000")
    assert refused(w.new(2, S, 94_900, 10), R.PRICE_COLLAR)


def test_price_collar_ticks_floor_and_one_sided_reference() -> None:
    w = World(collar_percent=0.01)  # 0.01% of $10 is 10 units: the 10-tick floor (1_000 units) governs
    assert w.new(1, B, 101_000, 10) is ACCEPTED
    assert refused(w.new(1, B, 101_100, 10), R.PRICE_COLLAR)
    w.quote(2, 0, 200_000)  # ask only: the reference is the ask
    assert w.new(2, S, 199_000, 10) is ACCEPTED
    assert refused(w.new(2, S, 198_900, 10), R.PRICE_COLLAR, "reference 200000")


def test_market_data_guard() -> None:
    w = World(duplicate_window_ms=0)
    assert refused(w.new(9, B, 100_000, 10), R.NO_MARKET_DATA, "locate 9")  # never quoted
    w.quote(9, 0, 0)
    assert refused(w.new(9, B, 100_000, 10), R.NO_MARKET_DATA)  # both sides empty
    w.now += 500 * MS
    assert w.new(1, B, 100_000, 10) is ACCEPTED  # 500 ms old: at the limit
    w.now += 1
    assert refused(w.new(1, B, 100_000, 10), R.STALE_MARKET_DATA, "max_data_age_ms 500")
    w.quote(1, 99_900, 100_100)
    w.market.mark_gap(w.now)
    assert refused(w.new(1, B, 100_000, 10), R.FEED_GAP)
    w.market.clear_gap()
    w.quote(1, 99_900, 100_100, flags=bbo.FLAG_HALTED)
    assert refused(w.new(1, B, 100_000, 10), R.HALTED, "locate 1")
    w.quote(1, 99_900, 100_100, flags=bbo.FLAG_DEGRADED)
    assert refused(w.new(1, B, 100_000, 10), R.DEGRADED_BOOK)
    w.quote(1, 99_900, 100_100)
    assert w.new(1, B, 100_000, 10) is ACCEPTED


def test_restricted_list() -> None:
    w = World(restricted_symbols=frozenset({"AAPL"}), restricted_locates=frozenset({3}))
    assert refused(w.new(1, B, 100_000, 10), R.RESTRICTED, "'AAPL'")  # padded ITCH symbol matches
    assert refused(w.new(3, B, 100_000, 10), R.RESTRICTED, "restricted_locates")
    assert w.new(2, B, 100_000, 10) is ACCEPTED


def test_position_limit_long_counts_position_and_open_buys() -> None:
    w = World()
    w.positions.on_fill(1, B, 1_000, 100_000)
    w.rest(1, B, 99_900, 500)
    w.rest(1, S, 100_100, 900)  # open sells do not offset the long worst case
    assert w.new(1, B, 99_800, 500) is ACCEPTED  # 1_000 + 500 + 500 = 2_000
    assert refused(w.new(1, B, 99_800, 501), R.POSITION_LIMIT, "worst-case long 2001", "max_long_shares 2000")


def test_position_limit_short() -> None:
    w = World()
    w.positions.on_fill(1, S, 1_200, 100_000)
    w.rest(1, S, 100_200, 300)
    assert w.new(1, S, 100_300, 500) is ACCEPTED
    assert refused(w.new(1, S, 100_300, 501), R.POSITION_LIMIT, "worst-case short 2001")
    assert w.new(1, B, 99_900, 1_000) is ACCEPTED  # a buy only reduces the short


def test_gross_exposure() -> None:
    w = World(max_gross_exposure=25_000.0)
    w.positions.on_fill(2, S, 1_500, 100_000)  # $15,000 short, marked at the $10.00 mid
    assert w.new(1, B, 100_000, 1_000) is ACCEPTED  # $15,000 + $10,000
    assert refused(w.new(1, B, 100_100, 1_000), R.GROSS_EXPOSURE, "$25,010.00", "max_gross_exposure $25,000.00")
    w.limits.max_gross_exposure = 10_000.0  # already above: an order that reduces it still passes
    assert w.new(2, B, 100_000, 1_000) is ACCEPTED
    assert refused(w.new(1, B, 100_000, 1), R.GROSS_EXPOSURE)


def test_net_exposure() -> None:
    w = World(max_net_exposure=15_000.0)
    w.positions.on_fill(2, B, 500, 100_000)  # $5,000 long
    assert w.new(1, B, 100_000, 1_000) is ACCEPTED  # $15,000 net
    assert refused(w.new(1, B, 100_100, 1_000), R.NET_EXPOSURE, "$15,010.00", "max_net_exposure $15,000.00")
    assert w.new(1, S, 100_100, 1_000) is ACCEPTED  # shorting the other reduces net


def test_max_open_orders_total_and_per_instrument() -> None:
    w = World()
    for price in (99_000, 99_100, 99_200):
        w.rest(1, B, price, 10)
    assert w.new(1, B, 99_300, 10) is ACCEPTED  # the 4th on the instrument
    w.rest(1, B, 99_300, 10)
    assert refused(w.new(1, B, 99_400, 10), R.MAX_OPEN_ORDERS_INSTRUMENT, "max_open_orders_per_instrument 4")
    w.rest(2, B, 99_000, 10)
    assert w.new(2, B, 99_100, 10) is ACCEPTED  # the 6th in all
    w.rest(2, B, 99_100, 10)
    assert refused(w.new(3, B, 99_000, 10), R.MAX_OPEN_ORDERS, "6 open orders", "max_open_orders 6")


def test_self_cross() -> None:
    w = World()
    w.rest(1, S, 100_100, 10)
    w.rest(1, B, 99_900, 10)
    assert w.new(1, B, 100_000, 10) is ACCEPTED
    assert refused(w.new(1, B, 100_100, 10), R.SELF_CROSS, "cross our own sell", "100100")
    assert w.new(1, S, 100_000, 10) is ACCEPTED
    assert refused(w.new(1, S, 99_900, 10), R.SELF_CROSS, "cross our own buy")
    assert w.new(2, B, 100_100, 10) is ACCEPTED  # another instrument


def test_duplicate_of_open_order_and_of_recent_send() -> None:
    w = World()
    token = w.rest(1, B, 99_900, 100)
    assert refused(w.new(1, B, 99_900, 100), R.DUPLICATE, repr(token))
    assert w.new(1, B, 99_900, 101) is ACCEPTED
    assert refused(w.new(1, B, 99_900, 101), R.DUPLICATE, "sent 0.0 ms ago", "duplicate_window_ms 50")
    w.now += 50 * MS
    assert w.new(1, B, 99_900, 101) is ACCEPTED


def test_replace_is_checked_as_the_order_it_becomes() -> None:
    w = World()
    token = w.rest(1, B, 99_900, 500)
    w.rest(1, S, 100_200, 10)
    replace = RequestKind.REPLACE
    # side and locate come from the existing order; its own price and shares are left out
    assert w.check(replace, 0, S, 99_900, 500, token) is ACCEPTED
    assert w.check(replace, 0, S, 100_100, 1_000, token) is ACCEPTED
    assert refused(w.check(replace, 0, S, 100_200, 10, token), R.SELF_CROSS, "buy at 100200")
    w.positions.on_fill(1, B, 1_500, 100_000)
    # the existing order's 500 can still fill before the replace lands: 1500 + 500 + 1 > 2000
    assert refused(w.check(replace, 0, S, 99_900, 1, token), R.POSITION_LIMIT, "worst-case long 2001")
    assert refused(w.check(replace, 1, B, 99_900, 10, "NOPE"), R.UNKNOWN_ORDER, "'NOPE'")
    w.orders.sent_replace(token, "R1")
    assert refused(w.check(replace, 0, S, 99_800, 10, token), R.NOT_REPLACEABLE, "'R1' in flight")
    pending = "P1"
    w.orders.sent_new(pending, 1, "X", B, 99_000, 10)
    assert refused(w.check(replace, 0, S, 99_800, 10, pending), R.NOT_REPLACEABLE, "pending")


def test_replace_counts_what_the_existing_order_may_still_fill() -> None:
    """Found at the exchange in an end-to-end run: long 200 of a 300 limit, a buy of 100 resting (worst case
    300); a replace of it to 100 at another price would reach 400 if the resting order fills while the replace
    is on its way (the exchange then rests the replacement with all 100 shares)."""
    w = World(max_long_shares=300)
    w.positions.on_fill(1, B, 200, 100_000)
    token = w.rest(1, B, 99_900, 100)
    assert refused(w.check(RequestKind.REPLACE, 0, S, 99_800, 100, token), R.POSITION_LIMIT, "worst-case long 400")
    assert w.check(RequestKind.REPLACE, 0, S, 99_800, 100 - 100, token).reason is R.INVALID_ORDER
    w.positions.on_fill(1, S, 100, 100_000)  # long 100: 100 + 100 resting + 100 replacing = 300, at the limit
    assert w.check(RequestKind.REPLACE, 0, S, 99_800, 100, token) is ACCEPTED


def test_a_replace_in_flight_counts_its_replacement_for_later_orders() -> None:
    w = World(max_long_shares=300)
    token = w.rest(1, B, 99_900, 50)
    assert w.check(RequestKind.REPLACE, 0, S, 99_800, 200, token) is ACCEPTED  # 50 + 200 <= 300
    w.orders.sent_replace(token, "R1", 200)
    # the 50 may fill and the replacement rest with 200: a new buy of 60 could reach 310
    assert refused(w.new(1, B, 99_700, 60), R.POSITION_LIMIT, "worst-case long 310")
    assert w.new(1, B, 99_700, 50) is ACCEPTED
    w.orders.replace_refused(token)  # the exchange did not act on it: only the 50 remain
    assert w.new(1, B, 99_600, 200) is ACCEPTED


def test_order_rate_bucket() -> None:
    w = World(orders_per_second=10.0, order_burst=3)
    for price in (99_000, 99_100, 99_200):
        assert w.new(1, B, price, 10) is ACCEPTED
    assert refused(w.new(1, B, 99_300, 10), R.ORDER_RATE, "orders_per_second 10", "burst 3")
    w.now += 99 * MS
    assert refused(w.new(1, B, 99_300, 10), R.ORDER_RATE)  # 0.99 token
    w.now += 1 * MS
    assert w.new(1, B, 99_300, 10) is ACCEPTED  # one token refilled after 100 ms
    assert refused(w.new(1, B, 99_400, 10), R.ORDER_RATE)
    w.now += 10_000 * MS  # refills to the burst, not beyond
    w.quote(1, 99_900, 100_100)
    for price in (98_000, 98_100, 98_200):
        assert w.new(1, B, price, 10) is ACCEPTED
    assert refused(w.new(1, B, 98_300, 10), R.ORDER_RATE)


def test_message_rate_counts_cancels_but_never_refuses_them() -> None:
    w = World(messages_per_second=10.0, message_burst=2)
    assert w.new(1, B, 99_000, 10) is ACCEPTED
    for _ in range(4):  # the bucket goes into debt, never below -burst
        assert w.check(RequestKind.CANCEL, 1, B, 0, 0, "T1") is ACCEPTED
    assert refused(w.new(1, B, 99_100, 10), R.MESSAGE_RATE, "messages_per_second 10")
    w.now += 299 * MS  # -2 tokens + 2.99
    assert refused(w.new(1, B, 99_100, 10), R.MESSAGE_RATE)
    w.now += 1 * MS
    assert w.new(1, B, 99_100, 10) is ACCEPTED


# --- kill switch -----------------------------------------------------------------------------------------


def test_manual_kill_is_latched_until_reset_and_cancels_pass() -> None:
    w = World()
    token = w.rest(1, B, 99_900, 10)
    w.engine.kill("operator: fat finger")
    w.engine.kill("second reason")  # already engaged: neither the reason nor the callback again
    assert w.kills == ["operator: fat finger"]
    assert w.engine.killed and w.engine.kill_reason == "operator: fat finger"
    assert refused(w.new(1, B, 99_800, 10), R.KILL_SWITCH, "fat finger")
    assert refused(w.check(RequestKind.REPLACE, 0, B, 99_800, 10, token), R.KILL_SWITCH)
    assert w.check(RequestKind.CANCEL, 0, B, 0, 0, token) is ACCEPTED
    w.now += 3_600 * 1_000 * MS
    w.quote(1, 99_900, 100_100)
    assert refused(w.new(1, B, 99_800, 10), R.KILL_SWITCH)  # latched: time does not release it
    with pytest.raises(ValueError, match="operator"):
        w.engine.reset_kill("  ")
    w.engine.reset_kill("alice")
    assert not w.engine.killed and w.engine.kill_reset_by == "alice"
    assert w.new(1, B, 99_800, 10) is ACCEPTED
    assert w.kills == ["operator: fat finger"]


def test_daily_loss_trips_the_kill_switch() -> None:
    w = World()  # loss limit $1,000
    w.positions.on_fill(1, B, 1_000, 100_000)  # long 1_000 at $10.00
    w.quote(1, 89_910, 90_110)  # mid $9.001: -$999.00
    assert w.new(2, B, 99_900, 10) is ACCEPTED
    w.quote(1, 89_900, 90_100)  # mid $9.00: -$1,000.00, at the limit, is a breach
    assert refused(w.new(2, B, 99_800, 10), R.DAILY_LOSS, "P&L $-1,000.00", "daily_loss_limit $1,000.00")
    assert w.engine.killed and len(w.kills) == 1 and "daily loss" in w.kills[0]
    w.quote(1, 99_900, 100_100)  # recovered: still latched
    assert refused(w.new(2, B, 99_800, 10), R.KILL_SWITCH)


def test_daily_loss_checked_on_fill_and_on_demand() -> None:
    w = World()
    w.positions.on_fill(1, S, 1_000, 90_000)  # short at $9.00, mid $10.00: -$1,000
    assert not w.engine.killed
    w.engine.on_fill(w.now)
    assert w.engine.killed and w.kills and "daily loss" in w.kills[0]
    w2 = World()
    w2.positions.on_fill(1, S, 1_000, 90_100)  # -$990 at the $10.00 mid
    assert w2.engine.evaluate_loss() is False
    w2.quote(1, 100_100, 100_300)  # mid $10.02: -$1,010
    assert w2.engine.evaluate_loss() is True and w2.engine.killed


def test_fill_rate_trips_the_kill_switch() -> None:
    w = World()  # more than 5 fills within 1 s
    for i in range(5):
        w.engine.on_fill(T0 + i * 200 * MS)  # 0..800 ms
    w.engine.on_fill(T0 + 1_000 * MS)  # the first left the window: 5 in it
    assert not w.engine.killed
    w.engine.on_fill(T0 + 1_100 * MS)  # 6 within (100 ms, 1100 ms]
    assert w.engine.killed and "fill rate: 6 fills within 1000 ms > max_fills 5" in w.engine.kill_reason
    assert w.kills == [w.engine.kill_reason]
    w.now = T0 + 1_100 * MS
    w.quote(1, 99_900, 100_100)
    assert refused(w.new(1, B, 99_900, 10), R.KILL_SWITCH)
    w.engine.reset_kill("bob")
    assert w.new(1, B, 99_900, 10) is ACCEPTED


def test_reject_burst_trips_the_kill_switch_when_configured() -> None:
    w = World(kill_after_rejects=3, reject_window_ms=100)
    refused(w.new(1, B, 100_000, 5_000), R.ORDER_SIZE)
    w.now += 100 * MS  # the first rejects leaves the window
    refused(w.new(1, B, 100_000, 5_000), R.ORDER_SIZE)
    refused(w.new(1, B, 100_000, 5_000), R.ORDER_SIZE)
    assert not w.engine.killed
    refused(w.new(1, B, 100_000, 5_000), R.ORDER_SIZE)
    assert w.engine.killed and "reject burst: 3 rejects" in w.engine.kill_reason
    assert w.engine.rejects == {R.ORDER_SIZE: 4}


def test_decisions_are_reported_and_counted() -> None:
    w = World()
    first = w.new(1, B, 100_000, 10)
    second = w.new(1, B, 100_000, 5_000)
    third = w.check(RequestKind.CANCEL, 0, B, 0, 0, "X")
    assert [(r.shares, d, t) for r, d, t in w.decisions] == [(10, first, T0), (5_000, second, T0), (0, third, T0)]
    assert w.engine.accepted == 2 and w.engine.rejects == {R.ORDER_SIZE: 1}


# --- configuration ---------------------------------------------------------------------------------------


def test_limits_change_at_runtime() -> None:
    w = World()
    assert w.new(1, B, 100_000, 600) is ACCEPTED
    w.limits.max_order_shares = 500
    assert refused(w.new(1, B, 100_000, 600), R.ORDER_SIZE, "max_order_shares 500")
    with pytest.raises(pydantic.ValidationError, match="max_order_shares"):
        w.limits.max_order_shares = 0
    assert w.limits.max_order_shares == 500  # the refused assignment changed nothing
    with pytest.raises(pydantic.ValidationError, match="max_open_orders_per_instrument"):
        w.limits.max_open_orders = 3  # below the per-instrument limit of 4
    assert w.limits.max_open_orders == 6


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_order_shares", -5, "risk.max_order_shares: Input should be greater than 0, got -5"),
        ("collar_percent", 0, "risk.collar_percent: Input should be greater than 0"),
        ("collar_percent", 100.5, "risk.collar_percent: Input should be less than or equal to 100"),
        ("max_order_notional", "lots", "risk.max_order_notional: Input should be a valid number"),
        ("tick", 0, "risk.tick"),
        ("orders_per_second", -1.0, "risk.orders_per_second"),
        ("restricted_locates", [70_000], "risk.restricted_locates"),
        ("kill_after_rejects", -1, "risk.kill_after_rejects: Input should be greater than or equal to 0"),
        ("max_ordr_shares", 10, "risk.max_ordr_shares: Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_refused_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match="agent.toml") as error:
        validate_section(RiskLimits, {**LIMITS, field: value}, "agent.toml", "risk")
    assert any(problem.startswith(message) for problem in error.value.problems), error.value.problems


def test_config_from_toml_shaped_data() -> None:
    limits = validate_section(
        RiskLimits, {"restricted_symbols": ["TSLA"], "restricted_locates": [1, 2]}, "agent.toml", "risk"
    )
    assert limits.restricted_symbols == frozenset({"TSLA"}) and limits.restricted_locates == frozenset({1, 2})


# --- properties over random sessions ---------------------------------------------------------------------

PROPERTY_LIMITS = {
    "max_order_shares": 400,
    "max_order_notional": 3_500.0,
    "collar_percent": 1.0,
    "collar_ticks": 5,
    "max_long_shares": 600,
    "max_short_shares": 500,
    "max_gross_exposure": 5_000.0,
    "max_net_exposure": 4_500.0,
    "max_open_orders": 3,
    "max_open_orders_per_instrument": 2,
    "orders_per_second": 40.0,
    "order_burst": 4,
    "messages_per_second": 50.0,
    "message_burst": 5,
    "max_fills": 10,
    "fill_window_ms": 1_000,
    "daily_loss_limit": 100.0,
    "duplicate_window_ms": 30,
    "max_data_age_ms": 300,
    "restricted_locates": frozenset({3}),
}
LOCATES = (1, 2, 3)

LOCATE_CHOICE = st.sampled_from((1, 1, 1, 2, 2, 2, 3, 4))  # 3 is restricted, 4 never quoted before
WAIT_CHOICE = st.one_of(st.integers(0, 20 * MS), st.integers(0, 20 * MS), st.integers(0, 400 * MS))

operations = st.one_of(
    st.tuples(
        st.just("quote"),
        LOCATE_CHOICE,
        st.one_of(st.integers(98_000, 102_000), st.integers(90_000, 110_000)),  # mid, Price(4)
        st.integers(0, 6),  # half spread in ticks (0: locked)
        st.sampled_from(["both"] * 6 + ["bid", "ask", "halted", "empty"]),
    ),
    st.tuples(st.just("wait"), WAIT_CHOICE),
    st.tuples(
        st.just("new"),
        LOCATE_CHOICE,
        st.sampled_from([B, S]),
        st.integers(-12, 12),  # ticks from the mid
        st.integers(1, 450),
        st.sampled_from([0] * 15 + [1]),  # off tick
    ),
    st.tuples(
        st.just("new"),
        LOCATE_CHOICE,
        st.sampled_from([B, S]),
        st.integers(-12, 12),
        st.integers(1, 450),
        st.sampled_from([0] * 15 + [1]),
    ),
    st.tuples(st.just("replace"), st.integers(0, 99), st.integers(-8, 8), st.integers(1, 450)),
    st.tuples(st.just("cancel"), st.integers(0, 99)),
    st.tuples(st.just("fill"), st.integers(0, 99), st.integers(1, 500)),
    st.tuples(st.just("gap"), st.sampled_from([False] * 4 + [True])),
)


class Verifier:
    """The limits, checked again with plain code against the state the engine saw."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.limits = w.limits
        self.cash: dict[int, int] = {}
        self.held: dict[int, int] = {}
        self.last_price: dict[int, int] = {}
        self.order_times: list[int] = []
        self.sent_new: list[tuple[int, tuple[int, Side, int, int]]] = []

    def fill(self, locate: int, side: Side, shares: int, price: int) -> None:
        self.cash[locate] = self.cash.get(locate, 0) - side.sign * shares * price
        self.held[locate] = self.held.get(locate, 0) + side.sign * shares
        self.last_price[locate] = price

    def mark(self, locate: int) -> Fraction:
        bid, ask = self.w.market.best_bid(locate)[0], self.w.market.best_ask(locate)[0]
        if bid and ask:
            return Fraction(bid + ask, 2)
        return Fraction(bid or ask or self.last_price.get(locate, 0))

    def verify(self, request: OrderRequest, now: int) -> None:
        """`request` was accepted at `now`: assert it breaks no limit."""
        w, limits = self.w, self.limits
        replacing = w.orders.get(request.existing_token) if request.kind is RequestKind.REPLACE else None
        locate = replacing.locate if replacing else request.locate
        side = replacing.side if replacing else request.side
        price, shares = request.price, request.shares
        assert replacing is None or (replacing.is_open and not replacing.replacement)
        assert locate not in limits.restricted_locates
        assert 0 < shares <= limits.max_order_shares
        assert price * shares <= limits.max_order_notional * DOLLAR
        assert price % (limits.tick if price >= DOLLAR else limits.sub_dollar_tick) == 0

        age = w.market.age_ns(locate, now)
        bid, ask = w.market.best_bid(locate)[0], w.market.best_ask(locate)[0]
        assert age is not None and age <= limits.max_data_age_ms * MS
        assert (bid or ask) and not w.market.gap and not w.market.halted(locate)
        reference = Fraction(bid + ask, 2) if bid and ask else Fraction(bid or ask)
        tick = limits.tick if reference >= DOLLAR else limits.sub_dollar_tick
        collar = max(reference * Fraction(limits.collar_percent) / 100, limits.collar_ticks * tick)
        assert abs(price - reference) <= collar

        others = [o for o in w.orders.open_orders() if o is not replacing]
        here = [o for o in others if o.locate == locate]
        if replacing is None:
            assert len(others) + 1 <= limits.max_open_orders
            assert len(here) + 1 <= limits.max_open_orders_per_instrument
            key = (locate, side, price, shares)
            assert not any(o.side is side and o.price == price and o.shares == shares for o in here)
            assert not any(k == key and now - t < limits.duplicate_window_ms * MS for t, k in self.sent_new)
            self.sent_new.append((now, key))
        if side is B:
            assert not any(o.side is S and o.price <= price for o in here)
        else:
            assert not any(o.side is B and o.price >= price for o in here)

        same_side = sum(o.open_shares + o.replacement_shares for o in here if o.side is side)
        if replacing is not None:
            same_side += replacing.open_shares  # may fill before the replace lands
        worst_before = self.held.get(locate, 0) + side.sign * same_side
        worst = worst_before + side.sign * shares
        assert -limits.max_short_shares <= worst if side is S else worst <= limits.max_long_shares

        other_notional = [self.held[loc] * self.mark(loc) for loc in self.held if loc != locate]
        gross_before = sum(abs(n) for n in other_notional) + abs(worst_before * price)
        gross_after = sum(abs(n) for n in other_notional) + abs(worst * price)
        assert gross_after <= Fraction(limits.max_gross_exposure) * DOLLAR or gross_after <= gross_before
        net_before = sum(other_notional) + worst_before * price
        net_after = sum(other_notional) + worst * price
        assert abs(net_after) <= Fraction(limits.max_net_exposure) * DOLLAR or abs(net_after) <= abs(net_before)

        pnl = sum(self.cash.values()) + sum(self.held[loc] * self.mark(loc) for loc in self.held)
        assert pnl > -Fraction(limits.daily_loss_limit) * DOLLAR
        self.order_times.append(now)

    def verify_rates(self) -> None:
        """Any stretch of time holds at most burst + rate * length accepted orders (the token bucket's bound),
        for the order bucket and for the message bucket (which cancels drain too, so this bound is loose)."""
        times, limits = self.order_times, self.limits
        for burst, rate in (
            (limits.order_burst, limits.orders_per_second),
            (limits.message_burst, limits.messages_per_second),
        ):
            for i in range(len(times)):
                for j in range(i, len(times)):
                    allowed = burst + Fraction(rate) * (times[j] - times[i]) / 10**9
                    assert j - i + 1 <= allowed, (i, j, times[i], times[j])


@settings(max_examples=300, deadline=None, database=None)
@given(ops=st.lists(operations, min_size=10, max_size=100), manual_kill_at=st.one_of(st.none(), st.integers(0, 80)))
def test_nothing_accepted_breaks_a_limit_and_nothing_new_after_the_kill(ops: list[tuple], manual_kill_at: int) -> None:
    w = World(**PROPERTY_LIMITS)
    verifier = Verifier(w)
    tokens = count(1)
    killed_at: int | None = None

    def open_order(index: int) -> Order | None:
        live = list(w.orders.open_orders())
        return live[index % len(live)] if live else None

    for step, op in enumerate(ops):
        if step == manual_kill_at:
            w.engine.kill("manual")
        if w.engine.killed and killed_at is None:
            killed_at = step
        kind = op[0]
        if kind == "quote":
            _, locate, mid, half, shape = op
            bid, ask = mid - half * 100, mid + half * 100
            bid, ask = bid - bid % 100, ask - ask % 100
            w.quote(
                locate,
                bid if shape not in ("ask", "empty") else 0,
                ask if shape not in ("bid", "empty") else 0,
                bbo.FLAG_HALTED if shape == "halted" else 0,
            )
        elif kind == "wait":
            w.now += op[1]
        elif kind == "gap":
            if op[1]:
                w.market.mark_gap(w.now)
            else:
                w.market.clear_gap()
        elif kind in ("new", "replace"):
            if kind == "new":
                _, locate, side, ticks, shares, off_tick = op
                base = (w.market.best_bid(locate)[0] + w.market.best_ask(locate)[0]) // 2 or 100_000
                request = OrderRequest(
                    RequestKind.NEW, locate, side, base - base % 100 + ticks * 100 + off_tick, shares
                )
            else:
                order = open_order(op[1])
                if order is None:
                    continue
                request = OrderRequest(
                    RequestKind.REPLACE, 0, B, order.price + op[2] * 100, op[3], existing_token=order.token
                )
            decision = w.engine.check(request, w.now)
            if not decision.accepted:
                continue
            assert killed_at is None, f"{kind} accepted after the kill switch engaged at step {killed_at}"
            verifier.verify(request, w.now)
            token = f"T{next(tokens)}"
            if kind == "new":
                w.orders.sent_new(token, request.locate, "X", request.side, request.price, request.shares)
                w.orders.accepted(token, next(tokens), request.price, request.shares)
            else:
                w.orders.sent_replace(request.existing_token, token, request.shares)
                w.orders.replaced(request.existing_token, token, next(tokens), request.price, request.shares)
        elif kind == "cancel":
            order = open_order(op[1])
            if order is None:
                continue
            request = OrderRequest(RequestKind.CANCEL, order.locate, order.side, existing_token=order.token)
            assert w.engine.check(request, w.now) is ACCEPTED
            w.orders.sent_cancel(order.token)
            w.orders.canceled(order.token, order.open_shares)
        elif kind == "fill":
            order = open_order(op[1])
            if order is None:
                continue
            shares = min(op[2], order.open_shares)
            w.orders.executed(order.token, shares)
            w.positions.on_fill(order.locate, order.side, shares, order.price)
            verifier.fill(order.locate, order.side, shares, order.price)
            w.engine.on_fill(w.now)
    verifier.verify_rates()
    assert sum(w.engine.rejects.values()) + w.engine.accepted == len(w.decisions)


@settings(max_examples=100, deadline=None, database=None)
@given(
    fills=st.lists(st.tuples(st.sampled_from([B, S]), st.integers(1, 400), st.integers(-20, 20)), max_size=20),
    mid=st.integers(95_000, 105_000),
)
def test_loss_kill_engages_exactly_when_pnl_reaches_the_limit(fills: list[tuple[Side, int, int]], mid: int) -> None:
    w = World(**{**PROPERTY_LIMITS, "max_fills": 1_000})
    cash = position = 0
    for side, shares, ticks in fills:
        price = 100_000 + ticks * 100
        w.positions.on_fill(1, side, shares, price)
        cash -= side.sign * shares * price
        position += side.sign * shares
    mid -= mid % 100
    w.quote(1, mid - 100, mid + 100)
    pnl = cash + position * mid
    breached = pnl <= -100 * DOLLAR
    decision = w.new(2, B, 100_000, 1)
    assert w.engine.killed is breached and len(w.kills) == int(breached)
    assert (decision.reason is R.DAILY_LOSS) is breached
