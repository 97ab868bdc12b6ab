"""Ethernet for the board tops (hw.eth): FCS, MacRx, MacTx, the frame CDCs and RgmiiPhy, in Amaranth's simulator.

Frames are UDP frames built with proto.net (the feed's addresses from sim.feed), put on the wire with a
preamble, the SFD and zlib.crc32 as FCS; what MacRx should make of a burst comes from `reference_rx`,
the drop policy of its docstring written plainly over the bytes. Every data test runs at full rate and
with idle cycles on the input and back-pressure on the output.

RgmiiPhy's DDR registers are vendor primitives Amaranth cannot simulate; `SimulationDDRPlatform` stands in
for the platform and models them the way ECP5's IDDRX1F / ODDRX1F pair a cycle's two edges.
"""

from __future__ import annotations

import gc
import random
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    DomainRenamer,
    Elaboratable,
    Fragment,
    Module,
    Mux,
    Signal,
    UnusedElaboratable,
)
from amaranth.lib import io, wiring
from amaranth.sim import Simulator

from wirebook.hw.eth.crc32 import RESIDUE, Crc32
from wirebook.hw.eth.frame_cdc import FrameRxCDC, FrameTxCDC
from wirebook.hw.eth.mac import MIN_FRAME, PREAMBLE, SFD, MacRx, MacTx, RxDrop
from wirebook.hw.eth.rgmii import RgmiiPhy, Speed
from wirebook.proto import net
from wirebook.sim import feed
from wirebook.sim.testbench import Beat, Flow, frame_bytes, stream_get, stream_put

WIDTHS = (8, 32, 64)
FLOWS = {"full_rate": 0.0, "idle_and_backpressure": 0.3}
PERIOD = 8e-9  # 125 MHz
HEADERS = 14 + 20 + 8  # Ethernet, IPv4, UDP


def fcs(frame: bytes) -> bytes:
    return zlib.crc32(frame).to_bytes(4, "little")


def udp_frame(length: int, seed: int = 0, *, vlan: int | None = None) -> bytes:
    """A feed-line UDP frame of `length` bytes without FCS (at least the headers), random payload."""
    payload = random.Random(seed).randbytes(length - HEADERS - (4 if vlan is not None else 0))
    frame = net.build_udp_frame(feed.SOURCE_MAC, None, feed.SOURCE_IP, feed.LINE_A.group, feed.SOURCE_PORT,
                                feed.LINE_A.port, payload, vlan=vlan)  # fmt: skip
    assert len(frame) == length
    return frame


def short_frame(length: int, seed: int = 0) -> bytes:
    """Frames shorter than a UDP header (a MAC passes any bytes): the start of a UDP frame."""
    return udp_frame(HEADERS + 8, seed)[:length] if length <= HEADERS + 8 else udp_frame(length, seed)


def on_the_wire(frame: bytes, *, preamble: int = 7, check: bytes | None = None) -> bytes:
    """Preamble, SFD, the frame and its FCS (or `check` in its place)."""
    return bytes([PREAMBLE] * preamble + [SFD]) + frame + (fcs(frame) if check is None else check)


# --- the receive policy, as a reference ------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """One burst of RX_DV on GMII: its bytes, the byte positions flagged RX_ER, and idle cycles after it."""

    wire: bytes
    errors: frozenset[int] = frozenset()
    gap: int = 12


def reference_rx(burst: Burst, max_length: int) -> tuple[RxDrop | None, bytes | None] | None:
    """(None, frame) for a good frame, (reason, None) for a dropped one, None for a burst that is no frame."""
    at = 0
    while at < len(burst.wire) and burst.wire[at] == PREAMBLE:
        at += 1
    if at == len(burst.wire) or burst.wire[at] != SFD:
        return (RxDrop.ERROR, None) if burst.errors else None
    frame = burst.wire[at + 1 :]
    if burst.errors:
        return RxDrop.ERROR, None
    if len(frame) > max_length:
        return RxDrop.OVERSIZE, None
    if len(frame) < MIN_FRAME:
        return RxDrop.RUNT, None
    if fcs(frame[:-4]) != frame[-4:]:
        return RxDrop.FCS, None
    return None, frame[:-4]


def gmii_cycles(bursts: list[Burst], lead: int = 4) -> list[tuple[int, int, int]]:
    cycles = [(0, 0, 0)] * lead
    for burst in bursts:
        cycles += [(byte, 1, int(k in burst.errors)) for k, byte in enumerate(burst.wire)]
        cycles += [(0, 0, 0)] * burst.gap
    return cycles


