"""Hypothesis: whatever the agent has in flight when the kill switch engages (orders pending, replaces and
cancels not yet answered, fills arriving), once the exchange has answered everything no order of ours is
open, on our books or at the exchange, and nothing new reached the exchange after the kill.

The agent is the real one (its kill-switch callback and its loop's cancel of what surfaces afterwards); the
exchange is the simulator's matching engine (sim/matching.py) in memory, behind a session double that
releases its answers in chunks the test draws, so every interleaving of requests and answers is tried.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from wirebook.host.agent import Agent
from wirebook.host.orders import OrderRequest, OrderStateError, RequestKind, Side, UnknownOrderError
from wirebook.host.run import run_config
from wirebook.host.session import SessionState
from wirebook.model.book import BookModel
from wirebook.proto import bbo, itch_file, ouch
from wirebook.sim import market
from wirebook.sim.matching import MatchingEngine

ACCOUNT = "WB"
MESSAGES = list(market.generate(3, 600, 5))  # a stock directory and the start of a book
PERMISSIVE = {
    "orders_per_second": 1e9, "order_burst": 10**6, "messages_per_second": 1e9, "message_burst": 10**6,
    "max_data_age_ms": 10**9, "collar_percent": 100.0, "collar_ticks": 10**6, "duplicate_window_ms": 0,
    "max_long_shares": 10**6, "max_short_shares": 10**6, "max_gross_exposure": 1e12, "max_net_exposure": 1e12,
    "max_open_orders": 1000, "max_open_orders_per_instrument": 1000, "max_fills": 10**6,
    "daily_loss_limit": 1e12,
}  # fmt: skip


def golden_tops() -> tuple[np.ndarray, dict[int, str]]:
    framed = np.frombuffer(b"".join(len(m).to_bytes(2, "big") + m for m in MESSAGES), dtype=np.uint8)
    offsets, types, _ = itch_file.frame(framed)
    model = BookModel(lenient=True)
    return model.apply_chunk(itch_file.Chunk(framed, offsets, types, 0, 0), 1), model.symbols


RECORDS, SYMBOLS = golden_tops()


class QuietCard:
    symbols = SYMBOLS
    gap = False

    def poll(self) -> np.ndarray:
        return bbo.empty(0)


class LoopbackSession:
    """The surface of SoupSession the gateway uses, wired to a MatchingEngine; `answers_due` answers at a time.

    Packets sent between hold() and release() reach the engine at release(), as the real session writes them."""

    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.state = SessionState.LOGGED_IN
        self.where = "loopback"
        self.pending: list[bytes] = []
        self.answers_due = 0
        self.last_sequence = 0
        self.inbound: list[Any] = []
        self.held: list[bytes] | None = None

    @property
    def logged_in(self) -> bool:
        return True

    def send(self, payload: bytes) -> None:
        if self.held is not None:
            self.held.append(payload)
        else:
            self._deliver(payload)

    def hold(self) -> None:
        if self.held is None:
            self.held = []

    def release(self) -> int:
        held, self.held = self.held or [], None
        for payload in held:
            self._deliver(payload)
        return len(held)

    def _deliver(self, payload: bytes) -> None:
        message = ouch.decode_inbound(payload)
        self.inbound.append(message)
        self.pending += [out.message for out in self.engine.handle(ACCOUNT, message)]

    def poll(self, now: float) -> list[tuple[int, bytes]]:
        out, self.pending = self.pending[: self.answers_due], self.pending[self.answers_due :]
        self.answers_due = 0
        first = self.last_sequence + 1
        self.last_sequence += len(out)
        return list(enumerate(out, first))

    def connect(self, now: float) -> None:
        pass

    def logout(self) -> None:
        pass


actions = st.lists(
    st.one_of(
        st.tuples(st.just("new"), st.sampled_from(sorted(SYMBOLS)), st.sampled_from([Side.BUY, Side.SELL]),
                  st.integers(-6, 6), st.sampled_from([100, 200, 300])),
        st.tuples(st.just("replace"), st.integers(0, 50), st.integers(-6, 6)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("answer"), st.integers(0, 6)),
    ),
    max_size=40,
)  # fmt: skip


@settings(max_examples=60, deadline=None, database=None)
@given(steps=actions, kill_at=st.integers(0, 40))
def test_the_kill_switch_leaves_no_open_order(tmp_path_factory, steps, kill_at):
    engine = MatchingEngine()
    engine.apply(MESSAGES)
    workdir = tmp_path_factory.mktemp("kill")
    agent = Agent(run_config(1, workdir, {"risk": PERMISSIVE}), QuietCard(), publish=False, control=False)
    session = LoopbackSession(engine)
    agent.session = agent.gateway.session = session
    agent.market.update(RECORDS, 0)
    agent._learn_symbols()
    now = 1
    sent_after_kill = 0
    try:
        for at, step in enumerate(steps):
            if at == kill_at:
                agent.kill("property test")
                sent_after_kill = len(session.inbound)
            kind = step[0]
            opened = list(agent.orders.open_orders())
            try:
                if kind == "new":
                    _, locate, side, ticks, shares = step
                    bid, ask = agent.market.best_bid(locate)[0], agent.market.best_ask(locate)[0]
                    reference = (bid or ask) if side is Side.BUY else (ask or bid)
                    agent.gateway.submit(
                        OrderRequest(RequestKind.NEW, locate, side, reference + 100 * ticks, shares), now
                    )
                elif kind == "replace" and opened:
                    order = opened[step[1] % len(opened)]
                    request = OrderRequest(RequestKind.REPLACE, order.locate, order.side, order.price + 100 * step[2],
                                           order.shares, existing_token=order.token)  # fmt: skip
                    agent.gateway.submit(request, now)
                elif kind == "cancel" and opened:
                    order = opened[step[1] % len(opened)]
                    agent.gateway.submit(OrderRequest(RequestKind.CANCEL, order.locate, order.side,
                                                      existing_token=order.token), now)  # fmt: skip
                elif kind == "answer":
                    session.answers_due = step[1]
            except (OrderStateError, UnknownOrderError, ValueError):
                pass  # a request the state machine or OUCH refuses is not sent: nothing to check
            agent.step(now)
            now += 1_000
        if not agent.risk.killed:
            agent.kill("property test, at the end")
            sent_after_kill = len(session.inbound)
        for _ in range(200):  # the exchange answers everything; the agent's loop runs meanwhile
            session.answers_due = len(session.pending)
            agent.step(now)
            now += 1_000
            if not session.pending:
                break
        assert not session.pending
        assert agent.orders.open_count == 0, [(o.token, o.state, o.cancel_pending) for o in agent.orders.open_orders()]
        assert not [key for key in engine.orders if key[0] == ACCOUNT], "an order of ours still rests at the exchange"
        assert all(m.message_type == "X" for m in session.inbound[sent_after_kill:]), "a NEW or REPLACE after the kill"
    finally:
        agent.journal.close()
