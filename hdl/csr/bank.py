"""The card's control and status register bank, generated from the register declaration (proto.registers).

Nothing here is written per register: adding a register to `proto.registers.REGISTERS` adds its port, its
storage, its address decode and its line in docs/registers.md.
"""

from __future__ import annotations

from collections.abc import Mapping

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...proto.registers import COUNTER_RESET, REGISTERS, WORD_BITS, WORD_BYTES, Access, Register, RegisterMap
from .axi_lite import DATA_WIDTH, AxiLiteTarget, axi_lite_target_members

__all__ = ["CsrBank", "RegisterPorts", "RegisterPortsSignature", "register_shape"]

WORD_ADDRESS_LSB = (WORD_BYTES - 1).bit_length()  # byte address -> word address


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
      its declared reset; changes the cycle after the bus write.
    - `status[name]`: In, the core's value. `constant` status registers have no port: their value is
      declared or given as `constants={"build_id": ..., "data_width": ...}` (others read their reset).
    - `counter[name]`: In, the increment: a 1-bit event strobe, or an `amount_width`-bit amount added each
      cycle. Counters are 64 bits, wrap (no saturation) and clear the cycle `counter_reset` pulses (an
      increment in that cycle is lost).
    - `command[name]`: Out, a one-cycle pulse on each bit written 1 (the cycle after the bus write).

    Bus behaviour (docs/registers.md): a read returns the value of the word at the time of the read strobe;
    reading word 0 of a latched register (multi-word counter or live status) latches its upper words in a
    shared latch and a following read of an upper word of the same register returns them. Unmapped
    addresses and writes to read-only registers answer SLVERR and change nothing; reads of a command return
    0 with OKAY. Read latency is set by `AxiLiteTarget` (RVALID 3 cycles after the AR handshake).
    """

    def __init__(self, registers: RegisterMap = REGISTERS, *, constants: Mapping[str, int] | None = None):
        self.registers = registers
        self.addr_width = registers.address_width
        self.constants = self._check_constants(registers, constants or {})
        kinds: dict[Access, dict[str, wiring.Member]] = {access: {} for access in Access}
        for r in registers:
            if r.access is Access.STATUS and r.constant:
                continue
            if r.name == "signature":
                raise ValueError("a register cannot be called 'signature' (it names the interface's signature)")
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

        r_data = Signal(DATA_WIDTH)
        error = Signal()
        m.d.comb += [bus.r_data.eq(r_data), bus.error.eq(error)]

        # Counters live here; the core only strobes them.
        counters: dict[tuple[str, int], Signal] = {}
        clear = self.command[COUNTER_RESET] if COUNTER_RESET in self.command else Const(0)
        for r in self.registers.of(Access.COUNTER):
            for i in range(r.elements):
                count = counters[r.name, i] = Signal(
                    r.width, name=f"count_{r.name}_{i}" if r.is_array else f"count_{r.name}"
                )
                m.d.sync += count.eq(Mux(clear, 0, count + self._port_of(r, i)))

        def value_of(r: Register, i: int) -> Value:
            if r.access is Access.COUNTER:
                return counters[r.name, i]
            if r.constant:
                return Const(self.constants[r.name], r.width)
            return Value.cast(self._port_of(r, i))

        # One latch for the upper words of whichever latched register had its word 0 read last; `owner` says
        # which, so that an upper word read without its word 0 first returns the live value.
        latched = {
            (r.name, i): n
            for n, (r, i) in enumerate((r, i) for r in self.registers if r.latched for i in range(r.elements))
        }
        latch_words = max((r.words - 1 for r in self.registers if r.latched), default=1)
        latch = Signal(WORD_BITS * latch_words)
        owner = Signal(range(len(latched) + 1), init=len(latched))

        def word_of(v: Value, k: int) -> Value:
            return v[WORD_BITS * k : min(len(v), WORD_BITS * (k + 1))]

        def write_bytes(target: Value, k: int) -> None:
            """Bytes of word k of `target` from the bus, as `w_strb` selects them."""
            for lane in range(DATA_WIDTH // 8):
                lo = WORD_BITS * k + 8 * lane
                if lo >= len(target):
                    break
                hi = min(lo + 8, len(target))
                with m.If(bus.w_strb[lane]):
                    m.d.sync += target[lo:hi].eq(bus.w_data[8 * lane : 8 * lane + hi - lo])

        strobe_bits = Cat(*(bus.w_strb[lane].replicate(8) for lane in range(DATA_WIDTH // 8)))
        for r in self.registers.of(Access.COMMAND):
            for i in range(r.elements):
                m.d.sync += self._port_of(r, i).eq(0)  # a pulse lasts one cycle

        with m.If(bus.w_stb | bus.r_stb):
            m.d.sync += [r_data.eq(0), error.eq(0)]
            with m.Switch(bus.addr[WORD_ADDRESS_LSB:]):
                for address, r, i, k in self.registers.cells():
                    with m.Case(address >> WORD_ADDRESS_LSB):
                        with m.If(bus.w_stb):
                            if r.access is Access.CONFIG:
                                write_bytes(Value.cast(self._port_of(r, i)), k)
                            elif r.access is Access.COMMAND:
                                pulse = self._port_of(r, i)
                                m.d.sync += pulse.eq(bus.w_data[: len(pulse)] & strobe_bits[: len(pulse)])
                            else:
                                m.d.sync += error.eq(1)
                        with m.Else():
                            if r.access is Access.COMMAND:
                                pass  # write-only: reads 0
                            elif not r.latched:
                                m.d.sync += r_data.eq(word_of(value_of(r, i), k))
                            elif k == 0:
                                v = value_of(r, i)
                                m.d.sync += [
                                    r_data.eq(v[:WORD_BITS]),
                                    latch.eq(v[WORD_BITS:]),
                                    owner.eq(latched[r.name, i]),
                                ]
                            else:
                                mine = owner == latched[r.name, i]
                                m.d.sync += r_data.eq(Mux(mine, word_of(latch, k - 1), word_of(value_of(r, i), k)))
                with m.Default():
                    m.d.sync += error.eq(1)
        return m

    def _port_of(self, r: Register, i: int):
        ports = getattr(self, r.access.value)[r.name]
        return ports[i] if r.is_array else ports
