"""One side's price levels, updated in three pipelined cycles: the read-modify-write core of the book engine.

`LevelUpdate` takes a side's `side_book` word (see layouts) and its actions (a take, an insert, or a take then
an insert) and, two cycles later, gives the word to write back, the side's best level and whether that best is
exact. Every level is compared with both prices in parallel in the first cycle, the second decides where each
level goes and adds the share and order changes, and in the third a removal or an insert shifts the levels
behind it by one place. An action may work on the word its predecessor of two cycles before is giving out: the
compares then run on that predecessor's word before its shift and are shifted the same way.

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

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from .layouts import BookGeometry

__all__ = ["LevelUpdate", "Source"]


class Source(enum.Enum, shape=unsigned(2)):
    """Where the shift takes a level from: its own place, the next one, the one before, or the new level."""

    SAME = 0
    NEXT = 1
    PREV = 2
    NEW = 3


class LevelUpdate(wiring.Component):
    """Apply a TAKE, then an INSERT, to one side's levels; either may be off. Pipelined: 3 cycles (its prices
    a cycle ahead).

    Accepts an action every cycle, but one on the same word only every 2 cycles (below).
    Inputs, cycle t - 1: `side` (0 bid: higher price is better; 1 ask: lower is better), `take_price` and
    `insert_price` of the action of cycle t. Cycle t: the word, `book` or (`use_written`) `written` (two
    side_book words: as read and as last written back, say), or (`chain`) the one `updated` gives in this same
    cycle: the action of cycle t - 2 on this side, so that an action every 2 cycles needs no write-back first
    (an action of cycle t - 1 on the same word is not allowed; one of cycle t - 3 or earlier comes back
    through `book` or `written`); `take`: `take_shares` leave the level at `take_price`, and with
    `take_leaves` the order leaves it (no level at that price: a hidden order leaves); `insert`: an order of
    `insert_shares` joins the level at `insert_price`, or makes one. Both at once is a REPLACE (U): the
    result is the TAKE's, then the INSERT's, exactly as two passes would give, in one shift network.
    Outputs (cycle t + 2, from the action of cycle t): `updated` (the word to write back), `best` (level 0,
    all zero when the side is empty), `best_changed` (`best` differs from the word's level 0 before the
    action), `degraded` (the rule above does not prove `best`), `evicted` (a level was pushed out or an order
    hidden).
    Cycle t - 1 compares the prices with the word the action of cycle t - 2 works on (then deciding) and with
    its new level. Cycle t (compare) compares every level of `book` and `written` with both prices, picks the
    compares of cycle t - 1 the way the shift of cycle t picks the levels (the shift moves levels, never
    changes a price), and chooses one set. Cycle t + 1 (decide) decides each level's source (itself, its
    neighbour before or after, or the new level), adds the share and order changes, compares the word's best,
    second and worst prices and the new price with its best hidden price, and folds orders into the hidden
    state. Cycle t + 2 (shift) moves every level to its place: a 4-way select per level. Bad input: a TAKE
    that makes a level's shares negative (only possible at a price that holds hidden orders, so never at an
    exact best) wraps; a level's aggregate shares are 32 bits, as in the record.
    """

    def __init__(self, geometry: BookGeometry) -> None:
        self.geometry = geometry
        g = geometry
        super().__init__(
            {
                "book": In(g.side_book),
                "written": In(g.side_book),
                "use_written": In(1),
                "chain": In(1),
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
                "best_changed": Out(1),
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

        # --- registers of the shift stage (cycle t + 2), written by the decide stage ---------------------------------
        # Level i of the result is source[i] of: its adjusted level (SAME), the one after (NEXT), the one before
        # (PREV), or the new level (NEW); the adjusted levels keep the prices of the word they were made from.
        adjusted = [Signal(g.level, name=f"adjusted{i}") for i in range(n)]
        adjusted_valid = Signal(n)
        source = [Signal(Source, name=f"source{i}") for i in range(n)]
        new_level = Signal(g.level)
        shifted_hidden_orders = Signal(g.count_bits)
        shifted_hidden_best = Signal(32)

        def pick(i, same, following, before, new):
            """Level i's choice among its sources (`following` and `before` are None past the array's ends)."""
            code = source[i].as_value()
            following = 0 if following is None else following
            before = 0 if before is None else before
            return Mux(code[1], Mux(code[0], new, before), Mux(code[0], following, same))

        def each_level(values, new):
            """Every level's choice, given a value per adjusted level and the new level's."""
            return [
                pick(i, values[i], values[i + 1] if i + 1 < n else None, values[i - 1] if i else None, new)
                for i in range(n)
            ]

        # --- cycle t - 1: the prices, and the compares for `chain` --------------------------------------------------
        # The action's side and prices come a cycle ahead: its predecessor on this side (if `chain` will be set)
        # is then deciding, and every level of the word it works on, and its new level, are compared with them.
        # Its shift moves levels but keeps their prices, so in cycle t those compares only need picking.
        side, take_price, insert_price = Signal(), Signal(32), Signal(32)
        m.d.sync += [side.eq(self.side), take_price.eq(self.take_price), insert_price.eq(self.insert_price)]
        old = Signal(g.side_book)  # the word the action in the decide stage works on
        insert_price_d = Signal(32)  # its new level's price
        adjusted_one = Signal(n)  # its adjusted levels that hold one order

        def compares(side, prices, valid, take_price, insert_price):
            """Per level: valid & at take_price, valid & at insert_price, valid & better than insert_price, valid &
            better than take_price."""
            return {
                "took": Cat(v & (p == take_price) for p, v in zip(prices, valid)),
                "joined": Cat(v & (p == insert_price) for p, v in zip(prices, valid)),
                "ahead": Cat(v & better(side, p, insert_price) for p, v in zip(prices, valid)),
                "ahead_of_take": Cat(v & better(side, p, take_price) for p, v in zip(prices, valid)),
            }

        old_prices = [old.levels[i].price for i in range(n)]
        ahead_levels = compares(self.side, old_prices, old.valid, self.take_price, self.insert_price)
        ahead_new = compares(self.side, [insert_price_d], [1], self.take_price, self.insert_price)
        flight = {name: Signal(n, name=f"flight_{name}") for name in ahead_levels}
        flight_new = {name: Signal(name=f"flight_new_{name}") for name in ahead_new}
        m.d.sync += [flight[name].eq(value) for name, value in ahead_levels.items()]
        m.d.sync += [flight_new[name].eq(value) for name, value in ahead_new.items()]

        # --- cycle t: compare ------------------------------------------------------------------------------------
        # Every level of `book` and of `written` against both prices, and the picked compares of the word in flight;
        # then the ones of the word the action works on are chosen.
        chain = self.chain

        def chosen(name, book_bits, written_bits):
            flight_bits = each_level(list(flight[name]), flight_new[name])
            return Cat(
                Mux(chain, flight_bits[i], Mux(self.use_written, written_bits[i], book_bits[i])) for i in range(n)
            )

        def word_compares(word):
            prices = [word.levels[i].price for i in range(n)]
            bits = compares(side, prices, word.valid, take_price, insert_price)
            bits["took_one"] = bits["took"] & Cat(word.levels[i].orders == 1 for i in range(n))
            return bits

        from_book, from_written = word_compares(self.book), word_compares(self.written)
        flight["took_one"] = flight["took"] & adjusted_one
        flight_new["took_one"] = flight_new["took"]  # a new level holds one order
        takes = self.take.replicate(n)
        compared = {
            "took": chosen("took", from_book["took"], from_written["took"]) & takes,  # the level at take_price
            # the level at take_price, holding one order
            "took_one": chosen("took_one", from_book["took_one"], from_written["took_one"]) & takes,
            "joined": chosen("joined", from_book["joined"], from_written["joined"]),  # the level at insert_price
            "ahead": chosen("ahead", from_book["ahead"], from_written["ahead"]),  # the levels better than insert_price
            # the levels better than take_price
            "ahead_of_take": chosen("ahead_of_take", from_book["ahead_of_take"], from_written["ahead_of_take"]),
            "same_price": take_price == insert_price,
            "same_shares": self.insert_shares == self.take_shares,
            "no_shares": self.take_shares == 0,
        }
        c = {name: Signal(len(value), name=name) for name, value in compared.items()}
        m.d.sync += [c[name].eq(value) for name, value in compared.items()]
        book = Signal(g.side_book)  # the word as it came (with `chain`: unused)
        chained = Signal()
        side_d = Signal()
        take = Signal()
        take_shares = Signal(32)
        take_leaves = Signal()
        insert = Signal()
        insert_shares = Signal(32)
        m.d.sync += [
            book.eq(Mux(self.use_written, self.written, self.book)),
            chained.eq(chain),
            side_d.eq(side),
            take.eq(self.take),
            take_shares.eq(self.take_shares),
            take_leaves.eq(self.take_leaves & self.take),
            insert.eq(self.insert),
            insert_price_d.eq(insert_price),
            insert_shares.eq(self.insert_shares),
        ]

        # --- cycle t + 1: decide, the TAKE then the INSERT as one shift ----------------------------------------------
        # The word the action works on: `book`, or with `chain` the one the shift stage gave last cycle.
        result = Signal(g.side_book)
        m.d.sync += result.eq(self.updated)
        m.d.comb += old.eq(Mux(chained, result, book))
        # The hidden-state rule's compares, on the word itself (registers, a mux away).
        c["hidden_some"] = old.hidden_orders != 0
        c["insert_over_hidden"] = better(side_d, insert_price_d, old.hidden_best)
        c["first_over_hidden"] = better(side_d, old.levels[0].price, old.hidden_best)
        c["second_over_hidden"] = better(side_d, old.levels[1].price, old.hidden_best) if n > 1 else Const(0, 1)
        c["worst_over_hidden"] = better(side_d, old.levels[n - 1].price, old.hidden_best)
        c["first_shares"] = old.levels[0].shares == insert_shares
        levels, valid = old.levels, old.valid
        took, gone = c["took"], Signal(n)
        empties = Signal()  # the level at take_price loses its only order
        m.d.comb += [
            empties.eq(take_leaves & c["took_one"].any()),
            gone.eq(Cat(empties & ~c["ahead_of_take"][i] for i in range(n))),  # at or after the level that goes
        ]
        joined = Signal(n)
        m.d.comb += joined.eq(c["joined"] & insert.replicate(n))
        hidden_take = Signal()  # no level at take_price: a hidden order leaves
        m.d.comb += hidden_take.eq(take_leaves & ~took.any() & c["hidden_some"])
        hidden_none = Signal()  # no hidden order after the TAKE
        hidden_best = Signal.like(old.hidden_best)  # after the TAKE
        one_hidden = old.hidden_orders == 1
        m.d.comb += [
            hidden_none.eq(Mux(hidden_take, one_hidden, old.hidden_orders == 0)),
            hidden_best.eq(Mux(hidden_take & one_hidden, 0, old.hidden_best)),
        ]

        # Share and order changes in place, both actions with one adder per level (a level that goes is dropped
        # by the shift, its change unused).
        both = Signal(32)
        m.d.comb += both.eq(insert_shares - take_shares)
        for i in range(n):
            delta = Mux(took[i], Mux(joined[i], both, -take_shares), Mux(joined[i], insert_shares, 0))
            m.d.sync += [
                adjusted[i].price.eq(levels[i].price),
                adjusted[i].shares.eq(levels[i].shares + delta),
                adjusted[i].orders.eq(levels[i].orders + joined[i] - (took[i] & take_leaves)),
            ]
        for i in range(n):  # orders + joined - leaving == 1
            orders, leaving = levels[i].orders, took[i] & take_leaves
            m.d.sync += adjusted_one[i].eq(
                Mux(joined[i] == leaving, orders == 1, Mux(joined[i], orders == 0, orders == 2))
            )
        m.d.sync += [
            adjusted_valid.eq(valid),
            new_level.price.eq(insert_price_d),
            new_level.shares.eq(insert_shares),
            new_level.orders.eq(1),
        ]

        # The INSERT on the levels after the TAKE: a join (done in `adjusted`), a hidden order, or a new level
        # that may push the worst one out. After the TAKE, a level is at insert_price unless the only one there
        # is the level that goes; the last place is in use and better than insert_price unless a level went.
        ahead = c["ahead"]
        mid_ahead = Cat(Mux(gone[i], ahead[i + 1] if i + 1 < n else 0, ahead[i]) for i in range(n))
        fresh = insert & (~c["joined"].any() | (empties & c["same_price"]))
        hide_new = Signal()  # every level in use and better: the order does not fit
        place = Signal()
        push_out = Signal()  # it fits, the worst level goes (then no level went: the worst is levels[n - 1])
        m.d.comb += [
            hide_new.eq(fresh & ahead[n - 1] & ~empties),
            place.eq(fresh & ~(ahead[n - 1] & ~empties)),
            push_out.eq(place & valid[n - 1] & ~empties),
        ]
        first_here = place & ~mid_ahead[0]  # the new level is the best
        for i in range(n):
            kept = Mux(gone[i], Source.NEXT, Source.SAME)  # no new level
            here = ~mid_ahead[i] & (mid_ahead[i - 1] if i else 1)
            behind = ~mid_ahead[i] if i else 0  # one place down: level i - 1 after the TAKE
            placed = Mux(here, Source.NEW, Mux(behind, Mux(gone[i - 1] if i else 0, Source.SAME, Source.PREV), kept))
            m.d.sync += source[i].eq(Mux(place, placed, kept))

        # Folding orders into the hidden state: the new order itself, or the pushed-out level's orders (no level
        # went: the worst level is levels[n - 1], its orders as adjusted by the TAKE). While hidden orders remain
        # after the TAKE, `hidden_best` is the one read, so the compares of cycle t hold. The sums are made for
        # every case at once and chosen by the decision.
        hidden_orders = old.hidden_orders
        one_less = hidden_take | (took[n - 1] & take_leaves)  # exclusive: a hidden order, or one of the worst level
        with_worst = hidden_orders + levels[n - 1].orders
        new_hidden_orders = Mux(
            hide_new,
            Mux(hidden_take, hidden_orders, hidden_orders + 1),
            Mux(
                push_out, Mux(one_less, with_worst - 1, with_worst), Mux(hidden_take, hidden_orders - 1, hidden_orders)
            ),
        )
        price = Mux(hide_new, insert_price_d, levels[n - 1].price)
        over_hidden = Mux(hide_new, c["insert_over_hidden"], c["worst_over_hidden"])
        takes_best = Signal()  # `price` becomes the best hidden price
        m.d.comb += takes_best.eq(hidden_none | over_hidden)
        m.d.sync += [
            shifted_hidden_orders.eq(new_hidden_orders),
            shifted_hidden_best.eq(Mux((hide_new | push_out) & takes_best, price, hidden_best)),
        ]
        hidden_some_after = hide_new | push_out | ~hidden_none

        # degraded = hidden orders & ~(a best strictly better than the best hidden price). The new best is the new
        # level, levels[0] or (levels[0] went) levels[1]; the best hidden price is the one read, the new order's
        # (hidden itself: no level went, the best is levels[0], better than every level's price) or the worst
        # level's (pushed out: no level went, the best is the new level or levels[0], both better than the worst);
        # a best hidden price reset to 0 leaves no hidden order.
        over_read = Mux(first_here, c["insert_over_hidden"],
                        Mux(gone[0], c["second_over_hidden"], c["first_over_hidden"]))  # fmt: skip
        best_over_hidden = ((hide_new | push_out) & takes_best) | over_read
        new_valid_first = first_here | Mux(gone[0], valid[1] if n > 1 else 0, valid[0])
        # The best changes when level 0 goes (unless a new level just like it takes its place: a REPLACE at the same
        # price and shares), when a new level comes first, or when level 0 changes its shares or orders.
        took_first, joined_first = took[0], joined[0]
        first_changes = Mux(
            took_first,
            Mux(joined_first, ~take_leaves | ~c["same_shares"], take_leaves | ~c["no_shares"]),
            joined_first,
        )
        degraded = Signal()
        evicted = Signal()
        best_changed = Signal()
        m.d.sync += [
            degraded.eq(hidden_some_after & ~(new_valid_first & best_over_hidden)),
            evicted.eq(hide_new | push_out),
            best_changed.eq(
                Mux(gone[0], ~first_here | ~c["same_price"] | ~c["first_shares"], first_here | first_changes)
            ),
        ]

        # --- cycle t + 2: shift -------------------------------------------------------------------------------------
        new = self.updated
        picked = each_level([adjusted[i].as_value() for i in range(n)], new_level.as_value())
        picked_valid = each_level([adjusted_valid[i] for i in range(n)], 1)
        m.d.comb += [new.levels[i].eq(picked[i]) for i in range(n)]
        m.d.comb += [
            new.valid.eq(Cat(picked_valid)),
            new.hidden_orders.eq(shifted_hidden_orders),
            new.hidden_best.eq(shifted_hidden_best),
            self.best.eq(Mux(new.valid[0], new.levels[0].as_value(), 0)),
            self.best_changed.eq(best_changed),
            self.degraded.eq(degraded),
            self.evicted.eq(evicted),
        ]
        return m
