"""SoupSession, the SoupBinTCP 3.0 client: every state transition, timers, reconnect and resume, bad streams.

The exchange side is `SoupServer`, a small scripted SoupBinTCP server on 127.0.0.1 in a thread, built on the
proto encoders (tests/host/test_gateway.py uses it too). The session's clock is the `now` the test passes:
timers (heartbeat, timeout, backoff) are driven by stepping it, so nothing waits for seconds; the only real
waiting is for bytes to cross the loopback interface.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from wirebook.host.session import (
    TRANSITIONS,
    SessionConfig,
    SessionEvent,
    SessionNotLoggedInError,
    SessionState,
    SessionStateError,
    SoupSession,
)
from wirebook.proto import soupbintcp as soup

T0 = 1000.0  # the session clock at connect, seconds
USER, PASSWORD, SESSION = "trader", "secret", "SESSION1"


class SoupServer:
    """A scripted SoupBinTCP server: one client connection at a time, on 127.0.0.1, in a thread.

    It keeps the session's Sequenced Data in `log` (sequence n is log[n - 1]), answers a Login Request by
    the rules of the specification (wrong username/password: 'A'; a session other than its own: 'S';
    otherwise Login Accepted at the requested sequence, or the next new one for 0, then the replay), and
    records what the client sent: `logins` (Login Request records), `packet_types` (every packet type, in
    order), `inbound` (Unsequenced Data payloads). `respond(payload) -> [outbound messages]` lets a test act
    as the matching engine. The test-side calls are queued to the server thread and run in order.
    """

    def __init__(self, backlog: int = 8) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self.port = self.listener.getsockname()[1]
        self.log: list[bytes] = []
        self.logins: list[Any] = []
        self.packet_types: list[str] = []
        self.inbound: list[bytes] = []
        self.connections = 0
        self.answer_login = True
        self.offer: Callable[[int], int] | None = None  # requested -> offered sequence, to script a bad server
        self.respond: Callable[[bytes], list[bytes]] | None = None
        self.reading = threading.Event()
        self.reading.set()
        self._conn: socket.socket | None = None
        self._framer = soup.SoupBinTCPFramer(soup.Sender.CLIENT)
        self._logged_in = False
        self._commands: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soup-server", daemon=True)
        self._thread.start()

    # --- the test's side ------------------------------------------------------------------------------------

    def config(self, **overrides: Any) -> SessionConfig:
        fields = {"host": "127.0.0.1", "port": self.port, "username": USER, "password": PASSWORD, **overrides}
        return SessionConfig(**fields)

    def publish(self, *messages: bytes) -> None:
        """Append to the session's log; sent at once if a client is logged in, else replayed at its login."""
        self._commands.put(("publish", messages))

    def send_raw(self, data: bytes) -> None:
        self._commands.put(("raw", data))

    def drop(self) -> None:
        """Close the client's connection (after reading what it sent, so the close is a FIN, not a reset)."""
        self._commands.put(("drop", None))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._disconnect()
        self.listener.close()

    # --- the server thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._run_commands()
            conn = self._conn
            if conn is None:
                readable, _, _ = select.select([self.listener], [], [], 0.002)
                if readable:
                    conn, _ = self.listener.accept()
                    conn.settimeout(2.0)
                    self._conn, self._logged_in = conn, False
                    self._framer = soup.SoupBinTCPFramer(soup.Sender.CLIENT)
                    self.connections += 1
            elif self.reading.is_set():
                readable, _, _ = select.select([conn], [], [], 0.002)
                if readable:
                    self._read(conn)
            else:
                time.sleep(0.002)

    def _run_commands(self) -> None:
        while True:
            try:
                command, argument = self._commands.get_nowait()
            except queue.Empty:
                return
            if command == "publish":
                for message in argument:
                    self._publish(message)
            elif command == "raw" and self._conn is not None:
                self._conn.sendall(argument)
            elif command == "drop":
                self._disconnect()

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self._disconnect()
            return
        for packet in self._framer.feed(data):
            self.packet_types.append(packet.packet_type)
            if packet.packet_type == "L":
                self._login(packet.fields)
            elif packet.packet_type == "U":
                self.inbound.append(packet.payload)
                for message in self.respond(packet.payload) if self.respond else ():
                    self._publish(message)
            elif packet.packet_type == "O":
                self._disconnect()
                return

    def _login(self, request: Any) -> None:
        self.logins.append(request)
        if not self.answer_login:
            return
        if (request.username, request.password) != (USER, PASSWORD):
            self._send(soup.encode_login_rejected(soup.REJECT_NOT_AUTHORIZED))
            self._disconnect()
            return
        if request.requested_session not in ("", SESSION):
            self._send(soup.encode_login_rejected(soup.REJECT_SESSION_NOT_AVAILABLE))
            self._disconnect()
            return
        requested = request.requested_sequence_number
        offered = requested if requested >= 1 else len(self.log) + 1
        if self.offer is not None:
            offered = self.offer(requested)
        self._send(soup.encode_login_accepted(SESSION, offered))
        self._logged_in = True
        for message in self.log[offered - 1 :]:
            self._send(soup.encode_sequenced_data(message))

    def _publish(self, message: bytes) -> None:
        self.log.append(message)
        if self._logged_in:
            self._send(soup.encode_sequenced_data(message))

    def _send(self, data: bytes) -> None:
        if self._conn is not None:
            try:
                self._conn.sendall(data)
            except OSError:
                self._disconnect()

    def _disconnect(self) -> None:
        conn, self._conn, self._logged_in = self._conn, None, False
        if conn is None:
            return
        try:
            conn.setblocking(False)
            while conn.recv(1 << 16):
                pass
        except OSError:
            pass
        conn.close()


