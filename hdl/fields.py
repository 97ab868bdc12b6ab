"""Gateware views of proto/ field tables: the same `Layout` that drives the software codec drives the logic.

A record travels through the gateware as a flat vector of its wire bytes: byte k of the record sits at
bits 8k..8k+7 (the first byte on the wire in the lowest bits, as AXI-Stream lanes carry it). `value`
reads one field of such a vector as an integer in the table's byte order; `pack` builds the vector from
field values. Nothing here is written per field: adding a field to a table adds it here too.
"""

from __future__ import annotations

from collections.abc import Mapping

from amaranth.hdl import Cat, Const, Value, ValueCastable, unsigned

from ..proto.fields import Field, Kind, Layout

__all__ = ["field_bytes", "pack", "unpack", "value", "wire_shape"]


def wire_shape(layout: Layout) -> unsigned:
    """The shape of a whole record as a byte vector."""
    return unsigned(8 * layout.length)


def field_bytes(raw: Value | ValueCastable, field: Field) -> list[Value]:
    """The field's bytes in wire order (first byte first)."""
    raw = Value.cast(raw)
    return [raw[8 * k : 8 * k + 8] for k in range(field.offset, field.end)]


def value(raw: Value | ValueCastable, layout: Layout, name: str) -> Value:
    """Field `name` of the byte vector `raw` as an unsigned integer in the table's byte order.

    ALPHA fields come back as their bytes with the first character in the lowest bits (the same order
    as on the wire), which is what a comparison with `Const(int.from_bytes(text, "little"))` needs.
    """
    field = layout.by_name[name]
    octets = field_bytes(raw, field)
    if field.kind.is_integer and layout.byteorder == "big":
        octets.reverse()  # most significant byte first on the wire: Cat wants it last
    return Cat(*octets)


def unpack(raw: Value | ValueCastable, layout: Layout) -> dict[str, Value]:
    """Every value field of the record (PAD fields left out)."""
    return {f.name: value(raw, layout, f.name) for f in layout.value_fields}


def pack(layout: Layout, values: Mapping[str, Value | int]) -> Value:
    """The record's byte vector from field values; fields not given (and PAD fields) are zero."""
    unknown = set(values) - set(layout.by_name)
    if unknown:
        raise KeyError(f"layout {layout.name} has no field {sorted(unknown)}")
    parts = []
    for f in layout.fields:
        v = values.get(f.name, 0) if f.kind is not Kind.PAD else 0
        v = Value.cast(v) if not isinstance(v, int) else Const(v, 8 * f.width)
        v = v.as_unsigned()[: 8 * f.width] if len(v) >= 8 * f.width else v.as_unsigned()
        v = Cat(v, Const(0, 8 * f.width - len(v)))
        octets = [v[8 * k : 8 * k + 8] for k in range(f.width)]
        if f.kind.is_integer and layout.byteorder == "big":
            octets.reverse()
        parts.extend(octets)
    return Cat(*parts)


def alpha_const(text: str | bytes, width: int) -> int:
    """An ALPHA field's value (left-justified, space-padded) as `value` returns it."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    if len(raw) > width:
        raise ValueError(f"{raw!r} does not fit {width} bytes")
    return int.from_bytes(raw.ljust(width, b" "), "little")
