"""SoupBinTCP 3.0 client session: the TCP link that carries the agent's OUCH messages.

`SoupSession` owns one non-blocking TCP socket and is driven by the caller's busy-poll loop: no threads, no
asyncio. Each `poll(now)` reads whatever arrived and returns the Sequenced Data payloads as
`(sequence_number, payload)` pairs in order, flushes any bytes the socket did not take earlier, sends a
Client Heartbeat when nothing was sent for `heartbeat_interval_s`, and declares the link lost when nothing was
received for `heartbeat_timeout_s`. `send(payload)` sends one Unsequenced Data packet; it refuses
(`SessionNotLoggedInError`) unless the session is logged in. Between `hold()` and `release()` the packets
sent are kept and then written with one system call (the agent holds while it answers one batch of market
data, so a two-sided requote leaves as one TCP segment instead of two). Time is the caller's `now` in seconds (any
monotonic origin), so tests drive the timers without waiting.

States and the events that move between them (`TRANSITIONS`; `_transition` is the only place `state`
changes):

    DISCONNECTED --connect--> CONNECTING --connected (Login Request sent)--> LOGIN_SENT
    LOGIN_SENT --accepted--> LOGGED_IN        LOGIN_SENT --rejected--> REJECTED (terminal, `reject_reason`)
    LOGGED_IN --end (End of Session)--> ENDED (terminal)
    CONNECTING / LOGIN_SENT / LOGGED_IN --lost--> BACKOFF --retry--> CONNECTING
    CONNECTING / LOGIN_SENT / LOGGED_IN --give_up (max_reconnects used)--> FAILED (terminal)
    any non-terminal state --logout--> LOGGED_OUT (terminal)

The link is lost on a heartbeat timeout, a connect or login timeout (`connect_timeout_s`), the peer closing,
a socket error, a malformed stream or a packet the server may not send in the current state. Each loss is
logged with what and where and counted in `anomalies` by kind; it never raises out of `poll`. After a loss
the session waits `reconnect_delay_s` (doubling per consecutive failure, capped at `reconnect_delay_max_s`)
and logs in again to the same session, requesting `next_sequence` (last sequence received + 1): nothing is
missed, and should the server replay from earlier the packets already delivered are dropped (counted as
"duplicate_dropped"), so nothing is delivered twice. A Login Rejected is terminal whatever its code: an
unauthorized login ('A') is not retried blindly, and a session not available ('S') will not become available
by retrying either.

Limitation: Unsequenced Data is not replayed by SoupBinTCP. Bytes still queued for the socket when the link
is lost are discarded (logged, counted as "unsent_discarded"); what the exchange did with the messages sent
just before a loss is learnt from the Sequenced Data replayed after the reconnect.
"""

from __future__ import annotations

import enum
import errno
import logging
import socket
from collections import Counter
from typing import Any

from pydantic import Field, field_validator, model_validator

from wirebook.proto import soupbintcp as soup
from wirebook.proto.errors import WireError

from .validated import ConfigModel

__all__ = [
    "TRANSITIONS",
    "SessionConfig",
    "SessionError",
    "SessionEvent",
    "SessionNotLoggedInError",
    "SessionState",
    "SessionStateError",
    "SoupSession",
]

_UNSEQUENCED_HEADER = soup.UNSEQUENCED_DATA.packer("packet_length")
"""Unsequenced Data's 3-byte header for a packet length (type byte plus payload): the hot path's encoder."""

log = logging.getLogger(__name__)


