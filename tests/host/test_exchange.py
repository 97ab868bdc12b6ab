"""The exchange simulator over real sockets on 127.0.0.1: SoupBinTCP/OUCH order entry, MoldUDP64 feed, faults.

The client here is raw: packets are built with the proto encoders and read back with the SoupBinTCP framer and
ouch.decode_outbound. Expected fills come from the ITCH messages the test feeds (through the golden BookModel),
never from the simulator's answers.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wirebook.model.book import ASK, BookModel
from wirebook.proto import itch, itch_file, moldudp64, ouch, soupbintcp
from wirebook.proto.soupbintcp import Packet, Sender, SoupBinTCPFramer
from wirebook.sim import market
from wirebook.sim.exchange import (
    ExchangeConfig,
    ExchangeFaults,
    ExchangeSimulator,
    parse_rate,
    run_exchange,
)
from wirebook.sim.matching import price_error

USER, PASSWORD = "TRADER", "secret"
DOLLAR = 10_000


# --- a small market, written as ITCH messages ----------------------------------------------------------


def _msg(kind: str, locate: int = 0, timestamp: int = 0, **fields: Any) -> bytes:
    return itch.encode(kind, stock_locate=locate, tracking_number=0, timestamp=timestamp, **fields)


def _directory(locate: int, stock: str) -> bytes:
    return _msg(
        "R", locate, 1, stock=stock, market_category="Q", financial_status_indicator="N", round_lot_size=100,
        round_lots_only="N", issue_classification="C", issue_sub_type="Z", authenticity="P",
        short_sale_threshold_indicator="N", ipo_flag="N", luld_reference_price_tier="1", etp_flag="N",
        etp_leverage_factor=0, inverse_indicator="N",
    )  # fmt: skip


def _trading(locate: int, stock: str, state: str = "T") -> bytes:
    return _msg("H", locate, 2, stock=stock, trading_state=state, reserved="", reason="")


def _add(ref: int, side: str, shares: int, price: int, locate: int = 1, stock: str = "AAPL", ts: int = 10) -> bytes:
    return _msg("A", locate, ts, order_reference_number=ref, buy_sell_indicator=side, shares=shares, stock=stock,
                price=price)  # fmt: skip


SETUP = [
    _msg("S", 0, 0, event_code="O"),
    _directory(1, "AAPL"),
    _directory(2, "MSFT"),
    _trading(1, "AAPL"),
    _trading(2, "MSFT"),
    _add(1, "B", 300, 100 * DOLLAR),
    _add(2, "B", 200, 100 * DOLLAR - 100),
    _add(3, "S", 100, 100 * DOLLAR + 500),
    _add(4, "S", 400, 100 * DOLLAR + 600),
    _add(5, "S", 700, 100 * DOLLAR + 800),
]
AFTER = [
    # 1: a new offer at $100.01, through a resting agent bid at $100.01 or better
    _add(6, "S", 300, 100 * DOLLAR + 100, ts=20),
    # 2: an execution of order 3 ($100.05): a print at $100.05
    _msg("E", 1, 30, order_reference_number=3, executed_shares=60, match_number=9001),
    # 3: a non-displayed trade printed at $100.00 (at a $100.00 bid: not through it)
    _msg(
        "P",
        1,
        40,
        order_reference_number=0,
        buy_sell_indicator="B",
        shares=500,
        stock="AAPL",
        price=100 * DOLLAR,
        match_number=9002,
    ),
]


def golden(messages: list[bytes]) -> BookModel:
    """The golden model after `messages`: the test's own view of the replayed book."""
    model = BookModel(lenient=True)
    framed = b"".join(len(m).to_bytes(2, "big") + m for m in messages)
    model.apply_chunk(itch_file.read_all(framed), 1)
    return model


