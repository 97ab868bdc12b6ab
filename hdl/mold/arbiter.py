"""A/B line arbitration of one MoldUDP64 feed: the first arrival of each sequence number wins."""

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..stream import MESSAGE

__all__ = ["LineArbiter"]

A, B = 0, 1


class LineArbiter(wiring.Component):
    """Merge the message streams of the A and B lines of one feed, each sequence number passing once.

    Accepts one `payload` transfer (MESSAGE, or hdl.stream.DECODED: any layout with `sequence` and `line`)
    on ``lines[0]`` (line A) and ``lines[1]`` (line B), each line in its own sequence order, as the line's
    head. Works on messages, not packets, so lines packetised differently merge correctly.

    While no expected sequence is known (after domain reset or ``reset``) the first message to pass may
    have any number. Each cycle, against ``expected``:

    - every line's head with sequence < expected is a duplicate: consumed and dropped (whatever
      ``space``);
    - of the other heads, the lower sequence (a tie goes to A) passes while ``space`` is high; the other
      line's head is consumed with it as a duplicate when it carries the same sequence (lines in step
      cost one cycle per message, not two);
    - a passing sequence > expected is a gap: ``gap`` strobes, ``gap_first`` latches the first missing
      sequence (the old expected) and ``gap_count`` how many are missing.

    After a message passes, expected = its sequence + 1. Emits the passed messages on ``messages``
    unchanged except ``line``, set to the line (0 A, 1 B) it came in on. There is no hold-back buffer: a
    line that runs ahead of the other past a loss declares the gap, and the late copies are duplicates.

    Output flow control is a promise, not a handshake: ``messages`` has no ready (``always_ready``); its
    consumer raises ``space`` in a cycle when it can take a transfer in the next cycle, and a message
    passes only in such a cycle (it is on ``messages`` for exactly the next cycle).

    Control: ``reset`` (strobe) forgets the expected sequence; ``expected_set`` (strobe) makes
    ``expected_value`` the expected sequence (it wins over ``reset`` in the same cycle). Nothing passes or
    is dropped in a cycle with either strobe nor in the cycle after (the heads are judged again against
    the new state); heads may still be loaded.

    How it meets 156.25 MHz (bench/results/gateware_components.md has the measured figure): no 64-bit
    compare sits in the one-cycle decision. Each head carries a registered `behind` flag and the heads'
    order is registered, computed as a head is loaded from the incoming sequence against ``expected``,
    the other head and the message passing that cycle (a head that is not behind stays so: only a
    message of the same sequence, consumed with it, could pass it); the next expected sequence is a
    head's sequence + 1, added from the registers in parallel. No late decision drives a wide enable: a
    line's input is written every cycle into one of two slots and a load only switches the slot (the
    other holds the head), and both heads are copied every cycle with the choice registered beside them.

    Status (registered): ``duplicates`` (0, 1 or 2 dropped that cycle; the cycle after), ``expected`` /
    ``expected_known`` (the cycle after); ``gap`` strobes, with ``gap_first`` / ``gap_count`` already
    showing its values, the cycle after the gap's message is on ``messages``.

    Latency: 2 cycles (a message taken in cycle k is its line's head in k + 1 and on ``messages`` in
    k + 2 at the earliest). Throughput: one message passed a cycle while ``space`` is high, plus any
    duplicates dropped; a line's ``ready`` is high while it has no head or its head is being consumed,
    and depends combinationally on registers and ``space`` only.
    """

    def __init__(self, payload: data.Layout = MESSAGE) -> None:
        for name in ("sequence", "line"):
            if name not in payload.members:
                raise ValueError(f"the arbiter's payload needs a {name!r} field")
        self.payload = payload
        super().__init__(
            {
                "lines": In(stream.Signature(payload)).array(2),
                "messages": Out(stream.Signature(payload, always_ready=True)),
                "space": In(1),
                "reset": In(1),
                "expected_set": In(1),
                "expected_value": In(64),
                "expected": Out(64),
                "expected_known": Out(1),
                "duplicates": Out(range(3)),
                "gap": Out(1),
                "gap_first": Out(64),
                "gap_count": Out(64),
            }
        )

    def elaborate(self, platform):
        m = Module()
        lines, out = self.lines, self.messages
        expected, known = self.expected, self.expected_known

        head = [Signal(self.payload, name=f"head_{name}") for name in "ab"]  # the head's message, combinational
        held = [Signal(name=f"held_{name}") for name in "ab"]  # the head register holds a message
        behind = [Signal(name=f"behind_{name}") for name in "ab"]  # ... whose sequence < expected
        b_first = Signal()  # head B's sequence < head A's
        same_sequence = Signal()  # head A's sequence == head B's
        stale = Signal()  # a control strobe last cycle: the flags are being judged again

        # --- the decision, from registers only -----------------------------------------------------------------
        control = self.reset | self.expected_set
        decide = ~control & ~stale
        room = self.space
        new = [held[x] & ~behind[x] for x in (A, B)]
        pick_b = new[B] & (~new[A] | b_first)
        same = new[A] & new[B] & same_sequence
        passing = (new[A] | new[B]) & room & decide
        dropped = [decide & held[x] & behind[x] for x in (A, B)]
        consumed = [
            dropped[A] | (passing & new[A] & (~pick_b | same)),
            dropped[B] | (passing & new[B] & (pick_b | same)),
        ]
        load = [Signal(name=f"load_{name}") for name in "ab"]
        for x in (A, B):
            m.d.comb += [lines[x].ready.eq(~held[x] | consumed[x]), load[x].eq(lines[x].valid & lines[x].ready)]

        # --- the heads and their flags, judged as they load --------------------------------------------------------
        # A line's messages go into two slots: the input is written into one slot every cycle, loaded or not,
        # and a load keeps it there by switching the writes to the other slot, which holds the head. So the
        # late `load` decision drives one register, not a head register's hundreds of enables.
        slots = [[Signal(self.payload, name=f"slot_{name}{k}") for k in (0, 1)] for name in "ab"]
        write_at = [Signal(name=f"write_at_{name}") for name in "ab"]
        for x in (A, B):
            for k in (0, 1):
                with m.If(write_at[x] == k):
                    m.d.sync += slots[x][k].eq(lines[x].payload)
            m.d.comb += head[x].eq(Mux(write_at[x], slots[x][0].as_value(), slots[x][1].as_value()))
        incoming = [lines[x].payload.sequence for x in (A, B)]
        sequence = [Signal(64, name=f"sequence_{name}") for name in "ab"]  # the head's, a register of its own
        for x in (A, B):
            with m.If(load[x]):
                m.d.sync += [write_at[x].eq(~write_at[x]), held[x].eq(1), sequence[x].eq(incoming[x])]
                # Behind the expected sequence after this cycle: behind the current one, or at most the
                # sequence passing now (which the expected sequence moves past).
                passed_over = Mux(pick_b, _at_most(incoming[x], sequence[B]), _at_most(incoming[x], sequence[A]))
                m.d.sync += behind[x].eq((known & _less(incoming[x], expected)) | (passing & passed_over))
            with m.Else():
                with m.If(consumed[x]):
                    m.d.sync += held[x].eq(0)
                with m.If(stale):
                    m.d.sync += behind[x].eq(known & _less(sequence[x], expected))
        # The heads' order after this cycle, each of them the incoming message or the staying head: all four
        # pairs compared from registers, one picked by the loads (as and-or terms, so that synthesis keeps
        # four compares rather than one behind a multiplexer of their operands).
        next_b_first, next_same = 0, 0
        for load_a, a in ((0, sequence[A]), (1, incoming[A])):
            for load_b, b in ((0, sequence[B]), (1, incoming[B])):
                case = (load[A] == load_a) & (load[B] == load_b)
                next_b_first |= case & _less(b, a)
                next_same |= case & (a == b)
        m.d.sync += [b_first.eq(next_b_first), same_sequence.eq(next_same)]

        # --- the expected sequence -----------------------------------------------------------------------------
        m.d.sync += stale.eq(control)
        with m.If(self.expected_set):
            m.d.sync += [expected.eq(self.expected_value), known.eq(1)]
        with m.Elif(self.reset):
            m.d.sync += known.eq(0)
        with m.Elif(passing):
            m.d.sync += [expected.eq(Mux(pick_b, sequence[B] + 1, sequence[A] + 1)), known.eq(1)]
        m.d.sync += self.duplicates.eq(dropped[A] + dropped[B] + (passing & same))

        # --- the output register -------------------------------------------------------------------------------
        m.d.sync += out.valid.eq(passing)  # for one cycle: the consumer promised room with `space`
        # Both heads are copied every cycle and the output is the chosen copy: the decision drives one register,
        # not hundreds of multiplexers or enables.
        kept = [Signal(self.payload, name=f"kept_{name}") for name in "ab"]
        from_b = Signal()
        m.d.sync += [kept[A].eq(head[A]), kept[B].eq(head[B]), from_b.eq(pick_b)]
        m.d.comb += [out.payload.eq(Mux(from_b, kept[B].as_value(), kept[A].as_value())), out.payload.line.eq(from_b)]

        # --- gaps, judged the cycle after a message passes, off the decision loop --------------------------------
        judged = Signal()
        judged_known = Signal()
        judged_expected = Signal(64)
        m.d.sync += [judged.eq(passing), judged_known.eq(known), judged_expected.eq(expected)]
        judged_sequence = out.payload.sequence
        is_gap = judged & judged_known & (judged_sequence != judged_expected)  # not behind: any difference
        m.d.sync += self.gap.eq(is_gap)
        with m.If(is_gap):
            m.d.sync += [self.gap_first.eq(judged_expected), self.gap_count.eq(judged_sequence - judged_expected)]
        return m


def _less(x: Value, y: Value) -> Value:
    """x < y for 64-bit unsigned values, as two 32-bit compares side by side (half the carry chain)."""
    return (x[32:] < y[32:]) | ((x[32:] == y[32:]) & (x[:32] < y[:32]))


def _at_most(x: Value, y: Value) -> Value:
    return ~_less(y, x)
