"""The exchange simulator the host agent trades against: OUCH 4.2 over SoupBinTCP 3.0, and the market feed.

`ExchangeSimulator(config)` serves, from one background thread (a selectors loop; `start()` / `stop()` or a
`with` block):

Order entry. A SoupBinTCP 3.0 server on `config.host`:`config.ouch_port` (0: an ephemeral port, read it
from `ouch_port` after `start()`), any number of client connections.
  - Accounts: `config.accounts` maps SoupBinTCP username -> password (compared exactly, after the padding is
    dropped). A wrong pair -> Login Rejected 'A'; a requested session that is neither blank nor
    `config.session` -> Login Rejected 'S'; the connection is closed after either.
  - Each account has one sequenced stream: every outbound OUCH message to it (the first is System Event 'S',
    start of day, made at `start()`) is a Sequenced Data packet kept for the whole run. Login Accepted gives
    the next sequence number: the requested one (capped at the next new message), or the next new message
    when 0 was requested; everything from it on is sent at once (resume), then new messages as they come. A
    login to an account that already has a connection takes the account over (the old connection is closed).
  - Inbound: Unsequenced Data carries one OUCH inbound message, handled by the matching engine
    (wirebook.sim.matching: its docstring states every rule). Client Heartbeats and Debug packets only
    count as traffic. Logout Request closes the connection.
  - Timers: a Server Heartbeat after `heartbeat_interval_s` without sending to a logged-in client; a client
    from which nothing arrived for `client_timeout_s` (logged in or not) is dropped.
  - Untrusted input: malformed SoupBinTCP (the framer refuses a packet length above 1 + the longest OUCH
    message), an undecodable OUCH message, Unsequenced Data before login or a second Login Request is
    logged (logger "wirebook.exchange": the peer, what was wrong, the stream offset) and that connection
    is closed; the simulator goes on serving everyone else.
  - `stop()`: System Event 'E' (end of day) to every account, then End of Session to every logged-in
    client, and the connections are closed.

Market data. The replayed market (an ITCH file, a list of messages, or wirebook.sim.market.generate) goes
out as MoldUDP64 (session `feed_session`, first sequence 1) in UDP datagrams to `feed_address` (unicast or
multicast; multicast TTL `feed_ttl`, outgoing interface `feed_interface`). A packet holds at most
`messages_per_packet` messages and `max_payload` bytes. Pace (`rate`):
  - "max": as fast as the loop can (between packets it still serves the clients);
  - a number N: N messages per second (a packet holds what is due within a millisecond);
  - "realtime" or "realtime:K": the ITCH timestamps, K times faster (a packet spans at most 1 ms of feed time);
  - "step": nothing is published until `advance(n)` publishes the next n messages (tests, scripted runs).
A heartbeat (count 0, next sequence) goes out when nothing was sent for `feed_heartbeat_s`; when the market
is exhausted (and at `stop()` if it is not), End of Session (count 0xFFFF, next sequence).
Consistency: right after a data packet is published, the same messages are applied to the matching engine,
in the same loop iteration, before any client message is read; so an order always meets the book as of the
last published packet. A packet dropped by the gap fault is still applied (the exchange's market moved; only
the receiver missed it).

Faults (`ExchangeFaults`, deterministic for a given `seed`):
  - `disconnect_after_messages` N: the connection that delivers the Nth inbound OUCH message of the run is
    closed right after that message was handled, without sending its answers (they are in the account's
    stream: the client must log in again and resume). Fires once. `disconnect_after_s` S: the first
    connection to have been logged in for S seconds is closed. Fires once.
  - `delay_ms` D: each inbound OUCH message is handled D ms after it arrived (so its answers are that late).
  - `reject_every` N and/or `reject_probability` p: the Nth, 2Nth, ... Enter Order of the run (duplicate
    tokens excepted), and/or each with probability p, is Rejected with `reject_reason` ('O' other or 'H'
    halted).
  - `feed_drop_packets` (data packet numbers, from 0 in sending order) and `feed_drop_probability`: those
    data packets are not sent: the receiver sees a gap in the MoldUDP64 sequence numbers.

`run_exchange(argv)` is the command line (`wirebook exchange ...`): it prints one line saying where it
listens and serves until the market is exhausted plus `--linger` seconds, `--duration`, or Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import enum
import logging
import queue
import random
import selectors
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..proto import itch, itch_file, moldudp64, ouch, soupbintcp
from ..proto.errors import WireError
from ..proto.soupbintcp import Packet, Sender, SoupBinTCPFramer
from .feed import DEFAULT_SESSION
from .matching import MatchingEngine, Outbound

__all__ = [
    "ExchangeConfig",
    "ExchangeFaults",
    "ExchangeSimulator",
    "Pace",
    "build_parser",
    "config_from_args",
    "parse_rate",
    "run_exchange",
]

log = logging.getLogger("wirebook.exchange")

DEFAULT_USERNAME = "WB"
DEFAULT_PASSWORD = "wirebook"
DEFAULT_OUCH_PORT = 15000
PACKET_SPAN_NS = 1_000_000
"""A realtime-paced packet holds messages within this much feed time of its first (and a rate-paced packet
what is due within this much wall time)."""
_MAX_PACKETS_PER_TURN = 32  # "max" pace: packets published before the loop looks at the sockets again
_LOOP_TICK_S = 0.05  # longest sleep of the loop: the resolution of heartbeat and timeout timers
_OUCH_FRAME_LIMIT = 1 + ouch.MAX_MESSAGE_LENGTH


# --- configuration -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pace:
    """How fast the feed goes: kind "max", "rate" (value: messages/s), "realtime" (value: speed-up), "step"."""

    kind: str
    value: float = 0.0


def parse_rate(text: str) -> Pace:
    """'max', 'step', 'realtime', 'realtime:K' (K times faster than the ITCH clock) or N (messages/s)."""
    text = text.strip().lower()
    if text in ("max", "step"):
        return Pace(text)
    if text == "realtime":
        return Pace("realtime", 1.0)
    try:
        if text.startswith("realtime:"):
            speed = float(text.split(":", 1)[1])
            if speed > 0:
                return Pace("realtime", speed)
        else:
            rate = float(text)
            if rate > 0:
                return Pace("rate", rate)
    except ValueError:
        pass
    raise ValueError(f"rate: expected 'max', 'step', 'realtime', 'realtime:K' or messages/s > 0, got {text!r}")


@dataclass(frozen=True)
class ExchangeFaults:
    """Faults to inject (see the module docstring); the default injects none."""

    disconnect_after_messages: int | None = None
    disconnect_after_s: float | None = None
    delay_ms: float = 0.0
    reject_every: int | None = None
    reject_probability: float = 0.0
    reject_reason: str = "O"
    feed_drop_packets: frozenset[int] = frozenset()
    feed_drop_probability: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "feed_drop_packets", frozenset(self.feed_drop_packets))
        if self.disconnect_after_messages is not None and self.disconnect_after_messages < 1:
            raise ValueError(f"faults.disconnect_after_messages must be >= 1, got {self.disconnect_after_messages}")
        if self.disconnect_after_s is not None and self.disconnect_after_s < 0:
            raise ValueError(f"faults.disconnect_after_s must be >= 0, got {self.disconnect_after_s}")
        if self.delay_ms < 0:
            raise ValueError(f"faults.delay_ms must be >= 0, got {self.delay_ms}")
        if self.reject_every is not None and self.reject_every < 1:
            raise ValueError(f"faults.reject_every must be >= 1, got {self.reject_every}")
        for name in ("reject_probability", "feed_drop_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"faults.{name} must be in 0..1, got {getattr(self, name)}")
        if self.reject_reason not in ("O", "H"):
            raise ValueError(f"faults.reject_reason must be 'O' (other) or 'H' (halted), got {self.reject_reason!r}")
        if any(n < 0 for n in self.feed_drop_packets):
            raise ValueError(
                f"faults.feed_drop_packets are data packet numbers >= 0, got {sorted(self.feed_drop_packets)}"
            )


@dataclass(frozen=True)
class ExchangeConfig:
    """Everything the simulator needs; validated on construction (a bad value names its field).

    The market is `itch_messages` (ITCH 5.0 messages without length prefix) if given, else the ITCH file
    `itch_path` if given, else `market.generate(symbols, messages, seed)`. `feed_address` None sends no feed
    (the market is still replayed into the matching engine at the configured pace).
    """

    host: str = "127.0.0.1"
    ouch_port: int = DEFAULT_OUCH_PORT
    accounts: Mapping[str, str] = field(default_factory=lambda: {DEFAULT_USERNAME: DEFAULT_PASSWORD})
    session: str = DEFAULT_SESSION
    feed_address: tuple[str, int] | None = None
    feed_session: str = DEFAULT_SESSION
    feed_ttl: int = 1
    feed_interface: str | None = None
    itch_messages: Sequence[bytes] | None = None
    itch_path: str | None = None
    symbols: int = 8
    messages: int = 20_000
    seed: int = 1
    rate: str = "max"
    messages_per_packet: int = 64
    max_payload: int = 1400
    heartbeat_interval_s: float = soupbintcp.HEARTBEAT_INTERVAL_S
    client_timeout_s: float = soupbintcp.HEARTBEAT_TIMEOUT_S
    feed_heartbeat_s: float = 1.0
    faults: ExchangeFaults = field(default_factory=ExchangeFaults)

    def __post_init__(self) -> None:
        if not 0 <= self.ouch_port <= 0xFFFF:
            raise ValueError(f"ouch_port must be in 0..65535, got {self.ouch_port}")
        if not self.accounts:
            raise ValueError("accounts: at least one username -> password is needed")
        for username, password in self.accounts.items():
            if not username or len(username) > 6 or not username.isascii() or " " in username:
                raise ValueError(f"accounts: username {username!r} must be 1-6 ASCII characters without spaces")
            if len(password) > 10 or not password.isascii():
                raise ValueError(f"accounts: password of {username!r} must be at most 10 ASCII characters")
        for name in ("session", "feed_session"):
            value = getattr(self, name)
            if len(value) > 10 or not value.isascii():
                raise ValueError(f"{name} must be at most 10 ASCII characters, got {value!r}")
        if self.feed_address is not None:
            host, port = self.feed_address
            if not host or not 0 < port <= 0xFFFF:
                raise ValueError(f"feed_address must be (host, port 1..65535), got {self.feed_address!r}")
        if not 0 <= self.feed_ttl <= 255:
            raise ValueError(f"feed_ttl must be in 0..255, got {self.feed_ttl}")
        parse_rate(self.rate)
        if not 1 <= self.messages_per_packet <= moldudp64.MAX_MESSAGES_PER_PACKET:
            raise ValueError(f"messages_per_packet must be in 1..{moldudp64.MAX_MESSAGES_PER_PACKET}")
        smallest = moldudp64.HEADER_LENGTH + 2 + itch.MAX_LENGTH
        if not smallest <= self.max_payload <= 65507:
            raise ValueError(
                f"max_payload must be in {smallest}..65507 (one message of any type fits), got {self.max_payload}"
            )
        for name in ("heartbeat_interval_s", "client_timeout_s", "feed_heartbeat_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.itch_messages is None and self.itch_path is None and (self.symbols < 1 or self.messages < 0):
            raise ValueError(
                f"generated market needs symbols >= 1 and messages >= 0, got {self.symbols}, {self.messages}"
            )

    def market(self) -> Iterator[bytes]:
        """The market's ITCH messages, in feed order."""
        if self.itch_messages is not None:
            return iter(self.itch_messages)
        if self.itch_path is not None:
            return _file_messages(self.itch_path)
        from .market import generate

        return generate(self.symbols, self.messages, self.seed)

    def describe_market(self) -> str:
        if self.itch_messages is not None:
            return f"{len(self.itch_messages)} given ITCH messages"
        if self.itch_path is not None:
            return f"ITCH file {self.itch_path}"
        return f"generated market ({self.symbols} symbols, {self.messages} messages, seed {self.seed})"


