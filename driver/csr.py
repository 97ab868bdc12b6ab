"""The card's registers by name, over whatever carries 32-bit register accesses.

Every backend gives one `RegisterBus`: the simulated card's AXI4-Lite port (sim), the Zynq's MMIO window
(pynq), CSR requests in UDP (net). `CardRegisters` turns register names (proto.registers, the single
declaration the CSR bank is generated from) into word accesses in the order the bank's conventions ask:
least significant word first, so that reading word 0 latches a 64-bit counter's upper word before it is
read. Nothing here knows addresses or widths: they all come from the register map.

    regs = CardRegisters(bus)
    regs.identify()                       # magic / version checked, the build's constants returned
    regs.write("session", "WIREBOOK01")
    regs.write("group", {"address": ..., "port": 26477, "valid": 1}, index=0)
    regs.command("instrument_write")
    regs.read("drops_a", "MAC")           # an array element, by label or index
    regs.counters()                       # every counter: {name: value} ({label: value} for arrays)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..proto import registers
from ..proto.registers import COUNTER, STATUS, WORD_BYTES

__all__ = ["CardError", "CardIdentity", "CardRegisters", "RegisterBus"]


class CardError(RuntimeError):
    """The card is not what the driver expects, or refused an access; the message says which and where."""


class RegisterBus(Protocol):
    """32-bit register accesses at byte addresses (each backend has one)."""

    def read32(self, address: int) -> int: ...

    def write32(self, address: int, value: int) -> None: ...


@dataclass(frozen=True)
class CardIdentity:
    """The constants a card reports about its build (the `identity` registers)."""

    version: int
    build_id: int
    data_width: int
    n_instruments: int
    n_orders: int
    n_levels: int
    n_groups: int


class CardRegisters:
    """Read and write the card's registers by name (see the module docstring)."""

    def __init__(self, bus: RegisterBus, where: str = "card") -> None:
        self.bus = bus
        self.where = where

    def read(self, name: str, index: int | str | None = None) -> Any:
        """The register's value: an int, text, or {field: value} for registers with fields."""
        reg = registers.register(name)
        base = reg.address(index)
        read32 = self.bus.read32
        words = [read32(base + WORD_BYTES * k) for k in range(reg.words)]  # word 0 first: it latches the rest
        return reg.decode(reg.from_words(words))

    def write(self, name: str, value: Any, index: int | str | None = None) -> None:
        """Write a config register (int, text, or {field: value}); the value is checked against its width."""
        reg = registers.register(name)
        if not reg.access.writable:
            raise CardError(f"{self.where}: register {name!r} is {reg.access.value}, not writable")
        base = reg.address(index)
        for k, word in enumerate(reg.to_words(value)):
            self.bus.write32(base + WORD_BYTES * k, word)

    def write_all(self, writes: Sequence[tuple[str, Any, int | str | None]]) -> None:
        """Many writes (name, value, index) in order; in as few bus transactions as the bus allows
        (`write32_many`, e.g. the net card's batched requests)."""
        words = []
        for name, value, index in writes:
            reg = registers.register(name)
            if not reg.access.writable:
                raise CardError(f"{self.where}: register {name!r} is {reg.access.value}, not writable")
            base = reg.address(index)
            words += [(base + WORD_BYTES * k, word) for k, word in enumerate(reg.to_words(value))]
        many = getattr(self.bus, "write32_many", None)
        if many is not None:
            many(words)
        else:
            for address, word in words:
                self.bus.write32(address, word)

    def command(self, name: str) -> None:
        """Pulse a command (write 1 to its strobe)."""
        reg = registers.register(name)
        if reg.access is not registers.COMMAND:
            raise CardError(f"{self.where}: register {name!r} is {reg.access.value}, not a command")
        self.bus.write32(reg.address(), 1)

    def identify(self) -> CardIdentity:
        """Check that a wirebook card of this register map's version answers; return its build constants."""
        magic = self.read("magic")
        if magic != registers.MAGIC:
            raise CardError(
                f"{self.where}: register magic at {registers.address('magic'):#x} reads {magic!r}, expected "
                f"{registers.MAGIC!r}: not a wirebook card (wrong address, or no bitstream loaded)"
            )
        version = self.read("version")
        if version != registers.VERSION:
            raise CardError(
                f"{self.where}: register map version {version}, this driver speaks version {registers.VERSION}: "
                "load a bitstream built from the same sources as the driver"
            )
        return CardIdentity(
            version=version,
            build_id=self.read("build_id"),
            data_width=self.read("data_width"),
            n_instruments=self.read("n_instruments"),
            n_orders=self.read("n_orders"),
            n_levels=self.read("n_levels"),
            n_groups=self.read("n_groups"),
        )

    def counters(self) -> dict[str, Any]:
        """Every counter register: {name: count}, an array as {label (or index): count}."""
        return self._every(COUNTER)

    def status(self) -> dict[str, Any]:
        """Every status register (the identity constants included)."""
        return self._every(STATUS)

    def _every(self, access: registers.Access) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for reg in registers.REGISTERS:
            if reg.access is not access:
                continue
            if reg.is_array:
                keys = reg.labels or tuple(range(reg.elements))
                out[reg.name] = {key: self.read(reg.name, i) for i, key in enumerate(keys)}
            else:
                out[reg.name] = self.read(reg.name)
        return out
