"""OrderGateway, OUCH 4.2 over SoupSession: what it sends, how each exchange message moves the orders, and
what it does with exchange input it cannot trust.

Runs against `SoupServer` (tests/host/test_session.py), a scripted SoupBinTCP server on 127.0.0.1: what the
gateway sends is decoded there with `ouch.decode_inbound`; what the exchange says is built with
`ouch.encode_outbound` and published as Sequenced Data. The risk engine is a test double with the real one's
`check(request, now_ns) -> decision(.accepted, .reason, .detail)`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from test_session import T0, SoupServer, wait

from wirebook.host.gateway import (
    BrokenTrade,
    Fill,
    GatewayConfig,
    OrderGateway,
    OrderUpdate,
    Reject,
    SystemEvent,
    TradeCorrection,
)
from wirebook.host.orders import (
    OrderRequest,
    OrderState,
    OrderStateError,
    OwnOrders,
    RequestKind,
    Side,
    TokenAllocator,
    UnknownOrderError,
)
from wirebook.host.session import SessionNotLoggedInError, SoupSession
from wirebook.proto import ouch

NOW_NS = int(T0) * 1_000_000_000
STOCKS = {1: "AAPL", 2: "MSFT"}
PRICE = 1_500_000  # $150.0000
FIRM = "WBFM"

# A value for every outbound field, so a test names only the fields it is about.
OUTBOUND_DEFAULTS: dict[str, Any] = {
    "timestamp": 34_200_000_000_000,
    "buy_sell_indicator": "B",
    "stock": "AAPL",
    "price": PRICE,
    "time_in_force": ouch.TIME_IN_FORCE_MARKET_HOURS,
    "firm": FIRM,
    "display": "A",
    "capacity": "P",
    "intermarket_sweep_eligibility": "N",
    "cross_type": "N",
    "order_state": "L",
    "bbo_weight_indicator": " ",
    "liquidity_flag": "A",
    "reason": "U",
    "event_code": "S",
    "execution_price": PRICE,
    "reference_price_type": "I",
}


def outbound(message_type: str, **fields: Any) -> bytes:
    layout = ouch.OUTBOUND[message_type]
    values = {f.name: OUTBOUND_DEFAULTS.get(f.name, 0 if f.kind.is_integer else "") for f in layout.value_fields}
    del values["message_type"]
    return ouch.encode_outbound(message_type, **{**values, **fields})


@dataclass
class Decision:
    accepted: bool
    reason: str | None = None
    detail: str = ""


class RiskDouble:
    """Accepts everything but the kinds in `refuse`; remembers every check."""

    def __init__(self) -> None:
        self.refuse: set[RequestKind] = set()
        self.checked: list[tuple[OrderRequest, int]] = []

    def check(self, request: OrderRequest, now_ns: int) -> Decision:
        self.checked.append((request, now_ns))
        if request.kind in self.refuse:
            return Decision(False, "ORDER_SIZE", f"{request.shares} shares > test limit")
        return Decision(True)


class Harness:
    """A logged-in gateway, its server and risk double; `exchange(...)` plays the exchange's messages."""

    def __init__(
        self, server: SoupServer, config: GatewayConfig | None = None, token_start: int = 1, next_sequence: int = 1
    ) -> None:
        self.server = server
        self.session = SoupSession(server.config(), next_sequence=next_sequence)
        self.orders = OwnOrders()
        self.risk = RiskDouble()
        self.gateway = OrderGateway(
            self.session, self.orders, TokenAllocator("WB", token_start), self.risk, STOCKS, FIRM, config
        )
        self.sequence = 0
        self.session.connect(T0)
        self._events = self._drive(lambda: self.session.logged_in)  # a replay may come with Login Accepted

    def exchange(self, *messages: bytes) -> list:
        """Publish the messages and return the events the gateway made of them."""
        self.sequence += len(messages)
        self.server.publish(*messages)
        events, self._events = self._events, []
        return events + self._drive(lambda: self.gateway.last_sequence >= self.sequence)

    def _drive(self, until: Callable[[], bool]) -> list:
        """Poll the gateway (never the session behind its back) until `until()`."""
        events: list = []
        deadline = time.monotonic() + 3.0
        while True:
            events += self.gateway.poll(NOW_NS)
            if until():
                return events
            assert time.monotonic() < deadline, f"condition not met within 3 s; session {self.session.state}"
            time.sleep(0.0002)

    def sent(self, count: int) -> list[Any]:
        """The first `count` OUCH messages the server received, decoded."""
        wait(lambda: len(self.server.inbound) >= count)
        return [ouch.decode_inbound(payload) for payload in self.server.inbound[:count]]

    def new(self, side: Side = Side.BUY, shares: int = 100, price: int = PRICE, locate: int = 1) -> str:
        result = self.gateway.submit(OrderRequest(RequestKind.NEW, locate, side, price, shares), NOW_NS)
        assert result.accepted
        return result.token

    def live(self, shares: int = 100, side: Side = Side.BUY, reference: int = 0) -> str:
        token = self.new(side, shares)
        self.exchange(
            outbound(
                "A", order_token=token, shares=shares, buy_sell_indicator=side.value, order_reference_number=reference
            )
        )
        assert self.orders.get(token).state is OrderState.ACCEPTED
        return token

    def snapshot(self) -> dict[str, dict]:
        return {token: dataclasses.asdict(order) for token, order in self.orders.orders.items()}


