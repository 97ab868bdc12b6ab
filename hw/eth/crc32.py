"""The Ethernet frame check sequence (IEEE 802.3 CRC-32, reflected), as zlib.crc32 computes it.

The update is an affine map over GF(2): value' = A·value ⊕ B·data ⊕ k. Its matrices are read off
zlib.crc32 itself (the software twin, imported rather than re-derived): k is the CRC of n zero bytes
from 0, and each column is the change one set bit of the value or of the data makes to it. The hardware
register therefore holds exactly what zlib.crc32 returns for the bytes so far (0 before the first byte).

The FCS of a frame is `zlib.crc32(frame).to_bytes(4, "little")`, sent first byte first; the CRC of a
frame followed by its own FCS is always `RESIDUE`, which is how a receiver checks it without knowing
where the frame ends.
"""

from __future__ import annotations

import zlib
from functools import cache

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RESIDUE", "Crc32", "crc32_update"]

RESIDUE = zlib.crc32(b"\x00" + zlib.crc32(b"\x00").to_bytes(4, "little"))
"""zlib.crc32 of any byte string followed by its own FCS (0x2144DF1C)."""


@cache
def _affine_map(n_bytes: int) -> tuple[tuple[tuple[int, ...], tuple[int, ...], int], ...]:
    """Per output bit: (value bits, data bits, constant) whose XOR is that bit of the next value."""
    zeros = bytes(n_bytes)
    k = zlib.crc32(zeros, 0)
    from_value = [zlib.crc32(zeros, 1 << i) ^ k for i in range(32)]
    from_data = [zlib.crc32((1 << j).to_bytes(n_bytes, "little"), 0) ^ k for j in range(8 * n_bytes)]
    return tuple(
        (
            tuple(i for i in range(32) if from_value[i] >> bit & 1),
            tuple(j for j in range(8 * n_bytes) if from_data[j] >> bit & 1),
            k >> bit & 1,
        )
        for bit in range(32)
    )


def crc32_update(value: Value, data: Value) -> Value:
    """zlib.crc32(data bytes, value) as a combinational expression: `data` holds len(data) // 8 bytes, the
    first in the lowest 8 bits; `value` is 32 bits (0 starts a new CRC)."""
    if len(data) == 0 or len(data) % 8:
        raise ValueError(f"data must be a whole number of bytes, got {len(data)} bits")
    bits = []
    for value_bits, data_bits, constant in _affine_map(len(data) // 8):
        terms = [value[i] for i in value_bits] + [data[j] for j in data_bits]
        bits.append(Cat(*terms).xor() ^ constant)
    return Cat(*bits)


class Crc32(wiring.Component):
    """CRC-32 of a byte stream, `n_bytes` bytes a cycle (all of them valid).

    Accepts: `clear` (start a new CRC: the register returns to 0 at the next edge; a `valid` in the same
    cycle is ignored), and `data` (n_bytes bytes, the first in the lowest 8 bits) when `valid`.
    Emits: `value`, a register: zlib.crc32 of the bytes taken since the last `clear` (the FCS to append,
    least significant byte first); `next_value`, combinational: what `value` will be after this cycle
    (the FCS of a frame whose last byte is on `data`); `residue_ok`: `value == RESIDUE`, i.e. the bytes
    taken end with their own correct FCS.
    Latency: one cycle (data to `value`); throughput n_bytes bytes a cycle. There is no bad input; a
    frame whose length is not a multiple of n_bytes needs the 1-byte variant for its tail.
    """

    def __init__(self, n_bytes: int = 1) -> None:
        if n_bytes < 1:
            raise ValueError(f"n_bytes must be at least 1, got {n_bytes}")
        self.n_bytes = n_bytes
        super().__init__(
            {
                "clear": In(1),
                "valid": In(1),
                "data": In(8 * n_bytes),
                "value": Out(32),
                "next_value": Out(32),
                "residue_ok": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        value = Signal(32)
        m.d.comb += [
            self.next_value.eq(Mux(self.clear, 0, Mux(self.valid, crc32_update(value, self.data), value))),
            self.value.eq(value),
            self.residue_ok.eq(value == RESIDUE),
        ]
        m.d.sync += value.eq(self.next_value)
        return m
