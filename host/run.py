"""The main job: an exchange simulator, its feed, a card and the agent.

`run_main(...)` starts the exchange simulator (sim/exchange.py: OUCH 4.2 over SoupBinTCP on a loopback
port, the generated market published as MoldUDP64 to a loopback UDP port), the card the feed goes to in
look-aside mode (driver/card.py: the host receives the feed on a socket and hands the frames to the card;
`card="sim"`, the default of `wirebook run`, is the gateware's Verilog in Verilator, `card="model"` the
golden model) and the agent quoting every instrument of the market, for `seconds` (or until the market
ends). With a terminal it shows a live view (rich): the BBO of a
few instruments, our quotes, positions, P&L, risk state and rejections; it ends with the summary that
`--json` prints as one object (Agent.summary, plus the exchange's and the card's counts).

Everything listens on 127.0.0.1 and on ports the kernel picks, so runs never collide; the journal is a
fresh SQLite file in `workdir`.
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..driver.card import Card, CardSetup, open_card
from ..driver.feed_input import SocketFeed
from ..sim.exchange import DEFAULT_PASSWORD, DEFAULT_USERNAME, ExchangeConfig, ExchangeSimulator
from .agent import Agent
from .config import AgentConfig, parse_config

__all__ = ["MainJob", "run_main"]


def run_config(ouch_port: int, workdir: Path, overrides: dict[str, Any] | None = None) -> AgentConfig:
    data: dict[str, Any] = {
        "agent": {"instruments": ["*"], "busy_poll": True, "requote_interval_ms": 50},
        "session": {"port": ouch_port, "username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD},
        "journal": {"backend": "sqlite", "path": str(workdir / "journal.sqlite3")},
        "control": {"port": 0, "token": secrets.token_hex(16)},
        "publish": {"endpoint": "tcp://127.0.0.1:*"},
    }
    for section, values in (overrides or {}).items():
        data[section] = {**data.get(section, {}), **values}
    return parse_config(data, "wirebook run")


class MainJob:
    """The exchange simulator, the feed, the card and the agent, wired together; `run` steps the agent.

    With `separate_exchange` the simulator runs as its own process (`wirebook exchange`), as an exchange does:
    it then takes none of the agent's interpreter time, so the latencies the summary reports are the agent's
    own. In-process (the default, for tests) `exchange` is the ExchangeSimulator, open to inspection.
    """

    def __init__(
        self,
        *,
        symbols: int = 20,
        messages: int = 200_000,
        seed: int = 1,
        rate: str = "20000",
        workdir: str | Path = "out/run",
        overrides: dict[str, Any] | None = None,
        exchange_options: dict[str, Any] | None = None,
        ouch_port: int = 0,
        separate_exchange: bool = False,
        card: str = "model",
        card_options: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for stale in self.workdir.glob("journal.sqlite3*"):
            stale.unlink()
        self.feed = SocketFeed("127.0.0.1", 0)
        try:
            self.card: Card = open_card(card, CardSetup(groups=[self.feed.destination]), **(card_options or {}))
        except BaseException:
            self.feed.close()
            raise
        self.exchange: ExchangeSimulator | None = None
        self.exchange_process: subprocess.Popen | None = None
        if separate_exchange:
            self.exchange_process = subprocess.Popen(
                [sys.executable, "-m", "wirebook", "exchange", "--ouch-port", str(ouch_port), "--feed-address",
                 f"127.0.0.1:{self.feed.port}", "--symbols", str(symbols), "--messages", str(messages), "--seed",
                 str(seed), "--rate", rate],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            line = self.exchange_process.stdout.readline()
            listening = re.search(r" on [\d.]+:(\d+) ", line)
            if listening is None:
                self.exchange_process.kill()
                self.feed.close()
                self.card.close()
                raise RuntimeError(f"the exchange simulator did not start: {line.strip()!r}")
            ouch_port = int(listening.group(1))
        else:
            self.exchange = ExchangeSimulator(
                ExchangeConfig(
                    ouch_port=ouch_port, feed_address=("127.0.0.1", self.feed.port), symbols=symbols,
                    messages=messages, seed=seed, rate=rate, **(exchange_options or {}),
                )
            ).start()  # fmt: skip
            ouch_port = self.exchange.ouch_port
        try:
            self.config = run_config(ouch_port, self.workdir, overrides)
            self.agent = Agent(self.config, self.card, receive=lambda: self.feed.receive(self.card))
            self.agent.start()
        except BaseException:
            self._stop_exchange()
            self.feed.close()
            self.card.close()
            raise

    def run(self, seconds: float, refresh: Callable[[], None] | None = None) -> None:
        """Step the agent until `seconds` pass, or the market has ended and nothing is left to do."""
        agent, card = self.agent, self.card
        clock = agent.clock
        deadline = clock() + int(seconds * 1e9)
        next_view = 0
        while (now := clock()) < deadline:
            busy = agent.step(now)
            if not busy and card.feed_state().end_of_session:
                break
            if refresh is not None and now >= next_view:
                refresh()
                next_view = now + 250_000_000
        settle = clock() + 200_000_000  # a moment for the last answers before shutdown cancels what rests
        while (now := clock()) < settle:
            agent.step(now)
            time.sleep(0.0005)

    def close(self) -> dict[str, Any]:
        """Shut the agent down (its quotes canceled), stop the exchange; returns the run's summary."""
        summary = self.agent.summary()
        try:
            self.agent.shutdown()
        finally:
            self._stop_exchange()
            self.feed.close()
            state = self.card.feed_state()
            self.card.close()
        summary["card"] = {"kind": self.card.kind, "messages": state.messages, "gaps": state.gaps,
                           "duplicates": state.duplicates, "end_of_session": state.end_of_session}  # fmt: skip
        summary["instruments"] = len(self.agent.traded)
        return summary

    def _stop_exchange(self) -> None:
        if self.exchange is not None:
            self.exchange.stop()
        if self.exchange_process is not None:
            self.exchange_process.send_signal(signal.SIGINT)  # ends its day cleanly (End of Session)
            try:
                self.exchange_process.wait(10)
            except subprocess.TimeoutExpired:
                self.exchange_process.kill()
                self.exchange_process.wait()


def run_main(*, seconds: float, live: bool = False, **options: Any) -> dict[str, Any]:
    """Run the main job for `seconds` (see MainJob for the options); returns the summary."""
    job = MainJob(separate_exchange=True, **options)
    try:
        if live:
            from .dashboard import Dashboard

            with Dashboard(job.agent) as dashboard:
                job.run(seconds, dashboard.refresh)
        else:
            job.run(seconds)
    finally:
        summary = job.close()
    return summary
