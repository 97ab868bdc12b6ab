"""Shared by the benchmarks: the input file, timing, and the recorded results tables."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATA = ROOT / "out" / "bench"


def generated_file(symbols: int = 100, messages: int = 1_000_000, seed: int = 7) -> Path:
    """The benchmark's input: a generated market, made once and reused (deterministic by seed).

    The cached file is keyed by the generator's source too, so a changed generator makes a new file.
    """
    from wirebook.sim import market

    generator = hashlib.sha256(Path(market.__file__).read_bytes()).hexdigest()[:12]
    path = DATA / f"market-{symbols}s-{messages}m-seed{seed}-{generator}.itch"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        market.write_itch(tmp, symbols=symbols, messages=messages, seed=seed)
        tmp.rename(path)
    return path


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best wall time of `repeat` runs (the least disturbed by the machine), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def uncommitted() -> bool:
    """The working tree differs from the commit (tracked files): results measured now go in with the change."""
    try:
        return bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True,
                check=True,
            ).stdout.strip()
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return False


def tree() -> str:
    """Which tree a result was measured on, for the results files."""
    if uncommitted():
        return f"on the tree of the commit that records it (parent {commit()})"
    return f"at commit {commit()}"


def record(name: str, title: str, command: str, header: list[str], rows: list[list[str]], notes: str = "") -> str:
    """Write bench/results/<name>.md (a markdown table with how it was measured) and return it."""
    lines = [f"# {title}", "", f"Measured by `{command}` {tree()} on {machine()}.", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if notes:
        lines += ["", notes]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text)
    return text
