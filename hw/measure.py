"""Measure the FeedHandler core: latency and line rate in simulation, resources and Fmax from synthesis.

- Latency (cycles): a generated market published as a dense dual-line feed is played through the core in
  Verilator at full rate (no idle cycles, output always ready); for every BBO record, the cycles from the
  beat holding its message's last byte (on the line that brought it first) to the record leaving the
  core (wirebook.sim.latency). Per cause type: min / median / max.
- Line rate: the cycles an input refused a beat while the output was ready (must be 0), and the message
  rate the run sustained per line at the width's line clock.
- Resources: yosys synth_ecp5 (LUT4 / FF / EBR / DSP), nextpnr-ecp5 on an LFE5U-85F out of context (Fmax
  against 156.25 MHz, the 64-bit clock of 10G), and synth_xilinx cell counts for the xc7z020.

`wirebook bench gateware` and bench/bench_gateware.py run this; bench/results/gateware.md records it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from ..sim import card_sim, feed, latency, market

TARGET_MHZ = 156.25  # 10GBASE-R's 64-bit datapath clock
LINE_CLOCK_MHZ = {8: 125.0, 32: 312.5, 64: 156.25}  # the clock at which the width carries its line: 1G, 10G, 10G
MARKET = {"symbols": 20, "seed": 1}


def simulate(width: int, messages: int, folder: Path) -> dict:
    itch_path, pcap_path = folder / "market.itch", folder / "market.pcap"
    if not pcap_path.exists():
        market.write_itch(itch_path, MARKET["symbols"], messages, MARKET["seed"])
        feed.write_feed_pcap(itch_path, pcap_path, **feed.DENSE_FEED)
    run = card_sim.run_card(pcap_path, config=card_sim.CardConfig(data_width=width), timing=True)
    groups = [card_sim.line_group(x) for x in feed.DEFAULT_LINES]
    frames = [[f for _t, f in line] for line in latency.frames_by_line(pcap_path, groups)]
    first = latency.arrivals(frames, run.timing["beats"], width)
    by_type = latency.latency_by_type(run.records, run.timing["records"], first)
    beats = [c for c, line, _last in run.timing["beats"] if line == 0]
    streaming_cycles = beats[-1] - beats[0] + 1
    return {
        "latency_cycles": by_type,
        "stalled_cycles": run.report["stalled_cycles"],
        "messages": int(sum(run.report["counters"]["messages_by_type"])),
        "records": len(run.records),
        "streaming_cycles": streaming_cycles,
        "line_clock_mhz": LINE_CLOCK_MHZ[width],
        "messages_per_cycle": round(len(first) / streaming_cycles, 4),
        "messages_per_second": round(len(first) / streaming_cycles * LINE_CLOCK_MHZ[width] * 1e6),
    }


def synthesize(folder: Path, progress: Callable[[str], None] | None, *, route: bool = True) -> dict:
    from ..hdl.feed_handler import write_verilog
    from . import synthesis

    say = progress or (lambda _text: None)
    verilog = write_verilog(folder / "feed_handler.v", data_width=64)
    say("yosys synth_ecp5 (several minutes) ...")
    ecp5 = synthesis.synth_ecp5(verilog, "feed_handler", folder / "ecp5")
    say(f"nextpnr-ecp5 LFE5U-85F ({'place and route' if route else 'placement only'}) ...")
    timing = synthesis.place_route_ecp5(ecp5.netlist, folder / "ecp5", freq_mhz=TARGET_MHZ, route=route)
    say("yosys synth_xilinx xc7 ...")
    xilinx = synthesis.synth_xilinx(verilog, "feed_handler", folder / "xc7")
    return {
        "ecp5": {"device": "LFE5U-85F", "luts": ecp5.luts, "ffs": ecp5.ffs, "ebr": ecp5.ebr, "dsp": ecp5.dsp,
                 "fmax_mhz": timing.fmax_mhz, "routed": timing.routed, "target_mhz": TARGET_MHZ,
                 "timing_met": timing.met},
        "xc7z020": xilinx["summary"],
    }  # fmt: skip


def gateware(
    widths: list[int],
    *,
    messages: int = 20_000,
    synthesis: bool = True,
    route: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict:
    say = progress or (lambda _text: None)
    report: dict = {"market": {**MARKET, "messages": messages, **feed.DENSE_FEED}, "widths": {}}
    with tempfile.TemporaryDirectory(prefix="wirebook-bench-") as scratch:
        folder = Path(scratch)
        for width in widths:
            say(f"simulating the core at {width} bits ...")
            report["widths"][str(width)] = simulate(width, messages, folder)
        if synthesis:
            report |= synthesize(folder, progress, route=route)
    return report


def markdown(report: dict) -> str:
    lines = ["| width | type | records | min | median | max |", "|---|---|---:|---:|---:|---:|"]
    for width, result in report["widths"].items():
        for letter, s in result["latency_cycles"].items():
            lines.append(f"| {width} | {letter} | {s['count']} | {s['min']} | {s['median']:g} | {s['max']} |")
    lines += ["", "| width | refused beats | messages | cycles | messages / cycle | msg/s at the line's clock |",
              "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for width, r in report["widths"].items():
        rate = f"{r['messages_per_second']:,} @ {r['line_clock_mhz']} MHz"
        lines.append(f"| {width} | {r['stalled_cycles']} | {r['messages']} | {r['streaming_cycles']} | "
                     f"{r['messages_per_cycle']} | {rate} |")  # fmt: skip
    if "ecp5" in report:
        e, x = report["ecp5"], report["xc7z020"]
        how = "routed" if e["routed"] else "nextpnr's estimate after placement, not routed"
        lines += ["", f"ECP5 {e['device']}: {e['luts']} LUT4, {e['ffs']} FF, {e['ebr']} EBR, {e['dsp']} DSP; "
                  f"Fmax {e['fmax_mhz']} MHz ({how}; target {e['target_mhz']}, met: {e['timing_met']})",
                  "xc7z020 (synth_xilinx): " + ", ".join(f"{k} {v}" for k, v in x.items())]  # fmt: skip
    return "\n".join(lines)


__all__ = ["gateware", "markdown"]