# --- a raw SoupBinTCP / OUCH client -------------------------------------------------------------------------


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.framer = SoupBinTCPFramer(Sender.SERVER)
        self.packets: list[Packet] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def login(self, username: str = USER, password: str = PASSWORD, session: str = "", sequence: int = 1) -> Packet:
        self.send(soupbintcp.encode_login_request(username, password, session, sequence))
        return self.packet()

    def ouch(self, message_type: str, **fields: Any) -> None:
        self.send(soupbintcp.encode_unsequenced_data(ouch.encode_inbound(message_type, **fields)))

    def enter(self, token: str, side: str, shares: int, price: int, stock: str = "AAPL", tif: int = 99_999,
              **extra: Any) -> None:  # fmt: skip
        fields = dict(
            order_token=token, buy_sell_indicator=side, shares=shares, stock=stock, price=price, time_in_force=tif,
            firm="", display="A", capacity="A", intermarket_sweep_eligibility="N", minimum_quantity=0,
            cross_type="N", customer_type="R",
        )  # fmt: skip
        fields.update(extra)
        self.ouch("O", **fields)

    def replace(self, existing: str, replacement: str, shares: int, price: int, tif: int = 99_999) -> None:
        self.ouch("U", existing_order_token=existing, replacement_order_token=replacement, shares=shares, price=price,
                  time_in_force=tif, display="A", intermarket_sweep_eligibility="N", minimum_quantity=0)  # fmt: skip

    def packet(self, timeout: float = 5.0) -> Packet:
        """The next packet; AssertionError if the connection closes or nothing comes in time."""
        deadline = time.monotonic() + timeout
        while not self.packets:
            left = deadline - time.monotonic()
            assert left > 0, "no packet from the exchange in time"
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            assert data, "the exchange closed the connection"
            self.packets += self.framer.feed(data)
        return self.packets.pop(0)

    def message(self, timeout: float = 5.0) -> Any:
        """The next Sequenced Data message, decoded (heartbeats skipped)."""
        while True:
            packet = self.packet(timeout)
            if packet.packet_type == "S":
                return ouch.decode_outbound(packet.payload)
            assert packet.packet_type == "H", f"expected Sequenced Data, got {packet.packet_type!r}"

    def raw_messages(self, count: int) -> list[bytes]:
        out = []
        while len(out) < count:
            packet = self.packet()
            if packet.packet_type == "S":
                out.append(packet.payload)
        return out

    def no_message(self, wait: float = 0.3) -> None:
        """Nothing but heartbeats arrives within `wait` seconds."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):
                packet = self.packet(max(0.01, deadline - time.monotonic()))
                assert packet.packet_type == "H", f"unexpected {packet.packet_type!r}: {packet.payload!r}"

    def wait_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Read until the exchange closes the connection; returns the packets that came first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the exchange did not close the connection"
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return self.packets
            self.packets += self.framer.feed(data)

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def exchange(messages: list[bytes] | None = None, **options: Any) -> Iterator[ExchangeSimulator]:
    """A running simulator; by default replaying SETUP + AFTER in step pace with SETUP already published."""
    options.setdefault("accounts", {USER: PASSWORD})
    options.setdefault("ouch_port", 0)
    options.setdefault("rate", "step")
    if "itch_path" not in options:
        options["itch_messages"] = messages or [*SETUP, *AFTER]
    sim = ExchangeSimulator(ExchangeConfig(**options))
    with sim:
        if options["rate"] == "step":
            sim.advance(len(SETUP))
        yield sim


@contextlib.contextmanager
def session(sim: ExchangeSimulator, sequence: int = 1) -> Iterator[Client]:
    client = Client(sim.ouch_port)
    try:
        accepted = client.login(sequence=sequence)
        assert accepted.packet_type == "A"
        if sequence == 1:
            event = client.message()
            assert (event.message_type, event.event_code) == ("S", "S")
        yield client
    finally:
        client.close()


# --- login ----------------------------------------------------------------------------------------------


def test_login_accepted_gives_session_and_start_of_day() -> None:
    with exchange(session="DAY1") as sim:
        client = Client(sim.ouch_port)
        accepted = client.login(session="DAY1", sequence=1)
        assert accepted.packet_type == "A"
        assert (accepted.fields.session, accepted.fields.sequence_number) == ("DAY1", 1)
        event = client.message()
        assert (event.message_type, event.event_code) == ("S", "S")
        client.close()


@pytest.mark.parametrize(
    ("username", "password", "session_name", "code"),
    [(USER, "wrong", "", "A"), ("NOBODY", PASSWORD, "", "A"), (USER, PASSWORD, "OTHERDAY", "S")],
)
def test_login_rejected_and_closed(username: str, password: str, session_name: str, code: str) -> None:
    with exchange() as sim:
        client = Client(sim.ouch_port)
        rejected = client.login(username, password, session_name)
        assert (rejected.packet_type, rejected.fields.reject_reason_code) == ("J", code)
        assert client.wait_closed() == []


def test_logout_closes_and_stop_sends_end_of_day_then_end_of_session() -> None:
    with exchange() as sim:
        with session(sim) as client:
            client.send(soupbintcp.LOGOUT_REQUEST_PACKET)
            assert client.wait_closed() == []
        client = Client(sim.ouch_port)
        client.login(sequence=0)
        sim.stop()
        packets = client.wait_closed()
        assert [p.packet_type for p in packets if p.packet_type != "H"] == ["S", "Z"]
        assert ouch.decode_outbound(packets[0].payload).event_code == "E"
        client.close()


# --- orders ---------------------------------------------------------------------------------------------


def test_enter_accepted_echoes_the_order_and_rests() -> None:
    with exchange() as sim, session(sim) as client:
        client.enter("BUY1", "B", 200, 99 * DOLLAR, tif=99_999)
        accepted = client.message()
        assert accepted.message_type == "A"
        assert (accepted.order_token, accepted.buy_sell_indicator, accepted.shares) == ("BUY1", "B", 200)
        assert (accepted.stock, accepted.price, accepted.time_in_force) == ("AAPL", 99 * DOLLAR, 99_999)
        assert (accepted.display, accepted.order_state) == ("A", "L")
        assert accepted.order_reference_number > 0
        client.no_message()  # below the best bid: nothing fills


def test_marketable_order_fills_at_the_book_prices_and_rests_the_rest() -> None:
    asks = golden(SETUP).books[1].depth(ASK)  # [(price, shares, orders)], best first
    limit = asks[1][0]
    shares = asks[0][1] + asks[1][1] + 50
    with exchange() as sim, session(sim) as client:
        client.enter("SWEEP", "B", shares, limit)
        assert client.message().message_type == "A"
        fills = [client.message(), client.message()]
        assert [(f.message_type, f.order_token) for f in fills] == [("E", "SWEEP")] * 2
        assert [(f.execution_price, f.executed_shares, f.liquidity_flag) for f in fills] == [
            (asks[0][0], asks[0][1], "R"),
            (asks[1][0], asks[1][1], "R"),
        ]
        assert fills[0].match_number < fills[1].match_number
        client.no_message()  # the 50 left rest at the limit: the displayed liquidity there is taken
        # the taken shares are not there for a second order
        client.enter("AGAIN", "B", 10, limit, tif=0)
        assert client.message().message_type == "A"
        canceled = client.message()
        assert (canceled.message_type, canceled.decrement_shares, canceled.reason) == ("C", 10, "I")


def test_ioc_fills_what_is_displayed_and_cancels_the_rest() -> None:
    best_bid_price, best_bid_shares = golden(SETUP).books[1].top()[:2]
    with exchange() as sim, session(sim) as client:
        client.enter("IOC1", "S", best_bid_shares + 40, best_bid_price, tif=0)
        assert client.message().message_type == "A"
        fill, cancel = client.message(), client.message()
        assert (fill.message_type, fill.execution_price, fill.executed_shares) == ("E", best_bid_price, best_bid_shares)
        assert (cancel.message_type, cancel.order_token, cancel.decrement_shares, cancel.reason) == (
            "C",
            "IOC1",
            40,
            "I",
        )


def test_resting_bid_fills_when_the_replayed_offer_moves_through_it() -> None:
    new_offer = itch.decode(AFTER[0])
    with exchange() as sim, session(sim) as client:
        bid = new_offer.price + 100  # one cent above the offer about to arrive, below the current best offer
        client.enter("REST1", "B", 100, bid)
        assert client.message().message_type == "A"
        client.no_message(0.1)
        sim.advance(1)
        fill = client.message()
        assert (fill.message_type, fill.order_token) == ("E", "REST1")
        assert (fill.execution_price, fill.executed_shares, fill.liquidity_flag) == (bid, 100, "A")


def test_resting_offer_fills_on_a_print_through_it_and_not_on_a_print_at_it() -> None:
    execution = itch.decode(AFTER[1])
    printed_price = golden(SETUP).books[1].depth(ASK)[0][0]  # E executes order 3, the best offer
    trade = itch.decode(AFTER[2])
    with exchange() as sim, session(sim) as client:
        client.enter("ASK1", "S", 100, printed_price - 100)  # inside the spread
        client.enter("BID1", "B", 100, trade.price)  # joins the best bid: a print there does not fill it
        assert [client.message().message_type for _ in range(2)] == ["A", "A"]
        client.no_message(0.1)
        sim.advance(1)  # AFTER[0]: an offer at $100.01, not through $100.04 nor through the $100.00 bid
        client.no_message(0.1)
        sim.advance(1)  # AFTER[1]: the print at $100.05
        fill = client.message()
        assert (fill.order_token, fill.execution_price) == ("ASK1", printed_price - 100)
        assert (fill.executed_shares, fill.liquidity_flag) == (min(100, execution.executed_shares), "A")
        sim.advance(1)  # AFTER[2]: a print at $100.00, the bid's own price
        client.no_message()


def test_replace_of_a_live_order_and_of_a_dead_one() -> None:
    with exchange() as sim, session(sim) as client:
        client.enter("OLD", "B", 100, 99 * DOLLAR)
        accepted = client.message()
        client.replace("OLD", "NEW", 300, 98 * DOLLAR)
        replaced = client.message()
        assert replaced.message_type == "U"
        assert (replaced.replacement_order_token, replaced.previous_order_token) == ("NEW", "OLD")
        assert (replaced.shares, replaced.price, replaced.buy_sell_indicator, replaced.stock) == (
            300, 98 * DOLLAR, "B", "AAPL")  # fmt: skip
        assert replaced.order_reference_number != accepted.order_reference_number
        # OLD is dead now: replacing or canceling it is ignored; the next answer is the cancel of NEW
        client.replace("OLD", "NEWER", 10, 98 * DOLLAR)
        client.ouch("X", order_token="OLD", shares=0)
        client.ouch("X", order_token="NEW", shares=0)
        canceled = client.message()
        assert (canceled.message_type, canceled.order_token, canceled.decrement_shares) == ("C", "NEW", 300)


def test_replace_with_invalid_details_cancels_the_existing_order() -> None:
    with exchange() as sim, session(sim) as client:
        client.enter("KEEP", "S", 100, 101 * DOLLAR)
        client.message()
        client.replace("KEEP", "BAD", ouch.MAX_ORDER_SHARES + 1, 101 * DOLLAR)
        canceled = client.message()
        assert (canceled.message_type, canceled.order_token, canceled.decrement_shares) == ("C", "KEEP", 100)
        # the replacement token was not consumed
        client.enter("BAD", "S", 100, 101 * DOLLAR)
        assert client.message().order_token == "BAD"


def test_cancel_partial_then_full() -> None:
    with exchange() as sim, session(sim) as client:
        client.enter("C1", "B", 500, 99 * DOLLAR)
        client.message()
        client.ouch("X", order_token="C1", shares=200)
        partial = client.message()
        assert (partial.message_type, partial.decrement_shares, partial.reason) == ("C", 300, "U")
        client.ouch("X", order_token="C1", shares=300)  # not below the open 200: ignored
        client.ouch("X", order_token="C1", shares=0)
        full = client.message()
        assert (full.order_token, full.decrement_shares, full.reason) == ("C1", 200, "U")
        client.ouch("X", order_token="C1", shares=0)  # dead: ignored
        client.no_message()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"price": 0}, "X"),
        ({"price": ouch.MAX_LIMIT_PRICE + 100}, "X"),
        ({"price": 100 * DOLLAR + 1}, "X"),  # $100.0001: off the penny tick
        ({"shares": ouch.MAX_ORDER_SHARES + 1}, "Z"),
        ({"shares": 0}, "O"),
        ({"stock": "NOPE"}, "S"),
        ({"display": "Z"}, "D"),
        ({"minimum_quantity": 200}, "N"),
    ],
)
def test_invalid_orders_are_rejected_with_the_documented_code(change: dict[str, Any], code: str) -> None:
    assert code in ouch.REJECT_REASON
    fields = {"token": "BAD1", "side": "B", "shares": 100, "price": 99 * DOLLAR, **change}
    with exchange() as sim, session(sim) as client:
        if "display" in change:  # encode_inbound refuses an undocumented display code: patch the byte
            message = bytearray(ouch.encode_inbound("O", order_token="BAD1", buy_sell_indicator="B", shares=100,
                stock="AAPL", price=99 * DOLLAR, time_in_force=0, firm="", display="A", capacity="A",
                intermarket_sweep_eligibility="N", minimum_quantity=0, cross_type="N", customer_type="R"))  # fmt: skip
            message[ouch.INBOUND["O"].by_name["display"].offset] = ord(change["display"])
            client.send(soupbintcp.encode_unsequenced_data(bytes(message)))
        else:
            client.enter(fields.pop("token"), fields.pop("side"), fields.pop("shares"), fields.pop("price"), **fields)
        rejected = client.message()
        assert (rejected.message_type, rejected.order_token, rejected.reason) == ("J", "BAD1", code)


def test_sub_dollar_prices_are_on_tick_at_any_price4_unit() -> None:
    assert price_error(5_001) is None  # $0.5001
    assert price_error(DOLLAR + 50) is not None  # $1.0050
    assert price_error(DOLLAR + 100) is None


def test_halted_stock_is_rejected_h() -> None:
    with exchange([*SETUP, _trading(2, "MSFT", "H")]) as sim:
        sim.advance(1)
        with session(sim) as client:
            client.enter("H1", "B", 100, 50 * DOLLAR, stock="MSFT")
            assert client.message().reason == "H"


def test_accounts_have_their_own_streams_and_tokens() -> None:
    accounts = {USER: PASSWORD, "OTHER": "pw2"}
    with exchange(accounts=accounts) as sim, session(sim) as first:
        second = Client(sim.ouch_port)
        assert second.login("OTHER", "pw2").packet_type == "A"
        assert second.message().event_code == "S"
        second.enter("SAME", "B", 100, 99 * DOLLAR)  # the same token in two accounts: two orders
        first.enter("SAME", "S", 100, 101 * DOLLAR)
        assert (second.message().buy_sell_indicator, first.message().buy_sell_indicator) == ("B", "S")
        first.no_message(0.1)
        second.close()


def test_advance_needs_a_running_simulator() -> None:
    sim = ExchangeSimulator(ExchangeConfig(itch_messages=SETUP, ouch_port=0, rate="step"))
    with pytest.raises(RuntimeError, match="start"):
        sim.advance(1)


def test_duplicate_token_is_ignored() -> None:
    with exchange() as sim, session(sim) as client:
        client.enter("DUP", "B", 100, 99 * DOLLAR)
        assert client.message().message_type == "A"
        client.enter("DUP", "B", 100, 98 * DOLLAR)
        client.enter("NEXT", "B", 100, 98 * DOLLAR)
        assert client.message().order_token == "NEXT"


# --- session: resume, heartbeats, bad input -------------------------------------------------------------------


def test_resume_from_sequence_n_delivers_exactly_the_missing_messages() -> None:
    with exchange() as sim:
        with session(sim) as client:  # message 1 is the start-of-day event
            for i in range(4):
                client.enter(f"R{i}", "B", 100, 99 * DOLLAR - 100 * i)
            seen = client.raw_messages(4)  # sequences 2..5
        with session(sim, sequence=4) as again:
            assert again.raw_messages(2) == seen[2:]
            again.enter("R9", "B", 100, 90 * DOLLAR)
            assert again.message().order_token == "R9"  # sequence 6, nothing replayed twice
        client = Client(sim.ouch_port)
        accepted = client.login(sequence=0)  # 0: only new messages
        assert accepted.fields.sequence_number == 7
        client.no_message(0.2)
        client.close()


def test_server_heartbeats_when_idle_and_drops_a_silent_client() -> None:
    with exchange(heartbeat_interval_s=0.1, client_timeout_s=0.6) as sim, session(sim) as client:
        start = time.monotonic()
        heartbeats = 0
        while time.monotonic() - start < 0.35:
            if client.packet().packet_type == "H":
                heartbeats += 1
        assert heartbeats >= 2
        client.wait_closed(timeout=2)  # silent for 0.6 s: dropped


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x03Q??",  # a packet type the client may not send
        b"\x00\x00",  # packet length 0
        soupbintcp.encode_unsequenced_data(b"Zjunk"),  # not an OUCH inbound message
        soupbintcp.encode_unsequenced_data(b"X" + b"T" * 5),  # a truncated Cancel Order
        soupbintcp.encode_login_request(USER, PASSWORD),  # a second login
    ],
)
def test_bad_client_bytes_close_the_connection_and_the_exchange_serves_on(garbage: bytes) -> None:
    with exchange() as sim:
        with session(sim) as client:
            client.send(garbage)
            client.wait_closed()
        with session(sim) as fresh:
            fresh.enter("OK1", "B", 100, 99 * DOLLAR)
            assert fresh.message().message_type == "A"


def test_unsequenced_data_before_login_closes() -> None:
    with exchange() as sim:
        client = Client(sim.ouch_port)
        client.send(soupbintcp.encode_unsequenced_data(b"X" + b" " * 18))
        client.wait_closed()


# --- the feed ---------------------------------------------------------------------------------------------


def _udp_receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    return sock


def _receive_until_end(sock: socket.socket) -> list[moldudp64.Packet]:
    packets = []
    while True:
        packet = moldudp64.decode_packet(sock.recv(65536))
        packets.append(packet)
        if packet.end_of_session:
            return packets


def test_feed_is_moldudp64_with_consecutive_sequences_and_the_market_messages() -> None:
    messages = list(market.generate(3, 600, seed=7))
    receiver = _udp_receiver()
    with exchange(
        messages, rate="max", feed_address=receiver.getsockname(), feed_session="FEEDX", messages_per_packet=16
    ) as sim:
        packets = _receive_until_end(receiver)
        assert sim.wait_feed_end(5)
    data = [p for p in packets if p.messages]
    assert all(p.session == "FEEDX" for p in packets)
    assert data[0].sequence_number == 1
    for before, after in itertools.pairwise(data):
        assert after.sequence_number == before.next_sequence
    assert [m for p in data for m in p.messages] == messages
    assert max(len(p.messages) for p in data) <= 16
    assert packets[-1].sequence_number == len(messages) + 1
    receiver.close()


def test_feed_heartbeats_when_idle() -> None:
    receiver = _udp_receiver()
    with exchange(feed_address=receiver.getsockname(), feed_heartbeat_s=0.1):
        packets = [moldudp64.decode_packet(receiver.recv(65536)) for _ in range(3)]
    data, beats = packets[0], packets[1:]
    assert data.messages == tuple(SETUP)
    assert all(p.is_heartbeat and p.sequence_number == len(SETUP) + 1 for p in beats)
    receiver.close()


def test_feed_gap_fault_skips_the_configured_packets() -> None:
    messages = list(market.generate(3, 400, seed=3))
    receiver = _udp_receiver()
    faults = ExchangeFaults(feed_drop_packets=frozenset({2, 5}))
    with exchange(messages, rate="max", feed_address=receiver.getsockname(), messages_per_packet=10,
                  faults=faults) as sim:  # fmt: skip
        packets = [p for p in _receive_until_end(receiver) if p.messages]
        assert sim.feed_stats["dropped"] == [2, 5]
    # 10 messages a packet (all fit 1400 bytes): packets 2 and 5 are sequences 21..30 and 51..60
    gaps = [
        (a.next_sequence, b.sequence_number)
        for a, b in itertools.pairwise(packets)
        if a.next_sequence != b.sequence_number
    ]
    assert gaps == [(21, 31), (51, 61)]
    for p in packets:
        assert list(p.messages) == messages[p.sequence_number - 1 : p.next_sequence - 1]
    receiver.close()


def test_feed_to_a_multicast_group_on_loopback() -> None:
    group, port = "239.192.77.1", 0
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind((group, port))
    receiver.settimeout(5)
    try:
        membership = socket.inet_aton(group) + socket.inet_aton("127.0.0.1")
        receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    except OSError as e:
        receiver.close()
        pytest.skip(f"no multicast on loopback here: {e}")
    address = (group, receiver.getsockname()[1])
    with exchange(rate="max", feed_address=address, feed_interface="127.0.0.1"):
        packets = _receive_until_end(receiver)
    assert [m for p in packets for m in p.messages] == [*SETUP, *AFTER]
    receiver.close()


def test_feed_from_an_itch_file(tmp_path: Path) -> None:
    path = tmp_path / "day.itch"
    market.write_itch(path, symbols=2, messages=300, seed=5)
    receiver = _udp_receiver()
    with exchange(itch_path=str(path), rate="max", feed_address=receiver.getsockname()):
        packets = _receive_until_end(receiver)
    assert [m for p in packets for m in p.messages] == list(market.generate(2, 300, seed=5))
    receiver.close()


def test_realtime_pace_follows_the_itch_clock() -> None:
    late = _add(7, "B", 100, 90 * DOLLAR, ts=300_000_000)  # 0.3 s of feed time after the start
    receiver = _udp_receiver()
    with exchange([*SETUP, late], rate="realtime:2", feed_address=receiver.getsockname()):
        start = time.monotonic()
        packets = _receive_until_end(receiver)
        elapsed = time.monotonic() - start
    assert [m for p in packets for m in p.messages] == [*SETUP, late]
    assert packets[-2].messages == (late,)  # not in the first packet: more than 1 ms of feed time later
    assert 0.12 <= elapsed < 2.0  # 0.3 s at twice the speed
    receiver.close()


def test_matching_follows_the_published_feed_of_a_generated_market() -> None:
    messages = list(market.generate(4, 3000, seed=11))
    model = golden(messages)
    name, top = next((s, t) for s, t in model.final_bbo().items() if t["ask_orders"] and not t["flags"])
    with exchange(messages, rate="max") as sim:
        assert sim.wait_feed_end(20)
        with session(sim) as client:
            client.enter("GEN1", "B", top["ask_shares"] + 1, top["ask_price"], stock=name, tif=0)
            assert client.message().message_type == "A"
            fill, rest = client.message(), client.message()
    assert (fill.execution_price, fill.executed_shares) == (top["ask_price"], top["ask_shares"])
    assert (rest.message_type, rest.decrement_shares, rest.reason) == ("C", 1, "I")


# --- faults -----------------------------------------------------------------------------------------------


def test_disconnect_fault_closes_after_n_messages_and_resume_recovers_the_answer() -> None:
    with exchange(faults=ExchangeFaults(disconnect_after_messages=2)) as sim:
        with session(sim) as client:
            client.enter("D1", "B", 100, 99 * DOLLAR)
            assert client.message().order_token == "D1"  # sequence 2
            client.enter("D2", "B", 100, 98 * DOLLAR)
            assert [p for p in client.wait_closed() if p.packet_type == "S"] == []
        with session(sim, sequence=3) as again:
            accepted = again.message()
            assert (accepted.message_type, accepted.order_token) == ("A", "D2")
            again.enter("D3", "B", 100, 97 * DOLLAR)  # fires once only
            assert again.message().order_token == "D3"


def test_disconnect_fault_at_a_time() -> None:
    with exchange(faults=ExchangeFaults(disconnect_after_s=0.2)) as sim, session(sim) as client:
        start = time.monotonic()
        client.wait_closed(timeout=3)
        assert time.monotonic() - start >= 0.15


def test_delay_fault_holds_answers_back() -> None:
    with exchange(faults=ExchangeFaults(delay_ms=250)) as sim, session(sim) as client:
        start = time.monotonic()
        client.enter("SLOW", "B", 100, 99 * DOLLAR)
        assert client.message().order_token == "SLOW"
        assert time.monotonic() - start >= 0.24


def test_reject_every_nth_order() -> None:
    with exchange(faults=ExchangeFaults(reject_every=3, reject_reason="H")) as sim, session(sim) as client:
        for i in range(6):
            client.enter(f"N{i}", "B", 100, 90 * DOLLAR)
        answers = [client.message() for _ in range(6)]
    assert [(a.message_type, getattr(a, "reason", None)) for a in answers] == [("A", None), ("A", None), ("J", "H")] * 2


def _reject_pattern(seed: int, probability: float) -> list[str]:
    with exchange(faults=ExchangeFaults(reject_probability=probability, seed=seed)) as sim, session(sim) as client:
        for i in range(12):
            client.enter(f"P{i}", "B", 100, 90 * DOLLAR)
        return [client.message().message_type for _ in range(12)]


def test_reject_probability_is_deterministic_by_seed() -> None:
    assert _reject_pattern(5, 1.0) == ["J"] * 12
    pattern = _reject_pattern(5, 0.5)
    assert pattern == _reject_pattern(5, 0.5)
    assert set(pattern) == {"A", "J"}


# --- configuration and command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"ouch_port": 70000}, "ouch_port"),
        ({"accounts": {"TOOLONGNAME": "x"}}, "username"),
        ({"session": "ELEVENCHARS"}, "session"),
        ({"rate": "fast"}, "rate"),
        ({"feed_address": ("127.0.0.1", 0)}, "feed_address"),
    ],
)
def test_bad_configuration_is_refused_naming_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ExchangeConfig(**options)
    with pytest.raises(ValueError, match="reject_reason"):
        ExchangeFaults(reject_reason="X")


def test_parse_rate() -> None:
    assert parse_rate("max").kind == "max"
    assert (parse_rate("5000").kind, parse_rate("5000").value) == ("rate", 5000.0)
    assert (parse_rate("realtime:60").kind, parse_rate("realtime:60").value) == ("realtime", 60.0)


def test_rate_paced_feed_takes_about_the_expected_time() -> None:
    receiver = _udp_receiver()
    start = time.monotonic()
    with exchange(SETUP * 1, rate="50", feed_address=receiver.getsockname()) as sim:
        _receive_until_end(receiver)
        assert sim.published == len(SETUP)
    assert time.monotonic() - start >= (len(SETUP) - 1) / 50 * 0.9
    receiver.close()


def test_run_exchange_prints_where_it_listens(capsys: pytest.CaptureFixture[str]) -> None:
    status = run_exchange(["--ouch-port", "0", "--symbols", "2", "--messages", "200", "--duration", "0.3"])
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert status == 0
    assert line.startswith("exchange: OUCH 4.2 / SoupBinTCP on 127.0.0.1:")
    assert "generated market" in line


def test_run_exchange_refuses_a_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_exchange(["--ouch-port", "0", "--delay-ms", "-5"]) == 2
    assert "delay_ms" in capsys.readouterr().out
