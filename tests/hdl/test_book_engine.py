"""BookEngine in Amaranth's simulator, against the golden model (model.book).

ITCH comes from the synthetic market (sim.market) or is built with proto.itch.encode; the test turns it
into BOOK_OP transfers by software decode (sequence = 1-based message position) and compares every record
with BookModel's for the same messages, bit for bit in canonical form and in order. Books deeper than the
engine's level array are checked against the model plus the hidden-level rule (hdl.book.levels).
"""

from __future__ import annotations

import contextlib
from collections import Counter

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from wirebook.hdl.book.engine import BookEngine
from wirebook.hdl.book.layouts import BookGeometry
from wirebook.hdl.stream import BookOpKind
from wirebook.model.book import BookModel
from wirebook.proto import bbo, itch, itch_file
from wirebook.sim.market import generate
from wirebook.sim.testbench import Flow, stream_get, stream_put

CONFIGS = {
    "default": {},
    "small": {"n_instruments": 32, "n_locates": 64, "n_orders": 1024, "n_ways": 4, "n_levels": 10},
}
SHALLOW = {  # level arrays the synthetic market overflows (its books reach about 9 levels)
    "shallow-3": {"n_instruments": 32, "n_locates": 64, "n_orders": 4096, "n_ways": 4, "n_levels": 3},
    "shallow-1": {"n_instruments": 64, "n_locates": 32, "n_orders": 2048, "n_ways": 8, "n_levels": 1},
}
TINY = {"n_instruments": 4, "n_locates": 8, "n_orders": 8, "n_ways": 2, "n_levels": 4}
STROBES = ("unsubscribed", "unknown_order", "order_overflow", "level_eviction", "locate_mismatch", "over_execution",
           "duplicate_order")  # fmt: skip
KIND_OF = {"A": BookOpKind.ADD, "F": BookOpKind.ADD, "E": BookOpKind.EXECUTE, "C": BookOpKind.EXECUTE,
           "X": BookOpKind.CANCEL, "D": BookOpKind.DELETE, "U": BookOpKind.REPLACE,
           "H": BookOpKind.TRADING_ACTION}  # fmt: skip
BID, ASK = 0, 1


# --- ITCH -> BOOK_OP, ITCH -> model records ---------------------------------------------------------------------


def book_op(sequence: int, raw: bytes) -> dict | None:
    """The BOOK_OP transfer of one ITCH message (None for messages that do not touch the book)."""
    letter = chr(raw[0])
    kind = KIND_OF.get(letter)
    if kind is None:
        return None
    msg = itch.decode(raw)
    op = {"kind": kind, "cause": raw[0], "locate": msg.stock_locate, "sequence": sequence,
          "timestamp": msg.timestamp, "ref": 0, "new_ref": 0, "side": 0, "shares": 0, "price": 0,
          "halted": 0}  # fmt: skip
    if letter in "AF":
        op.update(ref=msg.order_reference_number, side=int(msg.buy_sell_indicator == "S"), shares=msg.shares,
                  price=msg.price)  # fmt: skip
    elif letter in "EC":
        op.update(ref=msg.order_reference_number, shares=msg.executed_shares)
    elif letter == "X":
        op.update(ref=msg.order_reference_number, shares=msg.cancelled_shares)
    elif letter == "D":
        op.update(ref=msg.order_reference_number)
    elif letter == "U":
        op.update(ref=msg.original_order_reference_number, new_ref=msg.new_order_reference_number,
                  shares=msg.shares, price=msg.price)  # fmt: skip
    else:
        op.update(halted=int(msg.trading_state != "T"))
    return op


def book_ops(messages: list[bytes], first_sequence: int = 1) -> list[dict]:
    return [op for seq, raw in enumerate(messages, first_sequence) if (op := book_op(seq, raw)) is not None]


def framed(messages: list[bytes]) -> itch_file.Chunk:
    return itch_file.read_all(b"".join(len(raw).to_bytes(2, "big") + raw for raw in messages))


def model_records(messages: list[bytes], *, lenient: bool = False, first_sequence: int = 1) -> np.ndarray:
    return BookModel(lenient=lenient).apply_chunk(framed(messages), first_sequence)


