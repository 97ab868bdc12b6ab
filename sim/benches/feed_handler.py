"""cocotb test bench of the FeedHandler top (hdl/feed_handler.py) in Verilator or Icarus.

The bench is driven by a JSON plan named in $WIREBOOK_BENCH (written by wirebook.sim.card_sim): one pcap
per line (every frame of line i's pcap goes into input i, valid or not: the card filters), the groups,
session and instruments to configure, idle and back-pressure probabilities. BBO records are collected
from the record stream; at the end the bench writes the records (raw 64-byte records, in order), the counters read
back over AXI4-Lite, the number of cycles an input refused a beat while the output was ready (0 at line
rate) and, when asked, a per-beat timing log for latency measurement (wirebook.sim.latency).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamSink, AxiStreamSource

from ...proto import bbo, net, pcap, registers

CLOCK_NS = 4  # 250 MHz: only the cycle count matters


def _plan() -> dict:
    path = os.environ.get("WIREBOOK_BENCH")
    if not path:
        raise RuntimeError("WIREBOOK_BENCH must name the bench plan (JSON)")
    return json.loads(Path(path).read_text())


def _pauses(probability: float, seed: int):
    """A cocotbext-axi pause generator: True (pause this cycle) with the given probability."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


class TB:
    """The DUT with its clock, its two feed sources, the record sink and the CSR master."""

    def __init__(self, dut, plan: dict) -> None:
        self.dut = dut
        self.plan = plan
        self.cycle = 0
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.line_names = registers.LINES[: plan.get("n_lines", len(registers.LINES))]  # the core's feed ports
        self.lines = [
            AxiStreamSource(AxiStreamBus.from_prefix(dut, f"s_axis_{name.lower()}"), dut.clk, dut.rst)
            for name in self.line_names
        ]
        self.records = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_bbo"), dut.clk, dut.rst)
        self.csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.beat_log: list[tuple[int, int, int]] = []  # (cycle, line, last) of every accepted input beat
        self.record_cycles: list[int] = []
        self.stalled_cycles = 0  # cycles an input offered a beat, was refused, and the output was ready
        self.stalls: list[tuple[int, int]] = []  # (cycle, line) of the first few

    def set_idle_generator(self, probability: float, seed: int) -> None:
        for i, source in enumerate(self.lines):
            if probability:
                source.set_pause_generator(_pauses(probability, seed + i))

    def set_backpressure_generator(self, probability: float, seed: int) -> None:
        if probability:
            self.records.set_pause_generator(_pauses(probability, seed + 7))

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def monitor(self) -> None:
        """Count cycles; log input beats and output records; count refused beats while the output is free."""
        dut = self.dut
        ports = [(getattr(dut, f"s_axis_{n}_tvalid"), getattr(dut, f"s_axis_{n}_tready"),
                  getattr(dut, f"s_axis_{n}_tlast")) for n in map(str.lower, self.line_names)]  # fmt: skip
        while True:  # sampled mid-cycle: a transfer seen here happens at the next rising edge
            await FallingEdge(dut.clk)
            await ReadOnly()
            self.cycle += 1
            out_ready = int(dut.m_axis_bbo_tready.value)
            for line, (valid, ready, last) in enumerate(ports):
                if int(valid.value):
                    if int(ready.value):
                        self.beat_log.append((self.cycle, line, int(last.value)))
                    elif out_ready:
                        self.stalled_cycles += 1
                        if len(self.stalls) < 20:
                            self.stalls.append((self.cycle, line))
            if int(dut.m_axis_bbo_tvalid.value) and out_ready:
                self.record_cycles.append(self.cycle)

    # --- registers ---------------------------------------------------------------------------------

    async def write(self, name: str, value, index: int | str | None = None) -> None:
        reg = registers.register(name)
        base = reg.address(index)
        for k, word in enumerate(reg.to_words(value)):
            await self.csr.write_dword(base + registers.WORD_BYTES * k, word)

    async def read(self, name: str, index: int | str | None = None):
        reg = registers.register(name)
        base = reg.address(index)
        words = [await self.csr.read_dword(base + registers.WORD_BYTES * k) for k in range(reg.words)]
        return reg.decode(reg.from_words(words))

    async def configure(self) -> None:
        plan = self.plan
        for i, group in enumerate(plan["groups"]):
            value = {"address": net.ipv4_address(group["address"]), "port": group["port"], "valid": 1}
            await self.write("group", value, i)
        await self.write("accept_multicast", 1)
        await self.write("session", plan["session"])
        await self.write("check_session", 1)
        for slot, locate in enumerate(plan["locates"]):
            await self.write("instrument_locate", locate)
            await self.write("instrument_slot", slot)
            await self.write("instrument_valid", 1)
            await self.write("instrument_write", 1)
        for line in self.line_names:
            await self.write("line_enable", 1, line)
        await self.write("enable", 1)

    async def counters(self) -> dict[str, int | list[int]]:
        out: dict[str, int | list[int]] = {}
        for reg in registers.REGISTERS:
            if reg.access.readable and reg.access is not registers.Access.CONFIG:
                if reg.is_array:
                    out[reg.name] = [await self.read(reg.name, i) for i in range(reg.elements)]
                else:
                    out[reg.name] = await self.read(reg.name)
        return out


@cocotb.test()
async def replay_pcap(dut) -> None:
    """Play the plan's pcap through the card and write out every BBO record and counter."""
    plan = _plan()
    tb = TB(dut, plan)
    tb.set_idle_generator(plan.get("idle", 0.0), plan.get("seed", 1))
    tb.set_backpressure_generator(plan.get("backpressure", 0.0), plan.get("seed", 1))
    await tb.reset()
    await tb.configure()
    cocotb.start_soon(tb.monitor())
    for source, line_pcap in zip(tb.lines, plan["lines"]):
        for _time, frame in pcap.iter_pcap(line_pcap):
            await source.send(frame)
    for source in tb.lines:
        await source.wait()
    received = bytearray()
    quiet = 0
    while quiet < plan.get("drain_cycles", 200):  # the core is done when nothing comes out for a while
        if not tb.records.empty():
            while not tb.records.empty():
                record = tb.records.recv_nowait()
                received += bytes(record.tdata)
            quiet = 0
        else:
            quiet += 1
        await RisingEdge(dut.clk)
    out = Path(plan["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "records.bin").write_bytes(bytes(received))
    counters = await tb.counters()
    report = {
        "cycles": tb.cycle,
        "stalled_cycles": tb.stalled_cycles,
        "stalls": tb.stalls,
        "records": len(received) // bbo.SIZE,
        "counters": counters,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    if plan.get("timing"):
        (out / "timing.json").write_text(json.dumps({"beats": tb.beat_log, "records": tb.record_cycles}))
    assert len(received) % bbo.SIZE == 0, f"record stream carried {len(received)} bytes, not whole records"