@pytest.fixture
def server():
    server = SoupServer()
    yield server
    server.close()


@pytest.fixture
def h(server):
    harness = Harness(server)
    yield harness
    harness.session.logout()


# --- configuration --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [("display", "?"), ("capacity", "X"), ("time_in_force", 100_000)])
def test_config_refuses_bad_field_naming_it(field, value):
    with pytest.raises(ValueError, match=field):
        GatewayConfig(**{field: value})


def test_constructor_refuses_symbols_and_firm_ouch_cannot_carry(server):
    session = SoupSession(server.config())
    with pytest.raises(ValueError, match=r"stocks\[3\]: expected 1-8 printable ASCII, got 'TOOLONGSYM'"):
        OrderGateway(session, OwnOrders(), TokenAllocator(), RiskDouble(), {3: "TOOLONGSYM"})
    with pytest.raises(ValueError, match="firm: expected at most 4"):
        OrderGateway(session, OwnOrders(), TokenAllocator(), RiskDouble(), STOCKS, firm="FIRMS")


# --- what the gateway sends ------------------------------------------------------------------------------


def test_new_sends_enter_order_with_every_field(h):
    result = h.gateway.submit(OrderRequest(RequestKind.NEW, 2, Side.SELL, PRICE, 300), NOW_NS)
    assert result.accepted and result.token == "WB000000000001"
    assert h.risk.checked == [(OrderRequest(RequestKind.NEW, 2, Side.SELL, PRICE, 300), NOW_NS)]
    (sent,) = h.sent(1)
    assert sent._asdict() == {
        "message_type": "O",
        "order_token": "WB000000000001",
        "buy_sell_indicator": "S",
        "shares": 300,
        "stock": "MSFT",
        "price": PRICE,
        "time_in_force": ouch.TIME_IN_FORCE_MARKET_HOURS,
        "firm": FIRM,
        "display": "A",
        "capacity": "P",
        "intermarket_sweep_eligibility": "N",
        "minimum_quantity": 0,
        "cross_type": "N",
        "customer_type": "",  # blank: the port's default
    }
    order = h.orders.get(result.token)
    assert (order.state, order.locate, order.stock, order.side, order.shares, order.price) == (
        OrderState.PENDING,
        2,
        "MSFT",
        Side.SELL,
        300,
        PRICE,
    )


def test_configured_defaults_go_into_enter_and_replace(server):
    config = GatewayConfig(time_in_force=0, display="N", capacity="A", minimum_quantity=100, customer_type="R")
    h = Harness(server, config)
    token = h.live()
    h.gateway.submit(OrderRequest(RequestKind.REPLACE, 1, Side.BUY, PRICE, 200, existing_token=token), NOW_NS)
    enter, replace = h.sent(2)
    assert (enter.time_in_force, enter.display, enter.capacity, enter.minimum_quantity, enter.customer_type) == (
        0,
        "N",
        "A",
        100,
        "R",
    )
    assert (replace.time_in_force, replace.display, replace.minimum_quantity) == (0, "N", 100)
    h.session.logout()