def model_tops(messages: list[bytes], *, lenient: bool = False) -> list[tuple[int, tuple]]:
    """(locate, model top after it) of every message: bid p/s/n, ask p/s/n, flags (HALTED only)."""
    model = BookModel(lenient=lenient)
    out = []
    for seq, raw in enumerate(messages, 1):
        model.apply_chunk(framed([raw]), seq)
        locate = int.from_bytes(raw[1:3], "big")
        out.append((locate, model.book(locate).top()))
    return out


def as_records(raw: list[int]) -> np.ndarray:
    return np.frombuffer(b"".join(r.to_bytes(bbo.SIZE, "little") for r in raw), dtype=bbo.DTYPE).copy()


def top_of(record) -> tuple:
    return tuple(int(record[name]) for name in (*bbo.TOP_FIELDS, "flags"))


def assert_same_records(got: np.ndarray, want: np.ndarray) -> None:
    """Record by record in canonical form, so a failure names the first record that differs."""
    for i in range(min(len(got), len(want))):
        if bbo.canonical_bytes(got[i : i + 1]) != bbo.canonical_bytes(want[i : i + 1]):
            raise AssertionError(f"record {i} differs:\n engine {got[i]}\n model  {want[i]}")
    assert len(got) == len(want), f"engine made {len(got)} records, the model {len(want)}"


# --- ITCH builders for directed tests ------------------------------------------------------------------------------


def add(ref, side, shares, price, locate=1, letter="A"):
    extra = {"attribution": "MPID"} if letter == "F" else {}
    return itch.encode(letter, stock_locate=locate, tracking_number=0, timestamp=1000 + ref, order_reference_number=ref,
                       buy_sell_indicator=side, shares=shares, stock="T", price=price, **extra)  # fmt: skip


def execute(ref, shares, locate=1):
    return itch.encode("E", stock_locate=locate, tracking_number=0, timestamp=2000 + ref, order_reference_number=ref,
                       executed_shares=shares, match_number=1)  # fmt: skip


def execute_at(ref, shares, price, locate=1):
    return itch.encode("C", stock_locate=locate, tracking_number=0, timestamp=3000 + ref, order_reference_number=ref,
                       executed_shares=shares, match_number=2, printable="Y", execution_price=price)  # fmt: skip


def cancel(ref, shares, locate=1):
    return itch.encode("X", stock_locate=locate, tracking_number=0, timestamp=4000 + ref, order_reference_number=ref,
                       cancelled_shares=shares)  # fmt: skip


def delete(ref, locate=1):
    return itch.encode("D", stock_locate=locate, tracking_number=0, timestamp=5000 + ref, order_reference_number=ref)


def replace(ref, new_ref, shares, price, locate=1):
    return itch.encode("U", stock_locate=locate, tracking_number=0, timestamp=6000 + ref,
                       original_order_reference_number=ref, new_order_reference_number=new_ref, shares=shares,
                       price=price)  # fmt: skip


def halt(state, locate=1):
    return itch.encode("H", stock_locate=locate, tracking_number=0, timestamp=7000, stock="T", trading_state=state,
                       reserved=" ", reason="")  # fmt: skip


def system_event():
    """A message that does not touch the book: stands in for refused input in the model's copy of a feed."""
    return itch.encode("S", stock_locate=0, tracking_number=0, timestamp=0, event_code="O")


# --- test bench ----------------------------------------------------------------------------------------------------


