"""The exchange's ITCH multicast feed as a pcap capture, and the line handler that reads it back.

Feed model (`write_feed_pcap`): an ITCH 5.0 file (see wirebook.proto.itch_file) is published as MoldUDP64
packets in session `session`, each packet sent on two multicast lines, A and B (`LINE_A`, `LINE_B`: the
NASDAQ TotalView-ITCH 5.0 production groups 233.54.12.111 and 233.49.196.111, UDP port 26477), from one
source host (`SOURCE_MAC`, `SOURCE_IP`, `SOURCE_PORT`, addresses from the documentation ranges).

- Sequencing: message i (0-based) of the file has MoldUDP64 sequence number i + 1.
- Feed time of a message: its ITCH timestamp (ns since midnight), or the previous message's feed time if
  that is later (a file whose clock steps back is still sent in order). Absolute time = feed time +
  midnight of `date` in New York (the exchange's clock), as ns since the Unix epoch.
- Packetization: consecutive messages go into one packet while the UDP payload stays within `max_payload`
  bytes, the count within 0xFFFE, and every message's feed time is within `packet_span_ns` of the packet's
  first message. A packet is sent at the feed time of its first message. The file is streamed in chunks;
  the packets do not depend on the chunk size.
- Heartbeats: whenever nothing was sent for `heartbeat_interval_ns`, a heartbeat (count 0, sequence = next
  sequence) goes out on both lines, every interval until the next packet.
- End of session: `END_OF_SESSION_DELAY_NS` after the last transmission, one packet with count 0xFFFF and
  sequence = next sequence, on both lines.
- Arrival: each copy arrives `uniform(0, jitter_ns)` (seeded, `seed`) after it was sent, in order within
  its line; the capture interleaves the two lines by arrival time, so B sometimes beats A. Frames are
  written in arrival order with their arrival time.
- `Faults` injects transmission faults per (line, data packet number): drops, duplicates, reordering.

Line handler (`read_feed_pcap` -> `FeedReader`): yields (sequence, message bytes) in sequence order, the
first copy of each sequence to arrive winning (line arbitration). Copies that bring nothing new are counted
as duplicates and dropped without being decoded; packets ahead of a missing sequence are held until the gap
is filled. A gap that neither line fills within `gap_timeout_ns` of capture time (or by the end of the
capture) raises `SequenceGapError` naming the missing range and the frame where it was first seen.
Heartbeats and end of session are counted and announce the next sequence (so a loss at the very end is a
gap too). Packets of another session raise MalformedError. Frames that are not UDP to a line's group and
port are skipped and counted; a frame to a line's group that fails the checks of
`wirebook.proto.net.parse_udp_frame`, or a malformed MoldUDP64 packet, raises (or with `on_malformed="skip"`
is counted and dropped, leaving the other line to fill in). Errors name the pcap file offset.

`feed_pcap_to_itch` gives the whole capture's messages in the ITCH file format (MoldUDP64 message blocks
are that format already, so new packet tails are copied as they are), plus the first sequence number:
what `wirebook replay PCAP` feeds to the golden model. `FeedReader.iter_runs` yields the same per packet
(sequence, file-format bytes) and `FeedReader.write_itch` streams it to a file, for captures too big for
memory.
"""

from __future__ import annotations

import datetime as dt
import heapq
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

from wirebook.proto import itch, itch_file, moldudp64, net
from wirebook.proto.errors import MalformedError, TruncatedError, WireError
from wirebook.proto.pcap import LINKTYPE_ETHERNET, PcapReader, PcapWriter


@dataclass(frozen=True)
class Line:
    """One multicast line of the feed: the destination group and UDP port."""

    name: str
    group: str
    port: int

    def __post_init__(self) -> None:
        net.multicast_mac(self.group)  # refuses a group outside 224.0.0.0/4
        if not 0 < self.port <= 0xFFFF:
            raise ValueError(f"line {self.name}: UDP port {self.port} out of range")


