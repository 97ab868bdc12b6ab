"""The card's core: two feed lines of Ethernet frames in, BBO update records out, CSRs on AXI4-Lite.

    s_axis_a ─ FeedLine(A) ─┐ FeedMerge: ItchDecoder per line,
                             ├─ then LineArbiter ─ BypassFIFO ─ BookEngine ─ m_axis_bbo
    s_axis_b ─ FeedLine(B) ─┘   (n_lines=1: line A only, for a board with one feed port)
    s_axil ─ CsrBank (proto.registers): configuration, commands, status, counters

`wirebook hdl verilog -o feed_handler.v` writes the Verilog (`write_verilog`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..proto import bbo, itch, registers
from ..proto.registers import DROP_REASONS, LINES
from .book.engine import BookEngine
from .bypass_fifo import BypassFIFO
from .csr.bank import CsrBank
from .feed_line import FeedLine
from .feed_merge import FeedMerge
from .stream import BOOK_OP, DATA_WIDTHS

__all__ = ["FeedHandler", "build_id"]

RECORD_BYTES = bbo.SIZE
OP_FIFO_DEPTH = 8  # absorbs bursts: the book takes an op every 2 cycles (a REPLACE every 3); free while empty


def source_digest() -> str:
    """SHA-256 (hex) of the gateware and wire-format sources (hdl/ and proto/): what the core is built from."""
    h = hashlib.sha256()
    for root in (Path(__file__).resolve().parent, Path(registers.__file__).resolve().parent):
        for path in sorted(root.rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def build_id() -> int:
    """32 bits of `source_digest`: the build the card reports in its `build_id` register."""
    return int(source_digest()[:8], 16)


def _axis_members(prefix: str, width: int, flow) -> dict:
    """AXI4-Stream ports named the way Vivado and cocotbext-axi expect (`<prefix>_tdata`, ...)."""
    back = In if flow is Out else Out
    return {
        f"{prefix}_tdata": flow(width),
        f"{prefix}_tkeep": flow(width // 8),
        f"{prefix}_tlast": flow(1),
        f"{prefix}_tvalid": flow(1),
        f"{prefix}_tready": back(1),
    }


class FeedHandler(wiring.Component):
    """ITCH 5.0 feed handler: Ethernet frames of the A and B lines in, BBO update records out.

    Accepts: on `s_axis_a` / `s_axis_b` Ethernet frames without FCS, `data_width` bits a beat (first byte
    in the lowest lane; every beat full but the last). Frames are filtered, parsed and framed per line
    (FeedLine: MAC, VLAN, IPv4, UDP, MoldUDP64), each line's messages decoded (ItchDecoder, combinational)
    and the lines merged by sequence number (FeedMerge's LineArbiter: the first arrival wins, gaps and
    duplicates counted), and the book operations applied to the book of the subscribed instruments
    (BookEngine). Messages are counted by type as they leave the merge.
    Emits: on `m_axis_bbo` one 512-bit beat (tlast set, all tkeep) per BBO update record
    (proto.bbo.RECORD, byte k at bits 8k..8k+7) whenever an instrument's top of book or flags change; the
    record carries the MoldUDP64 sequence of the causing message and the card clock (`clock` register,
    a free-running cycle counter the host can load) at the time it was made.
    Latency and throughput: see bench/results/gateware.md (measured by bench/bench_gateware.py); with
    `m_axis_bbo_tready` high the inputs take one beat per cycle on both lines for any message mix.
    Bad input: dropped and counted by reason (registers `drops_a` / `drops_b`, `unknown_type`, ...);
    nothing on the feed can stall the core.
    Registers: proto.registers (docs/registers.md), on `s_axil` (AXI4-Lite, 32-bit data).

    `n_lines=1` builds line A only, for a board with one feed port (a small FPGA): no `s_axis_b` ports,
    no FeedLine or decoder for B, the arbiter's B input idle (synthesis removes what it no longer uses);
    line B's counters read 0 and the `n_lines` register reads 1. Line A alone still drops duplicates and
    reports gaps. `counters_in_ram` keeps the CSR bank's counters in block RAM (CsrBank's option), and
    `tables_in_block_ram` the book's level and top tables (BookEngine's) and the operation queue in front
    of the book (BypassFIFO's `block_ram`): for a device short of LUTs.
    """

    def __init__(
        self,
        data_width: int = 64,
        *,
        n_instruments: int = 64,
        n_orders: int = 16384,
        n_levels: int = 16,
        n_ways: int = 4,
        n_locates: int = 16384,
        n_lines: int = len(LINES),
        counters_in_ram: bool = False,
        tables_in_block_ram: bool = False,
    ) -> None:
        if data_width not in DATA_WIDTHS:
            raise ValueError(f"data_width must be one of {DATA_WIDTHS}, got {data_width}")
        if not 1 <= n_lines <= len(LINES):
            raise ValueError(f"n_lines must be 1 (line A) or {len(LINES)} (A and B), got {n_lines}")
        self.data_width = data_width
        self.lines = LINES[:n_lines]
        self.book_parameters = {"n_instruments": n_instruments, "n_orders": n_orders, "n_levels": n_levels,
                                "n_ways": n_ways, "n_locates": n_locates,
                                "tables_in_block_ram": tables_in_block_ram}  # fmt: skip
        self.bank = CsrBank(
            constants={
                "build_id": build_id(),
                "data_width": data_width,
                "n_instruments": n_instruments,
                "n_orders": n_orders,
                "n_levels": n_levels,
                "n_lines": n_lines,
            },
            counters_in_ram=counters_in_ram,
        )
        members = {}
        for line in self.lines:
            members |= _axis_members(f"s_axis_{line.lower()}", data_width, In)
        members |= _axis_members("m_axis_bbo", 8 * RECORD_BYTES, Out)
        members |= {name: member for name, member in self.bank.signature.members.items() if name.startswith("s_axil")}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.bank = bank = self.bank
        for name in self.signature.members:
            if name.startswith("s_axil"):
                ours, theirs = getattr(self, name), getattr(bank, name)
                m.d.comb += theirs.eq(ours) if self.signature.members[name].flow == In else ours.eq(theirs)
        config, status, counter, command = bank.config, bank.status, bank.counter, bank.command

        # The card clock: a cycle counter the host can load.
        clock = Signal(64)
        m.d.sync += clock.eq(clock + 1)
        with m.If(command.clock_set):
            m.d.sync += clock.eq(config.clock_value)
        m.d.comb += status.clock.eq(clock)

        # Feed lines.
        merge = m.submodules.merge = FeedMerge(len(self.lines))
        end_of_session_seen = Signal()
        for index, name in enumerate(self.lines):
            line = FeedLine(self.data_width, line=index, n_groups=registers.N_GROUPS)
            m.submodules[f"line_{name.lower()}"] = line
            prefix, suffix = f"s_axis_{name.lower()}", f"_{name.lower()}"
            m.d.comb += [
                line.frames.payload.data.eq(getattr(self, f"{prefix}_tdata")),
                line.frames.payload.keep.eq(getattr(self, f"{prefix}_tkeep")),
                line.frames.payload.last.eq(getattr(self, f"{prefix}_tlast")),
                line.frames.valid.eq(getattr(self, f"{prefix}_tvalid")),
                getattr(self, f"{prefix}_tready").eq(line.frames.ready),
                line.enable.eq(config.enable & config.line_enable[index]),
                line.local_mac.eq(config.local_mac),
                line.accept_multicast.eq(config.accept_multicast),
                line.session.eq(config.session),
                line.check_session.eq(config.check_session),
            ]
            for g in range(registers.N_GROUPS):  # field by field: the two layouts order them differently
                entry, source = line.groups[g], config.group[g]
                m.d.comb += [entry.valid.eq(source.valid), entry.address.eq(source.address),
                             entry.port.eq(source.port)]  # fmt: skip
            wiring.connect(m, line.messages, merge.lines[index])
            m.d.comb += [
                counter[f"frames{suffix}"].eq(line.frame_seen),
                counter[f"packets_accepted{suffix}"].eq(line.packet_accepted),
                counter[f"heartbeats{suffix}"].eq(line.heartbeat),
                counter[f"end_of_session{suffix}"].eq(line.end_of_session),
                counter[f"truncated{suffix}"].eq(line.truncated),
                counter[f"bad_message_length{suffix}"].eq(line.bad_message_length),
                counter[f"messages{suffix}"].eq(line.messages.valid & line.messages.ready),
            ]
            for reason, _ in enumerate(DROP_REASONS):
                m.d.comb += counter[f"drops{suffix}"][reason].eq(line.drop & (line.drop_reason.as_value() == reason))
            with m.If(line.end_of_session):
                m.d.sync += end_of_session_seen.eq(1)
        with m.If(command.sequence_reset):
            m.d.sync += end_of_session_seen.eq(0)

        m.d.comb += [
            merge.reset.eq(command.sequence_reset | command.book_clear),
            merge.expected_set.eq(command.expected_set),
            merge.expected_value.eq(config.expected_value),
            status.expected_sequence.eq(merge.expected),
            status.expected_known.eq(merge.expected_known),
            status.last_gap_first.eq(merge.gap_first),
            status.last_gap_count.eq(merge.gap_count),
            status.end_of_session_seen.eq(end_of_session_seen),
            counter.messages_accepted.eq(merge.messages.valid),
            counter.duplicates.eq(merge.duplicates),
            counter.gaps.eq(merge.gap),
            counter.missing_messages.eq(Mux(merge.gap, merge.gap_count, 0)),  # an amount per gap
        ]

        # What the merge passes: book operations to the book, every message counted and read for status.
        passed = merge.messages
        ops = m.submodules.ops = BypassFIFO(
            BOOK_OP, OP_FIFO_DEPTH, block_ram=self.book_parameters["tables_in_block_ram"]
        )
        taken = passed.valid
        decoded = passed.payload
        m.d.comb += [  # the merge passes a message only when the FIFO has promised room for it
            merge.space.eq(ops.space),
            ops.i.payload.eq(decoded.op),
            ops.i.valid.eq(passed.valid & decoded.book),
        ]
        for index, _ in enumerate(itch.TYPES):
            m.d.comb += counter.messages_by_type[index].eq(taken & decoded.counted & (decoded.type_index == index))
        m.d.comb += [
            counter.unknown_type.eq(taken & decoded.unknown_type),
            counter.bad_length.eq(taken & decoded.bad_length),
            counter.bad_field.eq(taken & decoded.bad_field),
        ]
        with m.If(taken & decoded.system_event):
            m.d.sync += status.last_system_event.eq(decoded.event_code)
        with m.If(taken & decoded.directory):
            m.d.sync += [
                status.last_directory_locate.eq(decoded.directory_locate),
                status.last_directory_stock.eq(decoded.directory_stock),
            ]

        # The book, behind a small FIFO of operations.
        book = m.submodules.book = BookEngine(**self.book_parameters)
        wiring.connect(m, ops.o, book.ops)
        m.d.comb += [
            book.timestamp.eq(clock),
            book.table_write.eq(command.instrument_write),
            book.table_locate.eq(config.instrument_locate),
            book.table_slot.eq(config.instrument_slot),
            book.table_valid.eq(config.instrument_valid),
            book.clear.eq(command.book_clear),
            status.clearing.eq(book.clearing),
            status.orders_live.eq(book.orders_live),
            counter.unsubscribed.eq(book.unsubscribed),
            counter.unknown_order.eq(book.unknown_order),
            counter.order_overflow.eq(book.order_overflow),
            counter.level_eviction.eq(book.level_eviction),
            counter.locate_mismatch.eq(book.locate_mismatch),
            counter.over_execution.eq(book.over_execution),
            counter.duplicate_order.eq(book.duplicate_order),
            counter.bbo_records.eq(book.records.valid & book.records.ready),
        ]
        m.d.comb += [
            self.m_axis_bbo_tdata.eq(book.records.payload),
            self.m_axis_bbo_tkeep.eq(Const((1 << RECORD_BYTES) - 1, unsigned(RECORD_BYTES))),
            self.m_axis_bbo_tlast.eq(1),
            self.m_axis_bbo_tvalid.eq(book.records.valid),
            book.records.ready.eq(self.m_axis_bbo_tready),
        ]
        return m


def write_verilog(path: str | Path, *, name: str = "feed_handler", **parameters) -> Path:
    """Write the core with `parameters` as Verilog (top module `name`); the file is replaced atomically, so
    a concurrent reader (another simulator build) sees the old file or the new one."""
    from amaranth.back import verilog

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(verilog.convert(FeedHandler(**parameters), name=name, emit_src=False))
    os.replace(partial, path)
    return path
