"""LineArbiter: the A and B lines of a feed merged by sequence number, against a reference of the policy;
LineSequencer: the same policy for line A alone (a one-line core), on the same bench.

Each scenario drives the two lines as packets of messages (different packetisation per line when it says
so), optionally with control strobes between phases. A monitor samples both inputs, the output and the
controls every cycle, keeps its own model of the arbiter's two head registers (a message taken by a line
is its head from the next cycle) and applies `Policy`, a plain reference written from the policy, to
them: every cycle it works out which heads are consumed (every duplicate head, even while the output is
stalled; of the new heads the lower sequence, tie A, with the other line's copy of the same sequence;
none in a control cycle or the two cycles after) and checks each line's ready against it (empty or consumed
head). Afterwards the passed messages, the duplicate and gap strobes (a gap with gap_first / gap_count, 2
cycles after its head was consumed), the output a cycle after its head was consumed, and the final status
must match the policy. Scenarios whose outcome does not depend on timing (both lines carry the same set
of sequences) are also checked against their absolute result.
"""

import random
from dataclasses import dataclass, field

import pytest
from amaranth.back import verilog
from amaranth.hdl import Signal
from amaranth.sim import Simulator

from wirebook.hdl.mold.arbiter import LineArbiter
from wirebook.hdl.mold.sequencer import LineSequencer
from wirebook.hdl.stream import MESSAGE_BYTES
from wirebook.sim.testbench import Flow, stream_put

A, B = 0, 1


# --- the policy, as a reference --------------------------------------------------------------------------


class Policy:
    """The arbiter's sequencing rules on one examined message at a time."""

    def __init__(self) -> None:
        self.expected = 0
        self.known = False

    def reset(self) -> None:
        self.known = False

    def set(self, value: int) -> None:
        self.expected, self.known = value, True

    def is_duplicate(self, sequence: int) -> bool:
        return self.known and sequence < self.expected

    def examine(self, sequence: int) -> tuple[str, int, int]:
        """("duplicate" | "pass" | "gap", gap_first, gap_count); updates the expected sequence."""
        if self.is_duplicate(sequence):
            return ("duplicate", 0, 0)
        verdict = (
            ("gap", self.expected, sequence - self.expected)
            if self.known and sequence > self.expected
            else ("pass", 0, 0)
        )
        self.expected, self.known = sequence + 1, True
        return verdict


def pick(offers: list[int | None]) -> int | None:
    """The line that passes when `offers` (new sequences, or None, per line) are on the inputs: lower, tie A."""
    if offers[A] is None:
        return None if offers[B] is None else B
    if offers[B] is None:
        return A
    return B if offers[B] < offers[A] else A


# --- scenarios -------------------------------------------------------------------------------------------


@dataclass
class Phase:
    """Packets (lists of sequence numbers) per line; `controls` are pulsed before the phase starts, once
    every earlier message has been judged (with `in_flight`: as soon as the lines took them, while the
    last ones may still wait in the head registers): "reset", ("set", value) or ("reset+set", value)."""

    packets: tuple[list[list[int]], list[list[int]]]
    controls: list = field(default_factory=list)
    in_flight: bool = False
    delay: tuple[int, int] = (0, 0)  # cycles before each line's first message
    packet_gap: tuple[int, int] = (2, 2)  # idle cycles between a line's packets


@dataclass
class Scenario:
    phases: list[Phase]
    passed: list[int] | None = None  # the output's sequences, when timing cannot change them
    gaps: list[tuple[int, int]] | None = None
    duplicates: int | None = None
    complete_when_b_runs: bool = False  # B carries everything and never idles: no gap whatever A does


def packetise(sequences: list[int], rng: random.Random, largest: int = 5) -> list[list[int]]:
    out, at = [], 0
    while at < len(sequences):
        n = rng.randint(1, largest)
        out.append(sequences[at : at + n])
        at += n
    return out


def lose(sequences: list[int], rng: random.Random, p: float) -> list[int]:
    return [s for s in sequences if rng.random() >= p]


