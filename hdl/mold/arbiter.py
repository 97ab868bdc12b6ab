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

    Each cycle one message is examined: when both lines offer one, the lower sequence number (a tie goes
    to A), else the one offered. While no expected sequence is known (after domain reset or ``reset``) the
    first message examined passes whatever its number. Then, against ``expected``:

    - sequence < expected: a duplicate, consumed in the cycle it is examined (even while ``messages`` is
      stalled) and dropped; ``duplicate`` strobes.
    - sequence == expected: passes.
    - sequence > expected: passes and is a gap: ``gap`` strobes, ``gap_first`` latches the first missing
      sequence (the old expected) and ``gap_count`` how many are missing.

    After a message passes, expected = its sequence + 1. Emits the passed messages on ``messages``
    unchanged except ``line``, set to the line (0 A, 1 B) it came in on.

    Control: ``reset`` (strobe) forgets the expected sequence; ``expected_set`` (strobe) makes
    ``expected_value`` the expected sequence (it wins over ``reset`` in the same cycle). No message is
    examined in a cycle with either strobe; the new state applies from the next cycle.

    Status (registered): ``expected`` / ``expected_known``; ``duplicate`` and ``gap`` strobe in the cycle
    after the message was examined (a gap's message is on ``messages`` that cycle), with ``gap_first`` and
    ``gap_count`` already showing its values; ``missing`` is the running total of ``gap_count`` since domain
    reset (``reset`` does not clear it), updated one cycle after ``gap``.

    Latency: 1 cycle (registered output). Throughput: one message examined a cycle, so one message out a
    cycle while ``messages`` is ready. An input's ``ready`` depends combinationally on both lines' ``valid``
    and sequence and on ``messages.ready``. A line waits for the other only while the other offers a lower
    sequence (for lines in step: one cycle per message).
    """

    lines: In(stream.Signature(MESSAGE)).array(2)
    messages: Out(stream.Signature(MESSAGE))

    reset: In(1)
    expected_set: In(1)
    expected_value: In(64)

    expected: Out(64)
    expected_known: Out(1)
    duplicate: Out(1)
    gap: Out(1)
    gap_first: Out(64)
    gap_count: Out(64)
    missing: Out(64)

    def elaborate(self, platform):
        m = Module()
        a, b = self.lines[A], self.lines[B]
        out = self.messages

        # Each line's verdict is computed on its own sequence before the pick, so the pick (a compare of
        # the two sequences) and the verdicts are parallel paths rather than one after the other.
        pick_b = b.valid & (~a.valid | (b.payload.sequence < a.payload.sequence))
        behind = [self.expected_known & (line.payload.sequence < self.expected) for line in self.lines]
        ahead = [self.expected_known & (line.payload.sequence > self.expected) for line in self.lines]
        chosen = Mux(pick_b, b.payload.as_value(), a.payload.as_value())
        sequence = Mux(pick_b, b.payload.sequence, a.payload.sequence)
        is_duplicate = Mux(pick_b, behind[B], behind[A])
        is_gap = Mux(pick_b, ahead[B], ahead[A])

        control = self.reset | self.expected_set
        room = ~out.valid | out.ready
        take = (a.valid | b.valid) & ~control & (is_duplicate | room)
        m.d.comb += [
            a.ready.eq(take & ~pick_b),
            b.ready.eq(take & pick_b),
        ]

        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        m.d.sync += [self.duplicate.eq(0), self.gap.eq(0)]
        # The running total trails `gap` by a cycle: keeps the adder off the examination path.
        with m.If(self.gap):
            m.d.sync += self.missing.eq(self.missing + self.gap_count)

        with m.If(self.expected_set):
            m.d.sync += [self.expected.eq(self.expected_value), self.expected_known.eq(1)]
        with m.Elif(self.reset):
            m.d.sync += self.expected_known.eq(0)
        with m.Elif(take & is_duplicate):
            m.d.sync += self.duplicate.eq(1)
        with m.Elif(take):
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