def pump(session: SoupSession, now: float, until: Callable[[], bool], timeout: float = 3.0) -> list[tuple[int, bytes]]:
    """Poll at a fixed `now` until `until()`: waits only for the loopback, never for the session's timers."""
    delivered: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    while True:
        delivered += session.poll(now)
        if until():
            return delivered
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; session {session.state.value}")
        time.sleep(0.0002)


def wait(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait for the server thread to have seen something."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"server condition not met within {timeout} s")
        time.sleep(0.0005)


def logged_in(server: SoupServer, now: float = T0, **config: Any) -> SoupSession:
    session = SoupSession(server.config(**config))
    session.connect(now)
    pump(session, now, lambda: session.state is not SessionState.CONNECTING)
    pump(session, now, lambda: session.state is not SessionState.LOGIN_SENT)
    assert session.state is SessionState.LOGGED_IN, session.last_error
    return session


def messages(*numbers: int) -> list[bytes]:
    return [f"message {n}".encode() for n in numbers]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    server = SoupServer()
    yield server
    server.close()


# --- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "toolong7"),
        ("username", "trädr"),
        ("password", "p" * 11),
        ("session", "S" * 11),
        ("session", "SESSION "),
        ("port", 0),
        ("heartbeat_interval_s", 0),
        ("max_reconnects", -1),
    ],
)
def test_config_refuses_bad_field_naming_it(field, value):
    fields = {"port": 1, "username": USER, "password": PASSWORD, field: value}
    with pytest.raises(ValidationError) as excinfo:
        SessionConfig(**fields)
    assert excinfo.value.errors()[0]["loc"] == (field,)


def test_config_refuses_timeout_not_above_interval():
    with pytest.raises(ValidationError, match="heartbeat_timeout_s"):
        SessionConfig(port=1, username=USER, password=PASSWORD, heartbeat_interval_s=2, heartbeat_timeout_s=2)


def test_config_refuses_unknown_key():
    with pytest.raises(ValidationError, match="hostname"):
        SessionConfig(port=1, username=USER, password=PASSWORD, hostname="x")


# --- the transition table -----------------------------------------------------------------------------------


def test_transition_table_terminal_states_have_no_way_out():
    terminal = {SessionState.REJECTED, SessionState.ENDED, SessionState.LOGGED_OUT, SessionState.FAILED}
    assert not {state for state, _ in TRANSITIONS} & terminal
    assert set(TRANSITIONS.values()) | {SessionState.DISCONNECTED} == set(SessionState)


@pytest.mark.parametrize(("state", "event"), list(TRANSITIONS))
def test_transition_table_entry(state, event):
    session = SoupSession(SessionConfig(port=1, username=USER, password=PASSWORD))
    session.state = state
    session._transition(event, T0)
    assert session.state is TRANSITIONS[(state, event)]


def test_transition_not_in_table_is_refused_naming_state_and_event():
    session = SoupSession(SessionConfig(port=1, username=USER, password=PASSWORD))
    with pytest.raises(SessionStateError, match=r"event accepted in state disconnected, expected .*login_sent"):
        session._transition(SessionEvent.ACCEPTED, T0)
    assert session.state is SessionState.DISCONNECTED


