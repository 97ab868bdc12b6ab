"""Simulated cycles and BBO records per second through the Verilated card (wirebook.sim.verilated_card).

The default core (64 bits, 64 instruments, 16k orders, 16 levels) plays a generated market published as a
dense A/B feed, both lines, until the last record is out; then it runs idle. Only the running is timed
(not queueing the frames nor configuring the card). Target: at least 1M simulated cycles per second.
Run: .venv/bin/python bench/bench_sim_card.py [--cold-build]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from common import DATA, generated_file, record

from wirebook.sim import feed
from wirebook.sim.card_sim import feed_locates, line_group
from wirebook.sim.latency import frames_by_line
from wirebook.sim.verilated_card import VerilatedCard, build_library

TARGET_CYCLES_PER_SECOND = 1e6
IDLE_CYCLES = 1_000_000


def feed_pcap(symbols: int, messages: int, seed: int):
    """The generated market as a dense A/B feed pcap, made once and reused."""
    itch_path = generated_file(symbols, messages, seed)
    path = DATA / f"{itch_path.stem}-dense.pcap"
    if not path.exists():
        partial = path.with_suffix(".tmp")
        feed.write_feed_pcap(itch_path, partial, **feed.DENSE_FEED)
        partial.rename(path)
    return path


def play(frames, locates, idle: float, backpressure: float) -> tuple[float, int, int]:
    """(seconds, cycles, records) of one card playing both lines to the end."""
    with VerilatedCard() as card:
        card.configure(locates)
        card.idle(idle, seed=1)
        card.backpressure(backpressure, seed=2)
        for line, line_frames in enumerate(frames):
            card.push_frames(line, line_frames)
        start_cycles, start = card.cycles, time.perf_counter()
        records = card.drain()
        return time.perf_counter() - start, card.cycles - start_cycles, len(records)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--symbols", type=int, default=40, help="at most the card's 64 instrument slots")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--repeat", type=int, default=3, help="runs per row; best time kept")
    p.add_argument("--cold-build", action="store_true", help="also time a build of the library from nothing")
    args = p.parse_args()
    rows = []
    if args.cold_build:
        with tempfile.TemporaryDirectory() as root:
            start = time.perf_counter()
            build_library(root=root)
            rows.append(["cold build of the library (Verilog, Verilator, g++)", f"{time.perf_counter() - start:.1f}",
                         "-", "-", "-", "-"])  # fmt: skip
    build_library()
    pcap_path = feed_pcap(args.symbols, args.messages, args.seed)
    locates = feed_locates(pcap_path)
    frames = [[f for _t, f in line] for line in frames_by_line(pcap_path, [line_group(x) for x in feed.DEFAULT_LINES])]
    rates = []
    for name, idle, backpressure in (("feed at line rate, output always ready", 0.0, 0.0),
                                     ("feed with idle 0.3, back-pressure 0.3", 0.3, 0.3)):  # fmt: skip
        seconds, cycles, records = min(play(frames, locates, idle, backpressure) for _ in range(args.repeat))
        rates.append(cycles / seconds)
        rows.append([name, f"{seconds:.2f}", f"{cycles:,}", f"{cycles / seconds / 1e3:.0f} k", f"{records:,}",
                     f"{records / seconds / 1e3:.1f} k"])  # fmt: skip
    with VerilatedCard() as card:
        start = time.perf_counter()
        card.run(IDLE_CYCLES)
        seconds = time.perf_counter() - start
    rates.append(IDLE_CYCLES / seconds)
    rows.append(["no input (idle card)", f"{seconds:.2f}", f"{IDLE_CYCLES:,}", f"{IDLE_CYCLES / seconds / 1e3:.0f} k",
                 "0", "-"])  # fmt: skip
    met = min(rates) >= TARGET_CYCLES_PER_SECOND
    text = record(
        "sim_card",
        f"Verilated card: {args.messages:,} generated messages ({args.symbols} symbols, seed {args.seed})",
        ".venv/bin/python bench/bench_sim_card.py" + (" --cold-build" if args.cold_build else ""),
        ["run", "seconds", "simulated cycles", "cycles/s", "BBO records", "records/s"],
        rows,
        notes=f"Best of {args.repeat} runs per feed row; the default core (64-bit, 64 instruments, 16384 orders, "
        f"16 levels); both lines carry every message. Target {TARGET_CYCLES_PER_SECOND / 1e6:.0f}M cycles/s: "
        + ("met." if met else f"NOT met (lowest {min(rates) / 1e3:.0f} k cycles/s)."),
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
