"""Frames across the clock boundary between the Ethernet MACs (a byte a cycle at 125 MHz) and the core.

    MacRx ─ bytes (eth_rx) ─ FrameRxCDC: pack lanes, AsyncFIFO ─ beats (core) ─ FeedHandler s_axis_*
    core beats (core) ─ FrameTxCDC: AsyncFIFO, unpack lanes, FrameFIFO ─ bytes (eth_tx) ─ MacTx

Both sides are hdl.stream frame beats (byte i of a beat in lane i, `keep` marks the valid lanes, every beat
full but the last, `last` on the frame's final beat): 8 bits at the Ethernet side, `data_width` (8, 32
or 64) at the core's. The packing and unpacking happen on the Ethernet side, so the asynchronous FIFO
carries whole beats and the core domain does one beat of work a cycle.

Throughput contract (receive): the core must take beats faster than the line brings bytes, i.e.
`data_width / 8 * f_core >= 125 MHz` with `o.ready` high (8 bits: >= 125 MHz; 32: >= 31.25 MHz; 64:
>= 15.625 MHz). Preamble, SFD, FCS and the inter-frame gap give a little slack (a back-to-back stream of
64-byte frames carries 60 bytes in 84 cycles), not enough to rely on. When the core falls behind, the
FIFO here fills and stops taking bytes from MacRx, whose frame buffer fills in turn; MacRx then drops
whole frames and counts them (RxDrop.OVERFLOW). A frame is never truncated into the core: MacRx only
releases frames it holds entirely, and everything it releases crosses.
"""

from __future__ import annotations

from amaranth.hdl import DomainRenamer, Module, Mux, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from ...hdl.stream import frame_layout, frame_signature
from .mac import FCS_BYTES, FRAME_BUFFER_DEPTH, MAX_FRAME, FrameFIFO

__all__ = ["CDC_DEPTH", "FrameRxCDC", "FrameTxCDC"]

CDC_DEPTH = 9
"""Beats an AsyncFIFOBuffered holds: 8 in its memory and its output register. Eight cover the gray-code
pointers' round trip (a few cycles of each clock) at full rate; more would lengthen the pointer logic on
the read side, which on the transmit side runs at 125 MHz: with 16 the read side of a 73-bit FIFO
placed at 110-118 MHz on an LFE5U-25F-6, with 8 at 138-148 MHz (nextpnr, three seeds)."""


class FrameRxCDC(wiring.Component):
    """Received frames from the Ethernet clock's byte stream into `data_width`-bit beats in the core's.

    Accepts on `i`, in `eth_domain`, frame bytes (hdl.stream frame beats at 8 bits; `keep` ignored), at
    most one a cycle; `i.ready` is low only while the FIFO is full.
    Emits on `o`, in `core_domain`, the same frames as `data_width`-bit beats, unused lanes of a frame's
    last beat zero.
    Latency: a beat is offered on `o` from the third core clock edge after its last byte is taken (the
    AsyncFIFO's two-stage synchroniser and output register). Throughput: a byte a cycle in, a beat a cycle
    out; the contract with the core's clock is in the module docstring. No bad input: a frame is whatever
    ends with `last`.
    """

    def __init__(
        self, data_width: int, *, eth_domain: str = "eth_rx", core_domain: str = "sync", depth: int = CDC_DEPTH
    ) -> None:
        self.layout = frame_layout(data_width)
        self.data_width, self.depth = data_width, depth
        self.eth_domain, self.core_domain = eth_domain, core_domain
        super().__init__({"i": In(frame_signature(8)), "o": Out(frame_signature(data_width))})

    def elaborate(self, platform):
        m = Module()
        lanes = self.data_width // 8
        queue = m.submodules.queue = fifo.AsyncFIFOBuffered(
            width=self.layout.size, depth=self.depth, w_domain=self.eth_domain, r_domain=self.core_domain
        )

        # Ethernet side: bytes gather in `gathered` until a beat is full or the frame ends, then the beat is
        # written with the byte that completes it, so a byte a cycle keeps flowing.
        byte = self.i.payload
        lane = Signal(range(lanes))
        gathered = Signal(data.ArrayLayout(8, lanes))
        beat = Signal(self.layout)
        complete = (lane == lanes - 1) | byte.last
        take = self.i.valid & queue.w_rdy
        for k in range(lanes):
            kept = lane >= k
            m.d.comb += [
                beat.data.word_select(k, 8).eq(Mux(kept, Mux(lane == k, byte.data, gathered[k]), 0)),
                beat.keep[k].eq(kept),
            ]
        m.d.comb += [
            beat.last.eq(byte.last),
            self.i.ready.eq(queue.w_rdy),
            queue.w_data.eq(beat),
            queue.w_en.eq(take & complete),
        ]
        with m.If(take):
            m.d[self.eth_domain] += lane.eq(Mux(complete, 0, lane + 1))
            for k in range(lanes - 1):
                with m.If(lane == k):
                    m.d[self.eth_domain] += gathered[k].eq(byte.data)

        # Core side.
        m.d.comb += [
            self.o.payload.eq(queue.r_data),
            self.o.valid.eq(queue.r_rdy),
            queue.r_en.eq(self.o.ready),
        ]
        return m