def scenarios() -> dict[str, Scenario]:
    rng = random.Random(7)
    everything = list(range(1, 201))
    same = packetise(everything, rng)
    holes = [s for s in everything if not (40 <= s < 47 or s == 90 or 150 <= s < 152)]
    reset_phases = [
        Phase((packetise(list(range(1, 31)), rng), packetise(list(range(1, 31)), rng))),
        # a new session starts over at 1: without the reset every message would be a duplicate
        Phase((packetise(list(range(1, 21)), rng), packetise(list(range(1, 21)), rng)), ["reset"]),
        Phase((packetise(list(range(95, 111)), rng), packetise(list(range(95, 111)), rng)), [("set", 100)]),
        Phase(([[150, 151, 152]], [[150, 151, 152]]), [("set", 200)]),  # all behind: duplicates
        Phase(([list(range(305, 311))], [list(range(305, 311))]), [("set", 300)]),  # ahead: a gap of 5
        Phase(([list(range(1000, 1004))], [list(range(1000, 1004))]), ["reset"]),  # unknown: no gap
        Phase(([list(range(7, 12))], [list(range(7, 12))]), [("reset+set", 9)]),  # set wins over reset
        # gaps whose distance crosses 32 bits (the arbiter subtracts in 32-bit halves, with a borrow)
        Phase(([[2**32 - 2, 2**32 - 1, 2**32 + 5]], [[2**32 - 2, 2**32 - 1, 2**32 + 5]]), [("set", 2**32 - 2)]),
        Phase(([[2**40 + 3]], [[2**40 + 3]])),
    ]
    return {
        "identical": Scenario([Phase((same, same))], passed=everything, gaps=[], duplicates=len(everything)),
        "a_losses_b_fills": Scenario(
            [Phase((packetise(lose(everything, rng, 0.2), rng), [everything]), packet_gap=(2, 0))],
            complete_when_b_runs=True,
        ),
        "b_ahead": Scenario(
            [Phase((packetise(everything, rng), packetise(everything, rng)), delay=(25, 0))],
            passed=everything,
            gaps=[],
            duplicates=len(everything),
        ),
        "partial_overlap": Scenario(
            [Phase((packetise(everything, rng, 7), packetise(everything, rng, 3)), delay=(0, 3), packet_gap=(3, 1))],
            passed=everything,
            gaps=[],
            duplicates=len(everything),
        ),
        "gaps_in_both": Scenario(
            [Phase((packetise(holes, rng), packetise(holes, rng)), delay=(4, 0))],
            passed=holes,
            gaps=[(40, 7), (90, 1), (150, 2)],
            duplicates=len(holes),
        ),
        "both_lossy": Scenario(
            [Phase((packetise(lose(everything, rng, 0.15), rng), packetise(lose(everything, rng, 0.15), rng)))]
        ),
        # Controls while the last messages before them still wait in the heads: only the per-cycle policy
        # check applies (which of them pass depends on timing).
        "control_in_flight": Scenario(
            [
                Phase((packetise(list(range(1, 41)), rng), packetise(list(range(1, 41)), rng)), packet_gap=(0, 0)),
                Phase(([list(range(20, 31))], [list(range(25, 36))]), [("set", 28)], in_flight=True),
                Phase(([list(range(1, 11))], [list(range(1, 11))]), ["reset"], in_flight=True),
                Phase(([list(range(5, 9))], [list(range(6, 9))]), [("reset+set", 7)], in_flight=True),
            ]
        ),
        "reset_and_set": Scenario(
            reset_phases,
            passed=[
                *range(1, 31),
                *range(1, 21),
                *range(100, 111),
                *range(305, 311),
                *range(1000, 1004),
                9,
                10,
                11,
                2**32 - 2,
                2**32 - 1,
                2**32 + 5,
                2**40 + 3,
            ],
            gaps=[(300, 5), (2**32, 5), (2**32 + 6, 2**40 + 3 - (2**32 + 6))],
            duplicates=30 + 20 + (16 + 5) + 6 + 6 + 4 + (4 + 3) + 3 + 1,
        ),
    }


SCENARIOS = scenarios()


