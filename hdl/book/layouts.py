"""The book engine's sizes and the layouts of its memory words and pipeline registers, derived once from them.

`BookGeometry` is what changes the hardware (BookEngine's keyword arguments); every width and every
StructLayout the engine and its parts use comes from it, so a component and its test bench agree by
construction.

Memory words:
- `instrument`: the instrument table, one word per stock locate: is it subscribed, and its book slot.
- `order_set`: the order table, one word per set (`n_ways` entries). An entry keeps the reference's bits
  above the set index as its tag, so set index + tag is the whole 64-bit reference: two live references
  never alias.
- `side_book`: the price levels of one (slot, side): `n_levels` levels best first (`valid` is a
  thermometer: levels 0..k-1 are in use), plus the hidden-order count and the best hidden price.
- `top`: per slot, the top of book and flags last emitted (equal to the current top between operations),
  and the sticky overflow and per-side degraded state the flags are made of.

Pipeline registers: `lookup_stage` (an operation, or a REPLACE half, on its way to the order-table decision)
and `update_stage` (the decided level work of one operation, on its way to the levels and top update).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from amaranth.hdl import unsigned
from amaranth.lib import data, enum

from ..stream import BOOK_OP

__all__ = ["BookGeometry", "Micro"]

REFERENCE_BITS = 64
PRICE_BITS = 32
SHARES_BITS = 32


class Micro(enum.Enum, shape=unsigned(2)):
    """Which part of an operation a pipeline slot carries: a REPLACE runs as a removal, then an add."""

    WHOLE = 0  # every operation but REPLACE
    REPLACE_REMOVE = 1  # U, first half: take all of `ref`
    REPLACE_ADD = 2  # U, second half: add `new_ref` on the side and instrument the first half found


@dataclass(frozen=True)
class BookGeometry:
    n_instruments: int = 64
    n_locates: int = 16384
    n_orders: int = 16384
    n_ways: int = 4
    n_levels: int = 16

    def __post_init__(self) -> None:
        for name in ("n_instruments", "n_locates", "n_orders", "n_ways", "n_levels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_locates > 1 << 16:
            raise ValueError(f"n_locates must be at most 65536 (a 2-byte stock locate), got {self.n_locates}")
        if self.n_orders % self.n_ways:
            raise ValueError(f"n_orders ({self.n_orders}) must be a multiple of n_ways ({self.n_ways})")
        sets = self.n_orders // self.n_ways
        if sets & (sets - 1):
            raise ValueError(f"n_orders / n_ways must be a power of two (the set index is low bits), got {sets}")

    # --- widths ---------------------------------------------------------------------------------------------------

    @property
    def n_sets(self) -> int:
        return self.n_orders // self.n_ways

    @property
    def set_bits(self) -> int:
        return (self.n_sets - 1).bit_length()

    @property
    def tag_bits(self) -> int:
        return REFERENCE_BITS - self.set_bits

    @property
    def slot_bits(self) -> int:
        return max(1, (self.n_instruments - 1).bit_length())

    @property
    def locate_bits(self) -> int:
        return max(1, (self.n_locates - 1).bit_length())

    @property
    def count_bits(self) -> int:
        """Order counts (per level, hidden, live): up to n_orders."""
        return self.n_orders.bit_length()

    @property
    def wipe_cycles(self) -> int:
        """Cycles a clear spends writing: the depth of the deepest memory it wipes."""
        return max(self.n_sets, 2 * self.n_instruments)

    # --- memory words ---------------------------------------------------------------------------------------------

    @cached_property
    def instrument(self) -> data.StructLayout:
        return data.StructLayout({"valid": 1, "slot": self.slot_bits})

    @cached_property
    def order_entry(self) -> data.StructLayout:
        return data.StructLayout(
            {
                "valid": 1,
                "tag": self.tag_bits,  # reference >> set_bits
                "slot": self.slot_bits,
                "side": 1,
                "price": PRICE_BITS,
                "shares": SHARES_BITS,  # remaining
            }
        )

    @cached_property
    def order_set(self) -> data.ArrayLayout:
        return data.ArrayLayout(self.order_entry, self.n_ways)

    @cached_property
    def level(self) -> data.StructLayout:
        """One price level; also a side's best (all zero when the side is empty)."""
        return data.StructLayout({"price": PRICE_BITS, "shares": SHARES_BITS, "orders": self.count_bits})

    @cached_property
    def side_book(self) -> data.StructLayout:
        return data.StructLayout(
            {
                "valid": self.n_levels,  # thermometer: level i in use
                "levels": data.ArrayLayout(self.level, self.n_levels),  # best first
                "hidden_orders": self.count_bits,
                "hidden_best": PRICE_BITS,  # best price hidden since hidden_orders left 0; 0 while it is 0
            }
        )

    @cached_property
    def top(self) -> data.StructLayout:
        return data.StructLayout(
            {
                "bid": self.level,
                "ask": self.level,
                "halted": 1,
                "overflowed": 1,  # an add of this instrument found its set full (sticky until clear)
                "bid_degraded": 1,
                "ask_degraded": 1,
            }
        )

    # --- pipeline registers ---------------------------------------------------------------------------------------

    @cached_property
    def lookup_stage(self) -> data.StructLayout:
        return data.StructLayout({"op": BOOK_OP, "micro": Micro, "in_range": 1})

    @cached_property
    def update_stage(self) -> data.StructLayout:
        return data.StructLayout(
            {
                "slot": self.slot_bits,
                "side": 1,
                "take": 1,  # first, `take_shares` leave the level at `take_price` (an execution, a removal)
                "take_price": PRICE_BITS,
                "take_shares": SHARES_BITS,
                "take_leaves": 1,  # the order's last shares (the level loses an order)
                "insert": 1,  # then an order of `insert_shares` joins the level at `insert_price` (or makes it)
                "insert_price": PRICE_BITS,
                "insert_shares": SHARES_BITS,
                "touch_side": 1,  # the side's best and degraded state are recomputed into the top
                "set_halted": 1,
                "halted": 1,
                "overflow": 1,
                "forward_top": 1,  # the slot's top was written after it was read: use the last write
                "sequence": 64,
                "timestamp": 48,
                "cause": 8,
                "locate": 16,
            }
        )
