"""A/B line arbitration of one MoldUDP64 feed: the first arrival of each sequence number wins."""

from amaranth.hdl import Cat, Module, Mux, Signal, Value
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
    is dropped in a cycle with either strobe nor in the two cycles after (the heads are judged again
    against the new state); heads may still be loaded.

    Timing (bench/results/gateware_components.md has the measured figure): no compare sits in the
    one-cycle decision. As a head is loaded, its sequence is compared with ``expected``, with both heads
    (the message passing that cycle moves ``expected`` past its own sequence) and with the other line's
    incoming or staying head, all from registers, and the results are registered; the next cycle the
    registered loads and decision pick the head's `behind` flag and the heads' order from them (a head
    that is not behind stays so: only a message of the same sequence, consumed with it, could pass it).
    The next expected sequence is a head's sequence + 1, added from the registers in parallel. No late
    decision drives a wide enable: a line's input is written every cycle into one of two slots and a
    load only switches the slot (the other holds the head), and both heads are copied every cycle with
    the choice registered beside them.

    Status (registered): ``duplicates`` (0, 1 or 2 dropped that cycle; the cycle after), ``expected`` /
    ``expected_known`` (the cycle after); ``gap`` strobes, with ``gap_first`` / ``gap_count`` already
    showing its values, the cycle after the gap's message is on ``messages``.

    Latency: 2 cycles (a message taken in cycle k is its line's head in k + 1 and on ``messages`` in
    k + 2 at the earliest). Throughput: one message passed a cycle while ``space`` is high, plus any
    duplicates dropped; a line's ``ready`` is high while it has no head or its head is being consumed,
    and depends combinationally on registers and ``space`` only.
    """

    def __init__(self, payload: data.Layout = MESSAGE) -> None:
        self.payload = payload
        super().__init__(line_signature(payload, n_lines=2, what="arbiter"))

    def elaborate(self, platform):
        m = Module()
        lines, out = self.lines, self.messages
        expected, known = self.expected, self.expected_known

        head = [Signal(self.payload, name=f"head_{name}") for name in "ab"]  # the head's message, combinational
        held = [Signal(name=f"held_{name}") for name in "ab"]  # the head register holds a message
        behind = [Signal(name=f"behind_{name}") for name in "ab"]  # ... whose sequence < expected (combinational)
        b_first = Signal()  # head B's sequence < head A's (combinational)
        same_sequence = Signal()  # head A's sequence == head B's (combinational)
        stale = Signal(2)  # a control strobe in one of the last two cycles: the flags are being judged again

        # --- the decision, from registers and a select among registered compares ------------------------------
        control = self.reset | self.expected_set
        decide = ~control & ~stale.any()
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

        # --- the heads, and the compares their flags are picked from -----------------------------------------------
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
            with m.Elif(consumed[x]):
                m.d.sync += held[x].eq(0)

        # Every compare a flag may need next cycle is made this cycle between registers and the incoming
        # sequences, whether a line loads or not, and registered; next cycle the loads (registered beside them)
        # pick the flags. So no compare is behind a late decision, and the decision only selects.
        loaded = [Signal(name=f"loaded_{name}") for name in "ab"]
        passed = Signal()  # a message passed in the loads' cycle
        passed_b = Signal()  # ... from line B (not the output's `from_b`: that one's select fans out wide)
        was_known = Signal()  # the expected sequence was known in the loads' cycle
        behind_expected = [Signal(name=f"behind_expected_{name}") for name in "ab"]  # incoming < expected
        at_most_a = [Signal(name=f"at_most_a_{name}") for name in "ab"]  # incoming <= head A's sequence
        at_most_b = [Signal(name=f"at_most_b_{name}") for name in "ab"]  # incoming <= head B's sequence
        m.d.sync += [loaded[x].eq(load[x]) for x in (A, B)]
        m.d.sync += [passed.eq(passing), passed_b.eq(passing & pick_b), was_known.eq(known)]
        for x in (A, B):
            m.d.sync += [
                behind_expected[x].eq(less(incoming[x], expected)),
                at_most_a[x].eq(at_most(incoming[x], sequence[A])),
                at_most_b[x].eq(at_most(incoming[x], sequence[B])),
            ]
        # A head judged as it loads is behind the expected sequence after its cycle: behind the one then, or at
        # most the sequence passing then (which the expected sequence moved past). A head that is not behind
        # stays so (only a message of the same sequence, consumed with it, could pass it); after a control
        # strobe every held head is judged again, from registers.
        kept_behind = [Signal(name=f"kept_behind_{name}") for name in "ab"]
        for x in (A, B):
            judged = (was_known & behind_expected[x]) | (passed & Mux(passed_b, at_most_b[x], at_most_a[x]))
            m.d.comb += behind[x].eq(Mux(loaded[x], judged, kept_behind[x]))
            # every cycle, from registers; after a control strobe, the head held then judged against the new state
            judged_again = Signal(name=f"judged_again_{'ab'[x]}")
            m.d.sync += judged_again.eq(known & less(sequence[x], expected))
            with m.If(stale[1]):
                m.d.sync += kept_behind[x].eq(Mux(loaded[x], judged, judged_again))
            with m.Else():
                m.d.sync += kept_behind[x].eq(behind[x])
        # The heads' order: for each pair the loads can make (an incoming message or the staying head per line).
        pair_b_first = {}
        pair_same = {}
        for load_a, a in ((0, sequence[A]), (1, incoming[A])):
            for load_b, b in ((0, sequence[B]), (1, incoming[B])):
                if load_a or load_b:  # both heads staying keep their flags
                    pair = (load_a, load_b)
                    pair_b_first[pair] = Signal(name=f"b_first_{load_a}{load_b}")
                    pair_same[pair] = Signal(name=f"same_{load_a}{load_b}")
                    m.d.sync += [pair_b_first[pair].eq(less(b, a)), pair_same[pair].eq(a == b)]
        kept_b_first = Signal()
        kept_same = Signal()
        m.d.sync += [kept_b_first.eq(b_first), kept_same.eq(same_sequence)]
        for flag, pairs, kept in ((b_first, pair_b_first, kept_b_first), (same_sequence, pair_same, kept_same)):
            m.d.comb += flag.eq(
                Mux(loaded[A], Mux(loaded[B], pairs[1, 1], pairs[1, 0]), Mux(loaded[B], pairs[0, 1], kept))
            )

        # --- the expected sequence -----------------------------------------------------------------------------
        m.d.sync += stale.eq(Cat(control, stale[0]))
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

        # --- gaps: both heads compared with the expected sequence from registers while the decision is made, the
        # passing one's result picked the cycle after (off the decision loop). The distance is subtracted in two
        # 32-bit halves, the low one (with its borrow) in the first cycle, so no carry chain is 64 bits long.
        differs = [Signal(name=f"differs_{name}") for name in "ab"]  # the head's sequence != expected
        low = [Signal(33, name=f"distance_low_{name}") for name in "ab"]  # low 32 bits of sequence - expected, borrow
        high = [Signal(32, name=f"sequence_high_{name}") for name in "ab"]
        judged_expected = Signal(64)
        for x in (A, B):
            m.d.sync += [
                differs[x].eq(sequence[x] != expected),
                low[x].eq(sequence[x][:32] - expected[:32]),
                high[x].eq(sequence[x][32:]),
            ]
        m.d.sync += judged_expected.eq(expected)
        is_gap = passed & was_known & Mux(passed_b, differs[B], differs[A])  # not behind: any difference
        distance_low = Mux(passed_b, low[B], low[A])
        distance_high = Mux(passed_b, high[B], high[A]) - judged_expected[32:] - distance_low[32]
        m.d.sync += self.gap.eq(is_gap)
        with m.If(is_gap):
            m.d.sync += [self.gap_first.eq(judged_expected), self.gap_count.eq(Cat(distance_low[:32], distance_high))]
        return m


def line_signature(payload: data.Layout, *, n_lines: int, what: str) -> wiring.Signature:
    """The ports of a line merge (LineArbiter, two lines; hdl.mold.sequencer's LineSequencer, one): `n_lines`
    payload inputs, the promise-based output, control and status. ValueError naming `what` when the payload
    has no `sequence` or `line` field."""
    for name in ("sequence", "line"):
        if name not in payload.members:
            raise ValueError(f"the {what}'s payload needs a {name!r} field")
    return wiring.Signature(
        {
            "lines": In(stream.Signature(payload)).array(n_lines),
            "messages": Out(stream.Signature(payload, always_ready=True)),
            "space": In(1),
            "reset": In(1),
            "expected_set": In(1),
            "expected_value": In(64),
            "expected": Out(64),
            "expected_known": Out(1),
            "duplicates": Out(range(3)),  # 0, 1 or 2 a cycle (one line: at most 1)
            "gap": Out(1),
            "gap_first": Out(64),
            "gap_count": Out(64),
        }
    )


def less(x: Value, y: Value) -> Value:
    """x < y for 64-bit unsigned values, as two 32-bit compares side by side (half the carry chain)."""
    return (x[32:] < y[32:]) | ((x[32:] == y[32:]) & (x[:32] < y[:32]))


def at_most(x: Value, y: Value) -> Value:
    return ~less(y, x)
