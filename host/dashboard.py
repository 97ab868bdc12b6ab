"""The live terminal view of `make run` (rich): market, our quotes, positions and P&L, risk state.

Refreshed from the agent's own thread between iterations (`refresh`, about four times a second), so it
reads the agent's state without locks; it is never on the path of a record or an order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.live import Live
from rich.table import Table

from .orders import Side
from .positions import DOLLAR

if TYPE_CHECKING:
    from .agent import Agent

__all__ = ["Dashboard"]

ROWS = 12


def _price(p: int) -> str:
    if not p:
        return "-"
    return f"{p / DOLLAR:,.2f}" if p % 100 == 0 else f"{p / DOLLAR:,.4f}"  # cents unless sub-penny


class Dashboard:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.live = Live(self.render(), refresh_per_second=4, transient=False)

    def __enter__(self) -> Dashboard:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.refresh()
        self.live.__exit__(None, None, None)

    def refresh(self) -> None:
        self.live.update(self.render())

    def render(self) -> Group:
        a = self.agent
        status = a.status()
        market = Table(title="market and our quotes", expand=True)
        for name in ("symbol", "bid", "bid size", "ask", "ask size", "our bid", "our ask", "position", "P&L $"):
            market.add_column(name, justify="right")
        ours: dict[tuple[int, Side], int] = {}
        for o in a.orders.open_orders():
            ours[(o.locate, o.side)] = o.price
        for locate, symbol in sorted(a.traded.items(), key=lambda kv: kv[1])[:ROWS]:
            bid, bid_shares = a.market.best_bid(locate)
            ask, ask_shares = a.market.best_ask(locate)
            pnl = (a.positions.realized(locate) + a.positions.unrealized(locate)) / DOLLAR
            market.add_row(
                symbol, _price(bid), f"{bid_shares:,}", _price(ask), f"{ask_shares:,}",
                _price(ours.get((locate, Side.BUY), 0)), _price(ours.get((locate, Side.SELL), 0)),
                f"{a.positions.position(locate):,}", f"{pnl:,.2f}",
            )  # fmt: skip
        state = Table(title="agent", expand=True, show_header=False)
        state.add_column("what")
        state.add_column("value")
        kill = f"ENGAGED: {status['kill_reason']}" if status["kill_switch"] else "off"
        pct = a.metrics.tick_to_order.percentiles_us(50, 99)
        for what, value in (
            ("session", f"{status['session']} (last sequence {status['last_sequence']})"),
            ("feed", "GAP" if status["feed_gap"] else "ok"),
            ("BBO updates", f"{status['bbo_updates']:,}"),
            ("orders sent", ", ".join(f"{k} {v:,}" for k, v in sorted(status["orders_sent"].items())) or "0"),
            ("open orders", str(status["open_orders"])),
            ("fills", f"{status['fills']:,}"),
            ("P&L", f"$ {a.positions.total_pnl() / DOLLAR:,.2f}"),
            ("kill switch", kill),
            ("risk rejects", ", ".join(f"{k} {v}" for k, v in sorted(status["risk_rejects"].items())) or "none"),
            ("tick-to-order", f"p50 {pct['p50']} us, p99 {pct['p99']} us"),
        ):
            state.add_row(what, value)
        return Group(market, state)
