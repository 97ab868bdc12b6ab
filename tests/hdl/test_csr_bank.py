"""CsrBank (and its AxiLiteTarget) in Amaranth's simulator, driven by an AXI4-Lite master.

Every expected value comes from the declaration (proto.registers): reset values, widths, which registers
are writable, what a word holds; counts come from the increments the test presents (`CountingCore`) and
timings from the latencies the bank documents (the constants below). Bus tests run at full rate and with
random idle cycles on AW/W/AR and back-pressure on B/R, with every write order (AW before W, W before AW,
together). Every bank test runs against both counter designs (`counters_in_ram`: flip-flops, block RAM);
the counter tests include the cases a RAM design could get wrong: every counter at its largest amount
every cycle under back-to-back reads, one counter read again and again, counter_reset at any moment.
"""

import contextlib
import gc
import random
import warnings

import pytest
from amaranth.back import verilog
from amaranth.hdl import UnusedElaboratable, Value
from amaranth.sim import Simulator

from wirebook.hdl.csr.axi_lite import AxiLiteTarget
from wirebook.hdl.csr.bank import CsrBank
from wirebook.proto.registers import (
    COMMAND,
    CONFIG,
    COUNTER,
    COUNTER_RESET,
    DROP_REASONS,
    REGISTERS,
    STATUS,
    WORD_BYTES,
    Register,
    RegisterMap,
)
from wirebook.sim.axi_lite_master import ORDERS, RESP_OKAY, RESP_SLVERR, AxiLiteMaster
from wirebook.sim.testbench import Flow

CONSTANTS = {"build_id": 0xC0FFEE42, "data_width": 64, "n_instruments": 1024, "n_orders": 65536, "n_levels": 8}
FLOWS = pytest.mark.parametrize("flow", [0.0, 0.5], ids=["full-rate", "idle-and-backpressure"])


@pytest.fixture(params=[False, True], ids=["counters-in-flops", "counters-in-ram"])
def counters_in_ram(request) -> bool:
    """The bank tests run against both counter designs (CsrBank's `counters_in_ram`)."""
    return request.param


class TB:
    """The bank, an AXI4-Lite master on its s_axil_* ports, and helpers that speak in registers."""

    def __init__(self, registers: RegisterMap = REGISTERS, *, flow: float = 0.0, seed: int = 0, **kwargs):
        self.registers = registers
        self.dut = CsrBank(registers, **kwargs)
        self.axil = AxiLiteMaster(self.dut, flow=Flow(flow, seed), backpressure=Flow(flow, seed + 1), seed=seed + 2)
        self.rng = random.Random(seed + 3)

    def run(self, *testbenches, background=()) -> None:
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        for bench in background:
            sim.add_testbench(bench, background=True)
        for bench in testbenches:
            sim.add_testbench(bench)
        sim.run()

    async def read_value(self, ctx, name: str, index=None) -> int:
        """A register's value, word 0 first (so a latched register reads consistently)."""
        r = self.registers[name]
        words = []
        for k in range(r.words):
            data, resp = await self.axil.read(ctx, r.address(index) + WORD_BYTES * k)
            assert resp == RESP_OKAY, f"read {name}[{index}] word {k}: SLVERR"
            words.append(data)
        return r.from_words(words)

    async def write_value(self, ctx, name: str, value, index=None, order=None) -> None:
        r = self.registers[name]
        for k, word in enumerate(r.to_words(value)):
            resp = await self.axil.write(ctx, r.address(index) + WORD_BYTES * k, word, order=order)
            assert resp == RESP_OKAY, f"write {name}[{index}] word {k}: SLVERR"


def elements(registers, access):
    """(register, element index for address(), element number) of every element of an access kind."""
    for r in registers.of(access):
        for i in range(r.elements):
            yield r, (i if r.is_array else None), i


def port_value(ctx, tb, r, index) -> int:
    return ctx.get(Value.cast(tb.dut.port(r.name, index)))


def random_value(rng, r: Register) -> int:
    return rng.getrandbits(r.width)


# What the bank documents about timing, in cycles (the reference the timing tests hold it to).
STROBE_AFTER_HANDSHAKE = 1  # AxiLiteTarget: the bus strobe is the cycle after AR (or the later of AW/W)
PULSE_AFTER_STROBE = 4  # a command pulses (and a config word changes) 4 cycles after the write strobe
COUNTED_AFTER_STROBE = 1  # a read counts the increments presented up to 1 cycle after its strobe
WRITE_RESPONSE = 6  # BVALID rises 6 cycles after the later of the AW and W handshakes
READ_RESPONSE = 10  # RVALID 10 cycles after the AR handshake
WRITE_BUS_CYCLES = 5  # a write keeps the bus from its strobe to its `done` (4 cycles later) inclusive
STROBE_TO_RVALID = READ_RESPONSE - STROBE_AFTER_HANDSHAKE  # RVALID rises 9 cycles after the read strobe


