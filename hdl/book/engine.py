"""The on-chip order book: BOOK_OP transfers in, BBO records out (see BookEngine)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...proto import bbo
from .. import fields
from ..stream import BOOK_OP, BookOpKind
from .layouts import BookGeometry, Micro
from .levels import LevelUpdate

__all__ = ["BookEngine"]

OUTBOX_DEPTH = 4  # records made and not yet taken, plus the operations in flight that may make one


class BookEngine(wiring.Component):
    """Order book of up to `n_instruments` instruments; emits a BBO record when an instrument's top changes.

    Accepts one `ops` transfer (hdl.stream.BOOK_OP) every 2 cycles, a REPLACE every 3, while no clear is running
    and the outbox has room. After each operation (a REPLACE: its removal and its add, in one update) the
    instrument's top of book and flags are compared with the last ones emitted for it; when they differ one
    record (proto.bbo.RECORD as a byte vector, byte k at bits 8k..8k+7) is emitted with the operation's
    sequence, ITCH timestamp, cause and locate, and card_timestamp = `timestamp` on the cycle the record is
    made. For valid input on books that fit, the records equal the golden model's (model.book) bit for bit
    but for card_timestamp.

    Latency: `records.valid` rises 5 cycles after the cycle an operation was accepted, for every kind
    (REPLACE included), when the outbox is empty. Records wait in the outbox (OUTBOX_DEPTH records): an
    operation is accepted only while the outbox has room for a record of it and of every operation in flight,
    so `records` back-pressure stops `ops` and nothing inside; nothing is lost.

    Memories (memory.Memory, synchronous read ports, read latency 1 cycle, none transparent: every read's data
    goes into a register first; words in hdl.book.layouts):
    - instruments: n_locates x `instrument` (subscribed, slot), written only through the table port;
    - orders: n_orders / n_ways sets x `order_set` (n_ways entries: valid, tag, slot, side, price, shares);
    - levels: 2 * n_instruments x `side_book` (address slot * 2 + side): n_levels levels, hidden state;
    - tops: n_instruments x `top`: the last emitted top of book and the state its flags are made of;
    - outbox: amaranth.lib.fifo.SyncFIFO of records.

    Pipeline (cycles after the accept cycle A; nothing stalls once accepted):
    - A: the instrument table (by locate) and the order table (by the reference's set) are read; A + 1, for a
      REPLACE, the set of its new reference; the read data is registered.
    - A + 2 (the add half of a REPLACE: A + 3): the order set is matched (tag compare on every way), decided
      and written back; the levels of the operation's (slot, side) and the slot's top are read.
    - A + 3: LevelUpdate (pipelined, hdl.book.levels) compares the levels as read with the operation's prices;
      the add half of a REPLACE is decided in time to join its removal.
    - A + 4: LevelUpdate applies the operation (a REPLACE's removal, then its add) to the levels, the new top
      is compared with the last emitted; both are written back and the record, if any, goes to the outbox.
    A read misses the write made in its own cycle (and the one after it): the order-set, levels and top reads
    are patched from a register of the last write when its index matches, so consecutive operations on one
    instrument, side and order set need no stall.

    Instrument table: `table_write` stores (`table_valid`, `table_slot`) for `table_locate` (a write to a
    locate >= n_locates is ignored; `table_slot` must be < n_instruments, and two subscribed locates should
    not share a slot). An operation whose locate has no valid entry, or is >= n_locates, is dropped
    (`unsubscribed`). The table is not ordered with `ops`: change it while no operation of that locate is
    in flight (five cycles).

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

    `clear` wipes orders, levels, tops and flags (not the instrument table, not the outbox): `ops` stops at
    once, the operations in flight finish, then BookGeometry.wipe_cycles cycles of writes; `clearing` is high
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
        # No read port is transparent: an EBR's clock-to-out takes most of a cycle, so its data goes straight
        # into a register, and what a read missed is forwarded from the last write after that register.
        instrument_w = instruments.write_port()
        instrument_r = instruments.read_port()  # the table is configuration: no ordering with ops needed
        order_w = orders.write_port()
        order_r = orders.read_port()
        level_w = levels.write_port()
        level_r = levels.read_port()
        top_w = tops.write_port()
        top_r = tops.read_port()
        m.submodules.levels_update = levels_update = LevelUpdate(g)  # a REPLACE's removal and add in one pass
        m.submodules.outbox = outbox = fifo.SyncFIFO(width=8 * bbo.SIZE, depth=OUTBOX_DEPTH)

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

        # --- pipeline registers ------------------------------------------------------------------------------------
        accepted = Signal(g.lookup_stage)  # accept + 1: the tables are being read
        accepted_valid = Signal()
        lookup = Signal(g.lookup_stage)  # accept + 2 (a REPLACE's add half: + 3): the order-table decision
        lookup_valid = Signal()
        pending = Signal(g.update_stage)  # accept + 3: the levels arrive, LevelUpdate compares
        pending_valid = Signal()
        update = Signal(g.update_stage)  # accept + 4: LevelUpdate shifts, the top is compared, the record made
        update_valid = Signal()
        instrument = Signal(g.instrument)  # memory outputs, registered as they come (accept + 2)
        ways_read = Signal(g.order_set)
        top_read = Signal(g.top)
        m.d.sync += [
            instrument.eq(instrument_r.data),
            ways_read.eq(order_r.data),
            top_read.eq(top_r.data),
        ]
        # The last writes, for the reads that missed them (a read misses the writes of its own cycle and the next).
        last_set = Signal(g.order_set)
        last_set_at = Signal(g.set_bits)
        last_set_valid = Signal()
        last_book = Signal(g.side_book)
        last_top = Signal(g.top)
        last_slot = Signal(g.slot_bits)
        last_side = Signal()
        last_book_valid = Signal()
        # The removal half of the REPLACE decided last cycle, for its add half.
        removed_ok = Signal()
        removed_slot = Signal(g.slot_bits)
        removed_side = Signal()

        strobes = {
            name: Signal(name=f"saw_{name}")
            for name in ("unsubscribed", "unknown_order", "order_overflow", "level_eviction", "locate_mismatch",
                         "over_execution", "duplicate_order")
        }  # fmt: skip
        for name, saw in strobes.items():
            m.d.sync += getattr(self, name).eq(saw)

        # --- accept: read the instrument and order tables ---------------------------------------------------------
        # One operation every 2 cycles; a REPLACE's add half takes the order-table read port and the lookup stage
        # one cycle more. Records are credited: an operation is taken only when the outbox has room for a record
        # of it and of every operation in flight, so `records.ready` stops nothing but `ops`.
        in_flight = accepted_valid + lookup_valid + pending_valid + update_valid
        busy = accepted_valid | (lookup_valid & (lookup.micro == Micro.REPLACE_REMOVE))
        room = outbox.level + in_flight < OUTBOX_DEPTH
        m.d.comb += self.ops.ready.eq(~busy & room & ~self.clear & ~self.clearing)
        accept = self.ops.valid & self.ops.ready
        incoming = self.ops.payload
        m.d.comb += [
            instrument_r.addr.eq(incoming.locate),
            # the cycle after a REPLACE is taken (when nothing else can be), the set of its new reference
            order_r.addr.eq(Mux(accepted_valid, set_of(accepted.op.new_ref), set_of(incoming.ref))),
        ]
        m.d.sync += [
            accepted_valid.eq(accept),
            accepted.op.eq(incoming),
            accepted.micro.eq(Mux(incoming.kind == BookOpKind.REPLACE, Micro.REPLACE_REMOVE, Micro.WHOLE)),
            accepted.in_range.eq(incoming.locate < g.n_locates),
        ]
        # The reference the lookup stage matches and whether its set is to be taken from the last write rather than
        # from the read (which missed a write made in its cycle or the next: the lookup's own, a cycle early).
        key = Signal(64)
        set_forward = Signal()
        add_half_next = lookup_valid & (lookup.micro == Micro.REPLACE_REMOVE)
        next_key = Mux(add_half_next, lookup.op.new_ref, accepted.op.ref)
        m.d.sync += [
            key.eq(next_key),
            set_forward.eq(
                Mux(lookup_valid, set_of(key) == set_of(next_key), last_set_valid & (last_set_at == set_of(next_key)))
            ),
        ]
        with m.If(add_half_next):
            m.d.sync += lookup.micro.eq(Micro.REPLACE_ADD)  # stays valid: the add half
        with m.Else():
            m.d.sync += [lookup_valid.eq(accepted_valid), lookup.eq(accepted)]

        # --- lookup: match the order set, decide, rewrite it; read the levels and top ------------------------------
        op = lookup.op
        subscribed = instrument.valid & lookup.in_range
        is_add_half = lookup.micro == Micro.REPLACE_ADD
        ways = Signal(g.order_set)
        m.d.comb += ways.eq(Mux(set_forward, last_set, ways_read))
        hits = Signal(g.n_ways)
        frees = Signal(g.n_ways)
        m.d.comb += [
            hits.eq(Cat(ways[w].valid & (ways[w].tag == tag_of(key)) for w in range(g.n_ways))),
            frees.eq(Cat(~ways[w].valid for w in range(g.n_ways))),
        ]
        # What a take would do to each way, in parallel with the tag compares (the arithmetic is not behind them).
        take_all = (op.kind == BookOpKind.DELETE) | (lookup.micro == Micro.REPLACE_REMOVE)
        way_takes = []
        for w in range(g.n_ways):
            shares = ways[w].shares
            wanted = Mux(take_all, shares, op.shares)
            way_over = Signal(name=f"over{w}")
            way_taken = Signal(32, name=f"taken{w}")
            way_left = Signal(32, name=f"left{w}")
            way_leaves = Signal(name=f"leaves{w}")
            m.d.comb += [
                way_over.eq(wanted > shares),
                way_taken.eq(Mux(way_over, shares, wanted)),
                way_left.eq(shares - way_taken),
                way_leaves.eq(way_over | (wanted == shares)),  # left == 0
            ]
            way_takes.append((way_over, way_taken, way_left, way_leaves))
        order = Signal(g.order_entry)  # the way that holds `key`
        hit_way = Signal(range(g.n_ways))
        free_way = Signal(range(g.n_ways))
        over = Signal()
        taken = Signal(32)
        left = Signal(32)
        leaves = Signal()  # the order's last shares are taken
        for w in reversed(range(g.n_ways)):  # the lowest way wins
            with m.If(hits[w]):
                m.d.comb += [order.eq(ways[w]), hit_way.eq(w)]
                m.d.comb += [over.eq(way_takes[w][0]), taken.eq(way_takes[w][1]), left.eq(way_takes[w][2]),
                             leaves.eq(way_takes[w][3])]  # fmt: skip
            with m.If(frees[w]):
                m.d.comb += free_way.eq(w)

        nxt = Signal(g.update_stage)  # what the update stage gets
        nxt_valid = Signal()
        new_set = Signal(g.order_set)
        live_delta = Signal(range(-1, 2))
        m.d.comb += [
            new_set.eq(ways),
            nxt.sequence.eq(op.sequence),
            nxt.timestamp.eq(op.timestamp),
            nxt.cause.eq(op.cause),
            nxt.locate.eq(op.locate),
            nxt.halted.eq(op.halted),
            nxt.slot.eq(instrument.slot),
            nxt.side.eq(op.side),
            nxt.touch_side.eq(1),
        ]

        added = Signal()  # `key` was booked
        add_overflow = Signal()

        def book_add(slot, side):
            """An add of `key` on (slot, side): booked in a free way, refused as a duplicate or an overflow."""
            with m.If(hits.any()):
                m.d.comb += strobes["duplicate_order"].eq(1)
            with m.Elif(~frees.any()):
                m.d.comb += [strobes["order_overflow"].eq(1), add_overflow.eq(1)]
            with m.Else():
                entry = new_set[free_way]
                m.d.comb += [
                    entry.valid.eq(1),
                    entry.tag.eq(tag_of(key)),
                    entry.slot.eq(slot),
                    entry.side.eq(side),
                    entry.price.eq(op.price),
                    entry.shares.eq(op.shares),
                    live_delta.eq(1),
                    added.eq(1),
                ]

        removal = Signal()  # the removal half of a REPLACE went through
        with m.If(lookup_valid):
            with m.If(is_add_half), m.If(removed_ok):  # a refused removal: no add, no record
                book_add(removed_slot, removed_side)
            with m.Elif(~subscribed):
                m.d.comb += strobes["unsubscribed"].eq(1)
            with m.Elif(op.kind == BookOpKind.TRADING_ACTION):
                m.d.comb += [nxt_valid.eq(1), nxt.set_halted.eq(1), nxt.touch_side.eq(0)]
            with m.Elif(op.kind == BookOpKind.ADD):
                book_add(instrument.slot, op.side)
                m.d.comb += [
                    nxt_valid.eq(~hits.any()),
                    nxt.insert.eq(added),
                    nxt.insert_price.eq(op.price),
                    nxt.insert_shares.eq(op.shares),
                    nxt.overflow.eq(add_overflow),
                ]
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
                        entry.valid.eq(~leaves),
                        live_delta.eq(Mux(leaves, -1, 0)),
                        strobes["over_execution"].eq(over),
                        nxt_valid.eq(1),
                        nxt.take.eq(1),
                        nxt.side.eq(order.side),
                        nxt.take_price.eq(order.price),
                        nxt.take_shares.eq(taken),
                        nxt.take_leaves.eq(leaves),
                        nxt.insert_price.eq(op.price),  # a REPLACE's add half may insert the new order
                        nxt.insert_shares.eq(op.shares),
                        removal.eq(1),
                    ]

        # Every lookup writes its set back (unchanged when nothing was decided): the write enable stays shallow.
        m.d.comb += [
            order_w.addr.eq(set_of(key)),
            order_w.data.eq(new_set),
            order_w.en.eq(lookup_valid),
            level_r.addr.eq(level_address(nxt.slot, nxt.side)),  # the add half of a REPLACE reads nothing new
            top_r.addr.eq(instrument.slot),
        ]
        with m.If(lookup_valid):
            m.d.sync += [
                self.orders_live.eq(self.orders_live + live_delta),
                last_set.eq(new_set),
                last_set_at.eq(set_of(key)),
                last_set_valid.eq(1),
            ]
        m.d.sync += [removed_ok.eq(removal), removed_slot.eq(nxt.slot), removed_side.eq(nxt.side)]

        # --- levels and top read: the add half of a REPLACE joins its removal -------------------------------------
        with m.If(lookup_valid & is_add_half):
            m.d.sync += [
                update.eq(pending),
                update.overflow.eq(add_overflow),
                update_valid.eq(pending_valid),
                pending_valid.eq(0),
            ]
        with m.Else():
            m.d.sync += [update.eq(pending), update_valid.eq(pending_valid), pending.eq(nxt),
                         pending_valid.eq(lookup_valid & nxt_valid)]  # fmt: skip
        same_slot = last_book_valid & (last_slot == pending.slot)
        m.d.sync += update.forward_top.eq(same_slot)

        # LevelUpdate compares this cycle (levels as read, or as last written) and shifts the next.
        m.d.comb += [
            levels_update.book.eq(Mux(same_slot & (last_side == pending.side), last_book, level_r.data)),
            levels_update.side.eq(pending.side),
            levels_update.take.eq(pending.take),
            levels_update.take_price.eq(pending.take_price),
            levels_update.take_shares.eq(pending.take_shares),
            levels_update.take_leaves.eq(pending.take_leaves),
            levels_update.insert.eq(Mux(lookup_valid & is_add_half, added, pending.insert)),
            levels_update.insert_price.eq(pending.insert_price),
            levels_update.insert_shares.eq(pending.insert_shares),
        ]

        # --- update: levels and top, read-modify-write; the record ------------------------------------------------
        last = Signal(g.top)
        m.d.comb += last.eq(Mux(update.forward_top, last_top, top_read))
        top = Signal(g.top)
        m.d.comb += top.eq(last)
        with m.If(update.touch_side):
            with m.If(update.side):
                m.d.comb += [top.ask.eq(levels_update.best), top.ask_degraded.eq(levels_update.degraded)]
            with m.Else():
                m.d.comb += [top.bid.eq(levels_update.best), top.bid_degraded.eq(levels_update.degraded)]
        with m.If(update.set_halted):
            m.d.comb += top.halted.eq(update.halted)
        with m.If(update.overflow):
            m.d.comb += top.overflowed.eq(1)

        def flags(t):
            degraded = t.overflowed | t.bid_degraded | t.ask_degraded
            return Cat(t.halted, degraded)  # FLAG_HALTED = bit 0, FLAG_DEGRADED = bit 1

        assert bbo.FLAG_HALTED == 1 << 0 and bbo.FLAG_DEGRADED == 1 << 1
        side_was = Mux(update.side, last.ask.as_value(), last.bid.as_value())
        changed = (update.touch_side & (levels_update.best.as_value() != side_was)) | (flags(top) != flags(last))
        m.d.comb += [
            strobes["level_eviction"].eq(update_valid & levels_update.evicted),
            level_w.addr.eq(level_address(update.slot, update.side)),
            level_w.data.eq(levels_update.updated),
            level_w.en.eq(update_valid),
            top_w.addr.eq(update.slot),
            top_w.data.eq(top),
            top_w.en.eq(update_valid),
        ]
        with m.If(update_valid):
            m.d.sync += [last_book.eq(levels_update.updated), last_top.eq(top), last_slot.eq(update.slot),
                         last_side.eq(update.side), last_book_valid.eq(1)]  # fmt: skip
        made = fields.pack(
            bbo.RECORD,
            {
                "sequence": update.sequence,
                "itch_timestamp": update.timestamp,
                "card_timestamp": self.timestamp,
                "locate": update.locate,
                "flags": flags(top),
                "cause": update.cause,
                "bid_price": top.bid.price,
                "bid_shares": top.bid.shares,
                "bid_orders": top.bid.orders,
                "ask_price": top.ask.price,
                "ask_shares": top.ask.shares,
                "ask_orders": top.ask.orders,
            },
        )
        m.d.comb += [
            outbox.w_data.eq(made),
            outbox.w_en.eq(update_valid & changed),
            self.records.payload.eq(outbox.r_data),
            self.records.valid.eq(outbox.r_rdy),
            outbox.r_en.eq(self.records.ready),
        ]

        # --- clear: let the operations in flight finish, then wipe every book memory --------------------------------
        wipe_at = Signal(range(g.wipe_cycles))
        wiping = Signal()
        with m.If(self.clear):
            m.d.sync += [self.clearing.eq(1), wipe_at.eq(0)]
        m.d.comb += wiping.eq(self.clearing & ~self.clear & (in_flight == 0))
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
            m.d.sync += [wipe_at.eq(wipe_at + 1), self.orders_live.eq(0), last_set_valid.eq(0),
                         last_book_valid.eq(0)]  # fmt: skip
            with m.If(wipe_at == g.wipe_cycles - 1):
                m.d.sync += self.clearing.eq(0)
        return m
