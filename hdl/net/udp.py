"""UDP layer of a feed line: the header checked against the group the IPv4 destination matched."""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...proto import net
from ..fields import value, wire_shape
from .header import CHECK, OFFSET_WIDTH, HeaderCapture, tap_layout
from .ipv4 import GROUP

__all__ = ["UdpParser"]


class UdpParser(wiring.Component):
    """The UDP header at frame position `start` (the IPv4 payload), read from `proto.net.UDP`.

    Accepts the tap, `start` and `ip_payload_length` from the IPv4 layer, the line's `groups` and
    `group_hits` (the entries whose address the IPv4 destination matched). Emits, combinationally as the
    beats pass, both resolved with the 8-byte header:

    - `port_check`: the destination port is the port of an entry the destination address matched;
    - `length_check`: the UDP length equals the IPv4 payload length and leaves at least `min_payload` bytes of
      payload (the header of the protocol carried);
    - `header` (the 8 bytes as UDP); registered, 1 cycle after the bytes they come from: `payload_start`
      (start + 8) and `payload_length` (UDP length - 8).

    `start` must be settled the cycle before the beat carrying the header's first byte, `ip_payload_length`
    by that beat, `group_hits` by the beat carrying its last.
    The checksum is not verified (the MoldUDP64 sequence numbers catch what it would). Latency 0; one beat
    a cycle. A frame that ends inside the header leaves its checks unresolved.
    """

    def __init__(self, data_width: int, n_groups: int, *, min_payload: int = 0) -> None:
        self._data_width = data_width
        self._n_groups = n_groups
        self._min_payload = min_payload
        super().__init__(
            {
                "tap": In(tap_layout(data_width)),
                "start": In(OFFSET_WIDTH),
                "ip_payload_length": In(16),
                "groups": In(data.ArrayLayout(GROUP, n_groups)),
                "group_hits": In(n_groups),
                "port_check": Out(CHECK),
                "length_check": Out(CHECK),
                "payload_start": Out(OFFSET_WIDTH),
                "payload_length": Out(16),
                "header": Out(wire_shape(net.UDP)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.capture = capture = HeaderCapture(net.UDP, self._data_width)
        m.d.comb += [capture.tap.eq(self.tap), capture.start.eq(self.start), self.header.eq(capture.fields)]
        raw = capture.fields

        port = value(raw, net.UDP, "destination_port")
        port_hits = Cat(self.group_hits[g] & (self.groups[g].port == port) for g in range(self._n_groups))
        length = value(raw, net.UDP, "length")
        m.d.comb += [
            self.port_check.resolved.eq(capture.has()),
            self.port_check.failed.eq(~port_hits.any()),
            self.length_check.resolved.eq(capture.has()),
            self.length_check.failed.eq(
                (length != self.ip_payload_length) | (length < net.UDP.length + self._min_payload)
            ),
        ]
        m.d.sync += [
            self.payload_start.eq(self.start + net.UDP.length),
            self.payload_length.eq(length - net.UDP.length),
        ]
        return m
