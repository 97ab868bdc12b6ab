"""The card's CSR server: register accesses in UDP requests (proto/card_link.py), run on the core's
AXI4-Lite port and answered over the host link, exactly as sim/net_card.py's model answers them."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...hdl.fields import pack, value
from ...hdl.net.header import OFFSET_WIDTH
from ...hdl.stream import frame_signature
from ...proto import card_link, net
from ...proto.card_link import CSR_ACCESS, CSR_HEADER, CSR_RESULT, MAX_OPS, CsrOp, CsrStatus
from ...proto.registers import REGISTERS, WORD_BYTES
from .axi_lite_master import AxiLiteMaster, axi_lite_initiator_members
from .framing import UDP_HEADERS_LENGTH, FrameEmitter, RowReader, UdpHeaders
from .receiver import DatagramReceiver

__all__ = ["DESTINATION", "ByteWindow", "CsrServer", "times"]

DESTINATION = data.StructLayout({"mac": unsigned(48), "ip": unsigned(32), "port": unsigned(16)})
"""Where a frame goes: MAC, IPv4 address (integers) and UDP port. SUBSCRIBE names one for record packets."""

WINDOW_BYTES = max(CSR_HEADER.length, CSR_ACCESS.length)
RESPONSE_HEADER_BYTES = UDP_HEADERS_LENGTH + CSR_HEADER.length
BAD_REQUEST_ROW = MAX_OPS  # the answer memory's row past the cached answer: a BAD_REQUEST result, never written
SEQUENCE_END = CSR_HEADER.by_name["sequence"].end  # a payload this long carries a sequence to answer with
MAX_REQUEST = CSR_HEADER.length + MAX_OPS * CSR_ACCESS.length


class ByteWindow(wiring.Component):
    """`length` consecutive bytes at any byte address of a buffer of `data_width`-bit rows, gathered.

    Accepts `start` (a one-cycle pulse) with `at`, the first byte's address (byte p in row p // lanes,
    lane p % lanes); both are registered. Reads the rows holding the bytes through a synchronous read
    port (`read_addr`; `read_data` the cycle after) and emits `window`, the bytes as a vector (byte k at
    bits 8k..8k+7, as hdl.fields reads it), a register, with `ready` high from the cycle after the last
    row arrives until the next start (low from the cycle after it). Latency: ceil((length + lanes - 1) /
    lanes) + 2 cycles from `start` to `ready` (5 at 64 bits for 12 bytes, 6 at 32, 14 at 8).
    Throughput: one window at a time; a start while busy restarts it. Addresses past the buffer wrap.
    """

    def __init__(self, data_width: int, length: int, rows: int) -> None:
        self.data_width, self.length, self.rows = data_width, length, rows
        super().__init__(
            {
                "start": In(1),
                "at": In(OFFSET_WIDTH),
                "ready": Out(1),
                "window": Out(8 * length),
                "read_addr": Out(range(rows)),
                "read_data": In(data_width),
            }
        )

    def elaborate(self, platform):
        m = Module()
        lanes = self.data_width // 8
        lane_bits = (lanes - 1).bit_length()
        reads = -(-(self.length + lanes - 1) // lanes)  # rows that hold `length` bytes at any lane
        # The request, registered: the user's decision to start is all it drives.
        starting, at = Signal(), Signal(OFFSET_WIDTH)
        m.d.sync += starting.eq(self.start)
        with m.If(self.start):
            m.d.sync += at.eq(self.at)
        row, lane = Signal(range(self.rows)), Signal(max(lane_bits, 1))
        issued = Signal(range(reads + 1), init=reads)  # reads issued since the start (idle: all)
        received = Signal(range(reads + 1))
        arriving = Signal()  # a row read last cycle is on `read_data`
        gathered = Signal(8 * lanes * (reads - 1))  # the rows read but the last, the first at the bottom
        issuing = starting | (issued != reads)
        m.d.comb += self.read_addr.eq(Mux(starting, at[lane_bits:], row + issued))
        m.d.sync += arriving.eq(issuing)
        with m.If(self.start):
            m.d.sync += self.ready.eq(0)
        with m.If(starting):
            m.d.sync += [row.eq(at[lane_bits:]), issued.eq(1), received.eq(0)]
            if lane_bits:
                m.d.sync += lane.eq(at[:lane_bits])
        with m.Elif(issuing):
            m.d.sync += issued.eq(issued + 1)
        with m.If(arriving & ~starting):  # (an arrival as a fetch starts is the last one's: dropped)
            rows = Cat(gathered, self.read_data)
            m.d.sync += [gathered.eq(rows[8 * lanes :]), received.eq(received + 1)]
            with m.If(received == reads - 1):
                window = rows.bit_select(lane * 8, 8 * self.length) if lane_bits else rows[: 8 * self.length]
                m.d.sync += [self.window.eq(window), self.ready.eq(1)]
        return m


def times(value: Value, constant: int) -> Value:
    """`value` * `constant` as a sum of shifted copies (a multiplier block is wasted on a constant)."""
    return sum((value << k for k in range(constant.bit_length()) if constant >> k & 1), Const(0, 1))


class CsrServer(wiring.Component):
    """CSR requests in frames on `rx`, AXI4-Lite accesses on `m_axil_*`, response frames on `tx`.

    Accepts on `rx` the host link's frames (hdl.stream beats); keeps those for the card: to `local_mac`,
    IPv4 to `local_ip` (inputs: 48-bit and 32-bit integers, from the board top), UDP to CSR_PORT, whole
    and checked as DatagramReceiver says (a frame arriving while a request is still being worked on is
    dropped: `frames_overrun`; any other frame: `frames_ignored`).
    Each request is read from the buffer through proto.card_link's field tables (CSR_HEADER, CSR_ACCESS:
    no offset is written here) and handled as sim/net_card.py's NetCardModel handles it:

    - malformed (shorter than its header; magic, version or kind wrong; count not 1..MAX_OPS or not
      matching the length; an access with an unknown op or a strobe above 0xF): answered with one
      BAD_REQUEST result and the request's sequence (0 when the payload is shorter than 8 bytes); nothing
      is applied and the remembered answer is kept (`bad_requests`).
    - the sequence of the last answered request: that answer is sent again, nothing is applied (`repeats`).
    - otherwise each access in order: READ / WRITE (value, byte strobe) as one AXI4-Lite transaction
      (OKAY -> OK with the read data; SLVERR or DECERR -> BUS_ERROR, value 0); an address not a multiple
      of 4 or not below 2**addr_width -> BAD_REQUEST without a transaction (the model's core refuses it);
      SUBSCRIBE -> the request's source MAC and IPv4 address with UDP port `value` offered on
      `subscribe` (DESTINATION), and the access done once the record sender takes it (between two of its
      packets: the response cannot overtake a packet numbered before it); a port above 0xFFFF ->
      BAD_REQUEST, nothing changed (the model would take it and fail sending). The results are kept in a
      memory as the answer to repeat (`requests`).

    Emits on `tx` the response frame: to the request's source MAC, IPv4 address and port, from
    `local_mac`, `local_ip` and CSR_PORT (framing.UdpHeaders: IPv4 checksum computed, UDP checksum 0),
    CSR_HEADER (kind CSR_RESPONSE) and one CSR_RESULT per access. Strobes are one cycle each.
    Latency (measured in the simulator, to a cycle): the response's first beat is valid F + 8 + n (2F + 1
    + A) cycles after the last beat of a request of n accesses is taken, where F is ByteWindow's latency
    for 12 bytes (5 cycles at 64 bits, 6 at 32, 14 at 8: each access is read once to check it, once to
    apply it) and A the access's own: 12 cycles for a read of the card's bank, 8 for a write, 0 for a
    refused address, 1 for a SUBSCRIBE (more while a record packet is leaving the sender's memory);
    F + 8 + n F for a repeat, and no more for a malformed request. At 64 bits and 125 MHz a request of
    100 reads is answered in about 18.5 µs (2313 cycles).
    Throughput: one request at a time; the receive buffer is free again once the request is read, before
    the response is out. A target that never answers stalls the server (the bank always answers).
    """

    def __init__(self, data_width: int = 64, *, addr_width: int = REGISTERS.address_width,
                 buffer_bytes: int = 2048) -> None:  # fmt: skip
        largest = net.ETHERNET.length + 4 * ((1 << net.IPV4_IHL.width) - 1) + net.UDP.length + MAX_REQUEST
        if buffer_bytes < largest:
            raise ValueError(f"buffer_bytes must hold the largest request frame ({largest} bytes), got {buffer_bytes}")
        self.data_width = data_width
        self.addr_width = addr_width
        self.buffer_bytes = buffer_bytes
        super().__init__(
            {
                "rx": In(frame_signature(data_width)),
                "tx": Out(frame_signature(data_width)),
                "local_mac": In(48),
                "local_ip": In(32),
                **axi_lite_initiator_members(addr_width),
                "subscribe": Out(stream.Signature(DESTINATION)),
                "requests": Out(1),
                "repeats": Out(1),
                "bad_requests": Out(1),
                "frames_ignored": Out(1),
                "frames_overrun": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        width = self.data_width
        receiver = m.submodules.receiver = DatagramReceiver(width, port=card_link.CSR_PORT,
                                                            buffer_bytes=self.buffer_bytes)  # fmt: skip
        fetch = m.submodules.fetch = ByteWindow(width, WINDOW_BYTES, receiver.rows)
        bus = m.submodules.bus = AxiLiteMaster(self.addr_width)
        headers = m.submodules.headers = UdpHeaders()
        emitter = m.submodules.emitter = FrameEmitter(width, RESPONSE_HEADER_BYTES)
        result_bits = 8 * CSR_RESULT.length
        bad_result = int.from_bytes(CSR_RESULT.pack(status=CsrStatus.BAD_REQUEST, value=0), "little")
        m.submodules.answer = answer = memory.Memory(
            shape=unsigned(result_bits), depth=MAX_OPS + 1, init=[0] * MAX_OPS + [bad_result]
        )
        store, recall = answer.write_port(), answer.read_port()
        reader = m.submodules.reader = RowReader(width, result_bits, MAX_OPS + 1)

        wiring.connect(m, wiring.flipped(self.rx), receiver.frames)
        wiring.connect(m, reader.chunks, emitter.body)
        wiring.connect(m, emitter.frames, wiring.flipped(self.tx))
        m.d.comb += [
            receiver.local_mac.eq(self.local_mac),
            receiver.local_ip.eq(self.local_ip),
            receiver.read_addr.eq(fetch.read_addr),
            fetch.read_data.eq(receiver.read_data),
            recall.addr.eq(reader.addr),
            recall.en.eq(reader.en),
            reader.data.eq(recall.data),
            self.frames_ignored.eq(receiver.ignored),
            self.frames_overrun.eq(receiver.overrun),
        ]
        for name in axi_lite_initiator_members(self.addr_width):
            ours, theirs = getattr(self, name), getattr(bus, name)
            m.d.comb += ours.eq(theirs) if self.signature.members[name].flow == Out else theirs.eq(ours)

        datagram = receiver.datagrams.payload
        window = fetch.window
        # The request as read so far, and the answer's destination (kept past the buffer's release).
        base = Signal(OFFSET_WIDTH)  # the payload's first byte in the buffer
        length = Signal(16)
        at = Signal(OFFSET_WIDTH)  # the access being read
        sequence = Signal(32)
        count = Signal(range(MAX_OPS + 1))
        index, last = Signal(range(MAX_OPS)), Signal(range(MAX_OPS))  # the access read, the count's last
        source = Signal(DESTINATION)  # the request's source
        status, result = Signal(8), Signal(32)
        # The answer remembered for a repeat, and the response going out.
        cached, cached_sequence, cached_count = Signal(), Signal(32), Signal(range(MAX_OPS + 1))
        reply_sequence, reply_first, reply_count = Signal(32), Signal(range(MAX_OPS + 1)), Signal(range(MAX_OPS + 1))
        well_formed = Signal()  # the request's header passed its checks
        issued = Signal()  # the reader took the response's rows
        settling = Signal(range(UdpHeaders.LATENCY))  # cycles in PREPARE

        def header(name: str):
            return value(window, CSR_HEADER, name)

        def access(name: str):
            return value(window, CSR_ACCESS, name)

        def fetch_at(address) -> None:
            m.d.comb += [fetch.start.eq(1), fetch.at.eq(address)]
            m.d.sync += at.eq(address)

        def next_access() -> None:
            m.d.sync += index.eq(index + 1)
            fetch_at(at + CSR_ACCESS.length)

        def reply(sequence_, first, count_) -> None:
            m.d.comb += receiver.datagrams.ready.eq(1)  # the request is read: the buffer is free again
            m.d.sync += [reply_sequence.eq(sequence_), reply_first.eq(first), reply_count.eq(count_)]
            m.next = "PREPARE"

        op = access("op")
        address = access("address")
        word_aligned = address[: (WORD_BYTES - 1).bit_length()] == 0
        in_window = address[self.addr_width :] == 0
        m.d.sync += [self.requests.eq(0), self.repeats.eq(0), self.bad_requests.eq(0)]
        subscriber = self.subscribe.payload
        m.d.comb += [subscriber.mac.eq(source.mac), subscriber.ip.eq(source.ip), subscriber.port.eq(result)]
        with m.FSM():
            with m.State("IDLE"), m.If(receiver.datagrams.valid):
                m.d.sync += [
                    base.eq(datagram.payload_start),
                    length.eq(datagram.payload_length),
                    source.mac.eq(datagram.source_mac),
                    source.ip.eq(datagram.source_ip),
                    source.port.eq(datagram.source_port),
                ]
                fetch_at(datagram.payload_start)
                m.next = "HEADER"
            with m.State("HEADER"), m.If(fetch.ready):
                n = header("count")
                m.d.sync += [
                    well_formed.eq(
                        (length >= CSR_HEADER.length)
                        & (header("magic") == card_link.MAGIC)
                        & (header("version") == card_link.VERSION)
                        & (header("kind") == card_link.Kind.CSR_REQUEST)
                        & (n >= 1)
                        & (n <= MAX_OPS)
                        & (length == CSR_HEADER.length + times(n, CSR_ACCESS.length))
                    ),
                    sequence.eq(Mux(length >= SEQUENCE_END, header("sequence"), 0)),
                    count.eq(n),
                    last.eq(n - 1),
                    index.eq(0),
                ]
                m.next = "CHECK"
            with m.State("CHECK"):  # (a cycle of its own: the checks are long)
                with m.If(well_formed):
                    fetch_at(base + CSR_HEADER.length)
                    m.next = "VALIDATE"
                with m.Else():
                    m.next = "BAD"
            # Every access is checked before any is applied.
            with m.State("VALIDATE"), m.If(fetch.ready):
                with m.If(~op.matches(*CsrOp) | (access("strobe") > 0xF)):
                    m.next = "BAD"
                with m.Elif(index != last):
                    next_access()
                with m.Elif(cached & (sequence == cached_sequence)):
                    m.d.sync += self.repeats.eq(1)
                    reply(cached_sequence, 0, cached_count)
                with m.Else():
                    m.d.sync += index.eq(0)
                    fetch_at(base + CSR_HEADER.length)
                    m.next = "EXECUTE"
            with m.State("EXECUTE"), m.If(fetch.ready):
                m.d.sync += [status.eq(CsrStatus.OK), result.eq(0)]
                with m.If(op == CsrOp.SUBSCRIBE):
                    with m.If(access("value") <= 0xFFFF):
                        m.d.sync += result.eq(access("value"))  # the port, until the sender takes it
                        m.next = "SUBSCRIBE"
                    with m.Else():
                        m.d.sync += status.eq(CsrStatus.BAD_REQUEST)
                        m.next = "STORE"
                with m.Elif(word_aligned & in_window):
                    m.d.comb += [
                        bus.command.valid.eq(1),
                        bus.command.payload.write.eq(op == CsrOp.WRITE),
                        bus.command.payload.address.eq(address),
                        bus.command.payload.data.eq(access("value")),
                        bus.command.payload.strobe.eq(access("strobe")),
                    ]
                    with m.If(bus.command.ready):  # (always: the last result was taken cycles ago)
                        m.next = "BUS"
                with m.Else():
                    m.d.sync += status.eq(CsrStatus.BAD_REQUEST)
                    m.next = "STORE"
            with m.State("SUBSCRIBE"):
                m.d.comb += self.subscribe.valid.eq(1)
                with m.If(self.subscribe.ready):
                    m.d.sync += result.eq(0)
                    m.next = "STORE"
            with m.State("BUS"):
                m.d.comb += bus.result.ready.eq(1)
                with m.If(bus.result.valid):
                    m.d.sync += [
                        status.eq(Mux(bus.result.payload.error, CsrStatus.BUS_ERROR, CsrStatus.OK)),
                        result.eq(bus.result.payload.data),
                    ]
                    m.next = "STORE"
            with m.State("STORE"):
                m.d.comb += [
                    store.addr.eq(index),
                    store.data.eq(pack(CSR_RESULT, {"status": status, "value": result})),
                    store.en.eq(1),
                ]
                with m.If(index != last):
                    next_access()
                    m.next = "EXECUTE"
                with m.Else():
                    m.d.sync += [cached.eq(1), cached_sequence.eq(sequence), cached_count.eq(count),
                                 self.requests.eq(1)]  # fmt: skip
                    reply(sequence, 0, count)
            with m.State("BAD"):
                m.d.sync += self.bad_requests.eq(1)
                reply(sequence, BAD_REQUEST_ROW, 1)
            with m.State("PREPARE"):  # the IPv4 checksum (registers) settles
                m.d.sync += settling.eq(settling + 1)
                with m.If(settling == UdpHeaders.LATENCY - 1):
                    m.d.sync += settling.eq(0)
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [
                    reader.command.valid.eq(~issued),
                    reader.command.payload.first.eq(reply_first),
                    reader.command.payload.rows.eq(reply_count),
                    emitter.header.valid.eq(1),
                ]
                with m.If(reader.command.ready):
                    m.d.sync += issued.eq(1)
                with m.If(emitter.header.ready):
                    m.d.sync += issued.eq(0)
                    m.next = "IDLE"

        payload_length = CSR_HEADER.length + CSR_RESULT.length * reply_count
        m.d.comb += [
            headers.source_mac.eq(self.local_mac),
            headers.destination_mac.eq(source.mac),
            headers.source_ip.eq(self.local_ip),
            headers.destination_ip.eq(source.ip),
            headers.source_port.eq(card_link.CSR_PORT),
            headers.destination_port.eq(source.port),
            headers.payload_length.eq(payload_length),
            emitter.header.payload.eq(
                Cat(
                    headers.header,
                    pack(
                        CSR_HEADER,
                        {
                            "magic": card_link.MAGIC,
                            "version": card_link.VERSION,
                            "kind": card_link.Kind.CSR_RESPONSE,
                            "sequence": reply_sequence,
                            "count": reply_count,
                        },
                    ),
                )
            ),
        ]
        return m