def run_mac_rx(dut: MacRx, cycles, *, backpressure: float = 0.0, seed: int = 0, ready_after: int = 0, tail=3000):
    """Drive GMII cycle by cycle and take frames (ready withheld with probability `backpressure`, and
    entirely before cycle `ready_after`); returns (frames, drop reasons, frame_ok count)."""
    frames, drops, ok = [], Counter(), 0
    rng = random.Random(seed)

    async def bench(ctx):
        nonlocal ok
        current = bytearray()
        for n in range(len(cycles) + tail):
            data, valid, error = cycles[n] if n < len(cycles) else (0, 0, 0)
            ctx.set(dut.gmii, {"data": data, "valid": valid, "error": error})
            ready = int(n >= ready_after and rng.random() >= backpressure)
            ctx.set(dut.frames.ready, ready)
            *_, o_valid, o_payload, frame_ok, drop, reason = await ctx.tick().sample(
                dut.frames.valid, dut.frames.payload, dut.frame_ok, dut.drop, dut.drop_reason
            )
            if o_valid and ready:
                assert o_payload.keep == 1
                current.append(o_payload.data)
                if o_payload.last:
                    frames.append(bytes(current))
                    current.clear()
            ok += frame_ok
            if drop:
                drops[RxDrop(reason)] += 1
        assert not current, "a frame was left half taken"

    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    sim.add_testbench(bench)
    sim.run()
    return frames, drops, ok


def expected_rx(bursts: list[Burst], max_length: int) -> tuple[list[bytes], Counter]:
    frames, drops = [], Counter()
    for burst in bursts:
        outcome = reference_rx(burst, max_length)
        if outcome is None:
            continue
        reason, frame = outcome
        if reason is None:
            frames.append(frame)
        else:
            drops[reason] += 1
    return frames, drops


# --- CRC -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_bytes", [1, 2, 4, 8])
def test_crc_is_zlib_crc32_every_cycle_and_checks_its_own_fcs(n_bytes):
    rng = random.Random(n_bytes)
    message = rng.randbytes(8 * 24)
    dut = Crc32(n_bytes)

    async def bench(ctx):
        for start in (0, 1):  # the second round after a clear, from a non-zero value
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            body = message[start * 8 :]
            for at in range(0, len(body), n_bytes):
                ctx.set(dut.data, int.from_bytes(body[at : at + n_bytes], "little"))
                ctx.set(dut.valid, 1)
                assert ctx.get(dut.next_value) == zlib.crc32(body[: at + n_bytes])
                await ctx.tick()
                assert ctx.get(dut.value) == zlib.crc32(body[: at + n_bytes])
                ctx.set(dut.valid, 0)
                if rng.random() < 0.3:
                    await ctx.tick()  # an idle cycle holds the value
                    assert ctx.get(dut.value) == zlib.crc32(body[: at + n_bytes])
        # A frame followed by its FCS leaves the residue (76 + 4 bytes: whole cycles at every n_bytes).
        frame = message[:76]
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        checked = frame + fcs(frame)
        assert zlib.crc32(checked) == RESIDUE
        for at in range(0, len(checked), n_bytes):
            assert not ctx.get(dut.residue_ok)
            ctx.set(dut.data, int.from_bytes(checked[at : at + n_bytes], "little"))
            ctx.set(dut.valid, 1)
            await ctx.tick()
        ctx.set(dut.valid, 0)
        assert ctx.get(dut.residue_ok)

    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    sim.add_testbench(bench)
    sim.run()


# --- MacRx -----------------------------------------------------------------------------------------------


def receive_scenario(seed: int, max_length: int) -> list[Burst]:
    """Good frames of every length near the minimum and a few larger, with the kinds of bad input."""
    rng = random.Random(seed)
    bursts = []
    lengths = [*range(56, 66), 100, 257, max_length - 4, max_length - 3, 60, 61]

    def gap():
        return rng.choice((1, 3, 12, 12, 12))

    for k, length in enumerate(lengths):
        frame = short_frame(length, seed + k) if length < HEADERS + 8 else udp_frame(length, seed + k)
        bursts.append(Burst(on_the_wire(frame, preamble=rng.choice((7, 7, 7, 1, 0, 12))), gap=gap()))
    good = udp_frame(80, seed)
    wrong = bytes(b ^ 1 for b in fcs(good))
    bursts += [
        Burst(on_the_wire(good, check=wrong), gap=gap()),  # bad FCS
        Burst(on_the_wire(good[:30] + bytes([good[30] ^ 0x80]) + good[31:], check=fcs(good)), gap=gap()),
        Burst(on_the_wire(good), errors=frozenset({40}), gap=gap()),  # RX_ER in the frame
        Burst(on_the_wire(good), errors=frozenset({2}), gap=gap()),  # RX_ER in the preamble
        Burst(on_the_wire(good), errors=frozenset({len(good) + 8 + 3}), gap=gap()),  # ... on an FCS byte
        Burst(bytes([PREAMBLE] * 5), gap=gap()),  # a lone preamble: no frame
        Burst(bytes([PREAMBLE] * 3 + [0x12, SFD]) + good + fcs(good), gap=gap()),  # junk before the SFD
        Burst(bytes([PREAMBLE] * 4), errors=frozenset({1}), gap=gap()),  # an error burst without SFD
        Burst(on_the_wire(b""), gap=gap()),  # SFD, then only an FCS: a runt
        Burst(on_the_wire(good), gap=1),
        Burst(on_the_wire(udp_frame(64, seed + 99)), gap=12),
    ]
    return bursts


