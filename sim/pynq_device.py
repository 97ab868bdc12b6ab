"""A Zynq (shaped like a PYNQ-Z2's block design) whose programmable logic is the FeedHandler in Verilator,
as a pynq `Device`, so that pynq's own classes (pynq.MMIO, pynq.allocate, pynq.Bitstream, pynq.lib.dma.DMA)
run against it unchanged.

    zynq = SimulatedZynq()                                      # PS: DDR and the AXI GP port; PL empty
    card = open_card("pynq", setup, bitfile=str(zynq.bitfile), ip_dict=zynq.ip_dict, device=zynq)

What pynq sees. The device has capability REGISTER_RW, so pynq.MMIO reaches it through `read_registers` /
`write_registers`, and pynq.allocate through `allocate`:
- DDR: `allocate` returns pynq PynqBuffers with physical addresses in a DDR window (page aligned, never
  reused). The DMA engines read and write them by physical address. The memory is coherent (as pynq's
  default non-cacheable buffers are): flush and invalidate are accepted and do nothing. An access no live
  buffer covers is an AXI DECERR (on a board it would land in whatever DDR is there).
- The PL, once configured (`download` of `bitfile`, the core's Verilator library: what pynq.Bitstream /
  pynq.Overlay do on a board), has, at PYNQ-Z2 addresses:
  - `feed_handler_0` at 0x43C0_0000: each word access is an AXI4-Lite transaction on the core's s_axil port
    (VerilatedCard.read32 / write32).
  - `axi_dma_0` at 0x4040_0000: an AXI DMA (PG021), direct register or scatter-gather mode
    (`scatter_gather`): its MM2S packets go to the core's line A input, one frame each; the core's record
    stream goes to its S2MM channel. `axi_dma_1` at 0x4041_0000 (with `line_b_dma`): MM2S only, to line B.
  An access outside these windows, or to any of them before the PL is configured, or answered SLVERR by the
  core, raises BusError (on a board: a bus fault that kills the process with SIGBUS, or a hung bus).

Time: the PL runs only when the PS reaches it. Before any register access is answered the core runs until
it has gone quiet (no input queued and no record for `quiet_cycles`), or stalls, or `max_cycles` pass: the
PL is fast next to a Python host. Between chunks of cycles the DMA engines move data: MM2S reads frames
ahead (up to 16 KiB per line) into the core's input queue and completes a descriptor once the core has
taken its bytes; S2MM writes the records waiting in its stream FIFO.

The record stream: the core's records go into a FIFO (the VerilatedCard's ring of `fifo_records`, plus up to
as many taken out of it for the S2MM engine). When the S2MM channel cannot take a record (halted, no
transfer armed in direct register mode, the tail descriptor done in scatter-gather mode) the FIFO fills and
then holds m_axis_bbo_tready low: the core stalls, and so do its inputs. In cyclic BD mode S2MM never waits:
it writes over descriptors completed before, as the IP does. A soft reset empties the FIFO.

The DMA model (register block per channel as pynq/lib/dma.py and PG021): DMACR (RS, Reset, Cyclic BD,
IRQThreshold), DMASR (Halted, Idle, SGIncld, the six error bits, IOC_Irq / Err_Irq write-1-to-clear,
IRQThresholdSts), CURDESC / TAILDESC (scatter-gather; the tail pointer's low word starts the engine; the
current pointer is taken while halted), SA / DA and LENGTH (direct mode; writing LENGTH starts a transfer
and, for S2MM, reads back the bytes received). Descriptors: NXTDESC, BUFFER_ADDRESS, CONTROL (length, TXSOF,
TXEOF), STATUS (bytes, RXSOF, RXEOF, error bits, Cmplt), 64-byte aligned; a completed descriptor fetched
again outside cyclic mode is SGIntErr. Errors (a descriptor or data address with no memory: SGDecErr /
DMADecErr; zero or over-long lengths: DMAIntErr) set their DMASR bit and Err_Irq and clear DMACR.RS (PG021):
the channel halts until a reset. Not modelled: interrupt lines (the status bits are), status / control
streams (APP words), keyhole, micro and multichannel modes, 64-bit addressing (addresses are 32-bit, the MSB
registers read 0); an MM2S soft reset does not take back frames already read ahead into the core's queue.
"""