def one_line_scenarios() -> dict[str, Scenario]:
    """Line A alone: every two-line scenario with line B silent (its absolute results where they still hold),
    and a line that replays what it already sent, as a MoldUDP64 re-request's answer does."""
    rng = random.Random(11)
    out = {}
    for name, scenario in SCENARIOS.items():
        phases = [Phase((p.packets[A], []), p.controls, p.in_flight, (p.delay[A], 0), (p.packet_gap[A], 0))
                  for p in scenario.phases]  # fmt: skip
        out[name] = Scenario(phases)
    out["reset_and_set"].passed = SCENARIOS["reset_and_set"].passed
    out["reset_and_set"].gaps = SCENARIOS["reset_and_set"].gaps
    out["reset_and_set"].duplicates = 5 + 3 + 2  # 95-99 behind 100, 150-152 behind 200, 7-8 behind 9
    out["gaps_in_both"].passed = SCENARIOS["gaps_in_both"].passed
    out["gaps_in_both"].gaps = SCENARIOS["gaps_in_both"].gaps
    out["gaps_in_both"].duplicates = 0
    replayed = [*range(1, 51), *range(30, 61), *range(55, 71), *range(75, 101), *range(60, 80), *range(101, 121)]
    out["replayed"] = Scenario(
        [Phase((packetise(replayed, rng), []))],
        passed=[*range(1, 71), *range(75, 121)],
        gaps=[(71, 4)],
        duplicates=21 + 6 + 20,
    )
    # A copy loaded while the message it repeats passes (the same sequence back to back, or one inside a
    # gap just declared): behind because that message moved the expected sequence, not the one before it.
    out["repeat_at_once"] = Scenario(
        [Phase(([[*range(1, 11), 10, 10, 11, 20, 15, 21, 22]], []))],
        passed=[*range(1, 12), 20, 21, 22],
        gaps=[(12, 8)],
        duplicates=3,
    )
    # The expected sequence set past the message waiting in the head: judged again, it is a duplicate.
    out["set_past_the_head"] = Scenario(
        [
            Phase(([list(range(1, 41))], []), packet_gap=(0, 0)),
            Phase(([list(range(200, 205))], []), [("set", 100)], in_flight=True),
            Phase(([list(range(3, 9))], []), [("reset+set", 202)], in_flight=True),
        ]
    )
    return out


ONE_LINE_SCENARIOS = one_line_scenarios()

# (input idle probability, output back-pressure probability)
FLOWS = {"full_rate": (0.0, 0.0), "idle_and_backpressure": (0.3, 0.3), "heavy_backpressure": (0.0, 0.7)}


# --- the bench -------------------------------------------------------------------------------------------


def message(session: int, sequence: int) -> dict:
    """The same sequence carries the same bytes on both lines (a copy), different ones in another session.

    `line` is left at 0 on both lines: the arbiter sets it from the port the message came in on."""
    rng = random.Random(session * 1_000_003 + sequence)
    length = rng.randint(12, MESSAGE_BYTES)
    return {"data": int.from_bytes(rng.randbytes(length), "little"), "length": length, "sequence": sequence}