@pytest.mark.parametrize("flow", FLOWS)
def test_mac_rx_passes_good_frames_byte_exact_and_drops_and_counts_bad_ones(flow):
    max_length = 200
    bursts = receive_scenario(seed=1, max_length=max_length)
    frames, drops, ok = run_mac_rx(MacRx(max_length=max_length), gmii_cycles(bursts), backpressure=FLOWS[flow])
    want_frames, want_drops = expected_rx(bursts, max_length)
    assert frames == want_frames
    assert drops == want_drops
    assert ok == len(want_frames)
    assert set(want_drops) == {RxDrop.ERROR, RxDrop.OVERSIZE, RxDrop.RUNT, RxDrop.FCS}  # the scenario has each


def test_mac_rx_default_length_limit_is_a_tagged_1500_byte_payload():
    longest, shortest = udp_frame(1518, 5, vlan=7), udp_frame(60, 6)
    bursts = [Burst(on_the_wire(longest)), Burst(on_the_wire(udp_frame(1519, 6, vlan=7))), Burst(on_the_wire(shortest))]
    frames, drops, _ = run_mac_rx(MacRx(), gmii_cycles(bursts), tail=80)  # the longest leaves during the next
    assert frames == [longest, shortest]
    assert drops == Counter({RxDrop.OVERSIZE: 1})


def test_mac_rx_latency_is_eight_cycles_from_the_last_fcs_byte():
    frame = udp_frame(64)
    dut = MacRx()
    cycles = gmii_cycles([Burst(on_the_wire(frame))], lead=2)
    last_fcs = 2 + len(on_the_wire(frame)) - 1

    async def bench(ctx):
        ctx.set(dut.frames.ready, 1)
        for n in range(len(cycles)):
            data, valid, error = cycles[n]
            ctx.set(dut.gmii, {"data": data, "valid": valid, "error": error})
            *_, o_valid = await ctx.tick().sample(dut.frames.valid)
            if o_valid:
                assert n - last_fcs == 8
                return
        raise AssertionError("no frame")

    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    sim.add_testbench(bench)
    sim.run()


def test_mac_rx_drops_whole_frames_when_its_reader_falls_behind():
    """With the reader stalled, the buffer (128 bytes) holds the first frame; the next two find no room and
    are dropped whole; once the reader runs, the first frame and a later one come out intact."""
    frames_in = [udp_frame(96, seed) for seed in range(4)]
    bursts = [Burst(on_the_wire(f)) for f in frames_in]
    cycles = gmii_cycles(bursts)
    third_end = 4 + sum(len(b.wire) + b.gap for b in bursts[:3])
    frames, drops, ok = run_mac_rx(MacRx(max_length=128, depth=128), cycles, ready_after=third_end, tail=300)
    assert frames == [frames_in[0], frames_in[3]]
    assert drops == Counter({RxDrop.OVERFLOW: 2})
    assert ok == 2


# --- MacTx -----------------------------------------------------------------------------------------------


