"""One side's price levels, updated in two pipelined cycles: the read-modify-write core of the book engine.

`LevelUpdate` takes a side's `side_book` word (see layouts) and its actions (a take, an insert, or a take then
an insert) and, a cycle later, gives the word to write back, the side's best level and whether that best is
exact. Every level is compared with both prices in parallel in the first cycle; in the second a removal or an
insert shifts the levels behind it by one place.

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

from .layouts import BookGeometry

__all__ = ["LevelUpdate"]


class LevelUpdate(wiring.Component):
    """Apply a TAKE, then an INSERT, to one side's levels; either may be off. Pipelined: 1 cycle.

    Inputs (cycle t): `book` (a side_book word), `side` (0 bid: higher price is better; 1 ask: lower is
    better); `take`: `take_shares` leave the level at `take_price`, and with `take_leaves` the order leaves it
    (no level at that price: a hidden order leaves); `insert`: an order of `insert_shares` joins the level at
    `insert_price`, or makes one. Both at once is a REPLACE (U): the result is the TAKE's, then the INSERT's,
    exactly as two passes would give, in one shift network.
    Outputs (cycle t + 1, from the inputs of cycle t): `updated` (the word to write back), `best` (level 0,
    all zero when the side is empty), `degraded` (the rule above does not prove `best`), `evicted` (a level was
    pushed out or an order hidden).
    Cycle t compares every level with both prices (and decides which level, if any, goes); cycle t + 1 shifts.
    `insert` is used only in cycle t + 1's logic, so it may come late in cycle t. A TAKE that makes a level's
    shares negative (only possible at a price that holds hidden orders, so never at an exact best) wraps; a
    level's aggregate shares are 32 bits, as in the record.
    """

    def __init__(self, geometry: BookGeometry) -> None:
        self.geometry = geometry
        g = geometry
        super().__init__(
            {
                "book": In(g.side_book),
                "side": In(1),
                "take": In(1),
                "take_price": In(32),
                "take_shares": In(32),
                "take_leaves": In(1),
                "insert": In(1),
                "insert_price": In(32),
                "insert_shares": In(32),
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

        def better(side, a, b):
            """a is a strictly better price than b on this side."""
            return Mux(side, a < b, a > b)

        # --- cycle t: compares -------------------------------------------------------------------------------------
        # Every level against both prices, in parallel (prices of levels are distinct: at most one match each),
        # and the prices the hidden-state rule compares, so that cycle t + 1 only selects.
        book_in, side_in = self.book, self.side
        prices = [book_in.levels[i].price for i in range(n)]
        took_in = Cat(self.take & book_in.valid[i] & (prices[i] == self.take_price) for i in range(n))
        empties_in = self.take_leaves & Cat(took_in[i] & (book_in.levels[i].orders == 1) for i in range(n)).any()
        worst_price = prices[n - 1]
        second_price = prices[1] if n > 1 else 0
        compared = {
            "took": took_in,  # the level at take_price
            "joined": Cat(book_in.valid[i] & (prices[i] == self.insert_price) for i in range(n)),
            "ahead": Cat(book_in.valid[i] & better(side_in, prices[i], self.insert_price) for i in range(n)),
            "gone": Cat(empties_in & took_in[: i + 1].any() for i in range(n)),  # at or after the level that goes
            "hidden_take": self.take & self.take_leaves & ~took_in.any() & (book_in.hidden_orders != 0),
            # better(x, y) for the pairs (new best, new best hidden) can take, see `degraded` below
            "insert_over_hidden": better(side_in, self.insert_price, book_in.hidden_best),
            "first_over_hidden": better(side_in, prices[0], book_in.hidden_best),
            "second_over_hidden": better(side_in, second_price, book_in.hidden_best),
            "insert_over_worst": better(side_in, self.insert_price, worst_price),
            "first_over_worst": better(side_in, prices[0], worst_price),
            "worst_over_hidden": better(side_in, worst_price, book_in.hidden_best),
        }
        c = {name: Signal(len(value), name=name) for name, value in compared.items()}
        old = Signal(g.side_book)
        side = Signal()
        take_shares = Signal(32)
        take_leaves = Signal()
        insert_price = Signal(32)
        insert_shares = Signal(32)
        m.d.sync += [c[name].eq(value) for name, value in compared.items()]
        m.d.sync += [
            old.eq(book_in),
            side.eq(side_in),
            take_shares.eq(self.take_shares),
            take_leaves.eq(self.take_leaves & self.take),
            insert_price.eq(self.insert_price),
            insert_shares.eq(self.insert_shares),
        ]
        insert = Signal()
        m.d.sync += insert.eq(self.insert)

        # --- cycle t + 1: the TAKE, then the INSERT, as one shift --------------------------------------------------
        new = self.updated
        levels, valid = old.levels, old.valid
        took, gone = c["took"], c["gone"]
        joined = Signal(n)
        m.d.comb += joined.eq(c["joined"] & insert.replicate(n))
        hidden_take = c["hidden_take"]
        hidden_orders = Signal.like(old.hidden_orders)  # after the TAKE
        hidden_best = Signal.like(old.hidden_best)
        m.d.comb += [
            hidden_orders.eq(old.hidden_orders - hidden_take),
            hidden_best.eq(Mux(hidden_take & (old.hidden_orders == 1), 0, old.hidden_best)),
        ]

        # Share and order changes in place, both actions with one adder per level (a level that goes is dropped
        # by the shift below, its change unused).
        both = Signal(32)
        m.d.comb += both.eq(insert_shares - take_shares)
        adjusted = [Signal(g.level, name=f"adjusted{i}") for i in range(n)]
        for i in range(n):
            delta = Mux(took[i], Mux(joined[i], both, -take_shares), Mux(joined[i], insert_shares, 0))
            m.d.comb += [
                adjusted[i].price.eq(levels[i].price),
                adjusted[i].shares.eq(levels[i].shares + delta),
                adjusted[i].orders.eq(levels[i].orders + joined[i] - (took[i] & take_leaves)),
            ]

        def after_take(bits, i):
            """Bit i of a per-level vector once the level that goes (if any) has left its place."""
            following = bits[i + 1] if i + 1 < n else 0
            return Mux(gone[i], following, bits[i])

        mid = [Signal(g.level, name=f"mid{i}") for i in range(n)]  # the levels after the TAKE
        mid_valid = Signal(n)
        mid_joined = Signal(n)
        mid_ahead = Signal(n)
        for i in range(n):
            following = adjusted[i + 1].as_value() if i + 1 < n else 0
            m.d.comb += [
                mid[i].eq(Mux(gone[i], following, adjusted[i].as_value())),
                mid_valid[i].eq(after_take(valid, i)),
                mid_joined[i].eq(after_take(joined, i)),
                mid_ahead[i].eq(after_take(c["ahead"], i)),
            ]

        # The INSERT on the levels after the TAKE: a join (done in `adjusted`), a hidden order, or a new level
        # that may push the worst one out.
        new_level = Signal(g.level)
        m.d.comb += [new_level.price.eq(insert_price), new_level.shares.eq(insert_shares), new_level.orders.eq(1)]
        fresh = insert & ~mid_joined.any()
        hide_new = Signal()  # every level in use and better: the order does not fit
        place = Signal()
        push_out = Signal()  # it fits, the worst level goes (then no level went: `worst` is levels[n - 1])
        m.d.comb += [
            hide_new.eq(fresh & mid_ahead[n - 1]),
            place.eq(fresh & ~mid_ahead[n - 1]),
            push_out.eq(place & mid_valid[n - 1]),
        ]
        first_here = place & ~mid_ahead[0]  # the new level is the best
        m.d.comb += [new.hidden_orders.eq(hidden_orders), new.hidden_best.eq(hidden_best)]
        for i in range(n):
            here = first_here if i == 0 else place & ~mid_ahead[i] & mid_ahead[i - 1]
            with m.If(here):
                m.d.comb += [new.levels[i].eq(new_level), new.valid[i].eq(1)]
            if i > 0:
                with m.Elif(place & ~mid_ahead[i]):  # behind the new level: one place down
                    m.d.comb += [new.levels[i].eq(mid[i - 1]), new.valid[i].eq(mid_valid[i - 1])]
            with m.Else():
                m.d.comb += [new.levels[i].eq(mid[i]), new.valid[i].eq(mid_valid[i])]

        # Folding orders into the hidden state: the new order itself, or the pushed-out level's orders. While
        # hidden orders remain after the TAKE, `hidden_best` is the one read, so the compares of cycle t hold.
        worst = mid[n - 1]
        count = Mux(hide_new, 1, worst.orders)
        price = Mux(hide_new, insert_price, worst.price)
        over_hidden = Mux(hide_new, c["insert_over_hidden"], c["worst_over_hidden"])
        takes_best = Signal()  # `price` becomes the best hidden price
        m.d.comb += takes_best.eq((hidden_orders == 0) | over_hidden)
        with m.If(hide_new | push_out):
            m.d.comb += [
                new.hidden_orders.eq(hidden_orders + count),
                new.hidden_best.eq(Mux(takes_best, price, hidden_best)),
                self.evicted.eq(1),
            ]

        # degraded = hidden orders & ~(a best strictly better than the best hidden price). The new best is the new
        # level, levels[0] or (levels[0] went) levels[1]; the best hidden price is the one read, the new order's
        # (hidden itself: no level went, the best is levels[0]) or the worst level's (pushed out: no level went,
        # the best is the new level or levels[0]); a best hidden price reset to 0 leaves no hidden order.
        first_gone = gone[0]
        over_read = Mux(first_here, c["insert_over_hidden"],
                        Mux(first_gone, c["second_over_hidden"], c["first_over_hidden"]))  # fmt: skip
        over_worst = Mux(first_here, c["insert_over_worst"], c["first_over_worst"])
        best_over_hidden = Mux((hide_new | push_out) & takes_best, Mux(hide_new, c["ahead"][0], over_worst), over_read)
        m.d.comb += [
            self.best.eq(Mux(new.valid[0], new.levels[0].as_value(), 0)),
            self.degraded.eq((new.hidden_orders != 0) & ~(new.valid[0] & best_over_hidden)),
        ]
        return m
