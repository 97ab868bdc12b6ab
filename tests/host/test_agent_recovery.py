"""`wirebook agent` as a process: kill -9 mid-run, restart, recover from the journal, reconcile, shut down clean.

The exchange simulator runs in the test; the agent is the real command (`python -m wirebook agent`) with a
config file, receiving the feed on a loopback UDP port. After SIGKILL the restarted agent recovers open
orders and fills from the journal, resumes the OUCH session after the last sequence it journaled (so every
answer it missed is replayed), adopts any order of ours the journal lost, and on SIGTERM cancels everything
and exits 0. The exchange's own messages are the reference, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from test_agent import ExchangeView

from wirebook.host.journal import open_journal, recover
from wirebook.sim.exchange import DEFAULT_PASSWORD, DEFAULT_USERNAME, ExchangeConfig, ExchangeSimulator

TOKEN = "recovery-test-token-0123456789"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, ouch_port: int, feed_port: int, journal: dict) -> None:
    journal_lines = "\n".join(f"{k} = {json.dumps(str(v))}" for k, v in journal.items())
    path.write_text(f"""
[agent]
instruments = ["*"]
busy_poll = false
idle_sleep_us = 100
requote_interval_ms = 50
shutdown_timeout_s = 60  # a loaded CI machine can be slow to answer; the test checks nothing is left open
[feed]
address = "127.0.0.1"
port = {feed_port}
[strategy]
size = 100
[session]
port = {ouch_port}
username = "{DEFAULT_USERNAME}"
password = "{DEFAULT_PASSWORD}"
heartbeat_timeout_s = 3.0
[journal]
{journal_lines}
[control]
port = 0
token = "{TOKEN}"
[publish]
endpoint = ""
""")


def start_agent(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "wirebook", "agent", "--config", str(config), "--log-level", "WARNING", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_kill_9_restart_recovers_and_reconciles(tmp_path, journal_backend):
    journal_config = journal_backend.config.model_dump(include={"backend", "path", "conninfo"})
    feed_port = free_udp_port()
    # The test paces the feed itself (step mode): an agent process takes a moment to start, and a card that
    # joins after the stock directory has gone by has no symbols to quote.
    market = {"symbols": 4, "messages": 60_000, "seed": 11, "rate": "step"}
    exchange = ExchangeSimulator(ExchangeConfig(ouch_port=0, feed_address=("127.0.0.1", feed_port), **market)).start()

    def publish_until(condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            exchange.advance(100)  # 100 messages every 20 ms: 5,000 messages a second
            time.sleep(0.02)

    config = tmp_path / "agent.toml"
    write_config(config, exchange.ouch_port, feed_port, journal_config)
    first = second = None
    try:
        first = start_agent(config, "--cpu", "0")
        wait_for(lambda: exchange.logged_in(DEFAULT_USERNAME), 30, "the first agent to log in")
        assert os.sched_getaffinity(first.pid) == {0}  # pinned as asked

        def traded() -> bool:
            view = ExchangeView.of(exchange.sequenced_messages(DEFAULT_USERNAME))
            return len(view.fills) >= 2 and len(view.open_tokens()) >= 2

        publish_until(traded, 40, "the first agent to trade and rest quotes")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = ExchangeView.of(exchange.sequenced_messages(DEFAULT_USERNAME))
        assert at_kill.open_tokens(), "quotes rest at the exchange when the agent dies"

        exchange.advance(2_000)  # the market moves on while the agent is down
        second = start_agent(config, "--json")
        wait_for(lambda: exchange.logged_in(DEFAULT_USERNAME), 30, "the second agent to log in")
        deadline = time.monotonic() + 2.0  # replay what was missed, settle, feed on
        publish_until(lambda: time.monotonic() > deadline, 10, "two seconds")
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=90)
        assert second.returncode == 0, err[-3000:]
        summary = json.loads(out)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
        exchange.stop()
    view = ExchangeView.of(exchange.sequenced_messages(DEFAULT_USERNAME))
    # Everything the dead agent left resting was canceled by the restarted one: nothing is open.
    assert view.open_tokens() == []
    assert all(n == 1 for n in view.accepted_tokens.values()), "a token was used twice"
    assert summary["kill_switch"]["engaged"] is False
    # The journal (written by both processes) gives the exchange's positions.
    with open_journal(journal_backend.config) as journal:
        recovered = recover(journal)
    assert recovered.orders.open_count == 0
    symbol_of = {locate: symbol for symbol, locate in exchange.engine.locates.items()}
    rebuilt = recovered.positions()
    assert {symbol_of[b.locate]: b.position for b in rebuilt.instruments.values() if b.position} == view.positions()
