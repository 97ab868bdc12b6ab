"""The `model` card: the golden book model behind the card's interface, fed by the MoldUDP64 feed.

Until the gateware drivers land (`sim`, `pynq`, `net`), the agent takes its BBO update records from this
card: it receives MoldUDP64 downstream packets (from a UDP socket with `UdpFeed`, or pushed by a caller),
tracks the session's sequence numbers, runs the ITCH messages through wirebook.model.book.BookModel and
hands out the records in batches (`poll`), exactly the records the real card emits for the same feed.

Sequencing, as the card's line arbiter does it: a packet's messages below the expected sequence are
duplicates (dropped, counted); a packet starting above it opens a gap (counted, first missing sequence and
count kept, `gap` set until `clear_gap`); the book then runs lenient, skipping (and counting) messages
about orders it never saw, and the strategy pulls its quotes while `gap` holds. Heartbeats move nothing;
end of session is recorded. A packet that does not decode (or of another session) is counted and dropped,
never raised.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import numpy as np

from ..model.book import BookModel
from ..proto import bbo, itch_file, moldudp64
from ..proto.errors import WireError

__all__ = ["CardCounters", "ModelCard", "UdpFeed"]

log = logging.getLogger(__name__)


@dataclass
class CardCounters:
    packets: int = 0
    heartbeats: int = 0
    messages: int = 0
    duplicates: int = 0  # messages already delivered
    gaps: int = 0
    missing: int = 0  # messages never received
    first_missing: int = 0  # of the last gap
    malformed: int = 0
    other_session: int = 0
    end_of_session: bool = False


class ModelCard:
    """MoldUDP64 packets in (`push_packet`), BBO record batches out (`poll`); see the module docstring."""

    def __init__(self, session: str | None = None, first_sequence: int = 1) -> None:
        self.session = session
        self.next_sequence = first_sequence
        self.model = BookModel(lenient=True)
        self.counters = CardCounters()
        self.gap = False
        self._batches: list[np.ndarray] = []

    @property
    def symbols(self) -> dict[int, str]:
        """Stock locate -> symbol, from the stock directory messages seen so far."""
        return self.model.symbols

    def push_packet(self, payload: bytes | bytearray | memoryview) -> None:
        c = self.counters
        try:
            packet = moldudp64.decode_packet(payload)
        except WireError as e:
            c.malformed += 1
            log.warning("model card: dropped a MoldUDP64 packet: %s", e)
            return
        if self.session is None:
            self.session = packet.session
        elif packet.session != self.session:
            c.other_session += 1
            log.warning("model card: packet of session %r dropped (expected %r)", packet.session, self.session)
            return
        if packet.end_of_session:
            c.end_of_session = True
            return
        if not packet.messages:
            c.heartbeats += 1
            return
        c.packets += 1
        first, count = packet.sequence_number, len(packet.messages)
        if first > self.next_sequence:
            c.gaps += 1
            c.first_missing = self.next_sequence
            c.missing += first - self.next_sequence
            self.gap = True
            log.warning("model card: sequences %d..%d missing", self.next_sequence, first - 1)
            self.next_sequence = first
        skip = self.next_sequence - first
        if skip >= count:
            c.duplicates += count
            return
        c.duplicates += skip
        messages = packet.messages[skip:]
        # MoldUDP64 message blocks are the ITCH file format: a 2-byte length and the message.
        framed = np.frombuffer(b"".join(len(m).to_bytes(2, "big") + m for m in messages), dtype=np.uint8)
        offsets, types, _ = itch_file.frame(framed)
        chunk = itch_file.Chunk(framed, offsets, types, 0, 0)
        records = self.model.apply_chunk(chunk, self.next_sequence)
        self.next_sequence += len(messages)
        c.messages += len(messages)
        if len(records):
            self._batches.append(records)

    def poll(self) -> np.ndarray:
        """The records made since the last poll, in order (an empty array when none)."""
        if not self._batches:
            return bbo.empty(0)
        batches, self._batches = self._batches, []
        if len(batches) == 1:
            return batches[0]
        out = bbo.empty(sum(len(b) for b in batches))  # np.concatenate would drop the record's padding
        at = 0
        for b in batches:
            out[at : at + len(b)] = b
            at += len(b)
        return out

    def clear_gap(self) -> None:
        self.gap = False


class UdpFeed:
    """A non-blocking UDP socket receiving the feed (unicast, or a multicast group joined on `interface`)."""

    def __init__(self, address: str, port: int, interface: str = "0.0.0.0") -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        multicast = socket.inet_aton(address)[0] & 0xF0 == 0xE0
        self.socket.bind((address, port))
        if multicast:
            membership = socket.inet_aton(address) + socket.inet_aton(interface)
            self.socket.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]

    def receive(self, card: ModelCard, max_packets: int = 256) -> int:
        """Push up to `max_packets` waiting packets into `card`; returns how many."""
        n = 0
        while n < max_packets:
            try:
                payload = self.socket.recv(65536)
            except BlockingIOError:
                break
            card.push_packet(payload)
            n += 1
        return n

    def close(self) -> None:
        self.socket.close()
