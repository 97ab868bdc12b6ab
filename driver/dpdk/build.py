"""Builds and loads the DPDK shim (shim.c, cffi API mode) on first use, not at install time.

DPDK may be missing when wirebook is installed (`make test` installs the Debian packages after
`pip install -e`), and a machine without DPDK must still import wirebook. So `load()` compiles the shim
the first time a process asks for it, into a cache folder keyed by the shim's sources, this file, the
Python ABI and the cffi version:

    $WIREBOOK_DPDK_CACHE or $XDG_CACHE_HOME/wirebook/dpdk or ~/.cache/wirebook/dpdk, then /<key>/

An fcntl lock on <key>.lock makes concurrent first uses (pytest -n, several agents) build once; the
module is moved into place whole, so a reader never sees half a file. The key leaves out the DPDK
version on purpose: DPDK keeps its ABI within a major version, and a new major changes the librte_*
sonames, so a module built against the old one fails to load and is rebuilt here.

Missing pieces raise DpdkMissingError naming what is missing and the Debian package that brings it:
pkg-config (pkg-config), libdpdk and its runtime libraries (libdpdk-dev), a C compiler (gcc), Python's
headers (python3-dev). The compiler runs in a child process (`python build.py OUT_DIR`), so
its output lands in the error instead of on the caller's terminal.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.machinery
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
MODULE = "_wirebook_dpdk"
SOURCES = (HERE / "shim.c", HERE / "shim.h", Path(__file__).resolve())


def declarations() -> str:
    """The C functions Python calls, as cffi reads them: shim.h's declarations between its cdef markers
    (the header holds their contracts; no second copy here to drift from it)."""
    text = (HERE / "shim.h").read_text()
    begin, end = "/* cdef: begin", "/* cdef: end */"
    start = text.index("*/", text.index(begin)) + 2
    return text[start : text.index(end)]


class DpdkError(RuntimeError):
    """DPDK refused something: what was asked, DPDK's reason, and the tail of its log where it helps."""


class DpdkMissingError(DpdkError):
    """Something DPDK needs is not on this machine; the message names it and how to install it."""


def cache_root() -> Path:
    if "WIREBOOK_DPDK_CACHE" in os.environ:
        return Path(os.environ["WIREBOOK_DPDK_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wirebook" / "dpdk"


def cache_key() -> str:
    import cffi

    digest = hashlib.sha256()
    for path in SOURCES:
        digest.update(path.read_bytes())
    digest.update(f"{sys.implementation.cache_tag} {sysconfig.get_platform()} cffi {cffi.__version__}".encode())
    return digest.hexdigest()[:16]


def module_path(folder: Path) -> Path:
    return folder / (MODULE + (importlib.machinery.EXTENSION_SUFFIXES[0]))


def make_ffi() -> Any:
    """The cffi builder: shim.h's declarations plus shim.c, with DPDK's flags from `pkg-config libdpdk`."""
    from cffi import FFI

    ffi = FFI()
    ffi.cdef(declarations())
    ffi.set_source_pkgconfig(
        MODULE,
        ["libdpdk"],
        '#include "shim.h"',
        sources=[str(HERE / "shim.c")],
        include_dirs=[str(HERE)],
        extra_compile_args=["-O3", "-Wall", "-Wno-unused-function"],
    )
    return ffi


def check_toolchain() -> None:
    """Raise DpdkMissingError for the first thing the build would lack."""
    if shutil.which("pkg-config") is None:
        raise DpdkMissingError(
            "cannot build the DPDK shim: pkg-config is not installed (Debian: apt-get install pkg-config)"
        )
    found = subprocess.run(["pkg-config", "--exists", "--print-errors", "libdpdk"], capture_output=True, text=True)
    if found.returncode != 0:
        where = {k: os.environ[k] for k in ("PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR") if k in os.environ}
        raise DpdkMissingError(
            "cannot build the DPDK shim: pkg-config finds no libdpdk"
            + (f" (searching with {where})" if where else "")
            + f": {found.stderr.strip() or 'no libdpdk.pc'}. Install DPDK's development files "
            "(Debian: apt-get install libdpdk-dev, which also brings every poll-mode driver)"
        )
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")[0]
    if shutil.which(compiler) is None:
        raise DpdkMissingError(
            f"cannot build the DPDK shim: no C compiler {compiler!r} on PATH (Debian: apt-get install gcc)"
        )
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        raise DpdkMissingError(
            f"cannot build the DPDK shim: Python's C headers are missing ({headers}); for Debian's Python: "
            "apt-get install python3-dev"
        )


def build(folder: Path) -> Path:
    """Compile the shim into `folder` in a child process; return the module's path."""
    check_toolchain()
    work = folder / f"build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), str(work)], capture_output=True, text=True
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
            raise DpdkError(f"building the DPDK shim ({HERE / 'shim.c'}) failed:\n{tail}")
        built = list(work.rglob(MODULE + "*.so"))
        if len(built) != 1:
            raise DpdkError(f"building the DPDK shim made {[str(b) for b in built]}, expected one {MODULE}*.so")
        target = module_path(folder)
        os.replace(built[0], target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(MODULE, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_loaded: ModuleType | None = None


def load() -> ModuleType:
    """The compiled shim module (`.ffi`, `.lib`), built first if this cache has none."""
    global _loaded
    if _loaded is not None:
        return _loaded
    folder = cache_root() / cache_key()
    target = module_path(folder)
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f"{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.exists():
                build(folder)
    tried = target.stat().st_ino
    try:
        _loaded = _import(target)
    except ImportError as e:
        # Built against DPDK libraries that are gone or of another major version: rebuild once (unless
        # another process has while this one waited for the lock).
        with open(folder.parent / f"{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not target.exists() or target.stat().st_ino == tried:
                    target.unlink(missing_ok=True)
                    build(folder)
                _loaded = _import(target)
            except DpdkMissingError as missing:
                raise DpdkMissingError(
                    f"the DPDK shim {target} does not load ({e}) and cannot be rebuilt: {missing}"
                ) from e
            except ImportError as again:
                raise DpdkMissingError(
                    f"the DPDK shim does not load: {again}. DPDK's libraries are missing or broken (Debian: "
                    "apt-get install --reinstall libdpdk-dev, which brings them all)"
                ) from again
    return _loaded


if __name__ == "__main__":
    # The child process of build(): compile into the folder given.
    make_ffi().compile(tmpdir=sys.argv[1], verbose=True)
