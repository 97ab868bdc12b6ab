"""A FIFO that costs no cycle when it is empty: the elastic buffer in front of the book."""

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import fifo, memory, stream, wiring
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

    Storage: distributed RAM (an asynchronous read: a queued transfer is offered the cycle after it is
    written), or with `block_ram` a memory with a synchronous read port, which block RAM implements (for a
    device short of LUTs: a wide, shallow queue in distributed RAM costs a LUT per 4 bits a word, and as many
    again in write logic). The block RAM's read register holds the oldest entry while `o` waits (the read
    port is enabled only to load the next one), so the output is still one mux away from it; a queued
    transfer is offered 2 cycles after it is written, and the queue drains one a cycle.
    """

    def __init__(self, shape, depth: int, *, block_ram: bool = False) -> None:
        if depth < 2:
            raise ValueError(f"depth must be at least 2 (`space` says two entries are free), got {depth}")
        self.shape, self.depth, self.block_ram = shape, depth, block_ram
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape)), "space": Out(1)})

    def elaborate(self, platform):
        if self.block_ram:
            return self._elaborate_block_ram()
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

    def _elaborate_block_ram(self) -> Module:
        m = Module()
        width, depth = len(Value.cast(self.i.payload)), self.depth
        m.submodules.queue = queue = memory.Memory(shape=width, depth=depth, init=[], attrs={"ram_style": "block"})
        write, read = queue.write_port(), queue.read_port()
        head, tail = Signal(range(depth)), Signal(range(depth))  # the next entry to read, to write
        stored = Signal(range(depth + 1))  # entries in the memory, written in earlier cycles
        loaded = Signal()  # the read port's data is the oldest entry, not yet taken
        level = Signal(range(depth + 1))  # stored + loaded, as a register
        taken = self.o.valid & self.o.ready
        pass_through = ~loaded & (stored == 0) & self.o.ready  # (an input now leaves at once)
        enqueue = self.i.valid & self.i.ready & ~pass_through
        # A read is issued only for an entry written in an earlier cycle (`stored`), so it never meets its
        # own write, and only when the read register is free by the next cycle.
        fetch = (stored != 0) & (~loaded | taken)
        m.d.comb += [
            self.o.valid.eq(loaded | (self.i.valid & (stored == 0))),
            self.o.payload.eq(Mux(loaded, read.data, Value.cast(self.i.payload))),
            self.i.ready.eq(level != depth),
            self.space.eq(level <= depth - 2),
            write.addr.eq(tail),
            write.data.eq(Value.cast(self.i.payload)),
            write.en.eq(enqueue),
            read.addr.eq(head),
            read.en.eq(fetch),
        ]
        with m.If(enqueue):
            m.d.sync += tail.eq(Mux(tail == depth - 1, 0, tail + 1))
        with m.If(fetch):
            m.d.sync += [head.eq(Mux(head == depth - 1, 0, head + 1)), loaded.eq(1)]
        with m.Elif(taken & loaded):
            m.d.sync += loaded.eq(0)
        m.d.sync += [stored.eq(stored + enqueue - fetch), level.eq(level + enqueue - (taken & loaded))]
        return m
