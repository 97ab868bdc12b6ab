"""The A and B lines' messages decoded and merged into one stream: the stage between the lines and the book."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In

from .itch.decoder import ItchDecoder
from .mold.arbiter import LineArbiter
from .mold.sequencer import LineSequencer
from .stream import DECODED, MESSAGE

__all__ = ["FeedMerge"]


class FeedMerge(wiring.Component):
    """Each line's messages through its own ItchDecoder, then the LineArbiter: the first arrival of each
    sequence passes, decoded.

    Accepts on ``lines[0]`` (A) and ``lines[1]`` (B) MESSAGE transfers, as FeedLine emits them. Emits on
    ``messages`` the passed messages as DECODED records, with LineArbiter's promise-based flow control
    (``space`` in, ``messages`` always ready). Every other port is LineArbiter's (control, expected
    sequence, duplicates, gaps), with its meaning.

    With ``n_lines=1`` only ``lines[0]`` exists and a LineSequencer takes the arbiter's place: the same
    ports, rules and timing for line A alone (its duplicates dropped, gaps reported), at a third of the
    logic.

    Decoding runs on each line in front of the arbiter, combinationally (ItchDecoder), so it adds no cycle:
    the arbiter judges and stores decoded records. Latency and throughput are LineArbiter's: 2 cycles, one
    message passed a cycle while ``space`` is high.
    """

    def __init__(self, n_lines: int = 2) -> None:
        if n_lines not in (1, 2):
            raise ValueError(f"n_lines must be 1 or 2, got {n_lines}")
        self._arbiter = LineArbiter(DECODED) if n_lines == 2 else LineSequencer(DECODED)
        super().__init__(
            {"lines": In(stream.Signature(MESSAGE)).array(n_lines)}
            | {name: member for name, member in self._arbiter.signature.members.items() if name != "lines"}
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter = arbiter = self._arbiter
        for index, line in enumerate(self.lines):
            decoder = m.submodules[f"decoder_{'ab'[index]}"] = ItchDecoder()
            m.d.comb += [
                decoder.message.eq(line.payload),
                arbiter.lines[index].payload.eq(decoder.decoded),
                arbiter.lines[index].valid.eq(line.valid),
                line.ready.eq(arbiter.lines[index].ready),
            ]
        for name, member in self.signature.members.items():
            if name == "lines":
                continue
            if name == "messages":
                m.d.comb += [self.messages.valid.eq(arbiter.messages.valid),
                             self.messages.payload.eq(arbiter.messages.payload)]  # fmt: skip
            elif member.flow == In:
                m.d.comb += getattr(arbiter, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(arbiter, name))
        return m
