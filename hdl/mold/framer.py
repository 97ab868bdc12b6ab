"""MoldUDP64 layer of a feed line: the packet header checked as it passes, and the message blocks framed
into one ITCH message per transfer, at any alignment, straight from the frame's beats."""

from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...proto import moldudp64
from ..fields import alpha_const, value, wire_shape
from ..net.header import CHECK, OFFSET_WIDTH, HeaderCapture, bytes_at, tap_layout
from ..stream import MESSAGE, MESSAGE_BYTES

__all__ = ["MessageFramer", "MoldHeaderParser"]

BLOCK = moldudp64.BLOCK
SESSION_BITS = 8 * moldudp64.HEADER.by_name["session"].width


class _Block(NamedTuple):
    """What the offered beat tells about one message block."""

    length: Value  # the message length (valid once both length bytes arrived)
    after: Value  # frame position of the next block
    at_end: Value  # the block would start at the end of the UDP payload: there is none
    short: Value  # ... and fewer blocks than announced came before it
    bad: Value  # bad_length: beyond the announced count, length cut by the payload end, or length wrong
    ends: Value  # a good block whose last byte is in the offered beat


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

    Accepts the tap and, from the layers in front: `active` (the packet passed every header check, at the
    latest with the offered beat), `first_block` (frame position of the first block's length),
    `payload_end` (frame position past the UDP payload: later bytes are padding), `blocks` (blocks the
    header announces) and `first_sequence`.

    Emits on `messages` each block's message: byte 0 the type letter, bytes past `length` zero, `sequence`
    = `first_sequence` + the block's index in the packet, `line` = the constructor's `line`. Blocks are
    found by their 2-byte big-endian length (BLOCK) at any position of a beat; length, message or both may
    straddle beats. Per packet at most one of these strobes, then the rest of the packet is ignored:

    - `bad_length`: a block length of 0 or more than MESSAGE_BYTES, a block running past the UDP payload,
      or payload left after the announced number of blocks;
    - `truncated`: the payload or the frame ended before the announced number of blocks (the partial
      message is discarded; the complete ones have left), or the tap flagged a bad keep after the packet
      was accepted (nothing of that beat or after it is emitted).

    Latency: `messages.valid` rises 1 cycle after the beat holding the message's last byte is taken (the
    output register is loaded from that beat's lanes). Throughput: one beat a cycle while the output is
    free, and one message a cycle. A beat that ends k > 1 messages (messages of at most data_width/8 - 3
    bytes, never ITCH) is held (`ready` low) k - 1 cycles, one message leaving each. `ready` is also low
    while an accepted packet's beat waits for the output register; it depends combinationally on
    `messages.ready`, and on the tap for held beats.
    """

    def __init__(self, data_width: int, *, line: int = 0) -> None:
        self._data_width = data_width
        self._line = line
        super().__init__(
            {
                "tap": In(tap_layout(data_width)),
                "active": In(1),
                "first_block": In(OFFSET_WIDTH),
                "payload_end": In(OFFSET_WIDTH),
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

        started = Signal()  # a block ended: block_at follows the blocks (else it copies first_block)
        finished = Signal()  # the packet is done with: ignore the rest of the frame
        # The current block's length field and message, as registers: `first_block` is settled several
        # beats before the first block, so copying it costs nothing, and no adder sits before the muxes.
        current = Signal(OFFSET_WIDTH)
        body_at = Signal(OFFSET_WIDTH)
        with m.If(~started):
            m.d.sync += [current.eq(self.first_block), body_at.eq(self.first_block + BLOCK.length)]
        index = Signal(16)  # blocks emitted so far
        length_taken = Signal(wire_shape(BLOCK))  # bytes of the current block's length from earlier beats
        body_taken = Signal(8 * MESSAGE_BYTES)  # message bytes from earlier beats

        def block(name, at, n_before, taken=None):
            """What the offered beat tells about the block whose length field is at `at`."""
            carried = bytes_at(m, tap, at, BLOCK.length)
            if taken is None:  # a block that starts in this beat: nothing of it was taken before
                raw = Cat(byte for _, byte in carried)
            else:
                raw = Cat(Mux(c, byte, taken[8 * k : 8 * k + 8]) for k, (c, byte) in enumerate(carried))
            length = Signal(16, name=f"{name}_length")
            after = Signal(OFFSET_WIDTH + 1, name=f"{name}_after")
            at_end = Signal(name=f"{name}_at_end")
            short = Signal(name=f"{name}_short")  # at the end of the payload: blocks missing
            bad = Signal(name=f"{name}_bad")
            ends = Signal(name=f"{name}_ends")
            known = at + BLOCK.length <= tap.end
            m.d.comb += [
                length.eq(value(raw, BLOCK, "length")),
                after.eq(at + BLOCK.length + length),
                at_end.eq(at == self.payload_end),
                short.eq(n_before < self.blocks),
                bad.eq(
                    ~at_end
                    & (
                        (n_before >= self.blocks)
                        | (at + BLOCK.length > self.payload_end)
                        | known & ((length == 0) | (length > MESSAGE_BYTES) | (after > self.payload_end))
                    )
                ),
                ends.eq(~at_end & ~bad & known & (after <= tap.end)),
            ]
            return _Block(length, after, at_end, short, bad, ends)

        this = block("this", current, index, length_taken)
        following = block("following", this.after, index + 1)

        room = ~out.valid | out.ready
        live = self.active & ~finished
        step = tap.valid & live & room
        emit = Signal()
        hold = Signal()
        finish = Signal()
        m.d.comb += [
            emit.eq(step & ~tap.bad_keep & this.ends),
            hold.eq(emit & following.ends),
            self.ready.eq(~(live & ~room) & ~hold),
        ]

        with m.If(step):
            with m.If(tap.bad_keep):
                m.d.comb += [finish.eq(1), self.truncated.eq(1)]
            with m.Elif(this.at_end):
                m.d.comb += [finish.eq(1), self.truncated.eq(this.short)]
            with m.Elif(this.bad):
                m.d.comb += [finish.eq(1), self.bad_length.eq(1)]
            with m.Elif(this.ends):
                m.d.sync += [
                    index.eq(index + 1),
                    current.eq(this.after),
                    body_at.eq(this.after + BLOCK.length),
                    started.eq(1),
                ]
                with m.If(following.at_end):
                    m.d.comb += [finish.eq(1), self.truncated.eq(following.short)]
                with m.Elif(following.bad):
                    m.d.comb += [finish.eq(1), self.bad_length.eq(1)]
        with m.If(finish):
            m.d.sync += finished.eq(1)
        with m.If(tap.take & tap.last):
            with m.If(live & ~finish):  # the frame ended inside the payload
                m.d.comb += self.truncated.eq(1)
            m.d.sync += [started.eq(0), finished.eq(0), index.eq(0)]

        # The block registers keep what earlier beats carried of the block being assembled: the current
        # one, or the next one when the current one ends in this beat.
        write_at = Signal(OFFSET_WIDTH + 1)
        m.d.comb += write_at.eq(Mux(this.ends, this.after, current))
        with m.If(tap.take):
            for k, (carried, byte) in enumerate(bytes_at(m, tap, write_at, BLOCK.length)):
                with m.If(carried):
                    m.d.sync += length_taken[8 * k : 8 * k + 8].eq(byte)
            for k, (carried, byte) in enumerate(bytes_at(m, tap, write_at + BLOCK.length, MESSAGE_BYTES)):
                with m.If(carried):
                    m.d.sync += body_taken[8 * k : 8 * k + 8].eq(byte)

        body = bytes_at(m, tap, body_at, MESSAGE_BYTES)
        message = Cat(
            Mux(k < this.length, Mux(carried, byte, body_taken[8 * k : 8 * k + 8]), 0)
            for k, (carried, byte) in enumerate(body)
        )
        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.If(emit):
            m.d.sync += [
                out.valid.eq(1),
                out.payload.data.eq(message),
                out.payload.length.eq(this.length),
                out.payload.sequence.eq(self.first_sequence + index),
                out.payload.line.eq(self._line),
            ]
        return m


def session_const(session: str) -> int:
    """The `session` input value of a session name (space-padded to 10 characters)."""
    return alpha_const(session, moldudp64.HEADER.by_name["session"].width)
