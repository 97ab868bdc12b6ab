"""SoupBinTCP 3.0: the session layer that carries OUCH over TCP, every packet type.

A packet is a 2-byte big-endian packet length (counting the type byte and the payload, not itself), a 1-byte
packet type and the payload. The server and the client send distinct sets of packet types that share only
Debug '+'. Fixed packets are declared below as field tables that cover the whole packet (length and type
included); the variable ones (Debug, Sequenced Data, Unsequenced Data) declare their 3-byte header and carry
the rest as `payload`.

Sequenced Data packets carry no sequence number: Login Accepted gives the number of the next one and the
client counts from there. The login packets spell sequence numbers as right-justified ASCII digits
(Kind.NUMERIC) and session names as left-justified, space-padded ASCII (Kind.ALPHA).

Source: "SoupBinTCP 3.00" (Nasdaq).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import MalformedError, TruncatedError, WireError
from .fields import ALPHA, NUMERIC, UINT, Layout

HEARTBEAT_INTERVAL_S = 1.0
"""Either side sends a heartbeat when it has sent nothing else for this long."""
HEARTBEAT_TIMEOUT_S = 15.0
"""Either side may consider the link lost when it has received nothing for this long."""

LENGTH_WIDTH = 2
"""Bytes of the packet length field, which the packet length does not count."""
HEADER_LENGTH = 3
"""Packet length and packet type."""
MAX_PACKET_LENGTH = 0xFFFF
"""The largest packet length the 2-byte field can hold (type byte plus payload)."""


class Sender(enum.Enum):
    """Which end of the TCP connection sent a stream: it decides which packet types are valid."""

    SERVER = "server"
    CLIENT = "client"


_HEADER = (("packet_length", 0, 2, UINT), ("packet_type", 2, 1, ALPHA))


def _packet(type_: str, name: str, description: str, *body: tuple) -> Layout:
    tag = type_.encode("ascii")
    return Layout(f"soupbintcp_{name}", _HEADER + body, tag=tag, tag_field="packet_type", description=description)


# --- both directions ---------------------------------------------------------------------------------
DEBUG = _packet("+", "debug", "Debug: human-readable ASCII text follows")

# --- server -> client --------------------------------------------------------------------------------
LOGIN_ACCEPTED = _packet(
    "A",
    "login_accepted",
    "Login Accepted",
    ("session", 3, 10, ALPHA),
    ("sequence_number", 13, 20, NUMERIC),  # of the next Sequenced Data packet the server will send
)
LOGIN_REJECTED = _packet("J", "login_rejected", "Login Rejected", ("reject_reason_code", 3, 1, ALPHA))
SEQUENCED_DATA = _packet("S", "sequenced_data", "Sequenced Data: one higher-level message follows")
SERVER_HEARTBEAT = _packet("H", "server_heartbeat", "Server Heartbeat")
END_OF_SESSION = _packet("Z", "end_of_session", "End of Session")

# --- client -> server --------------------------------------------------------------------------------
LOGIN_REQUEST = _packet(
    "L",
    "login_request",
    "Login Request",
    ("username", 3, 6, ALPHA),
    ("password", 9, 10, ALPHA),
    ("requested_session", 19, 10, ALPHA),  # blank: the currently active session
    ("requested_sequence_number", 29, 20, NUMERIC),  # next Sequenced Data wanted; 0: start with the newest
)
UNSEQUENCED_DATA = _packet("U", "unsequenced_data", "Unsequenced Data: one higher-level message follows")
CLIENT_HEARTBEAT = _packet("R", "client_heartbeat", "Client Heartbeat")
LOGOUT_REQUEST = _packet("O", "logout_request", "Logout Request")

SERVER_PACKETS: dict[str, Layout] = {
    layout.tag.decode("ascii"): layout
    for layout in (DEBUG, LOGIN_ACCEPTED, LOGIN_REJECTED, SEQUENCED_DATA, SERVER_HEARTBEAT, END_OF_SESSION)
}
"""Packet type -> field table, for packets the server sends."""
CLIENT_PACKETS: dict[str, Layout] = {
    layout.tag.decode("ascii"): layout
    for layout in (DEBUG, LOGIN_REQUEST, UNSEQUENCED_DATA, CLIENT_HEARTBEAT, LOGOUT_REQUEST)
}
"""Packet type -> field table, for packets the client sends."""
PACKETS: dict[Sender, dict[str, Layout]] = {Sender.SERVER: SERVER_PACKETS, Sender.CLIENT: CLIENT_PACKETS}

VARIABLE_TYPES = frozenset("+SU")
"""Packet types whose payload follows the field table; every other type is exactly its table."""

LOGIN_REJECT_REASONS: dict[str, str] = {
    "A": "not authorized: no valid username and password combination in the Login Request",
    "S": "session not available: the requested session is not valid or not available",
}
REJECT_NOT_AUTHORIZED = "A"
REJECT_SESSION_NOT_AVAILABLE = "S"


@dataclass(frozen=True)
class Packet:
    """One decoded packet.

    `fields` is the record of the packet's field table (packet_length and packet_type included), `payload`
    the bytes after it: the message of a Sequenced or Unsequenced Data packet, the text of a Debug packet,
    b"" for the fixed packets. `offset` is where the packet starts in its stream.
    """

    packet_type: str
    fields: Any
    payload: bytes = b""
    offset: int = 0

    @property
    def wire_length(self) -> int:
        return LENGTH_WIDTH + self.fields.packet_length


# --- encoding ----------------------------------------------------------------------------------------

_ALL_PACKETS: Mapping[str, Layout] = {**SERVER_PACKETS, **CLIENT_PACKETS}


def encode(packet_type: str, payload: bytes = b"", /, **fields: Any) -> bytes:
    """One packet's bytes; the packet length is filled in. `payload` only for Debug and the Data packets."""
    layout = _ALL_PACKETS.get(packet_type)
    if layout is None:
        raise ValueError(f"{packet_type!r} is not a SoupBinTCP packet type (known: {''.join(_ALL_PACKETS)})")
    if {"packet_length", "packet_type"} & fields.keys():
        raise ValueError("SoupBinTCP packet length and type are filled in by encode, not given")
    if packet_type not in VARIABLE_TYPES:
        if payload:
            raise ValueError(f"SoupBinTCP {layout.description} packet takes no payload, got {len(payload)} bytes")
        return layout.pack(fields, packet_length=layout.length - LENGTH_WIDTH)
    length = layout.length - LENGTH_WIDTH + len(payload)
    if length > MAX_PACKET_LENGTH:
        raise ValueError(f"SoupBinTCP packet of {length} bytes exceeds the 2-byte packet length")
    return layout.pack(fields, packet_length=length) + bytes(payload)


