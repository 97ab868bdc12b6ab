"""IPv4 layer of a feed line: the header (options skipped but summed) checked as it passes, and the
multicast group filter."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...proto import net
from ...proto.fields import Kind, Layout
from ..fields import value, wire_shape
from .header import CHECK, OFFSET_WIDTH, HeaderCapture, tap_layout

__all__ = ["GROUP", "Ipv4Parser"]

GROUP = data.StructLayout(
    {
        "valid": 1,
        "address": unsigned(32),  # IPv4 destination as an integer (233.54.12.111 is 0xE9360C6F)
        "port": unsigned(16),  # UDP destination port on that address
    }
)
"""One destination a feed line listens to: a multicast group and the UDP port the feed uses on it."""


def _bits(raw, bit_field: net.BitField):
    return raw[bit_field.shift : bit_field.shift + bit_field.width]


class Ipv4Parser(wiring.Component):
    """The IPv4 header behind the Ethernet header, read from `proto.net.IPV4` and checked as it passes.

    Accepts the tap, `tagged` (from the MAC layer: the header starts at 18, else at 14) and `groups` (the
    line's destinations). The header is captured from a fixed window of frame bytes 14..37 (both places it
    can start), so nothing waits for the ethertype. Emits, combinationally as the beats pass (resolved with
    the 20-byte header unless said otherwise):

    - `header_check`: version 4, IHL >= 5, total length >= IHL*4 + `min_payload` (room for the UDP header);
    - `checksum_check`: the ones' complement sum of all IHL*4 header bytes, options included, is 0xFFFF
      (resolved when the last option byte has arrived; the sum is kept in a register as the beats pass,
      so `failed` reads it the cycle after the beat resolving the check is taken, until the next frame's
      first beat is);
    - `fragment_check`: not a fragment (more-fragments clear and fragment offset 0; DF is not looked at);
    - `protocol_check`: UDP (17);
    - `destination_check`: the destination address is a valid entry of `groups`; `group_hits` says which;
    - `header` (the 20 bytes as IPV4).

    Registered (1 cycle after the IHL / total length bytes are taken, long before the bytes they place):
    `payload_start` (start + IHL*4) and `payload_length` (total length - IHL*4; later frame bytes are
    Ethernet padding).

    The checks only mean something in order, each after the ones before it passed (the IHL that places
    the options is only trusted once `header_check` passed). Latency 0; one beat a cycle. A frame that ends
    inside the header leaves its checks unresolved.
    """

    def __init__(self, data_width: int, n_groups: int, *, min_payload: int = net.UDP.length) -> None:
        self._data_width = data_width
        self._n_groups = n_groups
        self._min_payload = min_payload
        super().__init__(
            {
                "tap": In(tap_layout(data_width)),
                "tagged": In(1),
                "groups": In(data.ArrayLayout(GROUP, n_groups)),
                "header_check": Out(CHECK),
                "checksum_check": Out(CHECK),
                "fragment_check": Out(CHECK),
                "protocol_check": Out(CHECK),
                "destination_check": Out(CHECK),
                "group_hits": Out(n_groups),
                "payload_start": Out(OFFSET_WIDTH),
                "payload_length": Out(16),
                "header": Out(wire_shape(net.IPV4)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        tap, tagged = self.tap, self.tagged
        untagged_start, tag = net.ETHERNET.length, net.ETHERNET_VLAN.length - net.ETHERNET.length
        window = Layout("ipv4_window", [("bytes", 0, net.IPV4.length + tag, Kind.PAD)])
        m.submodules.capture = capture = HeaderCapture(window, self._data_width)
        m.d.comb += [capture.tap.eq(tap), capture.start.eq(untagged_start)]
        fields = capture.fields
        raw = Signal(wire_shape(net.IPV4))
        m.d.comb += [raw.eq(Mux(tagged, fields[8 * tag :], fields)), self.header.eq(raw)]
        start = Mux(tagged, net.ETHERNET_VLAN.length, untagged_start)

        version_ihl = value(raw, net.IPV4, "version_ihl")
        version, ihl = _bits(version_ihl, net.IPV4_VERSION), _bits(version_ihl, net.IPV4_IHL)
        header_length = Signal(6)
        m.d.comb += header_length.eq(ihl * 4)
        total_length = value(raw, net.IPV4, "total_length")
        complete = capture.received >= net.IPV4.length + Mux(tagged, tag, 0)
        for check in (self.header_check, self.fragment_check, self.protocol_check, self.destination_check):
            m.d.comb += check.resolved.eq(complete)
        m.d.comb += self.header_check.failed.eq(
            (version != net.IPV4_VERSION_4)
            | (ihl < net.IPV4_MIN_IHL)
            | (total_length < header_length + self._min_payload)
        )

        # Positions computed from the header, registered: they are read many bytes after the bytes they
        # come from (the options end no sooner than 20 bytes after the IHL).
        header_end = Signal(OFFSET_WIDTH)
        m.d.sync += [
            header_end.eq(start + header_length),
            self.payload_length.eq(total_length - header_length),
        ]
        m.d.comb += self.payload_start.eq(header_end)

        # The checksum covers the options, which the capture does not keep: every header byte is summed
        # into a register as it passes (IPv4 starts at an even position, so an even position is the high
        # byte of its word). The first 20 bytes are summed whatever the IHL; `header_end` is settled before
        # any byte past them. Lanes are placed by beat and lane compares against registers (no adders), the
        # beat's words are added to the sum in carry-save form with one carry chain at the end.
        lanes = self._data_width // 8
        lane_bits = (lanes - 1).bit_length()
        beat_of = tap.offset[lane_bits:]

        def before(end: Value, i: int) -> Value:
            """Frame position offset + i comes before `end`."""
            if lanes == 1:
                return tap.offset < end
            end_beat, end_lane = end[lane_bits:], end[:lane_bits]
            return (beat_of < end_beat) | (beat_of == end_beat) & (i < end_lane)

        fixed_end = Mux(tagged, untagged_start + tag + net.IPV4.length, untagged_start + net.IPV4.length)
        words = []
        for i in range(lanes):
            byte = tap.data[8 * i : 8 * i + 8]
            inside = ~before(start, i) & (before(fixed_end, i) | before(header_end, i)) & tap.filled[i]
            masked = Mux(inside, byte, 0)
            if lanes == 1:
                words.append(Mux(tap.offset[0], masked, masked << 8))
            else:
                words.append(masked << 8 if i % 2 == 0 else masked)  # lane parity is position parity
        total = Signal(22)  # 30 words of at most 0xFFFF
        terms = [*words, Mux(tap.first, 0, total)]
        while len(terms) > 2:  # carry-save: three terms into two, one LUT level
            a, b, c, *rest = terms
            terms = [*rest, a ^ b ^ c, ((a & b) | (a & c) | (b & c)) << 1]
        with m.If(tap.take):
            m.d.sync += total.eq(sum(terms))
        # total = 0x10000 h + l is a multiple of 0xFFFF when h + l is, that is when l = 0xFFFF - h (h is
        # small): the ones' complement sum is 0xFFFF without folding it.
        m.d.comb += [
            self.checksum_check.resolved.eq(complete & (tap.end >= header_end)),
            self.checksum_check.failed.eq((total[:16] != ~Cat(total[16:], Const(0, 10))) & (total != 0)),
        ]

        flags = value(raw, net.IPV4, "flags_fragment_offset")
        m.d.comb += [
            self.fragment_check.failed.eq(
                _bits(flags, net.IPV4_FLAG_MORE_FRAGMENTS).any() | _bits(flags, net.IPV4_FRAGMENT_OFFSET).any()
            ),
            self.protocol_check.failed.eq(value(raw, net.IPV4, "protocol") != net.IP_PROTOCOL_UDP),
        ]

        destination = value(raw, net.IPV4, "destination")
        m.d.comb += [
            self.group_hits.eq(
                Cat(self.groups[g].valid & (self.groups[g].address == destination) for g in range(self._n_groups))
            ),
            self.destination_check.failed.eq(~self.group_hits.any()),
        ]
        return m