class TB:
    """BookEngine with an op source (idle cycles per `set_idle_generator`), a record sink (back-pressure per
    `set_backpressure_generator`) and a monitor that logs handshakes and strobes by cycle and drives
    `timestamp` with the cycle number.

    `run(steps)`: each step is an op payload, "clear" (strobe clear the cycle after the last op was taken, wait
    for it to finish) or "drain" (wait until every record is out).
    """

    def __init__(self, engine: BookEngine, subscriptions: list[tuple[int, int, int]]) -> None:
        self.engine = engine
        self.subscriptions = subscriptions  # (locate, slot, valid) table writes
        self.idle = Flow()
        self.backpressure = Flow()
        self.records: list[int] = []
        self.accepted: list[tuple[int, int, int]] = []  # (cycle, sequence, kind) of every op taken
        self.transfers: list[int] = []  # cycle of every record taken
        self.first_valid: list[int] = []  # cycle records.valid first showed each record
        self.strobes: Counter[str] = Counter()
        self.strobe_cycles: dict[str, list[int]] = {name: [] for name in STROBES}
        self.orders_live: list[int] = []
        self.clearing_cycles = 0
        self.cycle = 0
        self.done = False

    def set_idle_generator(self, idle: float, seed: int = 1) -> None:
        self.idle = Flow(idle, seed)

    def set_backpressure_generator(self, idle: float, seed: int = 2) -> None:
        self.backpressure = Flow(idle, seed)

    async def _subscribe(self, ctx) -> None:
        e = self.engine
        for locate, slot, valid in self.subscriptions:
            ctx.set(e.table_write, 1)
            ctx.set(e.table_locate, locate)
            ctx.set(e.table_slot, slot)
            ctx.set(e.table_valid, valid)
            await ctx.tick()
        ctx.set(e.table_write, 0)

    async def _drain(self, ctx) -> None:
        quiet = 0
        while quiet < 16:  # longer than the latency
            _, _, valid = await ctx.tick().sample(self.engine.records.valid)
            quiet = 0 if valid else quiet + 1

    async def _sink(self, ctx) -> None:
        while not self.done:
            if ctx.get(self.engine.records.valid):  # then stream_get returns: valid holds until taken
                self.records.append(int(await stream_get(ctx, self.engine.records, self.backpressure)))
            else:
                await ctx.tick()

    async def _monitor(self, ctx) -> None:
        e = self.engine
        watched = (e.ops.valid, e.ops.ready, e.ops.payload.sequence, e.ops.payload.kind, e.records.valid,
                   e.records.ready, e.orders_live, e.clearing, *(getattr(e, name) for name in STROBES))  # fmt: skip
        showing = False  # records.valid was high last cycle without a transfer
        async for sample in ctx.tick().sample(*watched):
            _, _, op_valid, op_ready, sequence, kind, rec_valid, rec_ready, live, clearing, *strobes = sample
            if op_valid and op_ready:
                self.accepted.append((self.cycle, sequence, kind))
            if rec_valid and not showing:
                self.first_valid.append(self.cycle)
            if rec_valid and rec_ready:
                self.transfers.append(self.cycle)
            showing = bool(rec_valid and not rec_ready)
            for name, value in zip(STROBES, strobes):
                if value:
                    self.strobes[name] += 1
                    self.strobe_cycles[name].append(self.cycle)
            self.orders_live.append(live)
            self.clearing_cycles += clearing
            self.cycle += 1
            ctx.set(e.timestamp, self.cycle)
            if self.done:
                break

    def run(self, steps: list, *, max_cycles: int = 100_000, vcd: str | None = None) -> np.ndarray:
        e = self.engine

        async def main(ctx):
            await self._subscribe(ctx)
            for step in steps:
                if step == "drain":
                    await self._drain(ctx)
                elif step == "clear":  # right behind the last op: the ops in flight finish first
                    ctx.set(e.clear, 1)
                    await ctx.tick()
                    ctx.set(e.clear, 0)
                    await ctx.tick().until(~e.clearing)
                else:
                    await stream_put(ctx, e.ops, step, self.idle)
            await self._drain(ctx)
            self.done = True

        sim = Simulator(e)
        sim.add_clock(1e-6)
        sim.add_testbench(main)
        sim.add_testbench(self._sink)
        sim.add_testbench(self._monitor)
        with sim.write_vcd(vcd) if vcd else contextlib.nullcontext():
            time_steps = 0
            while sim.advance():  # sim.run() with a watchdog (two time steps a cycle)
                time_steps += 1
                assert time_steps < 2 * max_cycles, f"the test bench did not finish in {max_cycles} cycles"
        return as_records(self.records)


def run_messages(config: dict, steps: list, *, idle=0.0, backpressure=0.0, subscriptions=None):
    """Run ITCH messages (bytes) and TB steps ("clear", "drain") through a BookEngine; returns (TB, records).

    Every locate the messages use is subscribed (slots in locate order) unless `subscriptions` says otherwise.
    """
    engine = BookEngine(**config)
    g = engine.geometry
    ops, sequence = [], 1
    for step in steps:
        if isinstance(step, str):
            ops.append(step)
            continue
        if (op := book_op(sequence, step)) is not None:
            ops.append(op)
        sequence += 1
    if subscriptions is None:
        locates = sorted({op["locate"] for op in ops if isinstance(op, dict)})
        assert len(locates) <= g.n_instruments and max(locates) < g.n_locates
        subscriptions = [(locate, slot, 1) for slot, locate in enumerate(locates)]
    tb = TB(engine, subscriptions)
    tb.set_idle_generator(idle)
    tb.set_backpressure_generator(backpressure)
    return tb, tb.run(ops)