class SessionConfig(ConfigModel):
    """The `[session]` section: where the OUCH port is, the login, and the link timers."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(ge=1, le=65535)
    username: str = Field(max_length=6)
    password: str = Field(max_length=10)
    session: str = Field("", max_length=10, description="session to log into; blank: the current one")
    heartbeat_interval_s: float = Field(soup.HEARTBEAT_INTERVAL_S, gt=0)
    heartbeat_timeout_s: float = Field(soup.HEARTBEAT_TIMEOUT_S, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0, description="for the TCP connect and for the login answer")
    reconnect_delay_s: float = Field(1.0, ge=0, description="wait before the first reconnect; doubles after")
    reconnect_delay_max_s: float = Field(30.0, ge=0)
    max_reconnects: int = Field(10, ge=0, description="consecutive failed reconnects before giving up")
    max_packet_length: int = Field(
        soup.MAX_PACKET_LENGTH,
        ge=1,
        le=soup.MAX_PACKET_LENGTH,
        description="longer packets are a malformed stream; 1 + ouch.MAX_MESSAGE_LENGTH refuses long Debug too",
    )

    @field_validator("username", "password", "session")
    @classmethod
    def _printable_ascii(cls, value: str) -> str:
        # SoupBinTCP alpha fields are space-padded: a trailing space would not survive the round trip.
        if not (value.isascii() and value.isprintable()) or value != value.rstrip(" "):
            raise ValueError(f"expected printable ASCII without trailing spaces, got {value!r}")
        return value

    @model_validator(mode="after")
    def _timers_consistent(self) -> SessionConfig:
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError(
                f"heartbeat_timeout_s ({self.heartbeat_timeout_s}) must exceed heartbeat_interval_s "
                f"({self.heartbeat_interval_s})"
            )
        if self.reconnect_delay_max_s < self.reconnect_delay_s:
            raise ValueError(
                f"reconnect_delay_max_s ({self.reconnect_delay_max_s}) must be at least reconnect_delay_s "
                f"({self.reconnect_delay_s})"
            )
        return self


class SessionState(enum.Enum):
    DISCONNECTED = "disconnected"  # not started: connect() not called yet
    CONNECTING = "connecting"  # TCP connect in progress
    LOGIN_SENT = "login_sent"  # Login Request sent, waiting for Login Accepted / Rejected
    LOGGED_IN = "logged_in"
    BACKOFF = "backoff"  # link lost, waiting to reconnect
    REJECTED = "rejected"  # terminal: Login Rejected
    ENDED = "ended"  # terminal: End of Session
    LOGGED_OUT = "logged_out"  # terminal: logout()
    FAILED = "failed"  # terminal: max_reconnects consecutive reconnects failed


TERMINAL_STATES = frozenset({SessionState.REJECTED, SessionState.ENDED, SessionState.LOGGED_OUT, SessionState.FAILED})
LINK_STATES = frozenset({SessionState.CONNECTING, SessionState.LOGIN_SENT, SessionState.LOGGED_IN})
"""States that hold a socket."""


class SessionEvent(enum.Enum):
    CONNECT = "connect"
    CONNECTED = "connected"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    END = "end"
    LOST = "lost"
    GIVE_UP = "give_up"
    RETRY = "retry"
    LOGOUT = "logout"


_S, _E = SessionState, SessionEvent
TRANSITIONS: dict[tuple[SessionState, SessionEvent], SessionState] = {
    (_S.DISCONNECTED, _E.CONNECT): _S.CONNECTING,
    (_S.CONNECTING, _E.CONNECTED): _S.LOGIN_SENT,
    (_S.LOGIN_SENT, _E.ACCEPTED): _S.LOGGED_IN,
    (_S.LOGIN_SENT, _E.REJECTED): _S.REJECTED,
    (_S.LOGGED_IN, _E.END): _S.ENDED,
    # Sorted: a frozenset of enum members iterates in a per-process order, and the table's order is visible.
    **{(state, _E.LOST): _S.BACKOFF for state in sorted(LINK_STATES, key=lambda s: s.value)},
    **{(state, _E.GIVE_UP): _S.FAILED for state in sorted(LINK_STATES, key=lambda s: s.value)},
    (_S.BACKOFF, _E.RETRY): _S.CONNECTING,
    **{(state, _E.LOGOUT): _S.LOGGED_OUT for state in _S if state not in TERMINAL_STATES},
}
"""(state, event) -> next state: every transition the session makes; anything else is a SessionStateError."""


class SessionError(RuntimeError):
    """The session cannot do what was asked."""


class SessionStateError(SessionError):
    """An event the session's state does not allow (e.g. connect() twice)."""


class SessionNotLoggedInError(SessionError):
    """send() while the session is not logged in: the message was not sent."""