class FrameTxCDC(wiring.Component):
    """Frames to send, from `data_width`-bit beats in the core's clock to whole-frame bytes for MacTx.

    Accepts on `i`, in `core_domain`, frames as hdl.stream beats (every beat full but the last, whose valid
    lanes are the lowest ones); `i.ready` is low while the FIFO is full (MacTx sends at line rate, so the
    core waits as the wire does).
    Emits on `o`, in `eth_domain`, the frames a byte a cycle, each only once all of it is buffered (a
    FrameFIFO of `buffer_depth` bytes): once MacTx takes a frame's first byte the rest follows without a
    gap, whatever the core's clock. `oversize` strobes (in `eth_domain`) for a frame longer than
    `max_length` bytes (default 1518: 1522 on the wire with FCS; at most `buffer_depth` - 3), which is
    taken and dropped whole (it could never fit the buffer).
    Latency: store and forward: a beat is unpacked (a byte a cycle) from about the third Ethernet clock
    edge after it is taken; a frame's first byte is offered 8 cycles after its last byte is unpacked (a
    one-byte frame: from the eighth edge after its beat is taken). Throughput: a byte a cycle on the
    Ethernet side, a beat a cycle on the core's while the FIFO has room.
    Bad input: a beat with no `keep` bit is taken as one byte (lane 0).
    """

    def __init__(
        self,
        data_width: int,
        *,
        core_domain: str = "sync",
        eth_domain: str = "eth_tx",
        depth: int = CDC_DEPTH,
        max_length: int = MAX_FRAME - FCS_BYTES,
        buffer_depth: int = FRAME_BUFFER_DEPTH,
    ) -> None:
        if buffer_depth - 3 < max_length:
            raise ValueError(f"a {buffer_depth}-byte buffer cannot hold a {max_length}-byte frame")
        self.layout = frame_layout(data_width)
        self.data_width, self.depth, self.max_length, self.buffer_depth = data_width, depth, max_length, buffer_depth
        self.eth_domain, self.core_domain = eth_domain, core_domain
        super().__init__({"i": In(frame_signature(data_width)), "o": Out(frame_signature(8)), "oversize": Out(1)})

    def elaborate(self, platform):
        m = Module()
        lanes = self.data_width // 8
        queue = m.submodules.queue = fifo.AsyncFIFOBuffered(
            width=self.layout.size, depth=self.depth, w_domain=self.core_domain, r_domain=self.eth_domain
        )
        buffer = m.submodules.buffer = DomainRenamer(self.eth_domain)(FrameFIFO(self.buffer_depth))
        sync = m.d[self.eth_domain]

        # Core side.
        m.d.comb += [queue.w_data.eq(self.i.payload), queue.w_en.eq(self.i.valid), self.i.ready.eq(queue.w_rdy)]

        # Ethernet side. The AsyncFIFO's read logic behind `r_en` takes most of a 125 MHz cycle, so `r_en`
        # comes straight from a register: the FIFO is popped while `spare` is empty, and a beat popped
        # while the unpacker is busy waits there.
        incoming = data.View(self.layout, queue.r_data)
        spare, spare_held = Signal(self.layout), Signal()
        got = queue.r_rdy & ~spare_held
        m.d.comb += queue.r_en.eq(~spare_held)
        source = Signal(self.layout)  # the next beat to unpack: the spare one first
        m.d.comb += source.eq(Mux(spare_held, spare, incoming))
        source_last_lane = Signal(range(lanes))
        for k in range(1, lanes):  # the kept lanes are the lowest ones
            with m.If(source.keep[k]):
                m.d.comb += source_last_lane.eq(k)

        beat, held = Signal(self.layout), Signal()  # the beat being unpacked
        lane, last_lane = Signal(range(lanes)), Signal(range(lanes))
        final = Signal()  # lane == last_lane, as a register
        length = Signal(range(self.max_length + 1))  # bytes of this frame so far, stopping at max_length
        full_length = Signal()  # length == max_length, as a register
        dropping = Signal()  # the rest of an oversize frame
        too_long = ~dropping & full_length  # the byte on offer would be one too many
        take = held & (buffer.w_rdy | dropping)
        advance = ~held | (take & final)
        last = beat.last & final
        m.d.comb += [
            buffer.w_data.eq(beat.data.word_select(lane, 8)),
            buffer.w_last.eq(last),
            buffer.w_en.eq(take & ~dropping & ~too_long),
            buffer.w_commit.eq(take & last & ~dropping & ~too_long),
            buffer.w_discard.eq(take & too_long),
            self.oversize.eq(take & too_long),
        ]
        with m.If(advance):
            sync += [beat.eq(source), held.eq(spare_held | got), spare_held.eq(0)]
            sync += [lane.eq(0), last_lane.eq(source_last_lane), final.eq(source_last_lane == 0)]
        with m.Else():
            with m.If(take):
                sync += [lane.eq(lane + 1), final.eq(lane + 1 == last_lane)]
            with m.If(got):
                sync += [spare.eq(incoming), spare_held.eq(1)]
        with m.If(take):
            with m.If(last):
                sync += [length.eq(0), full_length.eq(0), dropping.eq(0)]
            with m.Elif(~full_length):
                sync += [length.eq(length + 1), full_length.eq(length + 1 == self.max_length)]
            with m.Else():
                sync += dropping.eq(1)

        wiring.connect(m, buffer.o, wiring.flipped(self.o))
        return m
