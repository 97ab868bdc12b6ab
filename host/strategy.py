"""Quoting strategies: from an instrument's top of book and our position to the two-sided quote we want.

A strategy implements `Strategy.desired(locate, market, position, now_ns) -> Quote`: the bid and ask it wants
resting (price and shares, or None for no order on that side). It decides nothing about orders already sent:
host/quoter.py turns the desired quote into new, replace and cancel requests, and the risk engine judges each.

`MarketMaker` (the default): a fair value from the book (the mid, or the size-weighted "microprice"),
skewed against our inventory, and a quote `half_spread_ticks` either side of it, never closer to the fair
value than `min_edge_ticks` and never through the opposite side of the book (a quote is passive). It pulls
both sides (Quote.PULL) when the instrument is halted, its data is stale, the feed has a gap, the book is
crossed or locked or one-sided, or the card flags its book degraded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from pydantic import Field

from ..proto.bbo import FLAG_DEGRADED, FLAG_HALTED
from .market import MarketView
from .validated import ConfigModel

__all__ = ["MarketMaker", "Quote", "QuoterConfig", "Strategy", "tick_of"]


def tick_of(price: int) -> int:
    """Price(4) tick size of a price: $0.01 at or above $1, $0.0001 below (Reg NMS sub-penny rule)."""
    return 100 if price >= 10_000 else 1


@dataclass(frozen=True, slots=True)
class Quote:
    """A desired two-sided quote: (price, shares) per side, or None for no order on that side."""

    bid: tuple[int, int] | None
    ask: tuple[int, int] | None
    why: str = ""  # for a pulled quote: the reason

    PULL: ClassVar[Quote]


Quote.PULL = Quote(None, None, "pulled")


class Strategy(Protocol):
    """What the agent asks a strategy, once per instrument whose top changed (and on timers)."""

    def desired(self, locate: int, market: MarketView, position: int, now_ns: int) -> Quote: ...


class QuoterConfig(ConfigModel):
    """[strategy] section of the agent's configuration."""

    fair_value: Literal["mid", "weighted"] = "mid"
    half_spread_ticks: int = Field(2, ge=1, description="quote this many ticks either side of the fair value")
    size: int = Field(100, gt=0, lt=1_000_000, description="shares per side")
    skew_ticks_per_lot: float = Field(
        0.5, ge=0, description="fair value moves this many ticks against each lot of position"
    )
    lot: int = Field(100, gt=0, description="shares of one lot, for the skew")
    min_edge_ticks: int = Field(1, ge=0, description="never quote closer than this to the fair value")
    requote_threshold_ticks: int = Field(1, ge=1, description="replace a live quote only when it moved this much")
    max_quote_age_ms: int = Field(5_000, gt=0, description="replace a quote older than this even if unchanged")
    stale_after_ms: int = Field(2_000, gt=0, description="pull quotes when the instrument's data is older than this")
    retry_after_ms: int = Field(
        100, ge=0, description="a request the risk engine refused is not repeated for this long"
    )


class MarketMaker:
    """Two-sided quotes around a skewed fair value; see the module docstring."""

    def __init__(self, config: QuoterConfig) -> None:
        self.config = config

    def fair_value(self, bid: int, bid_shares: int, ask: int, ask_shares: int) -> float:
        if self.config.fair_value == "weighted" and bid_shares + ask_shares:
            # The microprice leans towards the side with less size: it is the likelier to be taken out.
            return (bid * ask_shares + ask * bid_shares) / (bid_shares + ask_shares)
        return (bid + ask) / 2

    def desired(self, locate: int, market: MarketView, position: int, now_ns: int) -> Quote:
        c = self.config
        top = market.top_of[locate]
        if top is None:
            return Quote(None, None, "stale")
        bid, bid_shares, ask, ask_shares, flags = top
        if flags & FLAG_HALTED:
            return Quote(None, None, "halted")
        if flags & FLAG_DEGRADED:
            return Quote(None, None, "degraded")
        if market.gap_since_ns:
            return Quote(None, None, "feed gap")
        if now_ns - market.updated_ns[locate] > c.stale_after_ms * 1_000_000:
            return Quote(None, None, "stale")
        if not bid or not ask:
            return Quote(None, None, "one-sided")
        if bid >= ask:
            return Quote(None, None, "crossed")
        tick = tick_of(bid)
        fair = self.fair_value(bid, bid_shares, ask, ask_shares)
        fair -= c.skew_ticks_per_lot * (position / c.lot) * tick
        offset = max(c.half_spread_ticks, c.min_edge_ticks) * tick
        our_bid = int((fair - offset) // tick) * tick  # round away from the fair value
        our_ask = -int(-(fair + offset) // tick) * tick
        # Passive only: a bid at or above the ask (or an ask at or below the bid) would take liquidity.
        our_bid = min(our_bid, ask - tick)
        our_ask = max(our_ask, bid + tick)
        return Quote(
            (our_bid, c.size) if our_bid > 0 else None,
            (our_ask, c.size),
        )