class TB:
    """Drives a LineArbiter through a scenario and records, per cycle, what went in and out."""

    def __init__(self, scenario: Scenario, idle: float, backpressure: float, seed: int = 1, dut=None) -> None:
        self.dut = LineArbiter() if dut is None else dut
        self.lines = len(self.dut.lines)  # 2, or 1 (LineSequencer: line A only)
        self.scenario = scenario
        self.flows = [Flow(idle, seed + line) for line in (A, B)]
        self.out_flow = Flow(backpressure, seed + 2)
        self.go = [False] * len(scenario.phases)
        self.done = [[False, self.lines == 1] for _ in scenario.phases]  # a one-line DUT: B is done
        self.final: dict[str, int] = {}
        self.received: list = []
        # (cycle, event): ("take", line, payload) | ("reset",) | ("set", value); event order = cycle order
        self.events: list = []
        self.out_valid_at: dict[int, int] = {}  # cycle -> sequence on the output when valid
        self.strobes: list[tuple[int, str, int, int]] = []  # (cycle, "duplicate" | "gap", first, count)
        self.errors: list[str] = []
        self.policy = Policy()  # the monitor's live copy, to check each cycle's arbitration
        self.heads: list = [None, None]  # the monitor's model of the arbiter's head registers
        self.stale = 0  # cycles left after a control strobe in which the heads are judged again
        self.cycle = 0  # the monitor's count of clock edges
        offered = sum(len(packet) for phase in scenario.phases for packets in phase.packets for packet in packets)
        self.cycle_limit = 10 * offered / (1 - max(idle, backpressure)) + 500

    def run(self) -> None:
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_testbench(self.control)
        for line in range(self.lines):
            sim.add_testbench(self.driver(line))
        sim.add_testbench(self.consume)
        sim.add_testbench(self.monitor, background=True)
        while sim.advance():  # sim.run(), with a watchdog: a DUT that loses a transfer would hang it
            assert self.cycle < self.cycle_limit, f"stuck after {self.cycle} cycles"
        assert not self.errors, self.errors[:5]

    async def wait_for(self, ctx, condition) -> None:
        while not condition():
            await ctx.tick()

    def driver(self, line: int):
        port = self.dut.lines[line]

        async def drive(ctx):
            for p, phase in enumerate(self.scenario.phases):
                await self.wait_for(ctx, lambda p=p: self.go[p])
                if phase.delay[line]:
                    await ctx.tick().repeat(phase.delay[line])
                for k, packet in enumerate(phase.packets[line]):
                    if k and phase.packet_gap[line]:
                        await ctx.tick().repeat(phase.packet_gap[line])
                    for sequence in packet:
                        await stream_put(ctx, port, message(p, sequence), self.flows[line])
                self.done[p][line] = True

        return drive

    async def control(self, ctx):
        dut = self.dut
        for p, phase in enumerate(self.scenario.phases):
            if p:  # a phase's controls once the messages before them have left the head registers
                await self.wait_for(
                    ctx,
                    lambda p=p, phase=phase: (
                        all(self.done[p - 1]) and (phase.in_flight or all(h is None for h in self.heads))
                    ),
                )
            for c in phase.controls:
                name, value = (c, 0) if isinstance(c, str) else c
                ctx.set(dut.reset, name in ("reset", "reset+set"))
                ctx.set(dut.expected_set, name in ("set", "reset+set"))
                ctx.set(dut.expected_value, value)
                await ctx.tick()
                ctx.set(dut.reset, 0)
                ctx.set(dut.expected_set, 0)
            self.go[p] = True
        await self.wait_for(ctx, lambda: all(self.done[-1]) and all(h is None for h in self.heads))
        await ctx.tick()
        while ctx.get(dut.messages.valid):
            await ctx.tick()
        await ctx.tick().repeat(3)
        self.final = {name: ctx.get(getattr(dut, name)) for name in ("expected", "expected_known")}
        self.final["known"] = self.final.pop("expected_known")

    async def consume(self, ctx):
        # The output has no ready: the consumer grants `space` in the cycles it could take a transfer in the
        # next one (here randomly, as back-pressure), and every valid cycle is a transfer. How many messages
        # come out depends on timing, so it samples cycle by cycle until the control process has seen the
        # output drain.
        out = self.dut.messages
        while not self.final:
            ctx.set(self.dut.space, self.out_flow.pause() == 0)
            _, _, valid, payload = await ctx.tick().sample(out.valid, out.payload)
            if valid:
                self.received.append(payload)

    async def monitor(self, ctx):
        dut = self.dut
        a, out = dut.lines[A], dut.messages
        b = dut.lines[B] if self.lines == 2 else None
        b_ports = (b.valid, b.ready, b.payload) if b is not None else (Signal(), Signal(init=1), Signal())  # silent
        async for _, _, *v in ctx.tick().sample(
            a.valid, a.ready, a.payload, *b_ports, out.valid, dut.space, out.payload,
            dut.reset, dut.expected_set, dut.expected_value, dut.duplicates, dut.gap, dut.gap_first, dut.gap_count,
        ):  # fmt: skip
            a_valid, a_ready, a_payload, b_valid, b_ready, b_payload, o_valid, space, o_payload = v[:9]
            reset, expected_set, expected_value, duplicates, gap, gap_first, gap_count = v[9:]
            if o_valid:
                self.out_valid_at[self.cycle] = o_payload.sequence
            for _ in range(duplicates):
                self.strobes.append((self.cycle, "duplicate", 0, 0))
            if gap:
                self.strobes.append((self.cycle, "gap", gap_first, gap_count))
            # The arbiter judges the messages in its head registers: the model keeps them too, a message
            # entering the head of its line the cycle after the input took it.
            heads = self.heads
            consumed = [False, False]
            if expected_set:
                self.events.append((self.cycle, ("set", expected_value)))
                self.policy.set(expected_value)
            elif reset:
                self.events.append((self.cycle, ("reset",)))
                self.policy.reset()
            elif not self.stale:  # two cycles after a control strobe, the heads are judged again: no decision
                behind = [heads[i] is not None and self.policy.is_duplicate(heads[i].sequence) for i in (A, B)]
                consumed = list(behind)
                line = pick([heads[i].sequence if heads[i] is not None and not behind[i] else None for i in (A, B)])
                if line is not None and space:
                    consumed[line] = True
                    other = B if line == A else A
                    if heads[other] is not None and not behind[other]:
                        consumed[other] = heads[other].sequence == heads[line].sequence
            self.stale = 2 if expected_set or reset else max(0, self.stale - 1)
            ready = [heads[i] is None or consumed[i] for i in (A, B)]
            if [bool(a_ready), bool(b_ready)] != ready:
                self.errors.append(f"cycle {self.cycle}: ready {a_ready, b_ready}, the policy's heads say {ready}")
            for line in (A, B):
                if consumed[line]:
                    self.policy.examine(heads[line].sequence)
                    self.events.append((self.cycle, ("take", line, heads[line])))
                    heads[line] = None
            for line, (valid, ready_now, payload) in enumerate(
                ((a_valid, a_ready, a_payload), (b_valid, b_ready, b_payload))
            ):
                if valid and ready_now:
                    heads[line] = payload
            self.cycle += 1