# --- DISCONNECTED -> CONNECTING -> LOGIN_SENT -> LOGGED_IN ---------------------------------------------------


def test_connect_opens_tcp_and_sends_login_request(server):
    session = SoupSession(server.config(session=""), next_sequence=7)
    assert session.state is SessionState.DISCONNECTED
    session.connect(T0)
    assert session.state in (SessionState.CONNECTING, SessionState.LOGIN_SENT)
    server.answer_login = False
    pump(session, T0, lambda: session.state is SessionState.LOGIN_SENT)
    wait(lambda: server.logins)
    login = server.logins[0]
    assert (login.username, login.password, login.requested_session) == (USER, PASSWORD, "")
    assert login.requested_sequence_number == 7
    with pytest.raises(SessionStateError, match="event connect in state login_sent"):
        session.connect(T0)
    session.logout()


def test_login_accepted_gives_session_and_next_sequence(server):
    server.publish(*messages(1, 2, 3))
    session = SoupSession(server.config(), next_sequence=2)
    session.connect(T0)
    delivered = pump(session, T0, lambda: session.last_sequence == 3)
    assert session.state is SessionState.LOGGED_IN
    assert session.session_id == SESSION
    assert delivered == [(2, b"message 2"), (3, b"message 3")]
    assert session.next_sequence == 4
    session.logout()


def test_login_requesting_zero_starts_with_the_newest(server):
    server.publish(*messages(1, 2))
    session = SoupSession(server.config(), next_sequence=0)
    session.connect(T0)
    pump(session, T0, lambda: session.logged_in)
    assert session.next_sequence == 3
    server.publish(*messages(3))
    assert pump(session, T0, lambda: session.last_sequence == 3) == [(3, b"message 3")]
    session.logout()


@pytest.mark.parametrize(
    ("overrides", "code"),
    [({"password": "wrong"}, soup.REJECT_NOT_AUTHORIZED), ({"session": "OTHER"}, soup.REJECT_SESSION_NOT_AVAILABLE)],
)
def test_login_rejected_is_terminal_with_the_reason(server, overrides, code):
    session = SoupSession(server.config(**overrides))
    session.connect(T0)
    pump(session, T0, lambda: session.finished)
    assert session.state is SessionState.REJECTED
    assert session.reject_reason == code
    assert soup.LOGIN_REJECT_REASONS[code] in session.last_error
    for later in (T0 + 60, T0 + 3600):  # no retry, however long the caller keeps polling
        assert session.poll(later) == []
    assert session.state is SessionState.REJECTED
    assert server.connections == 1 and len(server.logins) == 1
    with pytest.raises(SessionNotLoggedInError, match="in state rejected, expected logged_in"):
        session.send(b"x")


# --- LOGGED_IN: data, heartbeats, send ------------------------------------------------------------------------


def test_sequenced_data_delivered_in_order_with_sequence_numbers(server):
    session = logged_in(server)
    server.publish(*messages(1, 2, 3, 4, 5))
    delivered = pump(session, T0, lambda: session.last_sequence == 5)
    assert delivered == list(enumerate(messages(1, 2, 3, 4, 5), start=1))
    session.logout()


def test_debug_and_server_heartbeat_packets_are_ignored_and_counted(server):
    session = logged_in(server)
    server.send_raw(soup.encode_debug("hello") + soup.SERVER_HEARTBEAT_PACKET)
    server.publish(*messages(1))
    assert pump(session, T0, lambda: session.last_sequence == 1) == [(1, b"message 1")]
    assert session.debug_packets == 1
    assert not session.anomalies
    session.logout()


def test_client_heartbeat_sent_when_nothing_sent_for_the_interval(server):
    session = logged_in(server)  # Login Request sent at T0; times below are exact in binary
    session.poll(T0 + 0.75)
    session.send(b"marker 1")  # at T0 + 0.75
    session.poll(T0 + 1.5)  # 0.75 s since the last send: no heartbeat
    session.send(b"marker 2")  # at T0 + 1.5
    wait(lambda: len(server.inbound) == 2)
    assert server.packet_types == ["L", "U", "U"]
    session.poll(T0 + 2.25)
    session.poll(T0 + 2.5)  # one interval after the last send: heartbeat
    session.poll(T0 + 3.0)
    session.poll(T0 + 3.5)  # one interval after that heartbeat: another
    session.send(b"marker 3")
    wait(lambda: len(server.inbound) == 3)
    assert server.packet_types == ["L", "U", "U", "R", "R", "U"]
    session.logout()