def run_mac_tx(dut: MacTx, frames: list[bytes], *, idle: float = 0.0, seed: int = 0, pause_at=None, tail=200):
    """Offer frames a byte a cycle (with idle cycles between frames as Flow(idle) says, and for one cycle
    before byte `pause_at[1]` of frame `pause_at[0]`); returns the GMII output per cycle and the strobes."""
    out, strobes = [], Counter()
    flow = Flow(idle, seed)

    async def bench(ctx):
        queue = [(k, i) for k, frame in enumerate(frames) for i in range(len(frame))]
        at, paused, wait = 0, False, flow.pause()
        for _ in range(sum(len(f) + 100 for f in frames) + tail):
            offer = at < len(queue)
            if offer:
                k, i = queue[at]
                if i == 0 and wait:  # idle cycles before a frame (once offered, a byte stays offered)
                    offer, wait = False, wait - 1
                if (k, i) == pause_at and not paused:
                    offer, paused = False, True
            ctx.set(dut.frames.valid, offer)
            if offer:
                ctx.set(dut.frames.payload, {"data": frames[k][i], "keep": 1, "last": int(i == len(frames[k]) - 1)})
            *_, ready, gmii, sent, underrun = await ctx.tick().sample(
                dut.frames.ready, dut.gmii, dut.frame_sent, dut.underrun
            )
            if offer and ready:
                at += 1
                wait = flow.pause() if i == len(frames[k]) - 1 else 0
            out.append((gmii.data, gmii.valid, gmii.error))
            strobes["sent"] += sent
            strobes["underrun"] += underrun
        assert at == len(queue)

    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    sim.add_testbench(bench)
    sim.run()
    return out, strobes


def bursts_of(out) -> tuple[list[tuple[bytes, bool]], list[int]]:
    """The GMII bursts (bytes, any TX_ER) and the idle cycles between consecutive ones."""
    bursts, gaps, current, errors, idle = [], [], bytearray(), False, None
    for data, valid, error in out:
        if valid:
            if not current and idle is not None and bursts:
                gaps.append(idle)
            current.append(data)
            errors |= bool(error)
            idle = 0
        else:
            if current:
                bursts.append((bytes(current), errors))
                current, errors = bytearray(), False
            idle = None if idle is None else idle + 1
    assert not current
    return bursts, gaps


def expected_tx(frame: bytes) -> bytes:
    padded = frame + bytes(max(0, 60 - len(frame)))
    return bytes([PREAMBLE] * 7 + [SFD]) + padded + fcs(padded)


@pytest.mark.parametrize("flow", FLOWS)
def test_mac_tx_sends_preamble_sfd_padding_fcs_and_the_gap(flow):
    frames = [short_frame(n, n) for n in (1, 2, 17, 58, 59, 60, 61, 64)] + [udp_frame(n, n) for n in (100, 333)]
    out, strobes = run_mac_tx(MacTx(), frames, idle=FLOWS[flow], seed=3)
    bursts, gaps = bursts_of(out)
    assert [b for b, _ in bursts] == [expected_tx(f) for f in frames]
    assert not any(e for _, e in bursts)
    assert min(gaps) >= 12
    if not FLOWS[flow]:
        assert set(gaps) == {12}  # back to back: exactly the minimum gap
        # The first frame is offered from cycle 0: its preamble from cycle 1, its first byte 8 cycles later.
        assert out[0][1] == 0 and out[1] == (PREAMBLE, 1, 0) and out[9] == (frames[0][0], 1, 0)
    assert strobes == Counter({"sent": len(frames), "underrun": 0})


def test_mac_tx_ends_an_underrun_frame_with_an_error_and_sends_the_next():
    frames = [udp_frame(80, 1), udp_frame(70, 2)]
    out, strobes = run_mac_tx(MacTx(), frames, pause_at=(0, 10))
    bursts, _ = bursts_of(out)
    assert len(bursts) == 2
    cut, errored = bursts[0]
    assert errored and cut[:-1] == expected_tx(frames[0])[: 8 + 10]
    assert bursts[1] == (expected_tx(frames[1]), False)
    assert out[[k for k, (_, v, _) in enumerate(out) if v][8 + 10]] == (0, 1, 1)  # the TX_ER byte
    assert strobes == Counter({"sent": 1, "underrun": 1})


# --- MacTx -> MacRx --------------------------------------------------------------------------------------


class Loopback(Elaboratable):
    def __init__(self) -> None:
        self.tx, self.rx = MacTx(), MacRx()

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.gmii.eq(self.tx.gmii)
        return m


@pytest.mark.parametrize("flow", FLOWS)
def test_mac_tx_to_mac_rx_loopback(flow):
    frames = [short_frame(n, n) for n in (1, 7, 59, 60, 61)] + [udp_frame(n, n) for n in (64, 65, 66, 67, 150)]
    dut = Loopback()
    got = []

    async def source(ctx):
        idle = Flow(FLOWS[flow], 1)
        for frame in frames:
            for at, byte in enumerate(frame):
                await stream_put(ctx, dut.tx.frames, {"data": byte, "keep": 1, "last": int(at == len(frame) - 1)},
                                 idle if at == 0 else None)  # fmt: skip

    async def sink(ctx):
        backpressure = Flow(FLOWS[flow], 2)
        for _ in frames:
            frame = bytearray()
            while True:
                payload = await stream_get(ctx, dut.rx.frames, backpressure)
                frame.append(payload.data)
                if payload.last:
                    break
            got.append(bytes(frame))

    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    assert got == [f + bytes(max(0, 60 - len(f))) for f in frames]


