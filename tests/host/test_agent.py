"""The agent end to end: exchange simulator -> MoldUDP64 feed on loopback -> model card -> agent -> OUCH.

What the agent did is checked against what the exchange says it did (its sequenced OUCH stream, decoded
here), never against the agent's own figures: every order that reached the exchange kept the risk limits,
the agent's positions equal the exchange's fills, the kill switch leaves nothing open at the exchange, and
a journal recovery rebuilds the same positions.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from wirebook.host.journal import JournalConfig, open_journal, recover
from wirebook.host.run import MainJob
from wirebook.model.replay import replay
from wirebook.proto import bbo, ouch
from wirebook.proto import soupbintcp as soup
from wirebook.sim import market
from wirebook.sim.exchange import DEFAULT_USERNAME

LIMITS = {
    "max_order_shares": 100,
    "max_long_shares": 300,
    "max_short_shares": 300,
    "max_open_orders": 12,
    "max_open_orders_per_instrument": 4,
}


@dataclass
class ExchangeView:
    """The agent's orders and fills as the exchange's own messages tell them."""

    orders: dict[str, dict] = field(default_factory=dict)  # token -> {stock, side, price, shares, open}
    fills: list[tuple[str, str, int, int]] = field(default_factory=list)  # (stock, side, shares, price)
    accepted_tokens: Counter[str] = field(default_factory=Counter)
    entered_shares: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, messages: list[bytes]) -> ExchangeView:
        view = cls()
        for raw in messages:
            m = ouch.decode_outbound(raw)
            t = m.message_type
            if t == "A":
                view.accepted_tokens[m.order_token] += 1
                view.entered_shares.append(m.shares)
                view.orders[m.order_token] = {"stock": m.stock, "side": m.buy_sell_indicator, "open": m.shares}
            elif t == "U":
                old = view.orders[m.previous_order_token]
                old["open"] = 0
                view.accepted_tokens[m.replacement_order_token] += 1
                view.entered_shares.append(m.shares)
                view.orders[m.replacement_order_token] = {"stock": m.stock, "side": old["side"], "open": m.shares}
            elif t == "E":
                order = view.orders[m.order_token]
                order["open"] -= m.executed_shares
                view.fills.append((order["stock"], order["side"], m.executed_shares, m.execution_price))
            elif t in "CD":
                view.orders[m.order_token]["open"] -= m.decrement_shares
        return view

    def open_tokens(self) -> list[str]:
        return [token for token, order in self.orders.items() if order["open"] > 0]

    def positions(self) -> dict[str, int]:
        held: Counter[str] = Counter()
        for stock, side, shares, _ in self.fills:
            held[stock] += shares if side == "B" else -shares
        return {stock: n for stock, n in held.items() if n}

    def worst_position(self) -> int:
        held: Counter[str] = Counter()
        worst = 0
        for stock, side, shares, _ in self.fills:
            held[stock] += shares if side == "B" else -shares
            worst = max(worst, abs(held[stock]))
        return worst


def agent_positions(agent) -> dict[str, int]:
    return {agent.market.symbols[b.locate]: b.position for b in agent.positions.instruments.values() if b.position}


@pytest.fixture
def job(tmp_path):
    made = []

    def make(**options) -> MainJob:
        options.setdefault("symbols", 4)
        options.setdefault("messages", 12_000)
        options.setdefault("seed", 7)
        options.setdefault("rate", "6000")
        made.append(MainJob(workdir=tmp_path, **options))
        return made[-1]

    yield make
    for j in made:
        if j.exchange._thread is not None:
            j.close()


def test_the_orders_of_one_batch_leave_in_one_write(job):
    j = job(overrides={"risk": LIMITS, "strategy": {"size": 100}})
    session = j.agent.session
    writes: list[bytes] = []
    write = session._write
    session._write = lambda data, now: (writes.append(bytes(data)), write(data, now))
    j.run(seconds=2.0)
    framer = soup.SoupBinTCPFramer(soup.Sender.CLIENT)
    orders_per_write = [sum(p.packet_type == "U" for p in framer.feed(data)) for data in writes]
    sent = j.agent.metrics.orders_sent
    assert sum(orders_per_write) == sum(sent.values())  # every order went out, none twice
    assert max(orders_per_write) >= 2  # two-sided requotes: both sides in one write
    m = j.agent.metrics
    assert m.tick_to_order.count == m.tick_to_sent.count > 0


def test_trades_within_limits_and_agrees_with_the_exchange(job, tmp_path):
    j = job(overrides={"risk": LIMITS, "strategy": {"size": 100}})
    j.run(seconds=4.0)
    agent = j.agent
    assert agent.metrics.orders_sent["new"] > 0 and agent.metrics.fills > 0
    before = ExchangeView.of(j.exchange.sequenced_messages(DEFAULT_USERNAME))
    assert agent_positions(agent) == before.positions()
    summary = j.close()
    view = ExchangeView.of(j.exchange.sequenced_messages(DEFAULT_USERNAME))
    # Nothing that reached the exchange broke a limit.
    assert max(view.entered_shares) <= LIMITS["max_order_shares"]
    assert view.worst_position() <= LIMITS["max_long_shares"]
    assert all(n == 1 for n in view.accepted_tokens.values())  # no token used twice
    # Shutdown canceled every quote, and the agent's books match the exchange's.
    assert view.open_tokens() == []
    assert summary["fills"] == len(view.fills)
    assert summary["gateway_anomalies"] == {}
    assert summary["card"]["gaps"] == 0
    # The journal alone rebuilds the same positions, with nothing open.
    with open_journal(JournalConfig(path=tmp_path / "journal.sqlite3")) as journal:
        recovered = recover(journal)
    assert recovered.orders.open_count == 0
    rebuilt = recovered.positions()
    symbols = agent.market.symbols
    assert {symbols[b.locate]: b.position for b in rebuilt.instruments.values() if b.position} == view.positions()
    assert summary["tick_to_order_us"]["p50"] is not None


@pytest.mark.parametrize("card", ["model", "sim"])
def test_the_agent_on_each_card_consumes_the_golden_records_and_agrees_with_the_exchange(job, card, tmp_path):
    """The same market through the golden model and through the gateware (Verilator): the agent consumes
    exactly the records of the golden model's replay of the day, and its positions are the exchange's fills."""
    day = tmp_path / "day.itch"
    market.write_itch(day, symbols=4, messages=12_000, seed=23)
    expected = replay(day)
    j = job(card=card, overrides={"risk": LIMITS, "strategy": {"size": 100}}, seed=23)
    digest = bbo.Digest()
    poll = j.card.poll

    def recording_poll():
        records = poll()
        digest.update(records)
        return records

    j.card.poll = recording_poll
    j.run(seconds=8.0)
    summary = j.close()
    view = ExchangeView.of(j.exchange.sequenced_messages(DEFAULT_USERNAME))
    assert summary["card"]["kind"] == card and summary["card"]["end_of_session"]
    assert (digest.count, digest.hexdigest()) == (expected.bbo_updates, expected.bbo_sha256)
    assert agent_positions(j.agent) == view.positions()
    assert view.open_tokens() == []
    assert summary["orders_sent"] and summary["fills"]


def test_kill_switch_from_the_control_api_cancels_everything(job):
    j = job(overrides={"strategy": {"size": 100}})
    token, port = j.config.control.token, j.agent.control.port
    answers = []

    def operator() -> None:
        threading.Event().wait(1.5)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/kill", body=json.dumps({"reason": "drill"}),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
        response = conn.getresponse()
        answers.append((response.status, json.loads(response.read())))

    thread = threading.Thread(target=operator)
    thread.start()
    j.run(seconds=3.0)
    thread.join()
    assert answers == [(200, {"kill_switch": True, "reason": "operator: drill"})]
    view = ExchangeView.of(j.exchange.sequenced_messages(DEFAULT_USERNAME))
    assert len(view.orders) > 0  # it quoted before the kill
    assert view.open_tokens() == []  # and nothing is open at the exchange after it, before any shutdown
    assert j.agent.risk.rejects  # later quotes were refused (KILL_SWITCH)
    assert j.agent.status()["kill_switch"] is True


def test_shutdown_waits_for_the_cancels_at_most_its_timeout_and_says_what_is_left_open(job, caplog):
    j = job(overrides={"strategy": {"size": 100}, "agent": {"shutdown_timeout_s": 0.5}})
    j.run(seconds=2.0)
    resting = j.agent.orders.open_count
    assert resting > 0
    j.agent.gateway.poll = lambda now_ns: []  # the exchange's answers never reach the agent
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="wirebook.host.agent"):
        j.close()
    waited = time.monotonic() - started
    assert 0.5 <= waited < 5.0
    assert j.agent.orders.open_count == resting  # nothing confirmed, so nothing is taken as canceled
    assert f"shutting down with {resting} orders still open" in caplog.text
    assert "within 0.5 s" in caplog.text


def test_wirebook_run_json_prints_the_summary(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "wirebook", "run", "--seconds", "3", "--symbols", "3", "--messages", "6000",
         "--rate", "4000", "--workdir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    summary = json.loads(out)
    for key in ("orders_sent", "fills", "risk_rejects", "kill_switch", "position", "pnl", "tick_to_order_us"):
        assert key in summary, key
    assert summary["orders_sent"] > 0 and summary["instruments"] == 3
    assert set(summary["tick_to_order_us"]) == {"p50", "p99", "p99.9"}
    assert summary["kill_switch"] == {"engaged": False, "reason": ""}


def test_live_view_shows_market_quotes_and_risk_state(job):
    from rich.console import Console

    from wirebook.host.dashboard import Dashboard

    j = job(messages=6_000)
    j.run(seconds=1.5)
    console = Console(record=True, width=160)
    console.print(Dashboard(j.agent).render())
    text = console.export_text()
    for symbol in j.agent.traded.values():
        assert symbol in text
    for label in ("our bid", "kill switch", "tick-to-order", "risk rejects", "open orders"):
        assert label in text


def test_prometheus_metrics_match_the_runs_counts(job):
    from prometheus_client.parser import text_string_to_metric_families

    j = job(messages=6_000)
    j.run(seconds=1.5)
    families = {f.name: f for f in text_string_to_metric_families(j.agent.metrics_text().decode())}
    sent = {s.labels["kind"]: s.value for s in families["wirebook_orders_sent"].samples}
    assert sent == {kind: float(n) for kind, n in j.agent.metrics.orders_sent.items()} and sum(sent.values()) > 0
    histogram = {s.name: s for s in families["wirebook_tick_to_order_seconds"].samples}
    assert histogram["wirebook_tick_to_order_seconds_count"].value == j.agent.metrics.tick_to_order.count
    assert families["wirebook_bbo_updates"].samples[0].value == j.card.model.updates  # every record the card made
    assert families["wirebook_open_orders"].samples[0].value == j.agent.orders.open_count
