"""Several frame sources on one transmit port: whole frames, one at a time, by fixed priority."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...hdl.stream import frame_signature

__all__ = ["TxArbiter"]


class TxArbiter(wiring.Component):
    """Frames from `inputs[0..n-1]` onto `frames`, whole frames never interleaved, lower index first.

    Accepts on each input hdl.stream frame beats. Between frames the lowest-numbered input with a beat
    offered is granted; it keeps the grant until its `last` beat is taken, and the next grant can start
    with the very next cycle (no gap between frames). A frame cannot be overtaken once its first beat is
    out, so a lower-priority input waits at most one frame of each higher-priority input that is ready
    when the port comes free; a higher-priority input waits at most the frame in progress.
    Emits on `frames` the granted input's beats, combinationally (valid, payload, and ready back).
    Latency 0; throughput one beat a cycle. Bad input: an input that never sends `last` keeps the port.
    """

    def __init__(self, data_width: int, n_inputs: int) -> None:
        if n_inputs < 1:
            raise ValueError(f"n_inputs must be at least 1, got {n_inputs}")
        self.data_width = data_width
        self.n_inputs = n_inputs
        super().__init__(
            {
                "inputs": In(frame_signature(data_width)).array(n_inputs),
                "frames": Out(frame_signature(data_width)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        out = self.frames
        locked = Signal()  # a frame is under way from `owner`
        owner = Signal(range(self.n_inputs))
        chosen = Signal(range(self.n_inputs))
        for index in reversed(range(self.n_inputs)):  # the lowest index offering a beat wins
            with m.If(self.inputs[index].valid):
                m.d.comb += chosen.eq(index)
        grant = Signal(range(self.n_inputs))
        with m.If(locked):
            m.d.comb += grant.eq(owner)
        with m.Else():
            m.d.comb += grant.eq(chosen)
        for index, source in enumerate(self.inputs):
            with m.If(grant == index):
                m.d.comb += [
                    out.valid.eq(source.valid),
                    out.payload.eq(source.payload),
                    source.ready.eq(out.ready),
                ]
        with m.If(out.valid & out.ready):
            m.d.sync += [locked.eq(~out.payload.last), owner.eq(grant)]
        return m