# --- frame CDC -------------------------------------------------------------------------------------------


class InDomain:
    """A simulator context whose `tick()` is another domain's, so sim.testbench's stream helpers drive
    streams outside `sync`."""

    def __init__(self, ctx, domain: str) -> None:
        self._ctx, self._domain = ctx, domain

    def tick(self):
        return self._ctx.tick(self._domain)

    def __getattr__(self, name):
        return getattr(self._ctx, name)


class CdcRoundTrip(Elaboratable):
    """Bytes at `eth` -> FrameRxCDC -> beats at `sync` (the core) -> FrameTxCDC -> bytes at `eth`."""

    def __init__(self, data_width: int, **tx_parameters) -> None:
        self.rx = FrameRxCDC(data_width, eth_domain="eth", core_domain="sync")
        self.tx = FrameTxCDC(data_width, core_domain="sync", eth_domain="eth", **tx_parameters)

    def elaborate(self, platform):
        m = Module()
        m.domains.eth, m.domains.sync = ClockDomain("eth"), ClockDomain("sync")
        m.submodules.rx, m.submodules.tx = self.rx, self.tx
        return m


def check_beats(received: list, data_width: int) -> bytes:
    """The frame's bytes, after checking the beat rules: every beat full but the last, whose kept lanes are
    the lowest ones and whose other lanes are zero; `last` only on the last."""
    lanes = data_width // 8
    for at, beat in enumerate(received):
        final = at == len(received) - 1
        assert beat.last == final
        n = bin(beat.keep).count("1")
        assert beat.keep == (1 << n) - 1 and n >= 1 and (final or n == lanes)
        assert beat.data >> (8 * n) == 0
    return frame_bytes([Beat(b.data, b.keep, b.last) for b in received], data_width)


def run_cdc_round_trip(data_width, frames, core_period, idle, *, seed=0, expected=None, **tx_parameters):
    """Frames round the CdcRoundTrip; returns what the core saw (frames, after checking the beats), what
    came back out (frames) and how many `oversize` strobes there were. A monitor checks FrameTxCDC's
    whole-frame promise: once a frame's first byte is taken, a byte is offered whenever the sink is ready."""
    dut = CdcRoundTrip(data_width, **tx_parameters)
    expected = frames if expected is None else expected
    at_core, at_eth, oversize = [], [], [0]

    async def source(ctx):
        eth, flow = InDomain(ctx, "eth"), Flow(idle, seed + 1)
        for frame in frames:
            for at, byte in enumerate(frame):
                await stream_put(eth, dut.rx.i, {"data": byte, "keep": 1, "last": int(at == len(frame) - 1)}, flow)

    async def core(ctx):  # the core: takes each beat and sends it back out
        get_flow, put_flow = Flow(idle, seed + 2), Flow(idle, seed + 3)
        for _ in frames:
            received = []
            while not received or not received[-1].last:
                received.append(await stream_get(ctx, dut.rx.o, get_flow))
            at_core.append(check_beats(received, data_width))
            for beat in received:
                await stream_put(ctx, dut.tx.i, beat, put_flow)

    async def sink(ctx):
        eth, flow = InDomain(ctx, "eth"), Flow(idle, seed + 4)
        for _ in expected:
            frame = bytearray()
            while True:
                payload = await stream_get(eth, dut.tx.o, flow)
                frame.append(payload.data)
                if payload.last:
                    break
            at_eth.append(bytes(frame))

    async def monitor(ctx):
        inside = False
        async for _, _, valid, ready, payload, too_long in ctx.tick("eth").sample(
            dut.tx.o.valid, dut.tx.o.ready, dut.tx.o.payload, dut.tx.oversize
        ):
            assert not (inside and ready and not valid), "a gap inside a frame"
            if valid and ready:
                inside = not payload.last
            oversize[0] += too_long

    sim = Simulator(dut)
    sim.add_clock(PERIOD, domain="eth")
    sim.add_clock(core_period, domain="sync", phase=core_period * 0.37)
    sim.add_testbench(source)
    sim.add_testbench(core)
    sim.add_testbench(sink)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return at_core, at_eth, oversize[0]