def test_replace_sends_replace_order_with_a_new_token(h):
    token = h.live()
    result = h.gateway.submit(
        OrderRequest(RequestKind.REPLACE, 1, Side.BUY, PRICE - 100, 250, existing_token=token), NOW_NS
    )
    assert result.accepted and result.token == "WB000000000002"
    _, sent = h.sent(2)
    assert sent._asdict() == {
        "message_type": "U",
        "existing_order_token": token,
        "replacement_order_token": "WB000000000002",
        "shares": 250,
        "price": PRICE - 100,
        "time_in_force": ouch.TIME_IN_FORCE_MARKET_HOURS,
        "display": "A",
        "intermarket_sweep_eligibility": "N",
        "minimum_quantity": 0,
    }
    assert h.orders.get(token).replacement == "WB000000000002"


def test_cancel_sends_cancel_order_for_zero_shares(h):
    token = h.live()
    result = h.gateway.submit(OrderRequest(RequestKind.CANCEL, 1, Side.BUY, existing_token=token), NOW_NS)
    assert result.accepted and result.token == token
    _, sent = h.sent(2)
    assert sent._asdict() == {"message_type": "X", "order_token": token, "shares": 0}
    assert h.orders.get(token).cancel_pending
    assert h.gateway.next_token_number == 2  # a cancel takes no token


def test_risk_refusal_sends_nothing_and_records_nothing(h):
    h.risk.refuse = {RequestKind.NEW}
    result = h.gateway.submit(OrderRequest(RequestKind.NEW, 1, Side.BUY, PRICE, 100), NOW_NS)
    assert not result.accepted
    assert (result.token, result.decision.reason) == ("", "ORDER_SIZE")
    assert len(h.orders) == 0 and h.gateway.next_token_number == 1
    h.risk.refuse = set()
    token = h.new()  # the first thing the server receives is this order
    (sent,) = h.sent(1)
    assert sent.order_token == token
    assert len(h.server.inbound) == 1


def test_submit_refused_before_risk_when_session_not_logged_in(server):
    session = SoupSession(server.config())
    risk = RiskDouble()
    gateway = OrderGateway(session, OwnOrders(), TokenAllocator(), risk, STOCKS)
    with pytest.raises(SessionNotLoggedInError, match="cannot submit new order in state disconnected"):
        gateway.submit(OrderRequest(RequestKind.NEW, 1, Side.BUY, PRICE, 100), NOW_NS)
    assert risk.checked == [] and len(gateway.orders) == 0


def test_new_for_unknown_locate_refused_before_risk(h):
    with pytest.raises(KeyError, match="locate 9: no stock symbol"):
        h.gateway.submit(OrderRequest(RequestKind.NEW, 9, Side.BUY, PRICE, 100), NOW_NS)
    assert h.risk.checked == []


def test_accepted_order_ouch_cannot_carry_is_refused_unsent(h):
    with pytest.raises(ValueError, match=r"1000000 shares at .*expects shares in 1..999999"):
        h.gateway.submit(OrderRequest(RequestKind.NEW, 1, Side.BUY, PRICE, 1_000_000), NOW_NS)
    assert len(h.orders) == 0


def test_cancel_of_a_done_order_is_refused_unsent(h):
    token = h.new()
    h.exchange(outbound("J", order_token=token, reason="S"))
    with pytest.raises(OrderStateError, match="cancel sent in state rejected"):
        h.gateway.submit(OrderRequest(RequestKind.CANCEL, 1, Side.BUY, existing_token=token), NOW_NS)
    with pytest.raises(UnknownOrderError):
        h.gateway.submit(OrderRequest(RequestKind.CANCEL, 1, Side.BUY, existing_token="NOPE"), NOW_NS)
    h.new()
    assert [m.message_type for m in h.sent(2)] == ["O", "O"]


def test_cancel_all_cancels_every_open_order_through_risk(h):
    live = h.live()
    pending = h.new(Side.SELL)
    already = h.live()
    h.gateway.submit(OrderRequest(RequestKind.CANCEL, 1, Side.BUY, existing_token=already), NOW_NS)
    done = h.new()
    h.exchange(outbound("J", order_token=done))
    h.risk.checked.clear()
    results = h.gateway.cancel_all(NOW_NS)
    assert sorted(r.token for r in results) == sorted([live, pending])
    assert all(r.accepted for r in results)
    assert sorted(req.existing_token for req, _ in h.risk.checked) == sorted([live, pending])
    sent = h.sent(7)[5:]
    assert sorted((m.message_type, m.order_token, m.shares) for m in sent) == sorted(
        [("X", live, 0), ("X", pending, 0)]
    )
    assert h.gateway.open_orders() and all(o.cancel_pending for o in h.gateway.open_orders())