class CountingCore:
    """A background process standing in for the core: it presents random increments on some counters
    every cycle and records, numbering cycles from the start, each cycle's increments, the AR handshakes,
    the write handshakes (the later of AW and W), the RVALID rises and the `counter_reset` pulses. Expected
    counts are sums of what it presented, never values read from the bank."""

    def __init__(self, tb: TB, draws):
        self.tb = tb
        self.draws = draws  # {(name, index): function(rng) -> increment}
        self.presented = {key: [] for key in draws}
        self.ar, self.aw, self.w, self.resets = [], [], [], []
        self.r_rises = []  # one per read, in order: its strobe is STROBE_TO_RVALID cycles before

    async def run(self, ctx):
        dut = self.tb.dut
        handshakes = [
            (self.ar, dut.s_axil_arvalid, dut.s_axil_arready),
            (self.aw, dut.s_axil_awvalid, dut.s_axil_awready),
            (self.w, dut.s_axil_wvalid, dut.s_axil_wready),
        ]
        channels = [signal for _, valid, ready in handshakes for signal in (valid, ready)]
        cycle, r_valid_before = 0, 0
        while True:
            for (name, index), draw in self.draws.items():
                amount = draw(self.tb.rng)
                ctx.set(dut.port(name, index), amount)
                self.presented[name, index].append(amount)
            _, _, reset, r_valid, *sampled = await ctx.tick().sample(
                dut.command[COUNTER_RESET], dut.s_axil_rvalid, *channels
            )
            for (cycles, _, _), valid, ready in zip(handshakes, sampled[::2], sampled[1::2]):
                if valid and ready:
                    cycles.append(cycle)
            if reset:
                self.resets.append(cycle)
            if r_valid and not r_valid_before:
                self.r_rises.append(cycle)
            cycle, r_valid_before = cycle + 1, r_valid

    def count(self, key, after: int, through: int) -> int:
        """What the counter `key` was given in cycles after .. through (inclusive), modulo 2**64."""
        return sum(self.presented[key][after + 1 : through + 1]) % (1 << 64)

    def read_count(self, key, strobe: int) -> int:
        """What a read (a word 0, or a lone upper word) of counter `key` whose strobe was in cycle `strobe`
        returns: the increments after the last `counter_reset` pulse up to COUNTED_AFTER_STROBE after it."""
        through = strobe + COUNTED_AFTER_STROBE
        return self.count(key, max((p for p in self.resets if p <= through), default=-1), through)

    def read_strobe(self, n: int, *, bus_idle: bool = True) -> int:
        """The strobe cycle of the n-th read: after its AR handshake when the bus was idle; else (a write's
        access may have held it back) from its RVALID rise, as the card's register map times it."""
        return self.ar[n] + STROBE_AFTER_HANDSHAKE if bus_idle else self.r_rises[n] - STROBE_TO_RVALID

    def write_handshake(self, n: int) -> int:
        """The cycle the n-th write was accepted: the later of its AW and W handshakes."""
        return max(self.aw[n], self.w[n])

    async def stop(self, ctx):
        """Stop counting (every increment 0), so that the counts settle."""
        self.draws = dict.fromkeys(self.draws, lambda rng: 0)
        await ctx.tick()


def busy_counters():
    """Increments for a few counters: strobes, a 2-bit amount, and a 64-bit amount that carries into the
    upper word every few cycles (so that a torn or late carry shows)."""
    return {
        ("frames_a", None): lambda rng: int(rng.random() < 0.7),
        ("drops_b", "MAC"): lambda rng: int(rng.random() < 0.3),
        ("duplicates", None): lambda rng: rng.getrandbits(2),
        ("missing_messages", None): lambda rng: rng.choice((0, 1, (1 << 32) - 1, rng.getrandbits(33))),
        ("bbo_records", None): lambda rng: 1,
    }


# --- identity and status ------------------------------------------------------------------------------


@FLOWS
def test_identity_reads_declared_and_given_constants(flow, counters_in_ram):
    tb = TB(flow=flow, constants=CONSTANTS, counters_in_ram=counters_in_ram)

    async def bench(ctx):
        for r in REGISTERS:
            if r.constant:
                assert await tb.read_value(ctx, r.name) == CONSTANTS.get(r.name, r.reset), r.name
        magic = REGISTERS["magic"]
        assert magic.decode(await tb.read_value(ctx, "magic")) == "WBK1"

    tb.run(bench)