FLOWS = pytest.mark.parametrize("flow", [(0.0, 0.0), (0.3, 0.3)], ids=["full-rate", "idle-backpressure"])
EACH_CONFIG = pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())


# --- golden comparison ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def market() -> list[bytes]:
    return list(generate(20, 3000, seed=7))


@EACH_CONFIG
@FLOWS
def test_market_matches_model(config, flow, market):
    tb, got = run_messages(config, market, idle=flow[0], backpressure=flow[1])
    model = BookModel()
    want = model.apply_chunk(framed(market), 1)
    assert len(want) > 500
    assert_same_records(got, want)
    assert tb.strobes == Counter(), f"valid input raised {dict(tb.strobes)}"
    assert tb.orders_live[-1] == len(model.orders)


# --- the hidden-level rule --------------------------------------------------------------------------------------------


class LevelRule:
    """The hidden-level policy of hdl.book.levels, replayed beside the golden model: which prices of a side are in
    the level array, how many orders are hidden and the best hidden price; `degraded` is the rule.

    It tracks prices and order counts only: the tops themselves come from the model.
    """

    def __init__(self, n_levels: int) -> None:
        self.n_levels = n_levels
        self.levels: dict[tuple[int, int], dict[int, int]] = {}  # (locate, side) -> price -> orders
        self.hidden: Counter[tuple[int, int]] = Counter()
        self.hidden_best: dict[tuple[int, int], int] = {}
        self.orders: dict[int, list[int]] = {}  # ref -> [locate, side, price, shares]

    @staticmethod
    def better(side: int, a: int, b: int) -> bool:
        return a < b if side == ASK else a > b

    def _hide(self, key, count: int, price: int) -> None:
        if self.hidden[key] == 0 or self.better(key[1], price, self.hidden_best[key]):
            self.hidden_best[key] = price
        self.hidden[key] += count

    def _insert(self, key, price: int) -> None:
        levels = self.levels.setdefault(key, {})
        if price in levels:
            levels[price] += 1
            return
        ranked = sorted(levels, key=lambda p: p if key[1] == ASK else -p)
        if len(ranked) == self.n_levels:
            if all(self.better(key[1], p, price) for p in ranked):
                self._hide(key, 1, price)
                return
            self._hide(key, levels.pop(ranked[-1]), ranked[-1])
        levels[price] = 1

    def _remove(self, key, price: int) -> None:
        levels = self.levels[key]
        if price in levels:
            levels[price] -= 1
            if levels[price] == 0:
                del levels[price]
        else:
            self.hidden[key] -= 1

    def apply(self, raw: bytes) -> None:
        op = book_op(0, raw)
        if op is None or op["kind"] == BookOpKind.TRADING_ACTION:
            return
        if op["kind"] == BookOpKind.ADD:
            self.orders[op["ref"]] = [op["locate"], op["side"], op["price"], op["shares"]]
            self._insert((op["locate"], op["side"]), op["price"])
            return
        order = self.orders[op["ref"]]
        take = order[3] if op["kind"] in (BookOpKind.DELETE, BookOpKind.REPLACE) else op["shares"]
        order[3] -= take
        if order[3] == 0:
            del self.orders[op["ref"]]
            self._remove((order[0], order[1]), order[2])
        if op["kind"] == BookOpKind.REPLACE:
            self.orders[op["new_ref"]] = [order[0], order[1], op["price"], op["shares"]]
            self._insert((order[0], order[1]), op["price"])

    def degraded(self, locate: int, side: int) -> bool:
        key = (locate, side)
        if self.hidden[key] == 0:
            return False
        levels = self.levels.get(key)
        if not levels:
            return True
        best = min(levels) if side == ASK else max(levels)
        return not self.better(side, best, self.hidden_best[key])


