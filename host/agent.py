"""The agent: one process, one loop, in the order the data flows.

    card batch -> MarketView -> strategy -> quote manager -> risk engine -> OUCH gateway -> exchange
    exchange -> gateway events -> positions, risk (fill rate, loss), journal

`Agent.step(now_ns)` is one iteration: receive the feed into the card, take the card's BBO records, requote
every traded instrument whose top changed (each request through `gateway.submit`, which asks the risk engine
first: nothing reaches the socket around it), apply what the exchange sent, run the timers (a periodic
requote of every instrument, for quote age and staleness; the loss check) and the control API's queued
calls. `run()` repeats it, busy-polling (or sleeping `idle_sleep_us` when idle), until `stop()`, SIGINT or
SIGTERM; then `shutdown()` cancels every open quote, waits (bounded) for the exchange to confirm, flushes
the journal and logs out.

Start-up recovers from the journal (host/journal.py): open orders, fills (so positions), the last exchange
sequence (the session resumes after it, so every answer missed while down is replayed and applied), the
next order token (moved RESTART_TOKEN_GAP further: a token sent just before a crash may be missing from the
journal) and the kill switch's latch. Orders sent but never answered are settled once the replay has caught
up; an order of ours the exchange replays that the journal never saw is adopted and canceled (gateway).

The journal holds every order event, risk decision and fill: a refusal is journaled as a risk decision (with
its reason and the limit's words), an acceptance as the order_sent / replace_sent / cancel_sent event the
gateway journals right after it, before the bytes go out.

The session holds the packets one batch of records (or of exchange events, or the timers) causes and
writes them with one system call at the end: a two-sided requote leaves as one TCP segment. Tick-to-order
latency is measured per order from the moment its batch of records is in hand to the moment the batch's
bytes are handed to the socket (`metrics.tick_to_order`, taken before the write) and to the write's return
(`metrics.tick_to_sent`); the risk check alone in `metrics.risk_check`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .config import AgentConfig
from .control import CommandQueue, ControlServer
from .gateway import Fill, OrderGateway, OrderUpdate, Reject, SubmitResult
from .journal import Journal, open_journal, recover
from .market import MarketView
from .metrics import AgentMetrics
from .orders import OrderRequest, OwnOrders, RequestKind
from .positions import DOLLAR
from .publisher import Publisher
from .quoter import QuoteManager
from .risk import RiskDecision, RiskEngine
from .session import SessionNotLoggedInError, SoupSession
from .strategy import MarketMaker, Strategy
from .validated import validate_section

__all__ = ["Agent", "Card"]

log = logging.getLogger(__name__)

MS = 1_000_000
ALL_INSTRUMENTS = "*"
RESTART_TOKEN_GAP = 10_000
GIL_SWITCH_INTERVAL_S = 50e-6
DONE_ORDERS_KEPT = 100_000  # finished orders kept in memory; the journal has every one


class Card(Protocol):
    """What the agent needs of a card (wirebook.driver): BBO batches, the stock directory, the feed's state."""

    symbols: dict[int, str]
    gap: bool

    def poll(self) -> np.ndarray: ...  # BBO records (proto.bbo.DTYPE) since the last poll


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        card: Card,
        *,
        receive: Callable[[], Any] | None = None,
        strategy: Strategy | None = None,
        journal: Journal | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        publish: bool = True,
        control: bool = True,
    ) -> None:
        self.config = config
        self.card = card
        self.receive = receive or (lambda: None)  # pulls the feed into the card (e.g. UdpFeed.receive)
        self.clock = clock
        self.metrics = AgentMetrics()
        self.journal = journal or open_journal(config.journal)
        recovered = recover(self.journal)
        self.recovered = recovered
        self.market = MarketView()
        self.orders: OwnOrders = recovered.orders
        self.positions = recovered.positions(self.market)
        self.strategy = strategy or MarketMaker(config.strategy)
        self.quoter = QuoteManager(self.orders, config.strategy)
        self.risk = RiskEngine(
            config.risk, self.orders, self.positions, self.market, on_decision=self._on_decision, on_kill=self._on_kill
        )
        if recovered.kill_switch_engaged:  # the latch survives a restart
            self.risk.kill(recovered.kill_switch_reason or "engaged before restart")
        session_config = config.session
        if recovered.last_sequence and not session_config.session and recovered.session:
            session_config = session_config.model_copy(update={"session": recovered.session})
        self.session = SoupSession(session_config, next_sequence=recovered.last_sequence + 1)
        tokens = recovered.token_allocator(config.agent.token_prefix)
        if recovered.last_event_id:
            # Tokens sent in the instant before a crash may not have reached the journal: skip well past them,
            # so a new order never reuses one (the exchange ignores a repeated token).
            tokens.next_number += RESTART_TOKEN_GAP
        self.gateway = OrderGateway(
            self.session, self.orders, tokens,
            _TimedRisk(self.risk, self.metrics, clock), {},
            config=config.gateway, journal=self.journal,
        )  # fmt: skip
        m = self.metrics
        m.gateway_anomalies = self.gateway.anomalies  # the gateway's own counter, read at each scrape
        m.gauges["wirebook_open_orders"] = lambda: self.orders.open_count
        m.gauges["wirebook_kill_switch"] = lambda: float(self.risk.killed)
        m.gauges["wirebook_pnl_dollars"] = lambda: self.positions.total_pnl() / DOLLAR
        self.publisher = Publisher(config.publish) if publish and config.publish.endpoint else None
        self.commands = CommandQueue()
        self.control = (
            ControlServer(self, self.commands, config.control) if control and config.control.enabled else None
        )
        self.traded: dict[int, str] = {}  # locate -> symbol of the instruments we quote
        self._wanted = set(config.agent.instruments)
        self._symbols_seen = 0
        self._settled = not recovered.orders.open_count
        self._next_requote = 0
        self._running = False
        self._closing = False  # shutdown: no more quotes, only cancels
        self._cancel_all_pending = False
        self._tick_orders = 0  # orders a batch of records caused (their bytes leave together)
        self.started_ns = clock()

    # --- the loop --------------------------------------------------------------------------------------------

    def step(self, now_ns: int) -> bool:
        """One iteration; True when it did any work (records, exchange messages, timers or control calls)."""
        self.receive()
        records = self.card.poll()
        busy = bool(len(records))
        if busy:
            self._on_records(records, now_ns)
        events = self.gateway.poll(now_ns)
        if events:
            busy = True
            self.session.hold()
            try:
                for event in events:
                    self._on_event(event, now_ns)
                if self.risk.killed or self._closing:
                    self._cancel_all(now_ns)  # e.g. a replacement the exchange made live while our cancel flew
            finally:
                self.session.release()
        elif self.session.logged_in and not self._settled:
            self._settle(now_ns)
        if now_ns >= self._next_requote:
            self._next_requote = now_ns + self.config.agent.requote_interval_ms * MS
            self.session.hold()
            try:
                self._timers(now_ns)
            finally:
                self.session.release()
        if self.commands.run_pending():
            busy = True
        return busy

    def _on_records(self, records: np.ndarray, now_ns: int) -> None:
        tick_ns = self.clock()  # the batch is in hand: tick-to-order counts from here
        self.metrics.bbo_updates += len(records)
        touched = self.market.update(records, now_ns)
        if self.card.gap:
            self.market.mark_gap(now_ns)
        if self.publisher is not None:
            self.publisher.bbo(records)
        if len(self.card.symbols) != self._symbols_seen:
            self._learn_symbols()
        if not self.session.logged_in:
            return
        traded = self.traded
        session = self.session
        self._tick_orders = 0
        session.hold()  # the batch's orders leave in one write
        try:
            for locate in touched:
                if locate in traded:
                    self._quote(locate, now_ns, tick_ns)
        finally:
            handed_ns = self.clock()
            session.release()
        if self._tick_orders:
            sent_ns = self.clock()
            metrics = self.metrics
            for _ in range(self._tick_orders):
                metrics.tick_to_order.observe_ns(handed_ns - tick_ns)
                metrics.tick_to_sent.observe_ns(sent_ns - tick_ns)

    def _quote(self, locate: int, now_ns: int, tick_ns: int = 0) -> None:
        """Requote one instrument; `tick_ns`: the clock when the BBO that caused it was in hand (0: a timer or an
        exchange event caused it, not a tick)."""
        if self._closing:
            return
        quote = self.strategy.desired(locate, self.market, self.positions.position(locate), now_ns)
        for request in self.quoter.requests(locate, quote, now_ns):
            self._submit(request, now_ns, tick_ns)

    def _submit(self, request: OrderRequest, now_ns: int, tick_ns: int = 0) -> SubmitResult | None:
        try:
            result = self.gateway.submit(request, now_ns)
        except SessionNotLoggedInError:
            return None
        if not result.decision.accepted:
            self.quoter.refused(request, now_ns)
        else:
            if tick_ns:
                self._tick_orders += 1
            self.metrics.orders_sent[request.kind.value] += 1
            if request.kind is not RequestKind.CANCEL:
                self.quoter.placed(result.token, now_ns)
            if self.publisher is not None:
                self.publisher.quote(request, self.traded.get(request.locate, ""), result.token)
        return result

    def _on_event(self, event: Any, now_ns: int) -> None:
        if isinstance(event, Fill):
            self.positions.on_fill(event.locate, event.side, event.shares, event.price)
            self.metrics.fills += 1
            self.metrics.filled_shares += event.shares
            self.risk.on_fill(now_ns)
            self._quote_if_traded(event.locate, now_ns)
        elif isinstance(event, OrderUpdate):
            order = self.orders.get(event.token)
            if not order.is_open:
                self.quoter.forget(event.token)
            self._quote_if_traded(order.locate, now_ns)
        elif isinstance(event, Reject):
            self.quoter.forget(event.token)

    def _quote_if_traded(self, locate: int, now_ns: int) -> None:
        if locate in self.traded and self.session.logged_in:
            self._quote(locate, now_ns)

    def _timers(self, now_ns: int) -> None:
        self.orders.prune(DONE_ORDERS_KEPT)
        if self.market.gap and not self.card.gap:
            self.market.clear_gap()
        self.risk.evaluate_loss()
        if self._cancel_all_pending and self.session.logged_in:
            self._cancel_all_pending = False
            self._cancel_all(now_ns)
        if self.session.logged_in and not self.risk.killed:
            for locate in list(self.traded):
                self._quote(locate, now_ns)

    def _learn_symbols(self) -> None:
        symbols = self.card.symbols
        self._symbols_seen = len(symbols)
        for locate, symbol in symbols.items():
            self.market.symbols[locate] = symbol
            if locate not in self.traded and (ALL_INSTRUMENTS in self._wanted or symbol in self._wanted):
                self.traded[locate] = symbol
                self.gateway.stocks[locate] = symbol

    def _settle(self, now_ns: int) -> None:
        """The re-login replay has caught up (a poll brought nothing): orders never answered never arrived."""
        self._settled = True
        for order in self.recovered.settle_unacknowledged(self.journal):
            log.warning("order %s was sent before a restart and never reached the exchange: closed", order.token)

    # --- risk callbacks (run inside risk.check / on_fill, on the agent's thread) -----------------------------

    def _on_decision(self, request: OrderRequest, decision: RiskDecision, now_ns: int) -> None:
        if not decision.accepted:
            self.metrics.risk_rejects[decision.reason.value] += 1
            self.journal.risk_decision(request, False, decision.reason, decision.detail)

    def _on_kill(self, reason: str) -> None:
        log.error("kill switch engaged: %s; canceling every open order", reason)
        self.journal.kill_switch(True, reason)
        self._cancel_all(self.clock())

    def _cancel_all(self, now_ns: int) -> None:
        try:
            self.gateway.cancel_all(now_ns)
        except SessionNotLoggedInError:
            self._cancel_all_pending = True  # sent as soon as the session is back

    # --- running ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the exchange and start the control API (the loop is `run` or repeated `step`)."""
        # The journal's writer and the control API are threads of this process. When the loop wants the GIL
        # back (after a socket call released it), a thread holding it may keep it for the switch interval:
        # 5 ms by default, which would be the hot path's worst case. Ask for it back after 50 us instead.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.session.connect(self.clock() * 1e-9)
        if self.control is not None:
            self.control.start()

    def run(self, seconds: float | None = None, install_signals: bool = True) -> None:
        a = self.config.agent
        if a.cpu is not None:
            os.sched_setaffinity(0, {a.cpu})
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stop())
        self._running = True
        clock, step = self.clock, self.step
        deadline = None if seconds is None else clock() + int(seconds * 1e9)
        idle_s = 0 if a.busy_poll else a.idle_sleep_us * 1e-6
        while self._running:
            now = clock()
            if deadline is not None and now >= deadline:
                break
            if not step(now) and idle_s:
                time.sleep(idle_s)
        self._running = False

    def stop(self) -> None:
        self._running = False

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Cancel every open quote, wait for the answers (at most `timeout_s`, by default [agent]
        shutdown_timeout_s), flush the journal, log out."""
        if timeout_s is None:
            timeout_s = self.config.agent.shutdown_timeout_s
        clock = self.clock
        self._closing = True
        if self.session.logged_in:
            self._cancel_all(clock())
            deadline = clock() + int(timeout_s * 1e9)
            while self.orders.open_count and clock() < deadline and self.session.logged_in:
                events = self.gateway.poll(clock())
                for event in events:
                    self._on_event(event, clock())
                if events:
                    self._cancel_all(clock())
                self.receive()
                self.card.poll()
                time.sleep(0.0005)
            if self.orders.open_count:
                log.warning(
                    "shutting down with %d orders still open: the exchange did not confirm the cancels "
                    "within %.1f s ([agent] shutdown_timeout_s)",
                    self.orders.open_count,
                    timeout_s,
                )
            self.session.logout()
        if self.control is not None:
            self.control.stop()
        if self.publisher is not None:
            self.publisher.close()
        self.journal.close()

    # --- what the control API and the summary read (on the agent's thread) -----------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "session": self.session.state.value,
            "last_sequence": self.session.last_sequence,
            "feed_gap": self.market.gap,
            "instruments": len(self.traded),
            "bbo_updates": self.metrics.bbo_updates,
            "open_orders": self.orders.open_count,
            "kill_switch": self.risk.killed,
            "kill_reason": self.risk.kill_reason,
            "orders_sent": dict(self.metrics.orders_sent),
            "fills": self.metrics.fills,
            "risk_rejects": {reason.value: n for reason, n in self.risk.rejects.items()},
            "gateway_anomalies": dict(self.gateway.anomalies),
            "uptime_s": round((self.clock() - self.started_ns) / 1e9, 3),
        }

    def positions(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for book in self.positions.instruments.values():
            locate = book.locate
            out[self.market.symbols.get(locate, str(locate))] = {
                "locate": locate,
                "position": book.position,
                "average_price": round(book.average_price / DOLLAR, 6),
                "realized": book.realized / DOLLAR,
                "unrealized": round(self.positions.unrealized(locate) / DOLLAR, 4),
                "bought": book.bought,
                "sold": book.sold,
            }
        return {"instruments": out, "total_pnl": round(self.positions.total_pnl() / DOLLAR, 4)}

    def open_orders(self) -> list[dict[str, Any]]:
        return [
            {"token": o.token, "symbol": o.stock, "side": o.side.value, "price": o.price, "shares": o.shares,
             "open_shares": o.open_shares, "state": o.state.value, "cancel_pending": o.cancel_pending}
            for o in self.orders.open_orders()
        ]  # fmt: skip

    def risk_limits(self) -> dict[str, Any]:
        return self.risk.limits.model_dump(mode="json")

    def set_risk_limits(self, changes: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.risk.limits.model_dump(), **changes}
        limits = validate_section(type(self.risk.limits), merged, "control API", "risk")
        self.risk.limits = limits
        self.journal.session("risk_limits", detail=changes)
        return limits.model_dump(mode="json")

    def kill(self, reason: str) -> dict[str, Any]:
        self.risk.kill(f"operator: {reason}")
        return {"kill_switch": True, "reason": self.risk.kill_reason}

    def reset_kill(self, operator: str) -> dict[str, Any]:
        self.risk.reset_kill(operator)
        self.journal.kill_switch(False, f"reset by {operator}")
        return {"kill_switch": False, "reset_by": operator}

    def metrics_text(self) -> bytes:
        return self.metrics.exposition()

    def summary(self) -> dict[str, Any]:
        """The run's result, as `wirebook run --json` prints it."""
        return {
            "orders_sent": sum(self.metrics.orders_sent.values()),
            "orders_by_kind": dict(self.metrics.orders_sent),
            "fills": self.metrics.fills,
            "filled_shares": self.metrics.filled_shares,
            "risk_rejects": {reason.value: n for reason, n in sorted(self.risk.rejects.items(), key=str)},
            "kill_switch": {"engaged": self.risk.killed, "reason": self.risk.kill_reason},
            "position": {self.market.symbols.get(h.locate, str(h.locate)): h.position for h in self.positions.held()},
            "pnl": round(self.positions.total_pnl() / DOLLAR, 4),
            "bbo_updates": self.metrics.bbo_updates,
            "gateway_anomalies": dict(self.gateway.anomalies),
            "tick_to_order_us": self.metrics.tick_to_order.percentiles_us(50, 99, 99.9),
            "tick_to_sent_us": self.metrics.tick_to_sent.percentiles_us(50, 99, 99.9),
            "risk_check_us": self.metrics.risk_check.percentiles_us(50, 99, 99.9),
        }


class _TimedRisk:
    """The risk engine as the gateway sees it, with each check's duration in `metrics.risk_check`."""

    __slots__ = ("clock", "engine", "histogram")

    def __init__(self, engine: RiskEngine, metrics: AgentMetrics, clock: Callable[[], int]) -> None:
        self.engine = engine
        self.histogram = metrics.risk_check
        self.clock = clock

    def check(self, request: OrderRequest, now_ns: int) -> RiskDecision:
        started = self.clock()
        decision = self.engine.check(request, now_ns)
        self.histogram.observe_ns(self.clock() - started)
        return decision