def test_resumed_token_counter_and_sequence(server):
    server.publish(*(outbound("S", timestamp=n) for n in (1, 2, 3)))
    h = Harness(server, token_start=42, next_sequence=3)  # the journal saw sequence 2 and token 41
    h.sequence = 3
    assert h.exchange() == [SystemEvent("S", 3, 3)]
    assert h.gateway.last_sequence == 3
    assert h.new() == "WB000000000042"
    assert h.gateway.next_token_number == 43
    h.session.logout()


# --- what the exchange says: one test per OUCH outbound message type ------------------------------------------


def test_system_event(h):
    assert h.exchange(outbound("S", event_code="E", timestamp=7)) == [SystemEvent("E", 7, 1)]


def test_accepted(h):
    token = h.new(shares=100)
    events = h.exchange(outbound("A", order_token=token, shares=100, price=PRICE - 1, order_reference_number=77))
    assert events == [OrderUpdate(token, OrderState.ACCEPTED, 100, "accepted", "", 1)]
    order = h.orders.get(token)
    assert (order.reference, order.price) == (77, PRICE - 1)  # the exchange's price (e.g. price to comply)


def test_accepted_dead_is_canceled(h):
    token = h.new(shares=100)
    events = h.exchange(outbound("A", order_token=token, shares=0, order_state="D"))
    assert events == [OrderUpdate(token, OrderState.CANCELED, 0, "accepted", "", 1)]


def test_an_order_of_ours_we_never_recorded_is_adopted_and_canceled(h):
    # A restart after a crash that lost the journal's last events: the exchange replays an Accepted for a token
    # with our prefix the agent has no record of.
    lost = "WB000000000500"
    events = h.exchange(outbound("A", order_token=lost, shares=300, price=PRICE, order_reference_number=9))
    assert events == [OrderUpdate(lost, OrderState.ACCEPTED, 300, "adopted", "", 1)]
    assert h.gateway.anomalies["adopted_unknown_order"] == 1
    assert h.orders.get(lost).cancel_pending  # canceled at once
    (cancel,) = h.sent(1)
    assert (cancel.message_type, cancel.order_token, cancel.shares) == ("X", lost, 0)
    assert h.new() == "WB000000000501"  # the token counter moved past it


def test_rejected(h):
    token = h.new()
    assert h.exchange(outbound("J", order_token=token, reason="H")) == [Reject(token, "H", "", 1)]
    assert h.orders.get(token).state is OrderState.REJECTED
    assert h.orders.open_count == 0


def test_executed_partial_then_full(h):
    token = h.live(shares=100)
    first = h.exchange(outbound("E", order_token=token, executed_shares=40, match_number=5, liquidity_flag="R"))
    assert first == [Fill(token, 1, Side.BUY, 40, PRICE, 5, "R", 2, OUTBOUND_DEFAULTS["timestamp"])]
    assert h.orders.get(token).state is OrderState.PARTIALLY_FILLED
    (fill,) = h.exchange(
        outbound("E", order_token=token, executed_shares=60, match_number=6, execution_price=PRICE + 1)
    )
    assert (fill.shares, fill.price, fill.match_number) == (60, PRICE + 1, 6)
    order = h.orders.get(token)
    assert (order.state, order.filled_shares, order.open_shares) == (OrderState.FILLED, 100, 0)


def test_executed_with_reference_price(h):
    token = h.live(shares=100, side=Side.SELL)
    (fill,) = h.exchange(
        outbound("G", order_token=token, executed_shares=100, match_number=9, reference_price=PRICE + 50)
    )
    assert fill == Fill(token, 1, Side.SELL, 100, PRICE, 9, "A", 2, OUTBOUND_DEFAULTS["timestamp"], PRICE + 50)
    assert h.orders.get(token).state is OrderState.FILLED


def test_canceled(h):
    token = h.live(shares=100)
    h.gateway.submit(OrderRequest(RequestKind.CANCEL, 1, Side.BUY, existing_token=token), NOW_NS)
    events = h.exchange(outbound("C", order_token=token, decrement_shares=100, reason="U"))
    assert events == [OrderUpdate(token, OrderState.CANCELED, 0, "canceled", "U", 2)]
    assert not h.orders.get(token).cancel_pending


def test_aiq_canceled_reduces_open_shares(h):
    token = h.live(shares=100)
    events = h.exchange(outbound("D", order_token=token, decrement_shares=30, reason="Q", liquidity_flag=" "))
    assert events == [OrderUpdate(token, OrderState.ACCEPTED, 70, "aiq_canceled", "Q", 2)]