def check_against_rule(messages: list[bytes], got: np.ndarray, n_levels: int) -> Counter[str]:
    """The engine's records against the model plus the rule, message by message:
    - a record's flags are HALTED as the model says and DEGRADED exactly when the rule does;
    - a record without DEGRADED carries the model's top;
    - whenever the rule proves an instrument's top, the last record of that instrument equals the model's top.
    Returns how many records were exact / degraded.
    """
    tops = model_tops(messages)
    rule = LevelRule(n_levels)
    by_sequence = {int(r["sequence"]): r for r in got}
    assert len(by_sequence) == len(got), "two records for one message"
    last: dict[int, tuple] = {}
    seen: Counter[str] = Counter()
    for seq, raw in enumerate(messages, 1):
        rule.apply(raw)
        locate, model_top = tops[seq - 1]
        degraded = rule.degraded(locate, BID) or rule.degraded(locate, ASK)
        flags = model_top[6] | (bbo.FLAG_DEGRADED if degraded else 0)
        record = by_sequence.get(seq)
        if record is not None:
            assert int(record["locate"]) == locate and record["cause"] == raw[:1], f"record {record} for {raw[:1]}"
            assert int(record["itch_timestamp"]) == itch.decode(raw).timestamp
            assert int(record["flags"]) == flags, f"sequence {seq}: flags {record['flags']}, want {flags}"
            if not degraded:
                assert top_of(record) == model_top, f"sequence {seq}: exact top {top_of(record)} != {model_top}"
            last[locate] = top_of(record)
            seen["degraded" if degraded else "exact"] += 1
        if not degraded and chr(raw[0]) in KIND_OF:
            assert last.get(locate, (0,) * 7) == model_top, f"sequence {seq}: no record of the model's top {model_top}"
    return seen


@pytest.mark.parametrize("config", SHALLOW.values(), ids=SHALLOW.keys())
@FLOWS
def test_market_hidden_levels(config, flow, market):
    """Books deeper than the level array: DEGRADED exactly when the rule says, the model's top otherwise."""
    tb, got = run_messages(config, market, idle=flow[0], backpressure=flow[1])
    seen = check_against_rule(market, got, config["n_levels"])
    assert seen["exact"] > 300 and seen["degraded"] > 10, seen
    assert tb.strobes["level_eviction"] > 0
    assert set(tb.strobes) == {"level_eviction"}


@pytest.mark.parametrize("config", [SHALLOW["shallow-3"], {**TINY, "n_orders": 64}], ids=["shallow-3", "tiny"])
@FLOWS
def test_hidden_levels_directed(config, flow):
    """A full array, an order hidden behind it, a level pushed out, the array emptied while orders are hidden."""
    n = config["n_levels"]
    messages = [add(i, "B", 100, 101 - i) for i in range(1, n + 1)]  # the array is full: 100 .. 101 - n
    messages += [
        add(11, "B", 100, 90),  # hidden behind the full array; the best stays exact: no record
        add(12, "B", 100, 101),  # a new best pushes the worst level (order n) out
        delete(12),
        *(delete(i) for i in range(1, n)),  # the array empties, two orders hidden: DEGRADED, empty bid
        delete(n),  # a hidden order leaves (its price has no level): one left
        add(13, "B", 50, 80),  # a level behind the best hidden price: still DEGRADED
        add(14, "S", 10, 200),
        delete(11),  # the last hidden order leaves: exact again
    ]
    tb, got = run_messages(config, messages, idle=flow[0], backpressure=flow[1])
    seen = check_against_rule(messages, got, n)
    assert tb.strobe_cycles["level_eviction"] and tb.strobes["level_eviction"] == 2
    degraded = [int(r["sequence"]) for r in got if r["flags"] & bbo.FLAG_DEGRADED]
    assert degraded == [2 * n + 2, 2 * n + 4, 2 * n + 5], seen
    by_sequence = {int(r["sequence"]): r for r in got}
    assert top_of(by_sequence[2 * n + 2]) == (0, 0, 0, 0, 0, 0, bbo.FLAG_DEGRADED)
    assert top_of(by_sequence[2 * n + 4])[:3] == (80, 50, 1)  # the model has 90 here: flagged
    assert top_of(got[-1]) == (80, 50, 1, 200, 10, 1, 0)


# --- directed -----------------------------------------------------------------------------------------------------