def encode_debug(text: str) -> bytes:
    return encode("+", text.encode("ascii"))


def encode_login_accepted(session: str, sequence_number: int) -> bytes:
    return encode("A", session=session, sequence_number=sequence_number)


def encode_login_rejected(reject_reason_code: str) -> bytes:
    if reject_reason_code not in LOGIN_REJECT_REASONS:
        known = sorted(LOGIN_REJECT_REASONS)
        raise ValueError(f"login reject reason code must be one of {known}, got {reject_reason_code!r}")
    return encode("J", reject_reason_code=reject_reason_code)


def encode_sequenced_data(message: bytes) -> bytes:
    return encode("S", message)


def encode_login_request(
    username: str, password: str, requested_session: str = "", requested_sequence_number: int = 0
) -> bytes:
    """Blank `requested_session` logs into the current session; sequence number 0 starts with the newest."""
    return encode(
        "L",
        username=username,
        password=password,
        requested_session=requested_session,
        requested_sequence_number=requested_sequence_number,
    )


def encode_unsequenced_data(message: bytes) -> bytes:
    return encode("U", message)


# The packets without fields are constant: send these bytes rather than encoding them each time.
SERVER_HEARTBEAT_PACKET = encode("H")
END_OF_SESSION_PACKET = encode("Z")
CLIENT_HEARTBEAT_PACKET = encode("R")
LOGOUT_REQUEST_PACKET = encode("O")


# --- decoding ----------------------------------------------------------------------------------------


