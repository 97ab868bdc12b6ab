"""ECP5 resources and Fmax estimate of the core's big blocks alone, to show where timing is lost.

Each block is synthesized with yosys synth_ecp5 and placed (not routed) by nextpnr-ecp5 on an LFE5U-85F
out of context; the Fmax is nextpnr's estimate after placement. Run: .venv/bin/python bench/bench_components.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from amaranth.back import verilog
from common import record

from wirebook.hdl.book.engine import BookEngine
from wirebook.hdl.csr.bank import CsrBank
from wirebook.hdl.feed_line import FeedLine
from wirebook.hw import synthesis

BLOCKS = {
    "FeedLine(64)": lambda: FeedLine(64, line=0),
    "BookEngine()": lambda: BookEngine(),
    "CsrBank()": lambda: CsrBank(),
}


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory(prefix="wirebook-blocks-") as scratch:
        for label, make in BLOCKS.items():
            folder = Path(scratch) / label.split("(")[0]
            folder.mkdir()
            source = folder / "block.v"
            source.write_text(verilog.convert(make(), name="block", emit_src=False))
            used = synthesis.synth_ecp5(source, "block", folder)
            timing = synthesis.place_route_ecp5(used.netlist, folder, route=False)
            rows.append([label, str(used.luts), str(used.ffs), str(used.ebr), f"{timing.fmax_mhz.get('clk', 0):.1f}"])
            print(rows[-1], flush=True)
    print(record("gateware_components", "Gateware blocks alone: ECP5 resources and Fmax estimate",
                 ".venv/bin/python bench/bench_components.py",
                 ["block", "LUT4 (carry cells as 2)", "FF", "EBR", "Fmax estimate after placement (MHz)"], rows,
                 "LFE5U-85F, out of context, nextpnr-ecp5 --no-route. Target: 156.25 MHz."))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
