"""MAC layer of a feed line: the Ethernet II header, one 802.1Q tag tolerated, checked as it passes."""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...proto import net
from ..fields import value, wire_shape
from .header import CHECK, HeaderCapture, tap_layout

__all__ = ["MULTICAST_PREFIX", "EthernetParser"]

MULTICAST_PREFIX = net.multicast_mac("224.0.0.0") >> 23
"""The top 25 bits of every IPv4 multicast MAC (01:00:5e, then a 0 bit; RFC 1112)."""


class EthernetParser(wiring.Component):
    """The Ethernet header of every frame on the tap, read from `proto.net.ETHERNET` / `ETHERNET_VLAN`.

    Accepts the tap and the line's configuration: `local_mac` (48-bit integer, 01:02:03:04:05:06 is
    0x010203040506) and `accept_multicast` (also accept destinations 01:00:5e:0xxxxx).
    Emits, as the beats pass (`resolved` combinationally with the offered beat; `failed` from the bytes of
    the beats taken so far, registers, so it reads right from the cycle after the beat resolving the
    check is taken, until the next frame's header bytes are):

    - `mac_check`: the destination is `local_mac` or an accepted multicast address (resolved with the 14-byte
      header);
    - `ethertype_check`: IPv4, or an 802.1Q tag whose inner ethertype is IPv4 (resolved with the 14-byte
      header, or the 18-byte one behind a tag);
    - `tagged` (a register): the outer ethertype is 802.1Q (the IPv4 header starts at 18, not 14), valid
      from the cycle after the beat completing the 14-byte header is taken; `header`: the 18 bytes at the
      frame's start (as ETHERNET_VLAN; ETHERNET reads its first 14).

    Latency 0 (`resolved` and `header` are functions of the bytes taken and the offered beat; `failed` 1);
    one beat a cycle.
    A frame shorter than the header leaves its checks unresolved.
    """

    def __init__(self, data_width: int) -> None:
        self._data_width = data_width
        super().__init__(
            {
                "tap": In(tap_layout(data_width)),
                "local_mac": In(48),
                "accept_multicast": In(1),
                "mac_check": Out(CHECK),
                "ethertype_check": Out(CHECK),
                "tagged": Out(1),
                "header": Out(wire_shape(net.ETHERNET_VLAN)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.capture = capture = HeaderCapture(net.ETHERNET_VLAN, self._data_width)
        m.d.comb += [capture.tap.eq(self.tap), capture.start.eq(0), self.header.eq(capture.fields)]
        raw, kept = capture.fields, capture.kept

        destination = value(kept, net.ETHERNET, "destination")
        multicast = self.accept_multicast & (destination[23:] == MULTICAST_PREFIX)
        m.d.comb += [
            self.mac_check.resolved.eq(capture.has_bytes(net.ETHERNET.length)),
            self.mac_check.failed.eq((destination != self.local_mac) & ~multicast),
        ]

        tagged = value(raw, net.ETHERNET, "ethertype") == net.ETHERTYPE_VLAN
        outer, inner = value(kept, net.ETHERNET, "ethertype"), value(kept, net.ETHERNET_VLAN, "ethertype")
        m.d.comb += [
            self.ethertype_check.resolved.eq(
                Mux(tagged, capture.has_bytes(net.ETHERNET_VLAN.length), capture.has_bytes(net.ETHERNET.length))
            ),
            self.ethertype_check.failed.eq(Mux(outer == net.ETHERTYPE_VLAN, inner, outer) != net.ETHERTYPE_IPV4),
        ]
        with m.If(self.tap.take & capture.has_bytes(net.ETHERNET.length)):
            m.d.sync += self.tagged.eq(tagged)
        return m
