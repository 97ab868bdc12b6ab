"""MoldUDP64 layer of a feed line: the packet header checked as it passes, and the message blocks framed
into one ITCH message per transfer, at any alignment, straight from the frame's beats."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...proto import moldudp64
from ..fields import alpha_const, value, wire_shape
from ..net.header import CHECK, OFFSET_WIDTH, HeaderCapture, Place, rotated, tap_layout
from ..stream import MESSAGE, MESSAGE_BYTES

__all__ = ["MessageFramer", "MoldHeaderParser"]

BLOCK = moldudp64.BLOCK
SESSION_BITS = 8 * moldudp64.HEADER.by_name["session"].width


POSITION = signed(8)
"""A frame position counted from lane 0 of the beat the framer is on: a block (2 + at most MESSAGE_BYTES
bytes) spans a few beats, so the positions that matter stay well inside this range."""


class MoldHeaderParser(wiring.Component):
    """The MoldUDP64 header at frame position `start` (the UDP payload), read from `proto.moldudp64.HEADER`.

    Accepts the tap, `start` and `payload_length` (the UDP payload length) from the UDP layer, and the
    line's `session` (80 bits, first character in the lowest byte, as `hdl.fields.value` reads ALPHA) and
    `check_session`. Emits, combinationally as the beats pass, both resolved with the 20-byte header:

    - `session_check`: the session is `session` (always passes while `check_session` is low);
    - `count_check`: a heartbeat (count 0) or end of session (count 0xFFFF) carries nothing after the header;
    - `blocks` (message blocks announced: the count, 0 for end of session), `heartbeat`, `end_of_session`,
      `header` (the 20 bytes as HEADER); registered, 1 cycle after the bytes they come from:
      `first_block` (start + 20; `start` is settled long before the header) and `first_sequence`.

    Latency 0; one beat a cycle. A frame that ends inside the header leaves its checks unresolved.
    """

    def __init__(self, data_width: int) -> None:
        self._data_width = data_width
        super().__init__(
            {
                "tap": In(tap_layout(data_width)),
                "start": In(OFFSET_WIDTH),
                "payload_length": In(16),
                "session": In(SESSION_BITS),
                "check_session": In(1),
                "session_check": Out(CHECK),
                "count_check": Out(CHECK),
                "first_block": Out(OFFSET_WIDTH),
                "first_sequence": Out(64),
                "blocks": Out(16),
                "heartbeat": Out(1),
                "end_of_session": Out(1),
                "header": Out(wire_shape(moldudp64.HEADER)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        header = moldudp64.HEADER
        m.submodules.capture = capture = HeaderCapture(header, self._data_width)
        m.d.comb += [capture.tap.eq(self.tap), capture.start.eq(self.start), self.header.eq(capture.fields)]
        raw = capture.fields

        count = value(raw, header, "message_count")
        m.d.comb += [
            self.heartbeat.eq(count == moldudp64.HEARTBEAT_COUNT),
            self.end_of_session.eq(count == moldudp64.END_OF_SESSION_COUNT),
            self.blocks.eq(Mux(self.end_of_session, 0, count)),
            self.session_check.resolved.eq(capture.has()),
            self.session_check.failed.eq(self.check_session & (value(raw, header, "session") != self.session)),
            self.count_check.resolved.eq(capture.has()),
            self.count_check.failed.eq((self.heartbeat | self.end_of_session) & (self.payload_length != header.length)),
        ]
        m.d.sync += [  # read from the first message on, no sooner than the beat after the header's
            self.first_block.eq(self.start + header.length),
            self.first_sequence.eq(value(raw, header, "sequence_number")),
        ]
        return m


class MessageFramer(wiring.Component):
    """Frames the message blocks of an accepted MoldUDP64 packet into one MESSAGE a transfer.

    Accepts the tap and, from the feed line's verdict stage (registers, or shallow logic on them):
    `viable` (every header check decided so far passed, the UDP ones included, so `first_block` and
    `payload_length` are this frame's), `accepted` (the offered beat's packet was accepted by an earlier
    beat) and `last_accepted` (the beat taken last cycle belongs to an accepted packet: its verdict); from
    the layers in front: `first_block` (frame position of the first block's length), `payload_length`
    (the UDP payload length), `blocks` (blocks the header announces, valid from the header's last byte
    on) and `first_sequence`.

    Emits on `messages` each block's message: byte 0 the type letter, bytes past `length` zero, `sequence`
    = `first_sequence` + the block's index in the packet, `line` = the constructor's `line`. Blocks are
    found by their 2-byte big-endian length (BLOCK) at any position of a beat; length, message or both may
    straddle beats. Per packet at most one of these strobes, then the rest of the packet is ignored:

    - `bad_length`: a block length of 0 or more than MESSAGE_BYTES, a block (or its length) running past
      the UDP payload, or payload left after the announced number of blocks;
    - `truncated`: the payload or the frame ended before the announced number of blocks (the partial
      message is discarded; the complete ones have left), or the tap flagged a bad keep after the packet
      was accepted (nothing of that beat or after it is emitted).

    Structure. Every position the framer follows is a register counted from the beat it is on
    (POSITION): the current block's message (`body_at`) and the message of the block whose length is
    awaited (`pending_at`: the current block's until its length is known, then the next block's). A
    block's length is registered with the beat that completes it, so the beat where its message ends only
    compares registers, and lanes are picked by the low bits of those registers (hdl.net.header.Place,
    rotated). The output register is loaded whenever it is free, `valid` saying whether a message was.

    `ready` is a register: the tap's beat is always taken into a one-beat skid, so the stages in front see
    each beat once, and `ready` is low while the skid holds a beat the framer is not done with: the beat
    ends a message while the output register is full and `messages.ready` low, or it holds more than a
    cycle's work. A cycle handles one block end and one length: a beat holding a block whose length and
    last byte share it (at most data_width/8 - 1 bytes, never ITCH) stays a cycle more for each such block.
    Latency: `messages.valid` rises 1 cycle after the beat holding the message's last byte is taken, plus
    1 for each message ending earlier in that beat, plus 1 when the first of them got its length from
    that beat; later while `messages` back-pressures. Strobes (combinational, for a register in the
    feed line) follow the cycle that decides them by 1 (the packet's verdict on a beat comes the cycle
    after it is taken).
    """

    def __init__(self, data_width: int, *, line: int = 0) -> None:
        self._data_width = data_width
        self._line = line
        super().__init__(
            {
                "tap": In(tap_layout(data_width)),
                "viable": In(1),
                "accepted": In(1),
                "last_accepted": In(1),
                "first_block": In(OFFSET_WIDTH),
                "payload_length": In(16),
                "blocks": In(16),
                "first_sequence": In(64),
                "messages": Out(stream.Signature(MESSAGE)),
                "ready": Out(1),
                "truncated": Out(1),
                "bad_length": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        tap, out = self.tap, self.messages
        width = self._data_width
        lanes = width // 8
        lane_bits = (lanes - 1).bit_length()

        # The input skid: loaded with the offered beat whenever it is free, so that `ready` is a register
        # and no wide register waits for a decision made late in the cycle.
        held = Signal()  # the skid holds a taken beat the framer is not done with
        skid = Signal(
            data.StructLayout({"data": width, "filled": lanes, "last": 1, "bad_keep": 1, "active": 1}),
        )
        with m.If(~held):
            m.d.sync += [
                skid.data.eq(tap.data),
                skid.filled.eq(tap.filled),
                skid.last.eq(tap.last),
                skid.bad_keep.eq(tap.bad_keep),
                skid.active.eq(self.accepted),
            ]
        with m.Else():  # the verdict on the held beat itself comes the cycle after it was taken
            m.d.sync += skid.active.eq(skid.active | self.last_accepted)
        m.d.comb += self.ready.eq(~held)
        present = held | tap.take
        beat = Signal(width)
        filled = Signal(lanes)
        last = Signal()
        bad_keep = Signal()
        may_emit = Signal()  # the beat's packet was accepted by the beat or an earlier one (held beats)
        may_hold = Signal()  # ... or may still be
        m.d.comb += [
            beat.eq(Mux(held, skid.data, tap.data)),
            filled.eq(Mux(held, skid.filled, tap.filled)),
            last.eq(Mux(held, skid.last, tap.last)),
            bad_keep.eq(Mux(held, skid.bad_keep, tap.bad_keep)),
            may_emit.eq(Mux(held, skid.active | self.last_accepted, self.accepted)),
            may_hold.eq(Mux(held, skid.active | self.last_accepted, self.viable)),
        ]

        started = Signal()  # the first block was reached: the positions follow the blocks
        finished = Signal()  # the packet is done with: ignore the rest of the frame
        known = Signal()  # the current block's length is registered (`pending_at` is the next block's)
        body_at = Signal(POSITION)  # the current block's message
        pending_at = Signal(POSITION)  # the message of the block whose length is awaited
        length_high = Signal(8)  # the awaited length's first byte, from an earlier beat
        length = Signal(range(MESSAGE_BYTES + 1))  # the current block's message length, once known
        room = Signal(16)  # UDP payload bytes from the awaited block's length on
        index = Signal(16)  # the current block's index in the packet
        blocks = Signal(16)  # `blocks` as a register (read from the beat after the header's last)
        body = Signal(8 * MESSAGE_BYTES)  # message bytes from earlier beats
        m.d.sync += blocks.eq(self.blocks)

        body_place, pending_place = Place(body_at, filled), Place(pending_at, filled)
        from_body = rotated(beat, body_at, 8)
        from_pending = rotated(beat, pending_at, 8)
        ends = Signal()  # the current block's last byte is in the beat
        high_here = Signal()
        completes = Signal()  # the awaited length's last byte is in the beat
        m.d.comb += [
            ends.eq(known & pending_place.carried(-BLOCK.length - 1)),
            high_here.eq(pending_place.carried(-BLOCK.length)),
            completes.eq(pending_place.carried(-1)),
        ]
        high = Mux(high_here, from_pending[-BLOCK.length % lanes], length_high)
        low = from_pending[-1 % lanes]
        new_length = Cat(low, high)
        room_after = Signal(signed(18))  # payload bytes after the awaited block (negative: it runs past)
        length_bad = Signal()
        m.d.comb += [
            room_after.eq(room - BLOCK.length - new_length),
            length_bad.eq((new_length == 0) | (new_length > MESSAGE_BYTES) | room_after[-1]),
        ]
        # The awaited block ends in this beat too (a short block, never ITCH): the beat needs another cycle.
        if lanes > 1:
            # (whether it fits in the beat, from the registered position for each length, picked by the length)
            fits = Cat(pending_at[: lane_bits + 1] <= lanes - n for n in range(lanes))
            short = (high == 0) & (low != 0) & (low < lanes) & fits.bit_select(low[:lane_bits], 1)
        else:
            short = Const(0)

        # The first block is reached with the beat holding the header's last byte (acceptance), the next
        # one with the beat where the current one ends: then the checks on the block there are made.
        first = Signal()
        first_here = Signal()  # the beat holds the header's last byte (a register, see `first_at` below)
        m.d.comb += first.eq(~started & self.viable & first_here)
        engaged = started | first
        boundary = first | ends
        # A block is still announced after the current one. At the first block the count arrives with the
        # beat: then only an empty payload is looked at (a count of 0 with a payload is dropped anyway), and
        # whether that truncates waits a cycle for the count in `blocks`.
        more = Signal()
        m.d.comb += more.eq(index + 1 < blocks)

        want_emit = Signal()
        blocked = Signal()  # the output register is full: wait with the beat in the skid
        go = Signal()
        finish = Signal()
        hold = Signal()
        done = Signal()  # the beat leaves the framer
        m.d.comb += [
            want_emit.eq(present & ~finished & ~bad_keep & ends),  # (`ends` needs `known`: `started` is set)
            blocked.eq(want_emit & out.valid & ~out.ready),  # (a dropped packet's beat may wait too)
            go.eq(present & engaged & ~finished & ~blocked),
        ]
        truncating = Signal()  # decisions on the beat, strobed if its packet is accepted
        rejecting = Signal()
        stops = Signal()  # the packet ends at the block boundary in this beat
        empty_first = Signal()  # the payload ends at the first block: truncated unless the count is 0
        m.d.comb += stops.eq(boundary & (room < BLOCK.length) | ends & ~more)
        with m.If(go):
            m.d.sync += started.eq(1)
            with m.If(bad_keep):
                m.d.comb += [finish.eq(1), truncating.eq(1)]
            with m.Elif(boundary & (room == 0)):
                m.d.comb += [finish.eq(1), truncating.eq(ends & more), empty_first.eq(first)]
            with m.Elif(stops):
                m.d.comb += [finish.eq(1), rejecting.eq(1)]
            with m.Elif(completes & length_bad):
                m.d.comb += [finish.eq(1), rejecting.eq(1)]
        m.d.comb += [
            # Not `finish` (late: it waits for the length check's subtraction): a bad short block may
            # cost a held cycle before the packet is dropped.
            hold.eq(go & ~bad_keep & ~stops & completes & short & may_hold),
            done.eq(present & ~hold & ~blocked),
        ]

        def moved(here: Value, beyond: Value) -> Value:
            """A position next cycle: counted from the next beat (`lanes` further on, `beyond`) once this
            one is done. Both are computed and `done`, known late, picks one."""
            return Mux(done, beyond, here)

        with m.If(high_here):
            m.d.sync += length_high.eq(from_pending[-BLOCK.length % lanes])
        # Before the first block the positions follow `first_block` (the next cycle's beat is `lanes`
        # further on when this one is taken), clamped to POSITION: far ahead stays far ahead.
        first_at = Signal(signed(OFFSET_WIDTH + 2))
        m.d.comb += first_at.eq(self.first_block + BLOCK.length - tap.offset - Mux(tap.take, lanes, 0))
        far = (1 << (POSITION.width - 1)) - 1
        clamped = Mux(first_at > far, far, Mux(first_at < -far // 2, -far // 2, first_at))
        # Until the first block is reached, `body_at` follows `first_at`, so whether the next beat holds the
        # header's last byte (just before the first block's length, at `body_at` - BLOCK.length) is worked
        # out with it, from the unclamped position (a clamped one is far from the beat either way).
        with m.If(~engaged):
            m.d.sync += [
                first_here.eq(Place(first_at, filled).in_beat(-BLOCK.length - 1)),
                body_at.eq(clamped),
                pending_at.eq(clamped),
                known.eq(0),
                room.eq(self.payload_length - moldudp64.HEADER.length),
                index.eq(0),
            ]
        with m.Elif(go):  # also when finishing: `finished` makes the rest of the frame ignored
            body_next = Mux(ends, pending_at, body_at)
            m.d.sync += [
                body_at.eq(moved(body_next, body_next - lanes)),
                index.eq(index + ends),
            ]
            with m.If(completes):
                m.d.sync += [
                    known.eq(1),
                    length.eq(low),
                    room.eq(room_after),
                    pending_at.eq(moved(pending_at + BLOCK.length + low, pending_at + (BLOCK.length - lanes) + low)),
                ]
            with m.Else():
                m.d.sync += pending_at.eq(moved(pending_at, pending_at - lanes))
            with m.If(~completes & ends):
                m.d.sync += known.eq(0)
        with m.Elif(done):
            m.d.sync += [body_at.eq(body_at - lanes), pending_at.eq(pending_at - lanes)]
        with m.If(finish):
            m.d.sync += finished.eq(1)
        ended = Signal()  # the frame ended inside the payload, unless the beat finishes the packet too
        with m.If(done & last):
            m.d.comb += ended.eq(engaged & ~finished)
            m.d.sync += [started.eq(0), finished.eq(0), known.eq(0)]
        m.d.sync += held.eq(hold | blocked)

        # A live beat's verdict comes the cycle after it is taken: its decisions wait for it in registers;
        # a held beat's is known.
        # (`ended` is registered apart from `finish`, which waits for the length check's subtraction.)
        truncating_live, rejecting_live, ended_live = Signal(), Signal(), Signal()
        truncating_held, rejecting_held, ended_held = Signal(), Signal(), Signal()
        beat_finished = Signal()  # the beat that `ended` the frame finished the packet itself
        empty_first_live = Signal()  # (the first block is never in a held beat before its check)
        m.d.sync += [
            empty_first_live.eq(empty_first),
            truncating_live.eq(~held & truncating),
            rejecting_live.eq(~held & rejecting),
            ended_live.eq(~held & ended),
            truncating_held.eq(held & may_emit & truncating),
            rejecting_held.eq(held & may_emit & rejecting),
            ended_held.eq(held & may_emit & ended),
            beat_finished.eq(finish),
        ]
        ends_truncated = Signal()  # the frame ended inside the payload
        m.d.comb += [
            ends_truncated.eq(~beat_finished & (ended_held | ended_live & self.last_accepted)),
            self.truncated.eq(
                ends_truncated
                | truncating_held
                | (truncating_live | empty_first_live & (blocks != 0)) & self.last_accepted
            ),
            self.bad_length.eq(rejecting_held | rejecting_live & self.last_accepted),
        ]

        # Each message byte is taken from the lane that carries it, the lanes picked by the low bits of
        # registered positions. When the current block ends in the beat, the bytes after it belong to
        # the next block, unless the beat waits for the output (the current message is not out yet) or
        # there is no beat. Other bytes are written whatever the beat: a position with no beat yet is
        # written again by the beat that brings it.
        next_written = Signal()
        m.d.comb += next_written.eq(known & present & ~blocked)
        for k in range(MESSAGE_BYTES):
            kept = body[8 * k : 8 * k + 8]
            with m.If(next_written & pending_place.in_beat(k)):
                m.d.sync += kept.eq(from_pending[k % lanes])
            with m.Elif(body_place.in_beat(k)):
                m.d.sync += kept.eq(from_body[k % lanes])
        message = Cat(
            Mux(k < length, Mux(body_place.in_beat(k), from_body[k % lanes], body[8 * k : 8 * k + 8]), 0)
            for k in range(MESSAGE_BYTES)
        )
        with m.If(~out.valid | out.ready):
            m.d.sync += [
                out.valid.eq(want_emit & may_emit),
                out.payload.data.eq(message),
                out.payload.length.eq(length),
                out.payload.sequence.eq(self.first_sequence + index),
                out.payload.line.eq(self._line),
            ]
        return m


def session_const(session: str) -> int:
    """The `session` input value of a session name (space-padded to 10 characters)."""
    return alpha_const(session, moldudp64.HEADER.by_name["session"].width)
