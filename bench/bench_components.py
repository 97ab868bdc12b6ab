"""ECP5 resources and Fmax of the core's blocks alone, to show where timing is lost.

Each block is synthesized with yosys synth_ecp5 and placed by nextpnr-ecp5 on an LFE5U-85F out of context.
Blocks that route in minutes are routed (router2) and their worst path is named; the book is only placed,
and its Fmax is nextpnr's estimate after placement.

Run: .venv/bin/python bench/bench_components.py (records bench/results/gateware_components.md);
`--only BLOCK ...` measures some blocks and prints them, and with `--record` replaces their rows in the
recorded table (each row names the tree it was measured on).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Signal, Value
from amaranth.lib import wiring
from common import RESULTS, commit, record, uncommitted

from wirebook.hdl.book.engine import BookEngine
from wirebook.hdl.csr.bank import CsrBank
from wirebook.hdl.feed_line import FeedLine
from wirebook.hdl.feed_merge import FeedMerge
from wirebook.hw import synthesis


def ports(block: wiring.Component) -> list[Signal]:
    """The block's port signals, for a top-level module: a stream that is always ready (FeedMerge's
    output) has a constant there, which a module port cannot be."""
    values = [Value.cast(value) for _, _, value in block.signature.flatten(block)]
    return [value for value in values if isinstance(value, Signal)]


# label -> (the block, route it)
BLOCKS: dict[str, tuple[Callable[[], wiring.Component], bool]] = {
    "FeedLine(64)": (lambda: FeedLine(64, line=0), True),
    "FeedMerge (2 ItchDecoder, LineArbiter)": (lambda: FeedMerge(), True),
    "BookEngine()": (lambda: BookEngine(), False),
    "CsrBank()": (lambda: CsrBank(), True),
}


def signal_name(cell: str) -> str:
    """The design signal a nextpnr cell is named after (`ops__payload_TRELLIS_FF_Q_7` -> `ops.payload`)."""
    name = re.split(r"_(?:TRELLIS|LUT4|CCU2C|PFUMX|L6MUX21|DP16KD|PDPW16KD)|\$", cell, maxsplit=1)[0]
    return name.replace("__", ".") or cell


HEADER = ["block", "LUT4 (carry cells as 2)", "FF", "EBR", "Fmax (MHz)", "worst path", "tree measured"]
RESULT = RESULTS / "gateware_components.md"


def recorded_rows() -> dict[str, list[str]]:
    """The rows of the recorded table by block label (those of blocks still measured, in today's columns)."""
    if not RESULT.exists():
        return {}
    rows = {}
    for line in RESULT.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == len(HEADER) and cells[0] in BLOCKS:
            rows[cells[0]] = cells
    return rows


def tree_measured() -> str:
    """The commit measured, marked `+changes` when the working tree differs from it."""
    return commit() + ("+changes" if uncommitted() else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=[label.split()[0] for label in BLOCKS],
                        help="measure only these")  # fmt: skip
    parser.add_argument("--record", action="store_true",
                        help="with --only: replace their rows in the recorded table, keep the others")  # fmt: skip
    args = parser.parse_args()
    measured = {}
    with tempfile.TemporaryDirectory(prefix="wirebook-blocks-") as scratch:
        for label in [label for label in BLOCKS if not args.only or label.split()[0] in args.only]:
            make, route = BLOCKS[label]
            folder = Path(scratch) / re.sub(r"\W", "", label)
            folder.mkdir()
            source = folder / "block.v"
            block = make()
            source.write_text(verilog.convert(block, name="block", ports=ports(block), emit_src=False))
            used = synthesis.synth_ecp5(source, "block", folder)
            timing = synthesis.place_route_ecp5(used.netlist, folder, route=route)
            fmax = f"{timing.fmax_mhz.get('clk', 0):.1f}" + ("" if route else " (placement estimate)")
            path = timing.critical_path
            worst = f"{signal_name(path[0][1])} -> {signal_name(path[-1][1])}, {path[-1][0]:.1f} ns" if path else "-"
            measured[label] = [label, str(used.luts), str(used.ffs), str(used.ebr), fmax, worst, tree_measured()]
            print(measured[label], flush=True)
    if args.only and not args.record:
        return 0
    rows = recorded_rows() | measured if args.only else measured
    print(record("gateware_components", "Gateware blocks alone: ECP5 resources and Fmax",
                 ".venv/bin/python bench/bench_components.py [--only BLOCK ... --record]", HEADER,
                 [rows[label] for label in BLOCKS if label in rows],
                 "LFE5U-85F, out of context, nextpnr-ecp5 (router2). Target: 156.25 MHz (6.4 ns). Blocks are "
                 "measured one by one (the book takes the longest): each row names the tree it was measured on, "
                 "`+changes` when that was the named commit plus the uncommitted changes being committed with the "
                 "result."))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