class SoupBinTCPFramer:
    """Cuts one direction of a TCP byte stream into packets.

    `feed(data)` accepts the bytes as they arrive, split anywhere (down to one byte at a time), and returns
    the packets completed by them. `sender` says which end sent the stream and so which packet types are
    valid. A packet length of 0 or above `max_packet_length`, a packet type the sender may not send, or a
    fixed packet whose length is not its table's raises MalformedError as soon as the bytes that show it
    have arrived; every error names the byte offset in the whole stream. After an error the stream cannot be
    resynchronised: the framer raises the same error on every later call. At the end of the stream,
    `finish()` raises TruncatedError if a packet was cut short. An OUCH session can pass
    `max_packet_length=1 + ouch.MAX_MESSAGE_LENGTH` to refuse a desynchronised stream at once, at the price
    of also refusing Debug packets longer than that.
    """

    def __init__(self, sender: Sender, max_packet_length: int = MAX_PACKET_LENGTH) -> None:
        if not 1 <= max_packet_length <= MAX_PACKET_LENGTH:
            raise ValueError(f"max_packet_length must be in 1..{MAX_PACKET_LENGTH}, got {max_packet_length}")
        self.sender = sender
        self.max_packet_length = max_packet_length
        self._packets = PACKETS[sender]
        self._buffer = bytearray()
        self._base = 0  # stream offset of _buffer[0]
        self._error: WireError | None = None

    @property
    def offset(self) -> int:
        """Stream offset of the next byte `feed` will receive."""
        return self._base + len(self._buffer)

    @property
    def pending(self) -> int:
        """Bytes received of a packet not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        if self._error is not None:
            raise self._error
        buf = self._buffer
        buf += data
        packets: list[Packet] = []
        at = 0
        try:
            while (size := self._complete_size(buf, at)) is not None:
                packets.append(self._decode(buf, at, size))
                at += size
        except WireError as e:
            self._error = type(e)(e.what, self._base + e.offset, e.expected, e.got)
            raise self._error from None
        finally:
            del buf[:at]
            self._base += at
        return packets

    def finish(self) -> None:
        """The stream has ended: raise TruncatedError if it ended inside a packet."""
        if self._error is not None:
            raise self._error
        if self._buffer:
            need = "a 2-byte packet length"
            if len(self._buffer) >= LENGTH_WIDTH:
                need = f"{LENGTH_WIDTH + int.from_bytes(self._buffer[:LENGTH_WIDTH], 'big')} packet bytes"
            got = f"{len(self._buffer)} bytes at end of stream"
            self._error = TruncatedError(f"SoupBinTCP {self.sender.value} packet", self._base, need, got)
            raise self._error

    def _complete_size(self, buf: bytearray, at: int) -> int | None:
        """Bytes of the packet at `at` if all have arrived, else None; checks the header as soon as it can."""
        if len(buf) - at < LENGTH_WIDTH:
            return None
        length = int.from_bytes(buf[at : at + LENGTH_WIDTH], "big")
        if not 1 <= length <= self.max_packet_length:
            raise MalformedError(
                f"SoupBinTCP {self.sender.value} packet",
                at,
                f"a packet length in 1..{self.max_packet_length} (type byte plus payload)",
                str(length),
            )
        if len(buf) - at < HEADER_LENGTH:
            return None
        type_byte = buf[at + LENGTH_WIDTH]
        layout = self._packets.get(chr(type_byte))
        if layout is None:
            raise MalformedError(
                f"SoupBinTCP {self.sender.value} packet",
                at + LENGTH_WIDTH,
                f"a packet type the {self.sender.value} sends ({''.join(self._packets)})",
                repr(bytes([type_byte])),
            )
        if chr(type_byte) not in VARIABLE_TYPES and length != layout.length - LENGTH_WIDTH:
            raise MalformedError(
                f"SoupBinTCP {layout.description}", at, f"packet length {layout.length - LENGTH_WIDTH}", str(length)
            )
        size = LENGTH_WIDTH + length
        return size if len(buf) - at >= size else None

    def _decode(self, buf: bytearray, at: int, size: int) -> Packet:
        layout = self._packets[chr(buf[at + LENGTH_WIDTH])]
        record = layout.unpack(buf, at)
        return Packet(record.packet_type, record, bytes(buf[at + layout.length : at + size]), self._base + at)


def decode_stream(
    data: bytes | bytearray | memoryview, sender: Sender, max_packet_length: int = MAX_PACKET_LENGTH
) -> list[Packet]:
    """All packets of a complete stream (e.g. one direction of a capture); it must end on a packet boundary."""
    framer = SoupBinTCPFramer(sender, max_packet_length)
    packets = framer.feed(data)
    framer.finish()
    return packets