class SoupSession:
    """A SoupBinTCP 3.0 client session over one non-blocking TCP socket (see the module docstring).

    `next_sequence` is the sequence number of the next Sequenced Data packet wanted: 1 for the whole session,
    0 for only new ones, or the journal's last sequence + 1 to resume after a restart (pass the session name
    in `config.session` then, so the numbers refer to the same session).
    """

    def __init__(self, config: SessionConfig, *, next_sequence: int = 1, recv_size: int = 1 << 16) -> None:
        if next_sequence < 0:
            raise ValueError(f"next_sequence must be 0 (newest) or a sequence number >= 1, got {next_sequence}")
        self.config = config
        self.state = SessionState.DISCONNECTED
        self.session_id = config.session  # as requested, then as the server named it in Login Accepted
        self.next_sequence = next_sequence
        self.reject_reason = ""  # Login Rejected code: soup.REJECT_NOT_AUTHORIZED / REJECT_SESSION_NOT_AVAILABLE
        self.last_error = ""  # why the link was last lost
        self.anomalies: Counter[str] = Counter()
        self.debug_packets = 0
        self.reconnects = 0  # reconnect attempts over the session's life
        self._attempts = 0  # consecutive reconnect attempts since the last Login Accepted
        self._sock: socket.socket | None = None
        self._framer = soup.SoupBinTCPFramer(soup.Sender.SERVER, config.max_packet_length)
        self._out = bytearray()  # bytes the socket has not taken yet
        self._held: list[bytes] | None = None  # packets sent between hold() and release()
        self._recv = bytearray(recv_size)
        self._recv_view = memoryview(self._recv)
        self._requested_sequence = next_sequence
        self._duplicates_below = 0  # sequence numbers below this were delivered before a reconnect
        self._now = 0.0
        self._since = 0.0  # when the current state was entered
        self._last_sent = 0.0
        self._last_received = 0.0
        self._retry_at = 0.0

    # --- reading -------------------------------------------------------------------------------------------

    @property
    def logged_in(self) -> bool:
        return self.state is SessionState.LOGGED_IN

    @property
    def finished(self) -> bool:
        """In a terminal state: the session will not connect again."""
        return self.state in TERMINAL_STATES

    @property
    def last_sequence(self) -> int:
        """Sequence number of the last Sequenced Data packet delivered (0: none yet)."""
        return max(self.next_sequence - 1, 0)

    @property
    def pending_bytes(self) -> int:
        """Bytes sent but not yet taken by the socket (flushed by poll())."""
        return len(self._out)

    @property
    def where(self) -> str:
        return f"SoupBinTCP session {self.session_id or '(current)'} at {self.config.host}:{self.config.port}"

    # --- driving -------------------------------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Start: open the TCP connection; poll() completes it and logs in. Only from DISCONNECTED."""
        self._now = now
        self._open(now, SessionEvent.CONNECT)

    def poll(self, now: float) -> list[tuple[int, bytes]]:
        """Advance the session to `now` (seconds); return the Sequenced Data received, as (sequence, payload).

        Never raises for anything the network or the server does: those are logged, counted in `anomalies`
        and handled (reconnect, or a terminal state).
        """
        self._now = now
        delivered: list[tuple[int, bytes]] = []
        state = self.state
        if state is SessionState.LOGGED_IN:
            self._receive(now, delivered)
            if self.state is SessionState.LOGGED_IN and self._out:
                self._flush(now)
            if self.state is SessionState.LOGGED_IN:
                if now - self._last_received >= self.config.heartbeat_timeout_s:
                    silent = now - self._last_received
                    self._lose(now, "heartbeat_timeout", f"nothing received for {silent:.3f} s")
                elif now - self._last_sent >= self.config.heartbeat_interval_s and not self._out:
                    self._write(soup.CLIENT_HEARTBEAT_PACKET, now)
        elif state is SessionState.LOGIN_SENT:
            if self._out:
                self._flush(now)
            if self.state is SessionState.LOGIN_SENT:
                self._receive(now, delivered)
            if self.state is SessionState.LOGIN_SENT and now - self._since >= self.config.connect_timeout_s:
                self._lose(
                    now, "login_timeout", f"no Login Accepted / Rejected within {self.config.connect_timeout_s} s"
                )
        elif state is SessionState.CONNECTING:
            self._check_connected(now)
        elif state is SessionState.BACKOFF and now >= self._retry_at:
            self._attempts += 1
            self.reconnects += 1
            self._open(now, SessionEvent.RETRY)
        return delivered

    def send(self, payload: bytes) -> None:
        """Send `payload` (one OUCH inbound message) as one Unsequenced Data packet.

        Raises SessionNotLoggedInError, sending nothing, unless logged in. Bytes the socket does not take at
        once are queued and flushed by poll(). A socket error here is a lost link, handled as in poll().
        """
        if self.state is not SessionState.LOGGED_IN:
            raise SessionNotLoggedInError(
                f"{self.where}: cannot send {len(payload)}-byte message in state {self.state.value}, expected logged_in"
            )
        packet = _UNSEQUENCED_HEADER(len(payload) + 1) + payload
        held = self._held
        if held is not None:
            held.append(packet)
        else:
            self._write(packet, self._now)

    def hold(self) -> None:
        """Keep what send() is given until release(): the packets then go to the socket in one write."""
        if self._held is None:
            self._held = []

    def release(self) -> int:
        """Write the packets held since hold() (one system call) and stop holding; returns how many were held.

        If the link was lost while holding, the held packets are discarded with it (see `_lose`)."""
        held = self._held
        self._held = None
        if not held:
            return 0
        if self.state is SessionState.LOGGED_IN:
            self._write(held[0] if len(held) == 1 else b"".join(held), self._now)
        return len(held)

    def logout(self) -> None:
        """Send a Logout Request (when logged in) and close: LOGGED_OUT. Nothing in a terminal state."""
        if self.state in TERMINAL_STATES:
            return
        sock = self._sock
        if self.state is SessionState.LOGGED_IN and sock is not None:
            try:
                # Shutdown, not the hot path: let the last bytes and the Logout Request go out in full.
                sock.settimeout(self.config.connect_timeout_s)
                sock.sendall(bytes(self._out) + b"".join(self._held or ()) + soup.LOGOUT_REQUEST_PACKET)
                self._out.clear()
                self._held = None
                sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                log.warning("%s: Logout Request not sent: %s", self.where, e)
        self._close_socket()
        self._transition(SessionEvent.LOGOUT, self._now)

    # --- the state machine ---------------------------------------------------------------------------------

    def _transition(self, event: SessionEvent, now: float) -> None:
        """The only place `state` changes."""
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            allowed = sorted(state.value for state, ev in TRANSITIONS if ev is event)
            raise SessionStateError(
                f"{self.where}: event {event.value} in state {self.state.value}, expected a state in {allowed}"
            )
        log.info("%s: %s -> %s (%s)", self.where, self.state.value, new.value, event.value)
        self.state = new
        self._since = now

    def _open(self, now: float, event: SessionEvent) -> None:
        self._transition(event, now)
        self._framer = soup.SoupBinTCPFramer(soup.Sender.SERVER, self.config.max_packet_length)
        self._out.clear()
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:
            self._lose(now, "connect_failed", f"socket(): {e}")
            return
        self._sock = sock
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex((self.config.host, self.config.port))
        except OSError as e:
            self._lose(now, "connect_failed", f"connect: {e}")
            return
        if err == 0:
            self._connected(now)
        elif err not in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            self._lose(now, "connect_failed", f"connect: {errno.errorcode.get(err, err)}")

    def _check_connected(self, now: float) -> None:
        sock = self._sock
        assert sock is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._lose(now, "connect_failed", f"connect: {errno.errorcode.get(err, err)}")
            return
        try:
            sock.getpeername()
        except OSError:  # ENOTCONN: the handshake is still in progress
            if now - self._since >= self.config.connect_timeout_s:
                self._lose(now, "connect_timeout", f"TCP connect not done within {self.config.connect_timeout_s} s")
            return
        self._connected(now)

    def _connected(self, now: float) -> None:
        self._transition(SessionEvent.CONNECTED, now)
        self._last_received = now
        self._requested_sequence = self.next_sequence
        login = soup.encode_login_request(
            self.config.username, self.config.password, self.session_id, self._requested_sequence
        )
        self._write(login, now)

    def _lose(self, now: float, kind: str, detail: str) -> None:
        """The link is gone: log, count, close, and reconnect later (or give up)."""
        self.anomalies[kind] += 1
        self.last_error = f"{kind}: {detail}"
        if self._out:
            self.anomalies["unsent_discarded"] += 1
            log.error("%s: %d bytes queued for the socket discarded with the link", self.where, len(self._out))
            self._out.clear()
        if self._held:
            self.anomalies["unsent_discarded"] += 1
            log.error("%s: %d packets held for the socket discarded with the link", self.where, len(self._held))
            self._held.clear()
        self._close_socket()
        if self._attempts >= self.config.max_reconnects:
            log.error(
                "%s: link lost in state %s (%s); giving up after %d consecutive reconnects (max_reconnects)",
                self.where,
                self.state.value,
                self.last_error,
                self._attempts,
            )
            self._transition(SessionEvent.GIVE_UP, now)
            return
        delay = min(self.config.reconnect_delay_s * 2**self._attempts, self.config.reconnect_delay_max_s)
        self._retry_at = now + delay
        log.warning(
            "%s: link lost in state %s (%s); reconnecting in %.3f s requesting sequence %d",
            self.where,
            self.state.value,
            self.last_error,
            delay,
            self.next_sequence,
        )
        self._transition(SessionEvent.LOST, now)

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            # Unread bytes at close() make the kernel send a reset, which may destroy what we just sent.
            sock.setblocking(False)
            for _ in range(64):
                if not sock.recv_into(self._recv):
                    break
        except OSError:
            pass
        sock.close()

    # --- bytes in ------------------------------------------------------------------------------------------

    def _receive(self, now: float, delivered: list[tuple[int, bytes]]) -> None:
        sock = self._sock
        assert sock is not None
        size = len(self._recv)
        while True:
            try:
                n = sock.recv_into(self._recv)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._lose(now, "socket_error", f"recv: {e}")
                return
            if n == 0:
                try:
                    self._framer.finish()
                except WireError as e:
                    self.anomalies["truncated_stream"] += 1
                    log.warning("%s: stream ended inside a packet: %s", self.where, e)
                self._lose(now, "peer_closed", f"the server closed the connection in state {self.state.value}")
                return
            self._last_received = now
            try:
                packets = self._framer.feed(self._recv_view[:n])
            except WireError as e:
                self._malformed(now, e)
                return
            for packet in packets:
                self._on_packet(packet, now, delivered)
                if self.state not in LINK_STATES:
                    return
            if n < size:  # the socket is drained; spare the EAGAIN system call
                return

    def _on_packet(self, packet: soup.Packet, now: float, delivered: list[tuple[int, bytes]]) -> None:
        kind = packet.packet_type
        state = self.state
        if kind == "S" and state is SessionState.LOGGED_IN:
            sequence = self.next_sequence
            self.next_sequence = sequence + 1
            if sequence < self._duplicates_below:
                self.anomalies["duplicate_dropped"] += 1
                return
            delivered.append((sequence, packet.payload))
        elif kind == "H":
            pass
        elif kind == "+":
            self.debug_packets += 1
        elif kind == "A" and state is SessionState.LOGIN_SENT:
            self._login_accepted(packet.fields, now)
        elif kind == "J" and state is SessionState.LOGIN_SENT:
            self._login_rejected(packet.fields.reject_reason_code, now)
        elif kind == "Z" and state is SessionState.LOGGED_IN:
            log.info("%s: End of Session after sequence %d", self.where, self.last_sequence)
            self._close_socket()
            self._transition(SessionEvent.END, now)
        else:
            self._lose(
                now,
                "unexpected_packet",
                f"packet type {kind!r} at stream offset {packet.offset} in state {state.value}",
            )

    def _login_accepted(self, fields: Any, now: float) -> None:
        requested, offered = self._requested_sequence, fields.sequence_number
        if self.session_id and fields.session != self.session_id:
            self.anomalies["session_changed"] += 1
            log.error("%s: Login Accepted names session %r, requested %r", self.where, fields.session, self.session_id)
        self._duplicates_below = 0
        if requested and offered > requested:
            self.anomalies["sequence_gap"] += 1
            log.error(
                "%s: Login Accepted starts at sequence %d, requested %d: %d messages will not be replayed",
                self.where,
                offered,
                requested,
                offered - requested,
            )
        elif requested and offered < requested:
            self._duplicates_below = requested  # the server replays what was delivered already: drop it
        self.session_id = fields.session
        self.next_sequence = offered
        self._attempts = 0
        self._transition(SessionEvent.ACCEPTED, now)

    def _login_rejected(self, code: str, now: float) -> None:
        self.reject_reason = code
        reason = soup.LOGIN_REJECT_REASONS.get(code, "undocumented reject reason code")
        self.last_error = f"login rejected {code!r}: {reason}"
        log.error(
            "%s: Login Rejected %r (%s) for user %r; not retrying", self.where, code, reason, self.config.username
        )
        self._close_socket()
        self._transition(SessionEvent.REJECTED, now)

    def _malformed(self, now: float, error: WireError) -> None:
        # The framer cannot resynchronise a byte stream: the only way back is a new connection. Its errors
        # carry no kind, so the kind is read from what it expected: a packet length, or a packet type.
        expected = error.expected
        if "length" in expected:
            kind = "malformed_length"
        elif "type" in expected:
            kind = "malformed_type"
        else:
            kind = "malformed_stream"
        self._lose(now, kind, f"malformed stream: {error} (stream offset {error.offset})")

    # --- bytes out -----------------------------------------------------------------------------------------

    def _write(self, data: bytes, now: float) -> None:
        """Send `data` after anything queued; what the socket does not take now is queued for poll()."""
        self._last_sent = now
        if self._out:
            self._out += data
            return
        sock = self._sock
        assert sock is not None
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            self._lose(now, "socket_error", f"send: {e}")
            return
        if n < len(data):
            self._out += data[n:]

    def _flush(self, now: float) -> None:
        sock = self._sock
        assert sock is not None
        try:
            n = sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lose(now, "socket_error", f"send: {e}")
            return
        del self._out[:n]
