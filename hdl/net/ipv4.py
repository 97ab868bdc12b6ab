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
    can start), so nothing waits for the ethertype. Emits as the beats pass, each check `resolved`
    combinationally with the offered beat (with the 20-byte header unless said otherwise) and `failed` from
    registers: it reads right from the cycle after the beat resolving the check is taken, until the next
    frame's header bytes (or, for the checksum, its first beat) are:

    - `header_check`: version 4, IHL >= 5, total length >= IHL*4 + `min_payload` (room for the UDP header);
    - `checksum_check`: the ones' complement sum of all IHL*4 header bytes, options included, is 0xFFFF
      (resolved when the last option byte has arrived; the sum is kept in a register as the beats pass);
    - `fragment_check`: not a fragment (more-fragments clear and fragment offset 0; DF is not looked at);
    - `protocol_check`: UDP (17);
    - `destination_check`: the destination address is a valid entry of `groups`; `group_hits` (registered, 1
      cycle after the beat bringing the address is offered) says which;
    - `header` (the 20 bytes as IPV4, combinationally).

    Registered (1 cycle after the IHL / total length bytes are taken, long before the bytes they place):
    `payload_start` (start + IHL*4) and `payload_length` (total length - IHL*4; later frame bytes are
    Ethernet padding).

    The checks only mean something in order, each after the ones before it passed (the IHL that places
    the options is only trusted once `header_check` passed). Latency 0 (`failed` 1); one beat a cycle. A frame that ends
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
        ihl = _bits(version_ihl, net.IPV4_IHL)
        header_length = Signal(6)
        m.d.comb += header_length.eq(ihl * 4)
        total_length = value(raw, net.IPV4, "total_length")
        complete = Mux(tagged, capture.has_bytes(net.IPV4.length + tag), capture.has_bytes(net.IPV4.length))
        for check in (self.header_check, self.fragment_check, self.protocol_check, self.destination_check):
            m.d.comb += check.resolved.eq(complete)
        # The checks' verdicts read the header as taken so far: registers only.
        kept = Signal(wire_shape(net.IPV4))
        m.d.comb += kept.eq(Mux(tagged, capture.kept[8 * tag :], capture.kept))
        kept_version_ihl = value(kept, net.IPV4, "version_ihl")
        kept_ihl = _bits(kept_version_ihl, net.IPV4_IHL)
        m.d.comb += self.header_check.failed.eq(
            (_bits(kept_version_ihl, net.IPV4_VERSION) != net.IPV4_VERSION_4)
            | (kept_ihl < net.IPV4_MIN_IHL)
            | (value(kept, net.IPV4, "total_length") < kept_ihl * 4 + self._min_payload)
        )

        # Positions computed from the header, registered: they are read many bytes after the bytes they
        # come from (the options end no sooner than 20 bytes after the IHL).
        header_end = Signal(OFFSET_WIDTH)
        header_last = Signal(OFFSET_WIDTH)  # the header's last byte
        m.d.sync += [
            header_end.eq(start + header_length),
            header_last.eq(start + header_length - 1),
            self.payload_length.eq(total_length - header_length),
        ]
        m.d.comb += self.payload_start.eq(header_end)

        # The checksum covers the options, which the capture does not keep: every header byte is summed
        # into a register as it passes (IPv4 starts at an even position, so an even position is the high
        # byte of its word). Which lanes of a beat to sum is registered, worked out the cycle before from
        # the positions (the first 20 bytes whatever the IHL; `header_end` is settled before any byte past
        # them). The sum starts at 14 whatever the ethertype (it is not known yet when bytes 14 and 15
        # pass): behind a tag, the word at 16 (the inner ethertype) is replaced by 0xFFFF minus the one at
        # 14 (the tag's TCI), which takes it back out of the ones' complement sum. The beat's words are
        # added in carry-save form with one carry chain at the end.
        lanes = self._data_width // 8
        lane_bits = (lanes - 1).bit_length()
        beat_of = tap.offset[lane_bits:]
        beat_after = beat_of + 1

        def before(beat: Value, end: Value | int, i: int) -> Value:
            """Frame position `lanes` * beat + i comes before `end`."""
            if lanes == 1:
                return beat < end
            end_beat, end_lane = end >> lane_bits, end & (lanes - 1)
            if isinstance(end, Value):
                end_beat, end_lane = end[lane_bits:], end[:lane_bits]
            return (beat < end_beat) | (beat == end_beat) & (i < end_lane)

        def inside(beat: Value) -> Value:
            untagged_end, tagged_end = untagged_start + net.IPV4.length, untagged_start + tag + net.IPV4.length
            return Cat(
                ~before(beat, untagged_start, i)
                & (
                    Mux(tagged, before(beat, tagged_end, i), before(beat, untagged_end, i))
                    | before(beat, header_end, i)
                )
                for i in range(lanes)
            )

        def next_beat(stays: Value, moves: Value, new_frame: Value) -> Value:
            """A value for the next cycle's beat: this one again, the one after it, or a new frame's first."""
            return Mux(tap.take, Mux(tap.last, new_frame, Mux(beat_of.all(), stays, moves)), stays)

        summed = Signal(lanes)  # the lanes of the beat that are header bytes
        m.d.sync += summed.eq(next_beat(inside(beat_of), inside(beat_after), 0))
        # The beat holds frame position 16 (and 17; lane 0 of a beat at 8 and 32 bits, each a beat at 8).
        vlan_word_at = net.ETHERNET_VLAN.by_name["ethertype"].offset  # where the tag's inner ethertype sits
        holds = Signal(2)
        m.d.sync += holds.eq(
            next_beat(
                Cat(beat_of == (vlan_word_at + k) >> lane_bits for k in range(2)),
                Cat(beat_after == (vlan_word_at + k) >> lane_bits for k in range(2)),
                0,
            )
        )
        tci = Signal(16)  # the word at 14 (the window starts there), a register by the time 16 passes
        m.d.sync += tci.eq(value(Cat(Const(0, 8 * untagged_start), fields), net.ETHERNET_VLAN, "tci"))
        if lanes == 1:
            masked = Mux(summed[0] & tap.filled[0], tap.data, 0)
            words = [Mux(tagged & holds[0], ~tci, Mux(tagged & holds[1], 0, Mux(tap.offset[0], masked, masked << 8)))]
        else:
            words = []
            for i in range(0, lanes, 2):  # lane parity is position parity
                high, low = (Mux(summed[j] & tap.filled[j], tap.data[8 * j : 8 * j + 8], 0) for j in (i, i + 1))
                words.append(Mux(tagged & holds[0], ~tci, Cat(low, high)) if i == 0 else Cat(low, high))
        total = Signal(22)  # 30 words of at most 0xFFFF, and the TCI's complement
        terms = [*words, Mux(tap.first, 0, total)]
        while len(terms) > 2:  # carry-save: three terms into two, one LUT level
            a, b, c, *rest = terms
            terms = [*rest, a ^ b ^ c, ((a & b) | (a & c) | (b & c)) << 1]
        with m.If(tap.take):
            m.d.sync += total.eq(sum(terms))
        # total = 0x10000 h + l is a multiple of 0xFFFF when h + l is, that is when l = 0xFFFF - h (h is
        # small): the ones' complement sum is 0xFFFF without folding it.
        last_beat, last_lane = header_last[lane_bits:], header_last[:lane_bits]
        if lanes == 1:
            reached = (tap.offset > header_last) | (tap.offset == header_last) & tap.filled[0]
        else:
            reached = (beat_of > last_beat) | (beat_of == last_beat) & tap.filled.bit_select(last_lane, 1)
        m.d.comb += [
            self.checksum_check.resolved.eq(complete & reached),
            self.checksum_check.failed.eq((total[:16] != ~Cat(total[16:], Const(0, 10))) & (total != 0)),
        ]

        flags = value(kept, net.IPV4, "flags_fragment_offset")
        m.d.comb += [
            self.fragment_check.failed.eq(
                _bits(flags, net.IPV4_FLAG_MORE_FRAGMENTS).any() | _bits(flags, net.IPV4_FRAGMENT_OFFSET).any()
            ),
            self.protocol_check.failed.eq(value(kept, net.IPV4, "protocol") != net.IP_PROTOCOL_UDP),
        ]

        destination = value(raw, net.IPV4, "destination")
        hits = Cat(self.groups[g].valid & (self.groups[g].address == destination) for g in range(self._n_groups))
        m.d.sync += self.group_hits.eq(hits)  # read by the UDP layer, whose header ends later
        m.d.comb += self.destination_check.failed.eq(~self.group_hits.any())
        return m