LINE_A = Line("A", "233.54.12.111", 26477)
LINE_B = Line("B", "233.49.196.111", 26477)
DEFAULT_LINES = (LINE_A, LINE_B)
DEFAULT_SESSION = "WIREBOOK01"
SOURCE_MAC = "02:57:42:00:00:01"  # locally administered
SOURCE_IP = "192.0.2.10"  # TEST-NET-1 (RFC 5737)
SOURCE_PORT = 26400
DEFAULT_DATE = dt.date(2019, 1, 30)  # the day of NASDAQ's public sample file 01302019.NASDAQ_ITCH50
EXCHANGE_TIMEZONE = "America/New_York"
DEFAULT_MAX_PAYLOAD = 1400
DEFAULT_PACKET_SPAN_NS = 1_000_000
DEFAULT_HEARTBEAT_INTERVAL_NS = 1_000_000_000
DEFAULT_JITTER_NS = 2_000
END_OF_SESSION_DELAY_NS = 1_000_000
DEFAULT_GAP_TIMEOUT_NS = 10_000_000
DENSE_FEED = {"packet_span_ns": 5_000_000, "heartbeat_interval_ns": 60_000_000_000}
"""write_feed_pcap options for simulation runs: packets as full as max_payload allows, few heartbeats."""

_LENGTHS = itch.LENGTH_BY_TYPE_BYTE.astype(np.int64)
_MOLD_COUNT = moldudp64.HEADER.by_name["message_count"]
_IP_DESTINATION = net.IPV4.by_name["destination"]
_IP_PROTOCOL = net.IPV4.by_name["protocol"]


def midnight_epoch_ns(date: dt.date, timezone: str = EXCHANGE_TIMEZONE) -> int:
    """Nanoseconds since the Unix epoch of midnight of `date` in `timezone` (ITCH timestamps count from it)."""
    midnight = dt.datetime.combine(date, dt.time(0), tzinfo=ZoneInfo(timezone))
    return int(midnight.timestamp()) * 1_000_000_000