@contextlib.contextmanager
def never_elaborated():
    """For banks built only to be refused or inspected: no UnusedElaboratable warning when they are freed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        yield
        gc.collect()


def test_constants_are_checked():
    with never_elaborated():
        with pytest.raises(ValueError, match="'enable' is config"):
            CsrBank(constants={"enable": 1})
        with pytest.raises(ValueError, match="build_id.*32 bits"):
            CsrBank(constants={"build_id": 1 << 32})
        with pytest.raises(KeyError, match="'bild_id'"):
            CsrBank(constants={"bild_id": 1})


@FLOWS
def test_status_reads_the_core_values(flow, counters_in_ram):
    tb = TB(flow=flow, seed=1, counters_in_ram=counters_in_ram)
    values = {(r.name, i): random_value(tb.rng, r) for r, _, i in elements(REGISTERS, STATUS) if not r.constant}

    async def bench(ctx):
        for r, index, i in elements(REGISTERS, STATUS):
            if not r.constant:
                ctx.set(tb.dut.port(r.name, index), values[r.name, i])
        for r, index, i in elements(REGISTERS, STATUS):
            if not r.constant:
                assert await tb.read_value(ctx, r.name, index) == values[r.name, i], r.name

    tb.run(bench)


# --- config ---------------------------------------------------------------------------------------------


@FLOWS
@pytest.mark.parametrize("order", ORDERS)
def test_config_resets_then_writes_read_back_and_drive_ports(flow, order, counters_in_ram):
    tb = TB(flow=flow, seed=2, counters_in_ram=counters_in_ram)

    async def bench(ctx):
        for r, index, _ in elements(REGISTERS, CONFIG):
            assert await tb.read_value(ctx, r.name, index) == r.reset, f"{r.name} reset"
            assert port_value(ctx, tb, r, index) == r.reset, f"{r.name} port reset"
        written = {}
        for r, index, i in elements(REGISTERS, CONFIG):
            written[r.name, i] = value = random_value(tb.rng, r)
            await tb.write_value(ctx, r.name, value, index, order=order)
            assert port_value(ctx, tb, r, index) == value, f"{r.name} port"
        for r, index, i in elements(REGISTERS, CONFIG):  # nothing overwrote anything else
            assert await tb.read_value(ctx, r.name, index) == written[r.name, i], r.name

    tb.run(bench)


def test_config_bits_above_width_read_zero(counters_in_ram):
    tb = TB(seed=3, counters_in_ram=counters_in_ram)

    async def bench(ctx):
        for name in ("enable", "instrument_locate", "local_mac", "session"):
            r = REGISTERS[name]
            for k in range(r.words):
                assert await tb.axil.write(ctx, r.address() + 4 * k, 0xFFFF_FFFF) == RESP_OKAY
            assert await tb.read_value(ctx, name) == r.max_value
            data, _ = await tb.axil.read(ctx, r.address() + 4 * (r.words - 1))
            assert data == r.max_value >> (32 * (r.words - 1))

    tb.run(bench)


@FLOWS
def test_byte_strobes_write_only_their_bytes(flow, counters_in_ram):
    tb = TB(flow=flow, seed=4, counters_in_ram=counters_in_ram)
    r = REGISTERS["local_ip"]
    mac = REGISTERS["local_mac"]

    async def bench(ctx):
        expected = 0
        for strb in range(16):
            data = tb.rng.getrandbits(32)
            assert await tb.axil.write(ctx, r.address(), data, strb) == RESP_OKAY
            mask = sum(0xFF << (8 * lane) for lane in range(4) if strb >> lane & 1)
            expected = (expected & ~mask) | (data & mask)
            assert await tb.read_value(ctx, "local_ip") == expected
            assert ctx.get(tb.dut.config.local_ip) == expected
        # the upper word of a 48-bit register has two bytes: strobes for the other two change nothing
        await tb.write_value(ctx, "local_mac", 0x0000_1122_3344_5566)
        assert await tb.axil.write(ctx, mac.address() + 4, 0xAABB_CCDD, 0b1110) == RESP_OKAY
        assert await tb.read_value(ctx, "local_mac") == 0xCC22_3344_5566

    tb.run(bench)


def test_struct_config_drives_its_fields(counters_in_ram):
    tb = TB(seed=5, counters_in_ram=counters_in_ram)

    async def bench(ctx):
        group = REGISTERS["group"]
        value = {"address": 0xE000_0101, "port": 26400, "valid": 1}
        await tb.write_value(ctx, "group", value, index=5)
        port = tb.dut.config["group"][5]
        assert (ctx.get(port.address), ctx.get(port.port), ctx.get(port.valid)) == (0xE000_0101, 26400, 1)
        assert group.decode(await tb.read_value(ctx, "group", 5)) == value
        assert await tb.read_value(ctx, "group", 4) == group.reset

    tb.run(bench)


# --- commands ------------------------------------------------------------------------------------------


@FLOWS
def test_commands_pulse_exactly_once(flow, counters_in_ram):
    tb = TB(flow=flow, seed=6, counters_in_ram=counters_in_ram)
    commands = [(r, index) for r, index, _ in elements(REGISTERS, COMMAND)]
    pulses = {r.name: 0 for r, _ in commands}

    async def monitor(ctx):
        async for _, _, *values in ctx.tick().sample(*(tb.dut.port(r.name, i) for r, i in commands)):
            for (r, _), v in zip(commands, values):
                pulses[r.name] += v

    async def bench(ctx):
        for r, index in commands:
            before = dict(pulses)
            assert await tb.axil.write(ctx, r.address(index), 1) == RESP_OKAY
            await ctx.tick().repeat(3)
            assert pulses == {**before, r.name: before[r.name] + 1}, r.name
            # writing 0, or 1 with its byte not strobed, pulses nothing; a read returns 0
            assert await tb.axil.write(ctx, r.address(index), 0) == RESP_OKAY
            assert await tb.axil.write(ctx, r.address(index), 1, strb=0b1110) == RESP_OKAY
            assert await tb.axil.read(ctx, r.address(index)) == (0, RESP_OKAY)
            await ctx.tick().repeat(3)
            assert pulses == {**before, r.name: before[r.name] + 1}, r.name

    tb.run(bench, background=[monitor])


def test_wide_command_pulses_each_bit_written_1():
    registers = RegisterMap([Register("go", COMMAND, 12, "twelve strobes"), Register("x", CONFIG, 8, "")])
    tb = TB(registers, seed=7)
    seen = []

    async def monitor(ctx):
        async for _, _, v in ctx.tick().sample(tb.dut.command.go):
            if v:
                seen.append(v)

    async def bench(ctx):
        assert await tb.axil.write(ctx, 0, 0b1010_0000_0101) == RESP_OKAY
        assert await tb.axil.write(ctx, 0, 0b1111_1111_1111, strb=0b0010) == RESP_OKAY  # bits 8..11 only
        await ctx.tick().repeat(3)
        assert seen == [0b1010_0000_0101, 0b1111_0000_0000]

    tb.run(bench, background=[monitor])


# --- counters ------------------------------------------------------------------------------------------


@FLOWS
def test_counters_count_strobes_and_amounts_and_clear(flow, counters_in_ram):
    tb = TB(flow=flow, seed=8, counters_in_ram=counters_in_ram)
    counters = list(elements(REGISTERS, COUNTER))
    # a different number of cycles per counter; amounts of every size for the wide ones
    plan = {}
    for n, (r, _, i) in enumerate(counters):
        cycles = 1 + n % 7
        amount = min(r.amount_width, 40)  # wide enough to carry into the upper word, far from wrapping
        plan[r.name, i] = [tb.rng.getrandbits(amount) if r.amount_width > 1 else 1 for _ in range(cycles)]
    plan["missing_messages", 0][0] = (1 << 32) - 1  # an amount that carries into the upper word

    async def bench(ctx):
        for cycle in range(max(len(p) for p in plan.values())):
            for r, index, i in counters:
                amounts = plan[r.name, i]
                ctx.set(tb.dut.port(r.name, index), amounts[cycle] if cycle < len(amounts) else 0)
            await ctx.tick()
        for r, index, _ in counters:
            ctx.set(tb.dut.port(r.name, index), 0)
        for r, index, i in counters:
            assert await tb.read_value(ctx, r.name, index) == sum(plan[r.name, i]), r.element_name(i)
        await tb.write_value(ctx, COUNTER_RESET, 1)
        for r, index, i in counters:
            assert await tb.read_value(ctx, r.name, index) == 0, r.element_name(i)

    tb.run(bench)


def test_counter_reset_clears_before_its_write_answers_and_counting_resumes(counters_in_ram):
    tb = TB(seed=9, counters_in_ram=counters_in_ram)

    async def bench(ctx):
        ctx.set(tb.dut.counter.frames_a, 1)
        await ctx.tick().repeat(5)
        ctx.set(tb.dut.counter.frames_a, 0)
        assert await tb.read_value(ctx, "frames_a") == 5
        assert await tb.axil.write(ctx, REGISTERS.address(COUNTER_RESET), 1) == RESP_OKAY
        assert await tb.read_value(ctx, "frames_a") == 0
        ctx.set(tb.dut.counter.frames_a, 1)
        await ctx.tick().repeat(4)
        ctx.set(tb.dut.counter.frames_a, 0)
        assert await tb.read_value(ctx, "frames_a") == 4

    tb.run(bench)


def test_64_bit_counter_read_is_latched(counters_in_ram):
    tb = TB(seed=10, counters_in_ram=counters_in_ram)
    r = REGISTERS["missing_messages"]
    other = REGISTERS["frames_a"]
    amount = tb.dut.counter.missing_messages

    async def add(ctx, value):
        ctx.set(amount, value)
        await ctx.tick()
        ctx.set(amount, 0)

    async def bench(ctx):
        await add(ctx, 0xFFFF_FFF0)
        low, _ = await tb.axil.read(ctx, r.address())
        await add(ctx, 0x20)  # carries into the upper word between the two reads
        high, _ = await tb.axil.read(ctx, r.address() + 4)
        assert (high << 32 | low) == 0xFFFF_FFF0, "the upper word is the one latched with the low word"
        assert await tb.read_value(ctx, "missing_messages") == 0x1_0000_0010
        # an upper word read after another register's low word is the live value, not someone else's latch
        await add(ctx, 0xFFFF_FFFF)
        await tb.axil.read(ctx, other.address())
        high, _ = await tb.axil.read(ctx, r.address() + 4)
        assert high == 2

    tb.run(bench)


@FLOWS
def test_live_64_bit_status_reads_consistently(flow, counters_in_ram):
    tb = TB(flow=flow, seed=11, counters_in_ram=counters_in_ram)
    start = 0xFFFF_FF00  # the clock crosses into the upper word during the reads
    now = [start]

    async def clock(ctx):
        while True:
            ctx.set(tb.dut.status.clock, now[0])
            await ctx.tick()
            now[0] += 7

    async def bench(ctx):
        for _ in range(40):
            before = now[0]
            value = await tb.read_value(ctx, "clock")
            assert before <= value <= now[0], f"torn read {value:#x} outside [{before:#x}, {now[0]:#x}]"
        assert now[0] > 1 << 32

    tb.run(bench, background=[clock])


@FLOWS
def test_reads_while_counting_see_every_increment_up_to_their_strobe(flow, counters_in_ram):
    """A read returns exactly the increments presented up to COUNTED_AFTER_STROBE after its strobe (itself
    STROBE_AFTER_HANDSHAKE after AR), the 64-bit value consistent across its two words."""
    tb = TB(flow=flow, seed=20, counters_in_ram=counters_in_ram)
    core = CountingCore(tb, busy_counters())

    async def bench(ctx):
        await ctx.tick().repeat(5)
        for n in range(60):
            name, index = tb.rng.choice(list(core.draws))
            first_read = len(core.ar)
            value = await tb.read_value(ctx, name, index)
            counted = core.ar[first_read] + STROBE_AFTER_HANDSHAKE + COUNTED_AFTER_STROBE
            assert value == core.count((name, index), -1, counted), f"read {n}: {name}[{index}]"

    tb.run(bench, background=[core.run])


@FLOWS
def test_counter_reset_while_counting_loses_increments_up_to_its_pulse(flow, counters_in_ram):
    """counter_reset pulses PULSE_AFTER_STROBE after its write strobe; the counters lose every increment up
    to and including the pulse cycle and count on from the next one."""
    tb = TB(flow=flow, seed=21, counters_in_ram=counters_in_ram)
    core = CountingCore(tb, busy_counters())

    async def bench(ctx):
        for round_ in range(4):
            await ctx.tick().repeat(tb.rng.randrange(1, 40))
            writes = len(core.aw)
            await tb.write_value(ctx, COUNTER_RESET, 1)
            strobe = core.write_handshake(writes) + STROBE_AFTER_HANDSHAKE
            assert core.resets[-1] == strobe + PULSE_AFTER_STROBE, "counter_reset pulse cycle"
            for name, index in core.draws:
                first_read = len(core.ar)
                value = await tb.read_value(ctx, name, index)
                counted = core.ar[first_read] + STROBE_AFTER_HANDSHAKE + COUNTED_AFTER_STROBE
                assert value == core.count((name, index), core.resets[-1], counted), f"{round_}: {name}"
        await core.stop(ctx)
        await tb.write_value(ctx, COUNTER_RESET, 1)
        for name, index in core.draws:
            assert await tb.read_value(ctx, name, index) == 0, name

    tb.run(bench, background=[core.run])


def largest_amounts(registers: RegisterMap = REGISTERS):
    """Every counter takes its largest amount every cycle: the longest any count waits to be moved on."""
    return {
        (r.name, index): (lambda rng, most=(1 << r.amount_width) - 1: most)
        for r, index, _ in elements(registers, COUNTER)
    }


def test_every_counter_at_its_largest_amount_every_cycle_with_reads_back_to_back(counters_in_ram):
    """In RAM, each counter's pending count grows until the flusher comes round, and back-to-back reads
    take the flusher's cycle as often as they can: a pending count too narrow, or a flusher that falls
    behind, loses counts. Many flush rounds, every read exact."""
    tb = TB(seed=30, counters_in_ram=counters_in_ram)
    core = CountingCore(tb, largest_amounts())
    results = []

    async def bench(ctx):
        for _ in range(70):
            name, index = tb.rng.choice(list(core.draws))
            first_read = len(core.ar)
            results.append(((name, index), first_read, await tb.read_value(ctx, name, index)))

    tb.run(bench, background=[core.run])
    assert len(core.presented["frames_a", None]) > 1500
    for n, (key, first_read, value) in enumerate(results):
        assert value == core.read_count(key, core.read_strobe(first_read)), f"read {n}: {key}"


@FLOWS
def test_back_to_back_reads_of_one_counter_counting_every_cycle(flow, counters_in_ram):
    """The same counter read again and again (both words, or word 0 alone) while it counts every cycle, so
    that its reads meet its flushes at every distance."""
    tb = TB(flow=flow, seed=31, counters_in_ram=counters_in_ram)
    core = CountingCore(tb, {("drops_a", "UDP_PORT"): lambda rng: 1, ("duplicates", None): lambda rng: 3})
    results = []

    async def bench(ctx):
        for n in range(80):
            key = (("drops_a", "UDP_PORT"), ("duplicates", None))[n // 40]
            first_read = len(core.ar)
            if n % 3:
                results.append((key, first_read, await tb.read_value(ctx, *key), (1 << 64) - 1))
            else:  # word 0 alone
                word, _ = await tb.axil.read(ctx, REGISTERS.address(*key))
                results.append((key, first_read, word, (1 << 32) - 1))

    tb.run(bench, background=[core.run])
    for n, (key, first_read, value, mask) in enumerate(results):
        assert value == core.read_count(key, core.read_strobe(first_read)) & mask, f"read {n}: {key}"


def reads_while_resets_come_at_any_moment(tb: TB, core: CountingCore, reads: int, resets: int, together: bool):
    """Random counters read back to back while counter_reset pulses after random pauses, so that a pulse
    lands anywhere relative to the flusher. `together`: the pulses come from a writer of their own, taking
    turns with the reads on the bus (a pulse then lands just before a read); else between reads. Every read
    exact."""
    results = []
    pauses = [tb.rng.randrange(1, 50) for _ in range(resets)]

    async def writer(ctx):
        for pause in pauses:
            await ctx.tick().repeat(pause)
            await tb.write_value(ctx, COUNTER_RESET, 1)

    async def reader(ctx):
        for n in range(reads):
            if not together and n % (reads // resets) == 0 and pauses:
                await ctx.tick().repeat(pauses.pop())
                await tb.write_value(ctx, COUNTER_RESET, 1)
            key = tb.rng.choice(list(core.draws))
            first_read = len(core.ar)
            results.append((key, first_read, await tb.read_value(ctx, *key)))

    tb.run(*([writer] if together else []), reader, background=[core.run])
    assert len(core.resets) == resets
    for n, (key, first_read, value) in enumerate(results):
        strobe = core.read_strobe(first_read, bus_idle=not together)
        assert value == core.read_count(key, strobe), f"read {n}: {key}"


@FLOWS
def test_counter_reset_at_any_moment_while_reading(flow, counters_in_ram):
    """The card's map: reads and counter_reset writes in flight together."""
    tb = TB(flow=flow, seed=32, counters_in_ram=counters_in_ram)
    reads_while_resets_come_at_any_moment(tb, CountingCore(tb, busy_counters()), reads=50, resets=12, together=True)


