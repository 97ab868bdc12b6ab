"""A FIFO that costs no cycle when it is empty: the elastic buffer in front of the book."""

from amaranth.hdl import Module, Mux, Value
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BypassFIFO"]


class BypassFIFO(wiring.Component):
    """Stream FIFO of `depth` entries whose input goes straight to its output while it is empty.

    Accepts on `i` and emits on `o` the same transfers in the same order. Latency: 0 cycles while the FIFO
    is empty and `o` is ready (the input's payload and valid reach `o` combinationally), otherwise the
    transfer waits its turn in the FIFO. Throughput: one transfer a cycle. `i.ready` is high while the FIFO
    has room (whatever `o.ready`), so a producer with a registered output needs no skid logic. Use it after
    a registered stage: the bypass adds no register of its own.

    `space` is high while at least two entries are free: a producer that only sends in the cycle after
    `space` (hdl.mold.arbiter's promise-based output) never finds the FIFO full, even with a transfer of
    the cycle before still arriving. It comes from the FIFO's level register through one compare.
    """

    def __init__(self, shape, depth: int) -> None:
        self.shape, self.depth = shape, depth
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape)), "space": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.queue = queue = fifo.SyncFIFO(width=len(Value.cast(self.i.payload)), depth=self.depth)
        empty = ~queue.r_rdy
        m.d.comb += [
            self.o.valid.eq(queue.r_rdy | self.i.valid),
            self.o.payload.eq(Mux(empty, Value.cast(self.i.payload), queue.r_data)),
            queue.r_en.eq(self.o.ready),
            # Queued unless it leaves straight away: an empty FIFO with a ready consumer passes it through.
            queue.w_data.eq(Value.cast(self.i.payload)),
            queue.w_en.eq(self.i.valid & ~(empty & self.o.ready)),
            self.i.ready.eq(queue.w_rdy),
            self.space.eq(queue.level <= self.depth - 2),
        ]
        return m