CDC_FRAMES = [short_frame(n, n) for n in range(1, 18)] + [udp_frame(n, n) for n in (60, 64, 101)]


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("core_period", [3.1e-9, 8.9e-9, 21e-9], ids=["core_2.6x", "core_0.9x", "core_0.38x"])
@pytest.mark.parametrize("data_width", WIDTHS)
def test_frame_cdc_round_trip(data_width, core_period, flow):
    at_core, at_eth, oversize = run_cdc_round_trip(data_width, CDC_FRAMES, core_period, FLOWS[flow])
    assert at_core == CDC_FRAMES
    assert at_eth == CDC_FRAMES
    assert oversize == 0


@pytest.mark.parametrize("data_width", WIDTHS)
def test_frame_tx_cdc_drops_frames_longer_than_max_length_whole(data_width):
    frames = [udp_frame(n, n) for n in (50, 51, 120, 64, 50)]
    kept = [f for f in frames if len(f) <= 50]
    at_core, at_eth, oversize = run_cdc_round_trip(
        data_width, frames, 5.3e-9, 0.0, expected=kept, max_length=50, buffer_depth=64
    )
    assert at_core == frames
    assert at_eth == kept
    assert oversize == len(frames) - len(kept)


class Receive(Elaboratable):
    """MacRx at `eth` -> FrameRxCDC -> beats at `sync` (the core)."""

    def __init__(self, data_width: int, **mac_parameters) -> None:
        self.mac = MacRx(**mac_parameters)
        self.cdc = FrameRxCDC(data_width, eth_domain="eth", core_domain="sync")

    def elaborate(self, platform):
        m = Module()
        m.domains.eth, m.domains.sync = ClockDomain("eth"), ClockDomain("sync")
        m.submodules.mac = DomainRenamer({"sync": "eth"})(self.mac)
        m.submodules.cdc = self.cdc
        wiring.connect(m, self.mac.frames, self.cdc.i)
        return m


@pytest.mark.parametrize(
    "data_width,slowdown", [(8, 1.0), (32, 1.0), (64, 1.0), (32, 1.5), (64, 2.0)], ids=lambda v: str(v)
)
def test_core_clock_below_the_contract_drops_whole_frames_at_the_mac_never_truncates(data_width, slowdown):
    """Line-rate frames (minimum gap) into a core taking a beat every cycle at `slowdown` x the contract's
    longest period (8 ns x lanes): at the contract nothing is lost; below it MacRx drops whole frames
    (OVERFLOW) and every frame the core gets is one that was sent, intact, in order."""
    rng = random.Random(data_width)
    sent = [udp_frame(rng.randrange(60, 160), k) for k in range(14)]
    bursts = [Burst(on_the_wire(f)) for f in sent]
    cycles = gmii_cycles(bursts)
    dut = Receive(data_width, max_length=256, depth=256)
    got, drops = [], Counter()

    async def line(ctx):
        for data, valid, error in [*cycles, *[(0, 0, 0)] * 1200]:  # then time to drain the buffer
            ctx.set(dut.mac.gmii, {"data": data, "valid": valid, "error": error})
            *_, drop, reason = await ctx.tick("eth").sample(dut.mac.drop, dut.mac.drop_reason)
            if drop:
                drops[RxDrop(reason)] += 1

    async def core(ctx):
        ctx.set(dut.cdc.o.ready, 1)
        received = []
        async for _, _, valid, payload in ctx.tick().sample(dut.cdc.o.valid, dut.cdc.o.payload):
            if valid:
                received.append(payload)
                if payload.last:
                    got.append(check_beats(received, data_width))
                    received = []

    sim = Simulator(dut)
    sim.add_clock(PERIOD, domain="eth")
    sim.add_clock(PERIOD * data_width / 8 * slowdown, domain="sync", phase=1.3e-9)
    sim.add_testbench(line)
    sim.add_testbench(core, background=True)
    sim.run()
    if slowdown <= 1.0:
        assert got == sent and not drops
    else:
        assert drops and set(drops) == {RxDrop.OVERFLOW}
        assert len(got) + drops[RxDrop.OVERFLOW] == len(sent)
        remaining = iter(sent)
        assert all(frame in remaining for frame in got)  # a subsequence: whole frames, in order


# --- RgmiiPhy --------------------------------------------------------------------------------------------