@EACH_CONFIG
@FLOWS
def test_each_op_kind(config, flow):
    messages = [
        add(1, "B", 100, 1000),
        add(2, "B", 200, 1000),  # joins the best level
        add(3, "S", 100, 1010, letter="F"),
        add(4, "B", 300, 990, locate=2),  # another instrument, interleaved
        execute(1, 50),  # E, partial
        execute_at(2, 200, 999),  # C, all of it: the level keeps order 1
        cancel(3, 40),  # X, partial
        cancel(3, 60),  # X, the rest: the ask side empties
        add(5, "B", 100, 995),  # behind the best: no record
        delete(1),  # D: the best level goes, 995 is the best
        add(6, "S", 10, 1020),
        replace(6, 7, 20, 1015),  # U
        execute(4, 300, locate=2),
        halt("H"),
        halt("T"),
    ]
    tb, got = run_messages(config, messages, idle=flow[0], backpressure=flow[1])
    assert_same_records(got, model_records(messages))
    assert [int(r["sequence"]) for r in got] == [i for i in range(1, len(messages) + 1) if i != 9]
    assert tb.orders_live[-1] == 2 and tb.strobes == Counter()


@EACH_CONFIG
@FLOWS
def test_replace_moves_best(config, flow):
    messages = [
        add(1, "B", 100, 100),
        add(2, "B", 100, 99),
        add(3, "B", 100, 98),
        add(9, "S", 100, 110),
        replace(1, 4, 100, 97),  # the best leaves for a worse price: 99 is the best
        replace(2, 5, 100, 101),  # the best improves
        replace(5, 6, 300, 101),  # same price, new size: shares change
        replace(3, 7, 100, 98),  # behind the best: no record
        replace(6, 6, 100, 102),  # the new reference is the old one
        replace(9, 10, 100, 105),  # the ask improves
        replace(10, 11 + 1024, 100, 105),  # same price and size, another set: the top does not change
        replace(7, 8, 100, 102),  # joins the best level
        replace(6, 12, 100, 96),  # the best level loses an order
    ]
    tb, got = run_messages(config, messages, idle=flow[0], backpressure=flow[1])
    want = model_records(messages)
    assert_same_records(got, want)
    assert {2, 3, 8, 11} == set(range(1, len(messages) + 1)) - {int(r["sequence"]) for r in got}
    assert tb.strobes == Counter()
    assert tb.orders_live[-1] == 4


@EACH_CONFIG
@FLOWS
def test_halts(config, flow):
    messages = [
        halt("H"),  # halted with an empty book: a record with FLAG_HALTED
        add(1, "B", 100, 100),
        halt("P", locate=2),
        halt("T"),
        halt("T"),  # nothing changes: no record
        halt("Q"),
        add(2, "S", 100, 101),
        halt("T", locate=2),
        halt("T"),
    ]
    _, got = run_messages(config, messages, idle=flow[0], backpressure=flow[1])
    assert_same_records(got, model_records(messages))
    assert [int(r["sequence"]) for r in got] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert [int(r["flags"]) for r in got] == [1, 1, 1, 0, 1, 1, 0, 0]


@pytest.mark.parametrize("config", [TINY, {**CONFIGS["small"], "n_orders": 8, "n_ways": 2}], ids=["tiny", "small-8"])
@FLOWS
def test_order_overflow(config, flow):
    """Three orders in a 2-way set: the third is not booked; its instrument is DEGRADED until clear."""
    sets = config["n_orders"] // config["n_ways"]
    a, b, c = 1, 1 + sets, 1 + 2 * sets  # one set
    messages = [
        add(a, "B", 100, 1000),
        add(b, "B", 100, 999),
        add(2, "S", 100, 1100, locate=2),  # another instrument: never DEGRADED
        add(c, "B", 100, 998),  # overflow: not booked, DEGRADED (the top itself is still right)
        add(3, "B", 100, 1001),
        execute(c, 100),  # the order the engine could not book: unknown
        delete(3),
        delete(2, locate=2),
    ]
    steps = [*messages, "clear", add(a, "B", 100, 990)]
    tb, got = run_messages(config, steps, idle=flow[0], backpressure=flow[1])
    tops = model_tops(messages)
    assert tb.strobes == Counter(order_overflow=1, unknown_order=1)
    degraded = bbo.FLAG_DEGRADED
    want = [
        (1, tops[0][1]),
        (3, tops[2][1]),
        (4, (*tops[3][1][:6], degraded)),  # the overflow's own record: only the flag changed
        (5, (*tops[4][1][:6], degraded)),
        (7, (*tops[6][1][:6], degraded)),
        (8, tops[7][1]),
        (9, (990, 100, 1, 0, 0, 0, 0)),  # cleared: a fresh book, no flag
    ]
    assert [(int(r["sequence"]), top_of(r)) for r in got] == want
    assert tb.orders_live[-1] == 1 and max(tb.orders_live) == 4