def test_send_carries_one_unsequenced_data_packet(server):
    session = logged_in(server)
    session.send(b"O-order-bytes")
    wait(lambda: server.inbound)
    assert server.inbound == [b"O-order-bytes"]
    session.logout()


def test_held_packets_leave_in_order_in_one_write(server):
    session = logged_in(server)
    writes: list[bytes] = []
    write = session._write
    session._write = lambda data, now: (writes.append(bytes(data)), write(data, now))
    session.hold()
    for n in range(3):
        session.send(b"O-order-%d" % n)
    assert writes == []  # nothing leaves while held
    assert session.release() == 3
    assert len(writes) == 1
    wait(lambda: len(server.inbound) == 3)
    assert server.inbound == [b"O-order-0", b"O-order-1", b"O-order-2"]
    assert session.release() == 0  # not holding: nothing to write
    session.send(b"O-after")  # and send() writes at once again
    assert len(writes) == 2
    session.logout()


def test_held_packets_are_discarded_with_a_lost_link(server):
    session = logged_in(server)
    session.hold()
    session.send(b"O-lost")
    server.drop()
    pump(session, T0, lambda: session.state is SessionState.BACKOFF)
    assert session.anomalies["unsent_discarded"] == 1
    assert session.release() == 0  # discarded with the link: nothing to write on the next one
    pump(session, T0 + 1, lambda: session.logged_in)
    session.send(b"O-next")
    wait(lambda: server.inbound)
    assert server.inbound == [b"O-next"]
    session.logout()


def test_logout_while_holding_sends_the_held_packets_first(server):
    session = logged_in(server)
    session.hold()
    session.send(b"O-last")
    session.logout()
    wait(lambda: "O" in server.packet_types)
    assert server.packet_types == ["L", "U", "O"]
    assert server.inbound == [b"O-last"]


def test_send_refused_before_login(server):
    session = SoupSession(server.config())
    with pytest.raises(SessionNotLoggedInError, match=r"cannot send 3-byte message in state disconnected"):
        session.send(b"abc")
    server.answer_login = False
    session.connect(T0)
    pump(session, T0, lambda: session.state is SessionState.LOGIN_SENT)
    with pytest.raises(SessionNotLoggedInError, match="in state login_sent"):
        session.send(b"abc")
    session.logout()
    assert server.inbound == []


def test_partial_writes_are_queued_and_flushed_in_order(server):
    session = logged_in(server)
    server.reading.clear()  # the server stops reading: the socket buffers fill
    payload = bytes(range(48)) * 20
    sent = 0
    while session.pending_bytes == 0:
        session.send(payload + sent.to_bytes(4, "big"))
        sent += 1
        assert sent < 100_000, "the socket never pushed back"
    for _ in range(3):
        session.send(payload + sent.to_bytes(4, "big"))  # queued behind the rest, in order
        sent += 1
    session.poll(T0 + 5)  # no heartbeat while bytes are queued: it would only wait behind them
    server.reading.set()
    pump(session, T0, lambda: session.pending_bytes == 0)
    wait(lambda: len(server.inbound) == sent)
    assert server.inbound == [payload + n.to_bytes(4, "big") for n in range(sent)]
    assert "R" not in server.packet_types
    session.logout()


# --- LOGGED_IN -> ENDED, -> LOGGED_OUT -------------------------------------------------------------------------


def test_end_of_session_is_terminal(server):
    session = logged_in(server)
    server.publish(*messages(1))
    server.send_raw(soup.END_OF_SESSION_PACKET + soup.encode_sequenced_data(b"after the end"))
    delivered = pump(session, T0, lambda: session.finished)
    assert delivered == [(1, b"message 1")]
    assert session.state is SessionState.ENDED
    assert session.poll(T0 + 100) == []
    assert session.state is SessionState.ENDED
    with pytest.raises(SessionNotLoggedInError):
        session.send(b"x")


def test_logout_sends_logout_request_and_closes(server):
    session = logged_in(server)
    session.logout()
    assert session.state is SessionState.LOGGED_OUT
    wait(lambda: "O" in server.packet_types)
    assert server.packet_types == ["L", "O"]
    session.logout()  # nothing in a terminal state
    assert session.poll(T0 + 100) == []
    with pytest.raises(SessionStateError, match="event connect in state logged_out"):
        session.connect(T0)


