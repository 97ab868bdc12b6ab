"""Positions and P&L: hand-computed books, flips through zero, marks, exposure, journal replay, and the
property that realized + unrealized is the cash-flow P&L."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirebook.host.market import MarketView
from wirebook.host.orders import Side
from wirebook.host.positions import DOLLAR, Fill, Positions
from wirebook.proto import bbo

B, S = Side.BUY, Side.SELL


def quote(market: MarketView, locate: int, bid: int, ask: int, now_ns: int = 1) -> None:
    record = bbo.empty(1)
    record["locate"] = locate
    record["bid_price"], record["bid_shares"] = bid, 100 if bid else 0
    record["ask_price"], record["ask_shares"] = ask, 100 if ask else 0
    market.update(record, now_ns)


def test_adding_averages_the_open_price() -> None:
    p = Positions()
    p.on_fill(1, B, 100, 100_000)  # 100 @ $10.00
    book = p.on_fill(1, B, 100, 101_000)  # 100 @ $10.10
    assert book.position == 200
    assert book.average_price == 100_500
    assert book.realized == 0
    assert book.cost == 20_100_000
    assert p.unrealized(1) == 200 * 101_000 - 20_100_000  # marked at the last fill: no market


def test_partial_close_realizes_against_the_average() -> None:
    p = Positions()
    p.on_fill(1, B, 100, 100_000)
    p.on_fill(1, B, 100, 101_000)
    book = p.on_fill(1, S, 150, 102_000)  # 150 closed at $10.20 against $10.05 average
    assert book.position == 50
    assert book.realized == 150 * (102_000 - 100_500) == 225_000  # $22.50
    assert book.average_price == 100_500  # the rest keeps its average
    assert p.realized_total == 225_000


def test_flip_through_zero_closes_all_and_opens_the_rest_at_the_fill_price() -> None:
    p = Positions()
    p.on_fill(1, B, 100, 100_000)
    p.on_fill(1, B, 100, 101_000)
    p.on_fill(1, S, 150, 102_000)
    book = p.on_fill(1, S, 80, 102_000)  # closes 50 (+$7.50), opens 30 short at $10.20
    assert book.position == -30
    assert book.realized == 225_000 + 50 * 1_500 == 300_000
    assert book.average_price == 102_000
    assert book.cost == -30 * 102_000
    book = p.on_fill(1, B, 40, 101_500)  # covers 30 at $10.15 (+$1.50), opens 10 long at $10.15
    assert book.position == 10
    assert book.realized == 300_000 + 30 * 500 == 315_000
    assert book.average_price == 101_500
    assert book.bought == 240 and book.sold == 230 and book.fills == 5


def test_short_then_cover_at_a_loss() -> None:
    p = Positions()
    p.on_fill(7, S, 300, 50_000)  # short 300 @ $5.00
    book = p.on_fill(7, B, 300, 50_300)  # cover @ $5.03: -$9.00
    assert book.position == 0 and book.cost == 0
    assert book.realized == -300 * 300 == -90_000
    assert p.realized(7) / DOLLAR == -9.0
    assert list(p.held()) == []


def test_rounding_stays_in_the_open_position_and_vanishes_when_flat() -> None:
    p = Positions()
    p.on_fill(1, B, 1, 100_001)
    p.on_fill(1, B, 2, 100_000)  # cost 300_001 over 3 shares: not a whole average
    p.on_fill(1, S, 1, 100_000)  # closed share takes round(300_001 / 3) = 100_000
    assert p.get(1).cost == 200_001
    assert p.realized(1) == 0
    p.on_fill(1, S, 2, 100_000)
    assert p.realized(1) == -1  # exact once flat: bought 300_001, sold 300_000


def test_marks_mid_then_side_then_last_fill() -> None:
    market = MarketView()
    p = Positions(market)
    p.on_fill(3, B, 100, 100_000)
    assert p.mark(3) == 100_000  # no BBO: last fill price
    quote(market, 3, 100_100, 0)
    assert p.mark(3) == 100_100  # bid only
    quote(market, 3, 0, 100_300)
    assert p.mark(3) == 100_300  # ask only
    quote(market, 3, 100_100, 100_201)
    assert p.mark(3) == 100_150.5  # mid, half a unit
    assert p.unrealized(3) == 100 * 150.5
    assert p.pnl(3) == 15_050
    assert p.mark(99) == 0.0  # never traded, no BBO


def test_exposure_across_instruments() -> None:
    market = MarketView()
    p = Positions(market)
    quote(market, 1, 99_900, 100_100)  # mid $10.00
    quote(market, 2, 199_800, 200_200)  # mid $20.00
    p.on_fill(1, B, 100, 100_000)
    p.on_fill(2, S, 50, 200_000)
    assert p.notional(1) == 100 * 100_000
    assert p.notional(2) == -50 * 200_000
    assert p.gross_exposure() == (1_000 + 1_000) * DOLLAR
    assert p.net_exposure() == 0
    quote(market, 2, 209_800, 210_200)  # mid $21.00: the short loses $1.00 a share
    assert p.net_exposure() == (1_000 - 1_050) * DOLLAR
    assert p.total_pnl() == -50 * DOLLAR
    gross, net, pnl, notionals = p.snapshot()
    assert (gross, net, pnl) == (p.gross_exposure(), p.net_exposure(), p.total_pnl())
    assert dict(notionals.items()) == {1: p.notional(1), 2: p.notional(2)}


def test_replay_rebuilds_the_same_state() -> None:
    fills = [Fill(1, B, 100, 100_000), Fill(2, S, 10, 5_000), Fill(1, S, 250, 100_500), Fill(2, B, 10, 4_900)]
    live = Positions()
    for f in fills:
        live.on_fill(f.locate, f.side, f.shares, f.price)
    rebuilt = Positions.from_fills(fills)
    assert rebuilt.instruments == live.instruments
    assert rebuilt.realized_total == live.realized_total == 100 * 500 + 10 * 100
    rebuilt.replay(fills[:1])  # replay forgets what was there
    assert rebuilt.position(1) == 100 and rebuilt.position(2) == 0 and rebuilt.realized_total == 0


@pytest.mark.parametrize(("side", "shares", "price"), [("B", 10, 100), (B, 0, 100), (S, 10, 0), (B, -1, 100)])
def test_bad_fill_is_refused_and_changes_nothing(side: object, shares: int, price: int) -> None:
    p = Positions()
    with pytest.raises(ValueError, match="locate 5"):
        p.on_fill(5, side, shares, price)  # type: ignore[arg-type]
    assert p.instruments == {} and p.version == 0


fill_strategy = st.tuples(st.integers(0, 3), st.sampled_from([B, S]), st.integers(1, 5_000), st.integers(1, 2_000_000))


@settings(max_examples=300, deadline=None, database=None)
@given(
    fills=st.lists(fill_strategy, max_size=60),
    quotes=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2_000_000), st.integers(0, 2_000_000)), max_size=4),
)
def test_realized_plus_unrealized_is_the_cash_flow_pnl(
    fills: list[tuple[int, Side, int, int]], quotes: list[tuple[int, int, int]]
) -> None:
    market = MarketView()
    p = Positions(market)
    for locate, side, shares, price in fills:
        p.on_fill(locate, side, shares, price)
    for locate, bid, ask in quotes:
        quote(market, locate, bid, ask)

    total = Fraction(0)
    for locate in range(4):
        cash = sum(-side.sign * shares * price for loc, side, shares, price in fills if loc == locate)
        position = sum(side.sign * shares for loc, side, shares, price in fills if loc == locate)
        last = next((price for loc, _, _, price in reversed(fills) if loc == locate), 0)
        bid, ask = market.best_bid(locate)[0], market.best_ask(locate)[0]
        mark = Fraction(bid + ask, 2) if bid and ask else Fraction(bid or ask or last)
        expected = cash + position * mark
        assert p.position(locate) == position
        assert Fraction(p.realized(locate)) + Fraction(p.unrealized(locate)) == expected
        if position == 0:
            assert p.realized(locate) == cash  # flat: realized is exact
        total += expected
    assert Fraction(p.total_pnl()) == total
    assert np.isclose(p.gross_exposure(), sum(abs(p.notional(locate)) for locate in range(4)))


@settings(max_examples=200, deadline=None, database=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("fill"), fill_strategy),
            st.tuples(
                st.just("quote"), st.tuples(st.integers(0, 3), st.integers(0, 2_000_000), st.integers(0, 2_000_000))
            ),
        ),
        max_size=60,
    )
)
def test_the_kept_figures_equal_a_full_recount(steps) -> None:
    market = MarketView()
    p = Positions(market)
    for kind, args in steps:
        if kind == "fill":
            p.on_fill(*args)
        else:
            quote(market, *args)
        gross, net, pnl, notionals = p.snapshot()
        # the same figures summed from scratch over every instrument, at today's marks
        assert (gross, net, pnl) == (p.gross_exposure(), p.net_exposure(), p.total_pnl())
        assert dict(notionals.items()) == {b.locate: p.notional(b.locate) for b in p.held()}