@EACH_CONFIG
@FLOWS
def test_unsubscribed(config, flow):
    far = 40000  # beyond n_locates of every configuration
    messages = [
        add(1, "B", 100, 100),
        add(2, "B", 100, 200, locate=2),  # locate 2 never subscribed
        add(3, "B", 100, 300, locate=3),  # written invalid
        add(4, "B", 100, 400, locate=far),
        add(5, "B", 100, 101),
        replace(2, 6, 100, 200, locate=2),  # dropped once, not twice
        halt("H", locate=3),
        delete(1),
    ]
    subscriptions = [(1, 0, 1), (3, 1, 0), (far, 1, 1)]
    tb, got = run_messages(config, messages, idle=flow[0], backpressure=flow[1], subscriptions=subscriptions)
    want = model_records(messages)
    assert_same_records(got, want[want["locate"] == 1])
    assert tb.strobes == Counter(unsubscribed=5)


@EACH_CONFIG
@FLOWS
def test_bad_references(config, flow):
    """Unknown references, another instrument's order, over-execution, duplicates: each refused and counted; the
    model sees the input as it is after the engine's policy."""
    feed = [
        add(1, "B", 100, 100),
        add(2, "B", 100, 100, locate=2),
        execute(77, 10),  # unknown
        delete(2),  # order 2 is locate 2's: ignored
        add(3, "B", 300, 101),
        execute(3, 500),  # more than remains: the order goes
        add(1, "S", 100, 110),  # a live reference: ignored
        replace(88, 4, 100, 105),  # unknown: no add either
        add(5, "B", 100, 99),
        replace(5, 1, 100, 102),  # the new reference is live: the removal stands, the add is refused
        delete(1),
    ]
    policy = list(feed)
    policy[3] = system_event()
    policy[5] = execute(3, 300)
    policy[6] = system_event()
    policy[9] = delete(5)
    tb, got = run_messages(config, feed, idle=flow[0], backpressure=flow[1])
    want = model_records(policy, lenient=True)
    want["cause"][want["sequence"] == 10] = b"U"
    assert_same_records(got, want)
    assert tb.strobes == Counter(unknown_order=2, locate_mismatch=1, over_execution=1, duplicate_order=2)
    assert tb.orders_live[-1] == 1


@EACH_CONFIG
@FLOWS
def test_clear(config, flow):
    before = [add(1, "B", 100, 100), add(2, "S", 100, 110, locate=2), add(3, "B", 100, 105), halt("H", locate=2),
              replace(1, 6, 100, 106)]  # fmt: skip
    after = [add(4, "B", 10, 90), delete(3), add(5, "S", 10, 120, locate=2), delete(6)]
    tb, got = run_messages(config, [*before, "clear", *after], idle=flow[0], backpressure=flow[1])
    assert_same_records(got[: len(before)], model_records(before))
    assert_same_records(got[len(before) :], model_records(after, lenient=True, first_sequence=len(before) + 1))
    assert tb.strobes == Counter(unknown_order=2)  # orders 3 and 6 went with the clear
    wipe = BookGeometry(**config).wipe_cycles
    assert wipe <= tb.clearing_cycles <= wipe + (LATENCY - 2 if flow == (0.0, 0.0) else 50)  # + the ops in flight
    assert tb.orders_live[-1] == 2


# --- throughput and latency ----------------------------------------------------------------------------------------


LATENCY = 8  # cycles from an op's acceptance to its record on `records`, for every kind
INTERVAL = {"REPLACE": 3}  # cycles from an op's acceptance to the next one's, at full rate; 2 for the others


def latencies_and_gaps(tb: TB, got: np.ndarray) -> tuple[Counter, Counter]:
    """(kind, cycles from acceptance to records.valid) of every record and (kind, cycles to the next acceptance)."""
    cycles = [cycle for cycle, _, _ in tb.accepted]
    kinds = [kind for _, _, kind in tb.accepted]
    gaps = Counter((BookOpKind(kind).name, b - a) for a, b, kind in zip(cycles, cycles[1:], kinds))
    accepted = {sequence: (cycle, kind) for cycle, sequence, kind in tb.accepted}
    latency = Counter()
    for record, shown in zip(got, tb.first_valid):
        cycle, kind = accepted[int(record["sequence"])]
        latency[BookOpKind(kind).name, shown - cycle] += 1
    return latency, gaps


