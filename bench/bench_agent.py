"""Tick-to-order inside the host: from a BBO record in hand to the OUCH bytes handed to the socket, risk on.

The agent runs in this process exactly as `wirebook agent` runs it (Agent.step: market view, strategy, quote
manager, risk engine, gateway, journal), fed one BBO update record per step from the golden model's records
of a generated market (at least 100k updates). The exchange simulator runs in its own process
(`wirebook exchange`), as the exchange does in production, so it takes none of the agent's interpreter
time. Risk limits are the defaults but for the order and message rates, raised so that every requote the
strategy wants goes out (the throttles would otherwise refuse most of them and leave little to measure).

Measured: tick-to-order per order sent (a NEW, REPLACE or CANCEL caused by a record) to the moment its
batch's bytes are handed to the socket (metrics.tick_to_order: the write is called) and to the write's
return (metrics.tick_to_sent), the write alone, and the risk check alone per check (metrics.risk_check).
Targets in CPython: tick-to-order p50 <= 10 us, p99 <= 25 us; the risk check p99 <= 3 us.
Run: .venv/bin/python bench/bench_agent.py  (or `make bench`)

`--stages` times each stage of the path instead (a timer around each call, which adds about 0.1 us to each
and so is a separate run) and records where the time goes in bench/results/agent_stages.md.
"""

from __future__ import annotations

import argparse
import gc
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, generated_file, record

from wirebook.host.agent import Agent
from wirebook.host.run import run_config
from wirebook.model.book import BookModel
from wirebook.proto import itch_file


class ReplayCard:
    """A card that hands the agent one prepared BBO record per poll."""

    def __init__(self, records: np.ndarray, symbols: dict[int, str]) -> None:
        self.records = records
        self.symbols = symbols
        self.gap = False
        self.at = 0

    def poll(self) -> np.ndarray:
        at = self.at
        self.at = at + 1
        return self.records[at : at + 1]


def model_records(path: Path) -> tuple[np.ndarray, dict[int, str]]:
    model = BookModel()
    chunk = itch_file.read_all(path)
    return model.apply_chunk(chunk, 1), model.symbols


STAGES = [
    # (label, attribute of the agent, method): in the order a record flows; a write counts only when it wrote
    ("market view update (per batch)", "market", "update"),
    ("strategy: desired quote", "strategy", "desired"),
    ("quote manager: requests", "quoter", "requests"),
    ("gateway submit, all of it (per request)", "gateway", "submit"),
    ("  risk check", "risk", "check"),
    ("  order state: NEW sent", "orders", "sent_new"),
    ("  order state: REPLACE sent", "orders", "sent_replace"),
    ("  OUCH encode: Enter Order", "gateway", "_enter"),
    ("  OUCH encode: Replace Order", "gateway", "_replace"),
    ("  journal: order_sent", "journal", "order_sent"),
    ("  journal: replace_sent", "journal", "replace_sent"),
    ("  session: frame and hold", "session", "send"),
    ("the batch's write (send())", "session", "release"),
    ("exchange poll (recv(), per step)", "gateway", "poll"),
]


def time_stages(agent: Agent) -> dict[str, list[int]]:
    """Wrap each stage's method with a timer; the samples (ns) by label."""
    samples: dict[str, list[int]] = {}
    clock = time.perf_counter_ns
    for label, owner, method in STAGES:
        target = getattr(agent, owner)
        inner = getattr(target, method)
        kept = samples[label] = []

        def timed(*args, _inner=inner, _kept=kept, _any=method != "release"):
            started = clock()
            result = _inner(*args)
            if _any or result:
                _kept.append(clock() - started)
            return result

        setattr(target, method, timed)
    return samples


