"""ECP5 resources and Fmax of the core's blocks alone, to show where timing is lost.

Each block is synthesized with yosys synth_ecp5 and placed by nextpnr-ecp5 on an LFE5U-85F out of context.
Blocks that route in minutes are routed (router2) and their worst path is named; the book is only placed,
and its Fmax is nextpnr's estimate after placement.

Run: .venv/bin/python bench/bench_components.py (records bench/results/gateware_components.md);
`--only LABEL ...` measures some blocks and only prints them.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from common import record

from wirebook.hdl.book.engine import BookEngine
from wirebook.hdl.csr.bank import CsrBank
from wirebook.hdl.feed_line import FeedLine
from wirebook.hdl.itch.decoder import ItchDecoder
from wirebook.hdl.mold.arbiter import LineArbiter
from wirebook.hdl.stream import DECODED, MESSAGE
from wirebook.hw import synthesis


class MergeStage(wiring.Component):
    """The two lines' ItchDecoders and the LineArbiter as the core wires them, with plain output ports
    (the arbiter's own output has a constant ready, which a top-level module cannot have)."""

    def __init__(self) -> None:
        super().__init__(
            {
                "lines": In(stream.Signature(MESSAGE)).array(2),
                "out_valid": Out(1),
                "out_payload": Out(DECODED),
                "space": In(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter = arbiter = LineArbiter(DECODED)
        for index, line in enumerate(self.lines):
            decoder = m.submodules[f"decoder_{index}"] = ItchDecoder()
            m.d.comb += [
                decoder.message.eq(line.payload),
                arbiter.lines[index].payload.eq(decoder.decoded),
                arbiter.lines[index].valid.eq(line.valid),
                line.ready.eq(arbiter.lines[index].ready),
            ]
        m.d.comb += [
            self.out_valid.eq(arbiter.messages.valid),
            self.out_payload.eq(arbiter.messages.payload),
            arbiter.space.eq(self.space),
        ]
        return m


# label -> (the block, route it)
BLOCKS: dict[str, tuple[Callable[[], wiring.Component], bool]] = {
    "FeedLine(64)": (lambda: FeedLine(64, line=0), True),
    "MergeStage (2 ItchDecoder, LineArbiter)": (lambda: MergeStage(), True),
    "BookEngine()": (lambda: BookEngine(), False),
    "CsrBank()": (lambda: CsrBank(), True),
}


def signal_name(cell: str) -> str:
    """The design signal a nextpnr cell is named after (`ops__payload_TRELLIS_FF_Q_7` -> `ops.payload`)."""
    name = re.split(r"_(?:TRELLIS|LUT4|CCU2C|PFUMX|L6MUX21|DP16KD|PDPW16KD)|\$", cell, maxsplit=1)[0]
    return name.replace("__", ".") or cell


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=[label.split()[0] for label in BLOCKS],
                        help="measure only these (printed, not recorded)")  # fmt: skip
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="wirebook-blocks-") as scratch:
        for label in [label for label in BLOCKS if not args.only or label.split()[0] in args.only]:
            make, route = BLOCKS[label]
            folder = Path(scratch) / re.sub(r"\W", "", label)
            folder.mkdir()
            source = folder / "block.v"
            source.write_text(verilog.convert(make(), name="block", emit_src=False))
            used = synthesis.synth_ecp5(source, "block", folder)
            timing = synthesis.place_route_ecp5(used.netlist, folder, route=route)
            fmax = f"{timing.fmax_mhz.get('clk', 0):.1f}" + ("" if route else " (placement estimate)")
            path = timing.critical_path
            worst = f"{signal_name(path[0][1])} -> {signal_name(path[-1][1])}, {path[-1][0]:.1f} ns" if path else "-"
            rows.append([label, str(used.luts), str(used.ffs), str(used.ebr), fmax, worst])
            print(rows[-1], flush=True)
    if args.only:
        return 0
    print(record("gateware_components", "Gateware blocks alone: ECP5 resources and Fmax",
                 ".venv/bin/python bench/bench_components.py",
                 ["block", "LUT4 (carry cells as 2)", "FF", "EBR", "Fmax (MHz)", "worst path"], rows,
                 "LFE5U-85F, out of context, nextpnr-ecp5 (router2). Target: 156.25 MHz (6.4 ns)."))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
