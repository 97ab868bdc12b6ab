"""Host-side feed input for look-aside mode: the feed the host receives, handed to the card as frames.

`SocketFeed` receives the MoldUDP64 feed on a kernel UDP socket (unicast, or a multicast group joined on
`interface`) and rebuilds each datagram's Ethernet / IPv4 / UDP frame around it (source as received,
destination the socket's group or address and port, the multicast MAC of a group or the card's own MAC
for unicast), because the card takes frames, as it does on the wire. `DpdkFeed` takes the frames
themselves off a DPDK port (driver/dpdk: kernel bypass, e.g. a NIC on the exchange's feed, or a pcap
replayed through net_pcap). Either one's `receive(card)` pushes what is waiting in one batch and returns how
many frames.
"""

from __future__ import annotations

import socket
from typing import Any

from ..proto import net
from .card import Card

__all__ = ["DpdkFeed", "SocketFeed"]

RECEIVE_BUFFER = 8 << 20


class SocketFeed:
    """A non-blocking UDP socket receiving the feed; see the module docstring."""

    def __init__(
        self, address: str, port: int, interface: str = "0.0.0.0", *, card_mac: str = "02:57:42:00:00:02"
    ) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.multicast = socket.inet_aton(address)[0] & 0xF0 == 0xE0
        self.socket.bind((address, port))
        if self.multicast:
            membership = socket.inet_aton(address) + socket.inet_aton(interface)
            self.socket.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        self.socket.setblocking(False)
        self.address = address
        self.port = self.socket.getsockname()[1]
        self.card_mac = None if self.multicast else card_mac  # None: the group's multicast MAC
        self.frames = 0
        self._flows: dict[tuple[str, int], net.UdpFlow] = {}

    @property
    def destination(self) -> str:
        """address:port, as the card's `groups` setting names it."""
        return f"{self.address}:{self.port}"

    def receive(self, card: Card, max_frames: int = 256, line: int = 0) -> int:
        """Push up to `max_frames` waiting datagrams to `card` as frames, in one batch; returns how many."""
        frames = []
        recvfrom = self.socket.recvfrom
        while len(frames) < max_frames:
            try:
                payload, source = recvfrom(65536)
            except BlockingIOError:
                break
            flow = self._flows.get(source)
            if flow is None:
                flow = self._flows[source] = self._flow(source)
            frames.append(flow.frame(payload))
        if frames:
            self.frames += len(frames)
            card.push_frames(frames, line)
        return len(frames)

    def _flow(self, source: tuple[str, int]) -> net.UdpFlow:
        # The source MAC is not known from a socket: a locally administered one derived from the address.
        source_mac = 0x02_00_00_00_00_00 | net.ipv4_address(source[0])
        return net.UdpFlow(source_mac, self.card_mac, source[0], self.address, source[1], self.port)

    def close(self) -> None:
        self.socket.close()


class DpdkFeed:
    """Feed frames off a DPDK port (a started driver.dpdk DpdkPort), pushed to the card as they came.

    A frame longer than the port's slot arrives truncated; it is dropped and counted in `truncated` (the card
    would drop it as a framing error anyway, and a cut frame must not look like a short valid one)."""

    def __init__(self, port: Any) -> None:
        self.port = port
        self.frames = 0
        self.truncated = 0

    def receive(self, card: Card, max_frames: int = 256, line: int = 0) -> int:
        frames, lengths = self.port.receive(max_frames)
        n = len(lengths)
        if not n:
            return 0
        slot = frames.shape[1]
        batch = [frames[i, : int(length)].tobytes() for i, length in enumerate(lengths) if length <= slot]
        self.truncated += n - len(batch)
        if batch:
            self.frames += len(batch)
            card.push_frames(batch, line)
        return n

    def close(self) -> None:
        self.port.close()