class DDRModel(Elaboratable):
    """An io.DDRBuffer on a SimulationPort, paired as ECP5's primitives pair a cycle's edges. Input
    (IDDRX1F): the pin sampled on a rising edge and on the falling edge after it, presented together as
    i[0], i[1] from the next rising edge. Output (ODDRX1F): o[0], o[1] registered on a rising edge, o[0]
    on the pin while the clock is high, then o[1] while it is low. (ECP5's output has two more pipeline
    stages; equal for clock, control and data, so they do not change what the PHY sees.)"""

    def __init__(self, buffer: io.DDRBuffer) -> None:
        self.buffer = buffer

    def elaborate(self, platform):
        m = Module()
        buffer, port = self.buffer, self.buffer.port
        domain = buffer.i_domain or buffer.o_domain
        m.domains.falling = falling = ClockDomain("falling", clk_edge="neg", local=True, reset_less=True)
        m.d.comb += falling.clk.eq(ClockSignal(domain))
        if buffer.direction is io.Direction.Input:
            rising_half, falling_half = Signal(len(port)), Signal(len(port))
            m.d[domain] += [rising_half.eq(port.i), buffer.i[0].eq(rising_half), buffer.i[1].eq(falling_half)]
            m.d.falling += falling_half.eq(port.i)
        else:
            first, second, held = Signal(len(port)), Signal(len(port)), Signal(len(port))
            m.d[domain] += [first.eq(buffer.o[0]), second.eq(buffer.o[1])]
            m.d.falling += held.eq(second)
            m.d.comb += [port.o.eq(Mux(ClockSignal(domain), first, held)), port.oe.eq(buffer.oe.replicate(len(port)))]
        return m


class SimulationDDRPlatform:
    """What Amaranth's simulator lacks: DDR buffers (DDRModel); other buffers as with no platform."""

    def get_io_buffer(self, buffer):
        if isinstance(buffer, io.DDRBuffer):
            return DDRModel(buffer)
        return _Unplatformed(buffer)


class _Unplatformed(Elaboratable):
    def __init__(self, buffer) -> None:
        self.buffer = buffer

    def elaborate(self, platform):
        return self.buffer.elaborate(None)


RGMII_PINS = (("rx_clk", "i", 1), ("rx_ctl", "i", 1), ("rx_data", "i", 4),
              ("tx_clk", "o", 1), ("tx_ctl", "o", 1), ("tx_data", "o", 4))  # fmt: skip


def rgmii_pins() -> SimpleNamespace:
    return SimpleNamespace(**{name: io.SimulationPort(way, width, name=name) for name, way, width in RGMII_PINS})


class PhyTop(Elaboratable):
    def __init__(self, pins: SimpleNamespace) -> None:
        self.phy = RgmiiPhy.from_resource(pins, rx_delay=0)

    def elaborate(self, platform):
        m = Module()
        m.domains.eth_tx, m.domains.eth_rx = ClockDomain("eth_tx"), ClockDomain("eth_rx")
        m.submodules.phy = self.phy
        return m


def test_rgmii_phy_receives_low_nibble_on_rising_edge_and_error_as_ctl_xor():
    pins = rgmii_pins()
    top = PhyTop(pins)
    wire = on_the_wire(udp_frame(64))
    # (data, RX_DV, RX_ER) a cycle: idle with in-band status (link up, 1000 Mb/s, full duplex), a frame with
    # an error byte in it, a carrier-extend-like error outside a frame, idle.
    sent = [(0b1101, 0, 0)] * 6 + [(b, 1, int(k == 20)) for k, b in enumerate(wire)] + [(0x0F, 0, 1)] + [(0, 0, 0)] * 4
    got = []

    async def phy(ctx):  # a PHY presenting rx_clk centred on each half (RGMII-ID)
        for data, dv, er in [*sent, *[(0, 0, 0)] * 4]:
            ctx.set(pins.rx_data.i, data & 0xF)
            ctx.set(pins.rx_ctl.i, dv)
            await ctx.delay(PERIOD / 4)
            ctx.set(pins.rx_clk.i, 1)
            await ctx.delay(PERIOD / 4)
            ctx.set(pins.rx_data.i, data >> 4)
            ctx.set(pins.rx_ctl.i, dv ^ er)
            await ctx.delay(PERIOD / 4)
            ctx.set(pins.rx_clk.i, 0)
            await ctx.delay(PERIOD / 4)

    async def mac(ctx):
        async for _, _, rx, status in ctx.tick("eth_rx").sample(top.phy.rx, top.phy.status):
            got.append(((rx.data, rx.valid, rx.error), (status.link_up, status.speed, status.full_duplex)))

    sim = Simulator(Fragment.get(top, SimulationDDRPlatform()))
    sim.add_clock(PERIOD, domain="eth_tx")
    sim.add_testbench(phy)
    sim.add_testbench(mac, background=True)
    sim.run()
    bytes_seen = [b for b, _ in got]
    first = bytes_seen.index((PREAMBLE, 1, 0))
    start = sent.index((PREAMBLE, 1, 0))
    # Byte k's rising half is sampled on rx_clk edge k; `rx` shows it from edge k + 2 (the IDDR's output
    # register, then RgmiiRx's), which `sample` reads at edge k + 3 (values from before the edge).
    assert first - start == 3
    assert bytes_seen[first : first + len(sent) - start] == sent[start:]
    assert got[first][1] == (1, Speed.MBPS_1000, 1)