from __future__ import annotations

import bisect
import datetime
import weakref
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pynq.buffer import PynqBuffer
from pynq.pl_server.device import Device

from ..driver.pynq_card import (
    ADDRESS,
    AXI_DMA_VLNV,
    BD_BUFFER,
    BD_BYTES,
    BD_CMPLT,
    BD_CONTROL,
    BD_EOF,
    BD_LENGTH,
    BD_NEXT,
    BD_SOF,
    BD_STATUS,
    CR_CYCLIC,
    CR_IRQ_THRESHOLD,
    CR_RESET,
    CR_RUN,
    CURDESC,
    DMACR,
    DMASR,
    LENGTH,
    MM2S,
    S2MM,
    SR_DLY_IRQ,
    SR_ERR_IRQ,
    SR_HALTED,
    SR_IDLE,
    SR_IOC_IRQ,
    SR_SG_INCLUDED,
    TAILDESC,
)
from ..proto import bbo, registers
from .verilated_card import LIBRARY, VerilatedCard, build_library

__all__ = ["AxiDmaModel", "BusError", "SimulatedZynq"]

CSR_BASE = 0x43C0_0000
DMA_BASE = 0x4040_0000
LINE_B_DMA_BASE = 0x4041_0000
DMA_RANGE = 0x1_0000
CSR_RANGE = 1 << registers.REGISTERS.address_width  # the core's AXI4-Lite window
DDR_BASE = 0x1000_0000
DDR_BYTES = 256 << 20
PAGE = 4096
CHUNK_CYCLES = 128  # the core makes at most a record every other cycle: a chunk cannot overfill the FIFO
QUIET_CYCLES = 100  # longer than the core's message-to-record latency (a few tens of cycles)
MAX_CYCLES_PER_ACCESS = 1 << 21
FIFO_RECORDS = 64
READ_AHEAD_BYTES = 16 << 10

SR_INT_ERR, SR_DEC_ERR = 1 << 4, 1 << 6
SR_SG_INT_ERR, SR_SG_DEC_ERR = 1 << 8, 1 << 10
BD_INT_ERR, BD_DEC_ERR = 1 << 28, 1 << 30
CR_WRITABLE = CR_RUN | CR_CYCLIC | 0x7000 | 0xFFFF_0000  # RS, Cyclic BD, IRQ enables, threshold, delay
ADDRESS_MASK = 0xFFFF_FFFF
DESCRIPTOR_MASK = 0xFFFF_FFC0  # CURDESC / TAILDESC bits 5:0 are reserved: descriptors are 64-byte aligned


class BusError(RuntimeError):
    """An AXI access from the PS answered SLVERR or DECERR (on a board: a bus fault, SIGBUS)."""


