"""The card's record sender: the core's BBO records packed into record packets (proto/card_link.py) for
the subscribed host."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...hdl.fields import pack
from ...hdl.stream import RECORD_BITS, frame_signature
from ...proto import card_link
from ...proto.card_link import MAX_RECORDS, RECORD_HEADER
from .csr_server import DESTINATION
from .framing import UDP_HEADERS_LENGTH, FrameEmitter, RowReader, UdpHeaders

__all__ = ["DEFAULT_FLUSH_CYCLES", "SUBSCRIBER", "RecordSender"]

DEFAULT_FLUSH_CYCLES = 1000
"""Idle cycles before a packet that is not full is sent: 8 µs at 125 MHz."""
SUBSCRIBER = data.StructLayout({"valid": 1, "destination": DESTINATION})
"""Where record packets go, once a SUBSCRIBE set it (`valid`)."""
RECORD_BYTES = RECORD_BITS // 8
PACKET_HEADER_BYTES = UDP_HEADERS_LENGTH + RECORD_HEADER.length
BANKS = 2  # one packet filling while the other goes out


class RecordSender(wiring.Component):
    """BBO records in, record packets to the subscriber out.

    Accepts on `records` the core's BBO records (proto.bbo, 512 bits: byte k at bits 8k..8k+7, as
    FeedHandler's `m_axis_bbo` carries them), and on `subscribe` a new subscriber (DESTINATION, from the
    CSR server's SUBSCRIBE): taken between two packets only, it becomes `subscriber` and the next packet
    is numbered 1. A packet is thus all old (destination and numbering) or all new; as the TX arbiter
    sends whole frames and the CSR server answers only once its subscriber is taken, every packet on the
    wire after the SUBSCRIBE's response goes to the new subscriber numbered from 1, every one before it
    to the old one. While no subscriber is set, every record is taken at once and dropped
    (`records_dropped` strobes). Otherwise records are packed into packets in two banks of a memory
    (MAX_RECORDS records each, one `data_width`-bit row a cycle: a record goes in over 512 / data_width
    cycles): one bank fills while the other goes out. A packet is closed when it holds MAX_RECORDS
    records, or when it holds some and `flush_cycles` cycles (an input: the latency bound) have passed
    since its last record went in.
    Emits on `tx` each closed packet as a frame (framing.UdpHeaders: to `subscriber` from `local_mac` /
    `local_ip` and card_link.RECORD_PORT; then RECORD_HEADER: magic, version, kind RECORDS, count,
    sequence; then the records in the order they came), `packets_sent` strobing as it starts out.
    Sequences count from 1 after reset or a new subscriber, one per packet, 64 bits.
    Latency (measured by tests/hw), with the other bank not going out: a packet's first beat is valid
    512 / data_width + 6 cycles after the handshake of the record that fills it, or 512 / data_width +
    `flush_cycles` + 6 after its last record's when the idle timer closes it. A new subscriber waits at
    most until the packet under way has left the memory.
    Throughput: one record per 512 / data_width + 1 cycles in; one beat a cycle out. Back-pressure:
    `records.ready` is low while the record taken last cannot go into a bank (both banks full: the port
    is busy with the other packet). Bad input: none (any 512 bits are a record).
    """

    def __init__(self, data_width: int = 64) -> None:
        self.data_width = data_width
        self.rows_per_record = RECORD_BITS // data_width
        self.bank_rows = MAX_RECORDS * self.rows_per_record
        super().__init__(
            {
                "records": In(stream.Signature(unsigned(RECORD_BITS))),
                "tx": Out(frame_signature(data_width)),
                "local_mac": In(48),
                "local_ip": In(32),
                "subscribe": In(stream.Signature(DESTINATION)),
                "subscriber": Out(SUBSCRIBER),
                "flush_cycles": In(16, init=DEFAULT_FLUSH_CYCLES),
                "records_dropped": Out(1),
                "packets_sent": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        width, rows_per_record, bank_rows = self.data_width, self.rows_per_record, self.bank_rows
        m.submodules.packets = packets = memory.Memory(shape=unsigned(width), depth=BANKS * bank_rows, init=[])
        write, read = packets.write_port(), packets.read_port()
        reader = m.submodules.reader = RowReader(width, width, BANKS * bank_rows)
        headers = m.submodules.headers = UdpHeaders()
        emitter = m.submodules.emitter = FrameEmitter(width, PACKET_HEADER_BYTES)
        wiring.connect(m, reader.chunks, emitter.body)
        wiring.connect(m, emitter.frames, wiring.flipped(self.tx))
        m.d.comb += [read.addr.eq(reader.addr), read.en.eq(reader.en), reader.data.eq(read.data)]

        subscriber = self.subscriber
        full = Signal(BANKS)  # the bank holds a closed packet, not yet out
        counts = Array(Signal(range(MAX_RECORDS + 1), name=f"count_{b}") for b in range(BANKS))

        # Filling: the record taken last waits in `holding` and goes into the filling bank row by row.
        records = self.records
        holding, held = Signal(RECORD_BITS), Signal()
        part = Signal(range(rows_per_record))
        filling = Signal(range(BANKS))
        filled = Signal(range(MAX_RECORDS + 1))  # records in the filling bank
        idle = Signal(16)  # cycles since the filling bank's last record went in
        writing = held & ~full.bit_select(filling, 1) & (filled != MAX_RECORDS)
        record_in = writing & (part == rows_per_record - 1)
        m.d.comb += [
            records.ready.eq(~subscriber.valid | ~held),  # registers only: it enables 512 flip-flops
            write.addr.eq(filling * bank_rows + filled * rows_per_record + part),
            write.data.eq(holding.word_select(part, width)),
            write.en.eq(writing),
        ]
        with m.If(writing):
            m.d.sync += part.eq(part + 1)
            with m.If(record_in):
                m.d.sync += [part.eq(0), held.eq(0), filled.eq(filled + 1)]
        m.d.sync += self.records_dropped.eq(0)
        with m.If(records.valid & records.ready):
            with m.If(subscriber.valid):
                m.d.sync += [holding.eq(records.payload), held.eq(1)]
            with m.Else():
                m.d.sync += self.records_dropped.eq(1)

        timed_out = (filled != 0) & ~held & (idle >= self.flush_cycles)
        close = (filled == MAX_RECORDS) | timed_out
        with m.If(record_in | (filled == 0)):
            m.d.sync += idle.eq(0)
        with m.Elif(~idle.all()):
            m.d.sync += idle.eq(idle + 1)
        with m.If(close):
            m.d.sync += [counts[filling].eq(filled), filled.eq(0), filling.eq(filling + 1)]

        # Sending: the banks go out in the order they were closed. A new subscriber is taken between two
        # packets only, so that a packet is all old (destination and numbering) or all new.
        sending = Signal(range(BANKS))
        sequence = Signal(64, init=1)  # of the next packet
        packet_sequence, packet_count = Signal(64), Signal(range(MAX_RECORDS + 1))
        destination = Signal(DESTINATION)
        issued = Signal()
        settling = Signal(range(UdpHeaders.LATENCY))  # cycles in PREPARE
        done = Signal()
        m.d.sync += self.packets_sent.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.subscribe.ready.eq(1)
                with m.If(self.subscribe.valid):
                    m.d.sync += [subscriber.valid.eq(1), subscriber.destination.eq(self.subscribe.payload),
                                 sequence.eq(1)]  # fmt: skip
                with m.Elif(full.bit_select(sending, 1)):
                    m.d.sync += [
                        packet_sequence.eq(sequence),
                        sequence.eq(sequence + 1),
                        packet_count.eq(counts[sending]),
                        destination.eq(subscriber.destination),
                    ]
                    m.next = "PREPARE"
            with m.State("PREPARE"):  # the IPv4 checksum (registers) settles
                m.d.sync += settling.eq(settling + 1)
                with m.If(settling == UdpHeaders.LATENCY - 1):
                    m.d.sync += settling.eq(0)
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [
                    reader.command.valid.eq(~issued),
                    reader.command.payload.first.eq(sending * bank_rows),
                    reader.command.payload.rows.eq(packet_count * rows_per_record),
                    emitter.header.valid.eq(1),
                ]
                with m.If(reader.command.valid & reader.command.ready):
                    m.d.sync += [issued.eq(1), self.packets_sent.eq(1)]
                with m.If(emitter.header.ready):
                    m.d.comb += done.eq(1)
                    m.d.sync += [issued.eq(0), sending.eq(sending + 1)]
                    m.next = "IDLE"
        for b in range(BANKS):
            with m.If(close & (filling == b)):
                m.d.sync += full[b].eq(1)
            with m.Elif(done & (sending == b)):
                m.d.sync += full[b].eq(0)

        m.d.comb += [
            headers.source_mac.eq(self.local_mac),
            headers.destination_mac.eq(destination.mac),
            headers.source_ip.eq(self.local_ip),
            headers.destination_ip.eq(destination.ip),
            headers.source_port.eq(card_link.RECORD_PORT),
            headers.destination_port.eq(destination.port),
            headers.payload_length.eq(RECORD_HEADER.length + RECORD_BYTES * packet_count),
            emitter.header.payload.eq(
                Cat(
                    headers.header,
                    pack(
                        RECORD_HEADER,
                        {
                            "magic": card_link.MAGIC,
                            "version": card_link.VERSION,
                            "kind": card_link.Kind.RECORDS,
                            "count": packet_count,
                            "sequence": packet_sequence,
                        },
                    ),
                )
            ),
        ]
        return m
