"""MoldUDP64 1.00: the UDP framing that carries ITCH downstream, and its re-request packet.

Downstream packet: a 20-byte header (session, sequence number of the first message, message count) then
`message count` message blocks, each a 2-byte big-endian length and the message. Special counts: 0 is a
heartbeat (sequence = the next sequence the server will send), 0xFFFF is end of session (sequence = the
next sequence; no message follows). Request packet (client -> re-request server): session, first
sequence wanted, count wanted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import MalformedError, TruncatedError
from .fields import ALPHA, UINT, Layout

HEADER = Layout(
    "moldudp64_header",
    (
        ("session", 0, 10, ALPHA),
        ("sequence_number", 10, 8, UINT),
        ("message_count", 18, 2, UINT),
    ),
    description="MoldUDP64 downstream packet header",
)
REQUEST = Layout(
    "moldudp64_request",
    (
        ("session", 0, 10, ALPHA),
        ("sequence_number", 10, 8, UINT),
        ("requested_message_count", 18, 2, UINT),
    ),
    description="MoldUDP64 re-request packet",
)
BLOCK = Layout(
    "moldudp64_message_block",
    (("length", 0, 2, UINT),),
    description="the length that precedes every message in a downstream packet (the message follows)",
)
HEADER_LENGTH = HEADER.length
HEARTBEAT_COUNT = 0
END_OF_SESSION_COUNT = 0xFFFF
MAX_MESSAGES_PER_PACKET = 0xFFFE


@dataclass(frozen=True)
class Packet:
    """A decoded downstream packet. `messages` are the raw message bytes (without block lengths)."""

    session: str
    sequence_number: int
    messages: tuple[bytes, ...]
    end_of_session: bool = False

    @property
    def is_heartbeat(self) -> bool:
        return not self.messages and not self.end_of_session

    @property
    def next_sequence(self) -> int:
        return self.sequence_number + len(self.messages)


def encode_packet(session: str, sequence_number: int, messages: Sequence[bytes]) -> bytes:
    """A downstream packet carrying `messages`, the first of which has `sequence_number`."""
    if len(messages) > MAX_MESSAGES_PER_PACKET:
        raise ValueError(f"a MoldUDP64 packet carries at most {MAX_MESSAGES_PER_PACKET} messages")
    parts = [HEADER.pack(session=session, sequence_number=sequence_number, message_count=len(messages))]
    for m in messages:
        if len(m) > 0xFFFF:
            raise ValueError(f"MoldUDP64 message of {len(m)} bytes exceeds the 2-byte length")
        parts.append(BLOCK.pack(length=len(m)))
        parts.append(m)
    return b"".join(parts)


def encode_heartbeat(session: str, next_sequence: int) -> bytes:
    return HEADER.pack(session=session, sequence_number=next_sequence, message_count=HEARTBEAT_COUNT)


def encode_end_of_session(session: str, next_sequence: int) -> bytes:
    return HEADER.pack(session=session, sequence_number=next_sequence, message_count=END_OF_SESSION_COUNT)


def encode_request(session: str, sequence_number: int, count: int) -> bytes:
    return REQUEST.pack(session=session, sequence_number=sequence_number, requested_message_count=count)


def decode_request(payload: bytes) -> tuple[str, int, int]:
    if len(payload) != REQUEST.length:
        raise MalformedError("MoldUDP64 request", 0, f"{REQUEST.length} bytes", f"{len(payload)} bytes")
    r = REQUEST.unpack(payload)
    return r.session, r.sequence_number, r.requested_message_count


def decode_packet(payload: bytes | bytearray | memoryview) -> Packet:
    """Decode a downstream packet; the offsets in errors are within the UDP payload."""
    head = HEADER.unpack(payload)
    count = head.message_count
    if count == END_OF_SESSION_COUNT:
        if len(payload) != HEADER_LENGTH:
            raise MalformedError(
                "MoldUDP64 end-of-session packet",
                HEADER_LENGTH,
                "no message blocks",
                f"{len(payload) - HEADER_LENGTH} trailing bytes",
            )
        return Packet(head.session, head.sequence_number, (), end_of_session=True)
    messages = []
    at = HEADER_LENGTH
    for i in range(count):
        if at + BLOCK.length > len(payload):
            raise TruncatedError(f"MoldUDP64 message block {i} of {count}", at, "a 2-byte length", "end of packet")
        length = BLOCK.unpack(payload, at).length
        at += BLOCK.length
        if at + length > len(payload):
            raise TruncatedError(
                f"MoldUDP64 message block {i} of {count}",
                at - BLOCK.length,
                f"{length} message bytes",
                f"{len(payload) - at} bytes left",
            )
        messages.append(bytes(payload[at : at + length]))
        at += length
    if at != len(payload):
        raise MalformedError(
            "MoldUDP64 packet", at, f"end of packet after {count} message blocks", f"{len(payload) - at} more bytes"
        )
    return Packet(head.session, head.sequence_number, tuple(messages))


def packetize(
    session: str, first_sequence: int, messages: Iterable[bytes], max_payload: int = 1400
) -> Iterable[tuple[int, bytes]]:
    """Pack a message stream into packets of at most `max_payload` UDP payload bytes.

    Yields (sequence number of the packet's first message, packet bytes).
    """
    batch: list[bytes] = []
    size = HEADER_LENGTH
    sequence = first_sequence
    for m in messages:
        block = 2 + len(m)
        if batch and (size + block > max_payload or len(batch) == MAX_MESSAGES_PER_PACKET):
            yield sequence, encode_packet(session, sequence, batch)
            sequence += len(batch)
            batch, size = [], HEADER_LENGTH
        batch.append(m)
        size += block
    if batch:
        yield sequence, encode_packet(session, sequence, batch)