class _Channel:
    """One channel of the AXI DMA model: its registers and the transfer in progress."""

    def __init__(self, dma: AxiDmaModel, name: str) -> None:
        self.dma = dma
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.control = 1 << CR_IRQ_THRESHOLD
        self.halted = True
        self.idle = False
        self.errors = 0
        self.irq = 0
        self.threshold_left = 1
        self.current = self.tail = self.address = self.length = 0
        self.started = False  # SG: a tail pointer written since RS was set
        self.at_tail = False  # SG, not cyclic: the tail descriptor is done
        self.next_descriptor = 0
        self.armed = False  # direct mode: a transfer in progress
        # MM2S: the packet being gathered, and descriptors waiting for the core to take their bytes
        self.packet = bytearray()
        self.packet_parts: list[tuple[int | None, int]] = []
        self.in_flight: deque[tuple[int | None, int, int, bool]] = deque()  # (descriptor, bytes, end, eof)
        # S2MM: the rest of a packet that did not fit the descriptors queued
        self.partial: bytes | None = None
        self.partial_first = False

    @property
    def cyclic(self) -> bool:
        return bool(self.control & CR_CYCLIC)

    @property
    def running(self) -> bool:
        return not self.halted

    def status(self) -> int:
        value = self.errors | self.irq | self.threshold_left << CR_IRQ_THRESHOLD
        value |= SR_HALTED if self.halted else 0
        value |= SR_IDLE if self.idle else 0
        value |= SR_SG_INCLUDED if self.dma.scatter_gather else 0
        return value

    def fail(self, bit: int, why: str) -> None:
        """An error: its DMASR bit and Err_Irq set, the channel halted until a reset."""
        self.errors |= bit
        self.irq |= SR_ERR_IRQ
        self.halted = True
        self.idle = False
        self.control &= ~CR_RUN
        self.dma.log.append(f"{self.dma.name} {self.name}: {why}")

    def completed(self) -> None:
        """A packet done: IOC_Irq once IRQThreshold of them have been."""
        self.threshold_left -= 1
        if self.threshold_left <= 0:
            self.irq |= SR_IOC_IRQ
            self.threshold_left = max(1, self.control >> CR_IRQ_THRESHOLD & 0xFF)

    # --- registers -----------------------------------------------------------------------------------------

    def read(self, register: int) -> int:
        if register == DMACR:
            return self.control
        if register == DMASR:
            return self.status()
        if self.dma.scatter_gather:
            return {CURDESC: self.current, TAILDESC: self.tail}.get(register, 0)
        return {ADDRESS: self.address, LENGTH: self.length}.get(register, 0)

    def write(self, register: int, value: int) -> None:
        if register == DMACR:
            self.write_control(value)
        elif register == DMASR:
            self.irq &= ~(value & (SR_IOC_IRQ | SR_DLY_IRQ | SR_ERR_IRQ))
        elif self.dma.scatter_gather:
            if register == CURDESC and self.halted:
                self.current = self.next_descriptor = value & DESCRIPTOR_MASK
            elif register == TAILDESC and self.running:
                self.tail = value & DESCRIPTOR_MASK
                self.started, self.at_tail, self.idle = True, False, False
        elif register == ADDRESS:
            self.address = value & ADDRESS_MASK
        elif register == LENGTH and self.running:
            self.start_direct(value & BD_LENGTH)

    def write_control(self, value: int) -> None:
        if value & CR_RESET:
            self.dma.reset()
            return
        threshold = value >> CR_IRQ_THRESHOLD & 0xFF
        if not threshold:  # 0 is not a threshold: the previous one stays
            value = value & ~(0xFF << CR_IRQ_THRESHOLD) | (self.control & 0xFF << CR_IRQ_THRESHOLD)
        self.control = value & CR_WRITABLE
        if self.threshold_left > max(1, self.control >> CR_IRQ_THRESHOLD & 0xFF):
            self.threshold_left = max(1, self.control >> CR_IRQ_THRESHOLD & 0xFF)
        if value & CR_RUN and self.halted and not self.errors:
            self.halted = self.idle = self.started = self.at_tail = False
            self.next_descriptor = self.current
        elif not value & CR_RUN and not self.halted:
            self.halted, self.idle, self.armed = True, False, False

    def start_direct(self, length: int) -> None:
        if length == 0:
            self.fail(SR_INT_ERR, "LENGTH written 0")
            return
        self.length, self.idle, self.armed = length, False, True
        if self.name == "MM2S":
            data = self.dma.zynq.memory(self.address, length)
            if data is None:
                self.fail(SR_DEC_ERR, f"read of {length} bytes at {self.address:#x}: no memory there")
                return
            self.push_packet(bytes(data), [(None, length)])

    # --- MM2S: memory to the core's feed input ---------------------------------------------------------------

    def push_packet(self, packet: bytes, parts: list[tuple[int | None, int]]) -> None:
        """A whole packet to the core's line; its descriptors complete as the core takes their bytes."""
        end = self.dma.zynq.push_frame(self.dma.line, packet)
        start = end - len(packet)
        for index, (descriptor, size) in enumerate(parts):
            start += size
            self.in_flight.append((descriptor, size, start, index == len(parts) - 1))

    def feed(self) -> bool:
        """SG: fetch descriptors and stream their packets while the line's read-ahead has room."""
        zynq = self.dma.zynq
        moved = False
        while self.running and self.started and not self.at_tail:
            if zynq.core.queued_bytes(self.dma.line) >= READ_AHEAD_BYTES:
                break
            descriptor = self.fetch()
            if descriptor is None:
                break
            control = int(descriptor[BD_CONTROL])
            length = control & BD_LENGTH
            buffer = int(descriptor[BD_BUFFER])
            data = zynq.memory(buffer, length) if length else None
            if data is None:
                descriptor[BD_STATUS] = BD_CMPLT | (BD_INT_ERR if not length else BD_DEC_ERR)
                self.fail(SR_DEC_ERR if length else SR_INT_ERR,
                          f"descriptor {self.current:#x}: {length} bytes at {buffer:#x}: "
                          + ("no memory there" if length else "zero length"))  # fmt: skip
                break
            if control & BD_SOF:
                self.packet, self.packet_parts = bytearray(), []
            self.packet += data.tobytes()
            self.packet_parts.append((self.current, length))
            if control & BD_EOF:
                self.push_packet(bytes(self.packet), self.packet_parts)
                self.packet, self.packet_parts = bytearray(), []
            moved = True
            self.advance()
        return moved

    def settle(self) -> bool:
        """MM2S: complete the descriptors (or the direct transfer) whose bytes the core has taken."""
        if not self.in_flight:
            return False
        taken = self.dma.zynq.taken_bytes(self.dma.line)
        moved = False
        while self.in_flight and self.in_flight[0][2] <= taken:
            descriptor, size, _, eof = self.in_flight.popleft()
            if descriptor is not None:
                words = self.dma.zynq.memory(descriptor, BD_BYTES)
                if words is None:
                    self.fail(SR_SG_DEC_ERR, f"status write-back to descriptor {descriptor:#x}: no memory there")
                    return True
                words.view(np.uint32)[BD_STATUS] = BD_CMPLT | size
            if eof:
                self.completed()
            moved = True
        if not self.in_flight:
            if self.dma.scatter_gather and self.at_tail:
                self.idle = True
            elif not self.dma.scatter_gather and self.armed:
                self.idle, self.armed = True, False
        return moved

    # --- S2MM: the core's records to memory --------------------------------------------------------------

    def take(self, packet: bytes) -> bool:
        """Write one packet of the record stream; False when the channel cannot take it now (tready low)."""
        if not self.running or self.partial is not None:
            return False
        if not self.dma.scatter_gather:
            if not self.armed:
                return False
            data = self.dma.zynq.memory(self.address, min(len(packet), self.length))
            if data is None:
                self.fail(SR_DEC_ERR, f"write of {len(packet)} bytes at {self.address:#x}: no memory there")
                return True
            data[:] = np.frombuffer(packet, np.uint8)[: len(data)]
            if len(packet) > self.length:
                self.fail(SR_INT_ERR, f"a {len(packet)}-byte packet into a {self.length}-byte transfer")
                return True
            self.length, self.idle, self.armed = len(packet), True, False
            self.completed()
            return True
        if not self.started or self.at_tail:
            return False
        self.partial, self.partial_first = packet, True
        self.resume()
        return True

    def resume(self) -> bool:
        """SG: write the packet in hand into the next descriptors (across as many as it takes)."""
        moved = False
        while self.partial is not None and self.running and self.started and not self.at_tail:
            descriptor = self.fetch()
            if descriptor is None:
                return moved
            capacity = int(descriptor[BD_CONTROL]) & BD_LENGTH
            buffer = int(descriptor[BD_BUFFER])
            size = min(capacity, len(self.partial))
            data = self.dma.zynq.memory(buffer, size) if size else None
            if data is None:
                descriptor[BD_STATUS] = BD_CMPLT | (BD_DEC_ERR if size else BD_INT_ERR)
                self.fail(SR_DEC_ERR if size else SR_INT_ERR,
                          f"descriptor {self.current:#x}: {size} bytes at {buffer:#x}: "
                          + ("no memory there" if size else "zero length"))  # fmt: skip
                self.partial = None
                return True
            data[:] = np.frombuffer(self.partial, np.uint8, size)
            rest = self.partial[size:]
            status = BD_CMPLT | size | (BD_SOF if self.partial_first else 0) | (0 if rest else BD_EOF)
            descriptor[BD_STATUS] = status
            self.partial, self.partial_first = (rest or None), False
            if not rest:
                self.completed()
            moved = True
            self.advance()
        return moved

    # --- descriptors ---------------------------------------------------------------------------------------

    def fetch(self) -> np.ndarray | None:
        """The next descriptor's words (a view into DDR), or None after flagging why it cannot be used."""
        address = self.next_descriptor
        memory = self.dma.zynq.memory(address, BD_BYTES)
        if memory is None:
            self.fail(SR_SG_DEC_ERR, f"descriptor fetch at {address:#x}: no memory there")
            return None
        words = memory.view(np.uint32)
        if not self.cyclic and words[BD_STATUS] & BD_CMPLT:
            self.fail(SR_SG_INT_ERR, f"descriptor {address:#x} fetched with Cmplt already set")
            return None
        self.current = address
        return words

    def advance(self) -> None:
        """Past the descriptor just used: to the next in the chain, or idle at the tail (not cyclic)."""
        words = self.dma.zynq.memory(self.current, BD_BYTES)
        self.next_descriptor = int(words.view(np.uint32)[BD_NEXT]) & DESCRIPTOR_MASK if words is not None else 0
        if not self.cyclic and self.current == self.tail:  # a later tail pointer goes on from NXTDESC
            self.at_tail = True
            if self.name == "S2MM" or not self.in_flight:
                self.idle = True


