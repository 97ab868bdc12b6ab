"""The stock directory as it passes on the feed: ITCH 'R' messages found in MoldUDP64 frames.

The card keeps books for the instruments in its instrument table; the host fills the table, so it has to
learn which locate is which symbol. In look-aside mode every feed frame passes through the host on its way
to the card: `DirectoryScanner.scan(frame)` returns the (locate, symbol) pairs of the directory messages in
it, so the driver can subscribe an instrument before the frame that announces it reaches the card (the
book's first orders for a locate come after its directory message).

Cost: one substring search (C) per frame for the bytes every directory message block starts with (its
length, 39, and 'R'); only a frame that has them is walked message by message. A frame that does not parse
as Ethernet / IPv4 / UDP / MoldUDP64 yields nothing: filtering and counting bad frames is the card's job.
"""

from __future__ import annotations

from ..proto import itch, moldudp64, net
from ..proto.errors import WireError

__all__ = ["DirectoryScanner"]

_DIRECTORY = itch.MESSAGES["R"]
_BLOCK_START = _DIRECTORY.length.to_bytes(2, "big") + b"R"


class DirectoryScanner:
    """(locate, symbol) pairs of the stock directory messages in feed frames."""

    def __init__(self) -> None:
        self.frames_walked = 0

    def scan(self, frame: bytes | bytearray | memoryview) -> list[tuple[int, str]]:
        if _BLOCK_START not in frame:
            return []
        self.frames_walked += 1
        try:
            payload = net.parse_udp_frame(frame).payload
            packet = moldudp64.decode_packet(payload)
        except WireError:
            return []
        found = []
        for message in packet.messages:
            if message[:1] == b"R" and len(message) == _DIRECTORY.length:
                directory = itch.decode(message)
                found.append((directory.stock_locate, directory.stock.strip()))
        return found
