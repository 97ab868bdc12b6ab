# amaranth: UnusedElaboratable=no
"""CounterRam in Amaranth's simulator, driven cycle by cycle from a plan and checked against a model.

The model (`expected_values`) is the contract in a few lines of Python: a read returns the sum of its
counter's increments since its last clear, up to and including the read cycle, READ_LATENCY cycles later;
`value` is 0 in every other cycle. Plans push the design where a wrong one would show: every counter
incremented by its largest amount every cycle while reads come as close together as allowed (so the
pending counts run as long as they ever do between flushes), and random increments, clears and reads on
few counters (so every phase between the flusher, a read and a clear occurs; `Schedule` counts them).
(The first line silences Amaranth's UnusedElaboratable: some tests make a CounterRam only to inspect or
refuse it.)
"""

import random
from dataclasses import dataclass

import pytest
from amaranth.hdl import ResetInserter, Signal
from amaranth.sim import Simulator

from wirebook.hdl.csr.bank import RAM_AMOUNT_WIDTH
from wirebook.hdl.csr.counter_ram import MIN_READ_SPACING, READ_LATENCY, CounterRam, flush_interval
from wirebook.proto.registers import COUNTER, REGISTERS


@dataclass
class Cycle:
    """What is presented in one cycle."""

    increments: list[int]
    clear: bool = False
    read: int | None = None  # the counter read, if any
    reset: bool = False  # the clock domain's reset


def expected_values(plan: list[Cycle], amount_widths, width: int) -> list[int]:
    """`value` in every cycle of the plan (and READ_LATENCY after), as the contract says."""
    totals = [0] * len(amount_widths)
    out = [0] * (len(plan) + READ_LATENCY)
    for t, cycle in enumerate(plan):
        if cycle.reset:  # the counters and any answer on its way are gone
            totals = [0] * len(amount_widths)
            out[t + 1 : t + READ_LATENCY + 1] = [0] * READ_LATENCY
            continue
        for i, (amount, a) in enumerate(zip(cycle.increments, amount_widths)):
            totals[i] += amount & ((1 << a) - 1)  # bits above its amount width are ignored
        if cycle.clear:
            totals = [0] * len(amount_widths)
        if cycle.read is not None:
            out[t + READ_LATENCY] = totals[cycle.read] % (1 << width)
    return out


def simulate(dut: CounterRam, plan: list[Cycle]) -> list[int]:
    """Drive `plan`, one entry per cycle; `value` in each cycle (and READ_LATENCY after)."""
    reset = Signal()
    top = ResetInserter({"sync": reset})(dut)
    values = []

    async def bench(ctx):
        for cycle in [*plan, *(Cycle([0] * len(dut.amount_widths)) for _ in range(READ_LATENCY))]:
            for i, amount in enumerate(cycle.increments):
                ctx.set(dut.increment[i], amount)
            ctx.set(dut.clear, cycle.clear)
            ctx.set(dut.read, cycle.read is not None)
            ctx.set(dut.read_index, cycle.read or 0)
            ctx.set(reset, cycle.reset)
            values.append(ctx.get(dut.value))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return values


class Schedule:
    """The flusher's documented order, to aim reads at a counter just flushed and to count the collisions a
    plan made happen (never to predict values): counter 0 first after reset, one per cycle but for the cycle
    of a read."""

    def __init__(self, n: int):
        self.n = n
        self.flushed: list[int | None] = []  # the counter flushed in each cycle so far, or None
        self.turn = 0

    def step(self, cycle: Cycle) -> None:
        if cycle.reset:
            self.turn = 0
        flush = cycle.read is None and not cycle.reset
        self.flushed.append(self.turn if flush else None)
        self.turn = (self.turn + 1) % self.n if flush else self.turn

    def reads_after_a_flush_of_their_counter(self, plan: list[Cycle]) -> int:
        """Reads of a counter whose flush is writing its word back in the read cycle."""
        return sum(1 for t, c in enumerate(plan) if c.read is not None and t and self.flushed[t - 1] == c.read)

    def clears_during_a_flush(self, plan: list[Cycle]) -> int:
        """Clears in the cycle a flush took a count, or in the one it wrote its word back."""
        return sum(
            1
            for t, c in enumerate(plan)
            if c.clear and (self.flushed[t] is not None or (t and self.flushed[t - 1] is not None))
        )


def read_times(rng: random.Random, cycles: int, spacing: int, idle: float) -> set[int]:
    """Read cycles at least `spacing` apart: back to back when `idle` is 0."""
    times, t = set(), rng.randrange(spacing)
    while t < cycles:
        times.add(t)
        t += spacing
        while rng.random() < idle:
            t += 1
    return times


# CsrBank's CounterRam with the card's register map: its counters, read 9 cycles apart or more (`done` 8 cycles
# after a read strobe, the next strobe the cycle after at the earliest).
CARD = [r.amount_width for r in REGISTERS.of(COUNTER) for _ in range(r.elements) if r.amount_width <= RAM_AMOUNT_WIDTH]
GEOMETRIES = {  # amount widths, read spacing
    "one-counter": ([1], MIN_READ_SPACING),
    "two-counters": ([2, 1], MIN_READ_SPACING),
    "three-mixed": ([1, 8, 3], 4),
    "card": (CARD, 9),
}


