"""One side's price levels, updated in one cycle: the read-modify-write core of the book engine.

`LevelUpdate` is combinational: given a side's `side_book` word (see layouts) and one action it produces
the word to write back, the side's best level and whether that best is exact. Every level is compared
with the action's price in parallel; an insert or a removal shifts the levels behind it by one place.

The array holds the best `n_levels` levels. Orders that do not fit are *hidden*: an insert that finds the
array full pushes its worst level out (that level's orders become hidden), and an order worse than every
level of a full array is hidden itself. A side keeps the number of hidden orders and the best price ever
hidden while that number is non-zero (it resets when the number returns to 0). A removal whose price has no
level is a hidden order's: the count goes down by one. The `level_eviction` strobe is `evicted`.

Rule. The side's best is exact when no order is hidden, or the best level's price is strictly better than
the best hidden price; otherwise `degraded` is set (an empty array with hidden orders is degraded).

Proof. For a price P of this side let R(P) be the live booked orders at P and V(P) the order count of the
level at P (0 when there is none).
(1) hidden_orders = sum over P of (R(P) - V(P)), and R(P) >= V(P). Every action keeps this: joining or
    making a level raises R(P) and V(P) by one; hiding an order raises R(P) and hidden_orders; pushing a
    level out moves its V(P) into hidden_orders; a removal at P lowers R(P) and either V(P) (a level at P)
    or hidden_orders (no level: V(P) = 0 < R(P), so there is a hidden order to take).
(2) A price with R(P) > V(P) is no better than hidden_best: orders become hidden only at a price that is
    then folded into hidden_best, which only moves towards better while hidden_orders > 0, and resets only
    at hidden_orders = 0, when by (1) no price holds a hidden order.
(3) A level at P with V(P) = R(P) holds exactly the shares of P's orders: while a level exists,
    R(P) - V(P) is constant (joins and removals at P move both; an order is hidden only at a price with no
    level), so that level was made when P had no live order, and every add and take at P since went
    through it.
If hidden_orders = 0, (1) gives R = V everywhere: every order sits in an exact level (3), so the first level
is the true best. If the first level's price B is strictly better than hidden_best, (2) says no price at or
better than B holds a hidden order: R(B) = V(B), so B is exact (3), and no order better than B exists,
since it would sit in a level before B or be hidden at a price better than hidden_best. Q.E.D.
A degraded best may still be right; it is only no longer proven.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import BookGeometry, LevelAction

__all__ = ["LevelUpdate"]


class LevelUpdate(wiring.Component):
    """Apply one action to one side's levels (combinational).

    Inputs: `book` (a side_book word), `side` (0 bid: higher price is better; 1 ask: lower is better),
    `action` (LevelAction), `price`, `shares`, `leaves` (TAKE: the order leaves its level).
    Outputs: `updated` (the word to write back), `best` (level 0, all zero when the side is empty),
    `degraded` (the rule above does not prove `best`), `evicted` (a level was pushed out or an order hidden).
    A TAKE that makes a level's shares negative (only possible at a price that holds hidden orders, so never
    at an exact best) wraps; a level's aggregate shares are 32 bits, as in the record.
    """

    def __init__(self, geometry: BookGeometry) -> None:
        self.geometry = geometry
        g = geometry
        super().__init__(
            {
                "book": In(g.side_book),
                "side": In(1),
                "action": In(LevelAction),
                "price": In(32),
                "shares": In(32),
                "leaves": In(1),
                "updated": Out(g.side_book),
                "best": Out(g.level),
                "degraded": Out(1),
                "evicted": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        g = self.geometry
        n = g.n_levels
        old, new = self.book, self.updated
        levels, valid = old.levels, old.valid

        def better(a, b):
            """a is a strictly better price than b on this side."""
            return Mux(self.side, a < b, a > b)

        match = Signal(n)  # the level at `price` (at most one: prices of levels are distinct)
        ahead = Signal(n)  # levels strictly better than `price`: a prefix of the array
        m.d.comb += [
            match.eq(Cat(valid[i] & (levels[i].price == self.price) for i in range(n))),
            ahead.eq(Cat(valid[i] & better(levels[i].price, self.price) for i in range(n))),
        ]
        at_or_after_match = Signal(n)  # levels from the matching one on (they move up when it goes)
        m.d.comb += at_or_after_match.eq(Cat(match[: i + 1].any() for i in range(n)))
        found = Signal(g.level)  # the level at `price`, zero when there is none
        for i in range(n):
            with m.If(match[i]):
                m.d.comb += found.eq(levels[i])

        new_level = Signal(g.level)
        m.d.comb += [new_level.price.eq(self.price), new_level.shares.eq(self.shares), new_level.orders.eq(1)]
        worst = levels[n - 1]
        hide_new = ahead[n - 1]  # every level in use and better: the order does not fit
        push_out = valid[n - 1] & ~hide_new  # it fits, the worst level goes

        # Folding a price into the hidden state (`count` more orders at `price`).
        def hide(count, price):
            m.d.comb += [
                new.hidden_orders.eq(old.hidden_orders + count),
                new.hidden_best.eq(
                    Mux((old.hidden_orders == 0) | better(price, old.hidden_best), price, old.hidden_best)
                ),
                self.evicted.eq(1),
            ]

        m.d.comb += new.eq(old)
        with m.Switch(self.action):
            with m.Case(LevelAction.INSERT):
                with m.If(match.any()):
                    for i in range(n):
                        with m.If(match[i]):
                            m.d.comb += [
                                new.levels[i].shares.eq(found.shares + self.shares),
                                new.levels[i].orders.eq(found.orders + 1),
                            ]
                with m.Elif(hide_new):
                    hide(1, self.price)
                with m.Else():
                    for i in range(n):
                        here = ~ahead[i] if i == 0 else ~ahead[i] & ahead[i - 1]
                        with m.If(here):
                            m.d.comb += [new.levels[i].eq(new_level), new.valid[i].eq(1)]
                        if i > 0:
                            with m.Elif(~ahead[i]):  # behind the new level: one place down
                                m.d.comb += [new.levels[i].eq(levels[i - 1]), new.valid[i].eq(valid[i - 1])]
                    with m.If(push_out):
                        hide(worst.orders, worst.price)
            with m.Case(LevelAction.TAKE):
                with m.If(match.any()):
                    empties = self.leaves & (found.orders == 1)
                    with m.If(empties):
                        for i in range(n):  # the level goes: the ones behind it move up
                            with m.If(at_or_after_match[i]):
                                if i + 1 < n:
                                    m.d.comb += [new.levels[i].eq(levels[i + 1]), new.valid[i].eq(valid[i + 1])]
                                else:
                                    m.d.comb += [new.levels[i].eq(0), new.valid[i].eq(0)]
                    with m.Else():
                        for i in range(n):
                            with m.If(match[i]):
                                m.d.comb += [
                                    new.levels[i].shares.eq(found.shares - self.shares),
                                    new.levels[i].orders.eq(found.orders - self.leaves),
                                ]
                with m.Elif(self.leaves & (old.hidden_orders != 0)):  # a hidden order leaves
                    m.d.comb += new.hidden_orders.eq(old.hidden_orders - 1)
                    with m.If(old.hidden_orders == 1):
                        m.d.comb += new.hidden_best.eq(0)

        m.d.comb += [
            self.best.eq(Mux(new.valid[0], new.levels[0].as_value(), 0)),
            self.degraded.eq((new.hidden_orders != 0) & ~(new.valid[0] & better(new.levels[0].price, new.hidden_best))),
        ]
        return m
