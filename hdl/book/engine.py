"""The on-chip order book: BOOK_OP transfers in, BBO records out (see BookEngine)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...proto import bbo
from .. import fields
from ..stream import BOOK_OP, BookOpKind
from .layouts import BookGeometry, LevelAction, Micro
from .levels import LevelUpdate

__all__ = ["BookEngine"]


class BookEngine(wiring.Component):
    """Order book of up to `n_instruments` instruments; emits a BBO record when an instrument's top changes.

    Accepts one `ops` transfer (hdl.stream.BOOK_OP) per cycle, a REPLACE every 2 cycles, while `records`
    is ready and no clear is running. After each operation (after both halves of a REPLACE) the
    instrument's top of book and flags are compared with the last ones emitted for it; when they differ one
    record (proto.bbo.RECORD as a byte vector, byte k at bits 8k..8k+7) is emitted with the operation's
    sequence, ITCH timestamp, cause and locate, and card_timestamp = `timestamp` on the cycle the record is
    made. For valid input on books that fit, the records equal the golden model's (model.book) bit for bit
    but for card_timestamp.

    Latency: `records.valid` rises 3 cycles after the cycle an operation was accepted (4 for a REPLACE).
    `records` back-pressure stalls the whole pipeline (and so `ops`); nothing is lost.

    Memories (memory.Memory, synchronous read ports, read latency 1 cycle; words in hdl.book.layouts):
    - instruments: n_locates x `instrument` (subscribed, slot), written only through the table port;
    - orders: n_orders / n_ways sets x `order_set` (n_ways entries: valid, tag, slot, side, price, shares);
    - levels: 2 * n_instruments x `side_book` (address slot * 2 + side): n_levels levels, hidden state;
    - tops: n_instruments x `top`: the last emitted top of book and the state its flags are made of.

    Pipeline (one operation per stage, `lookup_stage` and `update_stage` registers; the stall is global):
    - accept: the instrument table (addressed by locate) and the order table (by the reference's set) are
      read.
    - lookup: the order-table set is matched (tag compare on every way), decided and rewritten; the side's
      levels and the slot's top are read.
    - update: LevelUpdate modifies the levels, the new top is compared with the last emitted; both are
      written back and the record registered (the `records` payload is that register).
    Consecutive operations need no stall: every read port is transparent for the write port of the stage
    right after it (the only write that can be in flight when it reads), so an operation reads what its
    predecessor writes in the same cycle; older writes are already in the memory. A REPLACE's add half is
    issued right behind its removal half and takes the removal's side and slot from the update stage.

    Instrument table: `table_write` stores (`table_valid`, `table_slot`) for `table_locate` (a write to a
    locate >= n_locates is ignored; `table_slot` must be < n_instruments, and two subscribed locates should
    not share a slot). An operation whose locate has no valid entry, or is >= n_locates, is dropped
    (`unsubscribed`). The table is not ordered with `ops`: change it while no operation of that locate is
    in flight (three cycles).

    Order table: `n_orders` entries, `n_ways`-way set associative, indexed by the reference's low bits;
    the rest of the reference is the tag, so a hit is always the right order. Bad input never yields a
    silently wrong top:
    - an add whose set is full is not booked: `order_overflow`, and the instrument's records carry
      FLAG_DEGRADED until `clear`;
    - an execute/cancel/delete/replace of an unknown reference is ignored (`unknown_order`, like the
      model's lenient mode); of a reference booked for another instrument, ignored (`locate_mismatch`);
    - taking more shares than remain removes the order (`over_execution`);
    - an add of a live reference is ignored (`duplicate_order`); so is a REPLACE's add half, after its
      removal half went through.

    Levels: per (slot, side) the best `n_levels` levels; deeper orders are hidden, and a side's top that is
    not proven exact sets FLAG_DEGRADED (the rule and its proof: hdl.book.levels). `level_eviction` pulses
    when a level is pushed out or an order hidden.

    `clear` wipes orders, levels, tops and flags (not the instrument table): `ops` stops at once, the
    operations in flight finish, then BookGeometry.wipe_cycles cycles of writes; `clearing` is high
    throughout. Status strobes are one cycle long, a cycle after the stage that saw the event.
    """

    def __init__(
        self, *, n_instruments: int = 64, n_locates: int = 16384, n_orders: int = 16384, n_ways: int = 4,
        n_levels: int = 16,
    ) -> None:  # fmt: skip
        self.geometry = g = BookGeometry(n_instruments, n_locates, n_orders, n_ways, n_levels)
        super().__init__(
            {
                "ops": In(stream.Signature(BOOK_OP)),
                "records": Out(stream.Signature(unsigned(8 * bbo.SIZE))),
                "timestamp": In(64),
                "table_write": In(1),
                "table_locate": In(16),
                "table_slot": In(g.slot_bits),
                "table_valid": In(1),
                "clear": In(1),
                "clearing": Out(1),
                "orders_live": Out(g.count_bits),
                "unsubscribed": Out(1),
                "unknown_order": Out(1),
                "order_overflow": Out(1),
                "level_eviction": Out(1),
                "locate_mismatch": Out(1),
                "over_execution": Out(1),
                "duplicate_order": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        g = self.geometry

        m.submodules.instruments = instruments = memory.Memory(shape=g.instrument, depth=g.n_locates, init=[])
        m.submodules.orders = orders = memory.Memory(shape=g.order_set, depth=g.n_sets, init=[])
        m.submodules.levels = levels = memory.Memory(shape=g.side_book, depth=2 * g.n_instruments, init=[])
        m.submodules.tops = tops = memory.Memory(shape=g.top, depth=g.n_instruments, init=[])
        instrument_w = instruments.write_port()
        instrument_r = instruments.read_port()  # the table is configuration: no ordering with ops needed
        order_w = orders.write_port()
        order_r = orders.read_port(transparent_for=(order_w,))
        level_w = levels.write_port()
        level_r = levels.read_port(transparent_for=(level_w,))
        top_w = tops.write_port()
        top_r = tops.read_port(transparent_for=(top_w,))
        m.submodules.update = update = LevelUpdate(g)

        def set_of(reference):
            return reference[: g.set_bits]

        def tag_of(reference):
            return reference[g.set_bits :]

        def level_address(slot, side):
            return Cat(side, slot)

        # --- instrument table --------------------------------------------------------------------------------------
        m.d.comb += [
            instrument_w.addr.eq(self.table_locate),
            instrument_w.data.valid.eq(self.table_valid),
            instrument_w.data.slot.eq(self.table_slot),
            instrument_w.en.eq(self.table_write & (self.table_locate < g.n_locates)),
        ]

        # --- stall, output register ----------------------------------------------------------------------------------
        record_valid = Signal()
        record = Signal(8 * bbo.SIZE)
        advance = Signal()  # the whole pipeline moves this cycle
        m.d.comb += [advance.eq(~record_valid | self.records.ready), self.records.valid.eq(record_valid)]
        m.d.comb += self.records.payload.eq(record)
        with m.If(self.records.ready):
            m.d.sync += record_valid.eq(0)

        lookup = Signal(g.lookup_stage)
        lookup_valid = Signal()
        stage = Signal(g.update_stage)
        stage_valid = Signal()
        # The removal half of the REPLACE in the update stage, for the add half in the lookup stage.
        removed_ok = Signal()
        removed_slot = Signal(g.slot_bits)
        removed_side = Signal()

        strobes = {
            name: Signal(name=f"saw_{name}")
            for name in ("unsubscribed", "unknown_order", "order_overflow", "level_eviction", "locate_mismatch",
                         "over_execution", "duplicate_order")
        }  # fmt: skip
        for name, saw in strobes.items():  # raised by the stage's decision logic, kept when the stage moves
            m.d.sync += getattr(self, name).eq(saw & advance)

        # --- accept: read the instrument and order tables ---------------------------------------------------------
        add_half = lookup_valid & (lookup.micro == Micro.REPLACE_REMOVE)
        m.d.comb += self.ops.ready.eq(advance & ~add_half & ~self.clear & ~self.clearing)
        accept = self.ops.valid & self.ops.ready
        incoming = self.ops.payload
        m.d.comb += [
            instrument_r.en.eq(advance),
            instrument_r.addr.eq(Mux(add_half, lookup.op.locate, incoming.locate)),
            order_r.en.eq(advance),
            order_r.addr.eq(set_of(Mux(add_half, lookup.op.new_ref, incoming.ref))),
        ]
        with m.If(advance):
            m.d.sync += lookup_valid.eq(accept | add_half)
            with m.If(add_half):
                m.d.sync += lookup.micro.eq(Micro.REPLACE_ADD)
            with m.Else():
                m.d.sync += [
                    lookup.op.eq(incoming),
                    lookup.micro.eq(Micro.WHOLE),
                    lookup.in_range.eq(incoming.locate < g.n_locates),
                ]
                with m.If(incoming.kind == BookOpKind.REPLACE):
                    m.d.sync += lookup.micro.eq(Micro.REPLACE_REMOVE)

        # --- lookup: match the order set, decide, rewrite it; read the levels and top ------------------------------
        op = lookup.op
        instrument = instrument_r.data
        subscribed = instrument.valid & lookup.in_range
        is_add_half = lookup.micro == Micro.REPLACE_ADD
        key = Mux(is_add_half, op.new_ref, op.ref)
        ways = order_r.data
        hits = Signal(g.n_ways)
        frees = Signal(g.n_ways)
        m.d.comb += [
            hits.eq(Cat(ways[w].valid & (ways[w].tag == tag_of(key)) for w in range(g.n_ways))),
            frees.eq(Cat(~ways[w].valid for w in range(g.n_ways))),
        ]
        order = Signal(g.order_entry)  # the way that holds `key`
        hit_way = Signal(range(g.n_ways))
        free_way = Signal(range(g.n_ways))
        for w in reversed(range(g.n_ways)):  # the lowest way wins
            with m.If(hits[w]):
                m.d.comb += [order.eq(ways[w]), hit_way.eq(w)]
            with m.If(frees[w]):
                m.d.comb += free_way.eq(w)

        take_all = (op.kind == BookOpKind.DELETE) | (lookup.micro == Micro.REPLACE_REMOVE)
        wanted = Mux(take_all, order.shares, op.shares)
        over = wanted > order.shares
        taken = Mux(over, order.shares, wanted)
        left = order.shares - taken

        nxt = Signal(g.update_stage)  # what the update stage gets
        nxt_valid = Signal()
        new_set = Signal(g.order_set)
        write_set = Signal()
        live_delta = Signal(range(-1, 2))
        m.d.comb += [
            new_set.eq(ways),
            nxt.sequence.eq(op.sequence),
            nxt.timestamp.eq(op.timestamp),
            nxt.cause.eq(op.cause),
            nxt.locate.eq(op.locate),
            nxt.price.eq(op.price),
            nxt.shares.eq(op.shares),
            nxt.halted.eq(op.halted),
            nxt.slot.eq(instrument.slot),
            nxt.side.eq(op.side),
            nxt.emit.eq(1),
            nxt.touch_side.eq(1),
        ]

        def book_add(slot, side):
            """An add of `key` on (slot, side): booked in a free way, refused as a duplicate or an overflow."""
            m.d.comb += [nxt.slot.eq(slot), nxt.side.eq(side)]
            with m.If(hits.any()):
                m.d.comb += strobes["duplicate_order"].eq(1)
            with m.Elif(~frees.any()):
                m.d.comb += [strobes["order_overflow"].eq(1), nxt.overflow.eq(1)]
            with m.Else():
                entry = new_set[free_way]
                m.d.comb += [
                    entry.valid.eq(1),
                    entry.tag.eq(tag_of(key)),
                    entry.slot.eq(slot),
                    entry.side.eq(side),
                    entry.price.eq(op.price),
                    entry.shares.eq(op.shares),
                    write_set.eq(1),
                    live_delta.eq(1),
                    nxt.action.eq(LevelAction.INSERT),
                ]

        removal = Signal()  # the removal half of a REPLACE went through
        with m.If(lookup_valid):
            with m.If(is_add_half):
                m.d.comb += nxt_valid.eq(removed_ok)  # even when the add is refused: the removal moved the top
                with m.If(removed_ok):
                    book_add(removed_slot, removed_side)
            with m.Elif(~subscribed):
                m.d.comb += strobes["unsubscribed"].eq(1)
            with m.Elif(op.kind == BookOpKind.TRADING_ACTION):
                m.d.comb += [nxt_valid.eq(1), nxt.set_halted.eq(1), nxt.touch_side.eq(0)]
            with m.Elif(op.kind == BookOpKind.ADD):
                book_add(instrument.slot, op.side)
                m.d.comb += nxt_valid.eq(~hits.any())
            with m.Elif(
                (op.kind == BookOpKind.EXECUTE) | (op.kind == BookOpKind.CANCEL) | (op.kind == BookOpKind.DELETE)
                | (op.kind == BookOpKind.REPLACE)
            ):  # fmt: skip
                with m.If(~hits.any()):
                    m.d.comb += strobes["unknown_order"].eq(1)
                with m.Elif(order.slot != instrument.slot):
                    m.d.comb += strobes["locate_mismatch"].eq(1)
                with m.Else():
                    entry = new_set[hit_way]
                    m.d.comb += [
                        entry.shares.eq(left),
                        entry.valid.eq(left != 0),
                        write_set.eq(1),
                        live_delta.eq(Mux(left == 0, -1, 0)),
                        strobes["over_execution"].eq(over),
                        nxt_valid.eq(1),
                        nxt.action.eq(LevelAction.TAKE),
                        nxt.side.eq(order.side),
                        nxt.price.eq(order.price),
                        nxt.shares.eq(taken),
                        nxt.leaves.eq(left == 0),
                        nxt.emit.eq(lookup.micro != Micro.REPLACE_REMOVE),
                        removal.eq(1),
                    ]

        m.d.comb += [
            order_w.addr.eq(set_of(key)),
            order_w.data.eq(new_set),
            order_w.en.eq(advance & lookup_valid & write_set),
            level_r.en.eq(advance),
            level_r.addr.eq(level_address(nxt.slot, nxt.side)),
            top_r.en.eq(advance),
            top_r.addr.eq(nxt.slot),
        ]
        with m.If(advance):
            m.d.sync += [stage_valid.eq(lookup_valid & nxt_valid), stage.eq(nxt)]
            with m.If(lookup_valid):
                m.d.sync += self.orders_live.eq(self.orders_live + live_delta)
                with m.If(lookup.micro == Micro.REPLACE_REMOVE):
                    m.d.sync += [removed_ok.eq(removal), removed_slot.eq(nxt.slot), removed_side.eq(nxt.side)]

        # --- update: levels and top, read-modify-write; the record ------------------------------------------------
        m.d.comb += [
            update.book.eq(level_r.data),
            update.side.eq(stage.side),
            update.action.eq(stage.action),
            update.price.eq(stage.price),
            update.shares.eq(stage.shares),
            update.leaves.eq(stage.leaves),
        ]
        last = top_r.data
        top = Signal(g.top)
        m.d.comb += top.eq(last)
        with m.If(stage.touch_side):
            with m.If(stage.side):
                m.d.comb += [top.ask.eq(update.best), top.ask_degraded.eq(update.degraded)]
            with m.Else():
                m.d.comb += [top.bid.eq(update.best), top.bid_degraded.eq(update.degraded)]
        with m.If(stage.set_halted):
            m.d.comb += top.halted.eq(stage.halted)
        with m.If(stage.overflow):
            m.d.comb += top.overflowed.eq(1)

        def flags(t):
            degraded = t.overflowed | t.bid_degraded | t.ask_degraded
            return Cat(t.halted, degraded)  # FLAG_HALTED = bit 0, FLAG_DEGRADED = bit 1

        assert bbo.FLAG_HALTED == 1 << 0 and bbo.FLAG_DEGRADED == 1 << 1
        changed = (top.bid.as_value() != last.bid.as_value()) | (top.ask.as_value() != last.ask.as_value())
        changed |= flags(top) != flags(last)
        m.d.comb += [
            strobes["level_eviction"].eq(stage_valid & update.evicted),
            level_w.addr.eq(level_address(stage.slot, stage.side)),
            level_w.data.eq(update.updated),
            level_w.en.eq(advance & stage_valid & (stage.action != LevelAction.NONE)),
            top_w.addr.eq(stage.slot),
            top_w.data.eq(top),
            top_w.en.eq(advance & stage_valid & stage.emit),
        ]
        made = fields.pack(
            bbo.RECORD,
            {
                "sequence": stage.sequence,
                "itch_timestamp": stage.timestamp,
                "card_timestamp": self.timestamp,
                "locate": stage.locate,
                "flags": flags(top),
                "cause": stage.cause,
                "bid_price": top.bid.price,
                "bid_shares": top.bid.shares,
                "bid_orders": top.bid.orders,
                "ask_price": top.ask.price,
                "ask_shares": top.ask.shares,
                "ask_orders": top.ask.orders,
            },
        )
        with m.If(advance & stage_valid & stage.emit & changed):
            m.d.sync += [record_valid.eq(1), record.eq(made)]

        # --- clear: let the operations in flight finish, then wipe every book memory --------------------------------
        wipe_at = Signal(range(g.wipe_cycles))
        wiping = Signal()
        with m.If(self.clear):
            m.d.sync += [self.clearing.eq(1), wipe_at.eq(0)]
        m.d.comb += wiping.eq(self.clearing & ~self.clear & ~lookup_valid & ~stage_valid)
        with m.If(wiping):
            m.d.comb += [
                order_w.addr.eq(wipe_at),
                order_w.data.eq(0),
                order_w.en.eq(wipe_at < g.n_sets),
                level_w.addr.eq(wipe_at),
                level_w.data.eq(0),
                level_w.en.eq(wipe_at < 2 * g.n_instruments),
                top_w.addr.eq(wipe_at),
                top_w.data.eq(0),
                top_w.en.eq(wipe_at < g.n_instruments),
            ]
            m.d.sync += [wipe_at.eq(wipe_at + 1), self.orders_live.eq(0)]
            with m.If(wipe_at == g.wipe_cycles - 1):
                m.d.sync += self.clearing.eq(0)
        return m
