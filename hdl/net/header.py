"""Where each beat sits in its frame, and header capture at any byte offset without realigning the stream.

The line front end never shifts the frame: every stage (MAC, IPv4, UDP, MoldUDP64) watches the same beats
through a *tap* (`tap_layout`): the beat's data, the frame position of its lane 0 and how many of its lanes
hold frame bytes. A stage names the frame position where its header starts; `HeaderCapture` picks the
header's bytes out of the beats as they pass (byte k of the header sits in lane k - (offset - start) of
the beat that carries it) and offers the header *so far* every cycle, the current beat's bytes included,
so a check can be decided in the very beat that completes its field.

Each check a stage makes is a `CHECK`: `resolved` once the bytes it reads have arrived, `failed` when the
packet must be dropped for it (meaningful once resolved). The feed line walks the checks in order.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...proto.fields import Layout
from ..fields import wire_shape
from ..stream import frame_layout

__all__ = ["CHECK", "OFFSET_WIDTH", "BeatTracker", "HeaderCapture", "bytes_at", "tap_layout"]

OFFSET_WIDTH = 17
"""Bits of a frame byte position: a whole IPv4 packet (up to 65535 bytes) behind an 18-byte tagged header."""

CHECK = data.StructLayout({"resolved": 1, "failed": 1})


def tap_layout(data_width: int) -> data.StructLayout:
    """One beat as every stage of the line sees it."""
    frame_layout(data_width)  # refuses an unsupported width
    return data.StructLayout(
        {
            "data": unsigned(data_width),  # lane i (frame byte offset + i) at bits 8i..8i+7
            "valid": 1,  # a beat is offered: its bytes are part of the headers seen so far
            "take": 1,  # ... and accepted this cycle: stages update their registers
            "first": 1,  # the frame's first beat
            "last": 1,  # the frame's last beat
            "bad_keep": 1,  # the beat breaks the keep rules (see BeatTracker)
            "offset": unsigned(OFFSET_WIDTH),  # frame position of lane 0
            "end": unsigned(OFFSET_WIDTH + 1),  # frame position past the beat's last byte (offset if none)
        }
    )


def _lane_bits(data_width: int) -> int:
    return (data_width // 8 - 1).bit_length()


def bytes_at(m: Module, tap, start: Value, count: int) -> list[tuple[Value, Value]]:
    """(carried, byte) for frame bytes start .. start + count - 1: whether the tap's beat carries the byte
    (an offered beat, within its valid lanes) and the lane that would hold it."""
    lane_bits = _lane_bits(len(tap.data))
    # Named signals, so that every byte shares them instead of repeating the expression behind `start`.
    rel = Signal(signed(OFFSET_WIDTH + 2))  # where the beat starts, counted from `start` (negative: before)
    rel_end = Signal(signed(OFFSET_WIDTH + 2))
    m.d.comb += [rel.eq(tap.offset - start), rel_end.eq(tap.end - start)]
    out = []
    for k in range(count):
        carried = (rel <= k) & (rel_end > k)
        byte = tap.data[:8] if lane_bits == 0 else tap.data.word_select((k - rel)[:lane_bits], 8)
        out.append((carried, byte))
    return out


class BeatTracker(wiring.Component):
    """Counts the frame's bytes and builds the tap every stage of the line watches.

    Accepts the beat on the line's `frames` stream (`beat`, `valid`) and whether it is taken (`take`).
    Emits `tap` combinationally: the beat, its frame position, and `bad_keep` when the beat breaks the
    frame rules of hdl.stream (a beat other than the last not full; a last beat empty or whose lanes are
    not contiguous from lane 0). A non-last beat counts as full whatever its `keep`, a last one as many
    bytes as `keep` has bits set. Latency 0 (the position is a register, the rest passes through); one beat
    a cycle. Positions saturate far beyond any IPv4 packet, so an endless frame only stops moving.
    """

    def __init__(self, data_width: int) -> None:
        self._data_width = data_width
        super().__init__(
            {
                "beat": In(frame_layout(data_width)),
                "valid": In(1),
                "take": In(1),
                "tap": Out(tap_layout(data_width)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        lanes = self._data_width // 8
        beat, tap = self.beat, self.tap
        offset = Signal(OFFSET_WIDTH)

        keep = beat.keep
        full = (1 << lanes) - 1
        contiguous = (keep & (keep + 1)[:lanes]) == 0
        last_bad = (keep == 0) | ~contiguous
        valid_lanes = Mux(beat.last, sum(keep[i] for i in range(lanes)), lanes)

        m.d.comb += [
            tap.data.eq(beat.data),
            tap.valid.eq(self.valid),
            tap.take.eq(self.take),
            tap.first.eq(offset == 0),
            tap.last.eq(beat.last),
            tap.bad_keep.eq(self.valid & Mux(beat.last, last_bad, keep != full)),
            tap.offset.eq(offset),
            tap.end.eq(offset + Mux(self.valid, valid_lanes, 0)),
        ]
        saturated = offset >= (1 << OFFSET_WIDTH) - lanes
        with m.If(self.take):
            with m.If(beat.last):
                m.d.sync += offset.eq(0)
            with m.Elif(~saturated):
                m.d.sync += offset.eq(offset + lanes)
        return m


class HeaderCapture(wiring.Component):
    """A header of `layout` that starts at frame position `start`, picked out of the beats as they pass.

    Accepts the tap and `start` (which may change while the frame passes, as long as it only depends on
    bytes before it: a header's position is known from the headers in front of it). Emits, every cycle
    and combinationally, `fields`: the header's byte vector as hdl.fields reads it, made of the bytes
    taken so far and those of the offered beat; `received`: how many of its bytes that covers (bytes are
    received in order, so `received >= field end` means the field is complete). Bytes not yet received
    hold stale values. Latency 0; one beat a cycle; nothing is ever refused. A frame that ends early just
    leaves `received` short.
    """

    def __init__(self, layout: Layout, data_width: int) -> None:
        self.layout = layout
        super().__init__(
            {
                "tap": In(tap_layout(data_width)),
                "start": In(OFFSET_WIDTH),
                "fields": Out(wire_shape(layout)),
                "received": Out(range(layout.length + 1)),
            }
        )

    def has(self, *names: str) -> Value:
        """Whether the named fields are complete (the header's whole length without names)."""
        need = max((self.layout.by_name[n].end for n in names), default=self.layout.length)
        return self.received >= need

    def elaborate(self, platform):
        m = Module()
        length = self.layout.length
        taken = Signal(wire_shape(self.layout))
        octets = []
        for k, (carried, byte) in enumerate(bytes_at(m, self.tap, self.start, length)):
            kept = taken[8 * k : 8 * k + 8]
            octets.append(Mux(carried, byte, kept))
            with m.If(self.tap.take & carried):
                m.d.sync += kept.eq(byte)
        m.d.comb += self.fields.eq(Cat(*octets))

        ahead = self.tap.end - self.start  # header bytes received, when in 0..length
        m.d.comb += self.received.eq(Mux(ahead < 0, 0, Mux(ahead > length, length, ahead)))
        return m