def _file_messages(path: str) -> Iterator[bytes]:
    from ..model.replay import detect_framing

    tolerant = detect_framing(path) == "tolerant"
    for chunk in itch_file.iter_chunks(path, tolerant=tolerant, chunk_size=1 << 20):
        for i in range(len(chunk)):
            yield chunk.message(i)


# --- connections and accounts ------------------------------------------------------------------------


class _State(enum.Enum):
    AWAIT_LOGIN = "awaiting login"
    LOGGED_IN = "logged in"
    CLOSED = "closed"


class _Account:
    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self.stream: list[bytes] = []  # Sequenced Data packets; stream[i] has sequence number i + 1
        self.connection: _Connection | None = None


class _Connection:
    def __init__(self, sock: socket.socket, peer: str, now: float) -> None:
        self.sock = sock
        self.peer = peer
        self.framer = SoupBinTCPFramer(Sender.CLIENT, max_packet_length=_OUCH_FRAME_LIMIT)
        self.state = _State.AWAIT_LOGIN
        self.account: _Account | None = None
        self.out = bytearray()
        self.last_sent = now
        self.last_received = now
        self.logged_in_at = 0.0
        self.mute = False  # a disconnect fault fired: nothing more is sent
        self.events = selectors.EVENT_READ

    def __repr__(self) -> str:
        who = self.account.username if self.account else "-"
        return f"OUCH client {self.peer} (account {who}, {self.state.value})"