def record_stages(samples: dict[str, list[int]], args: argparse.Namespace, updates: int) -> str:
    rows = []
    for label, values in samples.items():
        if not values:
            continue
        us = np.array(values) / 1e3
        p50, p99 = np.percentile(us, [50, 99])
        rows.append([label, f"{len(us):,}", f"{p50:.2f}", f"{p99:.2f}", f"{us.mean():.2f}"])
    return record(
        "agent_stages",
        f"Host agent: where tick-to-order goes, stage by stage ({updates:,} BBO updates, {args.symbols} symbols, "
        f"seed {args.seed})",
        ".venv/bin/python bench/bench_agent.py --stages",
        ["stage (a call)", "calls", "p50 us", "p99 us", "mean us"],
        rows,
        notes="Each stage's method timed in the loop of the tick-to-order benchmark (bench/results/agent.md), one "
        "sample per call; indented rows are inside the gateway's submit. The timer around each call adds about 0.1 "
        "us. The exchange simulator runs in its own process.",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=300_000, help="ITCH messages of the market (default 300000)")
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--updates", type=int, default=100_000, help="BBO records fed to the agent (default 100000)")
    p.add_argument("--stages", action="store_true", help="time each stage instead (bench/results/agent_stages.md)")
    args = p.parse_args()
    path = generated_file(args.symbols, args.messages, args.seed)
    records, symbols = model_records(path)
    if len(records) < args.updates:
        raise SystemExit(f"the market gives {len(records)} BBO records, fewer than --updates {args.updates}")
    records = records[: args.updates].copy()
    now = time.monotonic_ns()

    port = free_port()
    exchange = subprocess.Popen(
        [sys.executable, "-m", "wirebook", "exchange", "--ouch-port", str(port), "--itch", str(path), "--rate", "max",
         "--feed-address", f"127.0.0.1:{free_port()}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    exchange.stdout.readline()  # its start line: listening
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {
            "risk": {"orders_per_second": 1e9, "order_burst": 1_000_000, "messages_per_second": 1e9,
                     "message_burst": 1_000_000, "max_data_age_ms": 10**9, "max_fills": 1_000_000},
            "strategy": {"stale_after_ms": 10**9},
        }  # fmt: skip
        config = run_config(port, Path(tmp), overrides)
        card = ReplayCard(records, symbols)
        agent = Agent(config, card, publish=False, control=False)
        agent.start()
        try:
            deadline = time.monotonic() + 10
            while not agent.session.logged_in:
                agent.step(time.monotonic_ns())
                if time.monotonic() > deadline:
                    raise SystemExit(f"could not log in to the exchange simulator on port {port}")
            sends: list[int] = []  # the session's write, a send() system call: what no Python code can shorten
            session_write = agent.session._write

            def timed_write(data: bytes, now: float) -> None:
                started = time.perf_counter_ns()
                session_write(data, now)
                sends.append(time.perf_counter_ns() - started)

            agent.session._write = timed_write
            stages = time_stages(agent) if args.stages else {}
            gc.collect()
            gc.freeze()  # what a deployed agent does after start-up: no collector pass over start-up objects
            started = time.perf_counter()
            for _ in range(len(records)):
                agent.step(time.monotonic_ns())
            elapsed = time.perf_counter() - started
            summary = agent.summary()
        finally:
            agent.shutdown()
            exchange.terminate()
            exchange.wait(10)
    if args.stages:
        print(record_stages(stages, args, len(records)))
        return 0
    m = agent.metrics
    t2o = m.tick_to_order.percentiles_us(50, 99, 99.9)
    t2s = m.tick_to_sent.percentiles_us(50, 99, 99.9)
    risk = m.risk_check.percentiles_us(50, 99, 99.9)
    send_us = np.percentile(np.array(sends) / 1e3, [50, 99, 99.9]) if sends else [float("nan")] * 3
    rows = [
        ["tick-to-order (record in hand -> OUCH bytes handed to the socket)", f"{m.tick_to_order.count:,}",
         f"{t2o['p50']:.1f}", f"{t2o['p99']:.1f}", f"{t2o['p99.9']:.1f}", "p50 <= 10, p99 <= 25"],
        ["tick-to-sent (record in hand -> the socket write returned)", f"{m.tick_to_sent.count:,}",
         f"{t2s['p50']:.1f}", f"{t2s['p99']:.1f}", f"{t2s['p99.9']:.1f}", "-"],
        ["risk check alone", f"{m.risk_check.count:,}", f"{risk['p50']:.2f}", f"{risk['p99']:.2f}",
         f"{risk['p99.9']:.2f}", "p99 <= 3"],
        ["the session's write (one send() system call per batch)", f"{len(sends):,}", f"{send_us[0]:.1f}",
         f"{send_us[1]:.1f}", f"{send_us[2]:.1f}", "-"],
    ]  # fmt: skip
    met_t2o = t2o["p50"] <= 10 and t2o["p99"] <= 25
    met_risk = risk["p99"] <= 3
    text = record(
        "agent",
        f"Host agent: tick-to-order over {len(records):,} BBO updates ({args.symbols} symbols, seed {args.seed})",
        ".venv/bin/python bench/bench_agent.py",
        ["what", "samples", "p50 us", "p99 us", "p99.9 us", "target us"],
        rows,
        notes="Tick-to-order has one sample per request a record caused. The orders one record causes (often "
        "both sides) leave in one write, so each of them counts both requests' paths (risk, journal, encode). "
        f"{len(records):,} records in {elapsed:.2f} s ({len(records) / elapsed / 1e3:.0f}k records/s through the "
        f"whole loop); orders sent {summary['orders_by_kind']}, fills {summary['fills']}, risk rejects "
        f"{summary['risk_rejects'] or 'none'}. Exchange: `wirebook exchange` in its own process on loopback. "
        f"Tick-to-order target {'met' if met_t2o else 'NOT met'}; risk check target {'met' if met_risk else 'NOT met'}."
        f" Setup took {(time.monotonic_ns() - now) / 1e9:.0f} s.",
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
