"""The card's control and status register bank, generated from the register declaration (proto.registers).

Nothing here is written per register: adding a register to `proto.registers.REGISTERS` adds its port, its
storage, its address decode and its line in docs/registers.md.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Mapping

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...proto.registers import (
    COUNTER_RESET,
    COUNTER_WIDTH,
    REGISTERS,
    WORD_BITS,
    WORD_BYTES,
    Access,
    Register,
    RegisterMap,
)
from .axi_lite import DATA_WIDTH, AxiLiteTarget, axi_lite_target_members
from .counter_ram import READ_LATENCY, CounterRam

__all__ = ["CsrBank", "RegisterPorts", "RegisterPortsSignature", "register_shape"]

WORD_ADDRESS_LSB = (WORD_BYTES - 1).bit_length()  # byte address -> word address
PAIR_IN_BLOCK_BITS = 3
PAIRS_PER_BLOCK = 1 << PAIR_IN_BLOCK_BITS  # word pairs a block of the read mux ORs: 2 LUT4 levels
OR_FAN_IN = 4  # values each later level of the read mux ORs: 1 LUT4 level
# With counters_in_ram, a counter whose amount is wider stays in flip-flops: its pending count would be
# nearly as wide as the counter, and every bit of the widest one widens the flusher's mux for all.
RAM_AMOUNT_WIDTH = 8


def _any(values: Iterable[Value]) -> Value:
    return functools.reduce(operator.or_, values)


class RegisterPortsSignature(wiring.Signature):
    """One port per register of an access kind, named after the register (an array for an array)."""

    def create(self, *, path=None, src_loc_at=0):
        return RegisterPorts(self, path=path, src_loc_at=1 + src_loc_at)


class RegisterPorts(wiring.PureInterface):
    """The ports of one access kind: `ports.local_mac` or `ports["local_mac"]` (KeyError naming it)."""

    def __getitem__(self, name: str):
        if name not in self.signature.members:
            known = ", ".join(self.signature.members)
            raise KeyError(f"no register {name!r} here (registers: {known})")
        return getattr(self, name)

    def __contains__(self, name: str) -> bool:
        return name in self.signature.members

    def __iter__(self):
        return iter(self.signature.members)


def register_shape(register: Register) -> Shape | data.StructLayout:
    """A register's value in the gateware: a struct of its fields when it has some, else unsigned."""
    if register.fields:
        return data.StructLayout({f.name: unsigned(f.width) for f in register.fields})
    return unsigned(register.width)


