"""BeatTracker and HeaderCapture: a header picked out of the passing beats at any frame position.

Random frames are cut into beats with sim.testbench.beats; a header table from proto (UDP, the MoldUDP64
header, IPv4) is captured at every start position across the first beats, with and without idle cycles.
Every cycle the monitor checks, against the frame's own bytes: the tap (position, end, first beat, keep
verdict) and the capture (`received` = header bytes seen so far including the offered beat, and those
bytes of `fields`).
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator

from wirebook.hdl.fields import value
from wirebook.hdl.net.header import BeatTracker, HeaderCapture
from wirebook.proto import moldudp64, net
from wirebook.sim.testbench import Flow, beats

WIDTHS = (8, 32, 64)
LAYOUTS = {"udp": net.UDP, "mold": moldudp64.HEADER, "ipv4": net.IPV4}


class Bench(Elaboratable):
    """A BeatTracker feeding a HeaderCapture, every offered beat taken."""

    def __init__(self, width: int, layout) -> None:
        self.tracker = BeatTracker(width)
        self.capture = HeaderCapture(layout, width)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tracker, m.submodules.capture = self.tracker, self.capture
        m.d.comb += [
            self.tracker.take.eq(self.tracker.valid),
            self.capture.tap.eq(self.tracker.tap),
        ]
        return m


def run(width: int, layout, frames: list[tuple[bytes, int, dict]], idle: float) -> list[str]:
    """Drive (frame, header start, {beat index: keep}) and return what disagreed."""
    bench, lanes, errors = Bench(width, layout), width // 8, []
    tracker, capture = bench.tracker, bench.capture
    flow = Flow(idle, seed=width)

    async def drive(ctx):
        for frame, start, keeps in frames:
            ctx.set(capture.start, start)
            await ctx.tick()  # where the header sits in a beat is registered from `start`
            offset = 0
            for i, b in enumerate(beats(frame, width)):
                if pause := flow.pause():
                    ctx.set(tracker.valid, 0)
                    await ctx.tick().repeat(pause)
                keep = keeps.get(i, b.keep)
                ctx.set(tracker.beat, {"data": b.data, "keep": keep, "last": b.last})
                ctx.set(tracker.valid, 1)
                carried = bin(keep).count("1") if b.last else lanes
                full, bad = (1 << lanes) - 1, False
                if b.last:
                    bad = keep == 0 or keep & (keep + 1) != 0
                else:
                    bad = keep != full
                tap = tracker.tap
                got = (ctx.get(tap.offset), ctx.get(tap.end), ctx.get(tap.first), ctx.get(tap.bad_keep))
                want = (offset, offset + carried, int(offset == 0), int(bad))
                if got != want:
                    errors.append(f"frame {len(frame)}B beat {i}: tap (offset, end, first, bad_keep) {got} != {want}")
                received = max(0, min(layout.length, offset + carried - start))
                if ctx.get(capture.received) != received:
                    errors.append(f"start {start} beat {i}: received {ctx.get(capture.received)} != {received}")
                fields = ctx.get(capture.fields).to_bytes(layout.length, "little")
                # (a last beat whose keep is not contiguous fills what its keep says: no bytes to compare)
                if not (b.last and bad) and fields[:received] != frame[start : start + received]:
                    errors.append(f"start {start} beat {i}: fields {fields[:received]!r}")
                if received == layout.length:  # hdl.fields reads the table's fields off the capture
                    for f in layout.value_fields:
                        raw = frame[start + f.offset : start + f.end]
                        want_field = int.from_bytes(raw, layout.byteorder if f.kind.is_integer else "little")
                        got_field = ctx.get(value(capture.fields, layout, f.name))
                        if got_field != want_field:
                            errors.append(f"start {start}: {f.name} {got_field} != {want_field}")
                await ctx.tick()
                offset += lanes
            ctx.set(tracker.valid, 0)
            # Between frames the capture keeps what it took: the whole header when the frame carried it.
            await ctx.tick()

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.run()
    return errors


@pytest.mark.parametrize("idle", [0.0, 0.3], ids=["full_rate", "idle"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("width", WIDTHS)
def test_capture_at_every_start(width, layout, idle):
    rng, header = random.Random(width), LAYOUTS[layout]
    lanes = width // 8
    frames = []
    for start in range(2 * lanes + 3):
        length = start + header.length + rng.randrange(2 * lanes)
        frames.append((bytes(rng.randrange(256) for _ in range(length)), start, {}))
    # Frames that end inside the header: `received` stops short.
    frames.append((bytes(rng.randrange(256) for _ in range(lanes + 3)), 2, {}))
    assert not run(width, header, frames, idle)


@pytest.mark.parametrize("width", WIDTHS)
def test_keep_rules(width):
    lanes, rng = width // 8, random.Random(1)
    partial = bytes(rng.randrange(256) for _ in range(3 * lanes + 1))  # a last beat of one byte
    full = bytes(rng.randrange(256) for _ in range(3 * lanes))  # a full last beat
    cases = [(partial, {}), (full, {}), (partial, {0: 0}), (partial, {3: 0})]  # fine, fine, short beat, empty last
    if lanes > 1:
        cases += [(partial, {1: (1 << lanes) - 2}), (partial, {3: 0b10}), (full, {2: 0b101})]  # holes, gaps
    assert not run(width, net.UDP, [(frame, 0, keeps) for frame, keeps in cases], 0.0)