# --- the feed ----------------------------------------------------------------------------------------


class _Feed:
    """Packetises, paces, sends (or drops) the market, and applies every packet to the matching engine."""

    def __init__(self, config: ExchangeConfig, sock: socket.socket | None, rng: random.Random) -> None:
        self.config = config
        self.pace = parse_rate(config.rate)
        self.sock = sock
        self.rng = rng
        self.messages = config.market()
        self.pending: bytes | None = next(self.messages, None)
        self.next_sequence = 1
        self.data_packets = 0  # numbered from 0, dropped ones included
        self.dropped: list[int] = []
        self.heartbeats = 0
        self.ended = False
        self.started_at = 0.0
        self.first_timestamp: int | None = None
        self.last_send = 0.0
        self.send_errno: int | None = None
        self.end_event = threading.Event()

    def start(self, now: float) -> None:
        self.started_at = self.last_send = now

    def due(self) -> float | None:
        """Monotonic time the next packet is due, or None when the pace does not schedule it."""
        if self.ended or self.pending is None or self.pace.kind == "step":
            return None
        if self.pace.kind == "max":
            return self.started_at
        if self.pace.kind == "rate":
            return self.started_at + (self.next_sequence - 1) / self.pace.value
        timestamp = _timestamp(self.pending)
        if self.first_timestamp is None:
            self.first_timestamp = timestamp
        return self.started_at + max(0, timestamp - self.first_timestamp) / 1e9 / self.pace.value

    def take_packet(self, limit: int | None = None) -> list[bytes]:
        """The next packet's messages (at most `limit`), empty when the market is exhausted."""
        batch: list[bytes] = []
        size = moldudp64.HEADER_LENGTH
        count = self.config.messages_per_packet if limit is None else min(limit, self.config.messages_per_packet)
        if self.pace.kind == "rate":
            count = min(count, max(1, int(self.pace.value * PACKET_SPAN_NS / 1e9)))
        first_timestamp = None
        while self.pending is not None and len(batch) < count:
            message = self.pending
            if batch and size + 2 + len(message) > self.config.max_payload:
                break
            if self.pace.kind == "realtime":
                timestamp = _timestamp(message)
                if first_timestamp is None:
                    first_timestamp = timestamp
                elif timestamp - first_timestamp > PACKET_SPAN_NS * self.pace.value:
                    break
            batch.append(message)
            size += 2 + len(message)
            self.pending = next(self.messages, None)
        return batch

    def send_packet(self, batch: list[bytes], now: float) -> None:
        number = self.data_packets
        self.data_packets += 1
        faults = self.config.faults
        drop = number in faults.feed_drop_packets
        if faults.feed_drop_probability and self.rng.random() < faults.feed_drop_probability:
            drop = True
        if drop:
            self.dropped.append(number)
        else:
            self._send(moldudp64.encode_packet(self.config.feed_session, self.next_sequence, batch), now)
        self.next_sequence += len(batch)

    def heartbeat(self, now: float) -> None:
        if not self.ended and now - self.last_send >= self.config.feed_heartbeat_s:
            self.heartbeats += 1
            self._send(moldudp64.encode_heartbeat(self.config.feed_session, self.next_sequence), now)

    def end(self, now: float) -> None:
        if not self.ended:
            self.ended = True
            self._send(moldudp64.encode_end_of_session(self.config.feed_session, self.next_sequence), now)
            self.end_event.set()

    def _send(self, datagram: bytes, now: float) -> None:
        self.last_send = now
        if self.sock is None or self.config.feed_address is None:
            return
        try:
            self.sock.sendto(datagram, self.config.feed_address)
        except OSError as e:  # a full buffer or an unreachable port: UDP loses it, the feed goes on
            if e.errno != self.send_errno:  # once per kind of failure, not once per packet
                log.warning("feed: sending %d bytes to %s failed: %s", len(datagram), self.config.feed_address, e)
            self.send_errno = e.errno
        else:
            self.send_errno = None