SMALL_MAPS = {
    "one-counter": [Register("events", COUNTER, 64, ""), Register(COUNTER_RESET, COMMAND, 1, "")],
    "ram-and-flops": [
        Register("before", STATUS, 16, ""),
        Register("bytes", COUNTER, 64, "", amount_width=8),  # in RAM
        Register("bits", COUNTER, 64, "", amount_width=9),  # in flops
        Register("lanes", COUNTER, 64, "", count=3),
        Register(COUNTER_RESET, COMMAND, 1, ""),
    ],
}


@pytest.mark.parametrize("declared", SMALL_MAPS.values(), ids=SMALL_MAPS.keys())
def test_small_maps_count_exactly(declared, counters_in_ram):
    """Maps with a single counter (the flusher's every-other-cycle case) and with counters on both sides of
    the RAM's amount width, counting their largest amounts with resets at any moment. (Their read latency is
    not the card map's: reads and resets take turns, so each read's strobe follows its AR handshake.)"""
    registers = RegisterMap(declared)
    tb = TB(registers, seed=33, counters_in_ram=counters_in_ram)
    core = CountingCore(tb, largest_amounts(registers))
    reads_while_resets_come_at_any_moment(tb, core, reads=40, resets=8, together=False)


# --- errors ----------------------------------------------------------------------------------------------


