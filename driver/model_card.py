"""The `model` card: the golden book model behind the card's interface (driver/card.py).

It takes what the gateware takes, Ethernet frames of the feed (`push_frames`), filters them by destination
as the card's registers say (`configure`: the multicast groups and ports, the card's MAC), and runs the
MoldUDP64 packets' ITCH messages through wirebook.model.book.BookModel; `poll` hands out the records in
batches, exactly the records the gateware emits for the same feed (card_timestamp aside: the model has no
clock, so `set_clock` only records the value). `push_packet` takes a MoldUDP64 packet directly.

Sequencing, as the card's line arbiter does it: a packet's messages below the expected sequence are
duplicates (dropped, counted); a packet starting above it opens a gap (counted, first missing sequence and
count kept, `gap` set until `clear_gap`); the book then runs lenient, skipping (and counting) messages
about orders it never saw, and the strategy pulls its quotes while `gap` holds. Heartbeats move nothing;
end of session is recorded. A frame or packet that does not decode, is not for us, or is of another
session is counted and dropped, never raised.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.book import BookModel
from ..proto import bbo, itch_file, moldudp64, net
from ..proto.errors import WireError
from .card import CardSetup, FeedState

__all__ = ["CardCounters", "ModelCard"]

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
    not_for_us: int = 0  # frames whose destination is not a configured group (or our MAC)
    end_of_session: bool = False


class ModelCard:
    """Feed frames (`push_frames`) or MoldUDP64 packets (`push_packet`) in, BBO record batches out (`poll`);
    see the module docstring."""

    kind = "model"

    def __init__(self, session: str | None = None, first_sequence: int = 1) -> None:
        self.session = session
        self.next_sequence = first_sequence
        self.model = BookModel(lenient=True)
        self.counts = CardCounters()
        self.gap = False
        self.clock = 0
        self._batches: list[np.ndarray] = []
        self._destinations: set[tuple[int, int]] | None = None  # (address, port); None: every frame
        self._local_mac = 0
        self._accept_multicast = True

    # --- the card API (driver/card.py) ------------------------------------------------------------------

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def configure(self, setup: CardSetup) -> None:
        """Take the setup's destinations, MAC and session; the book starts empty."""
        self._destinations = {(g["address"], g["port"]) for g in setup.group_entries()}
        self._local_mac = net.mac_address(setup.local_mac)
        self._accept_multicast = setup.accept_multicast
        self.session = setup.session or None
        self.model = BookModel(lenient=True)
        self.counts = CardCounters()
        self.next_sequence = 1
        self.gap = False
        self._batches.clear()

    def push_frames(self, frames: Sequence[bytes], line: int = 0) -> None:
        """Feed frames as the card's line takes them: ours are unwrapped and their packets applied."""
        for frame in frames:
            try:
                parsed = net.parse_udp_frame(frame)
            except WireError as e:
                self.counts.malformed += 1
                log.warning("model card: dropped a frame: %s", e)
                continue
            if self._destinations is not None and not self._for_us(parsed):
                self.counts.not_for_us += 1
                continue
            self.push_packet(parsed.payload)

    def _for_us(self, parsed: net.UdpFrame) -> bool:
        mac = parsed.eth.destination
        if mac != self._local_mac and not (self._accept_multicast and mac >> 23 == 0x01005E << 1):
            return False
        return (parsed.ip.destination, parsed.udp.destination_port) in self._destinations

    def counters(self) -> dict[str, Any]:
        return dataclasses.asdict(self.counts)

    def status(self) -> dict[str, Any]:
        c = self.counts
        return {"expected_sequence": self.next_sequence, "last_gap_first": c.first_missing,
                "end_of_session_seen": int(c.end_of_session), "clock": self.clock}  # fmt: skip

    def set_clock(self, value: int) -> None:
        self.clock = value

    def feed_state(self) -> FeedState:
        c = self.counts
        return FeedState(messages=c.messages, gaps=c.gaps, duplicates=c.duplicates, end_of_session=c.end_of_session)

    @property
    def symbols(self) -> dict[int, str]:
        """Stock locate -> symbol, from the stock directory messages seen so far."""
        return self.model.symbols

    def push_packet(self, payload: bytes | bytearray | memoryview) -> None:
        """One MoldUDP64 downstream packet (a UDP payload)."""
        c = self.counts
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
        return bbo.join(batches)

    def clear_gap(self) -> None:
        self.gap = False
