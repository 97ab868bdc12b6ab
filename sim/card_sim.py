"""The simulated card: the FeedHandler's Verilog in Verilator, driven by the cocotb bench.

`run_card(pcap)` plays a MoldUDP64 feed pcap through the gateware and returns the BBO records it emitted,
its counters and (optionally) a beat-level timing log. The Verilator build is cached under
out/sim/<key>/, keyed by the gateware parameters and a hash of the hdl/ and proto/ sources, so a second
run with the same gateware skips the C++ compile.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..proto import bbo, itch, itch_file, pcap
from . import feed
from .latency import frames_by_line

TOPLEVEL = "feed_handler"
BENCH_MODULE = "wirebook.sim.benches.feed_handler"


@dataclass(frozen=True)
class CardConfig:
    data_width: int = 64
    n_instruments: int = 64
    n_orders: int = 16384
    n_levels: int = 16
    n_lines: int = 2  # 1: line A only (FeedHandler's n_lines)
    n_ways: int = 4
    counters_in_ram: bool = False
    tables_in_block_ram: bool = False
    simulator: str = "verilator"

    def parameters(self) -> dict:
        """FeedHandler's parameters: every field but the simulator."""
        return {name: value for name, value in asdict(self).items() if name != "simulator"}


@dataclass
class CardRun:
    records: np.ndarray  # bbo.DTYPE, in the order the card emitted them
    report: dict  # cycles, stalled_cycles, counters (by register name)
    timing: dict = field(default_factory=dict)  # beats: (cycle, line, last); records: cycle of each record


def build_dir(config: CardConfig, root: str | os.PathLike = "out/sim") -> Path:
    from ..hdl.feed_handler import source_digest

    key = hashlib.sha256(json.dumps([config.parameters(), config.simulator, source_digest()]).encode())
    return Path(root) / f"{config.simulator}-w{config.data_width}-{key.hexdigest()[:12]}"


def feed_locates(pcap_path: str | os.PathLike) -> list[int]:
    """Every instrument's stock locate in a feed pcap, ascending (what a replay subscribes); locate 0 is
    not an instrument (system-wide messages such as S carry it)."""
    seen: set[int] = set()
    reader = feed.read_feed_pcap(pcap_path)
    for _sequence, blob in reader.iter_runs():
        buffer = np.frombuffer(blob, dtype=np.uint8)
        offsets, _types, _ = itch_file.frame(buffer)
        seen.update(np.unique(itch.decode_headers(buffer, offsets)["stock_locate"]).tolist())
    seen.discard(0)
    return sorted(seen)


def split_lines(pcap_path: str | os.PathLike, lines: tuple[feed.Line, ...], out: str | os.PathLike) -> list[Path]:
    """The feed pcap's frames as one pcap per line (by destination group and port), in capture order."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"line_{line.name.lower()}.pcap" for line in lines]
    for path, frames in zip(paths, frames_by_line(pcap_path, [line_group(x) for x in lines])):
        with pcap.PcapWriter(path) as writer:
            for time_ns, frame in frames:
                writer.write(time_ns, frame)
    return paths


def line_group(line: feed.Line) -> dict:
    return {"address": line.group, "port": line.port}


def run_card(
    pcap_path: str | os.PathLike,
    *,
    lines: tuple[feed.Line, ...] = feed.DEFAULT_LINES,
    locates: list[int] | None = None,
    out_root: str | os.PathLike = "out/sim",
    **options,
) -> CardRun:
    """Play a feed pcap through the simulated card, each line's frames into its input; subscribes
    `locates` (default: every instrument in the feed). Options as for `run_card_lines`."""
    if not pcap.is_pcap(Path(pcap_path).read_bytes()[:4]):
        raise ValueError(f"{pcap_path}: the simulated card takes a feed pcap (see `wirebook gen --pcap`)")
    locates = feed_locates(pcap_path) if locates is None else locates
    Path(out_root).mkdir(parents=True, exist_ok=True)
    split = tempfile.mkdtemp(prefix="split-", dir=out_root)
    return run_card_lines(split_lines(pcap_path, lines, split), locates=locates, lines=lines, out_root=out_root,
                          **options)  # fmt: skip


def run_card_lines(
    line_pcaps: list[Path],
    *,
    locates: list[int],
    config: CardConfig | None = None,
    session: str = feed.DEFAULT_SESSION,
    lines: tuple[feed.Line, ...] = feed.DEFAULT_LINES,
    idle: float = 0.0,
    backpressure: float = 0.0,
    seed: int = 1,
    timing: bool = False,
    out_root: str | os.PathLike = "out/sim",
) -> CardRun:
    """Play one pcap per line (any frames: the card filters them) through the simulated card."""
    from ..hdl.feed_handler import write_verilog
    from .cocotb_runner import run

    config = config or CardConfig()
    if len(line_pcaps) > config.n_lines:
        raise ValueError(f"{len(line_pcaps)} line pcaps for a card built with {config.n_lines} feed line(s)")
    if len(locates) > config.n_instruments:
        raise ValueError(
            f"the feed has {len(locates)} instruments but the card has {config.n_instruments} slots: "
            "subscribe fewer (locates=...) or build a larger card (n_instruments)"
        )
    where = build_dir(config, out_root)
    verilog_path = where / f"{TOPLEVEL}.v"
    if not verilog_path.exists():  # the folder's key covers the parameters and every gateware source
        write_verilog(verilog_path, name=TOPLEVEL, **config.parameters())
    out = Path(tempfile.mkdtemp(prefix="run-", dir=where))
    plan = {
        "lines": [str(Path(p).resolve()) for p in line_pcaps],
        "groups": [line_group(line) for line in lines],
        "n_lines": config.n_lines,
        "session": session,
        "locates": locates,
        "idle": idle,
        "backpressure": backpressure,
        "seed": seed,
        "timing": timing,
        "out": str(out.resolve()),
    }
    out.mkdir(parents=True, exist_ok=True)
    plan_path = out / "plan.json"
    plan_path.write_text(json.dumps(plan))
    run([verilog_path], TOPLEVEL, BENCH_MODULE, where, simulator=config.simulator,
        extra_env={"WIREBOOK_BENCH": str(plan_path.resolve())}, seed=seed, test_dir=out)  # fmt: skip
    records = np.frombuffer((out / "records.bin").read_bytes(), dtype=bbo.DTYPE).copy()
    report = json.loads((out / "report.json").read_text())
    timing_log = json.loads((out / "timing.json").read_text()) if timing else {}
    return CardRun(records, report, timing_log)
