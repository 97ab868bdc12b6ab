"""The market maker's quotes and the quote manager's requests, with expected values worked by hand."""

from __future__ import annotations

import pytest

from wirebook.host.market import MarketView
from wirebook.host.orders import OwnOrders, RequestKind, Side
from wirebook.host.quoter import QuoteManager
from wirebook.host.strategy import MarketMaker, Quote, QuoterConfig, tick_of
from wirebook.proto import bbo

MS = 1_000_000
L = 9


def market_with(bid: int, bid_shares: int, ask: int, ask_shares: int, flags: int = 0, at_ns: int = 0) -> MarketView:
    m = MarketView({L: "MSFT"})
    r = bbo.empty(1)
    r["locate"], r["flags"] = L, flags
    r["bid_price"], r["bid_shares"], r["ask_price"], r["ask_shares"] = bid, bid_shares, ask, ask_shares
    m.update(r, at_ns)
    return m


def test_tick_sizes():
    assert (tick_of(10_000), tick_of(9_999), tick_of(1_234_500)) == (100, 1, 100)


def test_mid_quote_two_ticks_out():
    # bid $100.00 ask $100.10: mid $100.05, 2 ticks out = $100.03 / $100.07 -> bid floors to $100.03, ask ceils.
    mm = MarketMaker(QuoterConfig(half_spread_ticks=2, size=200, skew_ticks_per_lot=0))
    q = mm.desired(L, market_with(1_000_000, 500, 1_001_000, 500), 0, 0)
    assert q == Quote((1_000_300, 200), (1_000_700, 200))


def test_weighted_fair_value_leans_to_the_thin_side():
    # bid 100.00 x 900, ask 100.10 x 100: microprice = (100.00*100 + 100.10*900)/1000 = 100.09
    mm = MarketMaker(QuoterConfig(fair_value="weighted", half_spread_ticks=1, skew_ticks_per_lot=0))
    q = mm.desired(L, market_with(1_000_000, 900, 1_001_000, 100), 0, 0)
    # 100.09 - 0.01 = 100.08 bid; 100.09 + 0.01 = 100.10 ask
    assert q.bid == (1_000_800, 100) and q.ask == (1_001_000, 100)


def test_inventory_skew_moves_both_sides_down_when_long():
    # long 2 lots at 0.5 tick per lot: fair 100.05 -> 100.04; 2 ticks out: 100.02 / 100.06
    mm = MarketMaker(QuoterConfig(half_spread_ticks=2, skew_ticks_per_lot=0.5, lot=100))
    q = mm.desired(L, market_with(1_000_000, 500, 1_001_000, 500), 200, 0)
    assert (q.bid[0], q.ask[0]) == (1_000_200, 1_000_600)


def test_quotes_stay_passive_on_a_one_tick_market():
    # bid 50.00 ask 50.01, 1 tick out of mid 50.005 gives 49.99 / 50.02: passive already; with min edge 0 and a
    # large skew the bid could cross: it is clamped one tick under the ask.
    mm = MarketMaker(QuoterConfig(half_spread_ticks=1, skew_ticks_per_lot=0))
    assert mm.desired(L, market_with(500_000, 1, 500_100, 1), 0, 0) == Quote((499_900, 100), (500_200, 100))
    skewed = MarketMaker(QuoterConfig(half_spread_ticks=1, skew_ticks_per_lot=10, min_edge_ticks=0))
    q = skewed.desired(L, market_with(500_000, 1, 500_100, 1), -100, 0)  # short: fair moves up 10 ticks
    assert q.bid[0] == 500_000  # ask - tick, not through the ask
    assert q.ask[0] > 500_100


@pytest.mark.parametrize(
    ("why", "market", "now_ns"),
    [
        ("halted", market_with(1_000_000, 1, 1_001_000, 1, flags=bbo.FLAG_HALTED), 0),
        ("degraded", market_with(1_000_000, 1, 1_001_000, 1, flags=bbo.FLAG_DEGRADED), 0),
        ("stale", market_with(1_000_000, 1, 1_001_000, 1), 2_001 * MS),
        ("one-sided", market_with(1_000_000, 1, 0, 0), 0),
        ("crossed", market_with(1_001_000, 1, 1_001_000, 1), 0),
    ],
)
def test_pulls(why, market, now_ns):
    assert MarketMaker(QuoterConfig(stale_after_ms=2_000)).desired(L, market, 0, now_ns) == Quote(None, None, why)


def test_pulls_on_feed_gap_and_unknown_instrument():
    m = market_with(1_000_000, 1, 1_001_000, 1)
    m.mark_gap(5)
    assert MarketMaker(QuoterConfig()).desired(L, m, 0, 0).why == "feed gap"
    assert MarketMaker(QuoterConfig()).desired(L + 1, MarketView(), 0, 0).why == "stale"


# --- the quote manager -------------------------------------------------------------------------------------


def live(orders: OwnOrders, token: str, side: Side, price: int, shares: int) -> None:
    orders.sent_new(token, L, "MSFT", side, price, shares)
    orders.accepted(token, 1, price, shares)


def test_new_quotes_when_nothing_rests():
    qm = QuoteManager(OwnOrders(), QuoterConfig())
    reqs = qm.requests(L, Quote((1_000_300, 100), (1_000_700, 100)), 0)
    assert [(r.kind, r.side, r.price, r.shares) for r in reqs] == [
        (RequestKind.NEW, Side.BUY, 1_000_300, 100),
        (RequestKind.NEW, Side.SELL, 1_000_700, 100),
    ]


