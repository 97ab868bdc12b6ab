"""The card API: one small interface the agent uses and every backend implements.

    card = open_card("sim", CardSetup(...), instruments=["AAPL", "MSFT"])   # model | sim | pynq | net
    card.push_frames(frames)        # look-aside: feed frames the host received, to the card
    records = card.poll()           # BBO update records since the last poll (proto.bbo.DTYPE)
    card.symbols, card.gap          # what the agent reads: the subscribed instruments, a feed gap
    card.counters(), card.status()  # every counter / status register, by name
    card.set_clock(t)               # load the card's free-running clock (records carry it)
    card.close()

`GatewareCard` is the card for every backend that runs the FeedHandler gateware (`sim`: the Verilog in
Verilator; `pynq`: a Zynq board; `net`: a card inline on the wire). A backend supplies only what differs:
a `RegisterBus` for the CSRs, where records come from, and (look-aside) where frames go. Everything else is
here, once: `configure` writes the register map from `CardSetup` (MAC, multicast groups and ports, the
MoldUDP64 session, line enables), the instrument table is filled as the stock directory passes (look-aside:
`push_frames` subscribes a wanted instrument before the frame that announces it reaches the card), and the
feed's gaps are read from the `gaps` counter (at most every `status_interval_ms`; `gap` stays set, and the
strategy stays out, until `clear_gap`: after a gap the card's books miss orders).

Records lost between the card and the host (a record packet of the `net` card, an overrun DMA ring of the
`pynq` card) set `gap` too: the host's view of those books missed an update.

The `model` card (driver/model_card.py) implements the same interface over the golden model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import Field, field_validator

from ..host.validated import ConfigModel
from ..proto import net, registers
from .csr import CardError, CardIdentity, CardRegisters, RegisterBus
from .directory import DirectoryScanner

__all__ = [
    "ALL_INSTRUMENTS",
    "BACKENDS",
    "Card",
    "CardBackend",
    "CardError",
    "CardSetup",
    "FeedState",
    "GatewareCard",
    "open_card",
]

log = logging.getLogger(__name__)

BACKENDS = ("model", "sim", "pynq", "net")
ALL_INSTRUMENTS = "*"
MS = 1_000_000
TABLE_LOCATES = 16384  # locates the gateware's instrument table covers (hdl.feed_handler's n_locates default)
CLEAR_TIMEOUT_S = 5.0


class CardSetup(ConfigModel):
    """[card]: how the card is set up (written to its registers by `configure`)."""

    local_mac: str = Field("02:57:42:00:00:02", description="the card's MAC: unicast feed frames go to it")
    accept_multicast: bool = Field(True, description="take frames sent to IPv4 multicast MACs (01:00:5e:...)")
    groups: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:26477"],
        max_length=registers.N_GROUPS,
        description="feed destinations the card accepts, address:port (a multicast group, or unicast)",
    )
    session: str = Field("", max_length=10, description="MoldUDP64 session to accept; empty: any")
    lines: list[str] = Field(default_factory=lambda: list(registers.LINES), description="feed lines enabled")
    status_interval_ms: float = Field(1.0, gt=0, description="how often poll() reads the gap counter")
    # Where the card is, per backend (the register values above are the same for all):
    net_card: str = Field("", description="net: the card's CSR socket, address:port")
    net_records: Literal["socket", "dpdk"] = Field("socket", description="net: receive record packets with")
    net_local_address: str = Field("", description="net: this host's address on the card's link")
    net_record_port: int = Field(22339, ge=1, le=65535, description="net: UDP port the records come to")
    dpdk_device: str = Field("", description="net with dpdk: the DPDK device, e.g. a vdev or a port id")
    dpdk_eal_args: list[str] = Field(default_factory=list, description="net with dpdk: EAL arguments")
    pynq_bitfile: str = Field("", description="pynq: the overlay's .bit (its .hwh beside it)")
    pynq_csr_ip: str = Field("feed_handler_0", description="pynq: the core's AXI4-Lite slave in the overlay")
    pynq_dma_ip: str = Field("axi_dma_0", description="pynq: the AXI DMA (MM2S: feed frames, S2MM: records)")
    pynq_ring_records: int = Field(4096, ge=128, description="pynq: records the S2MM ring holds")

    @field_validator("local_mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        net.mac_address(value)
        return value

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        for entry in value:
            address, _, port = entry.rpartition(":")
            if not address or not port.isdigit() or not 0 < int(port) <= 0xFFFF:
                raise ValueError(f"a group is address:port with a port 1..65535, got {entry!r}")
            net.ipv4_address(address)
        return value

    @field_validator("lines")
    @classmethod
    def _lines(cls, value: list[str]) -> list[str]:
        unknown = [line for line in value if line not in registers.LINES]
        if unknown:
            raise ValueError(f"feed lines are {list(registers.LINES)}, got {unknown}")
        return value

    def backend_options(self, kind: str) -> dict[str, Any]:
        """What `open_card(kind, ...)` passes to that backend, from this section."""
        if kind == "pynq":
            if not self.pynq_bitfile:
                raise CardError("the pynq card needs card.pynq_bitfile (the overlay's .bit, its .hwh beside it)")
            return {"bitfile": self.pynq_bitfile, "csr_ip": self.pynq_csr_ip, "dma_ip": self.pynq_dma_ip,
                    "ring_records": self.pynq_ring_records}  # fmt: skip
        if kind != "net":
            return {}
        if not self.net_card:
            raise CardError('the net card needs card.net_card = "address:port" (its CSR socket)')
        address, _, port = self.net_card.rpartition(":")
        options: dict[str, Any] = {"card": (address, int(port)), "local_address": self.net_local_address}
        if self.net_records == "dpdk":
            if not self.dpdk_device:
                raise CardError('card.net_records = "dpdk" needs card.dpdk_device (a vdev or a port id)')
            from .dpdk import DpdkPort, Eal

            Eal.init(self.dpdk_eal_args or None)
            device = int(self.dpdk_device) if self.dpdk_device.isdigit() else self.dpdk_device
            options |= {"records": DpdkPort(device), "record_port": self.net_record_port}
        else:
            options["record_port"] = self.net_record_port
        return options

    def group_entries(self) -> list[dict[str, int]]:
        """The `group` register values, one per configured destination."""
        out = []
        for entry in self.groups:
            address, _, port = entry.rpartition(":")
            out.append({"address": net.ipv4_address(address), "port": int(port), "valid": 1})
        return out


@dataclass
class FeedState:
    """What the card knows of the feed, for summaries: messages taken, gaps, duplicates, end of session."""

    messages: int = 0
    gaps: int = 0
    duplicates: int = 0
    end_of_session: bool = False


class Card(Protocol):
    """The card as its users see it, whatever the backend (see the module docstring)."""

    kind: str
    symbols: dict[int, str]
    gap: bool

    def open(self) -> None: ...
    def close(self) -> None: ...
    def configure(self, setup: CardSetup) -> None: ...
    def counters(self) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...
    def set_clock(self, value: int) -> None: ...
    def poll(self) -> np.ndarray: ...
    def push_frames(self, frames: Sequence[bytes], line: int = 0) -> None: ...
    def clear_gap(self) -> None: ...
    def feed_state(self) -> FeedState: ...


class CardBackend(Protocol):
    """What differs between the ways the gateware is attached: registers, records out, frames in."""

    name: str
    bus: RegisterBus
    fresh: bool  # the gateware was just reset or loaded: its instrument table is empty
    records_lost: int  # records (or packets of them) lost on the way to the host: the books here missed them

    def open(self) -> None: ...
    def close(self) -> None: ...
    def receive(self) -> np.ndarray: ...  # BBO records since the last call, in the order the card made them
    def push_frames(self, line: int, frames: Sequence[bytes]) -> None: ...  # look-aside (CardError if inline)


class GatewareCard:
    """The card for every backend that runs the FeedHandler gateware (see the module docstring).

    `instruments`: the symbols to subscribe (`["*"]`: every instrument, as long as the card's instrument
    table has room; the ones beyond it are logged and left out of `symbols`, so nothing trades on an
    instrument the card does not track).
    """

    kind = "gateware"

    def __init__(
        self,
        backend: CardBackend,
        *,
        instruments: Iterable[str] = (ALL_INSTRUMENTS,),
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.backend = backend
        self.kind = backend.name
        self.registers = CardRegisters(backend.bus, where=f"{backend.name} card")
        self.identity: CardIdentity | None = None
        self.symbols: dict[int, str] = {}  # subscribed: locate -> symbol
        self.slots: dict[int, int] = {}  # subscribed: locate -> instrument-table slot
        self.left_out: set[int] = set()  # wanted, but the table was full
        self.gap = False
        self._wanted = set(instruments)
        self._scanner = DirectoryScanner()
        self._clock = clock
        self._gaps_seen = 0
        self._gaps_cleared = 0
        self._lost_cleared = 0
        self._status_every_ns = MS
        self._next_status_ns = 0

    # --- life ----------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Reach the card and check it is a wirebook card of this register map (`CardError` if not)."""
        self.backend.open()
        try:
            self.identity = self.registers.identify()
        except BaseException:
            self.backend.close()
            raise
        log.info("%s card: build %08x, %d-bit datapath, %d instruments, %d orders, %d levels", self.kind,
                 self.identity.build_id, self.identity.data_width, self.identity.n_instruments,
                 self.identity.n_orders, self.identity.n_levels)  # fmt: skip

    def close(self) -> None:
        self.backend.close()

    def configure(self, setup: CardSetup) -> None:
        """Write the setup to the card: disabled while it changes, books and counters cleared, then enabled."""
        regs = self.registers
        regs.write("enable", 0)
        if not self.backend.fresh:  # a running card may hold another host's subscriptions
            self._clear_instrument_table()
        self._unsubscribe_ours()
        regs.command("book_clear")
        regs.command("sequence_reset")
        regs.command(registers.COUNTER_RESET)
        regs.write("local_mac", net.mac_address(setup.local_mac))
        regs.write("accept_multicast", int(setup.accept_multicast))
        regs.write("session", setup.session)
        regs.write("check_session", int(bool(setup.session)))
        entries = setup.group_entries()
        for index in range(registers.N_GROUPS):
            value = entries[index] if index < len(entries) else {"address": 0, "port": 0, "valid": 0}
            regs.write("group", value, index)
        for line in registers.LINES:
            regs.write("line_enable", int(line in setup.lines), line)
        self._status_every_ns = int(setup.status_interval_ms * MS)
        self._gaps_seen = self._gaps_cleared = 0
        self._lost_cleared = self.backend.records_lost
        self.gap = False
        deadline = time.monotonic() + CLEAR_TIMEOUT_S
        while regs.read("clearing"):
            if time.monotonic() > deadline:
                raise CardError(f"{self.kind} card: book_clear still running after {CLEAR_TIMEOUT_S} s")
        regs.write("enable", 1)

    def _unsubscribe_ours(self) -> None:
        self._unsubscribe(list(self.slots))
        self.symbols.clear()
        self.slots.clear()
        self.left_out.clear()

    def _clear_instrument_table(self) -> None:
        self._unsubscribe(range(TABLE_LOCATES))

    def _unsubscribe(self, locates: Iterable[int]) -> None:
        writes: list[tuple[str, Any, int | str | None]] = [("instrument_valid", 0, None), ("instrument_slot", 0, None)]
        for locate in locates:
            writes += [("instrument_locate", locate, None), ("instrument_write", 1, None)]
        if len(writes) > 2:
            self.registers.write_all(writes)

    # --- the feed --------------------------------------------------------------------------------------------

    def push_frames(self, frames: Sequence[bytes], line: int = 0) -> None:
        """Look-aside: feed frames to the card's `line`; wanted instruments announced in them are subscribed
        first."""
        scan = self._scanner.scan
        for frame in frames:
            for locate, symbol in scan(frame):
                self._directory(locate, symbol)
        self.backend.push_frames(line, frames)

    def subscribe(self, locate: int, symbol: str) -> int | None:
        """Put `locate` in the card's instrument table; its slot, or None when the table is full."""
        if locate in self.slots:
            return self.slots[locate]
        assert self.identity is not None, "open() the card first"
        if not 0 <= locate < TABLE_LOCATES:
            if locate not in self.left_out:
                self.left_out.add(locate)
                log.warning("%s card: %s has locate %d, outside the instrument table (0..%d): not tracked",
                            self.kind, symbol, locate, TABLE_LOCATES - 1)  # fmt: skip
            return None
        if len(self.slots) >= self.identity.n_instruments:
            if locate not in self.left_out:
                self.left_out.add(locate)
                log.warning("%s card: instrument table full (%d): %s (locate %d) not tracked", self.kind,
                            self.identity.n_instruments, symbol, locate)  # fmt: skip
            return None
        slot = len(self.slots)
        regs = self.registers
        regs.write("instrument_locate", locate)
        regs.write("instrument_slot", slot)
        regs.write("instrument_valid", 1)
        regs.command("instrument_write")
        self.slots[locate] = slot
        self.symbols[locate] = symbol
        return slot

    def _directory(self, locate: int, symbol: str) -> None:
        if ALL_INSTRUMENTS in self._wanted or symbol in self._wanted:
            self.subscribe(locate, symbol)

    # --- records and state -----------------------------------------------------------------------------------

    def poll(self) -> np.ndarray:
        """The BBO records the card made since the last poll (an empty array when none)."""
        records = self.backend.receive()
        now = self._clock()
        if now >= self._next_status_ns:
            self._next_status_ns = now + self._status_every_ns
            gaps = self.registers.read("gaps")
            if gaps != self._gaps_seen:
                log.warning("%s card: feed gap (%d so far; last: %d messages from %d missing)", self.kind, gaps,
                            self.registers.read("last_gap_count"), self.registers.read("last_gap_first"))  # fmt: skip
                self._gaps_seen = gaps
            self.gap = self._gaps_seen > self._gaps_cleared or self.backend.records_lost > self._lost_cleared
        return records

    def clear_gap(self) -> None:
        """The operator (or a rebuild) vouches for the books again: `gap` clears until the next one."""
        self._gaps_cleared = self._gaps_seen
        self._lost_cleared = self.backend.records_lost
        self.gap = False

    def counters(self) -> dict[str, Any]:
        return self.registers.counters()

    def status(self) -> dict[str, Any]:
        return self.registers.status()

    def set_clock(self, value: int) -> None:
        self.registers.write("clock_value", value)
        self.registers.command("clock_set")

    def feed_state(self) -> FeedState:
        regs = self.registers
        return FeedState(
            messages=regs.read("messages_accepted"),
            gaps=regs.read("gaps"),
            duplicates=regs.read("duplicates"),
            end_of_session=bool(regs.read("end_of_session_seen")),
        )


def open_card(
    kind: str, setup: CardSetup | None = None, *, instruments: Iterable[str] = (ALL_INSTRUMENTS,), **options: Any
) -> Card:
    """The card of backend `kind` (model | sim | pynq | net), opened and configured from `setup`.

    `options` go to the backend (e.g. the sim card's gateware parameters, the pynq overlay's path)."""
    setup = setup or CardSetup()
    if kind == "model":
        from .model_card import ModelCard

        card: Card = ModelCard(**options)
    elif kind == "sim":
        from .sim_card import SimBackend

        card = GatewareCard(SimBackend(**options), instruments=instruments)
    elif kind == "pynq":
        from .pynq_card import PynqBackend

        card = GatewareCard(PynqBackend(**options), instruments=instruments)
    elif kind == "net":
        from .net_card import NetBackend

        card = GatewareCard(NetBackend(**options), instruments=instruments)
    else:
        raise ValueError(f"card backend must be one of {BACKENDS}, got {kind!r}")
    card.open()
    try:
        card.configure(setup)
    except BaseException:
        card.close()
        raise
    return card
