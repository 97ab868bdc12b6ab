"""The receiving end of the host link: the frames for one UDP port of the card, kept whole in a buffer."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...hdl.fields import value, wire_shape
from ...hdl.net.header import OFFSET_WIDTH
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

IPV4_AT = net.ETHERNET.length  # untagged frames only: the IPv4 header always starts here
ADDRESSES = (IPV4_AT + net.IPV4.by_name["source"].offset, IPV4_AT + net.IPV4.by_name["destination"].end)
"""Frame positions of the IPv4 addresses (source, destination): the pseudo-header's part of the UDP sum."""
MAX_IHL = (1 << net.IPV4_IHL.width) - 1


def _bits(raw: Value, bit_field: net.BitField) -> Value:
    return raw[bit_field.shift : bit_field.shift + bit_field.width]


class DatagramReceiver(wiring.Component):
    """Frames in; the UDP datagrams to (`local_mac`, `local_ip`, `port`) kept whole in a buffer.

    Accepts on `frames` Ethernet frames without FCS (hdl.stream), each written as it comes into a buffer of
    `buffer_bytes` (one `data_width` row a beat, frame byte p in row p // lanes, lane p % lanes; bytes past
    the buffer are not kept) if the buffer was free when its first beat came. A frame is kept when: the
    destination MAC is `local_mac` (48-bit integer, 02:00:00:00:00:01 is 0x020000000001); the ethertype is
    IPv4 (so it is untagged: the link is point to point, and an answer would need the tag); IPv4 passes
    proto.net's checks (version 4, IHL >= 5, total length >= the header + 8, header checksum over the
    options too, not a fragment); it is UDP to `local_ip` port `port`, the UDP length equal to the IPv4
    payload length, the UDP checksum right or 0 (the model's kernel drops the same datagrams); the
    datagram lies wholly inside the frame (bytes after it are padding); every beat keeps hdl.stream's keep
    rules; and the buffer was free.
    How: untagged, the headers sit at fixed places up to the IPv4 options, so the header bytes the checks
    read are captured as the beats pass into registers at fixed places (where proto.net's tables say; a
    clock enable per beat, no lane muxing), the UDP header's by the beat count the IHL gives (its lane is
    fixed at 8 and 32 bits; at 64 the IHL's parity picks one of two). Two ones' complement sums run as
    the beats pass (lane masks registered, then added): the IPv4 header's, options included, and the UDP
    checksum's (the protocol as its start, the IPv4 addresses, the UDP segment; the pseudo-header's UDP
    length is added when the frame is judged). The verdict is taken from those registers in the three
    cycles after the frame's last beat, registered in steps.
    Emits on `datagrams` the kept datagram (DATAGRAM: payload position in the buffer, length, source MAC,
    IPv4 address and port): valid from 4 cycles after the frame's last beat is taken until the transfer,
    which frees the buffer; meanwhile the consumer reads the buffer through `read_addr` / `read_data`
    (synchronous: the row comes the cycle after its address). Strobes, one cycle each, 4 cycles after a
    frame's last beat is taken: `accepted` (kept), `overrun` (it would have been kept but the buffer was
    still held: dropped), `ignored` (dropped: not for us, malformed, ending inside its headers or before
    the IPv4 packet's end, or breaking the keep rules; rows it wrote into a free buffer are left unread).
    Latency 4 cycles from the last beat to the verdict. Throughput: one beat a cycle; `frames.ready` is low
    for the three cycles after each frame's last beat and never otherwise (frame positions saturate far
    beyond any IPv4 packet, so a frame of any length is taken).
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
        frames = self.frames
        lanes = self.data_width // 8
        lane_bits = (lanes - 1).bit_length()
        beat, keep, last = frames.payload.data, frames.payload.keep, frames.payload.last

        def lane(i: int) -> Value:
            return beat[8 * i : 8 * i + 8]

        m.submodules.buffer = buffer = memory.Memory(shape=unsigned(self.data_width), depth=self.rows, init=[])
        write, read = buffer.write_port(), buffer.read_port()
        m.d.comb += [read.addr.eq(self.read_addr), self.read_data.eq(read.data)]

        # The verdict on a frame takes the three cycles after its last beat, with no beat coming in.
        judging = Signal(3)
        take = frames.valid & frames.ready
        m.d.comb += frames.ready.eq(~judging.any())

        # The beat's place in its frame: it holds frame bytes lanes * index .. (positions saturate far
        # beyond any IPv4 packet, so an endless frame only stops moving).
        index = Signal(OFFSET_WIDTH - lane_bits)
        with m.If(take):
            with m.If(last):
                m.d.sync += index.eq(0)
            with m.Elif(~index.all()):
                m.d.sync += index.eq(index + 1)
        first = index == 0

        def at_beat(k: int) -> Value:
            return index == k

        # The frame goes into the buffer as it comes, if the buffer was free at its first beat.
        held = Signal()  # the buffer holds a datagram not yet released
        storing = Signal()
        storing_now = Mux(first, ~held, storing)
        with m.If(take):
            m.d.sync += storing.eq(storing_now)
        m.d.comb += [
            write.addr.eq(index),
            write.data.eq(beat),
            write.en.eq(take & storing_now & (index < self.rows)),
        ]

        # Header bytes captured at fixed places. The source fields are the datagram's, so they are written
        # only for a frame going into the buffer (they stay while it is held); the others are the checks'.
        # No reset (nor for the sums' masked bytes and `end_at`): each is read only after the frame wrote it.
        ethernet, ipv4, udp = (Signal(wire_shape(h), reset_less=True) for h in (net.ETHERNET, net.IPV4, net.UDP))

        def capture(header: Signal, layout, start: int, *names: str, held_fields: bool = False) -> None:
            for name in names:
                field = layout.by_name[name]
                for k in range(field.offset, field.end):
                    beat_of, lane_of = divmod(start + k, lanes)
                    with m.If(take & at_beat(beat_of) & (storing_now if held_fields else 1)):
                        m.d.sync += header[8 * k : 8 * k + 8].eq(lane(lane_of))

        capture(ethernet, net.ETHERNET, 0, "destination", "ethertype")
        capture(ethernet, net.ETHERNET, 0, "source", held_fields=True)
        checked = ("version_ihl", "total_length", "flags_fragment_offset", "protocol", "destination")
        capture(ipv4, net.IPV4, IPV4_AT, *checked)
        capture(ipv4, net.IPV4, IPV4_AT, "source", held_fields=True)

        ihl = _bits(value(ipv4, net.IPV4, "version_ihl"), net.IPV4_IHL)
        total_length = value(ipv4, net.IPV4, "total_length")

        # Where the UDP header starts (the IPv4 options' end): from the IHL, captured long before the UDP
        # header's first beat (no sooner than frame position 34). Its lane is fixed at 8 and 32 bits; at 64
        # it is one of two, by the IHL's parity.
        udp_at = Signal(range(IPV4_AT + 4 * MAX_IHL + 1))
        m.d.comb += udp_at.eq(IPV4_AT + ihl * 4)
        udp_beat, udp_lane = udp_at[lane_bits:], udp_at[:lane_bits]
        offsets = sorted({(IPV4_AT + 4 * n) % lanes for n in range(net.IPV4_MIN_IHL, MAX_IHL + 1)})
        ip_first_beat, ip_first_lane = divmod(IPV4_AT, lanes)

        # Regions of the frame, as flags the beats move (set or cleared by the beat taken):
        # `in_ip`: past the IPv4 header's first beat (so the IHL is this frame's), up to the UDP header's
        # first (`udp_first` then);
        # `in_udp`: past the UDP header's first beat, up to the beat of the IPv4 packet's last byte
        # (`at_end`: 13 + total length, registered long before it comes).
        in_ip, in_udp = Signal(), Signal()
        end_at = Signal(OFFSET_WIDTH, reset_less=True)
        m.d.sync += end_at.eq(IPV4_AT - 1 + total_length)
        end_beat, end_lane = end_at[lane_bits:], end_at[:lane_bits]
        udp_first = in_ip & (index == udp_beat)
        at_end = (udp_first | in_udp) & (index == end_beat)
        with m.If(take):
            with m.If(last):
                m.d.sync += [in_ip.eq(0), in_udp.eq(0)]
            with m.Else():
                with m.If(at_beat(ip_first_beat)):
                    m.d.sync += in_ip.eq(1)
                with m.If(udp_first):
                    m.d.sync += [in_ip.eq(0), in_udp.eq(1)]
                with m.If(at_end):
                    m.d.sync += in_udp.eq(0)
        # The UDP header's beats: udp_first, then the ones after it.
        phases = max((o + net.UDP.length - 1) // lanes for o in offsets) + 1
        later = Signal(phases - 1)
        with m.If(take):
            m.d.sync += later.eq(Mux(last, 0, Cat(udp_first, later[:-1])))
        udp_phase = [udp_first, *later]

        def capture_udp(*names: str, held_fields: bool = False) -> None:
            for name in names:
                field = net.UDP.by_name[name]
                for k in range(field.offset, field.end):
                    with m.If(take & (storing_now if held_fields else 1)):
                        for n, o in enumerate(offsets):
                            phase, lane_of = divmod(o + k, lanes)
                            here = udp_phase[phase] & (udp_lane == o if len(offsets) > 1 else 1)
                            with (m.If if n == 0 else m.Elif)(here):
                                m.d.sync += udp[8 * k : 8 * k + 8].eq(lane(lane_of))

        capture_udp("destination_port", "length", "checksum")
        capture_udp("source_port", held_fields=True)
        udp_length = value(udp, net.UDP, "length")

        # Which lanes of the beat each sum takes. IPv4 header: frame positions 14 .. udp_at - 1. UDP
        # checksum: the addresses (positions 26 .. 33) and the segment, udp_at .. end_at.
        def from_lane(lane_value: Value, i: int) -> Value:
            return Const(1) if lanes == 1 else lane_value <= i

        ip_lanes, udp_lanes = [], []
        for i in range(lanes):
            ip_start = at_beat(ip_first_beat) if i >= ip_first_lane else Const(0)
            ip_lanes.append(ip_start | in_ip & ~(udp_first & from_lane(udp_lane, i)))
            address = [at_beat(p // lanes) for p in range(*ADDRESSES) if p % lanes == i]
            segment = (udp_first & from_lane(udp_lane, i) | in_udp) & ~(at_end & (end_lane < i))
            udp_lanes.append(Cat(*address).any() | segment)

        # Stage 1, with the beat: its bytes masked, as the high and low bytes of 16-bit words (every word
        # starts at an even frame position). Stage 2, the cycle after: the words added to the sums.
        def words(lane_mask: list[Value]) -> list[Value]:
            out = []
            if lanes == 1:
                high, low = Signal(8, reset_less=True), Signal(8, reset_less=True)
                odd = index[0]
                m.d.sync += [
                    high.eq(Mux(lane_mask[0] & ~odd, lane(0), 0)),
                    low.eq(Mux(lane_mask[0] & odd, lane(0), 0)),
                ]
                return [Cat(low, high)]
            for j in range(0, lanes, 2):
                high, low = Signal(8, reset_less=True), Signal(8, reset_less=True)
                m.d.sync += [high.eq(Mux(lane_mask[j], lane(j), 0)), low.eq(Mux(lane_mask[j + 1], lane(j + 1), 0))]
                out.append(Cat(low, high))
            return out

        summing = Signal()
        m.d.sync += summing.eq(take)
        ip_words, udp_words = words(ip_lanes), words(udp_lanes)
        ip_sum = Signal(16 + (2 * MAX_IHL).bit_length())  # at most 30 words of 0xFFFF
        udp_sum = Signal(32, init=net.IP_PROTOCOL_UDP)  # the pseudo-header's protocol; below 2**32 for any packet
        with m.If(summing):
            m.d.sync += [ip_sum.eq(ip_sum + sum(ip_words)), udp_sum.eq(udp_sum + sum(udp_words))]

        # Per frame: the keep rules, and whether the frame reaches the IPv4 packet's last byte. That also
        # vouches for the captures: with total length >= IHL * 4 + 8 (checked), a frame reaching 13 + total
        # length brought every header byte, so none of the bytes judged is a previous frame's.
        contiguous = keep[0] & Cat(~(keep[i + 1] & ~keep[i]) for i in range(lanes - 1)).all()
        bad_keep = Mux(last, ~contiguous, keep != (1 << lanes) - 1)
        reaches_end = at_end & (keep[0] if lanes == 1 else keep.bit_select(end_lane, 1))
        keep_broken, fits = Signal(), Signal()
        with m.If(take):
            m.d.sync += [
                keep_broken.eq(Mux(first, 0, keep_broken) | bad_keep),
                fits.eq(Mux(first, 0, fits) | reaches_end),
            ]

        # The verdict: fields (cycle 1), sums (cycle 2), all of it (cycle 3).
        version_ihl = value(ipv4, net.IPV4, "version_ihl")
        flags = value(ipv4, net.IPV4, "flags_fragment_offset")
        ip_payload = total_length - ihl * 4
        fields_ok = Signal()
        no_checksum, ip_sum_ok = Signal(), Signal()
        udp_folded = Signal(18)
        arrived = self.datagrams.payload
        m.d.sync += [judging[0].eq(take & last), judging[1:].eq(judging[:-1])]
        m.d.sync += [self.accepted.eq(0), self.overrun.eq(0), self.ignored.eq(0)]
        with m.If(judging[0]):
            m.d.sync += [
                fields_ok.eq(
                    (value(ethernet, net.ETHERNET, "destination") == self.local_mac)
                    & (value(ethernet, net.ETHERNET, "ethertype") == net.ETHERTYPE_IPV4)
                    & (_bits(version_ihl, net.IPV4_VERSION) == net.IPV4_VERSION_4)
                    & (ihl >= net.IPV4_MIN_IHL)
                    & ~_bits(flags, net.IPV4_FLAG_MORE_FRAGMENTS).any()
                    & ~_bits(flags, net.IPV4_FRAGMENT_OFFSET).any()
                    & (value(ipv4, net.IPV4, "protocol") == net.IP_PROTOCOL_UDP)
                    & (value(ipv4, net.IPV4, "destination") == self.local_ip)
                    & (value(udp, net.UDP, "destination_port") == self.port)
                    # total length >= the header + 8 follows from these two
                    & (udp_length == ip_payload)
                    & (udp_length >= net.UDP.length)
                    & fits
                    & ~keep_broken
                ),
                no_checksum.eq(value(udp, net.UDP, "checksum") == 0),
            ]
            with m.If(storing):
                m.d.sync += [
                    arrived.payload_start.eq(udp_at + net.UDP.length),
                    arrived.payload_length.eq(udp_length - net.UDP.length),
                ]
        with m.If(judging[1]):  # the sums have the last beat's words now
            # At most 30 words: the sum is h * 2**16 + l with h small, a multiple of 0xFFFF (a valid
            # header, never 0: the version is in it) when l == 0xFFFF - h.
            high, low = ip_sum[16:], ip_sum[:16]
            m.d.sync += [
                ip_sum_ok.eq(low == Cat(~high, Const(-1, 16 - len(high)))),
                udp_folded.eq(udp_sum[:16] + udp_sum[16:] + udp_length),  # the pseudo-header's UDP length
            ]
        with m.If(judging[2]):
            # A multiple of 0xFFFF below 3 * 0xFFFF + 1, never 0 (the protocol is in it).
            udp_sum_ok = (udp_folded == 0xFFFF) | (udp_folded == 2 * 0xFFFF) | (udp_folded == 3 * 0xFFFF)
            passed = fields_ok & ip_sum_ok & (no_checksum | udp_sum_ok)
            m.d.sync += [ip_sum.eq(0), udp_sum.eq(net.IP_PROTOCOL_UDP)]
            with m.If(passed & storing):
                m.d.sync += [held.eq(1), self.accepted.eq(1)]
            with m.Elif(passed):
                m.d.sync += self.overrun.eq(1)
            with m.Else():
                m.d.sync += self.ignored.eq(1)
        m.d.comb += [
            arrived.source_mac.eq(value(ethernet, net.ETHERNET, "source")),
            arrived.source_ip.eq(value(ipv4, net.IPV4, "source")),
            arrived.source_port.eq(value(udp, net.UDP, "source_port")),
            self.datagrams.valid.eq(held),
        ]
        with m.If(self.datagrams.valid & self.datagrams.ready):
            m.d.sync += held.eq(0)
        return m