@pytest.mark.parametrize("state", [SessionState.DISCONNECTED, SessionState.CONNECTING, SessionState.BACKOFF])
def test_logout_from_a_state_without_login_just_closes(server, state):
    session = SoupSession(server.config(port=closed_port()) if state is SessionState.BACKOFF else server.config())
    if state is SessionState.CONNECTING:
        server.answer_login = False
        session.connect(T0)
        session.state = SessionState.CONNECTING  # whether or not loopback finished the handshake already
    elif state is SessionState.BACKOFF:
        session.connect(T0)
        pump(session, T0, lambda: session.state is SessionState.BACKOFF)
    session.logout()
    assert session.state is SessionState.LOGGED_OUT
    assert "O" not in server.packet_types


# --- losing the link and getting it back -------------------------------------------------------------------------


def test_heartbeat_timeout_loses_the_link_then_reconnects_and_resumes(server):
    session = logged_in(server, reconnect_delay_s=0.5)
    server.publish(*messages(1, 2))
    pump(session, T0, lambda: session.last_sequence == 2)
    session.poll(T0 + 14.999)
    assert session.state is SessionState.LOGGED_IN
    session.poll(T0 + 15.0)  # nothing received for heartbeat_timeout_s
    assert session.state is SessionState.BACKOFF
    assert session.anomalies["heartbeat_timeout"] == 1
    session.poll(T0 + 15.499)
    assert session.state is SessionState.BACKOFF
    session.poll(T0 + 15.5)  # BACKOFF -> CONNECTING after reconnect_delay_s
    assert session.state in (SessionState.CONNECTING, SessionState.LOGIN_SENT)
    delivered = pump(session, T0 + 15.5, lambda: session.logged_in)
    assert delivered == []
    assert [login.requested_sequence_number for login in server.logins] == [1, 3]
    assert [login.requested_session for login in server.logins] == ["", SESSION]
    assert session.reconnects == 1
    session.logout()


def test_reconnect_after_peer_close_misses_nothing_and_duplicates_nothing(server):
    session = logged_in(server)
    server.publish(*messages(1, 2, 3))
    first = pump(session, T0, lambda: session.last_sequence == 3)
    server.drop()
    pump(session, T0, lambda: session.state is SessionState.BACKOFF)
    assert session.anomalies["peer_closed"] == 1
    server.publish(*messages(4, 5))  # while the client is away
    second = pump(session, T0 + 1, lambda: session.last_sequence == 5)
    assert first + second == list(enumerate(messages(1, 2, 3, 4, 5), start=1))
    assert server.logins[-1].requested_sequence_number == 4
    server.publish(*messages(6))
    assert pump(session, T0 + 1, lambda: session.last_sequence == 6) == [(6, b"message 6")]
    session.logout()


def test_server_replaying_from_earlier_is_deduplicated(server):
    session = logged_in(server)
    server.publish(*messages(1, 2, 3))
    pump(session, T0, lambda: session.last_sequence == 3)
    server.offer = lambda requested: 2  # a server that replays more than asked
    server.drop()
    pump(session, T0, lambda: session.state is SessionState.BACKOFF)
    server.publish(*messages(4))
    delivered = pump(session, T0 + 1, lambda: session.last_sequence == 4)
    assert delivered == [(4, b"message 4")]
    assert session.anomalies["duplicate_dropped"] == 2
    session.logout()


def test_server_skipping_ahead_is_a_counted_gap(server):
    server.publish(*messages(1, 2, 3))
    server.offer = lambda requested: 3  # a server that cannot replay what was asked
    session = SoupSession(server.config())
    session.connect(T0)
    delivered = pump(session, T0, lambda: session.last_sequence == 3)
    assert delivered == [(3, b"message 3")]
    assert session.anomalies["sequence_gap"] == 1
    session.logout()


def test_backoff_doubles_then_gives_up_after_max_reconnects():
    session = SoupSession(
        SessionConfig(port=closed_port(), username=USER, password=PASSWORD, reconnect_delay_s=1, max_reconnects=2)
    )
    session.connect(T0)
    pump(session, T0, lambda: session.state is SessionState.BACKOFF)
    session.poll(T0 + 0.999)
    assert session.reconnects == 0
    pump(session, T0 + 1, lambda: session.state is SessionState.BACKOFF and session.reconnects == 1)
    session.poll(T0 + 1 + 1.999)  # the second wait is twice the first
    assert session.reconnects == 1
    pump(session, T0 + 3, lambda: session.finished)
    assert session.state is SessionState.FAILED
    assert session.reconnects == 2
    assert session.anomalies["connect_failed"] == 3
    assert session.poll(T0 + 100) == []


