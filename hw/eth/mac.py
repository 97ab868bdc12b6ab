"""Ethernet MAC, byte at a time at the GMII clock: frames in (MacRx) and out (MacTx), FCS checked / made.

    GMII rx ─ MacRx: preamble/SFD off, FCS checked and off, bad frames dropped whole ─ frames (bytes, last)
    frames ─ MacTx: preamble + SFD, padding to 60 bytes, FCS, inter-frame gap ─ GMII tx

Both sides speak hdl.stream's frame format at 8 bits (a byte a transfer, `keep` 1, `last` on the final
byte; no FCS), so hw.eth.frame_cdc takes them to and from the core's clock domain and width. `FrameFIFO`,
the byte FIFO that shows a frame to its reader only once the whole frame is in, is the buffer of MacRx
(bad frames are discarded before anyone sees them) and of frame_cdc's transmit side (MacTx gets a frame
only when all of it can be sent without a gap).
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, enum, memory, wiring
from amaranth.lib.wiring import In, Out

from ...hdl.stream import frame_signature
from .crc32 import Crc32
from .rgmii import GMII

__all__ = ["FCS_BYTES", "MIN_FRAME", "PREAMBLE", "SFD", "FrameFIFO", "MacRx", "MacTx", "RxDrop"]

PREAMBLE, SFD = 0x55, 0xD5
PREAMBLE_BYTES = 7  # then the SFD
FCS_BYTES = 4
MIN_FRAME = 64  # with FCS: 60 bytes of header and payload at least
MAX_FRAME = 1522  # with FCS: 1500 bytes of payload behind an 802.1Q-tagged header
INTERFRAME_GAP = 12  # bytes of idle between frames, at least (96 bit times)
FRAME_BUFFER_DEPTH = 2048  # bytes: one ECP5 EBR as 2048 x 9, holds a maximum-length frame
EBR_X9_DEPTH = 2048  # an ECP5 DP16KD's words at 9 bits


class FrameFIFO(wiring.Component):
    """A byte FIFO of whole frames: what is written becomes readable only when its frame is committed.

    Accepts, on the write side: `w_en` with `w_data` / `w_last` writes one byte when `w_rdy` (room for it;
    `depth` - 3 bytes in all); `w_commit` makes the bytes written since the last commit or discard, with
    one written in the same cycle, readable; `w_discard` forgets them instead (and a byte written in the
    same cycle). The writer sets `w_last` on a frame's final byte and commits with or after it.
    Emits on `o` (hdl.stream frame beats, 8 bits) the committed bytes in order, `keep` 1, from registers.
    Latency: a committed byte can be on `o` 4 cycles after the commit (the write request's register, the
    read, the output register); one byte a cycle each side, `o.ready` permitting.
    Memory: depth x 9 bits, one write port and one synchronous read port (read latency 1, with enable;
    the ports never meet at an address: only committed bytes are read, and they were written at least a
    cycle before), then an output register: `memory.Memory` and a register, or on an ECP5 at depth 2048
    one DP16KD instantiated with its own output register (REGMODE OUTREG). An EBR's unregistered output
    is slow (5.8 ns of an 8 ns cycle), and yosys never uses the EBR's register: on a full LFE5U-25F the
    route from the array to a register in the fabric missed 125 MHz. Both behave alike, cycle for cycle.
    Bad input: a write without room is ignored (the writer sees `w_rdy` low, and must discard the frame or
    wait); a frame longer than depth - 3 bytes can never be committed, so its writer must discard it.
    """

    ENTRY = data.StructLayout({"data": 8, "last": 1})

    def __init__(self, depth: int = FRAME_BUFFER_DEPTH) -> None:
        if depth < 8 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two, at least 8, got {depth}")
        self.depth = depth
        super().__init__(
            {
                "w_data": In(8),
                "w_last": In(1),
                "w_en": In(1),
                "w_rdy": Out(1),
                "w_commit": In(1),
                "w_discard": In(1),
                "o": Out(frame_signature(8)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        bits = (self.depth - 1).bit_length()
        written, committed, head = (Signal(bits, name=n) for n in ("written", "committed", "head"))
        written_next = Signal(bits, init=1)  # written + 1, kept in a register: no adder before the pointers

        # A write request is registered before it moves the pointers: the writers' decision logic (MacRx's
        # end-of-frame checks, FrameTxCDC's unpacker) ends in these registers, the pointer logic starts
        # from them. `w_rdy` is a register too: room as of the last cycle, with a slot in hand for each
        # write it cannot see yet (the one registered, the one now, the one it allows).
        request = Signal(data.StructLayout({"en": 1, "data": self.ENTRY, "commit": 1, "discard": 1}))
        room = Signal(init=1)
        m.d.sync += [
            room.eq((written - head)[:bits] <= self.depth - 4),
            request.en.eq(self.w_en & self.w_rdy),
            request.data.data.eq(self.w_data),
            request.data.last.eq(self.w_last),
            request.commit.eq(self.w_commit),
            request.discard.eq(self.w_discard),
        ]
        m.d.comb += self.w_rdy.eq(room)
        # `written` runs ahead of `committed`; a discard rewinds it.
        with m.If(request.discard):
            m.d.sync += [written.eq(committed), written_next.eq(committed + 1)]
        with m.Elif(request.en):
            m.d.sync += [written.eq(written_next), written_next.eq(written_next + 1)]
        with m.If(request.commit & ~request.discard):
            m.d.sync += committed.eq(Mux(request.en, written_next, written))

        # Read side, a two-stage pipeline: the read port's register, then the output register; each stage
        # moves on when the next one is empty or moving.
        staged = Signal()  # the read port's register holds a byte (its slot is free again)
        held, out = Signal(), Signal(self.ENTRY, reset_less=True)  # no reset: the memory output goes to a bare FF
        move_out = ~held | self.o.ready
        move_up = ~staged | move_out
        fetch = move_up & (head != committed)
        head_next = Signal(
            bits, init=1
        )  # head + 1, a register: `o.ready` reaches the pointer through a multiplexer, no adder
        with m.If(fetch):
            m.d.sync += [head.eq(head_next), head_next.eq(head_next + 1)]
        with m.If(move_up):
            m.d.sync += staged.eq(fetch)
        with m.If(move_out):
            m.d.sync += held.eq(staged)

        # The memory: its write port takes the registered request; the read port's register moves with
        # `move_up`, the output register with `move_out`.
        if getattr(platform, "family", None) == "ecp5" and self.depth == EBR_X9_DEPTH:
            # An EBR with its own output register (REGMODE OUTREG), which yosys does not infer: the data leave
            # the block from a register (about 1 ns after the clock), not from the array (5.8 ns).
            m.submodules.memory = Instance(
                "DP16KD",
                p_DATA_WIDTH_A=9, p_DATA_WIDTH_B=9, p_REGMODE_A="NOREG", p_REGMODE_B="OUTREG",
                p_RESETMODE="SYNC", p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="DISABLED",
                **_ebr_port("A", clk=ClockSignal(), ce=1, oce=1, we=request.en, addr=written, data=request.data),
                **_ebr_port("B", clk=ClockSignal(), ce=move_up, oce=move_out, we=0, addr=head),
                **{f"o_DOB{k}": out.as_value()[k] for k in range(9)},
            )  # fmt: skip
        else:
            # The reader only reads committed bytes and the writer only writes uncommitted ones, so the ports
            # never meet at an address: `no_rw_check` tells yosys so, sparing the read-first emulation
            # (registers and a multiplexer after the EBR's already slow output) it would otherwise add.
            m.submodules.memory = mem = memory.Memory(
                shape=self.ENTRY, depth=self.depth, init=[], attrs={"no_rw_check": 1}
            )
            write, read = mem.write_port(), mem.read_port()
            m.d.comb += [
                write.addr.eq(written),
                write.data.eq(request.data),
                write.en.eq(request.en),
                read.en.eq(move_up),
                read.addr.eq(head),
            ]
            with m.If(move_out):
                m.d.sync += out.eq(read.data)
        m.d.comb += [
            self.o.valid.eq(held),
            self.o.payload.data.eq(out.data),
            self.o.payload.keep.eq(1),
            self.o.payload.last.eq(out.last),
        ]
        return m


def _ebr_port(
    port: str, *, clk: Value, ce: Value | int, oce: Value | int, we: Value | int, addr: Value, data: Value | None = None
) -> dict[str, Value | int]:
    """A DP16KD port's connections as 2048 x 9: the word address on AD13..AD3 (AD2..AD0 unused at this
    width), data on DI8..DI0, chip selects 0 (CSDECODE 0b000), no reset."""
    address = Cat(Const(0, 3), addr)
    pins: dict[str, Value | int] = {f"i_CLK{port}": clk, f"i_CE{port}": ce, f"i_OCE{port}": oce, f"i_WE{port}": we,
                                    f"i_RST{port}": 0}  # fmt: skip
    pins |= {f"i_CS{port}{k}": 0 for k in range(3)}
    pins |= {f"i_AD{port}{k}": address[k] for k in range(14)}
    if data is not None:
        pins |= {f"i_DI{port}{k}": Value.cast(data)[k] for k in range(9)}
    return pins


class RxDrop(enum.Enum, shape=unsigned(3)):
    """Why MacRx dropped a frame, in order of precedence when several apply."""

    ERROR = 0  # the PHY flagged a receive error (RX_ER) during the frame, its preamble included
    OVERSIZE = 1  # longer than `max_length` with FCS
    RUNT = 2  # shorter than 64 bytes with FCS (a collision fragment, or a frame cut short)
    FCS = 3  # the frame check sequence is wrong
    OVERFLOW = 4  # a good frame with no room in the buffer: its reader (the core side) is not keeping up


class MacRx(wiring.Component):
    """Ethernet receive MAC: GMII bytes into whole, checked frames without preamble, SFD or FCS.

    Accepts on `gmii` a byte a cycle (RX_DV = `valid`, RX_ER = `error`): a frame is a burst of `valid`
    bytes: preamble bytes (0x55, any number, none needed), the SFD (0xD5), the frame, its FCS.
    Emits on `frames` (hdl.stream frame beats, 8 bits: `keep` 1, `last` on the final byte) each good frame
    without its FCS, byte-exact, only after all of it and its FCS have been received and checked (store
    and forward through a FrameFIFO of `depth` bytes); `frame_ok` (a cycle per good frame, as it is
    committed); `drop` with `drop_reason` (RxDrop; a cycle per dropped frame) — strobes for the board's
    counters, in this component's domain.
    Bad input, dropped whole and counted: a receive error, a frame longer than `max_length` bytes with
    FCS (default 1522, a tagged 1500-byte payload), a runt (< 64 bytes with FCS), a wrong FCS, and a good
    frame that found no room in the buffer (`frames` not drained fast enough). A burst without an SFD
    (noise, a lone preamble) is not a frame: ignored, counted only if it carried an error.
    Latency: a frame's first byte is offered on `frames` 8 cycles after its last FCS byte is on `gmii`.
    Throughput: line rate, any gap (one idle cycle between bursts suffices); with `frames.ready` high a
    frame leaves as fast as the next arrives, so the buffer never holds more than about two frames.
    """

    def __init__(self, *, max_length: int = MAX_FRAME, depth: int = FRAME_BUFFER_DEPTH) -> None:
        if max_length < MIN_FRAME:
            raise ValueError(f"max_length must be at least {MIN_FRAME}, got {max_length}")
        if depth - 3 < max_length - FCS_BYTES:
            raise ValueError(f"a {depth}-byte buffer cannot hold a {max_length}-byte frame")
        self.max_length, self.depth = max_length, depth
        super().__init__(
            {
                "gmii": In(GMII),
                "frames": Out(frame_signature(8)),
                "frame_ok": Out(1),
                "drop": Out(1),
                "drop_reason": Out(RxDrop),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = FrameFIFO(self.depth)
        m.submodules.crc = crc = Crc32()
        wiring.connect(m, wiring.flipped(self.frames), buffer.o)

        rx = Signal(GMII)  # registered once: the PHY may sit across the chip
        m.d.sync += rx.eq(self.gmii)
        m.d.sync += [self.frame_ok.eq(0), self.drop.eq(0)]

        # Two stages, so that no byte's work waits on a decision: A frames the bursts on `rx` (an FSM) and
        # registers what each byte is; B, a cycle later, stores and checks the frame bytes, every enable a
        # register of A's. (One stage, the FSM's state decode, RX_DV and a length compare fed the enables
        # of forty-odd registers: 135 MHz alone, under 125 on a full LFE5U-25F.)
        frame_byte = Signal()  # `byte` is a frame byte (after the SFD)
        byte = Signal(8)
        frame_end = Signal()  # the frame's burst ended with the last frame byte B took
        end_error = Signal()  # ... and carried an RX_ER, its preamble included
        burst_error = Signal()  # an RX_ER in the burst so far
        noise_error = Signal()  # a burst without a frame ended, with an RX_ER: dropped, a cycle later
        m.d.sync += [byte.eq(rx.data), frame_byte.eq(0), frame_end.eq(0), noise_error.eq(0)]
        # Said a cycle late, a burst without a frame never strobes `drop` in the cycle of a frame's verdict
        # (that one comes 3 cycles after its burst's end, the noise's 2 after a later burst's end).
        with m.If(noise_error):
            m.d.sync += [self.drop.eq(1), self.drop_reason.eq(RxDrop.ERROR)]

        def begin():
            """Take the byte on `rx` as the first of a burst, if there is one."""
            m.d.sync += burst_error.eq(rx.valid & rx.error)
            with m.If(~rx.valid):
                m.next = "IDLE"
            with m.Elif(rx.data == SFD):
                m.next = "FRAME"
            with m.Elif(rx.data == PREAMBLE):
                m.next = "PREAMBLE"
            with m.Else():
                m.next = "SKIP"

        with m.FSM():
            with m.State("IDLE"):
                begin()

            with m.State("PREAMBLE"):
                with m.If(rx.valid & rx.error):
                    m.d.sync += burst_error.eq(1)
                with m.If(~rx.valid):
                    m.d.sync += noise_error.eq(burst_error)
                    m.next = "IDLE"
                with m.Elif(rx.data == SFD):
                    m.next = "FRAME"
                with m.Elif(rx.data != PREAMBLE):
                    m.next = "SKIP"

            with m.State("SKIP"):
                with m.If(rx.valid & rx.error):
                    m.d.sync += burst_error.eq(1)
                with m.If(~rx.valid):
                    m.d.sync += noise_error.eq(burst_error)
                    m.next = "IDLE"

            with m.State("FRAME"):
                with m.If(rx.valid):
                    m.d.sync += frame_byte.eq(1)
                    with m.If(rx.error):
                        m.d.sync += burst_error.eq(1)
                with m.Else():
                    m.d.sync += [frame_end.eq(1), end_error.eq(burst_error)]
                    m.next = "IDLE"

        # --- B: the frame bytes into the buffer, and the frame's verdict --------------------------------------
        # The last FCS_BYTES + 1 bytes: a byte is stored once four more have come, so the FCS never is,
        # and the frame's last byte is still here, to be stored with `last`, at the verdict.
        held = Signal(data.ArrayLayout(8, FCS_BYTES + 1))
        n_held = Signal(range(FCS_BYTES + 2))
        length = Signal(range(self.max_length + 2))  # bytes after the SFD, FCS included; stops past max_length
        oversize = Signal()  # more than max_length bytes
        overflow = Signal()  # a byte of this frame found no room
        fcs_ok = Signal()  # the CRC's residue check, registered: the verdict comes the cycle after frame_end
        verdict = Signal()  # the cycle of the frame's verdict
        m.d.sync += [fcs_ok.eq(crc.residue_ok), verdict.eq(frame_end)]
        m.d.comb += [crc.data.eq(byte), crc.valid.eq(frame_byte), buffer.w_data.eq(held[0])]

        with m.If(frame_byte):
            with m.If(~oversize):
                m.d.sync += length.eq(length + 1)
            with m.If(length == self.max_length):
                m.d.sync += oversize.eq(1)
            m.d.sync += held.eq(Cat(held.as_value()[8:], byte))
            with m.If(n_held != FCS_BYTES + 1):
                m.d.sync += n_held.eq(n_held + 1)
            with m.Elif(~overflow & ~oversize):
                # Stored only while the frame may still be good: an oversize frame stops using the buffer.
                m.d.comb += buffer.w_en.eq(1)
                with m.If(~buffer.w_rdy):
                    m.d.sync += overflow.eq(1)

        long_enough = length[MIN_FRAME.bit_length() - 1 :].any()  # at least MIN_FRAME (64) bytes
        with m.If(verdict):
            with m.If(end_error):
                m.d.sync += [self.drop.eq(1), self.drop_reason.eq(RxDrop.ERROR)]
            with m.Elif(oversize):
                m.d.sync += [self.drop.eq(1), self.drop_reason.eq(RxDrop.OVERSIZE)]
            with m.Elif(~long_enough):
                m.d.sync += [self.drop.eq(1), self.drop_reason.eq(RxDrop.RUNT)]
            with m.Elif(~fcs_ok):
                m.d.sync += [self.drop.eq(1), self.drop_reason.eq(RxDrop.FCS)]
            with m.Elif(overflow | ~buffer.w_rdy):
                m.d.sync += [self.drop.eq(1), self.drop_reason.eq(RxDrop.OVERFLOW)]
            with m.Else():
                m.d.comb += [buffer.w_en.eq(1), buffer.w_last.eq(1), buffer.w_commit.eq(1)]
                m.d.sync += self.frame_ok.eq(1)
            m.d.comb += [buffer.w_discard.eq(~buffer.w_commit), crc.clear.eq(1)]
            m.d.sync += [n_held.eq(0), length.eq(0), oversize.eq(0), overflow.eq(0)]
        return m


class MacTx(wiring.Component):
    """Ethernet transmit MAC: frames into GMII bytes with preamble, SFD, padding, FCS and gap.

    Accepts on `frames` (hdl.stream frame beats, 8 bits; `keep` ignored) frames without FCS, at least one
    byte each. `frames.ready` is high only while a frame's bytes are being sent: once a frame's first byte
    is taken the rest must follow a byte a cycle (a whole-frame buffer such as FrameFIFO in front makes
    sure of it).
    Emits on `gmii` (registered; `valid` = TX_EN, `error` = TX_ER) 7 preamble bytes, the SFD, the frame,
    zero padding up to 60 bytes, the FCS (zlib.crc32 of frame and padding, least significant byte first),
    then at least `gap` (default 12) idle cycles before the next preamble; `frame_sent` strobes as the
    last FCS byte goes out.
    Latency: the first preamble byte is on `gmii` the cycle after `frames.valid` rises (gap permitting),
    the frame's first byte 8 cycles later. Throughput: line rate, back to back with exactly `gap` idle.
    Bad input: a gap inside a frame (an underrun) ends the frame on the wire with a TX_ER byte (so every
    receiver drops it), strobes `underrun`, and the frame's remaining bytes are taken and thrown away.
    """

    def __init__(self, *, gap: int = INTERFRAME_GAP) -> None:
        if gap < 1:
            raise ValueError(f"gap must be at least 1 cycle, got {gap}")
        self.gap = gap
        super().__init__(
            {
                "frames": In(frame_signature(8)),
                "gmii": Out(GMII),
                "frame_sent": Out(1),
                "underrun": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = Crc32()
        padded = MIN_FRAME - FCS_BYTES
        # A counter per phase, each with one job, and flags kept as registers: at 125 MHz a shared counter
        # with a compare and a multiplexer of next values in front of it was MacTx's critical path.
        preamble = Signal(PREAMBLE_BYTES)  # one-hot: the preamble byte being sent
        sent = Signal(range(padded))  # frame (and padding) bytes sent, stopping at padded - 1
        enough = Signal()  # sent == padded - 1: the byte on offer makes the frame long enough without padding
        fcs_byte = Signal(range(FCS_BYTES))
        gap = Signal(range(self.gap + 1))

        taking = Signal()  # in DATA or DRAIN, as a register of its own: `frames.ready`, with no state decode
        m.d.comb += self.frames.ready.eq(taking)

        m.d.sync += [self.gmii.valid.eq(0), self.gmii.error.eq(0), self.frame_sent.eq(0), self.underrun.eq(0)]

        def send(byte, *, error=0):
            m.d.sync += [self.gmii.data.eq(byte), self.gmii.valid.eq(1), self.gmii.error.eq(error)]

        def count_sent():
            with m.If(~enough):
                m.d.sync += [sent.eq(sent + 1), enough.eq(sent == padded - 2)]

        def end_frame():
            m.d.sync += [gap.eq(self.gap), taking.eq(0)]
            m.next = "IDLE"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(gap != 0):
                    m.d.sync += gap.eq(gap - 1)
                with m.Elif(self.frames.valid):
                    send(PREAMBLE)
                    m.d.sync += preamble.eq(0b10)  # the first one is on its way
                    m.next = "PREAMBLE"

            with m.State("PREAMBLE"):
                m.d.sync += preamble.eq(preamble << 1)
                with m.If(preamble == 0):  # past the seventh
                    send(SFD)
                    m.d.comb += crc.clear.eq(1)
                    m.d.sync += [sent.eq(0), enough.eq(0), taking.eq(1)]
                    m.next = "DATA"
                with m.Else():
                    send(PREAMBLE)

            with m.State("DATA"):
                m.d.comb += crc.data.eq(self.frames.payload.data)
                with m.If(self.frames.valid):
                    send(self.frames.payload.data)
                    m.d.comb += crc.valid.eq(1)
                    count_sent()
                    with m.If(self.frames.payload.last):
                        m.d.sync += [fcs_byte.eq(0), taking.eq(0)]
                        with m.If(enough):
                            m.next = "FCS"
                        with m.Else():
                            m.next = "PAD"
                with m.Else():
                    send(0, error=1)
                    m.d.sync += self.underrun.eq(1)
                    m.next = "DRAIN"

            with m.State("PAD"):
                send(0)
                m.d.comb += [crc.data.eq(0), crc.valid.eq(1)]
                count_sent()
                with m.If(enough):
                    m.next = "FCS"

            with m.State("FCS"):  # the CRC register holds still from here: it is the FCS, sent a byte at a time
                send(crc.value.word_select(fcs_byte, 8))
                m.d.sync += fcs_byte.eq(fcs_byte + 1)
                with m.If(fcs_byte == FCS_BYTES - 1):
                    m.d.sync += self.frame_sent.eq(1)
                    end_frame()

            with m.State("DRAIN"), m.If(self.frames.valid & self.frames.payload.last):
                end_frame()
        return m
