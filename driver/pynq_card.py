"""The `pynq` backend: the FeedHandler on a Zynq board (PYNQ-Z2), driven through pynq.

The block design it drives (IP names are options; `feed_handler_0` and `axi_dma_0` by default):

    PS M_AXI_GP0 ─ interconnect ─ feed_handler_0/s_axil           CSRs, through pynq.MMIO
                                └ axi_dma_0/S_AXI_LITE            the DMA's registers (PG021)
    axi_dma_0 (scatter-gather)  M_AXIS_MM2S ─> s_axis_a           look-aside feed frames, line A
                                S_AXIS_S2MM <─ m_axis_bbo         BBO records
                                M_AXI_SG, M_AXI_MM2S, M_AXI_S2MM ─> PS S_AXI_HP0 (DDR)
    line_b_dma_ip (optional)    M_AXIS_MM2S ─> s_axis_b           look-aside feed frames, line B

Records: a cyclic scatter-gather S2MM ring. `ring_records` descriptors, one per 64-byte slot of a
`pynq.allocate` record array, chained in a circle; the channel runs in cyclic BD mode (PG021: the tail
pointer only starts it, completed descriptors are reused without being handed back), so the core never waits
for the host: a host that falls behind loses the oldest records, it never stalls the book. Each record is
one AXI4-Stream packet (tlast set), so each fills one descriptor, whose status word the DMA writes
Cmplt | RXSOF | RXEOF | 64. The card's `bbo_records` counter (records handed to the DMA) is the write index:
record i goes to slot (i - base) mod ring_records, `base` being the counter's value when the ring was armed.
`receive()` reads the counter, takes the completed descriptors from its read index up to it in order (two
runs across the wrap-around), copies their records out, clears their status words (the slot is re-armed)
and reads the counter again.

Overrun: more than `ring_records` records past the read index at the first read (the oldest were written
over), or at the second (the DMA came round to slots being read and re-armed in this call: those copies may
be torn, a re-armed slot may have lost a fresh record's status) means the ring is no longer in step. The
ring is then restarted: S2MM halted (the stream stalls, the counter stops), the counter read, the DMA soft
reset (its buffered data dropped) and the ring re-armed at that count. Every record the card made and the
host did not get is counted in `records_lost` (so GatewareCard raises `gap`); the records returned are only
ones known good, in order. A `counter_reset` written through this backend's bus (GatewareCard.configure)
restarts the ring the same way around the reset, its records kept for the next `receive()`.

Frames (look-aside): MM2S, one frame per AXI4-Stream packet. `push_frames` copies a batch into a staging
buffer (`frame_buffer_bytes`, frames at 64-byte aligned offsets), writes one descriptor per frame (TXSOF |
TXEOF), starts the chain with one tail pointer write and waits for the channel to go idle: the frames have
then left DDR for the core. pynq's own DMA channels are not used for the transfers: their scatter-gather
channel allocates fresh descriptors and halts the engine per transfer and refuses cyclic mode on S2MM.

Accepts: Ethernet frames without FCS (1 byte to min(frame_buffer_bytes, the DMA's maximum transfer)) on
line 0 (A) and, with `line_b_dma_ip`, line 1 (B).
Emits: the core's BBO records (proto.bbo.DTYPE) in the order it made them.
Throughput: a `push_frames` batch costs about ten register accesses however many frames it has; an idle
`receive()` three register reads, a busy one five plus one copy of the records. At its peak the core makes a
record every other cycle: a 4096-record ring fills in 8192 cycles (66 us at 125 MHz), so a host that polls
less often than the ring lasts at the feed's burst rate loses records (counted, `gap`).
Bad input: a missing IP, an IP of the wrong kind, a DMA without scatter-gather or without the channels the
card needs, a `ring_records` or `frame_buffer_bytes` out of range, a frame too long or empty raise
ValueError or CardError naming it; a DMA error bit (DMASR) raises CardError naming the engine, the channel,
the bits and the descriptor; a CSR access answered with an error raises CardError naming the address.

`fresh` is true when this backend loaded the bitstream (the PL was just configured: nothing subscribed).
Without a .hwh (or for a simulated Zynq, sim/pynq_device.py), give `ip_dict`: pynq's IP descriptions
({"phys_addr", "addr_range", "type", "parameters", ...}, the DMA's as pynq.lib.dma.DMA expects it) and the
`device`; a `bitfile` is then loaded with pynq.Bitstream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..proto import bbo, registers
from .csr import CardError, CardRegisters

__all__ = [
    "AXI_DMA_VLNV",
    "DEFAULT_CSR_IP",
    "DEFAULT_DMA_IP",
    "DEFAULT_RING_RECORDS",
    "MIN_RING_RECORDS",
    "PynqBackend",
]

log = logging.getLogger(__name__)

DEFAULT_CSR_IP = "feed_handler_0"
DEFAULT_DMA_IP = "axi_dma_0"
DEFAULT_RING_RECORDS = 4096
MIN_RING_RECORDS = 128  # a full-size frame can carry ~70 order messages, a record each
DEFAULT_FRAME_BUFFER_BYTES = 256 << 10
MIN_FRAME_BUFFER_BYTES = 2048  # one full-size frame
DEFAULT_TIMEOUT_S = 1.0
FRAME_ALIGN = 64  # staging offsets: aligned for any memory-map width up to 512 bits (no DRE needed)

# --- the AXI DMA (PG021) as this driver uses it; sim/pynq_device.py models the same ---------------------

AXI_DMA_VLNV = "xilinx.com:ip:axi_dma"
MM2S, S2MM = 0x00, 0x30  # each channel's register block
DMACR, DMASR, CURDESC, CURDESC_MSB, TAILDESC, TAILDESC_MSB = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14
ADDRESS, ADDRESS_MSB, LENGTH = 0x18, 0x1C, 0x28  # direct register mode: MM2S_SA / S2MM_DA, and LENGTH
CR_RUN, CR_RESET, CR_CYCLIC = 1 << 0, 1 << 2, 1 << 4
CR_IRQ_THRESHOLD = 16  # shift of DMACR.IRQThreshold (and DMASR.IRQThresholdSts)
SR_HALTED, SR_IDLE, SR_SG_INCLUDED = 1 << 0, 1 << 1, 1 << 3
SR_IOC_IRQ, SR_DLY_IRQ, SR_ERR_IRQ = 1 << 12, 1 << 13, 1 << 14
SR_ERRORS = {
    1 << 4: "DMAIntErr (a zero-length or over-long transfer)",
    1 << 5: "DMASlvErr (the memory answered an error)",
    1 << 6: "DMADecErr (a data address with no memory behind it)",
    1 << 8: "SGIntErr (a descriptor already completed, or misaligned)",
    1 << 9: "SGSlvErr (a descriptor access answered an error)",
    1 << 10: "SGDecErr (a descriptor address with no memory behind it)",
}
SR_ERROR_MASK = sum(SR_ERRORS)
BD_BYTES, BD_WORDS = 64, 16  # a descriptor: 16 words, 64-byte aligned
BD_NEXT, BD_NEXT_MSB, BD_BUFFER, BD_BUFFER_MSB, BD_CONTROL, BD_STATUS = 0, 1, 2, 3, 6, 7
BD_SOF, BD_EOF = 1 << 27, 1 << 26  # CONTROL: TXSOF / TXEOF (MM2S); STATUS: RXSOF / RXEOF (S2MM)
BD_CMPLT = 1 << 31
BD_ERRORS = {1 << 28: "DMAIntErr", 1 << 29: "DMASlvErr", 1 << 30: "DMADecErr"}
BD_ERROR_MASK = sum(BD_ERRORS)
BD_LENGTH = (1 << 26) - 1

RECORD_STATUS = BD_CMPLT | BD_SOF | BD_EOF | bbo.SIZE  # a whole record, in one descriptor
LINE_NAMES = registers.LINES


def _low(value: Any) -> Any:
    return value & 0xFFFF_FFFF


def _high(value: Any) -> Any:
    return value >> 32


class _DmaChannel:
    """One channel (MM2S or S2MM) of an AXI DMA, through the DMA's pynq.MMIO."""

    def __init__(self, mmio: Any, block: int, where: str, timeout_s: float) -> None:
        self.mmio = mmio
        self.block = block
        self.where = where
        self.timeout_s = timeout_s

    def read(self, register: int) -> int:
        return int(self.mmio.read(self.block + register))

    def write(self, register: int, value: int) -> None:
        self.mmio.write(self.block + register, int(value))

    def write_address(self, register: int, address: int) -> None:
        """A descriptor pointer, low word first (the tail pointer's low word starts the engine)."""
        self.write(register, _low(address))
        self.write(register + 4, _high(address))

    def check(self) -> int:
        """DMASR; CardError naming the error bits and the descriptor when the channel reports an error."""
        status = self.read(DMASR)
        if status & SR_ERROR_MASK:
            errors = ", ".join(name for bit, name in SR_ERRORS.items() if status & bit)
            at = self.read(CURDESC) | self.read(CURDESC_MSB) << 32 if status & SR_SG_INCLUDED else None
            where = f" at descriptor {at:#x}" if at is not None else ""
            raise CardError(f"{self.where}: DMASR {status:#010x}: {errors}{where}; the channel has halted "
                            "(close and open the card to reset it)")  # fmt: skip
        return status

    def wait(self, done: Callable[[int], bool], what: str) -> int:
        """Poll DMASR until `done(status)`; CardError on an error bit or after `timeout_s`."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            status = self.check()
            if done(status):
                return status
            if time.monotonic() > deadline:
                raise CardError(f"{self.where}: {what}: not done after {self.timeout_s} s (DMASR {status:#010x})")

    def halt(self) -> None:
        self.write(DMACR, 0)
        self.wait(lambda status: status & SR_HALTED, "halting")

    def start(self, control: int) -> None:
        self.write(DMACR, control | CR_RUN | 1 << CR_IRQ_THRESHOLD)
        self.wait(lambda status: not status & SR_HALTED, "starting")

    def reset(self) -> None:
        """Soft reset: the whole DMA (both channels) back to halted, its buffered data dropped."""
        self.write(DMACR, CR_RESET)
        deadline = time.monotonic() + self.timeout_s
        while self.read(DMACR) & CR_RESET:
            if time.monotonic() > deadline:
                raise CardError(f"{self.where}: soft reset not done after {self.timeout_s} s")


class _RecordRing:
    """The cyclic S2MM ring of BBO records (see the module docstring)."""

    def __init__(self, pynq: Any, channel: _DmaChannel, device: Any, size: int, records_out: Callable[[], int]) -> None:
        self.channel = channel
        self.size = size
        self.records_out = records_out
        self.records = pynq.allocate((size,), bbo.DTYPE, target=device)
        self.descriptors = pynq.allocate((size, BD_WORDS), np.uint32, target=device)
        self._raw = self.records.view(np.uint8).reshape(size, bbo.SIZE)
        slots = np.arange(size, dtype=np.uint64)
        following = self.descriptors.physical_address + BD_BYTES * ((slots + 1) % size)
        buffers = self.records.physical_address + bbo.SIZE * slots
        d = self.descriptors
        d[:, BD_NEXT], d[:, BD_NEXT_MSB] = _low(following), _high(following)
        d[:, BD_BUFFER], d[:, BD_BUFFER_MSB] = _low(buffers), _high(buffers)
        d[:, BD_CONTROL] = bbo.SIZE
        self.taken = 0  # records (in bbo_records counts) read or counted lost
        self.slot = 0  # where record `taken` lands
        self.lost = 0

    def start(self) -> None:
        self._restart()

    def stop(self) -> None:
        """Halt and reset: the DMA writes no more into the ring (before its buffers are freed)."""
        self.channel.write(DMACR, 0)
        self.channel.reset()

    def _arm(self, base: int) -> None:
        d = self.descriptors
        d[:, BD_STATUS] = 0
        d.flush()
        channel = self.channel
        channel.write_address(CURDESC, d.physical_address)
        channel.start(CR_CYCLIC)
        channel.write_address(TAILDESC, d.physical_address + BD_BYTES * self.size)  # outside the chain (PG021)
        self.taken, self.slot = base, 0

    def _restart(self) -> int:
        """Halt S2MM (the stream stalls: the count holds), read the count, reset, re-arm there; the count."""
        self.channel.halt()
        base = self.records_out()
        self.channel.reset()
        self._arm(base)
        return base

    def _runs(self, count: int) -> list[tuple[int, int]]:
        """The slots of the next `count` records: one run, or two across the wrap-around."""
        end = self.slot + count
        if end <= self.size:
            return [(self.slot, end)]
        return [(self.slot, self.size), (0, end - self.size)]

    def receive(self) -> np.ndarray:
        """Every record the ring holds past the read index, in order (see the module docstring)."""
        self.channel.check()
        start = self.taken
        pending = self.records_out() - start
        if pending == 0:
            return bbo.empty(0)
        if pending < 0:
            log.warning("pynq card: bbo_records went back by %d (counters reset behind this host's back?): "
                        "record ring restarted", -pending)  # fmt: skip
            self._restart()
            return bbo.empty(0)
        if pending > self.size:
            self._overrun(start, bbo.empty(0))
            return bbo.empty(0)
        d = self.descriptors
        runs = self._runs(pending)
        for a, b in runs:
            d[a:b].invalidate()
        status = np.concatenate([d[a:b, BD_STATUS] for a, b in runs])
        complete = (status & BD_CMPLT) != 0
        count = pending if complete.all() else int(np.argmin(complete))  # the rest are still on their way
        if count == 0:
            return bbo.empty(0)
        self._check(status[:count])
        runs = self._runs(count)
        out = bbo.empty(count)
        raw = out.view(np.uint8).reshape(count, bbo.SIZE)
        at = 0
        for a, b in runs:
            self.records[a:b].invalidate()
            raw[at : at + b - a] = self._raw[a:b]
            d[a:b, BD_STATUS] = 0  # re-armed
            d[a:b].flush()
            at += b - a
        end = self.records_out()
        if end - start > self.size:  # the DMA came round to slots read and re-armed in this call
            kept = out[max(0, end - self.size - start) :]
            self._overrun(start, kept)
            return kept
        self.taken += count
        self.slot = (self.slot + count) % self.size
        return out

    def _check(self, status: np.ndarray) -> None:
        bad = np.flatnonzero(status != RECORD_STATUS)
        if len(bad):
            word = int(status[bad[0]])
            slot = (self.slot + int(bad[0])) % self.size
            errors = ", ".join(name for bit, name in BD_ERRORS.items() if word & bit)
            raise CardError(
                f"{self.channel.where}: record ring slot {slot}: descriptor status {word:#010x} "
                f"({errors or f'{word & BD_LENGTH} bytes, RXSOF/RXEOF {word >> 26 & 3:02b}'}); expected one "
                f"{bbo.SIZE}-byte record per packet ({RECORD_STATUS:#010x})"
            )

    def _overrun(self, start: int, kept: np.ndarray) -> None:
        base = self._restart()
        lost = base - start - len(kept)
        self.lost += lost
        log.warning("pynq card: record ring overrun: %d records lost (the host read too slowly for a ring of "
                    "%d); ring restarted", lost, self.size)  # fmt: skip

    def around_counter_reset(self, reset_counters: Callable[[], None]) -> np.ndarray:
        """Run `reset_counters` (bbo_records back to 0) with the ring halted, then re-arm at 0; the records
        the ring held before."""
        before = self.receive()
        self.channel.halt()
        self.lost += max(0, self.records_out() - self.taken)  # made, never written out (held by the DMA)
        reset_counters()
        self.channel.reset()
        self._arm(0)
        return before


class _FrameSender:
    """MM2S: look-aside frames to one feed line, one AXI4-Stream packet each (see the module docstring)."""

    def __init__(self, pynq: Any, channel: _DmaChannel, device: Any, buffer_bytes: int, max_transfer: int) -> None:
        self.channel = channel
        self.buffer = pynq.allocate((buffer_bytes,), np.uint8, target=device)
        self.slots = buffer_bytes // FRAME_ALIGN
        self.descriptors = pynq.allocate((self.slots, BD_WORDS), np.uint32, target=device)
        self.max_length = min(max_transfer, buffer_bytes)
        slots = np.arange(self.slots, dtype=np.uint64)
        following = self.descriptors.physical_address + BD_BYTES * ((slots + 1) % self.slots)  # each run's tail ends it
        self.descriptors[:, BD_NEXT], self.descriptors[:, BD_NEXT_MSB] = _low(following), _high(following)

    def send(self, frames: Sequence[bytes]) -> None:
        for index, frame in enumerate(frames):
            if not 0 < len(frame) <= self.max_length:
                raise ValueError(f"{self.channel.where}: frame {index} has {len(frame)} bytes; a frame has 1 to "
                                 f"{self.max_length} (frame_buffer_bytes, the DMA's maximum transfer)")  # fmt: skip
        at = 0
        while at < len(frames):
            at = self._send_from(frames, at)

    def _send_from(self, frames: Sequence[bytes], first: int) -> int:
        buffer = self.buffer
        offsets, lengths, used, i = [], [], 0, first
        while i < len(frames) and len(lengths) < self.slots:
            n = len(frames[i])
            if used + n > len(buffer):
                break
            buffer[used : used + n] = np.frombuffer(frames[i], np.uint8)
            offsets.append(used)
            lengths.append(n)
            used += -(-n // FRAME_ALIGN) * FRAME_ALIGN
            i += 1
        count = len(lengths)
        d = self.descriptors
        addresses = buffer.physical_address + np.asarray(offsets, np.uint64)
        sizes = np.asarray(lengths, np.uint32)
        d[:count, BD_BUFFER], d[:count, BD_BUFFER_MSB] = _low(addresses), _high(addresses)
        d[:count, BD_CONTROL] = sizes | BD_SOF | BD_EOF
        d[:count, BD_STATUS] = 0
        buffer[:used].flush()
        d[:count].flush()
        channel = self.channel
        channel.halt()
        channel.write_address(CURDESC, d.physical_address)
        channel.start(0)
        channel.write_address(TAILDESC, d.physical_address + BD_BYTES * (count - 1))
        channel.wait(lambda status: status & SR_IDLE, f"sending {count} frames")
        d[:count].invalidate()
        status = d[:count, BD_STATUS]
        bad = np.flatnonzero((status & (BD_CMPLT | BD_ERROR_MASK | BD_LENGTH)) != (BD_CMPLT | sizes))
        if len(bad):
            word = int(status[bad[0]])
            raise CardError(f"{channel.where}: frame {first + int(bad[0])} ({lengths[bad[0]]} bytes): descriptor "
                            f"status {word:#010x} (expected Cmplt and its length)")  # fmt: skip
        return i


def _description(ip_dict: Mapping[str, Any], name: str, device: Any, role: str) -> dict[str, Any]:
    if name not in ip_dict:
        raise CardError(f"pynq card: no IP {name!r} ({role}) in the design; it has {sorted(ip_dict)}")
    description = dict(ip_dict[name])
    for key in ("phys_addr", "addr_range"):
        if key not in description:
            raise CardError(f"pynq card: IP {name!r} ({role}) has no {key!r} in its description")
    description.setdefault("device", device)
    description.setdefault("interrupts", {})
    description.setdefault("gpio", {})
    description.setdefault("fullpath", name)
    return description


def _dma_description(ip_dict: Mapping[str, Any], name: str, device: Any, role: str, records: bool) -> dict[str, Any]:
    description = _description(ip_dict, name, device, role)
    where = f"pynq card: {name} ({role}) at {description['phys_addr']:#x}"
    kind = str(description.get("type", ""))
    if not kind.startswith(AXI_DMA_VLNV + ":"):
        raise CardError(f"{where} is {kind or 'of no type'}, not an AXI DMA ({AXI_DMA_VLNV})")
    parameters = description.get("parameters")
    if not isinstance(parameters, Mapping):
        raise CardError(f"{where}: no parameters in its description (pynq.lib.dma.DMA needs them, from a .hwh)")

    def flag(key: str) -> bool:
        return bool(int(parameters.get(key, 0)))

    if not flag("c_include_sg"):
        raise CardError(f"{where}: built without scatter-gather (c_include_sg=0): this driver's descriptor "
                        "rings (records in cyclic BD mode, frames in batches) need it")  # fmt: skip
    if flag("c_micro_dma"):
        raise CardError(f"{where}: a micro DMA (c_micro_dma=1) has no scatter-gather")
    if records and not flag("c_include_s2mm"):
        raise CardError(f"{where}: no S2MM channel (c_include_s2mm=0): the card's records have nowhere to go")
    if not records and not flag("c_include_mm2s"):
        raise CardError(f"{where}: no MM2S channel (c_include_mm2s=0): it cannot carry feed frames")
    return description


class PynqBackend:
    """The FeedHandler on a Zynq through pynq (see the module docstring).

    `bitfile`: the overlay (.bit with its .hwh beside it) to load, or, with `ip_dict`, a bitstream to load
    with pynq.Bitstream; `download=False` takes the PL as it is. `ip_dict` and `device`: the IP descriptions
    and the pynq Device, for designs without a .hwh and for the simulated Zynq.
    """

    name = "pynq"

    def __init__(
        self,
        bitfile: str | None = None,
        *,
        ip_dict: Mapping[str, Any] | None = None,
        device: Any = None,
        csr_ip: str = DEFAULT_CSR_IP,
        dma_ip: str = DEFAULT_DMA_IP,
        line_b_dma_ip: str | None = None,
        ring_records: int = DEFAULT_RING_RECORDS,
        frame_buffer_bytes: int = DEFAULT_FRAME_BUFFER_BYTES,
        download: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if bitfile is None and ip_dict is None:
            raise ValueError("pynq card: give bitfile (an overlay: .bit with its .hwh) or ip_dict and device")
        if not isinstance(ring_records, int) or ring_records < MIN_RING_RECORDS:
            raise ValueError(f"pynq card: ring_records must be at least {MIN_RING_RECORDS} (a full-size frame "
                             f"can make ~70 records), got {ring_records!r}")  # fmt: skip
        if not isinstance(frame_buffer_bytes, int) or frame_buffer_bytes < MIN_FRAME_BUFFER_BYTES:
            raise ValueError(f"pynq card: frame_buffer_bytes must be at least {MIN_FRAME_BUFFER_BYTES} (a "
                             f"full-size frame), got {frame_buffer_bytes!r}")  # fmt: skip
        if not timeout_s > 0:
            raise ValueError(f"pynq card: timeout_s must be > 0, got {timeout_s!r}")
        self.bitfile = bitfile
        self.ip_dict = ip_dict
        self.device = device
        self.csr_ip, self.dma_ip, self.line_b_dma_ip = csr_ip, dma_ip, line_b_dma_ip
        self.ring_records = ring_records
        self.frame_buffer_bytes = frame_buffer_bytes
        self.download = download
        self.timeout_s = timeout_s
        self.fresh = False
        self.bus = self
        self.overlay: Any = None
        self.ring: _RecordRing | None = None
        self.senders: dict[int, _FrameSender] = {}
        self._csr: Any = None
        self._csr_where = f"pynq card: {csr_ip}"
        self._counters = CardRegisters(self, where=self._csr_where)
        self._counter_reset = registers.address(registers.COUNTER_RESET)
        self._held = bbo.empty(0)
        self._lost_before = 0

    # --- life ----------------------------------------------------------------------------------------------

    def open(self) -> None:
        import pynq
        from pynq.lib.dma import DMA

        try:
            ip_dict, device = self._load(pynq)
            csr = _description(ip_dict, self.csr_ip, device, "the card's CSRs")
            self._csr_where = f"pynq card: {self.csr_ip} at {csr['phys_addr']:#x}"
            self._counters.where = self._csr_where
            end = max(register.end for register in registers.REGISTERS if register.offset is not None)
            if csr["addr_range"] < end:
                raise CardError(f"{self._csr_where}: address range {csr['addr_range']:#x} is smaller than the "
                                f"register map ({end:#x} bytes)")  # fmt: skip
            self._csr = pynq.MMIO(csr["phys_addr"], csr["addr_range"], device=device)
            lines = {0: self.dma_ip}
            if self.line_b_dma_ip is not None:
                lines[1] = self.line_b_dma_ip
            for line, name in lines.items():
                records = line == 0
                role = ("records and " if records else "") + f"line {LINE_NAMES[line]} frames"
                description = _dma_description(ip_dict, name, device, role, records)
                where = f"pynq card: {name} at {description['phys_addr']:#x}"
                try:
                    dma = DMA(description)
                except RuntimeError as e:
                    raise CardError(f"{where}: setting it up with pynq.lib.dma.DMA failed: {e}") from e
                if records:
                    s2mm = _DmaChannel(dma.mmio, S2MM, f"{where} S2MM (records)", self.timeout_s)
                    self.ring = _RecordRing(pynq, s2mm, device, self.ring_records, self._records_made)
                    self.ring.start()
                if dma.sendchannel is not None:
                    mm2s = _DmaChannel(dma.mmio, MM2S, f"{where} MM2S (line {LINE_NAMES[line]})", self.timeout_s)
                    self.senders[line] = _FrameSender(pynq, mm2s, device, self.frame_buffer_bytes,
                                                      dma.buffer_max_size)  # fmt: skip
        except BaseException:
            self.close()
            raise

    def _load(self, pynq: Any) -> tuple[Mapping[str, Any], Any]:
        """The IP descriptions and the device; the bitstream loaded first when asked (then `fresh`)."""
        if self.ip_dict is None:
            self.overlay = pynq.Overlay(self.bitfile, download=self.download, device=self.device)
            self.fresh = self.download
            return self.overlay.ip_dict, self.overlay.device
        device = self.device if self.device is not None else pynq.Device.active_device
        if self.bitfile is not None and self.download:
            pynq.Bitstream(self.bitfile, device=device).download()
            self.fresh = True
        return self.ip_dict, device

    def close(self) -> None:
        if self.ring is not None:
            try:
                self.ring.stop()  # no DMA writes into buffers about to be freed
            except (CardError, RuntimeError) as e:
                log.warning("pynq card: could not stop the record ring: %s", e)
            self._lost_before += self.ring.lost
            self.ring = None
        self.senders.clear()
        self._csr = None
        if self.overlay is not None:
            self.overlay.free()
            self.overlay = None

    @property
    def records_lost(self) -> int:
        """Records the card made that the host never got (ring overruns): the host's books missed them."""
        return self._lost_before + (self.ring.lost if self.ring is not None else 0)

    # --- the register bus: the card's AXI4-Lite slave through pynq.MMIO -----------------------------------

    def _check_address(self, address: int) -> None:
        if self._csr is None:
            raise CardError(f"{self._csr_where}: the card is not open")
        if address % registers.WORD_BYTES or not 0 <= address < self._csr.length:
            raise ValueError(f"{self._csr_where}: address {address:#x} must be a multiple of "
                             f"{registers.WORD_BYTES} below {self._csr.length:#x}")  # fmt: skip

    def read32(self, address: int) -> int:
        self._check_address(address)
        try:
            return int(self._csr.read(address))
        except RuntimeError as e:
            raise CardError(f"{self._csr_where}: read at {address:#x}: {e}") from e

    def write32(self, address: int, value: int) -> None:
        self._check_address(address)
        if address == self._counter_reset and value & 1 and self.ring is not None:
            held = self.ring.around_counter_reset(lambda: self._write(address, value))
            self._held = _join(self._held, held)
            return
        self._write(address, value)

    def _write(self, address: int, value: int) -> None:
        try:
            self._csr.write(address, int(value))
        except RuntimeError as e:
            raise CardError(f"{self._csr_where}: write of {value:#x} at {address:#x}: {e}") from e

    def _records_made(self) -> int:
        return self._counters.read("bbo_records")

    # --- streams -------------------------------------------------------------------------------------------

    def push_frames(self, line: int, frames: Sequence[bytes]) -> None:
        if line not in (0, 1):
            raise ValueError(f"line must be 0 (A) or 1 (B), got {line!r}")
        sender = self.senders.get(line)
        if sender is None:
            raise CardError(f"pynq card: no MM2S channel feeds line {LINE_NAMES[line]} (dma_ip {self.dma_ip!r}, "
                            f"line_b_dma_ip {self.line_b_dma_ip!r})")  # fmt: skip
        if frames:
            sender.send(frames)

    def receive(self) -> np.ndarray:
        if self.ring is None:
            raise CardError(f"{self._csr_where}: the card is not open")
        records = self.ring.receive()
        if len(self._held):
            records, self._held = _join(self._held, records), bbo.empty(0)
        return records


def _join(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Two record arrays, byte for byte (np.concatenate of the records would drop their padding)."""
    raw = np.concatenate([first.view(np.uint8), second.view(np.uint8)])
    return raw.view(bbo.DTYPE)
