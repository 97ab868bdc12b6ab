"""LevelUpdate (hdl.book.levels) alone, an action every 2 to 4 cycles (every 2: chained on the word in flight;
more: the word given back comes in as `book` or `written`): random inserts, takes and replaces (a take, then an
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
    kinds: Counter[tuple] = Counter()  # (take, insert) of every action, ("chain", chained) of every next one

    # The actions and what each must give, replayed in Python first.
    actions = []
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
        kinds[(take is not None, insert is not None)] += 1
        levels = [list(level) for level in reference.levels]
        best = tuple(levels[0]) if levels else (0, 0, 0)
        actions.append({
            "take": take, "insert": insert, "levels": levels, "hidden": (reference.hidden, reference.hidden_best),
            "evicted": evicted, "degraded": reference.degraded(), "best": best,
            "true_best": None if reference.degraded() else true_best(live, side),
        })  # fmt: skip
    assert sum(not a["degraded"] for a in actions) > 100 and sum(a["degraded"] for a in actions) > 10
    assert min(kinds.values()) > 50 and len(kinds) == 3, kinds

    # When each action goes in: 2 cycles after the one before (`chain`), or 3 or more (the word written back, as
    # `book` or `written`).
    chain_rng = random.Random(n_levels * 2 + side + 100)
    issue, gaps = [1], []
    for _ in actions[1:]:
        gaps.append(2 if chain_rng.random() < 0.5 else chain_rng.choice((3, 4)))
        kinds[("chain", gaps[-1] == 2)] += 1
        issue.append(issue[-1] + gaps[-1])
    assert min(kinds.values()) > 50, kinds
    at_issue = {cycle: k for k, cycle in enumerate(issue)}

    async def bench(ctx):
        words = {}  # action -> the word it gave
        before = (0, 0, 0)  # the best before the action checked next
        for cycle in range(issue[-1] + 3):
            if (k := at_issue.get(cycle - 2)) is not None:  # the outputs come two cycles after the action
                want = actions[k]
                word = ctx.get(dut.updated)
                words[k] = word
                valid = int(word.valid)
                got = [[int(word.levels[i].price), int(word.levels[i].shares), int(word.levels[i].orders)]
                       for i in range(n_levels) if valid >> i & 1]  # fmt: skip
                assert valid == (1 << len(got)) - 1, f"valid {valid:b} is not a thermometer"
                assert got == want["levels"], k
                assert (int(word.hidden_orders), int(word.hidden_best)) == want["hidden"]
                assert ctx.get(dut.evicted) == want["evicted"]
                assert ctx.get(dut.degraded) == want["degraded"]
                best = ctx.get(dut.best)
                best = (int(best.price), int(best.shares), int(best.orders))
                assert best == want["best"]
                assert ctx.get(dut.best_changed) == (best != before)
                before = best
                if want["true_best"] is not None:  # the rule: an unflagged best is the true best
                    assert best == want["true_best"]
            if (k := at_issue.get(cycle + 1)) is not None:  # the prices, a cycle ahead
                take, insert = actions[k]["take"], actions[k]["insert"]
                ctx.set(dut.side, side)
                ctx.set(dut.take_price, take[0] if take else 0)
                ctx.set(dut.insert_price, insert[0] if insert else 0)
            else:
                ctx.set(dut.take_price, chain_rng.getrandbits(32))
                ctx.set(dut.insert_price, chain_rng.getrandbits(32))
            if (k := at_issue.get(cycle)) is not None:
                take, insert = actions[k]["take"], actions[k]["insert"]
                chained = k > 0 and issue[k] - issue[k - 1] == 2
                word = {} if k == 0 else words[k - 1]
                use_written = chain_rng.random() < 0.5
                ctx.set(dut.chain, chained)
                ctx.set(dut.use_written, use_written)
                # the other word (and with `chain` both) is some other one
                other = {"valid": chain_rng.getrandbits(n_levels), "hidden_best": chain_rng.getrandbits(32)}
                ctx.set(dut.written, other if chained or not use_written else word)
                ctx.set(dut.book, other if chained or use_written else word)
                ctx.set(dut.take, take is not None)
                ctx.set(dut.take_shares, take[1] if take else 0)
                ctx.set(dut.take_leaves, take[2] if take else 0)
                ctx.set(dut.insert, insert is not None)
                ctx.set(dut.insert_shares, insert[1] if insert else 0)
            else:  # no action: the inputs of no action
                ctx.set(dut.chain, 0)
                ctx.set(dut.take, 0)
                ctx.set(dut.insert, 0)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