@EACH_CONFIG
def test_throughput_and_latency(config, market):
    """Ops offered every cycle, records always ready: an op every 2 cycles (a REPLACE every 3), every record
    LATENCY cycles after its op, card_timestamp the cycle the record was made."""
    messages = market[:1200]
    tb, got = run_messages(config, messages)
    assert_same_records(got, model_records(messages))
    latency, gaps = latencies_and_gaps(tb, got)
    assert set(gaps) == {(kind, INTERVAL.get(kind, 2)) for kind, _ in gaps}, gaps
    assert {cycles for _, cycles in latency} == {LATENCY}, latency
    assert {kind for kind, _ in latency} >= {"ADD", "EXECUTE", "DELETE", "REPLACE"}, latency
    assert [int(r["card_timestamp"]) for r in got] == [shown - 1 for shown in tb.first_valid]
    assert tb.transfers == tb.first_valid


def hot_symbol(sets: int) -> list[bytes]:
    """Back-to-back ops on one instrument, one side and one order set (references 1 + k * sets): joins, takes,
    REPLACE chains, references reused right after they leave, a REPLACE into its own set."""
    r = [1 + k * sets for k in range(8)]
    return [
        add(r[0], "B", 100, 1000),
        add(r[1], "B", 200, 1000),  # joins the level just made
        execute(r[0], 30),
        replace(r[1], r[2], 50, 1001),  # removal and add in one set, right behind an execute of that set
        replace(r[2], r[3], 60, 1002),  # a REPLACE burst on one order
        replace(r[3], r[4], 70, 1002),
        replace(r[4], r[1], 80, 999),  # r[1] left three ops ago: free again
        add(r[2], "B", 10, 1003),
        delete(r[2]),
        add(r[2], "B", 20, 1003),  # a reference reused right after its delete
        cancel(r[0], 70),  # r[0] leaves: 999 is the best
        add(r[5], "S", 10, 1010),
        replace(r[5], r[6], 10, 1009),
        execute(r[6], 10),
        execute(r[1], 80),
        delete(r[2]),
        halt("H"),
        add(r[7], "S", 5, 1011),
        halt("T"),
        delete(r[7]),
    ]


@pytest.mark.parametrize("config", [CONFIGS["small"], {**TINY, "n_orders": 16, "n_ways": 4}], ids=["small", "tiny"])
@pytest.mark.parametrize(
    "flow", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.8), (0.3, 0.5)], ids=["full-rate", "idle", "backpressure", "both"]
)
def test_hot_symbol(config, flow):
    """Ops of one instrument and one order set back to back (forwarding), with idle gaps and back-pressure."""
    messages = hot_symbol(config["n_orders"] // config["n_ways"]) * 3
    tb, got = run_messages(config, messages, idle=flow[0], backpressure=flow[1])
    assert_same_records(got, model_records(messages))
    assert tb.strobes == Counter() and tb.orders_live[-1] == 0
    latency, gaps = latencies_and_gaps(tb, got)
    if flow == (0.0, 0.0):
        assert set(gaps) == {(kind, INTERVAL.get(kind, 2)) for kind, _ in gaps}, gaps
        assert {cycles for _, cycles in latency} == {LATENCY}, latency
    else:
        assert min(cycles for _, cycles in latency) == LATENCY


def test_records_backpressure():
    """`records` not ready for long stretches: ops stop (the outbox holds what was made), nothing is lost or
    reordered, and once records flow again the book takes ops at full rate."""
    messages = hot_symbol(CONFIGS["small"]["n_orders"] // CONFIGS["small"]["n_ways"]) * 4
    tb, got = run_messages(CONFIGS["small"], messages, backpressure=0.95)
    assert_same_records(got, model_records(messages))
    _, gaps = latencies_and_gaps(tb, got)
    assert max(gap for _, gap in gaps) > 20, gaps  # ops waited for the outbox
    assert tb.strobes == Counter()


def test_verilog_converts():
    text = verilog.convert(BookEngine(), name="book_engine")
    assert "module book_engine" in text