def unmapped_addresses(registers):
    mapped = {address for address, *_ in registers.cells()}
    holes = [a for a in range(0, registers.size, WORD_BYTES) if a not in mapped]
    beyond = [registers.size, registers.size + 4, (1 << registers.address_width) - 4]
    return holes + beyond


@FLOWS
def test_unmapped_addresses_answer_slverr_and_change_nothing(flow, counters_in_ram):
    tb = TB(flow=flow, seed=12, counters_in_ram=counters_in_ram)
    addresses = unmapped_addresses(REGISTERS)
    assert len(addresses) > 3, "the map has alignment holes to check"

    async def bench(ctx):
        for address in addresses:
            assert await tb.axil.write(ctx, address, 0xFFFF_FFFF) == RESP_SLVERR, hex(address)
            assert await tb.axil.read(ctx, address) == (0, RESP_SLVERR), hex(address)
        for r, index, _ in elements(REGISTERS, CONFIG):
            assert await tb.read_value(ctx, r.name, index) == r.reset, r.name

    tb.run(bench)


@FLOWS
def test_writes_to_read_only_registers_answer_slverr(flow, counters_in_ram):
    tb = TB(flow=flow, seed=13, constants=CONSTANTS, counters_in_ram=counters_in_ram)

    async def bench(ctx):
        ctx.set(tb.dut.counter.heartbeats_b, 1)
        await ctx.tick().repeat(3)
        ctx.set(tb.dut.counter.heartbeats_b, 0)
        ctx.set(tb.dut.status.orders_live, 1234)
        for name in ("magic", "build_id", "orders_live", "clock", "heartbeats_b"):
            r = REGISTERS[name]
            before = await tb.read_value(ctx, name)
            for k in range(r.words):
                assert await tb.axil.write(ctx, r.address() + 4 * k, 0x5555_5555) == RESP_SLVERR, name
            assert await tb.read_value(ctx, name) == before, name
        assert await tb.read_value(ctx, "heartbeats_b") == 3

    tb.run(bench)