def _timestamp(message: bytes) -> int:
    return int.from_bytes(message[5:11], "big")


# --- the simulator -----------------------------------------------------------------------------------


class ExchangeSimulator:
    """The exchange: order entry and market data over loopback or a LAN; see the module docstring.

    After `start()`: `ouch_port` (the bound port, also when 0 was configured), `feed_source_port`,
    `engine` (the MatchingEngine; only touch it while the simulator is stopped, or for read-only peeks in
    tests), `published` (market messages applied so far = the feed's next sequence - 1).
    """

    def __init__(self, config: ExchangeConfig | None = None, **options: Any) -> None:
        if config is None:
            config = ExchangeConfig(**options)
        elif options:
            raise TypeError("give either an ExchangeConfig or keyword options, not both")
        self.config = config
        self.engine = MatchingEngine()
        self.ouch_port = 0
        self.feed_source_port = 0
        self._accounts = {u: _Account(u, p) for u, p in config.accounts.items()}
        self._connections: dict[socket.socket, _Connection] = {}
        self._rng = random.Random(config.faults.seed)
        self._feed_rng = random.Random(config.faults.seed + 1)
        self._delayed: collections.deque[tuple[float, str, Any]] = collections.deque()
        self._inbound_messages = 0
        self._enter_orders = 0
        self._disconnect_fired = False
        self._timed_disconnect_fired = False
        self._commands: queue.Queue[tuple[str, Any, threading.Event | None, list]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._feed: _Feed | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._running = False

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> ExchangeSimulator:
        """Bind the sockets and start serving in a background thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("the exchange simulator was already started")
        cfg = self.config
        listener = socket.create_server((cfg.host, cfg.ouch_port), reuse_port=False)
        listener.setblocking(False)
        self._listener = listener
        self.ouch_port = listener.getsockname()[1]
        feed_sock = None
        if cfg.feed_address is not None:
            feed_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            if _is_multicast(cfg.feed_address[0]):
                feed_sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, cfg.feed_ttl)
                feed_sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                if cfg.feed_interface:
                    feed_sock.setsockopt(
                        socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(cfg.feed_interface)
                    )
                feed_sock.bind((cfg.feed_interface or "0.0.0.0", 0))
            else:
                feed_sock.bind((cfg.host if _is_loopback(cfg.feed_address[0]) else "0.0.0.0", 0))
            self.feed_source_port = feed_sock.getsockname()[1]
        self._feed = _Feed(cfg, feed_sock, self._feed_rng)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, "listener")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        start_of_day = ouch.encode_outbound("S", timestamp=0, event_code="S")
        self._deliver([Outbound(username, start_of_day) for username in self._accounts])
        self._running = True
        self._thread = threading.Thread(target=self._run, name="wirebook-exchange", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End of day: End of Session to every client, End of Session on the feed, sockets closed."""
        if self._thread is None:
            return
        if self._thread.is_alive():
            self._command("stop", None, wait=False)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the exchange simulator thread did not stop within {timeout} s")
        self._thread = None

    def __enter__(self) -> ExchangeSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control from other threads ---------------------------------------------------------------

    def advance(self, messages: int, timeout: float = 10.0) -> int:
        """Step pace: publish (and apply) the next `messages` market messages; returns how many there were."""
        if messages < 0:
            raise ValueError(f"advance: messages must be >= 0, got {messages}")
        return self._command("advance", messages, wait=True, timeout=timeout)

    def logged_in(self, username: str) -> bool:
        """Whether `username` has a logged-in connection now."""
        connection = self._accounts[username].connection
        return connection is not None and connection.state is _State.LOGGED_IN

    def sequenced_messages(self, username: str) -> list[bytes]:
        """The OUCH messages sent so far on `username`'s sequenced stream (message i has sequence i + 1): what
        the exchange said, for tests and audits. Safe to call while serving (a snapshot of the list)."""
        header = soupbintcp.HEADER_LENGTH
        return [packet[header:] for packet in list(self._accounts[username].stream)]

    def wait_feed_end(self, timeout: float = 10.0) -> bool:
        """Block until the market is exhausted (its End of Session sent); False on timeout."""
        if self._feed is None:
            raise RuntimeError("the exchange simulator is not started")
        return self._feed.end_event.wait(timeout)

    @property
    def published(self) -> int:
        return self.engine.sequence

    @property
    def feed_stats(self) -> dict[str, Any]:
        """Data packets (dropped included), dropped packet numbers, heartbeats, next sequence, ended."""
        f = self._feed
        if f is None:
            return {}
        return {
            "data_packets": f.data_packets,
            "dropped": list(f.dropped),
            "heartbeats": f.heartbeats,
            "next_sequence": f.next_sequence,
            "ended": f.ended,
        }

    def _command(self, name: str, argument: Any, *, wait: bool, timeout: float = 10.0) -> Any:
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError(f"exchange simulator: {name} needs a running simulator (call start() first)")
        done = threading.Event() if wait else None
        result: list[Any] = []
        self._commands.put((name, argument, done, result))
        assert self._wake_w is not None
        with contextlib.suppress(OSError):
            self._wake_w.send(b"!")
        if done is None:
            return None
        if not done.wait(timeout):
            raise TimeoutError(f"exchange simulator: {name}({argument}) not done within {timeout} s")
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    # --- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._selector is not None and self._feed is not None
        feed = self._feed
        feed.start(time.monotonic())
        try:
            while self._running:
                now = time.monotonic()
                timeout = _LOOP_TICK_S
                due = feed.due()
                if due is not None:
                    timeout = min(timeout, due - now)
                if self._delayed:
                    timeout = min(timeout, self._delayed[0][0] - now)
                for key, mask in self._selector.select(max(0.0, timeout)):
                    self._on_event(key, mask)
                self._run_commands()
                now = time.monotonic()
                self._publish_due(now)
                self._handle_delayed(now)
                self._timers(now)
        except Exception:
            log.exception("exchange simulator loop failed; shutting down")
        finally:
            self._shutdown()

    def _on_event(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.data == "listener":
            self._accept()
        elif key.data == "wake":
            try:
                while self._wake_r is not None and self._wake_r.recv(4096):
                    pass
            except BlockingIOError:
                pass
        else:
            conn: _Connection = key.data
            if mask & selectors.EVENT_WRITE:
                self._flush(conn)
            if mask & selectors.EVENT_READ and conn.state is not _State.CLOSED:
                self._read(conn)

    def _run_commands(self) -> None:
        while True:
            try:
                name, argument, done, result = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                if name == "stop":
                    self._running = False
                    result.append(None)
                elif name == "advance":
                    result.append(self._advance(argument))
            except Exception as e:  # reported to the caller of advance()
                result.append(e)
            if done is not None:
                done.set()

    def _advance(self, messages: int) -> int:
        feed = self._feed
        assert feed is not None
        published = 0
        while published < messages:
            batch = feed.take_packet(messages - published)
            if not batch:
                break
            self._publish(batch, time.monotonic())
            published += len(batch)
        if feed.pending is None:
            feed.end(time.monotonic())
        return published

    def _publish_due(self, now: float) -> None:
        feed = self._feed
        assert feed is not None
        for _ in range(_MAX_PACKETS_PER_TURN):
            due = feed.due()
            if due is None or due > now:
                break
            batch = feed.take_packet()
            if batch:
                self._publish(batch, now)
        if feed.pending is None and feed.pace.kind != "step":
            feed.end(now)
        feed.heartbeat(now)

    def _publish(self, batch: list[bytes], now: float) -> None:
        feed = self._feed
        assert feed is not None
        feed.send_packet(batch, now)
        try:
            fills = self.engine.apply(batch)
        except Exception:
            log.exception(
                "market messages %d..%d could not be replayed; ending the feed",
                feed.next_sequence - len(batch),
                feed.next_sequence - 1,
            )
            feed.pending = None
            feed.end(now)
            return
        self._deliver(fills)

    def _timers(self, now: float) -> None:
        cfg = self.config
        for conn in list(self._connections.values()):
            if conn.state is _State.CLOSED:
                continue
            if now - conn.last_received >= cfg.client_timeout_s:
                log.warning("%r: nothing received for %.1f s; dropping it", conn, now - conn.last_received)
                self._close(conn)
                continue
            if conn.state is not _State.LOGGED_IN:
                continue
            after = cfg.faults.disconnect_after_s
            if after is not None and not self._timed_disconnect_fired and now - conn.logged_in_at >= after:
                self._timed_disconnect_fired = True
                log.info("%r: fault: disconnecting %.3f s after login", conn, after)
                self._close(conn)
                continue
            if now - conn.last_sent >= cfg.heartbeat_interval_s:
                self._send(conn, soupbintcp.SERVER_HEARTBEAT_PACKET)

    def _shutdown(self) -> None:
        now = time.monotonic()
        feed = self._feed
        if feed is not None:
            feed.end(now)
        end_of_day = ouch.encode_outbound("S", timestamp=self.engine.timestamp, event_code="E")
        try:
            self._deliver([Outbound(username, end_of_day) for username in self._accounts])
        except Exception:
            log.exception("could not send the end-of-day System Event")
        for conn in list(self._connections.values()):
            if conn.state is _State.LOGGED_IN and not conn.mute:
                self._send(conn, soupbintcp.END_OF_SESSION_PACKET)
            self._close(conn, graceful=True)
        for sock in (self._listener, self._wake_r, self._wake_w, feed.sock if feed else None):
            if sock is not None:
                sock.close()
        if self._selector is not None:
            self._selector.close()
        self._running = False
        while not self._commands.empty():  # release anyone waiting on a command that will not run
            _, _, done, result = self._commands.get_nowait()
            result.append(RuntimeError("the exchange simulator stopped"))
            if done is not None:
                done.set()

    # --- connections ------------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        try:
            sock, address = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(sock, f"{address[0]}:{address[1]}", time.monotonic())
        self._connections[sock] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)
        log.info("%r: connected", conn)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            log.warning("%r: receive failed: %s; closing", conn, e)
            self._close(conn)
            return
        if not data:
            if conn.framer.pending:
                log.warning("%r: closed by the peer inside a packet (%d bytes pending)", conn, conn.framer.pending)
            else:
                log.info("%r: closed by the peer", conn)
            self._close(conn)
            return
        conn.last_received = time.monotonic()
        try:
            packets = conn.framer.feed(data)
        except WireError as e:
            log.warning("%r: malformed SoupBinTCP from the client: %s; closing", conn, e)
            self._close(conn)
            return
        for packet in packets:
            if conn.state is _State.CLOSED:
                return
            try:
                self._on_packet(conn, packet)
            except Exception:
                log.exception("%r: handling the packet at stream offset %d failed; closing", conn, packet.offset)
                self._close(conn)

    def _on_packet(self, conn: _Connection, packet: Packet) -> None:
        kind = packet.packet_type
        if kind == "L":
            self._login(conn, packet)
        elif kind == "U":
            if conn.state is not _State.LOGGED_IN:
                self._protocol_error(conn, packet, "Unsequenced Data before a successful login")
                return
            try:
                message = ouch.decode_inbound(packet.payload)
            except WireError as e:
                self._protocol_error(conn, packet, f"undecodable OUCH message: {e}")
                return
            self._on_ouch(conn, message)
        elif kind == "O":
            log.info("%r: logout requested", conn)
            self._close(conn, graceful=True)
        elif kind == "+":
            log.info("%r: debug: %s", conn, packet.payload.decode("ascii", "replace"))
        # "R" (client heartbeat): receiving it already refreshed last_received

    def _protocol_error(self, conn: _Connection, packet: Packet, what: str) -> None:
        log.warning("%r: %s (packet %r at stream offset %d); closing", conn, what, packet.packet_type, packet.offset)
        self._close(conn)

    def _login(self, conn: _Connection, packet: Packet) -> None:
        if conn.state is not _State.AWAIT_LOGIN:
            self._protocol_error(conn, packet, "a second Login Request on the connection")
            return
        request = packet.fields
        account = self._accounts.get(request.username)
        if account is None or account.password != request.password:
            log.warning("%r: login refused for username %r: not authorized", conn, request.username)
            self._send(conn, soupbintcp.encode_login_rejected(soupbintcp.REJECT_NOT_AUTHORIZED))
            self._close(conn, graceful=True)
            return
        if request.requested_session not in ("", self.config.session):
            log.warning("%r: login refused: session %r is not %r", conn, request.requested_session, self.config.session)
            self._send(conn, soupbintcp.encode_login_rejected(soupbintcp.REJECT_SESSION_NOT_AVAILABLE))
            self._close(conn, graceful=True)
            return
        if account.connection is not None and account.connection.state is not _State.CLOSED:
            log.warning(
                "%r: account %s logged in again from %s; closing this one",
                account.connection,
                account.username,
                conn.peer,
            )
            self._close(account.connection)
        newest = len(account.stream) + 1
        wanted = request.requested_sequence_number
        first = newest if wanted == 0 else min(wanted, newest)
        conn.state = _State.LOGGED_IN
        conn.account = account
        conn.logged_in_at = time.monotonic()
        account.connection = conn
        log.info("%r: logged in, session %s, next sequence %d", conn, self.config.session, first)
        self._send(
            conn, soupbintcp.encode_login_accepted(self.config.session, first) + b"".join(account.stream[first - 1 :])
        )

    def _on_ouch(self, conn: _Connection, message: Any) -> None:
        assert conn.account is not None
        self._inbound_messages += 1
        fault = self.config.faults
        disconnect = fault.disconnect_after_messages == self._inbound_messages and not self._disconnect_fired
        if disconnect:
            self._disconnect_fired = True
            conn.mute = True
        if fault.delay_ms > 0:
            self._delayed.append((time.monotonic() + fault.delay_ms / 1000, conn.account.username, message))
        else:
            self._handle(conn.account.username, message)
        if disconnect:
            log.info("%r: fault: disconnecting after inbound OUCH message %d", conn, self._inbound_messages)
            self._close(conn)

    def _handle_delayed(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, username, message = self._delayed.popleft()
            self._handle(username, message)

    def _handle(self, username: str, message: Any) -> None:
        """One inbound OUCH message through the matching engine (and the reject fault)."""
        reject = None
        if message.message_type == "O" and not self.engine.token_used(username, message.order_token):
            self._enter_orders += 1
            fault = self.config.faults
            chosen = fault.reject_every is not None and self._enter_orders % fault.reject_every == 0
            if fault.reject_probability and self._rng.random() < fault.reject_probability:
                chosen = True
            if chosen:
                reject = fault.reject_reason
        elif message.message_type not in "OUX":
            log.info("account %s: OUCH %r message is not simulated; ignored", username, message.message_type)
        self._deliver(self.engine.handle(username, message, reject_reason=reject))

    def _deliver(self, outbound: list[Outbound]) -> None:
        """Append to each account's sequenced stream, and send to its connection if it has one."""
        for username, message in outbound:
            account = self._accounts[username]
            packet = soupbintcp.encode_sequenced_data(message)
            account.stream.append(packet)
            conn = account.connection
            if conn is not None and conn.state is _State.LOGGED_IN:
                self._send(conn, packet)

    def _send(self, conn: _Connection, data: bytes) -> None:
        if conn.mute or conn.state is _State.CLOSED:
            return
        conn.out += data
        conn.last_sent = time.monotonic()
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except BlockingIOError:
                break
            except OSError as e:
                log.warning("%r: send failed: %s; closing", conn, e)
                self._close(conn)
                return
            del conn.out[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if events != conn.events and self._selector is not None:
            conn.events = events
            self._selector.modify(conn.sock, events, conn)

    def _close(self, conn: _Connection, *, graceful: bool = False) -> None:
        """Close a connection; `graceful` first sends what is queued (waiting at most a second)."""
        if conn.state is _State.CLOSED:
            return
        if graceful and conn.out and not conn.mute:
            try:
                conn.sock.settimeout(1.0)
                conn.sock.sendall(conn.out)
            except OSError:
                pass
        conn.state = _State.CLOSED
        if conn.account is not None and conn.account.connection is conn:
            conn.account.connection = None
        self._connections.pop(conn.sock, None)
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()


def _is_multicast(host: str) -> bool:
    try:
        return 224 <= socket.inet_aton(host)[0] <= 239
    except OSError:
        return False


def _is_loopback(host: str) -> bool:
    try:
        return socket.inet_aton(host)[0] == 127
    except OSError:
        return host == "localhost"


# --- command line ------------------------------------------------------------------------------------


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port in 1..65535, got {text!r}")
    return host, int(port)


def _packet_numbers(text: str) -> frozenset[int]:
    try:
        numbers = frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated data packet numbers, got {text!r}") from None
    if any(n < 0 for n in numbers):
        raise argparse.ArgumentTypeError(f"data packet numbers are >= 0, got {text!r}")
    return numbers


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The `wirebook exchange` options (added to `parser`, e.g. a subcommand's, when given)."""
    p = parser or argparse.ArgumentParser(prog="wirebook exchange", description=__doc__.split("\n")[0])
    d = ExchangeConfig()
    p.add_argument("--host", default=d.host, help="address the OUCH server listens on (default %(default)s)")
    p.add_argument(
        "--ouch-port", type=int, default=d.ouch_port, help="SoupBinTCP port, 0: ephemeral (default %(default)s)"
    )
    p.add_argument(
        "--username", default=DEFAULT_USERNAME, help="SoupBinTCP username, 1-6 characters (default %(default)s)"
    )
    p.add_argument("--password", default=DEFAULT_PASSWORD, help="SoupBinTCP password (default %(default)s)")
    p.add_argument("--session", default=d.session, help="SoupBinTCP session name (default %(default)s)")
    p.add_argument(
        "--feed-address",
        type=_host_port,
        default=None,
        metavar="HOST:PORT",
        help="MoldUDP64 destination, unicast or multicast (default: no feed)",
    )
    p.add_argument("--feed-session", default=d.feed_session, help="MoldUDP64 session (default %(default)s)")
    p.add_argument("--feed-ttl", type=int, default=d.feed_ttl, help="multicast TTL (default %(default)s)")
    p.add_argument("--feed-interface", default=None, metavar="ADDRESS", help="multicast outgoing interface address")
    p.add_argument("--itch", default=None, metavar="FILE", help="replay this ITCH 5.0 file")
    p.add_argument("--symbols", type=int, default=d.symbols, help="generated market: symbols (default %(default)s)")
    p.add_argument("--messages", type=int, default=d.messages, help="generated market: messages (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="generated market: seed (default %(default)s)")
    p.add_argument(
        "--rate", default=d.rate, help="feed pace: max, N messages/s, realtime, realtime:K (default %(default)s)"
    )
    p.add_argument("--messages-per-packet", type=int, default=d.messages_per_packet, help="(default %(default)s)")
    p.add_argument(
        "--linger",
        type=float,
        default=None,
        metavar="S",
        help="stop S seconds after the market is exhausted (default: run until Ctrl-C)",
    )
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    f = p.add_argument_group("faults")
    f.add_argument(
        "--disconnect-after-messages",
        type=int,
        default=None,
        metavar="N",
        help="drop the client that sends the Nth OUCH message (once)",
    )
    f.add_argument(
        "--disconnect-after-seconds",
        type=float,
        default=None,
        metavar="S",
        help="drop the first client S s after its login (once)",
    )
    f.add_argument("--delay-ms", type=float, default=0.0, help="handle each OUCH message this late")
    f.add_argument("--reject-every", type=int, default=None, metavar="N", help="reject every Nth Enter Order")
    f.add_argument(
        "--reject-probability", type=float, default=0.0, metavar="P", help="reject each Enter Order with probability P"
    )
    f.add_argument(
        "--reject-reason",
        choices=("O", "H"),
        default="O",
        help="reject code of the reject faults (default %(default)s)",
    )
    f.add_argument(
        "--feed-drop-packets",
        type=_packet_numbers,
        default=frozenset(),
        metavar="N,N,...",
        help="data packets (from 0) not sent: feed gaps",
    )
    f.add_argument(
        "--feed-drop-probability", type=float, default=0.0, metavar="P", help="drop each data packet with probability P"
    )
    f.add_argument("--fault-seed", type=int, default=0, help="seed of the random faults (default %(default)s)")
    return p


def config_from_args(args: argparse.Namespace) -> ExchangeConfig:
    """An ExchangeConfig from parsed `build_parser` options (ValueError names a bad option's field)."""
    faults = ExchangeFaults(
        disconnect_after_messages=args.disconnect_after_messages,
        disconnect_after_s=args.disconnect_after_seconds,
        delay_ms=args.delay_ms,
        reject_every=args.reject_every,
        reject_probability=args.reject_probability,
        reject_reason=args.reject_reason,
        feed_drop_packets=args.feed_drop_packets,
        feed_drop_probability=args.feed_drop_probability,
        seed=args.fault_seed,
    )
    return ExchangeConfig(
        host=args.host,
        ouch_port=args.ouch_port,
        accounts={args.username: args.password},
        session=args.session,
        feed_address=args.feed_address,
        feed_session=args.feed_session,
        feed_ttl=args.feed_ttl,
        feed_interface=args.feed_interface,
        itch_path=args.itch,
        symbols=args.symbols,
        messages=args.messages,
        seed=args.seed,
        rate=args.rate,
        messages_per_packet=args.messages_per_packet,
        faults=faults,
    )


def run_exchange(argv: Sequence[str] | None = None, *, args: argparse.Namespace | None = None) -> int:
    """Command-line entry: parse `argv` (or take parsed `args`), serve, return the exit status."""
    if args is None:
        args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as e:
        print(f"wirebook exchange: {e}")
        return 2
    simulator = ExchangeSimulator(config)
    simulator.start()
    feed = (
        f"MoldUDP64 session {config.feed_session} to {config.feed_address[0]}:{config.feed_address[1]}"
        if config.feed_address
        else "no feed"
    )
    print(
        f"exchange: OUCH 4.2 / SoupBinTCP on {config.host}:{simulator.ouch_port} (session {config.session}, "
        f"user {args.username}); {feed}, rate {config.rate}; {config.describe_market()}",
        flush=True,
    )
    started = time.monotonic()
    try:
        while True:
            if args.duration is not None and time.monotonic() - started >= args.duration:
                break
            if args.linger is not None and simulator.wait_feed_end(0.1):
                time.sleep(args.linger)
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0
