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

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...proto.fields import Layout
from ..fields import wire_shape
from ..stream import frame_layout

__all__ = [
    "CHECK",
    "OFFSET_WIDTH",
    "BeatTracker",
    "HeaderCapture",
    "Place",
    "RegisteredPlace",
    "bytes_at",
    "rotated",
    "tap_layout",
]

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
            "filled": unsigned(data_width // 8),  # lane i holds a frame byte (offset + i < end)
            "offset": unsigned(OFFSET_WIDTH),  # frame position of lane 0
            "end": unsigned(OFFSET_WIDTH + 1),  # frame position past the beat's last byte (offset if none)
        }
    )


def _lane_bits(lanes: int) -> int:
    return (lanes - 1).bit_length()


def rotated(word: Value, at: Value, size: int) -> list[Value]:
    """The lanes of a beat's `word` (`size` bits a lane, `size` a power of 2) from frame position `at` on,
    wrapping round the beat: item j is the lane that holds position `at` + j when the beat does. A lane
    is the low bits of a frame position (a beat's lane 0 is a multiple of the lane count), so the lanes are
    picked by the low bits of `at`: a mux, no adder."""
    lanes = len(word) // size
    if lanes == 1:
        return [word]
    doubled = Cat(word, word)
    shifted = doubled.bit_select(Cat(Const(0, (size - 1).bit_length()), at[: _lane_bits(lanes)]), size * lanes)
    return [shifted[size * j : size * j + size] for j in range(lanes)]


