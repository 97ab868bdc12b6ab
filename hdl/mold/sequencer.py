"""One line of a MoldUDP64 feed in sequence order: duplicates dropped, gaps reported (a one-line LineArbiter)."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring

from ..stream import MESSAGE
from .arbiter import at_most, less, line_signature

__all__ = ["LineSequencer"]


class LineSequencer(wiring.Component):
    """LineArbiter's contract for a feed received on one line only (a board with one feed port): every
    port, rule and timing is LineArbiter's with line B absent, at about a third of its logic.

    Accepts one `payload` transfer (MESSAGE, or hdl.stream.DECODED: any layout with `sequence` and `line`)
    on ``lines[0]``, in the line's sequence order, as the head. Each cycle, against ``expected`` (any
    number may pass while no expected sequence is known, after domain reset or ``reset``):

    - a head with sequence < expected is a duplicate: consumed and dropped (whatever ``space``);
    - any other head passes while ``space`` is high; a passing sequence > expected is a gap: ``gap``
      strobes, ``gap_first`` latches the first missing sequence (the old expected) and ``gap_count`` how
      many are missing.

    After a message passes, expected = its sequence + 1. Emits the passed messages on ``messages``
    unchanged but for ``line``, set to 0. Output flow control is LineArbiter's promise: ``messages`` has
    no ready; its consumer raises ``space`` in a cycle when it can take a transfer in the next one, and a
    message passes only in such a cycle (on ``messages`` for exactly the next cycle).

    Control: ``reset`` (strobe) forgets the expected sequence; ``expected_set`` (strobe) makes
    ``expected_value`` the expected sequence (it wins over ``reset``). Nothing passes or is dropped in a
    cycle with either strobe nor in the two cycles after; the head may still be loaded.

    Status (registered): ``duplicates`` (0 or 1 dropped that cycle; the cycle after), ``expected`` /
    ``expected_known`` (the cycle after); ``gap`` strobes, with ``gap_first`` / ``gap_count`` showing its
    values, the cycle after the gap's message is on ``messages``.

    Latency: 2 cycles (a message taken in cycle k is the head in k + 1 and on ``messages`` in k + 2 at the
    earliest). Throughput: one message a cycle, passed while ``space`` is high or dropped as a duplicate;
    ``lines[0].ready`` is high while there is no head or the head is being consumed.

    Timing: as LineArbiter's, no compare sits in the one-cycle decision: the head's `behind` flag is
    worked out as it loads (against the expected sequence, and against the head passing in that cycle,
    which moves the expected sequence past itself), registered, and picked the next cycle; the gap's
    distance is subtracted in two 32-bit halves over two cycles. The output is a copy of the head made
    every cycle, so the decision drives the output's valid bit only.
    """

    def __init__(self, payload: data.Layout = MESSAGE) -> None:
        self.payload = payload
        super().__init__(line_signature(payload, n_lines=1, what="sequencer"))

    def elaborate(self, platform):
        m = Module()
        line, out = self.lines[0], self.messages
        expected, known = self.expected, self.expected_known

        head = Signal(self.payload)
        held = Signal()  # the head register holds a message
        sequence = Signal(64)  # the head's sequence, a register of its own
        behind = Signal()  # the head's sequence < expected (combinational, from registers)
        stale = Signal(2)  # a control strobe in one of the last two cycles: the flag is being judged again

        # --- the decision -------------------------------------------------------------------------------------
        control = self.reset | self.expected_set
        decide = ~control & ~stale.any()
        passing = held & ~behind & self.space & decide
        dropped = held & behind & decide
        consumed = passing | dropped
        load = Signal()
        m.d.comb += [line.ready.eq(~held | consumed), load.eq(line.valid & line.ready)]
        with m.If(load):
            m.d.sync += [head.eq(line.payload), sequence.eq(line.payload.sequence), held.eq(1)]
        with m.Elif(consumed):
            m.d.sync += held.eq(0)

        # --- the head's flag: compared as it loads, picked the cycle after ----------------------------------------
        incoming = line.payload.sequence
        loaded, passed, was_known = Signal(), Signal(), Signal()
        behind_expected = Signal()  # incoming < expected
        at_most_head = Signal()  # incoming <= the head's sequence (the head passing moves expected past it)
        judged_again = Signal()  # the head held, against the expected sequence (after a control strobe)
        kept_behind = Signal()
        m.d.sync += [
            loaded.eq(load),
            passed.eq(passing),
            was_known.eq(known),
            behind_expected.eq(less(incoming, expected)),
            at_most_head.eq(at_most(incoming, sequence)),
            judged_again.eq(known & less(sequence, expected)),
        ]
        judged = (was_known & behind_expected) | (passed & at_most_head)
        m.d.comb += behind.eq(Mux(loaded, judged, kept_behind))
        m.d.sync += kept_behind.eq(Mux(stale[1] & ~loaded, judged_again, behind))

        # --- the expected sequence -------------------------------------------------------------------------------
        m.d.sync += stale.eq(Cat(control, stale[0]))
        with m.If(self.expected_set):
            m.d.sync += [expected.eq(self.expected_value), known.eq(1)]
        with m.Elif(self.reset):
            m.d.sync += known.eq(0)
        with m.Elif(passing):
            m.d.sync += [expected.eq(sequence + 1), known.eq(1)]
        m.d.sync += self.duplicates.eq(dropped)

        # --- the output register: the head copied every cycle -----------------------------------------------------
        kept = Signal(self.payload)
        m.d.sync += [out.valid.eq(passing), kept.eq(head)]
        m.d.comb += [out.payload.eq(kept), out.payload.line.eq(0)]

        # --- gaps: the distance in two 32-bit halves, the low one (with its borrow) in the decision's cycle --------
        differs = Signal()
        low = Signal(33)  # low 32 bits of sequence - expected, and the borrow
        high = Signal(32)
        judged_expected = Signal(64)
        m.d.sync += [
            differs.eq(sequence != expected),
            low.eq(sequence[:32] - expected[:32]),
            high.eq(sequence[32:]),
            judged_expected.eq(expected),
        ]
        is_gap = passed & was_known & differs  # not behind: any difference is a gap
        m.d.sync += self.gap.eq(is_gap)
        with m.If(is_gap):
            m.d.sync += [
                self.gap_first.eq(judged_expected),
                self.gap_count.eq(Cat(low[:32], high - judged_expected[32:] - low[32])),
            ]
        return m