def test_give_up_from_logged_in_when_no_reconnect_allowed(server):
    session = logged_in(server, max_reconnects=0)
    session.poll(T0 + 15)
    assert session.state is SessionState.FAILED
    assert "heartbeat_timeout" in session.last_error


def test_successful_login_resets_the_reconnect_budget(server):
    session = logged_in(server, max_reconnects=1, reconnect_delay_s=0)
    for round_ in range(3):
        server.drop()
        pump(session, T0, lambda: session.state is SessionState.BACKOFF)
        pump(session, T0, lambda: session.logged_in)
        assert session.reconnects == round_ + 1
    session.logout()


def test_login_timeout_loses_the_link(server):
    server.answer_login = False
    session = SoupSession(server.config(connect_timeout_s=2))
    session.connect(T0)
    pump(session, T0, lambda: session.state is SessionState.LOGIN_SENT)
    session.poll(T0 + 1.999)
    assert session.state is SessionState.LOGIN_SENT
    session.poll(T0 + 2)
    assert session.state is SessionState.BACKOFF
    assert session.anomalies["login_timeout"] == 1
    session.logout()


def test_connect_timeout_loses_the_link():
    server = SoupServer(backlog=0)
    server.reading.clear()
    try:
        with socket.create_connection(("127.0.0.1", server.port)):  # the only place in the accept queue...
            wait(lambda: server.connections == 1)
            with socket.create_connection(("127.0.0.1", server.port)):  # ...taken again once accepted
                session = SoupSession(server.config(connect_timeout_s=2))
                session.connect(T0)  # its SYN is dropped: the handshake stays in progress
                session.poll(T0 + 1.999)
                assert session.state is SessionState.CONNECTING
                session.poll(T0 + 2)
                assert session.state is SessionState.BACKOFF
                assert session.anomalies["connect_timeout"] == 1
                session.logout()
    finally:
        server.close()


# --- untrusted input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("garbage", "kind", "at"),
    [
        (b"\x00\x00", "malformed_length", 0),  # packet length 0
        (b"\x00\x05Qabcd", "malformed_type", 2),  # no such server packet type (at the type byte)
        (b"\x00\x05L" + b"x" * 4, "malformed_type", 2),  # a client packet type from the server
        (b"\x00\x03H\x00\x00", "malformed_length", 0),  # a Server Heartbeat is 1 byte long
    ],
)
def test_malformed_stream_is_counted_and_reconnects(server, garbage, kind, at, caplog):
    session = logged_in(server)
    server.publish(*messages(1))
    pump(session, T0, lambda: session.last_sequence == 1)
    server.send_raw(soup.encode_sequenced_data(b"message 2") + garbage + soup.encode_sequenced_data(b"never"))
    with caplog.at_level("WARNING", logger="wirebook.host.session"):
        first = pump(session, T0, lambda: session.state is SessionState.BACKOFF)
    assert session.anomalies[kind] == 1
    offset = len(soup.encode_login_accepted(SESSION, 1)) + 2 * len(soup.encode_sequenced_data(b"message 1")) + at
    assert f"stream offset {offset}" in caplog.text
    # "message 2" is delivered if it came in a read of its own; else it was lost with the stream and the
    # reconnect asks for it again. Either way: each message once, in order.
    server.publish(*messages(2, 3))  # what the server has really sequenced
    second = pump(session, T0 + 1, lambda: session.last_sequence == 3)
    assert first + second == [(2, b"message 2"), (3, b"message 3")]
    assert server.logins[-1].requested_sequence_number == 2 + len(first)
    session.logout()


def test_packet_the_state_does_not_allow_reconnects(server):
    session = logged_in(server)
    server.send_raw(soup.encode_login_accepted(SESSION, 1))  # a second Login Accepted
    pump(session, T0, lambda: session.state is SessionState.BACKOFF)
    assert session.anomalies["unexpected_packet"] == 1
    pump(session, T0 + 1, lambda: session.logged_in)
    session.logout()


def test_stream_cut_inside_a_packet_is_counted(server):
    session = logged_in(server)
    server.send_raw(soup.encode_sequenced_data(b"cut short")[:5])
    server.drop()
    pump(session, T0, lambda: session.state is SessionState.BACKOFF)
    assert session.anomalies["truncated_stream"] == 1
    assert session.anomalies["peer_closed"] == 1
    session.logout()