class Place:
    """Which frame positions `at` + k a beat holds, for `at` counted from the beat's lane 0 (the low bits
    its lane, the others the beat as a two's complement count). Decoded without adders: the beat of `at`
    against a constant and its lane against a threshold; `filled` (the tap's) says which lanes hold bytes.
    """

    def __init__(self, at: Value, filled: Value) -> None:
        self.at = at
        self.lanes = len(filled)
        self.filled = rotated(filled, at, 1)

    def in_beat(self, k: int) -> Value:
        """Position `at` + k falls in the beat's lanes."""
        lanes, lane_bits = self.lanes, _lane_bits(self.lanes)
        if lanes == 1:
            return self.at == -k
        beat_of, lane_of = self.at[lane_bits:], self.at[:lane_bits]

        def beat_is(beats: int) -> Value:
            return beat_of == (beats % (1 << len(beat_of)))

        whole, part = -(k // lanes), k % lanes  # at + k = lanes * (beat + k // lanes) + lane + part
        if part == 0:
            return beat_is(whole)
        wraps = lane_of >= lanes - part  # lane + part reaches the next beat
        return Mux(wraps, beat_is(whole - 1), beat_is(whole))

    def carried(self, k: int) -> Value:
        """... and the beat holds a byte there."""
        return self.in_beat(k) & self.filled[k % self.lanes]

    def before(self, k: int) -> Value:
        """Position `at` + k comes before the beat's lane 0 (a beat taken earlier brought it)."""
        lanes, lane_bits = self.lanes, _lane_bits(self.lanes)
        if lanes == 1:
            return self.at.as_signed() < -k
        beat_of, lane_of = self.at[lane_bits:].as_signed(), self.at[:lane_bits]
        whole, part = k // lanes, k % lanes
        if part == 0:
            return beat_of < -whole
        return Mux(lane_of >= lanes - part, beat_of < -whole - 1, beat_of < -whole)


class RegisteredPlace:
    """Place's answers about frame position `start` + k for the tap's beat, each one a register worked out
    the cycle before (no decoding on the beat's path).

    `start` counted from the next beat's lane 0 is one of three candidates: as from this beat (it stays),
    from the one after it (`lanes` further, when this one is taken), or from a new frame's first (when
    this one ends the frame). Every answer is decoded from all three with the subtractions made off the
    beat's path, and the tap's `take` and `last` pick one into the register. `start` must be settled the
    cycle before the beat carrying the first byte asked about.
    """

    def __init__(self, m: Module, tap, start: Value) -> None:
        self._m, self._tap = m, tap
        lanes = len(tap.filled)
        lane_bits = _lane_bits(lanes)
        beats = signed(OFFSET_WIDTH - lane_bits + 2)
        start_beat, offset_beat = start[lane_bits:], tap.offset[lane_bits:]
        new, stays, moves = Signal(beats), Signal(beats), Signal(beats)
        m.d.comb += [new.eq(start_beat), stays.eq(start_beat - offset_beat), moves.eq(start_beat - offset_beat - 1)]
        self._saturated = offset_beat.all()  # (as BeatTracker's position: an endless frame stops moving)
        self.lane = Signal(lane_bits)  # `start`'s lane, registered
        m.d.sync += self.lane.eq(start[:lane_bits])
        if lanes == 1:
            self._candidates = [Place(beat, tap.filled) for beat in (new, stays, moves)]
        else:
            self._candidates = [Place(Cat(start[:lane_bits], beat), tap.filled) for beat in (new, stays, moves)]
        self._filled = rotated(tap.filled, self.lane, 1) if lanes > 1 else [tap.filled]
        self._in_beat: dict[int, Signal] = {}
        self._before: dict[int, Signal] = {}

    def _registered(self, answers: dict[int, Signal], k: int, name: str, ask, init: bool) -> Signal:
        if k not in answers:
            answers[k] = answer = Signal(name=f"{name}_{k}", init=init)
            tap = self._tap
            new, stays, moves = (ask(place, k) for place in self._candidates)
            self._m.d.sync += answer.eq(Mux(tap.take, Mux(tap.last, new, Mux(self._saturated, stays, moves)), stays))
        return answers[k]

    def in_beat(self, k: int) -> Value:
        """Position `start` + k falls in the beat's lanes."""
        # After reset, as if `start` were the beat's lane 0 (the frame's first beat, with `start` 0).
        return self._registered(self._in_beat, k, "in_beat", Place.in_beat, k < len(self._filled))

    def carried(self, k: int) -> Value:
        """... and the beat holds a byte there."""
        return self.in_beat(k) & self._filled[k % len(self._filled)]

    def before(self, k: int) -> Value:
        """Position `start` + k comes before the beat's lane 0 (a beat taken earlier brought it)."""
        return self._registered(self._before, k, "before", Place.before, False)


def bytes_at(m: Module, tap, start: Value, count: int) -> tuple[RegisteredPlace, list[tuple[Value, Value]]]:
    """Where frame bytes start .. start + count - 1 are: the RegisteredPlace of `start` for the tap's beat,
    and for each byte (carried, byte): whether the tap's beat carries it (an offered beat, within its valid
    lanes) and the lane that would hold it.

    The place is registered from `start` and the tap's position (decoded the cycle before, off the beat's
    path), so `start` must be settled the cycle before the beat carrying the first byte."""
    lanes = len(tap.data) // 8
    lane_bits = _lane_bits(lanes)
    place = RegisteredPlace(m, tap, start)
    if lanes == 1:
        return place, [(place.carried(k), tap.data) for k in range(count)]
    # Each byte's lane straight from the registered lane of `start`: the same as `rotated` would give,
    # written per byte because the rotation here makes yowasp's ABC9 fail on FeedLine(64).
    return place, [(place.carried(k), tap.data.word_select((place.lane + k)[:lane_bits], 8)) for k in range(count)]


class BeatTracker(wiring.Component):
    """Counts the frame's bytes and builds the tap every stage of the line watches.

    Accepts the beat on the line's `frames` stream (`beat`, `valid`) and whether it is taken (`take`).
    Emits `tap` combinationally: the beat, its frame position, the lanes holding frame bytes (`filled`),
    and `bad_keep` when the beat breaks the
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
            # A last beat fills the lanes its keep has set: `valid_lanes` of them when they are contiguous
            # (a beat that is not breaks the keep rules, and what it fills does not matter then).
            tap.filled.eq(Cat(self.valid & (~beat.last | keep[i]) for i in range(lanes))),
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
    bytes before it and is settled the cycle before the beat carrying the header's first byte: where the
    header sits in a beat is registered from it). Emits, every cycle and combinationally, `fields`: the
    header's byte vector as hdl.fields reads it, made of the bytes taken so far and those of the offered
    beat; `received`: how many of its bytes that covers (bytes are received in order, so `received >=
    field end` means the field is complete); `has(...)` says the same of given fields from registered
    positions (no adder on the beat's path). Also `kept`: the same byte vector made of the bytes of the
    beats taken so far only (registers, for checks decided the cycle after the beat completing them).
    Bytes not yet received hold stale values. Latency 0; one beat a cycle; nothing is ever refused. A
    frame that ends early just leaves `received` short.
    """

    def __init__(self, layout: Layout, data_width: int) -> None:
        self.layout = layout
        self._has: dict[int, Signal] = {}
        super().__init__(
            {
                "tap": In(tap_layout(data_width)),
                "start": In(OFFSET_WIDTH),
                "fields": Out(wire_shape(layout)),
                "kept": Out(wire_shape(layout)),
                "received": Out(range(layout.length + 1)),
            }
        )

    def has(self, *names: str) -> Value:
        """Whether the named fields are complete (the header's whole length without names)."""
        return self.has_bytes(max((self.layout.by_name[n].end for n in names), default=self.layout.length))

    def has_bytes(self, need: int) -> Value:
        """Whether the header's first `need` bytes are received (as `received >= need`, from registers)."""
        if need not in self._has:
            self._has[need] = Signal(name=f"has_{need}")
        return self._has[need]

    def elaborate(self, platform):
        m = Module()
        length = self.layout.length
        taken = Signal(wire_shape(self.layout))
        m.d.comb += self.kept.eq(taken)
        octets = []
        place, located = bytes_at(m, self.tap, self.start, length)
        for k, (carried, byte) in enumerate(located):
            kept = taken[8 * k : 8 * k + 8]
            octets.append(Mux(carried, byte, kept))
            with m.If(self.tap.take & carried):
                m.d.sync += kept.eq(byte)
        m.d.comb += self.fields.eq(Cat(*octets))
        # A field is complete when its last byte came with an earlier beat or comes with this one.
        for need, complete in self._has.items():
            m.d.comb += complete.eq(place.before(need - 1) | place.carried(need - 1))

        ahead = self.tap.end - self.start  # header bytes received, when in 0..length
        m.d.comb += self.received.eq(Mux(ahead < 0, 0, Mux(ahead > length, length, ahead)))
        return m