@pytest.mark.parametrize("amount_widths,spacing", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_largest_increments_every_cycle_with_reads_back_to_back(amount_widths, spacing):
    """Every counter takes its largest amount every cycle while reads come every `spacing` cycles, each
    taking the flusher's cycle: a pending count too narrow for the longest wait between its flushes, or a
    flusher falling behind, loses counts."""
    dut = CounterRam(amount_widths, read_spacing=spacing)
    n = len(amount_widths)
    rng = random.Random(n)
    cycles = 4 * flush_interval(n, spacing) + 40
    reads = read_times(rng, cycles, spacing, idle=0.0)
    largest = [(1 << a) - 1 for a in amount_widths]
    plan = [Cycle(largest, read=rng.randrange(n) if t in reads else None) for t in range(cycles)]
    assert simulate(dut, plan) == expected_values(plan, amount_widths, 64)


RANDOM = {  # amount widths, read spacing, counter width (narrow ones wrap), cycles
    "one-counter": ([3], MIN_READ_SPACING, 10, 1500),
    "two-counters": ([1, 2], MIN_READ_SPACING, 12, 1500),
    "three-mixed": ([2, 1, 5], 5, 64, 1500),
    "card": (CARD, 9, 64, 800),
}


@pytest.mark.parametrize("amount_widths,spacing,width,cycles", RANDOM.values(), ids=RANDOM.keys())
@pytest.mark.parametrize("idle", [0.0, 0.3], ids=["reads-back-to-back", "reads-spread"])
def test_random_increments_clears_and_reads(amount_widths, spacing, width, cycles, idle):
    """Random amounts (with junk above each counter's amount width), clears at any moment (in a read's
    cycles, while a flush of the read counter is in flight), reads of random counters, counters that wrap."""
    dut = CounterRam(amount_widths, read_spacing=spacing, width=width)
    n = len(amount_widths)
    rng = random.Random(sum(amount_widths) + width)
    reads = read_times(rng, cycles, spacing, idle)
    widest = max(amount_widths)
    plan, schedule = [], Schedule(n)
    for t in range(cycles):
        increments = [rng.getrandbits(widest) if rng.random() < 0.8 else 0 for _ in range(n)]
        cycle = Cycle(increments, clear=rng.random() < 0.03)
        if t in reads:  # half the time the counter whose flush is writing its word back
            just_flushed = schedule.flushed[-1] if schedule.flushed else None
            cycle.read = just_flushed if just_flushed is not None and rng.random() < 0.5 else rng.randrange(n)
        schedule.step(cycle)
        plan.append(cycle)
    assert simulate(dut, plan) == expected_values(plan, amount_widths, width)
    assert schedule.reads_after_a_flush_of_their_counter(plan) > 0, "the plan never read a counter just flushed"
    assert schedule.clears_during_a_flush(plan) > 0, "the plan never cleared during a flush"


@pytest.mark.parametrize("n", [1, 3])
def test_every_phase_of_a_clear_around_a_read_and_a_flush(n):
    """For each distance from a clear to a read of a busy counter (before, in the read's cycles, after),
    and each position of the flusher (the plan slides by one cycle per round): the read loses exactly the
    increments up to and including the clear's cycle when the clear is not after the read."""
    spacing = 4
    dut = CounterRam([2] * n, read_spacing=spacing)
    plan = []
    for shift in range(n + 2):
        for distance in range(-3, 4):  # read cycle - clear cycle
            plan += [Cycle([3] * n) for _ in range(spacing + shift)]
            start = len(plan)
            plan += [Cycle([3] * n) for _ in range(8)]
            plan[start + 3].clear = True
            plan[start + 3 + distance].read = n - 1
    assert simulate(dut, plan) == expected_values(plan, [2] * n, 64)


def test_reset_reads_zero_though_the_memory_keeps_old_totals():
    dut = CounterRam([1, 1], read_spacing=MIN_READ_SPACING)
    plan = [Cycle([1, 1]) for _ in range(30)] + [Cycle([1, 0]) for _ in range(10)]  # flushed many times
    plan[20].read = 1
    plan[21].reset = True  # while the read is answered: its answer is gone too
    plan[33].read, plan[37].read = 0, 1
    values = simulate(dut, plan)
    assert values == expected_values(plan, [1, 1], 64)
    assert (values[22], values[33 + READ_LATENCY], values[37 + READ_LATENCY]) == (0, 12, 8)  # from cycle 22 on


def test_pending_counts_are_sized_by_the_flush_interval():
    dut = CounterRam([1, 2, 8], read_spacing=10)
    interval = flush_interval(3, 10)
    assert interval == (3 + 1) * 10 // 9  # 3 counters, a read taking the flusher's cycle at most every 10
    assert dut.pending_widths == tuple((interval * ((1 << a) - 1)).bit_length() for a in (1, 2, 8))


def test_refuses_what_it_cannot_count():
    with pytest.raises(ValueError, match="at least one counter"):
        CounterRam([], read_spacing=5)
    with pytest.raises(ValueError, match="reads at least 2 cycles apart"):
        CounterRam([1], read_spacing=1)
    with pytest.raises(ValueError, match="amount widths"):
        CounterRam([65], read_spacing=5)