class AxiDmaModel:
    """The AXI DMA (PG021) register window and engines of a SimulatedZynq (see the module docstring).

    `line`: the core's feed input its MM2S channel drives; `records`: its S2MM channel takes the core's
    record stream (else it has none).
    """

    def __init__(
        self, zynq: SimulatedZynq, name: str, base: int, *, line: int, records: bool, scatter_gather: bool
    ) -> None:
        self.zynq = zynq
        self.name = name
        self.base = base
        self.line = line
        self.records = records
        self.scatter_gather = scatter_gather
        self.log: list[str] = []  # why each error bit was set, for whoever debugs a test
        self.mm2s = _Channel(self, "MM2S")
        self.s2mm = _Channel(self, "S2MM") if records else None

    def reset(self) -> None:
        """Soft reset: both channels halted with their registers at reset values; the stream FIFO emptied."""
        self.mm2s.reset()
        if self.s2mm is not None:
            self.s2mm.reset()
            self.zynq.drop_records()

    def read(self, offset: int) -> int:
        channel, register = self._channel(offset)
        return channel.read(register) if channel is not None else 0

    def write(self, offset: int, value: int) -> None:
        channel, register = self._channel(offset)
        if channel is not None:
            channel.write(register, value)

    def _channel(self, offset: int) -> tuple[_Channel | None, int]:
        if offset < S2MM:
            return self.mm2s, offset - MM2S
        if offset < S2MM + S2MM:
            return self.s2mm, offset - S2MM
        return None, 0

    def service(self) -> bool:
        """Move what can be moved now; True when anything was."""
        moved = self.mm2s.settle()
        moved |= self.mm2s.feed()
        if self.s2mm is not None:
            moved |= self.s2mm.resume()
            fifo = self.zynq.record_fifo()
            while fifo and self.s2mm.take(fifo[0]):
                fifo.popleft()
                moved = True
                if not fifo:
                    fifo = self.zynq.record_fifo()
        return moved

    def description(self) -> dict[str, Any]:
        """The DMA's entry of pynq's ip_dict, as a .hwh gives it."""
        parameters = {
            "c_include_sg": int(self.scatter_gather),
            "c_sg_length_width": 26,
            "c_addr_width": 32,
            "c_micro_dma": 0,
            "c_include_mm2s": 1,
            "c_include_s2mm": int(self.records),
            "c_include_mm2s_dre": 0,
            "c_include_s2mm_dre": 0,
            "c_m_axi_mm2s_data_width": 64,
            "c_m_axi_s2mm_data_width": 64,
            "c_m_axis_mm2s_tdata_width": 64,
            "c_s_axis_s2mm_tdata_width": 8 * bbo.SIZE,
        }
        return {"fullpath": self.name, "type": f"{AXI_DMA_VLNV}:7.1", "phys_addr": self.base, "addr_range": DMA_RANGE,
                "parameters": {k: str(v) for k, v in parameters.items()}, "interrupts": {}, "gpio": {},
                "registers": {}, "state": None, "device": self.zynq}  # fmt: skip