# --- bus -------------------------------------------------------------------------------------------------


@FLOWS
def test_reads_and_writes_in_flight_together(flow, counters_in_ram):
    tb = TB(flow=flow, seed=14, counters_in_ram=counters_in_ram)
    status = {r.name: random_value(tb.rng, r) for r in REGISTERS.of(STATUS) if not r.constant and not r.is_array}
    config = [(r, index) for r, index, _ in elements(REGISTERS, CONFIG)]
    done = []

    async def writer(ctx):
        for r, index in config:
            value = random_value(tb.rng, r)
            await tb.write_value(ctx, r.name, value, index)
            assert port_value(ctx, tb, r, index) == value
        done.append("writer")

    async def reader(ctx):
        for name, value in status.items():
            ctx.set(tb.dut.port(name), value)
        for _ in range(2):
            for name, value in status.items():
                assert await tb.read_value(ctx, name) == value, name
        done.append("reader")

    tb.run(writer, reader)
    assert sorted(done) == ["reader", "writer"]


@FLOWS
def test_back_to_back_writes_and_reads_with_counting(flow, counters_in_ram):
    """One bench writes every config word back to back, another reads counters meanwhile: the reads share
    the bus with the writes, so a counter read's strobe may wait for one write's access to end."""
    tb = TB(flow=flow, seed=22, counters_in_ram=counters_in_ram)
    core = CountingCore(tb, busy_counters())
    config = [(r, index) for r, index, _ in elements(REGISTERS, CONFIG)]
    written, reader_done = {}, []

    async def writer(ctx):
        for _ in range(2):
            for r, index in config:
                written[r.name, index] = value = random_value(tb.rng, r)
                await tb.write_value(ctx, r.name, value, index)
                assert port_value(ctx, tb, r, index) == value, r.name
        while not reader_done:  # the AR channel is the reader's until then
            await ctx.tick()
        for r, index in config:
            assert await tb.read_value(ctx, r.name, index) == written[r.name, index], r.name

    async def reader(ctx):
        for n in range(40):
            name, index = tb.rng.choice(list(core.draws))
            first_read = len(core.ar)
            value = await tb.read_value(ctx, name, index)
            earliest = core.ar[first_read] + STROBE_AFTER_HANDSHAKE + COUNTED_AFTER_STROBE
            possible = [core.count((name, index), -1, earliest + late) for late in range(WRITE_BUS_CYCLES + 1)]
            assert value in possible, f"read {n}: {name}[{index}] = {value:#x}, expected one of {possible}"
        reader_done.append(True)

    tb.run(writer, reader, background=[core.run])