def test_replace_only_past_the_threshold():
    orders = OwnOrders()
    live(orders, "B1", Side.BUY, 1_000_300, 100)
    live(orders, "S1", Side.SELL, 1_000_700, 100)
    qm = QuoteManager(orders, QuoterConfig(requote_threshold_ticks=2))
    qm.placed("B1", 0), qm.placed("S1", 0)
    # bid moved 1 tick (under the threshold), ask 2 ticks (at it)
    reqs = qm.requests(L, Quote((1_000_400, 100), (1_000_900, 100)), 1 * MS)
    assert [(r.kind, r.existing_token, r.price) for r in reqs] == [(RequestKind.REPLACE, "S1", 1_000_900)]


def test_refresh_after_max_age_and_resize_after_a_fill():
    orders = OwnOrders()
    live(orders, "B1", Side.BUY, 1_000_300, 100)
    live(orders, "S1", Side.SELL, 1_000_700, 100)
    qm = QuoteManager(orders, QuoterConfig(max_quote_age_ms=1_000))
    qm.placed("B1", 0), qm.placed("S1", 500 * MS)
    same = Quote((1_000_300, 100), (1_000_700, 100))
    assert [r.existing_token for r in qm.requests(L, same, 1_001 * MS)] == ["B1"]  # only B1 is older than 1 s
    orders.executed("S1", 40)
    assert [(r.existing_token, r.shares) for r in qm.requests(L, same, 1_001 * MS)] == [("B1", 100), ("S1", 100)]


def test_nothing_while_an_answer_is_outstanding():
    orders = OwnOrders()
    orders.sent_new("B1", L, "MSFT", Side.BUY, 1_000_300, 100)  # pending
    live(orders, "S1", Side.SELL, 1_000_700, 100)
    orders.sent_replace("S1", "S2")  # replace in flight
    qm = QuoteManager(orders, QuoterConfig())
    assert qm.requests(L, Quote((1_000_000, 100), (1_001_000, 100)), 0) == []


def test_pull_cancels_once_and_extras_are_canceled():
    orders = OwnOrders()
    live(orders, "B1", Side.BUY, 1_000_300, 100)
    live(orders, "B2", Side.BUY, 1_000_200, 100)
    qm = QuoteManager(orders, QuoterConfig())
    reqs = qm.requests(L, Quote((1_000_300, 100), None), 0)
    assert [(r.kind, r.existing_token) for r in reqs] == [(RequestKind.CANCEL, "B2")]
    reqs = qm.requests(L, Quote.PULL, 0)
    assert sorted(r.existing_token for r in reqs) == ["B1", "B2"]
    for r in reqs:
        orders.sent_cancel(r.existing_token)
    assert qm.requests(L, Quote.PULL, 0) == []  # cancels in flight are not sent again


def test_moving_up_moves_the_ask_first():
    orders = OwnOrders()
    live(orders, "B1", Side.BUY, 1_000_300, 100)
    live(orders, "S1", Side.SELL, 1_000_700, 100)
    qm = QuoteManager(orders, QuoterConfig())
    reqs = qm.requests(L, Quote((1_000_800, 100), (1_001_200, 100)), 0)  # the new bid is above our ask
    assert [r.existing_token for r in reqs] == ["S1", "B1"]
    reqs = qm.requests(L, Quote((1_000_000, 100), (1_000_500, 100)), 0)  # moving down: the bid first
    assert [r.existing_token for r in reqs] == ["B1", "S1"]


def test_a_side_waits_rather_than_reach_our_other_side():
    orders = OwnOrders()
    live(orders, "B1", Side.BUY, 1_000_300, 100)
    live(orders, "S1", Side.SELL, 1_000_700, 100)
    orders.sent_replace("S1", "S2")  # the ask's replace is in flight: it rests at 100.07 until answered
    qm = QuoteManager(orders, QuoterConfig())
    # The market moved up: the new bid 100.08 would reach our ask at 100.07; it waits.
    assert qm.requests(L, Quote((1_000_800, 100), (1_001_200, 100)), 0) == []
    # A bid below our ask still moves.
    assert [(r.existing_token, r.price) for r in qm.requests(L, Quote((1_000_500, 100), (1_001_200, 100)), 0)] == [
        ("B1", 1_000_500)
    ]


def test_a_new_order_waits_for_the_cancel_in_flight_on_its_side():
    orders = OwnOrders()
    live(orders, "B1", Side.BUY, 1_000_300, 100)
    orders.sent_cancel("B1")
    qm = QuoteManager(orders, QuoterConfig())
    assert qm.requests(L, Quote((1_000_300, 100), None), 0) == []
    orders.canceled("B1", 100)
    assert [r.kind for r in qm.requests(L, Quote((1_000_300, 100), None), 0)] == [RequestKind.NEW]


def test_a_refused_request_is_not_asked_again_until_retry_after():
    qm = QuoteManager(OwnOrders(), QuoterConfig(retry_after_ms=100))
    quote = Quote((1_000_300, 100), (1_000_700, 100))
    first = qm.requests(L, quote, 0)
    qm.refused(first[0], 0)  # the bid was refused (say, a duplicate)
    assert [r.side for r in qm.requests(L, quote, 50 * MS)] == [Side.SELL]
    moved = Quote((1_000_200, 100), (1_000_700, 100))  # a different bid is a new request: it goes
    assert [r.side for r in qm.requests(L, moved, 50 * MS)] == [Side.BUY, Side.SELL]
    assert [r.side for r in qm.requests(L, quote, 100 * MS)] == [Side.BUY, Side.SELL]  # and after the wait