class SimulatedZynq(Device):
    """A PYNQ-Z2-shaped Zynq whose PL is the FeedHandler in Verilator (see the module docstring).

    The core's parameters (data_width, n_instruments, n_orders, n_levels) pick its library, built once and
    cached under out/sim; `bitfile` is its path, what `download` (pynq.Bitstream(...).download()) loads.
    """

    def __init__(
        self,
        *,
        scatter_gather: bool = True,
        line_b_dma: bool = True,
        fifo_records: int = FIFO_RECORDS,
        quiet_cycles: int = QUIET_CYCLES,
        max_cycles: int = MAX_CYCLES_PER_ACCESS,
        ddr_bytes: int = DDR_BYTES,
        root: str = "out/sim",
        **parameters: int,
    ) -> None:
        super().__init__("simulated_zynq")
        if fifo_records < 1 or quiet_cycles < 1 or max_cycles < CHUNK_CYCLES:
            raise ValueError(f"fifo_records and quiet_cycles must be >= 1 and max_cycles >= {CHUNK_CYCLES}, got "
                             f"{fifo_records}, {quiet_cycles}, {max_cycles}")  # fmt: skip
        self.name = "SimulatedZynq"
        self.capabilities = {"REGISTER_RW": True, "MEMORY_MAPPED": False, "CALLABLE": False}
        self.parameters = parameters
        self.root = root
        self.bitfile = build_library(**parameters, root=root)
        self.fifo_records = fifo_records
        self.quiet_cycles = quiet_cycles
        self.max_cycles = max_cycles
        self.bitfile_name = ""
        self.timestamp = ""
        self.core: VerilatedCard | None = None
        self.dmas = [AxiDmaModel(self, "axi_dma_0", DMA_BASE, line=0, records=True, scatter_gather=scatter_gather)]
        if line_b_dma:
            self.dmas.append(AxiDmaModel(self, "axi_dma_1", LINE_B_DMA_BASE, line=1, records=False,
                                         scatter_gather=scatter_gather))  # fmt: skip
        self._windows = [(CSR_BASE, CSR_RANGE, "feed_handler_0")]  # (base, range, name)
        self._windows += [(d.base, DMA_RANGE, d.name) for d in self.dmas]
        self.ip_dict = {"feed_handler_0": self._card_description()} | {d.name: d.description() for d in self.dmas}
        self.mem_dict: dict[str, Any] = {}
        self._ddr_end = DDR_BASE + ddr_bytes
        self._next_address = DDR_BASE
        self._starts: list[int] = []
        self._allocations: list[tuple[int, int, weakref.ref]] = []
        self._pushed = [0, 0]
        self._fifo: deque[bytes] = deque()

    def _card_description(self) -> dict[str, Any]:
        return {"fullpath": "feed_handler_0", "type": "wirebook:user:feed_handler:1.0", "phys_addr": CSR_BASE,
                "addr_range": CSR_RANGE, "parameters": {}, "interrupts": {},
                "gpio": {}, "registers": {}, "state": None, "device": self}  # fmt: skip

    # --- the PL's configuration ----------------------------------------------------------------------------

    def download(self, bitstream: Any, parser: Any = None) -> None:
        """Configure the PL with `bitstream` (a pynq.Bitstream of `bitfile`): a new core, reset; DMAs reset."""
        path = Path(bitstream.bitfile_name)
        if path.name != LIBRARY or path.resolve() != self.bitfile:
            raise ValueError(f"simulated Zynq: {path} is not this PL's configuration: it loads {self.bitfile} "
                             "(the core's Verilator library, built by sim.verilated_card.build_library)")  # fmt: skip
        self.close()
        self.core = VerilatedCard(**self.parameters, ring_records=self.fifo_records, root=self.root)
        self.core.reset()
        for dma in self.dmas:
            dma.reset()
        self._pushed = [0, 0]
        self.bitfile_name = str(path)
        self.timestamp = datetime.datetime.now().isoformat()

    def close(self) -> None:
        """Free the PL (the PS and its DDR stay)."""
        if self.core is not None:
            self.core.close()
            self.core = None
        self._fifo.clear()

    # --- memory (DDR) --------------------------------------------------------------------------------------

    def allocate(self, shape: Any, dtype: Any = "u4", *, cacheable: bool = False, **kwargs: Any) -> PynqBuffer:
        """A PynqBuffer in simulated DDR with a physical address (page aligned); `cacheable` is accepted (the
        model's memory is coherent)."""
        if kwargs:
            raise TypeError(f"allocate() got unexpected arguments {sorted(kwargs)}")
        dtype = np.dtype(dtype)
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        address = self._next_address
        if address + size > self._ddr_end:
            raise MemoryError(f"simulated DDR: no room for {size} bytes ({self._ddr_end - address} left)")
        backing = np.zeros(max(size, 1), np.uint8)
        self._next_address = address + max(PAGE, -(-size // PAGE) * PAGE)
        self._starts.append(address)
        self._allocations.append((address, size, weakref.ref(backing)))
        return PynqBuffer(shape, dtype, buffer=backing, device_address=address, device=self, bo=address,
                          coherent=False)  # fmt: skip

    def flush(self, bo: Any, offset: int, ptr: int, size: int) -> None:
        """Coherent memory: nothing to write back."""

    def invalidate(self, bo: Any, offset: int, ptr: int, size: int) -> None:
        """Coherent memory: nothing to discard."""

    def memory(self, address: int, size: int) -> np.ndarray | None:
        """The bytes at physical [address, address + size) (a view), or None when no live buffer holds them."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        start, length, ref = self._allocations[i]
        backing = ref()
        if backing is None or address + size > start + length:
            return None
        return backing[address - start : address - start + size]

    # --- the PS's view of the PL: AXI GP accesses ----------------------------------------------------------

    def read_registers(self, address: int, length: int) -> bytes:
        """`length` bytes of whole words at `address` (pynq.MMIO's path for REGISTER_RW devices)."""
        window = self._window(address, length, "read")
        self.run()
        words = [self._read_word(window, address + k) for k in range(0, length, 4)]
        return b"".join(word.to_bytes(4, "little") for word in words)

    def write_registers(self, address: int, data: bytes) -> None:
        """Whole little-endian words of `data` from `address`."""
        window = self._window(address, len(data), "write")
        self.run()
        for k in range(0, len(data), 4):
            self._write_word(window, address + k, int.from_bytes(data[k : k + 4], "little"))
        for dma in self.dmas:
            dma.service()

    def _window(self, address: int, length: int, access: str) -> tuple[int, str]:
        if address % 4 or length % 4 or length <= 0:
            raise BusError(f"simulated Zynq: {access} of {length} bytes at {address:#010x}: not whole words")
        if self.core is None:
            raise BusError(f"simulated Zynq: {access} at {address:#010x}: the PL is not configured (no bitstream "
                           "downloaded); on a board the bus would hang")  # fmt: skip
        for base, size, name in self._windows:
            if base <= address and address + length <= base + size:
                return base, name
        raise BusError(
            f"simulated Zynq: {access} at {address:#010x}: DECERR, no slave there (the PL has "
            + ", ".join(f"{name} at {base:#x}" for base, _, name in self._windows)
            + ")"
        )

    def _read_word(self, window: tuple[int, str], address: int) -> int:
        base, name = window
        if name == "feed_handler_0":
            try:
                return self.core.read32(address - base)
            except RuntimeError as e:
                raise BusError(f"simulated Zynq: read at {address:#010x} ({name}): {e}") from e
        return self._dma(name).read(address - base)

    def _write_word(self, window: tuple[int, str], address: int, value: int) -> None:
        base, name = window
        if name == "feed_handler_0":
            try:
                self.core.write32(address - base, value)
            except RuntimeError as e:
                raise BusError(f"simulated Zynq: write of {value:#x} at {address:#010x} ({name}): {e}") from e
        else:
            self._dma(name).write(address - base, value)

    def _dma(self, name: str) -> AxiDmaModel:
        return next(d for d in self.dmas if d.name == name)

    # --- the PL running ------------------------------------------------------------------------------------

    def run(self) -> int:
        """Run the core until it is quiet or stalled (at most `max_cycles`), the DMAs moving data between
        chunks; the cycles run."""
        core = self.core
        if core is None:
            return 0
        total = 0
        while total < self.max_cycles:
            queued = (core.queued_bytes(0), core.queued_bytes(1))
            waiting = core.records_waiting
            ran = core.run(CHUNK_CYCLES, self.quiet_cycles)
            total += ran
            moved = False
            for dma in self.dmas:
                moved |= dma.service()
            if moved:
                continue
            if ran < CHUNK_CYCLES:  # quiet: nothing queued, no record for quiet_cycles
                break
            if (core.queued_bytes(0), core.queued_bytes(1)) == queued and core.records_waiting == waiting:
                break  # stalled: the record FIFO is full and nothing takes from it
        return total

    def push_frame(self, line: int, frame: bytes) -> int:
        """Queue a frame on the core's `line`; the bytes pushed to that line so far."""
        self.core.push_frame(line, frame)
        self._pushed[line] += len(frame)
        return self._pushed[line]

    def taken_bytes(self, line: int) -> int:
        """Bytes the core has taken from `line`'s input."""
        return self._pushed[line] - self.core.queued_bytes(line)

    def record_fifo(self) -> deque[bytes]:
        """The record stream's packets waiting for S2MM (refilled from the core's ring once empty)."""
        if not self._fifo and self.core is not None and self.core.records_waiting:
            raw = self.core.records().view(np.uint8).reshape(-1, bbo.SIZE)
            self._fifo.extend(row.tobytes() for row in raw)
        return self._fifo

    def drop_records(self) -> None:
        """Empty the record stream's FIFO (a soft reset of the DMA behind it)."""
        self._fifo.clear()
        if self.core is not None:
            self.core.records()

    @property
    def errors(self) -> Mapping[str, list[str]]:
        """Why each DMA error bit was set, by engine."""
        return {d.name: list(d.log) for d in self.dmas}