def test_config_changes_and_command_pulses_a_fixed_time_after_the_write(counters_in_ram):
    tb = TB(seed=23, counters_in_ram=counters_in_ram)
    core = CountingCore(tb, {})
    changes = []

    async def watch(ctx):
        cycle = 0
        async for _, _, ip, pulse in ctx.tick().sample(tb.dut.config.local_ip, tb.dut.command.book_clear):
            if pulse:
                changes.append(("book_clear", cycle))
            if ip and not any(what == "local_ip" for what, _ in changes):
                changes.append(("local_ip", cycle))
            cycle += 1

    async def bench(ctx):
        await tb.write_value(ctx, "local_ip", 0x0A00_0001)
        await tb.write_value(ctx, "book_clear", 1)
        await ctx.tick().repeat(3)
        strobes = [core.write_handshake(n) + STROBE_AFTER_HANDSHAKE for n in range(2)]
        expected = [("local_ip", strobes[0] + PULSE_AFTER_STROBE), ("book_clear", strobes[1] + PULSE_AFTER_STROBE)]
        assert changes == expected

    tb.run(bench, background=[core.run, watch])


def test_response_latency_on_an_idle_bus(counters_in_ram):
    tb = TB(seed=24, counters_in_ram=counters_in_ram)
    core = CountingCore(tb, {})
    rises = {"b": [], "r": []}

    async def watch(ctx):
        cycle, before = 0, (0, 0)
        async for _, _, *valid in ctx.tick().sample(tb.dut.s_axil_bvalid, tb.dut.s_axil_rvalid):
            for channel, now, was in zip(rises, valid, before):
                if now and not was:
                    rises[channel].append(cycle)
            cycle, before = cycle + 1, tuple(valid)

    async def bench(ctx):
        for order in ORDERS:
            await tb.axil.write(ctx, REGISTERS.address("local_ip"), 1, order=order)
            await tb.axil.read(ctx, REGISTERS.address("local_ip"))
        writes = [core.write_handshake(n) + WRITE_RESPONSE for n in range(len(ORDERS))]
        assert rises == {"b": writes, "r": [cycle + READ_RESPONSE for cycle in core.ar]}

    tb.run(bench, background=[core.run, watch])