def expected_outcome(events: list) -> dict:
    """Replay the taken messages and controls, in order, through the policy."""
    policy = Policy()
    passed, strobes = [], []
    for cycle, event in events:
        if event[0] == "set":
            policy.set(event[1])
        elif event[0] == "reset":
            policy.reset()
        else:
            _, line, payload = event
            verdict, first, count = policy.examine(payload.sequence)
            if verdict == "duplicate":
                strobes.append((cycle + 1, "duplicate", 0, 0))
                continue
            if verdict == "gap":  # judged the cycle after the message is on the output
                strobes.append((cycle + 2, "gap", first, count))
            passed.append((cycle, line, payload))
    return {"passed": passed, "strobes": strobes, "expected": policy.expected, "known": policy.known}


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("name", SCENARIOS)
def test_line_arbiter(name, flow):
    check(SCENARIOS[name], flow, LineArbiter())


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("name", ONE_LINE_SCENARIOS)
def test_line_sequencer(name, flow):
    check(ONE_LINE_SCENARIOS[name], flow, LineSequencer())


def check(scenario: Scenario, flow: str, dut) -> None:
    idle, backpressure = FLOWS[flow]
    tb = TB(scenario, idle, backpressure, dut=dut)
    tb.run()
    ref = expected_outcome(tb.events)

    got = [(int(p.sequence), int(p.line), int(p.data), int(p.length)) for p in tb.received]
    want = [(int(p.sequence), line, int(p.data), int(p.length)) for _, line, p in ref["passed"]]
    assert got == want
    assert sorted(tb.strobes) == sorted(ref["strobes"])
    # Registered output: a head consumed in cycle k is on the output in cycle k + 1.
    for cycle, _, payload in ref["passed"]:
        assert tb.out_valid_at.get(cycle + 1) == payload.sequence, f"latency of sequence {payload.sequence}"
    assert tb.final["known"] == ref["known"]
    if ref["known"]:
        assert tb.final["expected"] == ref["expected"]

    # Whatever the timing, the output of a session is strictly increasing and only ever what came in.
    sequences = [s for s, *_ in got]
    if len(scenario.phases) == 1:
        assert sequences == sorted(set(sequences))
        offered = {s for packets in scenario.phases[0].packets for packet in packets for s in packet}
        assert set(sequences) <= offered
    if scenario.passed is not None:
        assert sequences == scenario.passed
        assert [(first, count) for _, kind, first, count in tb.strobes if kind == "gap"] == scenario.gaps
        assert sum(kind == "duplicate" for _, kind, _, _ in tb.strobes) == scenario.duplicates
    if scenario.complete_when_b_runs and idle == 0.0:
        assert sequences == sorted({s for packet in scenario.phases[0].packets[B] for s in packet})
        assert not any(kind == "gap" for _, kind, _, _ in tb.strobes)


@pytest.mark.parametrize("component", [LineArbiter, LineSequencer])
def test_converts_to_verilog(component):
    dut = component()
    ports = [port for _, _, port in dut.signature.flatten(dut) if isinstance(port, Signal)]  # not the const ready
    assert "module line_arbiter" in verilog.convert(dut, name="line_arbiter", ports=ports)
