"""Does each board's core fit its device? Synthesis of the FeedHandler with each board's parameters.

For each board of hw/boards.py: the core alone (the board's FeedHandler parameters) through yosys synth_ecp5
(ECP5 boards) or synth_xilinx (the PYNQ-Z2's xc7z020), its LUT / FF / block-RAM use against the device's
capacity. A core that does not fit alone cannot fit with the board's MACs and host link either. With
`--sweep`, smaller cores for the boards whose core does not fit, to find what does.

Run: .venv/bin/python bench/bench_boards.py [--board NAME ...] [--sweep]
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
SWEEP = [
    {"data_width": 8, "n_instruments": 16, "n_orders": 2048, "n_levels": 4},
    {"data_width": 8, "n_instruments": 8, "n_orders": 1024, "n_levels": 2},
]


def device_of(device: str) -> str:
    return next(name for name in CAPACITY if device.startswith(name))


def measure(board_name: str, core: dict[str, int], folder: Path) -> list[str]:
    b = BOARDS[board_name]
    device = device_of(b.device)
    started = time.perf_counter()
    verilog = write_verilog(folder / "feed_handler.v", **core)
    if b.toolchain == "yowasp-ecp5":
        u = synthesis.synth_ecp5(verilog, "feed_handler", folder / "ecp5")
        used = {"LUT": u.luts, "FF": u.ffs, "RAM": u.ebr}
        tool = "synth_ecp5"
    else:
        s = synthesis.synth_xilinx(verilog, "feed_handler", folder / "xilinx")["summary"]
        used = {"LUT": s["LUT"], "FF": s["FF"], "RAM": s["BRAM36"] + (s["BRAM18"] + 1) // 2}
        tool = "synth_xilinx"
    cap = CAPACITY[device]
    fits = all(used[k] <= cap[k] for k in used)
    shape = f"{core['data_width']}-bit, {core['n_instruments']} instruments, {core['n_orders']:,} orders, " \
            f"{core['n_levels']} levels"  # fmt: skip
    return [board_name, device, shape, tool] + [f"{used[k]:,} / {cap[k]:,} ({100 * used[k] / cap[k]:.0f}%)"
                                                for k in ("LUT", "FF", "RAM")] + [
        "yes" if fits else "NO", f"{time.perf_counter() - started:.0f}"]  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", action="append", choices=sorted(BOARDS), help="only these boards (repeatable)")
    p.add_argument("--sweep", action="store_true", help="also smaller cores for the boards whose core does not fit")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.board or list(BOARDS):
            row = measure(name, BOARDS[name].core, Path(tmp) / name)
            rows.append(row)
            print(" | ".join(row), flush=True)
            if args.sweep and row[-2] == "NO":
                for k, core in enumerate(SWEEP):
                    row = measure(name, core, Path(tmp) / f"{name}-{k}")
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


if __name__ == "__main__":
    sys.exit(main())