def test_target_holds_one_write_and_one_read_at_a_time():
    """AWREADY/WREADY stay low from a write's issue to its B handshake, ARREADY likewise for R; the target
    issues no strobe while the register file has not answered (`done`) the previous one."""
    dut = AxiLiteTarget(8)
    latency = 4  # cycles from a strobe to the register file's `done`
    issued = []

    async def register_file(ctx):
        while True:
            _, _, w_stb, r_stb, addr = await ctx.tick().sample(dut.bus.w_stb, dut.bus.r_stb, dut.bus.addr)
            if not (w_stb or r_stb):
                continue
            issued.append((w_stb, r_stb, addr))
            for cycle in range(latency):
                if cycle == latency - 1:
                    ctx.set(dut.bus.done, 1)
                    ctx.set(dut.bus.r_data, 0x1234_5678)
                _, _, w_stb, r_stb = await ctx.tick().sample(dut.bus.w_stb, dut.bus.r_stb)
                assert not (w_stb or r_stb), "a strobe before the register file answered"
            ctx.set(dut.bus.done, 0)
            ctx.set(dut.bus.r_data, 0)

    async def bench(ctx):
        ctx.set(dut.s_axil_awvalid, 1)
        ctx.set(dut.s_axil_wvalid, 1)
        ctx.set(dut.s_axil_arvalid, 1)
        ctx.set(dut.s_axil_awaddr, 0x10)
        ctx.set(dut.s_axil_araddr, 0x20)
        handshakes = []
        for _ in range(20):  # B and R are never taken: no second transaction may be accepted
            _, _, aw, w, ar = await ctx.tick().sample(dut.s_axil_awready, dut.s_axil_wready, dut.s_axil_arready)
            handshakes.append((aw, w, ar))
        assert handshakes[0] == (1, 1, 1) and all(h == (0, 0, 0) for h in handshakes[1:])
        assert issued == [(1, 0, 0x10), (0, 1, 0x20)], "one write then one read, write first"
        assert ctx.get(dut.s_axil_bvalid) and ctx.get(dut.s_axil_rvalid)
        assert ctx.get(dut.s_axil_rdata) == 0x1234_5678

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(register_file, background=True)
    sim.add_testbench(bench)
    sim.run()


# --- API and conversion ----------------------------------------------------------------------------------


def test_ports_by_name_kind_and_label(counters_in_ram):
    with never_elaborated():
        check_ports(CsrBank(counters_in_ram=counters_in_ram))


def check_ports(bank):
    assert bank.config["local_mac"] is bank.config.local_mac
    assert len(bank.config["local_mac"]) == 48
    assert bank.port("drops_a", "MAC") is bank.counter["drops_a"][2]
    assert len(bank.counter["missing_messages"]) == REGISTERS["missing_messages"].amount_width > 1
    assert len(bank.counter["drops_b"]) == len(REGISTERS["drops_b"].labels)
    assert "magic" not in bank.status and "clock" in bank.status
    assert set(bank.command) == {r.name for r in REGISTERS.of(COMMAND)}
    with pytest.raises(KeyError, match="'local_mca'"):
        bank.config["local_mca"]
    with pytest.raises(KeyError, match="build-time constant"):
        bank.port("build_id")


def test_drop_reasons_match_the_gateware_enum():
    from wirebook.hdl.feed_line import DropReason

    assert [(reason.name, reason.value) for reason in DropReason] == [(n, i) for i, n in enumerate(DROP_REASONS)]


def test_converts_to_verilog_with_vivado_port_names(counters_in_ram):
    text = verilog.convert(CsrBank(constants=CONSTANTS, counters_in_ram=counters_in_ram), name="wirebook_csr")
    for port in ("s_axil_awaddr", "s_axil_wstrb", "s_axil_bresp", "s_axil_araddr", "s_axil_rdata", "s_axil_rready"):
        assert f" {port};" in text
    assert "config__local_mac" in text and "counter__drops_a__0" in text
