"""Wide counters kept in block RAM: a total per counter in a memory, a small pending count per counter in
flip-flops, and a flusher that folds the pending counts into the totals, one counter per cycle."""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_READ_SPACING", "READ_LATENCY", "CounterRam", "flush_interval", "pending_width"]

READ_LATENCY = 2  # cycles from `read` to its `value`
MIN_READ_SPACING = 2  # a read takes the flusher's cycle: reads in consecutive cycles would stop it


def flush_interval(counters: int, read_spacing: int) -> int:
    """The most cycles from one flush of a counter to its next (and from reset to its first).

    The flusher takes one counter per cycle in turn, but for the cycles of reads. Between two flushes of a
    counter, D cycles apart, are the other counters' flushes and P reads: D = counters + P, where the P
    reads fall in D - 1 cycles, `read_spacing` or more apart: P <= (D - 1) / read_spacing + 1, so
    D <= (counters + 1) * s / (s - 1)."""
    if read_spacing < MIN_READ_SPACING:
        raise ValueError(f"reads at least {MIN_READ_SPACING} cycles apart, got {read_spacing}")
    return (counters + 1) * read_spacing // (read_spacing - 1)


def pending_width(amount_width: int, interval: int) -> int:
    """Bits of a count that takes `interval` amounts of `amount_width` bits from one flush to the next."""
    return (interval * ((1 << amount_width) - 1)).bit_length()


class CounterRam(wiring.Component):
    """`len(amount_widths)` counters of `width` bits (wrapping), read one at a time: a register file's
    counters in one block RAM instead of `width` flip-flops each.

    Ports:
    - `increment[i]`: In, counter i's amount this cycle (bits above `amount_widths[i]` are ignored): it counts
      from the next cycle, as a counter in flip-flops would.
    - `clear`: In, clears every counter at once: the increments presented up to and including its cycle are
      lost, every later one counts.
    - `read`, `read_index`: In. A read samples counter `read_index` in the cycle of `read`: `value` is, for
      one cycle READ_LATENCY cycles later, the sum of its increments presented since its last `clear` up to
      and including the `read` cycle. `value` is 0 in every other cycle, so that it can join a read mux's
      OR. Reads are at least `read_spacing` (>= MIN_READ_SPACING) cycles apart.

    Inside: a `width` x n memory (memory.Memory, one write port, one synchronous read port transparent for
    it, read latency 1 cycle) holds each counter's flushed total; a pending count in flip-flops
    (`pending_widths[i]` bits) takes its increments; a `stale` flag per counter says its memory word is to be
    read as 0. The flusher takes the counters in turn, counter 0 first after reset, one per cycle but for
    the cycle of a read: it moves the counter's pending count plus the cycle's increment, and its stale flag,
    into registers while the count restarts from 0, reads the memory word, and the next cycle writes back
    the word (0 if it was stale) plus the moved count. A read takes the same path in its cycle, but leaves
    the count and the word as they are. `flush_interval` bounds the cycles between two flushes of a counter,
    even under back-to-back reads; the pending counts are wide enough for that many of the widest
    increments. `clear` zeroes every pending count and sets every stale flag, instantly; reset too (the
    memory keeps old totals, read as 0).
    """

    def __init__(self, amount_widths: Sequence[int], *, read_spacing: int, width: int = 64):
        if not amount_widths:
            raise ValueError("a counter RAM holds at least one counter")
        if not all(1 <= a <= width for a in amount_widths):
            raise ValueError(f"amount widths {list(amount_widths)}: each from 1 to the counter width {width}")
        self.amount_widths = tuple(amount_widths)
        self.width = width
        self.read_spacing = read_spacing
        self.flush_interval = flush_interval(len(amount_widths), read_spacing)
        self.pending_widths = tuple(pending_width(a, self.flush_interval) for a in self.amount_widths)
        n = len(amount_widths)
        super().__init__(
            {
                "increment": In(max(amount_widths)).array(n),
                "clear": In(1),
                "read": In(1),
                "read_index": In(range(n)),
                "value": Out(width),
            }
        )

    def elaborate(self, platform):
        m = Module()
        n = len(self.amount_widths)
        # The read port is transparent for the write port: a flush or a read sees the word the flush of the
        # cycle before is writing back (the same counter's, for a read just after it, or with one counter).
        # An ECP5 EBR has no transparency between its ports, so synthesis adds a bypass (a register of the
        # word written and a mux): cheaper than the old-data behaviour a non-transparent port asks for there.
        m.submodules.totals = totals = memory.Memory(shape=unsigned(self.width), depth=n, init=[])
        store = totals.write_port()
        fetch = totals.read_port(transparent_for=(store,))

        # The flusher's turn, in binary for the memory address and one-hot so that each counter's flush is
        # decided by a flip-flop of its own rather than by a comparator.
        flush = ~self.read
        turn = Signal(range(n))
        turn_one_hot = Signal(n, init=1)
        with m.If(flush):
            m.d.sync += [
                turn.eq(Mux(turn == n - 1, 0, turn + 1)),
                turn_one_hot.eq(turn_one_hot.rotate_left(1)),
            ]

        # Each counter: a pending count, which a flush (or `clear`) restarts from 0 as it takes `counted`.
        counted, stale = [], []
        for i, (amount_width, k) in enumerate(zip(self.amount_widths, self.pending_widths)):
            pending = Signal(k, name=f"pending_{i}")
            counted.append(Signal(k, name=f"counted_{i}"))  # its increments up to and including this cycle
            stale.append(Signal(name=f"stale_{i}", init=1))
            flushing = flush & turn_one_hot[i]
            m.d.comb += counted[i].eq(pending + self.increment[i][:amount_width])
            m.d.sync += [
                pending.eq(Mux(self.clear | flushing, 0, counted[i])),
                stale[i].eq(self.clear | (stale[i] & ~flushing)),
            ]

        # One mux serves both: the counter flushed, or the one read. A `clear` in that cycle empties what it
        # takes (and the counter is stale again): the flush then writes back a word that is read as 0.
        at = Mux(self.read, self.read_index, turn)
        widest = max(self.pending_widths)
        counters = Array(Cat(c, Const(0, widest - len(c)), s) for c, s in zip(counted, stale))
        taken, taken_stale = Signal(widest), Signal(init=1)  # after reset, the first write-back writes 0
        m.d.comb += fetch.addr.eq(at)
        m.d.sync += Cat(taken, taken_stale).eq(Mux(self.clear, Cat(Const(0, widest), 1), counters[at]))
        total = Signal(self.width)
        m.d.comb += total.eq(Mux(taken_stale, 0, fetch.data) + taken)

        written, answering = Signal.like(turn), Signal()
        m.d.sync += [written.eq(turn), answering.eq(self.read)]
        m.d.comb += [store.addr.eq(written), store.data.eq(total), store.en.eq(~answering)]
        m.d.sync += self.value.eq(Mux(answering, total, 0))
        return m
