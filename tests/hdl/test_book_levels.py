"""LevelUpdate (hdl.book.levels) alone, an action every cycle: random inserts, takes and replaces (a take, then an
insert, in one pass) on one side, against a Python replay of the documented policy (a replace: its take, then its
insert), and the exactness rule against the true book (every live order at full depth)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from amaranth.sim import Simulator

from wirebook.hdl.book.layouts import BookGeometry
from wirebook.hdl.book.levels import LevelUpdate

MASK32 = 0xFFFFFFFF


class PolicyReference:
    """The level array as hdl.book.levels describes it: best n levels [price, shares, orders], hidden count and
    best hidden price."""

    def __init__(self, n_levels: int, side: int) -> None:
        self.n, self.side = n_levels, side
        self.levels: list[list[int]] = []
        self.hidden = 0
        self.hidden_best = 0

    def better(self, a: int, b: int) -> bool:
        return a < b if self.side else a > b

    def _hide(self, count: int, price: int) -> None:
        if self.hidden == 0 or self.better(price, self.hidden_best):
            self.hidden_best = price
        self.hidden += count

    def insert(self, price: int, shares: int) -> bool:
        """Returns whether a level was pushed out or the order hidden."""
        for level in self.levels:
            if level[0] == price:
                level[1] = (level[1] + shares) & MASK32
                level[2] += 1
                return False
        at = sum(self.better(level[0], price) for level in self.levels)
        if at == self.n:
            self._hide(1, price)
            return True
        self.levels.insert(at, [price, shares, 1])
        if len(self.levels) > self.n:
            worst = self.levels.pop()
            self._hide(worst[2], worst[0])
            return True
        return False

    def take(self, price: int, shares: int, leaves: bool) -> None:
        for i, level in enumerate(self.levels):
            if level[0] == price:
                if leaves and level[2] == 1:
                    del self.levels[i]
                else:
                    level[1] = (level[1] - shares) & MASK32
                    level[2] -= leaves
                return
        if leaves:
            self.hidden -= 1
            if self.hidden == 0:
                self.hidden_best = 0

    def degraded(self) -> bool:
        return self.hidden > 0 and not (self.levels and self.better(self.levels[0][0], self.hidden_best))


def true_best(orders: dict[int, list[int]], side: int) -> tuple[int, int, int]:
    """(price, shares, orders) of the best price of every live order."""
    if not orders:
        return (0, 0, 0)
    prices = [price for price, _ in orders.values()]
    best = min(prices) if side else max(prices)
    at_best = [shares for price, shares in orders.values() if price == best]
    return (best, sum(at_best), len(at_best))


@pytest.mark.parametrize("n_levels", [1, 3, 16])
@pytest.mark.parametrize("side", [0, 1], ids=["bid", "ask"])
def test_random_actions(n_levels, side):
    geometry = BookGeometry(n_instruments=2, n_locates=2, n_orders=1024, n_ways=1, n_levels=n_levels)
    dut = LevelUpdate(geometry)
    rng = random.Random(n_levels * 2 + side)
    reference = PolicyReference(n_levels, side)
    live: dict[int, list[int]] = {}  # order id -> [price, shares]: the true book
    checked = {"exact": 0, "degraded": 0}
    kinds: Counter[tuple[bool, bool]] = Counter()  # (take, insert) of every step

    async def bench(ctx):
        ctx.set(dut.side, side)
        next_id = 0
        for step in range(800):
            sweep = step % 125 >= 85  # now and then the book is taken from the top down to a few orders
            take = insert = None  # (price, shares, leaves), (price, shares)
            evicted = False
            if not live or (not sweep and rng.random() < (0.6 if len(live) < 4 * n_levels else 0.4)):
                insert = (rng.randint(90, 98 + n_levels), rng.randint(1, 500))
            else:
                if sweep or rng.random() < 0.5:  # executions eat the best price: the array empties, orders stay hidden
                    best = true_best(live, side)[0]
                    ref = next(ref for ref, (price, _) in live.items() if price == best)
                else:
                    ref = rng.choice(list(live))
                price, left = live[ref]
                if not sweep and rng.random() < 0.3:  # a replace: all of it leaves, a new order comes in
                    take = (price, left, 1)
                    near = [price, price + rng.choice((-1, 1)), rng.randint(90, 98 + n_levels)]
                    insert = (rng.choice(near), rng.randint(1, 500))
                else:
                    shares = left if sweep or rng.random() < 0.6 else rng.randint(1, left)
                    take = (price, shares, int(shares == left))
                live[ref][1] -= take[1]
                if take[2]:
                    del live[ref]
                reference.take(*take)
            if insert is not None:
                live[next_id] = list(insert)
                next_id += 1
                evicted = reference.insert(*insert)
            ctx.set(dut.take, take is not None)
            ctx.set(dut.take_price, take[0] if take else 0)
            ctx.set(dut.take_shares, take[1] if take else 0)
            ctx.set(dut.take_leaves, take[2] if take else 0)
            ctx.set(dut.insert, insert is not None)
            ctx.set(dut.insert_price, insert[0] if insert else 0)
            ctx.set(dut.insert_shares, insert[1] if insert else 0)
            kinds[(take is not None, insert is not None)] += 1
            await ctx.tick()  # the outputs come a cycle after the inputs
            word = ctx.get(dut.updated)
            valid = int(word.valid)
            got = [[int(word.levels[i].price), int(word.levels[i].shares), int(word.levels[i].orders)]
                   for i in range(n_levels) if valid >> i & 1]  # fmt: skip
            assert valid == (1 << len(got)) - 1, f"valid {valid:b} is not a thermometer"
            assert got == reference.levels
            assert (int(word.hidden_orders), int(word.hidden_best)) == (reference.hidden, reference.hidden_best)
            assert ctx.get(dut.evicted) == evicted
            assert ctx.get(dut.degraded) == reference.degraded()
            best = ctx.get(dut.best)
            best = (int(best.price), int(best.shares), int(best.orders))
            assert best == (tuple(reference.levels[0]) if reference.levels else (0, 0, 0))
            if not reference.degraded():  # the rule: an unflagged best is the true best
                assert best == true_best(live, side)
            checked["degraded" if reference.degraded() else "exact"] += 1
            ctx.set(dut.book, word)  # written back, read by the next action

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert checked["exact"] > 100 and checked["degraded"] > 10, checked
    assert min(kinds.values()) > 50 and len(kinds) == 3, kinds