# --- writer -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """Transmission faults for tests, each a set of (line name, data packet number) pairs.

    Data packets are numbered from 0 in sending order (heartbeats and end of session are not numbered).
    `drop`: the copy is lost on that line (drop it on both lines for a gap). `duplicate`: the copy arrives
    twice. `reorder`: the copy is held back and arrives right after the line's next data packet (a run of
    reordered packets arrives reversed, after the packet that follows the run).
    """

    drop: frozenset[tuple[str, int]] = frozenset()
    duplicate: frozenset[tuple[str, int]] = frozenset()
    reorder: frozenset[tuple[str, int]] = frozenset()

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder"):
            object.__setattr__(self, name, frozenset((str(line), int(n)) for line, n in getattr(self, name)))

    def lines(self) -> set[str]:
        return {line for pairs in (self.drop, self.duplicate, self.reorder) for line, _ in pairs}


class _Transmitter:
    """Sends payloads on every line and writes the copies to the pcap in arrival order."""

    def __init__(
        self,
        writer: PcapWriter,
        flows: dict[str, net.UdpFlow],
        epoch_ns: int,
        jitter_ns: int,
        seed: int,
        faults: Faults,
    ) -> None:
        self.writer = writer
        self.flows = flows
        self.epoch_ns = epoch_ns
        self.jitter_ns = jitter_ns
        self.rng = random.Random(seed)
        self.faults = faults
        self.queue: list[tuple[int, int, bytes]] = []  # (arrival, serial, frame): a heap
        self.serial = 0
        self.last_arrival = dict.fromkeys(flows, 0)
        self.identification = dict.fromkeys(flows, 0)
        self.held: dict[str, list[bytes]] = {line: [] for line in flows}  # copies kept back by `reorder`
        self.dropped = 0
        self.first_written: int | None = None
        self.last_written: int | None = None

    def send(self, feed_time_ns: int, payload: bytes, packet_number: int | None) -> None:
        """Send one payload on every line at `feed_time_ns`; `packet_number` is None for control packets."""
        sent_at = self.epoch_ns + feed_time_ns
        self.release(sent_at)  # every arrival from now on is at or after sent_at
        for line, flow in self.flows.items():
            frame = flow.frame(payload, self.identification[line])
            self.identification[line] = (self.identification[line] + 1) & 0xFFFF
            arrival = sent_at + self.rng.randint(0, self.jitter_ns)  # drawn for every copy: faults keep timing
            key = (line, packet_number)
            if packet_number is not None and key in self.faults.drop:
                self.dropped += 1
                continue
            if packet_number is not None and key in self.faults.reorder:
                self.held[line].append(frame)
                continue
            self._schedule(line, arrival, frame)
            if packet_number is not None and key in self.faults.duplicate:
                self._schedule(line, arrival, frame)
            if packet_number is not None:
                self._release_held(line, arrival)

    def _release_held(self, line: str, arrival: int) -> None:
        held = self.held[line]
        while held:
            self._schedule(line, arrival, held.pop())  # last held first: each one after its successor

    def _schedule(self, line: str, arrival: int, frame: bytes) -> None:
        arrival = max(arrival, self.last_arrival[line])  # a line delivers in order
        self.last_arrival[line] = arrival
        heapq.heappush(self.queue, (arrival, self.serial, frame))
        self.serial += 1

    def release(self, before_ns: int | None = None) -> None:
        """Write every queued copy that arrives before `before_ns` (all of them when None)."""
        if before_ns is None:
            for line in self.held:
                self._release_held(line, self.last_arrival[line])
        queue = self.queue
        while queue and (before_ns is None or queue[0][0] < before_ns):
            arrival, _, frame = heapq.heappop(queue)
            self.writer.write(arrival, frame)
            if self.first_written is None:
                self.first_written = arrival
            self.last_written = arrival


def _message_timestamps(chunk: itch_file.Chunk) -> np.ndarray:
    return itch.decode_headers(chunk.buffer, chunk.offsets)["timestamp"].astype(np.int64)


class _Publisher:
    """The exchange side of the session: packetizes the message stream, keeps the sequence numbers and sends
    heartbeats when idle and end of session at the end, handing every packet to the transmitter."""

    def __init__(self, tx: _Transmitter, session: str, max_payload: int, packet_span_ns: int, heartbeat_ns: int):
        self.tx = tx
        self.session = session
        self.budget = max_payload - moldudp64.HEADER_LENGTH  # message block bytes per packet
        self.packet_span_ns = packet_span_ns
        self.heartbeat_ns = heartbeat_ns
        self.next_sequence = 1
        self.packets = 0
        self.heartbeats = 0
        self.last_sent: int | None = None  # feed time of the last transmission
        self.floor = 0  # feed time of the last message sent

    def publish(self, blocks: np.ndarray, times: np.ndarray, sizes: np.ndarray, *, final: bool) -> int:
        """Send the packets of a run of messages: `blocks` holds them in the file format (length + message),
        `sizes` their block sizes, `times` their ITCH timestamps. Unless `final`, the last packet is kept back
        since it may take messages from the next run; returns how many messages were kept back."""
        times = np.maximum.accumulate(np.maximum(times, self.floor))  # feed time never steps back
        ends = np.cumsum(sizes)
        starts = ends - sizes
        n, i = len(sizes), 0
        while i < n:
            j = min(
                int(np.searchsorted(ends, starts[i] + self.budget, side="right")),
                int(np.searchsorted(times, times[i] + self.packet_span_ns, side="right")),
                i + moldudp64.MAX_MESSAGES_PER_PACKET,
            )
            if j == n and not final:
                break
            header = moldudp64.HEADER.pack(
                session=self.session, sequence_number=self.next_sequence, message_count=j - i
            )
            self._transmit(int(times[i]), header + blocks[starts[i] : ends[j - 1]].tobytes(), self.packets)
            self.next_sequence += j - i
            self.packets += 1
            i = j
        if i:
            self.floor = int(times[i - 1])  # so the messages kept back get the same feed times next run
        return n - i

    def end_session(self) -> None:
        end = 0 if self.last_sent is None else self.last_sent + END_OF_SESSION_DELAY_NS
        self.tx.send(end, moldudp64.encode_end_of_session(self.session, self.next_sequence), None)
        self.tx.release()

    def _transmit(self, feed_time: int, payload: bytes, packet_number: int) -> None:
        last = self.last_sent
        while last is not None and last + self.heartbeat_ns < feed_time:
            last += self.heartbeat_ns
            self.tx.send(last, moldudp64.encode_heartbeat(self.session, self.next_sequence), None)
            self.heartbeats += 1
        self.tx.send(feed_time, payload, packet_number)
        self.last_sent = feed_time


def write_feed_pcap(
    itch_path: str | os.PathLike,
    pcap_path: str | os.PathLike | BinaryIO,
    *,
    session: str = DEFAULT_SESSION,
    lines: tuple[Line, ...] = DEFAULT_LINES,
    source_mac: net.MacLike = SOURCE_MAC,
    source_ip: net.Ipv4Like = SOURCE_IP,
    source_port: int = SOURCE_PORT,
    vlan: int | None = None,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    packet_span_ns: int = DEFAULT_PACKET_SPAN_NS,
    heartbeat_interval_ns: int = DEFAULT_HEARTBEAT_INTERVAL_NS,
    jitter_ns: int = DEFAULT_JITTER_NS,
    seed: int = 0,
    date: dt.date = DEFAULT_DATE,
    faults: Faults | None = None,
    chunk_size: int = itch_file.DEFAULT_CHUNK_SIZE,
) -> dict[str, Any]:
    """Publish an ITCH file as the dual-line MoldUDP64 multicast feed, captured to `pcap_path`.

    Returns a summary: session, messages, packets (data packets), heartbeats, end_of_session (packets, each
    sent on every line), frames written, dropped_frames, first_sequence, next_sequence, start_ns / end_ns
    (first and last capture time), lines (name -> "group:port").
    """
    smallest = moldudp64.HEADER_LENGTH + 2 + itch.MAX_LENGTH
    if not smallest <= max_payload <= 0xFFFF - 28:
        raise ValueError(f"max_payload must be within {smallest}..{0xFFFF - 28} bytes, got {max_payload}")
    if heartbeat_interval_ns <= 0 or packet_span_ns < 0 or jitter_ns < 0:
        raise ValueError("heartbeat_interval_ns must be > 0, packet_span_ns and jitter_ns >= 0")
    if len({line.name for line in lines}) != len(lines):
        raise ValueError(f"line names must differ: {[line.name for line in lines]}")
    faults = faults or Faults()
    unknown = faults.lines() - {line.name for line in lines}
    if unknown:
        raise ValueError(f"faults name unknown line(s) {sorted(unknown)}; lines are {[x.name for x in lines]}")
    moldudp64.encode_heartbeat(session, 1)  # refuses a session that is not <= 10 ASCII characters
    flows = {
        line.name: net.UdpFlow(source_mac, None, source_ip, line.group, source_port, line.port, vlan=vlan)
        for line in lines
    }

    with PcapWriter(pcap_path) as writer:
        tx = _Transmitter(writer, flows, midnight_epoch_ns(date), jitter_ns, seed, faults)
        publisher = _Publisher(tx, session, max_payload, packet_span_ns, heartbeat_interval_ns)
        # Messages of the last, unfinished packet of a chunk are carried into the next one.
        blocks, times, sizes = np.empty(0, np.uint8), np.empty(0, np.int64), np.empty(0, np.int64)
        for chunk in itch_file.iter_chunks(itch_path, chunk_size=chunk_size):
            chunk_sizes = 2 + _LENGTHS[chunk.types]
            first = int(chunk.offsets[0]) - 2
            last = int(chunk.offsets[-1]) - 2 + int(chunk_sizes[-1])
            blocks = np.concatenate((blocks, chunk.buffer[first:last]))
            times = np.concatenate((times, _message_timestamps(chunk)))
            sizes = np.concatenate((sizes, chunk_sizes))
            kept = publisher.publish(blocks, times, sizes, final=False)
            sizes, times = sizes[len(sizes) - kept :], times[len(times) - kept :]
            blocks = blocks[len(blocks) - int(sizes.sum()) :].copy()
        publisher.publish(blocks, times, sizes, final=True)
        publisher.end_session()

    return {
        "session": session,
        "messages": publisher.next_sequence - 1,
        "packets": publisher.packets,
        "heartbeats": publisher.heartbeats,
        "end_of_session": 1,
        "frames": writer.count,
        "dropped_frames": tx.dropped,
        "first_sequence": 1,
        "next_sequence": publisher.next_sequence,
        "start_ns": tx.first_written,
        "end_ns": tx.last_written,
        "lines": {line.name: f"{line.group}:{line.port}" for line in lines},
    }


# --- reader -----------------------------------------------------------------------------------------


class SequenceGapError(WireError):
    """Messages that neither line delivered. `offset` is the file offset of the pcap record where the gap
    was first seen (its 0-based number is `frame_index`); `first_missing..last_missing` the lost range."""

    def __init__(self, session: str, first_missing: int, last_missing: int, frame_index: int, offset: int) -> None:
        self.first_missing = first_missing
        self.last_missing = last_missing
        self.frame_index = frame_index
        super().__init__(
            f"MoldUDP64 session {session!r}: sequences {first_missing}..{last_missing} missing on every line "
            f"(first seen at pcap frame {frame_index})",
            offset,
            f"sequence {first_missing}",
            f"a packet starting at {last_missing + 1}",
        )


@dataclass
class FeedCounters:
    """What the line handler saw. Per-line counts are keyed by line name."""

    frames: int = 0  # pcap records read
    skipped: int = 0  # not UDP to a line's group and port
    malformed: int = 0  # refused feed frames (on_malformed="skip")
    packets: dict[str, int] = field(default_factory=dict)  # data packets per line
    heartbeats: dict[str, int] = field(default_factory=dict)
    end_of_session: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0  # data packets that brought no new message
    out_of_order: int = 0  # data packets held until an earlier gap was filled
    messages: int = 0  # messages delivered
    won: dict[str, int] = field(default_factory=dict)  # messages delivered first by each line

    @property
    def end_of_session_seen(self) -> bool:
        return any(self.end_of_session.values())


class _Held(NamedTuple):
    sequence: int
    serial: int
    line: str
    payload: bytes
    offsets: np.ndarray


class FeedReader:
    """Line handler over a feed capture; see the module docstring. Iterate once, as (sequence, message)
    pairs (`__iter__`), as ITCH file-format runs (`iter_runs`), or into a file (`write_itch`).

    `session=None` takes the session of the first packet. `first_sequence=None` joins at the first packet
    seen (a capture started mid-session); by default the capture must start at sequence 1.
    """

    def __init__(
        self,
        pcap_path: str | os.PathLike | BinaryIO,
        *,
        session: str | None = None,
        lines: tuple[Line, ...] = DEFAULT_LINES,
        first_sequence: int | None = 1,
        gap_timeout_ns: int = DEFAULT_GAP_TIMEOUT_NS,
        on_malformed: Literal["raise", "skip"] = "raise",
    ) -> None:
        if on_malformed not in ("raise", "skip"):
            raise ValueError(f"on_malformed must be 'raise' or 'skip', got {on_malformed!r}")
        self.pcap_path = pcap_path
        self.session = session
        self.lines = tuple(lines)
        self.first_sequence = first_sequence
        self.gap_timeout_ns = gap_timeout_ns
        self.on_malformed = on_malformed
        names = [line.name for line in self.lines]
        self.counters = FeedCounters(
            packets=dict.fromkeys(names, 0),
            heartbeats=dict.fromkeys(names, 0),
            end_of_session=dict.fromkeys(names, 0),
            won=dict.fromkeys(names, 0),
        )
        self.next_sequence: int | None = first_sequence  # the next sequence to deliver
        self._line_of = {(net.ipv4_address(x.group), x.port): x.name for x in self.lines}
        self._groups = {net.ipv4_address(x.group) for x in self.lines}
        self._held: list[_Held] = []  # heap of packets ahead of a gap
        self._announced = 0  # highest "next sequence" any packet, heartbeat or end of session announced
        self._gap: tuple[int, int, int] | None = None  # (capture time, frame index, record offset) first seen
        self._used = False

    # --- public iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for sequence, payload, offsets in self._deliveries():
            for k, at in enumerate(offsets.tolist()):
                yield sequence + k, payload[at : at + int(_LENGTHS[payload[at]])]

    def iter_runs(self) -> Iterator[tuple[int, bytes]]:
        """(sequence of the run's first message, its messages in the ITCH file format) per delivery."""
        for sequence, payload, offsets in self._deliveries():
            yield sequence, payload[int(offsets[0]) - 2 :]

    def write_itch(self, target: str | os.PathLike | BinaryIO) -> int:
        """Write every delivered message to an ITCH file; returns the number of messages."""
        own = not hasattr(target, "write")
        f: BinaryIO = open(target, "wb") if own else target  # type: ignore[arg-type,assignment]
        try:
            for _, run in self.iter_runs():
                f.write(run)
        finally:
            if own:
                f.close()
        return self.counters.messages

    # --- the line handler ---------------------------------------------------------------------------

    def _deliveries(self) -> Iterator[tuple[int, bytes, np.ndarray]]:
        """(sequence of the first new message, packet payload, offsets of the new messages' type bytes)."""
        if self._used:
            raise RuntimeError("a FeedReader reads its capture once; make a new one")
        self._used = True
        reader = PcapReader(self.pcap_path)
        with reader:
            if reader.linktype != LINKTYPE_ETHERNET:
                raise MalformedError(
                    "pcap file header linktype", 20, f"{LINKTYPE_ETHERNET} (Ethernet)", str(reader.linktype)
                )
            for time_ns, frame in reader:
                self.counters.frames += 1
                if self._gap is not None and time_ns - self._gap[0] > self.gap_timeout_ns:
                    self._raise_gap()
                yield from self._accept(reader, time_ns, frame)
        if self._gap is not None:
            self._raise_gap()

    def _accept(self, reader: PcapReader, time_ns: int, frame: bytes) -> Iterator[tuple[int, bytes, np.ndarray]]:
        where = f"pcap frame {reader.index}"
        try:
            eth, l3 = net.parse_ethernet(frame)
        except TruncatedError:
            self.counters.skipped += 1
            return
        if eth.ethertype != net.ETHERTYPE_IPV4 or len(frame) < l3 + net.IPV4.length:
            self.counters.skipped += 1
            return
        destination = int.from_bytes(frame[l3 + _IP_DESTINATION.offset : l3 + _IP_DESTINATION.end], "big")
        if destination not in self._groups or frame[l3 + _IP_PROTOCOL.offset] != net.IP_PROTOCOL_UDP:
            self.counters.skipped += 1  # includes IGMP reports, which are addressed to the group itself
            return
        try:
            ip, header_length = net.parse_ipv4(frame, l3)
            udp, payload = net.parse_udp(frame, l3 + header_length, l3 + ip.total_length, ip)
        except WireError as e:
            self._malformed(e, f"{where} (to a feed group)", reader.frame_offset)
            return
        line = self._line_of.get((ip.destination, udp.destination_port))
        if line is None:
            self.counters.skipped += 1
            return
        where = f"{where}, line {line}"
        payload_at = reader.frame_offset + l3 + header_length + net.UDP.length
        try:
            head = moldudp64.HEADER.unpack(payload)
        except WireError as e:
            self._malformed(e, f"{where}: MoldUDP64", payload_at)
            return
        if self.session is None:
            self.session = head.session
        elif head.session != self.session:
            error = MalformedError(f"{where}: MoldUDP64 session", 0, f"session {self.session!r}", repr(head.session))
            self._malformed(error, "", payload_at)
            return
        count, sequence = head.message_count, head.sequence_number

        if count in (moldudp64.HEARTBEAT_COUNT, moldudp64.END_OF_SESSION_COUNT):
            if len(payload) != moldudp64.HEADER_LENGTH:
                kind = "heartbeat" if count == moldudp64.HEARTBEAT_COUNT else "end-of-session"
                error = MalformedError(
                    f"{where}: MoldUDP64 {kind}",
                    moldudp64.HEADER_LENGTH,
                    "no message blocks",
                    f"{len(payload) - moldudp64.HEADER_LENGTH} more bytes",
                )
                self._malformed(error, "", payload_at)
                return
            tally = self.counters.heartbeats if count == moldudp64.HEARTBEAT_COUNT else self.counters.end_of_session
            tally[line] += 1
            if self.next_sequence is None:
                self.next_sequence = sequence
            self._announced = max(self._announced, sequence)
            self._track_gap(reader, time_ns)
            return

        self.counters.packets[line] += 1
        if self.next_sequence is None:
            self.next_sequence = sequence
        end = sequence + count
        if end <= self.next_sequence:
            self.counters.duplicates += 1  # the other line's copy, or a repeat: not even decoded
            return
        offsets = self._frame_blocks(payload, count, where, payload_at)
        if offsets is None:
            return
        self._announced = max(self._announced, end)
        if sequence > self.next_sequence:
            self.counters.out_of_order += 1
            heapq.heappush(self._held, _Held(sequence, self.counters.frames, line, payload, offsets))
        else:
            yield self._deliver(line, sequence, payload, offsets)
            while self._held and self._held[0].sequence <= self.next_sequence:
                held = heapq.heappop(self._held)
                if held.sequence + len(held.offsets) <= self.next_sequence:
                    self.counters.duplicates += 1
                else:
                    yield self._deliver(held.line, held.sequence, held.payload, held.offsets)
        self._track_gap(reader, time_ns)

    def _frame_blocks(self, payload: bytes, count: int, where: str, payload_at: int) -> np.ndarray | None:
        """Offsets (in the payload) of the type byte of each message; the blocks checked as ITCH messages."""
        blocks = np.frombuffer(payload, np.uint8, offset=moldudp64.HEADER_LENGTH)
        try:
            offsets, _, _ = itch_file.frame(blocks, file_offset=payload_at + moldudp64.HEADER_LENGTH)
        except WireError as e:
            self._malformed(e, f"{where}: MoldUDP64 message blocks", 0)
            return None
        if len(offsets) != count:
            error = MalformedError(
                f"{where}: MoldUDP64 message count",
                _MOLD_COUNT.offset,
                f"{len(offsets)} (the blocks present)",
                str(count),
            )
            self._malformed(error, "", payload_at)
            return None
        return offsets + moldudp64.HEADER_LENGTH

    def _deliver(self, line: str, sequence: int, payload: bytes, offsets: np.ndarray) -> tuple[int, bytes, np.ndarray]:
        skip = self.next_sequence - sequence
        new = offsets[skip:]
        if self.first_sequence is None:
            self.first_sequence = self.next_sequence
        self.counters.messages += len(new)
        self.counters.won[line] += len(new)
        self.next_sequence = sequence + len(offsets)
        return self.next_sequence - len(new), payload, new

    def _track_gap(self, reader: PcapReader, time_ns: int) -> None:
        if self.next_sequence is not None and self.next_sequence < self._announced:
            if self._gap is None:
                self._gap = (time_ns, reader.index, reader.record_offset)
        else:
            self._gap = None

    def _raise_gap(self) -> None:
        assert self._gap is not None and self.next_sequence is not None
        _, frame_index, offset = self._gap
        known = self._held[0].sequence if self._held else self._announced
        raise SequenceGapError(self.session or "", self.next_sequence, known - 1, frame_index, offset)

    def _malformed(self, error: WireError, context: str, base_offset: int) -> None:
        if self.on_malformed == "skip":
            self.counters.malformed += 1
            return
        what = f"{context}: {error.what}" if context else error.what
        raise type(error)(what, base_offset + error.offset, error.expected, error.got) from error


def read_feed_pcap(pcap_path: str | os.PathLike | BinaryIO, **options: Any) -> FeedReader:
    """A line handler over a feed capture (FeedReader's options): iterate it for (sequence, message bytes)."""
    return FeedReader(pcap_path, **options)


class FeedItch(NamedTuple):
    first_sequence: int | None  # sequence of the first message in `data` (None: no message)
    data: bytes  # the messages, in the ITCH file format
    counters: FeedCounters


def feed_pcap_to_itch(pcap_path: str | os.PathLike | BinaryIO, **options: Any) -> FeedItch:
    """The capture's messages in sequence order, as one ITCH file-format buffer (read_feed_pcap's options)."""
    reader = read_feed_pcap(pcap_path, **options)
    runs: list[bytes] = []
    first: int | None = None
    for sequence, run in reader.iter_runs():
        if first is None:
            first = sequence
        runs.append(run)
    return FeedItch(first, b"".join(runs), reader.counters)
