"""Building outgoing frames: Ethernet / IPv4 / UDP headers from proto.net's field tables, a frame emitter
that puts a fixed-length header in front of a stream of body chunks, and a reader that streams memory
rows as body chunks. The CSR server's responses and the record sender's packets are both made of these.

Outgoing frames are untagged Ethernet II, IPv4 without options (IHL 5, don't-fragment set, identification
0, TTL proto.net.DEFAULT_TTL), UDP with checksum 0 ("not computed", allowed in IPv4). The IPv4 header
checksum is computed.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...hdl.fields import pack
from ...hdl.stream import frame_signature
from ...proto import net

__all__ = [
    "UDP_HEADERS_LENGTH",
    "FrameEmitter",
    "RowReader",
    "UdpHeaders",
    "chunk_layout",
    "fold",
    "word_sum",
]

UDP_HEADERS_LENGTH = net.ETHERNET.length + net.IPV4.length + net.UDP.length
"""Bytes of Ethernet, IPv4 (no options) and UDP header in front of a UDP payload: 42."""

# The constant IPv4 fields of every frame the link sends, from proto.net's bit fields.
_VERSION_IHL = net.IPV4_VERSION.put(net.IPV4_VERSION_4) | net.IPV4_IHL.put(net.IPV4.length // 4)
_DONT_FRAGMENT = net.IPV4_FLAG_DONT_FRAGMENT.put(1)


def chunk_layout(data_width: int) -> data.StructLayout:
    """A piece of a frame body: `data_width` bits, byte i in lane i, all lanes valid; `last` ends the body."""
    return data.StructLayout({"data": unsigned(data_width), "last": 1})


def fold(total: Value) -> Value:
    """A sum of 16-bit words (below 2**32) folded to 16 bits with end-around carries (RFC 1071): the same
    value modulo 0xFFFF, 0 only when the sum is 0. Combinational."""
    if len(total) > 32:
        raise ValueError(f"fold takes sums below 2**32, not {len(total)} bits")
    once = total[:16] + total[16:]  # at most 0x1FFFE: one more fold leaves no carry
    return (once[:16] + once[16:])[:16]


def word_sum(raw: Value) -> Value:
    """The sum (not folded) of a byte vector's big-endian 16-bit words (hdl.fields order: byte k at bits
    8k..8k+7; an even number of bytes), as a balanced tree of adders. Combinational."""
    octets = [raw[8 * k : 8 * k + 8] for k in range(len(raw) // 8)]
    terms = [Cat(octets[k + 1], octets[k]) for k in range(0, len(octets), 2)]
    while len(terms) > 1:
        terms = [a + b for a, b in zip(terms[::2], terms[1::2])] + terms[len(terms) & ~1 :]
    return terms[0]


class UdpHeaders(wiring.Component):
    """The 42 bytes of Ethernet II, IPv4 and UDP header in front of a UDP payload, from proto.net's tables.

    Accepts the addresses and ports (48-bit MACs, 32-bit IPv4 addresses as integers, 0x0A000001 is
    10.0.0.1) and `payload_length`, the UDP payload's bytes. Emits `header` (a byte vector as hdl.fields
    builds it: byte k at bits 8k..8k+7) with the lengths, the constant fields and the IPv4 header checksum
    filled in. The checksum is computed in LATENCY register stages (the words' sum, then its fold):
    `header` is right from the LATENCY-th cycle after the inputs settle (the rest of the header follows
    the inputs combinationally). Any input is valid.
    """

    LATENCY = 2

    def __init__(self) -> None:
        super().__init__(
            {
                "source_mac": In(48),
                "destination_mac": In(48),
                "source_ip": In(32),
                "destination_ip": In(32),
                "source_port": In(16),
                "destination_port": In(16),
                "payload_length": In(16),
                "header": Out(8 * UDP_HEADERS_LENGTH),
            }
        )

    def elaborate(self, platform):
        m = Module()
        udp_length = net.UDP.length + self.payload_length
        ip = {
            "version_ihl": _VERSION_IHL,
            "dscp_ecn": 0,
            "total_length": net.IPV4.length + udp_length,
            "identification": 0,
            "flags_fragment_offset": _DONT_FRAGMENT,
            "ttl": net.DEFAULT_TTL,
            "protocol": net.IP_PROTOCOL_UDP,
            "source": self.source_ip,
            "destination": self.destination_ip,
        }
        total, checksum = Signal(20), Signal(16)  # ten words: below 2**20
        m.d.sync += [total.eq(word_sum(pack(net.IPV4, {**ip, "header_checksum": 0}))), checksum.eq(~fold(total))]
        ethernet = pack(
            net.ETHERNET,
            {"destination": self.destination_mac, "source": self.source_mac, "ethertype": net.ETHERTYPE_IPV4},
        )
        udp = pack(
            net.UDP,
            {
                "source_port": self.source_port,
                "destination_port": self.destination_port,
                "length": udp_length,
                "checksum": 0,
            },
        )
        m.d.comb += self.header.eq(Cat(ethernet, pack(net.IPV4, {**ip, "header_checksum": checksum}), udp))
        return m


class FrameEmitter(wiring.Component):
    """A frame made of a `header_length`-byte header and a body of chunks, as frame beats.

    Accepts on `header` the header's byte vector (byte k at bits 8k..8k+7): `header.valid` starts a frame,
    and the header must stay valid and unchanged until the transfer, which the emitter makes in the cycle
    it loads the frame's last beat (the user's signal that the frame is out of its hands). Accepts on
    `body` the body, `data_width` bits a chunk (chunk_layout: all lanes valid, `last` on the final one; at
    least one chunk), taken while the header's beats are out.
    Emits on `frames` the header then the body, hdl.stream's frame beats (byte i in lane i, every beat
    full but the last). The header's bytes that do not fill a beat are completed with the first chunk's,
    and each chunk's remainder goes out with the next (a fixed lane shift, no realignment logic).
    Latency: the first beat is valid the cycle after `header.valid` rises; a body chunk's bytes leave the
    cycle after it is taken. Throughput: one beat a cycle while `frames.ready` is high and the body keeps
    up; `frames` is a register (ready may be low any time; beats are held). A frame follows the previous
    one without a gap. Bad input: none checked (a body without `last` never ends the frame).
    """

    def __init__(self, data_width: int, header_length: int) -> None:
        if header_length < data_width // 8:
            raise ValueError(f"the header must fill a beat: {header_length} bytes at {data_width} bits")
        self.data_width = data_width
        self.header_length = header_length
        super().__init__(
            {
                "header": In(stream.Signature(unsigned(8 * header_length))),
                "body": In(stream.Signature(chunk_layout(data_width))),
                "frames": Out(frame_signature(data_width)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        lanes = self.data_width // 8
        full_beats, spill = divmod(self.header_length, lanes)  # header beats; header bytes left over
        header, body, out = self.header, self.body, self.frames
        advance = ~out.valid | out.ready  # the output register takes a beat this cycle

        def emit(data, keep, last) -> None:
            m.d.sync += [out.valid.eq(1), out.payload.data.eq(data), out.payload.keep.eq(keep),
                         out.payload.last.eq(last)]  # fmt: skip

        with m.If(out.valid & out.ready):
            m.d.sync += out.valid.eq(0)
        # The bytes carried into the next beat: the header's left-over ones, then each chunk's top ones.
        carry = Signal(8 * spill) if spill else None
        index = Signal(range(full_beats))
        full = (1 << lanes) - 1
        with m.FSM():
            with m.State("HEADER"), m.If(header.valid & advance):
                emit(header.payload.word_select(index, self.data_width), full, 0)
                m.d.sync += index.eq(index + 1)
                with m.If(index == full_beats - 1):
                    m.d.sync += index.eq(0)
                    if spill:
                        m.d.sync += carry.eq(header.payload[8 * lanes * full_beats :])
                    m.next = "BODY"
            with m.State("BODY"):
                m.d.comb += body.ready.eq(advance)
                with m.If(body.valid & advance):
                    chunk = body.payload.data
                    if spill:
                        emit(Cat(carry, chunk[: 8 * (lanes - spill)]), full, 0)
                        m.d.sync += carry.eq(chunk[8 * (lanes - spill) :])
                        with m.If(body.payload.last):
                            m.next = "TAIL"
                    else:
                        emit(chunk, full, body.payload.last)
                        with m.If(body.payload.last):
                            m.d.comb += header.ready.eq(1)
                            m.next = "HEADER"
            if spill:
                with m.State("TAIL"), m.If(advance):
                    emit(carry, (1 << spill) - 1, 1)
                    m.d.comb += header.ready.eq(1)
                    m.next = "HEADER"
        return m


class RowReader(wiring.Component):
    """Rows of a memory (`row_width` bits, `depth` rows, a multiple of `data_width` bits) read out as
    FrameEmitter body chunks.

    Accepts on `command` a run of rows (`first`, `rows` >= 1), taken when the previous run is out. Drives
    a synchronous read port of the memory (`addr`, `en`: the port's data holds while `en` is low) and
    reads its `data`. Emits on `chunks` each row's `row_width // data_width` chunks, lowest bits first,
    `last` on the run's final chunk. Latency: the first chunk is valid the cycle after the command is
    taken. Throughput: one chunk a cycle (the next row is read as the current row's last chunk is taken).
    Bad input: `rows` 0 reads one row; runs past the last row wrap.
    """

    def __init__(self, data_width: int, row_width: int, depth: int) -> None:
        if row_width % data_width:
            raise ValueError(f"row width {row_width} is not a multiple of the data width {data_width}")
        self.data_width, self.row_width, self.depth = data_width, row_width, depth
        run = data.StructLayout({"first": range(depth), "rows": range(depth + 1)})
        super().__init__(
            {
                "command": In(stream.Signature(run)),
                "addr": Out(range(depth)),
                "en": Out(1),
                "data": In(row_width),
                "chunks": Out(stream.Signature(chunk_layout(data_width))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        per_row = self.row_width // self.data_width
        command, chunks = self.command, self.chunks
        row = Signal(range(self.depth))  # the next row to read
        left = Signal(range(self.depth + 1))  # rows still to read
        part = Signal(range(per_row))
        loaded = Signal()  # the port's data holds a row whose chunks are going out

        row_done = part == per_row - 1
        start = command.valid & command.ready
        taken = chunks.valid & chunks.ready
        next_row = taken & row_done & (left != 0)
        m.d.comb += [
            command.ready.eq(~loaded),
            chunks.valid.eq(loaded),
            chunks.payload.data.eq(self.data.word_select(part, self.data_width) if per_row > 1 else self.data),
            chunks.payload.last.eq(row_done & (left == 0)),
            self.en.eq(start | next_row),
            self.addr.eq(Mux(start, command.payload.first, row)),
        ]
        with m.If(start):
            m.d.sync += [
                row.eq(command.payload.first + 1),
                left.eq(Mux(command.payload.rows == 0, 0, command.payload.rows - 1)),
                part.eq(0),
                loaded.eq(1),
            ]
        with m.Elif(taken):
            m.d.sync += part.eq(Mux(row_done, 0, part + 1))
            with m.If(next_row):
                m.d.sync += [row.eq(row + 1), left.eq(left - 1)]
            with m.Elif(row_done):
                m.d.sync += loaded.eq(0)
        return m
