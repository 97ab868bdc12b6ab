"""The order state machine: one test per transition, and every refused event leaves the order as it was."""

from __future__ import annotations

import copy

import pytest

from wirebook.host.orders import OrderState, OrderStateError, OwnOrders, Side, TokenAllocator, UnknownOrderError

S = OrderState


def book_with(state: str) -> OwnOrders:
    """An OwnOrders holding order T1 (buy 300 @ $10.00) brought to `state` by legal events."""
    orders = OwnOrders()
    orders.sent_new("T1", 7, "AAPL", Side.BUY, 100_000, 300)
    if state == "pending":
        return orders
    if state == "rejected":
        orders.rejected("T1")
        return orders
    orders.accepted("T1", 555, 100_000, 300)
    if state == "partially_filled":
        orders.executed("T1", 100)
    elif state == "filled":
        orders.executed("T1", 300)
    elif state == "canceled":
        orders.canceled("T1", 300)
    elif state == "replaced":
        orders.sent_replace("T1", "T2")
        orders.replaced("T1", "T2", 556, 100_100, 300)
    return orders


def test_new_is_pending_and_open():
    orders = book_with("pending")
    o = orders.get("T1")
    assert (o.state, o.open_shares, o.is_open, orders.open_count) == (S.PENDING, 300, True, 1)


def test_pending_to_accepted_takes_the_exchanges_price_and_size():
    orders = book_with("pending")
    o = orders.accepted("T1", 555, 99_900, 250)
    assert (o.state, o.reference, o.price, o.shares, o.open_shares) == (S.ACCEPTED, 555, 99_900, 250, 250)


def test_accepted_with_zero_shares_is_dead():
    orders = book_with("pending")
    assert orders.accepted("T1", 555, 100_000, 0).state is S.CANCELED
    assert orders.open_count == 0


def test_pending_to_rejected():
    orders = book_with("pending")
    o = orders.rejected("T1")
    assert (o.state, o.open_shares, o.is_open, orders.open_count) == (S.REJECTED, 0, False, 0)


def test_accepted_to_partially_filled_to_filled():
    orders = book_with("accepted")
    o = orders.executed("T1", 100)
    assert (o.state, o.open_shares, o.filled_shares) == (S.PARTIALLY_FILLED, 200, 100)
    o = orders.executed("T1", 200)
    assert (o.state, o.open_shares, o.filled_shares, orders.open_count) == (S.FILLED, 0, 300, 0)


def test_partial_cancel_keeps_the_order_live_then_full_cancel_ends_it():
    orders = book_with("partially_filled")
    orders.sent_cancel("T1")
    assert orders.get("T1").cancel_pending
    o = orders.canceled("T1", 50)
    assert (o.state, o.open_shares) == (S.PARTIALLY_FILLED, 150)
    o = orders.canceled("T1", 150)
    assert (o.state, o.open_shares, o.cancel_pending, orders.open_count) == (S.CANCELED, 0, False, 0)


def test_replace_makes_a_new_accepted_order():
    orders = book_with("accepted")
    orders.sent_replace("T1", "T2")
    assert orders.get("T1").replacement == "T2" and orders.get("T1").state is S.ACCEPTED
    new = orders.replaced("T1", "T2", 556, 100_100, 300)
    old = orders.get("T1")
    assert (old.state, old.open_shares) == (S.REPLACED, 0)
    assert (new.state, new.price, new.open_shares, new.replaces, new.side, new.locate) == (
        S.ACCEPTED, 100_100, 300, "T1", Side.BUY, 7,
    )  # fmt: skip
    assert [o.token for o in orders.open_orders()] == ["T2"]


def test_refused_replace_clears_the_flight_marker():
    orders = book_with("accepted")
    orders.sent_replace("T1", "T2")
    orders.replace_refused("T1")
    assert orders.get("T1").replacement == ""
    orders.sent_replace("T1", "T3")  # a new replace may go


ILLEGAL = [
    ("pending", lambda o: o.executed("T1", 1)),
    ("pending", lambda o: o.canceled("T1", 1)),
    ("pending", lambda o: o.sent_replace("T1", "T9")),
    ("accepted", lambda o: o.accepted("T1", 1, 1, 1)),
    ("accepted", lambda o: o.rejected("T1")),
    ("accepted", lambda o: o.executed("T1", 301)),  # more than open
    ("accepted", lambda o: o.executed("T1", 0)),
    ("accepted", lambda o: o.canceled("T1", 301)),
    ("partially_filled", lambda o: o.executed("T1", 201)),
    ("filled", lambda o: o.executed("T1", 1)),
    ("filled", lambda o: o.sent_cancel("T1")),
    ("canceled", lambda o: o.canceled("T1", 1)),
    ("rejected", lambda o: o.accepted("T1", 1, 1, 1)),
    ("replaced", lambda o: o.executed("T1", 1)),
    ("replaced", lambda o: o.replaced("T1", "T3", 1, 1, 1)),
    ("accepted", lambda o: o.sent_new("T1", 7, "AAPL", Side.BUY, 1, 1)),  # token reuse
]


@pytest.mark.parametrize(("state", "event"), ILLEGAL)
def test_illegal_events_are_refused_and_change_nothing(state, event):
    orders = book_with(state)
    before = copy.deepcopy(orders.orders)
    with pytest.raises(OrderStateError, match="T1"):
        event(orders)
    assert orders.orders == before


def test_second_replace_in_flight_is_refused():
    orders = book_with("accepted")
    orders.sent_replace("T1", "T2")
    with pytest.raises(OrderStateError, match="in flight"):
        orders.sent_replace("T1", "T3")


def test_unknown_token():
    with pytest.raises(UnknownOrderError, match="NOPE"):
        OwnOrders().executed("NOPE", 1)


def test_tokens_are_unique_fixed_width_and_resumable():
    tokens = TokenAllocator("WB", start=41)
    a, b = tokens.allocate(), tokens.allocate()
    assert (a, b) == ("WB000000000041", "WB000000000042")
    assert len(a) == TokenAllocator.WIDTH
    assert tokens.number_of(b) == 42 and tokens.number_of("XX1") is None
    with pytest.raises(ValueError, match="prefix"):
        TokenAllocator("W-B")
    full = TokenAllocator("ABCDEF", start=10**8 - 1)
    full.allocate()
    with pytest.raises(OverflowError):
        full.allocate()


def test_prune_forgets_the_oldest_finished_orders_only():
    orders = OwnOrders()
    for n in range(5):
        orders.sent_new(f"T{n}", 7, "AAPL", Side.BUY, 100_000, 100)
    orders.rejected("T0")
    orders.accepted("T1", 1, 100_000, 100)
    orders.canceled("T1", 100)
    orders.rejected("T2")
    assert orders.prune(keep_done=1) == 2  # T0 and T1 go, T2 (the latest finished) and the open ones stay
    assert sorted(orders.orders) == ["T2", "T3", "T4"]
    assert orders.open_count == 2
    with pytest.raises(UnknownOrderError):
        orders.executed("T1", 1)