def test_rgmii_phy_sends_low_nibble_on_rising_edge_with_the_clock_launched_alongside():
    pins = rgmii_pins()
    top = PhyTop(pins)
    wire = on_the_wire(udp_frame(64))
    sent = [(0, 0, 0)] * 3 + [(b, 1, int(k == 30)) for k, b in enumerate(wire)] + [(0, 0, 0)] * 3
    got = []

    async def mac(ctx):
        for data, valid, error in [*sent, *[(0, 0, 0)] * 6]:
            ctx.set(top.phy.tx, {"data": data, "valid": valid, "error": error})
            await ctx.tick("eth_tx")

    async def phy(ctx):  # a PHY that delays TXC by a quarter cycle internally (RGMII-TXID)
        while True:
            await ctx.posedge(pins.tx_clk.o)
            await ctx.delay(PERIOD / 4)
            low, dv = ctx.get(pins.tx_data.o), ctx.get(pins.tx_ctl.o)
            await ctx.negedge(pins.tx_clk.o)
            await ctx.delay(PERIOD / 4)
            high, dv_xor_er = ctx.get(pins.tx_data.o), ctx.get(pins.tx_ctl.o)
            got.append((low | high << 4, dv, dv ^ dv_xor_er))

    sim = Simulator(Fragment.get(top, SimulationDDRPlatform()))
    sim.add_clock(PERIOD, domain="eth_tx")
    sim.add_testbench(mac)
    sim.add_testbench(phy, background=True)
    sim.run()
    first = got.index((PREAMBLE, 1, 0))
    assert got[first - 1] == (0, 0, 0)
    assert got[first : first + len(sent) - 3] == sent[3:]


def test_rgmii_phy_delays_need_the_ecp5():
    pins = rgmii_pins()
    with warnings.catch_warnings():  # the refused PHYs are never elaborated, by design
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(NotImplementedError, match="DELAYG"):
            Fragment.get(RgmiiPhy.from_resource(pins), SimulationDDRPlatform())  # rx_delay defaults to 2 ns
        with pytest.raises(ValueError, match="DELAYG delays"):
            RgmiiPhy.from_resource(pins, tx_delay=4e-9)
        gc.collect()


class BoardTop(Elaboratable):
    """Port 0 of a board's RGMII: the PHY with MacRx and MacTx, tx clock from the board's oscillator."""

    def __init__(self, **phy_parameters) -> None:
        self.phy_parameters = phy_parameters

    def elaborate(self, platform):
        m = Module()
        m.domains.eth_tx, m.domains.eth_rx = ClockDomain("eth_tx"), ClockDomain("eth_rx")
        m.submodules.clock = clock = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        m.d.comb += ClockSignal("eth_tx").eq(clock.i)
        phy = RgmiiPhy.from_resource(platform.request("eth_rgmii", 0, dir="-"), **self.phy_parameters)
        rx, tx = MacRx(), MacTx()
        m.submodules.phy = phy
        m.submodules.rx = DomainRenamer("eth_rx")(rx)
        m.submodules.tx = DomainRenamer("eth_tx")(tx)
        m.d.comb += [rx.gmii.eq(phy.rx), phy.tx.eq(tx.gmii)]
        return m


@pytest.mark.parametrize("board", ["colorlight_5a75b_r7_0.Colorlight_5A75B_R70Platform", "ecpix5.ECPIX585Platform"])
@pytest.mark.parametrize("tx_delay", [0.0, 2e-9])
def test_rgmii_phy_elaborates_for_the_ecp5_boards(board, tx_delay):
    module, name = board.split(".")
    platform = getattr(pytest.importorskip(f"amaranth_boards.{module}"), name)()
    plan = platform.prepare(BoardTop(tx_delay=tx_delay), name="top")
    rtlil, lpf = plan.files["top.il"], plan.files["top.lpf"]
    assert rtlil.count("DELAYG") == 5 + (tx_delay > 0)  # rx_ctl and rx_data (2 ns default), tx_clk if delayed
    assert rtlil.count("IDDRX1F") == 5
    assert rtlil.count("ODDRX1F") == 6  # tx_ctl, tx_data, tx_clk
    assert "rx_clk_buffer" not in lpf  # the receive clock is constrained at its pin, by the board top
