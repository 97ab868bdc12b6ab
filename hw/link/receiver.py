"""The receiving end of the host link: the frames for one UDP port of the card, kept whole in a buffer."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...hdl.fields import value
from ...hdl.net.ethernet import EthernetParser
from ...hdl.net.header import OFFSET_WIDTH, BeatTracker
from ...hdl.net.ipv4 import Ipv4Parser
from ...hdl.net.udp import UdpParser
from ...hdl.stream import frame_signature
from ...proto import net

__all__ = ["DATAGRAM", "DatagramReceiver"]

DATAGRAM = data.StructLayout(
    {
        "payload_start": unsigned(OFFSET_WIDTH),  # the UDP payload's first byte: its frame position
        "payload_length": unsigned(16),  # UDP length - 8
        "source_mac": unsigned(48),
        "source_ip": unsigned(32),
        "source_port": unsigned(16),
    }
)
"""A datagram held in the receiver's buffer: where its payload is, and where it came from."""


class DatagramReceiver(wiring.Component):
    """Frames in; the UDP datagrams to (`local_mac`, `local_ip`, `port`) kept whole in a buffer.

    Accepts on `frames` Ethernet frames without FCS (hdl.stream). The frame is parsed as it passes by the
    feed line's own stages (hdl.net: EthernetParser, Ipv4Parser, UdpParser, read from proto.net's tables)
    and written as it comes into a buffer of `buffer_bytes` (one `data_width` row a beat, frame byte p in
    row p // lanes, lane p % lanes; bytes past the buffer are not kept). A frame is kept when: the
    destination MAC is `local_mac` (48-bit integer, 02:00:00:00:00:01 is 0x020000000001); it is untagged
    (the link is point to point; an answer would need the tag); IPv4 passes proto.net's checks (version,
    IHL, total length, header checksum over the options too, not a fragment); it is UDP to `local_ip`
    port `port`, the UDP length equal to the IPv4 payload length, the UDP checksum right or 0 (summed as
    the beats pass: the model's kernel drops the same datagrams); the datagram lies wholly inside the
    frame (bytes after it are padding); every beat keeps hdl.stream's keep rules; and the buffer was free
    when its first beat came.
    Emits on `datagrams` the kept datagram (DATAGRAM: payload position in the buffer, length, source MAC,
    IPv4 address and port): valid from 4 cycles after the frame's last beat is taken until the transfer,
    which frees the buffer; meanwhile the consumer reads the buffer through `read_addr` / `read_data`
    (synchronous: the row comes the cycle after its address). Strobes, one cycle each, 4 cycles after a
    frame's last beat is taken: `accepted` (kept), `overrun` (it would have been kept but the buffer was still
    held: dropped), `ignored` (not for us, or malformed: dropped).
    Throughput: one beat a cycle; `frames.ready` is low for the three cycles after each frame's last beat
    (the verdict, registered in steps, is taken then, with no beat of the next frame on the parsers).
    Nothing else stalls the input.
    """

    def __init__(self, data_width: int, *, port: int, buffer_bytes: int = 2048) -> None:
        self.data_width = data_width
        self.port = port
        lanes = data_width // 8
        if buffer_bytes % lanes or buffer_bytes < 64:
            raise ValueError(f"buffer_bytes must be a multiple of {lanes} and at least 64, got {buffer_bytes}")
        self.buffer_bytes = buffer_bytes
        self.rows = buffer_bytes // lanes
        super().__init__(
            {
                "frames": In(frame_signature(data_width)),
                "local_mac": In(48),
                "local_ip": In(32),
                "datagrams": Out(stream.Signature(DATAGRAM)),
                "read_addr": In(range(self.rows)),
                "read_data": Out(data_width),
                "accepted": Out(1),
                "overrun": Out(1),
                "ignored": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        width, frames = self.data_width, self.frames
        lane_bits = (width // 8 - 1).bit_length()
        m.submodules.buffer = buffer = memory.Memory(shape=unsigned(width), depth=self.rows, init=[])
        write, read = buffer.write_port(), buffer.read_port()
        m.d.comb += [read.addr.eq(self.read_addr), self.read_data.eq(read.data)]

        m.submodules.tracker = tracker = BeatTracker(width)
        m.submodules.ethernet = ethernet = EthernetParser(width)
        m.submodules.ipv4 = ipv4 = Ipv4Parser(width, 1)
        m.submodules.udp = udp = UdpParser(width, 1)
        tap = tracker.tap

        # The verdict on a frame takes the three cycles after its last beat, with no beat on the parsers.
        judging = Signal(3)
        take = frames.valid & frames.ready
        m.d.comb += [
            frames.ready.eq(~judging.any()),
            tracker.beat.eq(frames.payload),
            tracker.valid.eq(frames.valid & frames.ready),
            tracker.take.eq(take),
            ethernet.tap.eq(tap),
            ethernet.local_mac.eq(self.local_mac),
            ethernet.accept_multicast.eq(0),
            ipv4.tap.eq(tap),
            ipv4.tagged.eq(ethernet.tagged),
            udp.tap.eq(tap),
            udp.start.eq(ipv4.payload_start),
            udp.ip_payload_length.eq(ipv4.payload_length),
            udp.group_hits.eq(ipv4.group_hits),
        ]
        for groups in (ipv4.groups, udp.groups):  # one destination: the card's address and port
            m.d.comb += [groups[0].valid.eq(1), groups[0].address.eq(self.local_ip), groups[0].port.eq(self.port)]

        # The frame goes into the buffer as it comes, if the buffer was free at its first beat.
        held = Signal()  # the buffer holds a datagram not yet released
        storing = Signal()
        storing_now = Mux(tap.first, ~held, storing)
        row = tap.offset[lane_bits:]
        m.d.comb += [
            write.addr.eq(row),
            write.data.eq(frames.payload.data),
            write.en.eq(take & storing_now & (row < self.rows)),
        ]

        # Each check is resolved by the beat bringing its last byte. As in FeedLine, the UDP layer's checks
        # are decided with that beat (registered at the frame's last beat, with every header field the
        # datagram carries), the MAC and IPv4 ones from the bytes taken, registers read the cycle after.
        late = (
            ethernet.mac_check,
            ethernet.ethertype_check,
            ipv4.header_check,
            ipv4.checksum_check,
            ipv4.fragment_check,
            ipv4.protocol_check,
            ipv4.destination_check,
        )
        early = (udp.port_check, udp.length_check)
        udp_sum = self._udp_sum(m, tap, ipv4, take)

        resolved = Signal(len(late) + len(early))
        early_failed, late_failed = Signal(len(early)), Signal(len(late))
        keep_broken, no_checksum, fits = Signal(), Signal(), Signal()
        frame_end = Signal(OFFSET_WIDTH + 1)
        udp_sum_folded = Signal(17)
        arrived = self.datagrams.payload  # written only for a stored frame: the buffer is not held then
        with m.If(take):
            m.d.sync += [storing.eq(storing_now), keep_broken.eq(keep_broken | tap.bad_keep)]
            with m.If(tap.last):
                m.d.sync += [
                    judging[0].eq(1),
                    resolved.eq(Cat(check.resolved for check in (*late, *early))),
                    early_failed.eq(Cat(check.failed for check in early)),
                    no_checksum.eq(value(udp.header, net.UDP, "checksum") == 0),
                    frame_end.eq(tap.end),
                ]
                with m.If(storing_now):
                    m.d.sync += [
                        arrived.source_mac.eq(value(ethernet.header, net.ETHERNET, "source")),
                        arrived.source_ip.eq(value(ipv4.header, net.IPV4, "source")),
                        arrived.source_port.eq(value(udp.header, net.UDP, "source_port")),
                    ]
        m.d.sync += [judging[1:].eq(judging[:-1]), self.accepted.eq(0), self.overrun.eq(0), self.ignored.eq(0)]
        with m.If(judging[0]):
            m.d.sync += [
                judging[0].eq(0),
                late_failed.eq(Cat(check.failed for check in late)),
                fits.eq(udp.payload_start + udp.payload_length <= frame_end),
            ]
            with m.If(storing):
                m.d.sync += [arrived.payload_start.eq(udp.payload_start), arrived.payload_length.eq(udp.payload_length)]
        with m.If(judging[1]):  # the sum has the last beat's words now
            m.d.sync += udp_sum_folded.eq(udp_sum[:16] + udp_sum[16:])
        with m.If(judging[2]):
            udp_sum_ok = (udp_sum_folded[:16] + udp_sum_folded[16:])[:16] == 0xFFFF  # 0 modulo 0xFFFF
            passed = (
                resolved.all()
                & ~late_failed.any()
                & ~early_failed.any()
                & ~keep_broken
                & ~ethernet.tagged
                & fits
                & (no_checksum | udp_sum_ok)
            )
            m.d.sync += keep_broken.eq(0)
            with m.If(passed & storing):
                m.d.sync += [held.eq(1), self.accepted.eq(1)]
            with m.Elif(passed):
                m.d.sync += self.overrun.eq(1)
            with m.Else():
                m.d.sync += self.ignored.eq(1)
        m.d.comb += self.datagrams.valid.eq(held)
        with m.If(self.datagrams.valid & self.datagrams.ready):
            m.d.sync += held.eq(0)
        return m

    def _udp_sum(self, m: Module, tap, ipv4: Ipv4Parser, take) -> Signal:
        """The sum (not folded) of the 16-bit words proto.net.udp_checksum covers, as the beats pass: the
        pseudo-header (the IPv4 addresses, summed where they pass in the IPv4 header; the protocol, the sum's
        start; the UDP length, its word in the UDP header counted twice) and the UDP segment (header and
        payload, IPv4 payload_start .. its end, checksum included). Every such word starts at an even frame
        position, so a byte's position parity says whether it is a high or a low byte; an odd last byte is
        a high byte (its low one, past the end, is masked to 0). Where the segment starts and ends is
        registered from the IPv4 header (IHL, total length) long before its first byte, which comes no
        sooner than `first` (tagged frames are refused, so there is no other place to watch)."""
        lanes = self.data_width // 8
        addresses = net.ETHERNET.length + net.IPV4.by_name["source"].offset
        first = net.ETHERNET.length + net.IPV4.length
        end, length_at = Signal(OFFSET_WIDTH + 1), Signal(OFFSET_WIDTH + 1)
        m.d.sync += [
            end.eq(ipv4.payload_start + ipv4.payload_length),
            length_at.eq(ipv4.payload_start + net.UDP.by_name["length"].offset),
        ]
        # Stage 1, with the beat: its bytes in the sum, masked (a lane of the UDP length doubled).
        octets = Signal(9 * lanes)
        summing, first_beat = Signal(), Signal()
        m.d.sync += [summing.eq(take), first_beat.eq(tap.first)]
        for i in range(lanes):
            at = tap.offset + i
            inside = (at >= addresses) & ((at < first) | (at >= ipv4.payload_start) & (at < end)) & tap.filled[i]
            octet = Mux(inside, tap.data[8 * i : 8 * i + 8], 0)
            m.d.sync += octets[9 * i : 9 * i + 9].eq(Mux((at == length_at) | (at == length_at + 1), octet << 1, octet))
        # Stage 2, the cycle after: the beat's bytes added in place (high bytes shifted up), in carry-save form
        # with one carry chain at the end.
        octet = [octets[9 * i : 9 * i + 9] for i in range(lanes)]
        if lanes == 1:
            odd = Signal()  # the byte is at an odd position: a low byte
            m.d.sync += odd.eq(tap.offset[0])
            placed = [Mux(odd, octet[0], octet[0] << 8)]
        else:
            placed = [octet[i] << 8 if i % 2 == 0 else octet[i] for i in range(lanes)]
        total = Signal(32)  # below 2**32 for any IPv4 packet
        terms = [*placed, Mux(first_beat, net.IP_PROTOCOL_UDP, total)]
        while len(terms) > 2:  # three terms into two, one LUT level each
            a, b, c, *rest = terms
            terms = [*rest, a ^ b ^ c, ((a & b) | (a & c) | (b & c)) << 1]
        with m.If(summing):
            m.d.sync += total.eq(sum(terms))
        return total
