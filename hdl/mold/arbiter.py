"""A/B line arbitration of one MoldUDP64 feed: the first arrival of each sequence number wins."""

from amaranth.hdl import Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..stream import MESSAGE

__all__ = ["LineArbiter"]

A, B = 0, 1


class LineArbiter(wiring.Component):
    """Merge the message streams of the A and B lines of one feed, each sequence number passing once.

    Accepts one MESSAGE a transfer on ``lines[0]`` (line A) and ``lines[1]`` (line B), each line in its
    own sequence order. Works on messages, not packets, so lines packetised differently merge correctly.

    While no expected sequence is known (after domain reset or ``reset``) the first message to pass may
    have any number. Each cycle, against ``expected``:

    - every line's head with sequence < expected is a duplicate: consumed and dropped (even while
      ``messages`` is stalled);
    - of the other heads, the lower sequence (a tie goes to A) passes when ``messages`` has room; the other
      line's head is consumed with it as a duplicate when it carries the same sequence (lines in step
      cost one cycle per message, not two);
    - a passing sequence > expected is a gap: ``gap`` strobes, ``gap_first`` latches the first missing
      sequence (the old expected) and ``gap_count`` how many are missing.

    After a message passes, expected = its sequence + 1. Emits the passed messages on ``messages``
    unchanged except ``line``, set to the line (0 A, 1 B) it came in on. There is no hold-back buffer: a
    line that runs ahead of the other past a loss declares the gap, and the late copies are duplicates.

    Control: ``reset`` (strobe) forgets the expected sequence; ``expected_set`` (strobe) makes
    ``expected_value`` the expected sequence (it wins over ``reset`` in the same cycle). No message is
    taken in a cycle with either strobe; the new state applies from the next cycle.

    Status (registered, the cycle after): ``duplicates`` (0, 1 or 2 dropped that cycle), ``gap`` with
    ``gap_first`` / ``gap_count`` already showing its values (the gap's message is on ``messages`` that
    cycle), ``expected`` / ``expected_known``.

    Latency: 1 cycle (registered output). Throughput: one message passed a cycle while ``messages`` is
    ready, plus any duplicates; each input's ``ready`` depends combinationally on both lines' ``valid`` and
    sequence and on ``messages.ready``.
    """

    lines: In(stream.Signature(MESSAGE)).array(2)
    messages: Out(stream.Signature(MESSAGE))

    reset: In(1)
    expected_set: In(1)
    expected_value: In(64)

    expected: Out(64)
    expected_known: Out(1)
    duplicates: Out(range(3))
    gap: Out(1)
    gap_first: Out(64)
    gap_count: Out(64)

    def elaborate(self, platform):
        m = Module()
        a, b = self.lines[A], self.lines[B]
        out = self.messages

        control = self.reset | self.expected_set
        room = ~out.valid | out.ready
        behind = [line.valid & self.expected_known & (line.payload.sequence < self.expected) for line in self.lines]
        new = [line.valid & ~late for line, late in zip(self.lines, behind)]
        pick_b = new[B] & (~new[A] | (b.payload.sequence < a.payload.sequence))
        same = new[A] & new[B] & (a.payload.sequence == b.payload.sequence)
        passing = (new[A] | new[B]) & room & ~control
        chosen = Mux(pick_b, b.payload.as_value(), a.payload.as_value())
        sequence = Mux(pick_b, b.payload.sequence, a.payload.sequence)
        is_gap = self.expected_known & (sequence > self.expected)
        m.d.comb += [
            a.ready.eq(~control & (behind[A] | (passing & new[A] & (~pick_b | same)))),
            b.ready.eq(~control & (behind[B] | (passing & new[B] & (pick_b | same)))),
        ]

        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        m.d.sync += [
            self.duplicates.eq(Mux(control, 0, behind[A] + behind[B] + (passing & same))),
            self.gap.eq(0),
        ]

        with m.If(self.expected_set):
            m.d.sync += [self.expected.eq(self.expected_value), self.expected_known.eq(1)]
        with m.Elif(self.reset):
            m.d.sync += self.expected_known.eq(0)
        with m.Elif(passing):
            m.d.sync += [
                out.valid.eq(1),
                out.payload.eq(chosen),
                out.payload.line.eq(pick_b),
                self.expected.eq(sequence + 1),
                self.expected_known.eq(1),
            ]
            with m.If(is_gap):
                m.d.sync += [
                    self.gap.eq(1),
                    self.gap_first.eq(self.expected),
                    self.gap_count.eq(sequence - self.expected),
                ]
        return m