def test_replaced(h):
    old = h.live(shares=100)
    new = h.gateway.submit(OrderRequest(RequestKind.REPLACE, 1, Side.BUY, PRICE + 100, 80, existing_token=old), NOW_NS)
    events = h.exchange(
        outbound(
            "U",
            replacement_order_token=new.token,
            previous_order_token=old,
            shares=80,
            price=PRICE + 100,
            order_reference_number=99,
        )
    )
    assert events == [
        OrderUpdate(old, OrderState.REPLACED, 0, "replaced", "", 2),
        OrderUpdate(new.token, OrderState.ACCEPTED, 80, "replaced", "", 2),
    ]
    replacement = h.orders.get(new.token)
    assert (replacement.price, replacement.reference, replacement.replaces) == (PRICE + 100, 99, old)


def test_rejected_replace_keeps_the_existing_order(h):
    old = h.live(shares=100)
    new = h.gateway.submit(OrderRequest(RequestKind.REPLACE, 1, Side.BUY, PRICE + 100, 80, existing_token=old), NOW_NS)
    assert h.exchange(outbound("J", order_token=new.token, reason="X")) == [Reject(new.token, "X", old, 2)]
    order = h.orders.get(old)
    assert (order.state, order.replacement, order.open_shares) == (OrderState.ACCEPTED, "", 100)
    assert new.token not in h.orders


def test_broken_trade_reports_the_fill_it_voids(h):
    token = h.live(shares=100)
    h.exchange(outbound("E", order_token=token, executed_shares=100, match_number=5, execution_price=PRICE + 7))
    events = h.exchange(outbound("B", order_token=token, match_number=5, reason="E"))
    assert events == [BrokenTrade(token, 1, Side.BUY, 100, PRICE + 7, 5, "E", 3)]
    assert h.orders.get(token).state is OrderState.FILLED  # a break does not reopen the order


def test_trade_correction_reports_old_and_new(h):
    token = h.live(shares=100)
    h.exchange(outbound("E", order_token=token, executed_shares=100, match_number=5))
    events = h.exchange(
        outbound("F", order_token=token, executed_shares=100, match_number=5, execution_price=PRICE - 3, reason="N")
    )
    assert events == [TradeCorrection(token, 1, Side.BUY, 5, 100, PRICE - 3, 100, PRICE, "N", 3)]


def test_cancel_pending(h):
    token = h.live()
    events = h.exchange(outbound("P", order_token=token))
    assert events == [OrderUpdate(token, OrderState.ACCEPTED, 100, "cancel_pending", "", 2)]


def test_cancel_reject_clears_cancel_pending(h):
    token = h.live()
    h.gateway.submit(OrderRequest(RequestKind.CANCEL, 1, Side.BUY, existing_token=token), NOW_NS)
    events = h.exchange(outbound("I", order_token=token))
    assert events == [OrderUpdate(token, OrderState.ACCEPTED, 100, "cancel_reject", "", 2)]
    assert not h.orders.get(token).cancel_pending


def test_order_priority_update_reprices(h):
    token = h.live()
    events = h.exchange(outbound("T", order_token=token, price=PRICE - 5, order_reference_number=123))
    assert events == [OrderUpdate(token, OrderState.ACCEPTED, 100, "order_priority_update", "", 2)]
    order = h.orders.get(token)
    assert (order.price, order.reference) == (PRICE - 5, 123)


def test_every_outbound_type_has_a_test():
    tested = {"S", "A", "J", "E", "G", "C", "D", "U", "B", "F", "P", "I", "T", "M"}  # 'M' in the untrusted cases
    assert tested == set(ouch.OUTBOUND)


def test_round_trip_with_a_matching_engine(h):
    def engine(payload: bytes) -> list[bytes]:
        m = ouch.decode_inbound(payload)
        if m.message_type != "O":
            return []
        return [
            outbound("A", order_token=m.order_token, shares=m.shares, stock=m.stock, buy_sell_indicator="S"),
            outbound("E", order_token=m.order_token, executed_shares=m.shares, match_number=1, execution_price=m.price),
        ]

    h.server.respond = engine
    token = h.new(Side.SELL, 10, PRICE, locate=1)
    h.sequence = 2
    events = h.exchange()
    assert events[0] == OrderUpdate(token, OrderState.ACCEPTED, 10, "accepted", "", 1)
    assert events[1] == Fill(token, 1, Side.SELL, 10, PRICE, 1, "A", 2, OUTBOUND_DEFAULTS["timestamp"])
    assert not h.gateway.anomalies