class CsrBank(wiring.Component):
    """The register bank: an AXI4-Lite target (flat `s_axil_*` ports) and one port per register.

    Ports, grouped by access kind, each named after its register (an array register is a list, element i
    at [i]; `port(name, label)` finds an element by label, e.g. a drop reason):

    - `config[name]`: Out, the register's value (a `data.View` of its fields when it has fields), reset to
      its declared reset; a word changes 4 cycles after its bus write strobe.
    - `status[name]`: In, the core's value, sampled 3 cycles after the read strobe (both words of a pair in
      the same cycle). `constant` status registers have no port: their value is declared or given as
      `constants={"build_id": ..., "data_width": ...}` (others read their reset).
    - `counter[name]`: In, the increment: a 1-bit event strobe, or an `amount_width`-bit amount added each
      cycle. A read returns exactly the increments presented up to and including the cycle after its bus
      read strobe. Counters are 64 bits and wrap (no saturation); `counter_reset` clears them all, losing
      every increment presented up to and including the cycle of its pulse.
    - `command[name]`: Out, a one-cycle pulse on each bit written 1, 4 cycles after the bus write strobe.

    Bus behaviour (docs/registers.md): reading word 0 of a latched register (64-bit counter or live status)
    latches its upper word, sampled with the low word, in a shared latch, and a following read of the upper
    word of the same register returns it; an upper word read without its word 0 first is the live value.
    Unmapped addresses and writes to read-only registers answer SLVERR and change nothing (unmapped words
    read 0); reads of a command return 0 with OKAY. A live status wider than 64 bits is refused (ValueError).

    Counters are flip-flops by default (two 32-bit halves each). With `counters_in_ram=True`, those whose
    amount is at most RAM_AMOUNT_WIDTH bits wide (with the card's map, all but `missing_messages`) are a
    CounterRam's (hdl.csr.counter_ram): a 64-bit total per counter in block RAM (2 EBR on ECP5) and a small
    pending count per counter in flip-flops, which a flusher folds into the totals, one counter per cycle in
    turn. Same ports, bus behaviour and values, to the cycle: a read returns exactly the increments up to
    and including the cycle after its strobe, and `counter_reset` clears every counter at once (the totals
    are flagged stale, read as 0 until rewritten). After a reset of the clock domain they read 0 too.

    Timing on the `CsrBus`, one access at a time, every stage registered: the access; the word decoded
    into its block of PAIRS_PER_BLOCK word pairs (8 bytes, 8-aligned); the word one-hot within the block
    (both words of the pair for a read). A write then takes effect and is done 4 cycles after its strobe.
    A read ORs the selected pair within each block, ORs the blocks OR_FAN_IN at a time over as many levels
    as needed, adds a counter's pending carry to the upper word, picks the word: done 6 cycles + one per
    level after its strobe (8 with the card's map: 15 blocks, 2 levels). With `counters_in_ram`, a read of
    a counter in RAM goes to the CounterRam in stage 2 instead, which answers READ_LATENCY (2) cycles later,
    and its value joins the blocks' values at the first level of ORs: RAM counters' pairs are no block's
    (with the card's map: 6 blocks and that value, 2 levels, done 8 cycles after the strobe as in
    flip-flops); the flusher gives that read its cycle. Through `AxiLiteTarget` on an idle bus, with the
    card's map (either way): BVALID 6 cycles after the later of the AW and W handshakes, RVALID 10 cycles
    after the AR handshake. Throughput: one access in flight; a write and a read may wait for each other.
    """

    def __init__(
        self,
        registers: RegisterMap = REGISTERS,
        *,
        constants: Mapping[str, int] | None = None,
        counters_in_ram: bool = False,
    ):
        self.registers = registers
        self.counters_in_ram = counters_in_ram
        self.addr_width = registers.address_width
        self.constants = self._check_constants(registers, constants or {})
        kinds: dict[Access, dict[str, wiring.Member]] = {access: {} for access in Access}
        for r in registers:
            if r.access is Access.STATUS and r.constant:
                continue
            if r.name == "signature":
                raise ValueError("a register cannot be called 'signature' (it names the interface's signature)")
            if r.latched and r.words > 2:
                raise ValueError(f"register {r.name!r}: the bank latches one upper word, not {r.words - 1}")
            if r.access is Access.CONFIG:
                shape = register_shape(r)
                init = r.decode(r.reset) if r.fields else r.reset
                member = Out(shape, init=init)
            elif r.access is Access.STATUS:
                member = In(register_shape(r))
            elif r.access is Access.COUNTER:
                member = In(r.amount_width)
            else:
                member = Out(r.width)
            kinds[r.access][r.name] = member.array(r.elements) if r.is_array else member
        super().__init__(
            {
                **axi_lite_target_members(self.addr_width),
                "config": Out(RegisterPortsSignature(kinds[Access.CONFIG])),
                "status": Out(RegisterPortsSignature(kinds[Access.STATUS])),
                "counter": Out(RegisterPortsSignature(kinds[Access.COUNTER])),
                "command": Out(RegisterPortsSignature(kinds[Access.COMMAND])),
            }
        )

    @staticmethod
    def _check_constants(registers: RegisterMap, given: Mapping[str, int]) -> dict[str, int]:
        out = {r.name: r.reset for r in registers if r.constant}
        for name, value in given.items():
            r = registers[name]
            if not r.constant:
                raise ValueError(f"register {name!r} is {r.access.value}, not a constant status register")
            out[name] = r.encode(value)
        return out

    def port(self, name: str, index: int | str | None = None):
        """The port of register `name` (element `index`, an int or a label, of an array)."""
        r = self.registers[name]
        if r.constant:
            raise KeyError(f"register {name!r} is a build-time constant: it has no port")
        return self._port_of(r, r.index_of(index))

    def elaborate(self, platform):
        m = Module()
        m.submodules.target = target = AxiLiteTarget(self.addr_width)
        for name, member in axi_lite_target_members(self.addr_width).items():
            if member.flow == In:
                m.d.comb += getattr(target, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(target, name))
        bus = target.bus

        # Counters live here; the core only strobes them. Each increment is registered at the boundary, so
        # that a counter's carry chains start at a flip-flop next to them. A counter is two 32-bit halves
        # with the carry between them registered: its value is `high + carry` : `low`, exact in every
        # cycle (the read path adds the pending carry), with two short carry chains instead of one long.
        # The `counter_reset` pulse reaches the counters through a `stale` flip-flop per counter, which
        # zeroes it (a synchronous reset) and holds until the cycle its next increment arrives. It clears
        # exactly as one copy of the pulse would; it is its own flip-flop because plain copies would be
        # merged by synthesis into one net reaching every counter bit.
        # With counters_in_ram, the counters narrow enough for it are a CounterRam's instead, built below once
        # the read pipeline's length (which bounds how often reads take its flusher's cycle) is known. It takes
        # the same registered increments, and the pulse registered as they are (`clearing`).
        clear = getattr(self.command, COUNTER_RESET, 0)
        counters: dict[tuple[str, int], Value] = {}  # Cat(low, high, carry)
        ram_increments: list[Signal] = []  # the CounterRam's counter n ...
        ram_pairs: list[int] = []  # ... at this word pair
        for r in self.registers.of(Access.COUNTER):
            for i in range(r.elements):
                suffix = f"{r.name}_{i}" if r.is_array else r.name
                port = self._port_of(r, i)
                increment = Signal(r.amount_width, name=f"increment_{suffix}")
                if self._in_ram(r):
                    ram_increments.append(increment)
                    ram_pairs.append(r.address(i if r.is_array else None) >> (WORD_ADDRESS_LSB + 1))
                    m.d.sync += increment.eq(port)
                    continue
                stale = Signal(name=f"stale_{suffix}")
                low = Signal(WORD_BITS, name=f"count_low_{suffix}")
                high = Signal(r.width - WORD_BITS, name=f"count_high_{suffix}")
                carry = Signal(name=f"count_carry_{suffix}")
                counters[r.name, i] = Cat(low, high, carry)
                m.d.sync += [
                    increment.eq(port),
                    stale.eq(clear | (stale & (port == 0))),
                    Cat(low, carry).eq(Mux(stale, 0, low + increment[:WORD_BITS])),
                    high.eq(Mux(stale, 0, high + increment[WORD_BITS:] + carry)),
                ]

        # Stage 1: the access, registered (kept until the next strobe).
        word = Signal(self.addr_width - WORD_ADDRESS_LSB)  # word address
        is_write = Signal()
        w_data, w_strb = Signal(DATA_WIDTH), Signal(DATA_WIDTH // 8)
        with m.If(bus.w_stb | bus.r_stb):
            m.d.sync += [
                word.eq(bus.addr[WORD_ADDRESS_LSB:]),
                is_write.eq(bus.w_stb),
                w_data.eq(bus.w_data),
                w_strb.eq(bus.w_strb),
            ]
        # `writing[n]`: a write strobe n + 1 cycles ago (`reading` likewise, below).
        writing = Signal(4)
        m.d.sync += writing.eq(Cat(bus.w_stb, writing))

        # Stage 2: decode the word. Pairs of words (8 bytes, 8-aligned: a latched register is one pair) come
        # in blocks of PAIRS_PER_BLOCK; the block is decoded one-hot here and the word within it in stage 3,
        # so that every select is a flip-flop of its own, next to the few dozen bits it selects.
        pair = word[1:]
        block_of = pair[PAIR_IN_BLOCK_BITS:]
        mapped_pairs = sorted({address >> (WORD_ADDRESS_LSB + 1) for address, *_ in self.registers.cells()})
        blocks = sorted({p >> PAIR_IN_BLOCK_BITS for p in mapped_pairs})
        block_hit = {b: Signal(name=f"block_hit_{b}") for b in blocks}
        pair_hit = Signal(PAIRS_PER_BLOCK)  # the pair within its block, one-hot
        upper = Signal()  # the access is to the upper word of its pair
        half_hit = Signal(2)  # which words of the pair the access selects: both for a read
        error = Signal()  # unmapped, or a write to a read-only word
        latched = Signal()  # the pair is a latched register
        owned = Signal()  # ... whose upper word is in the latch
        latch = Signal(WORD_BITS)
        owner = Signal.like(pair)
        owner_valid = Signal()
        pairs = self._pair_values(counters)
        latched_pairs = sorted({a >> (WORD_ADDRESS_LSB + 1) for a, r, _, _ in self.registers.cells() if r.latched})
        m.d.sync += [
            *(block_hit[b].eq(block_of == b) for b in blocks),
            *(pair_hit[k].eq(pair[:PAIR_IN_BLOCK_BITS] == k) for k in range(PAIRS_PER_BLOCK)),
            upper.eq(word[0]),
            half_hit.eq(Mux(is_write, Mux(word[0], 0b10, 0b01), 0b11)),
            latched.eq(pair.matches(*latched_pairs) if latched_pairs else 0),
            owned.eq(owner_valid & (owner == pair)),
            error.eq(1),
        ]
        with m.Switch(word):
            for address, r, _, _ in self.registers.cells():
                with m.Case(address >> WORD_ADDRESS_LSB):
                    m.d.sync += error.eq(0 if r.access.writable else is_write)

        # Stage 3: the word, one-hot (both words of the pair for a read: the upper one may be latched), and for
        # a write its word's enable, so that each writable word has a flip-flop of its own deciding its write.
        selected = {}  # by word address
        write_enable = {}  # by word address, for writable words
        writable = {address >> WORD_ADDRESS_LSB for address, r, _, _ in self.registers.cells() if r.access.writable}
        for p in mapped_pairs:
            in_block = block_hit[p >> PAIR_IN_BLOCK_BITS] & pair_hit[p % PAIRS_PER_BLOCK]
            for half in (0, 1):
                selected[2 * p + half] = Signal(name=f"selected_{2 * p + half}")
                m.d.sync += selected[2 * p + half].eq(in_block & half_hit[half])
                if 2 * p + half in writable:
                    write_enable[2 * p + half] = Signal(name=f"write_enable_{2 * p + half}")
                    m.d.sync += write_enable[2 * p + half].eq(in_block & half_hit[half] & writing[1])

        # Stage 4: a write takes effect and is done.
        def write_bytes(target: Value, k: int) -> None:
            """Bytes of word k of `target` from the bus, as `w_strb` selects them."""
            for lane in range(DATA_WIDTH // 8):
                lo = WORD_BITS * k + 8 * lane
                if lo >= len(target):
                    break
                hi = min(lo + 8, len(target))
                with m.If(w_strb[lane]):
                    m.d.sync += target[lo:hi].eq(w_data[8 * lane : 8 * lane + hi - lo])

        strobe_bits = Cat(*(w_strb[lane].replicate(8) for lane in range(DATA_WIDTH // 8)))
        for address, r, i, k in self.registers.cells():
            if not r.access.writable:
                continue
            addressed = write_enable[address >> WORD_ADDRESS_LSB]
            if r.access is Access.CONFIG:
                with m.If(addressed):
                    write_bytes(Value.cast(self._port_of(r, i)), k)
            elif r.access is Access.COMMAND:
                pulse = self._port_of(r, i)  # high for one cycle
                m.d.sync += pulse.eq(Mux(addressed, w_data & strobe_bits, 0))

        # Stage 4 of a read: each block ORs its selected pair (the others give 0). Then the blocks, spread
        # over the chip, are ORed OR_FAN_IN at a time with a register after each level: one hop per cycle.
        # A CounterRam counter is read in stage 2 and answers READ_LATENCY cycles later: its value joins the
        # level registered in that cycle (it is 0 but when it answers); its pairs are no block's.
        width = 2 * WORD_BITS + 1
        ram_value = Signal(COUNTER_WIDTH)
        joining = {2 + READ_LATENCY - 4: [ram_value]} if ram_pairs else {}  # {level: values}
        level = []
        for b in blocks:
            if all(p in ram_pairs for p in mapped_pairs if p >> PAIR_IN_BLOCK_BITS == b):
                continue
            terms = [
                Cat(Mux(selected[2 * p], v[:WORD_BITS], 0), Mux(selected[2 * p + 1], v[WORD_BITS:], 0))
                for p, v in pairs.items()
                if p >> PAIR_IN_BLOCK_BITS == b
            ]
            level.append(Signal(width, name=f"block_value_{b}"))
            m.d.sync += level[-1].eq(_any(terms) if terms else 0)
        depth = 0
        level += joining.get(depth, [])
        while len(level) > 1 or depth < max(joining, default=0):
            depth += 1
            inputs, level = level, []
            for n in range(0, len(inputs), OR_FAN_IN):
                level.append(Signal(width, name=f"pair_value_{depth}_{n // OR_FAN_IN}"))
                m.d.sync += level[-1].eq(_any(inputs[n : n + OR_FAN_IN]))
            level += joining.get(depth, [])
        (pair_value,) = level
        reading = Signal(6 + depth)
        m.d.sync += reading.eq(Cat(bus.r_stb, reading))

        if ram_pairs:
            # Its reads are 7 + depth cycles apart or more: `done` is 6 + depth cycles after the strobe, and the
            # next strobe comes the cycle after at the earliest (CsrBusSignature).
            m.submodules.counter_ram = counter_ram = CounterRam(
                [len(increment) for increment in ram_increments], read_spacing=7 + depth, width=COUNTER_WIDTH
            )
            # Stage 2 of a read of one of its counters: the read, and which counter. The read is a flip-flop of
            # its own: derived from others (stage 1's strobe and a decoded hit), synthesis folds it into the
            # counters' flush logic and the select of their mux, at a few hundred LUTs' cost.
            ram_read, ram_index = Signal(), Signal(range(len(ram_pairs)))
            m.d.sync += ram_read.eq(0)
            with m.Switch(pair):
                for n, p in enumerate(ram_pairs):
                    with m.Case(p):
                        m.d.sync += [ram_read.eq(reading[0]), ram_index.eq(n)]
            clearing = Signal()
            m.d.sync += clearing.eq(clear)
            m.d.comb += [
                *(counter_ram.increment[n].eq(increment) for n, increment in enumerate(ram_increments)),
                counter_ram.clear.eq(clearing),
                counter_ram.read.eq(ram_read),
                counter_ram.read_index.eq(ram_index),
                ram_value.eq(counter_ram.value),
            ]

        # The pending carry of a counter added to its upper word.
        low_word, high_word = Signal(WORD_BITS), Signal(WORD_BITS)
        m.d.sync += [
            low_word.eq(pair_value[:WORD_BITS]),
            high_word.eq(pair_value[WORD_BITS : 2 * WORD_BITS] + pair_value[2 * WORD_BITS]),
        ]

        # Last stage: the word, and the latch when word 0 of a latched register is read.
        r_data = Signal(DATA_WIDTH)
        with m.If(reading[4 + depth]):
            with m.If(~upper):
                m.d.sync += r_data.eq(low_word)
                with m.If(latched):
                    m.d.sync += [latch.eq(high_word), owner.eq(pair), owner_valid.eq(1)]
            with m.Else():
                m.d.sync += r_data.eq(Mux(latched & owned, latch, high_word))
        m.d.comb += [bus.r_data.eq(r_data), bus.error.eq(error), bus.done.eq(writing[3] | reading[5 + depth])]
        return m

    def _in_ram(self, r: Register) -> bool:
        """Whether counter register `r` is kept in the CounterRam."""
        return self.counters_in_ram and r.amount_width <= RAM_AMOUNT_WIDTH

    def _pair_values(self, counters: Mapping[tuple[str, int], Value]) -> dict[int, Value]:
        """Every word pair the read mux ORs: {pair: Cat(word 2*pair, word 2*pair + 1, carry)}, where `carry`
        (a counter's pending carry, else 0) is to be added to the upper word. Unmapped words and commands read
        0; counters not in `counters` (in the CounterRam) are not here."""
        words: dict[int, Value] = {}
        carries: dict[int, Value] = {}
        for address, r, i, k in self.registers.cells():
            if not r.access.readable or (r.access is Access.COUNTER and (r.name, i) not in counters):
                continue
            if r.access is Access.COUNTER:
                value = counters[r.name, i][: r.width]
                carries[address >> (WORD_ADDRESS_LSB + 1)] = counters[r.name, i][r.width]
            elif r.constant:
                value = Const(self.constants[r.name], r.width)
            else:
                value = Value.cast(self._port_of(r, i))
            word = address >> WORD_ADDRESS_LSB
            words[word] = value[WORD_BITS * k : min(len(value), WORD_BITS * (k + 1))]
        pairs = {}
        for p in sorted({word >> 1 for word in words}):
            low, high = (words.get(2 * p + half, Const(0, WORD_BITS)) for half in (0, 1))
            high = Cat(high, Const(0, WORD_BITS - len(high)))
            pairs[p] = Cat(low, Const(0, WORD_BITS - len(low)), high, carries.get(p, 0))
        return pairs

    def _port_of(self, r: Register, i: int):
        ports = getattr(self, r.access.value)[r.name]
        return ports[i] if r.is_array else ports
