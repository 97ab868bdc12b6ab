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

OUTBOX_DEPTH = 8  # records made and not yet taken, plus the operations in flight that may make one


class BookEngine(wiring.Component):
    """Order book of up to `n_instruments` instruments; emits a BBO record when an instrument's top changes.

    Accepts one `ops` transfer (hdl.stream.BOOK_OP) every 2 cycles, a REPLACE every 3, while no clear is running
    and the outbox has room. After each operation (a REPLACE: its removal and its add, in one update) the
    instrument's top of book and flags are compared with the last ones emitted for it; when they differ one
    record (proto.bbo.RECORD as a byte vector, byte k at bits 8k..8k+7) is emitted with the operation's
    sequence, ITCH timestamp, cause and locate, and card_timestamp = `timestamp` on the cycle the record is
    made. For valid input on books that fit, the records equal the golden model's (model.book) bit for bit
    but for card_timestamp.

    Latency: `records.valid` rises 8 cycles after the cycle an operation was accepted, for every kind
    (REPLACE included), when the outbox is empty. Records wait in the outbox (OUTBOX_DEPTH records): an
    operation is accepted only while the outbox has room for a record of it and of every operation in flight,
    so `records` back-pressure stops `ops` and nothing inside; nothing is lost.

    Memories (memory.Memory, synchronous read ports, read latency 1 cycle, none transparent: every read's data
    goes straight into a register, with no logic between the memory and the register: an EBR's clock-to-out
    takes most of a cycle; words in hdl.book.layouts):
    - instruments: n_locates x `instrument` (subscribed, slot), written only through the table port;
    - orders: n_orders / n_ways sets x `order_set` (n_ways entries: valid, tag, slot, side, price, shares);
    - levels: 2 * n_instruments x `side_book` (address slot * 2 + side): n_levels levels, hidden state;
    - tops: n_instruments x `top`: the last emitted top of book and the state its flags are made of;
      (levels and tops are distributed RAM on an FPGA; with `tables_in_block_ram`, block RAM, for a device
      short of LUTs: the same behaviour);
    - outbox: amaranth.lib.fifo.SyncFIFO of records.

    Pipeline (cycles after the accept cycle A; nothing stalls once accepted; each stage is there for the clock):
    - A: the instrument table (by locate) and the order table (by the reference's set) are read; A + 1, for a
      REPLACE, the set of its new reference. A + 1: the read data is registered.
    - A + 2, lookup (the add half of a REPLACE: A + 3): every way's tag is compared with the reference, and what
      a take would do to each way's shares is worked out; registered.
    - A + 3, decide (add half: A + 4): the order-table decision from those registers; the set is written back;
      the levels of the operation's (slot, side) are read (the side of a take: its hit way's, registered). The
      add half of a REPLACE decides while its removal's levels arrive, and joins it.
    - A + 4: the levels read is registered; the slot's top is read.
    - A + 5, A + 6, A + 7: LevelUpdate (hdl.book.levels): compare, decide, shift. At A + 6 the top as last
      emitted comes in and takes the operation's flags; at A + 7 the shifted levels and the new top are
      written back and the record, if the top changed, goes to the outbox (at A + 8 it shows on `records`).
    A read misses the writes made in its own cycle and the next: the order-set read is patched from registers
    of the last two set writes, the levels and top reads from a register of the last write, when their index
    matches; and an operation on the (slot, side) of the one two cycles ahead of it compares with that one's
    levels as they are being shifted (LevelUpdate's `chain`). So consecutive operations on one instrument,
    side and order set need no stall.

    Instrument table: `table_write` stores (`table_valid`, `table_slot`) for `table_locate` (a write to a
    locate >= n_locates is ignored; `table_slot` must be < n_instruments, and two subscribed locates should
    not share a slot). An operation whose locate has no valid entry, or is >= n_locates, is dropped
    (`unsubscribed`). The table is not ordered with `ops`: change it while no operation of that locate is
    in flight (eight cycles).

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
        n_levels: int = 16, tables_in_block_ram: bool = False,
    ) -> None:  # fmt: skip
        self.geometry = g = BookGeometry(n_instruments, n_locates, n_orders, n_ways, n_levels)
        self.tables_in_block_ram = tables_in_block_ram
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
        # Shallow and wide, these two would be distributed RAM: on a small FPGA, whose LUTs are the scarce
        # resource and whose block RAMs are not, `tables_in_block_ram` asks synthesis for block RAM instead.
        small = {"ram_style": "block"} if self.tables_in_block_ram else None
        m.submodules.levels = levels = memory.Memory(shape=g.side_book, depth=2 * g.n_instruments, init=[],
                                                     attrs=small)  # fmt: skip
        m.submodules.tops = tops = memory.Memory(shape=g.top, depth=g.n_instruments, init=[], attrs=small)
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
        lookup = Signal(g.lookup_stage)  # accept + 2 (a REPLACE's add half: + 3): the tag compares
        lookup_valid = Signal()
        decide = Signal(g.lookup_stage)  # accept + 3 (add half: + 4): the order-table decision, the levels read
        decide_valid = Signal()
        pending = Signal(g.update_stage)  # accept + 4: the levels read arrives (registered as it comes)
        pending_valid = Signal()
        compare = Signal(g.update_stage)  # accept + 5: LevelUpdate compares
        compare_valid = Signal()
        plan = Signal(g.update_stage)  # accept + 6: LevelUpdate decides; the top as last emitted
        plan_valid = Signal()
        update = Signal(g.update_stage)  # accept + 7: LevelUpdate shifts, the top and the record are made
        update_valid = Signal()
        instrument = Signal(g.instrument)  # memory outputs, registered as they come
        ways_read = Signal(g.order_set)
        level_read = Signal(g.side_book)
        top_read = Signal(g.top)
        m.d.sync += [
            instrument.eq(instrument_r.data),
            ways_read.eq(order_r.data),
            level_read.eq(level_r.data),
            top_read.eq(top_r.data),
        ]
        # The last two order-set writes and the last levels and top write, for the reads that missed them (a read
        # misses the writes of its own cycle and the next).
        last_set = Signal(g.order_set)
        last_set_at = Signal(g.set_bits)
        last_set_valid = Signal()
        prev_set = Signal(g.order_set)
        prev_set_at = Signal(g.set_bits)
        prev_set_valid = Signal()
        last_book = Signal(g.side_book)
        last_top = Signal(g.top)
        last_slot = Signal(g.slot_bits)
        last_side = Signal()
        last_book_valid = Signal()
        # The removal half of the REPLACE decided last cycle, for its add half.
        removed_ok = Signal()
        removed_slot = Signal(g.slot_bits)
        removed_side = Signal()
        removed_way = Signal(g.n_ways)  # one-hot: the way the removal freed (none when it was refused)

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
        in_flight = (accepted_valid + lookup_valid + decide_valid + pending_valid + compare_valid + plan_valid
                     + update_valid)  # fmt: skip
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
        # The reference the lookup stage matches and where its set is to be taken from: the read, or one of the last
        # two writes (the read missed the writes made in its cycle and the next: at most two, the latest first).
        key = Signal(64)
        decide_key = Signal(64)
        set_from_last = Signal()
        set_from_prev = Signal()
        add_half_next = lookup_valid & (lookup.micro == Micro.REPLACE_REMOVE)
        next_key = Mux(add_half_next, lookup.op.new_ref, accepted.op.ref)
        next_set = set_of(next_key)
        key_at_last = last_set_valid & (last_set_at == next_set)
        m.d.sync += [
            key.eq(next_key),
            set_from_last.eq(Mux(decide_valid, set_of(decide_key) == next_set, key_at_last)),
            set_from_prev.eq(Mux(decide_valid, key_at_last, prev_set_valid & (prev_set_at == next_set))),
        ]
        with m.If(add_half_next):
            m.d.sync += lookup.micro.eq(Micro.REPLACE_ADD)  # stays valid: the add half
        with m.Else():
            m.d.sync += [lookup_valid.eq(accepted_valid), lookup.eq(accepted)]

        # --- lookup: compare the tags of the set, and what a take would do to each way -----------------------------
        ways = Signal(g.order_set)
        m.d.comb += ways.eq(Mux(set_from_last, last_set, Mux(set_from_prev, prev_set, ways_read)))
        decide_ways = Signal(g.order_set)
        decide_hits = Signal(g.n_ways)
        decide_frees = Signal(g.n_ways)
        decide_slot = Signal(g.slot_bits)
        decide_subscribed = Signal()
        decide_slot_ok = Signal(g.n_ways)  # the way's order is of the operation's instrument
        decide_fold = Signal()  # an add half in the set its removal is writing back
        way_over = Signal(g.n_ways)  # the op's shares are more than the way's order has
        way_exact = Signal(g.n_ways)  # exactly as many
        way_left = [Signal(32, name=f"way_left{w}") for w in range(g.n_ways)]  # way's shares - op's shares
        m.d.sync += [
            decide_valid.eq(lookup_valid),
            decide.eq(lookup),
            decide_key.eq(key),
            decide_ways.eq(ways),
            decide_hits.eq(Cat(ways[w].valid & (ways[w].tag == tag_of(key)) for w in range(g.n_ways))),
            decide_frees.eq(Cat(~ways[w].valid for w in range(g.n_ways))),
            decide_slot.eq(instrument.slot),
            decide_subscribed.eq(instrument.valid & lookup.in_range),
            decide_slot_ok.eq(Cat(ways[w].slot == instrument.slot for w in range(g.n_ways))),
            decide_fold.eq((lookup.micro == Micro.REPLACE_ADD) & (set_of(key) == set_of(decide_key))),
            way_over.eq(Cat(lookup.op.shares > ways[w].shares for w in range(g.n_ways))),
            way_exact.eq(Cat(lookup.op.shares == ways[w].shares for w in range(g.n_ways))),
            *(way_left[w].eq(ways[w].shares - lookup.op.shares) for w in range(g.n_ways)),
        ]

        # --- decide: the order-table decision, the set written back; the levels read ------------------------------
        # Every outcome is a few gates from registers: the lowest hit way and the lowest free way as one-hot
        # vectors, and per way what the take does to it (registered by the lookup stage).
        op = decide.op
        subscribed = decide_subscribed
        is_add_half = decide.micro == Micro.REPLACE_ADD
        # A REPLACE's add half in its removal's set (`decide_fold`): the set is the one the removal wrote, and the
        # removal's way (the removal takes the whole order) is free.
        freed = Mux(decide_fold, removed_way, 0)
        hits = Signal(g.n_ways)
        frees = Signal(g.n_ways)
        m.d.comb += [hits.eq(decide_hits & ~freed), frees.eq(decide_frees | freed)]
        hit_first = Signal(g.n_ways)  # one-hot: the lowest way that holds `decide_key`
        free_first = Signal(g.n_ways)
        m.d.comb += [
            hit_first.eq(Cat(hits[w] & ~hits[:w].any() for w in range(g.n_ways))),
            free_first.eq(Cat(frees[w] & ~frees[:w].any() for w in range(g.n_ways))),
        ]

        def of_hit(values):
            """The value of the hit way (zero without a hit)."""
            out = 0
            for w, value in enumerate(values):
                out = out | Mux(hit_first[w], value, 0)
            return out

        take_all = (op.kind == BookOpKind.DELETE) | (decide.micro == Micro.REPLACE_REMOVE)
        wholes = [take_all | way_over[w] for w in range(g.n_ways)]  # the take gets all the way's order's shares
        lefts = [Mux(wholes[w], 0, way_left[w]) for w in range(g.n_ways)]
        leaves_of = [wholes[w] | way_exact[w] for w in range(g.n_ways)]  # the order's last shares are taken
        over = of_hit([~take_all & way_over[w] for w in range(g.n_ways)])
        taken = of_hit([Mux(wholes[w], decide_ways[w].shares, op.shares) for w in range(g.n_ways)])
        leaves = of_hit(leaves_of)
        slot_ok = of_hit(decide_slot_ok)
        hit_side = Signal()  # the side of the way `key` hit, for the levels read (the add half's fold aside)
        for w in reversed(range(g.n_ways)):
            with m.If(decide_hits[w]):
                m.d.comb += hit_side.eq(decide_ways[w].side)

        takes = (
            (op.kind == BookOpKind.EXECUTE) | (op.kind == BookOpKind.CANCEL) | (op.kind == BookOpKind.DELETE)
            | (op.kind == BookOpKind.REPLACE)
        )  # fmt: skip
        is_add = op.kind == BookOpKind.ADD
        whole_op = decide_valid & ~is_add_half  # not an add half: the instrument table decides
        any_hit, any_free = hits.any(), frees.any()
        adding = decide_valid & Mux(is_add_half, removed_ok, subscribed & is_add)  # a refused removal: no add
        added = Signal()  # `decide_key` is booked
        add_overflow = Signal()
        taking = whole_op & subscribed & takes
        took = Signal()  # the take goes through
        m.d.comb += [
            added.eq(adding & ~any_hit & any_free),
            add_overflow.eq(adding & ~any_hit & ~any_free),
            took.eq(taking & any_hit & slot_ok),
            strobes["duplicate_order"].eq(adding & any_hit),
            strobes["order_overflow"].eq(add_overflow),
            strobes["unsubscribed"].eq(whole_op & ~subscribed),
            strobes["unknown_order"].eq(taking & ~any_hit),
            strobes["locate_mismatch"].eq(taking & any_hit & ~slot_ok),
            strobes["over_execution"].eq(took & over),
        ]
        new_set = Signal(g.order_set)
        m.d.comb += new_set.eq(Mux(decide_fold, last_set, decide_ways))
        for w in range(g.n_ways):
            entry = new_set[w]
            with m.If(added & free_first[w]):
                m.d.comb += [
                    entry.valid.eq(1),
                    entry.tag.eq(tag_of(decide_key)),
                    entry.slot.eq(Mux(is_add_half, removed_slot, decide_slot)),
                    entry.side.eq(Mux(is_add_half, removed_side, op.side)),
                    entry.price.eq(op.price),
                    entry.shares.eq(op.shares),
                ]
            with m.Elif(took & hit_first[w]):
                m.d.comb += [entry.shares.eq(lefts[w]), entry.valid.eq(~leaves_of[w])]
        live_delta = Mux(added, 1, Mux(took & leaves, -1, 0))

        nxt = Signal(g.update_stage)  # what the levels stages get
        nxt_valid = whole_op & subscribed & ((op.kind == BookOpKind.TRADING_ACTION) | (is_add & ~any_hit) | took)
        m.d.comb += [
            nxt.sequence.eq(op.sequence),
            nxt.timestamp.eq(op.timestamp),
            nxt.cause.eq(op.cause),
            nxt.locate.eq(op.locate),
            nxt.halted.eq(op.halted),
            nxt.slot.eq(decide_slot),
            nxt.side.eq(Mux(takes, hit_side, op.side)),
            nxt.set_halted.eq(op.kind == BookOpKind.TRADING_ACTION),
            nxt.touch_side.eq(op.kind != BookOpKind.TRADING_ACTION),
            nxt.overflow.eq(is_add & add_overflow),
            nxt.take.eq(took),
            nxt.take_price.eq(of_hit([decide_ways[w].price for w in range(g.n_ways)])),
            nxt.take_shares.eq(taken),
            nxt.take_leaves.eq(leaves),
            nxt.insert.eq(is_add & added),
            nxt.insert_price.eq(op.price),  # a REPLACE's add half may insert the new order
            nxt.insert_shares.eq(op.shares),
        ]

        # Every decision writes its set back (unchanged when nothing was decided): the write enable stays shallow.
        # The levels are read at the operation's (slot, side) whatever the decision: a take's side is its order's
        # (any hit: when the take is refused nothing uses the read); the add half of a REPLACE reads nothing new.
        m.d.comb += [
            order_w.addr.eq(set_of(decide_key)),
            order_w.data.eq(new_set),
            order_w.en.eq(decide_valid),
            level_r.addr.eq(level_address(decide_slot, Mux(takes, hit_side, op.side))),
        ]
        with m.If(decide_valid):
            m.d.sync += [
                self.orders_live.eq(self.orders_live + live_delta),
                last_set.eq(new_set),
                last_set_at.eq(set_of(decide_key)),
                last_set_valid.eq(1),
                prev_set.eq(last_set),
                prev_set_at.eq(last_set_at),
                prev_set_valid.eq(last_set_valid),
            ]
        m.d.sync += [
            removed_ok.eq(took),
            removed_slot.eq(nxt.slot),
            removed_side.eq(nxt.side),
            removed_way.eq(Mux(took, hit_first, 0)),
        ]

        # --- levels read: the add half of a REPLACE joins its removal ----------------------------------------------
        # `pending` waits for the levels and decides where they come from: the read, or the last levels write (the
        # read missed the writes made in its cycle and the next: at most one).
        book_forward = Signal()
        m.d.sync += book_forward.eq(
            Mux(
                update_valid,
                (update.slot == pending.slot) & (update.side == pending.side),
                last_book_valid & (last_slot == pending.slot) & (last_side == pending.side),
            )
        )
        with m.If(decide_valid & is_add_half):
            m.d.sync += [
                compare.eq(pending),
                compare.insert.eq(added),
                compare.overflow.eq(add_overflow),
                compare_valid.eq(pending_valid),
                pending_valid.eq(0),
            ]
        with m.Else():
            m.d.sync += [compare.eq(pending), compare_valid.eq(pending_valid), pending.eq(nxt),
                         pending_valid.eq(decide_valid & nxt_valid)]  # fmt: skip
        m.d.comb += top_r.addr.eq(pending.slot)

        # --- compare: LevelUpdate compares the levels (as read, as last written, or with `chain` as they are being
        # shifted for the operation two cycles ahead on this side); the next cycle it decides, the one after shifts.
        chain = Signal()
        m.d.sync += chain.eq(plan_valid & (plan.slot == pending.slot) & (plan.side == pending.side))
        m.d.sync += [plan.eq(compare), plan_valid.eq(compare_valid), update.eq(plan), update_valid.eq(plan_valid)]
        # The top read (at `pending`) missed the top writes of its cycle and the next: at most one, the last.
        m.d.sync += plan.forward_top.eq(
            Mux(update_valid, update.slot == compare.slot, last_book_valid & (last_slot == compare.slot))
        )
        m.d.comb += [
            levels_update.side.eq(pending.side),  # the side and prices a cycle ahead
            levels_update.take_price.eq(pending.take_price),
            levels_update.insert_price.eq(pending.insert_price),
            levels_update.book.eq(level_read),
            levels_update.written.eq(last_book),
            levels_update.use_written.eq(book_forward),
            levels_update.chain.eq(chain),
            levels_update.take.eq(compare.take),
            levels_update.take_shares.eq(compare.take_shares),
            levels_update.take_leaves.eq(compare.take_leaves),
            levels_update.insert.eq(compare.insert),
            levels_update.insert_shares.eq(compare.insert_shares),
        ]

        # --- plan: the slot's top as last emitted, with this operation's flags ------------------------------------
        def flags(t):
            degraded = t.overflowed | t.bid_degraded | t.ask_degraded
            return Cat(t.halted, degraded)  # FLAG_HALTED = bit 0, FLAG_DEGRADED = bit 1

        assert bbo.FLAG_HALTED == 1 << 0 and bbo.FLAG_DEGRADED == 1 << 1
        last = Signal(g.top)
        m.d.comb += last.eq(Mux(plan.forward_top, last_top, top_read))
        top_before = Signal(g.top)  # the top without this operation's side
        flags_before = Signal(2)
        m.d.sync += [top_before.eq(last), flags_before.eq(flags(last))]
        with m.If(plan.set_halted):
            m.d.sync += top_before.halted.eq(plan.halted)
        with m.If(plan.overflow):
            m.d.sync += top_before.overflowed.eq(1)

        # --- update: levels shifted and written back, the top and the record ---------------------------------------
        # The last emitted top's side is the side's best before the operation (both are written by every operation
        # on it), so LevelUpdate's `best_changed` tells whether the side changed.
        top = Signal(g.top)
        m.d.comb += top.eq(top_before)
        with m.If(update.touch_side):
            with m.If(update.side):
                m.d.comb += [top.ask.eq(levels_update.best), top.ask_degraded.eq(levels_update.degraded)]
            with m.Else():
                m.d.comb += [top.bid.eq(levels_update.best), top.bid_degraded.eq(levels_update.degraded)]
        changed = (update.touch_side & levels_update.best_changed) | (flags(top) != flags_before)
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
                         prev_set_valid.eq(0), last_book_valid.eq(0)]  # fmt: skip
            with m.If(wipe_at == g.wipe_cycles - 1):
                m.d.sync += self.clearing.eq(0)
        return m
