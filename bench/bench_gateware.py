"""Gateware latency (cycles), line rate, ECP5 / xc7z020 resources and Fmax of the FeedHandler core.

Targets: at most 8 cycles from an ITCH message's last byte to its BBO record at 64 bits for every
book-changing type; no refused input beat with the output ready (line rate); 156.25 MHz on an LFE5U-85F.
Run: .venv/bin/python bench/bench_gateware.py  (or `make bench`; `wirebook bench gateware --json` prints
the same measurement as JSON).
"""

from __future__ import annotations

import argparse
import json

from common import RESULTS, machine, tree

from wirebook.hw import measure


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--widths", default="8,32,64")
    p.add_argument("--no-synthesis", action="store_true")
    p.add_argument("--no-route", action="store_true", help="Fmax from nextpnr's estimate after placement")
    args = p.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    report = measure.gateware(widths, messages=args.messages, synthesis=not args.no_synthesis,
                              route=not args.no_route, progress=print)  # fmt: skip
    flags = " --no-synthesis" if args.no_synthesis else " --no-route" if args.no_route else ""
    command = ".venv/bin/python bench/bench_gateware.py" + flags
    text = "\n".join([
        "# Gateware: latency, line rate, resources",
        "",
        f"Measured by `{command}` (the same as `wirebook bench gateware{flags}`) {tree()} on {machine()}.",
        f"Market: {report['market']['symbols']} symbols, {args.messages} messages, seed {report['market']['seed']}, "
        "published as a dense A/B feed; both lines at full rate, output always ready (Verilator via cocotb).",
        "",
        "Latency in cycles from the beat holding a message's last byte (first line to bring it) to its BBO",
        "record leaving the core, per cause type:",
        "",
        measure.markdown(report),
        "",
    ])  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gateware.md").write_text(text)
    (RESULTS / "gateware.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