# --- untrusted exchange input: logged, counted, state unchanged, never raised --------------------------------


def _untrusted_cases(h: Harness) -> dict[str, tuple[str, bytes]]:
    live = h.live(shares=100)
    rejected = h.new()
    h.exchange(outbound("J", order_token=rejected))
    filled = h.live(shares=10)
    h.exchange(outbound("E", order_token=filled, executed_shares=10, match_number=1))
    return {
        "unknown token fill": ("unknown_token", outbound("E", order_token="NEVERSENT", executed_shares=1)),
        "unknown token cancel": ("unknown_token", outbound("C", order_token="NEVERSENT", decrement_shares=1)),
        "unknown token accepted": ("unknown_token", outbound("A", order_token="NEVERSENT", shares=1)),
        "overfill": ("overfill", outbound("E", order_token=live, executed_shares=101, match_number=2)),
        "overcancel": ("overcancel", outbound("C", order_token=live, decrement_shares=101)),
        "fill of a rejected order": ("invalid_transition", outbound("E", order_token=rejected, executed_shares=1)),
        "fill of a filled order": ("invalid_transition", outbound("E", order_token=filled, executed_shares=1)),
        "accepted twice": ("invalid_transition", outbound("A", order_token=live, shares=100)),
        "zero-share cancel": ("invalid_transition", outbound("C", order_token=live, decrement_shares=0)),
        "repeated match number": (
            "duplicate_match",
            outbound("E", order_token=filled, executed_shares=1, match_number=1),
        ),
        "broken trade of no fill": ("unknown_match", outbound("B", order_token=live, match_number=77)),
        "correction of no fill": ("unknown_match", outbound("F", order_token=live, match_number=77)),
        "replace never sent": (
            "unknown_replacement",
            outbound("U", replacement_order_token="WB999", previous_order_token=live, shares=100),
        ),
        "priority update of a done order": ("invalid_transition", outbound("T", order_token=rejected)),
        "order modified": ("unexpected_modify", outbound("M", order_token=live, shares=50)),
        "unknown message type": ("unknown_message_type", b"Q" + bytes(20)),
        "wrong length": ("undecodable_message", outbound("E", order_token=live, executed_shares=1)[:-1]),
        "empty message": ("undecodable_message", b""),
        "non-ASCII token": ("undecodable_message", outbound("C", order_token=live)[:9] + b"\xff" * 14 + bytes(5)),
    }


UNTRUSTED = [
    "unknown token fill",
    "unknown token cancel",
    "unknown token accepted",
    "overfill",
    "overcancel",
    "fill of a rejected order",
    "fill of a filled order",
    "accepted twice",
    "zero-share cancel",
    "repeated match number",
    "broken trade of no fill",
    "correction of no fill",
    "replace never sent",
    "priority update of a done order",
    "order modified",
    "unknown message type",
    "wrong length",
    "empty message",
    "non-ASCII token",
]


@pytest.mark.parametrize("case", UNTRUSTED)
def test_untrusted_message_is_counted_and_changes_nothing(h, case, caplog):
    kind, message = _untrusted_cases(h)[case]
    before = h.snapshot()
    sequence = h.sequence + 1
    with caplog.at_level(logging.WARNING, logger="wirebook.host.gateway"):
        events = h.exchange(message)
    assert events == []
    assert h.gateway.anomalies == {kind: 1}
    assert h.snapshot() == before
    assert f"OUCH {kind}: sequence {sequence}" in caplog.text
    # The gateway carries on: the next message is applied as usual.
    assert h.exchange(outbound("S", event_code="E")) == [SystemEvent("E", OUTBOUND_DEFAULTS["timestamp"], sequence + 1)]


def test_untrusted_cases_are_all_parametrised(server):
    h = Harness(server)
    assert sorted(_untrusted_cases(h)) == sorted(UNTRUSTED)
    h.session.logout()


def test_accepted_for_other_stock_or_side_is_applied_but_counted(h):
    token = h.new(Side.BUY)
    events = h.exchange(outbound("A", order_token=token, shares=100, stock="MSFT"))
    assert events == [OrderUpdate(token, OrderState.ACCEPTED, 100, "accepted", "", 1)]
    assert h.gateway.anomalies == {"accepted_mismatch": 1}
