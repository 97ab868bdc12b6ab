"""Field tables: fixed-length records declared once as data.

A `Layout` is a table of `Field(name, offset, width, kind)` rows, written in the order and with the offsets
of the protocol specification. Everything that handles the record is derived from that table: the scalar
codec (`pack` / `unpack`), the numpy dtypes for bulk decoding, and (in wirebook.hdl) the gateware decoder.
The table is checked when it is declared: fields must tile the record exactly, with no gap and no overlap.
"""

from __future__ import annotations

import enum
import struct
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MalformedError, TruncatedError


class Kind(enum.Enum):
    """How a field's bytes are interpreted."""

    UINT = "uint"  # unsigned integer in the table's byte order
    ALPHA = "alpha"  # ASCII text, left-justified and padded with spaces
    NUMERIC = "numeric"  # ASCII decimal integer, right-justified and padded with spaces (SoupBinTCP)
    PRICE4 = "price4"  # unsigned integer price with 4 implied decimal places
    PRICE8 = "price8"  # unsigned integer price with 8 implied decimal places
    PAD = "pad"  # reserved bytes: written as zero, ignored when read

    @property
    def is_integer(self) -> bool:
        return self in (Kind.UINT, Kind.PRICE4, Kind.PRICE8)


UINT, ALPHA, NUMERIC, PRICE4, PRICE8, PAD = Kind.UINT, Kind.ALPHA, Kind.NUMERIC, Kind.PRICE4, Kind.PRICE8, Kind.PAD

_STRUCT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    width: int
    kind: Kind

    @property
    def end(self) -> int:
        return self.offset + self.width

    @property
    def max_value(self) -> int:
        return (1 << (8 * self.width)) - 1


class Layout:
    """A fixed-length record described by a field table.

    `tag` is the value of the record's type field (e.g. ITCH message type b"A") when the record has one;
    `pack` fills it in when not given and `unpack` checks it.
    """

    def __init__(
        self,
        name: str,
        fields: Iterable[tuple[str, int, int, Kind]],
        *,
        byteorder: str = "big",
        tag: bytes | None = None,
        tag_field: str | None = None,
        description: str = "",
    ) -> None:
        if byteorder not in ("big", "little"):
            raise ValueError(f"layout {name}: byteorder must be 'big' or 'little', got {byteorder!r}")
        self.name = name
        self.byteorder = byteorder
        self.description = description
        self.fields: tuple[Field, ...] = tuple(Field(*row) for row in fields)
        self._check_tiling()
        self.length = self.fields[-1].end if self.fields else 0
        self.by_name = {f.name: f for f in self.fields}
        self.tag = tag
        self.tag_field = tag_field
        if tag is not None:
            if tag_field is None or tag_field not in self.by_name:
                raise ValueError(f"layout {name}: tag {tag!r} needs an existing tag_field")
            if len(tag) != self.by_name[tag_field].width:
                raise ValueError(f"layout {name}: tag {tag!r} does not fit field {tag_field}")
        self.value_fields = tuple(f for f in self.fields if f.kind is not Kind.PAD)
        self.record = namedtuple(self._class_name(), [f.name for f in self.value_fields])  # type: ignore[misc]
        self.record.__doc__ = f"{name}: {description}" if description else name
        self._struct, self._plan = self._build_struct()

    # --- declaration checks -------------------------------------------------------------------------

    def _check_tiling(self) -> None:
        at = 0
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise ValueError(f"layout {self.name}: field {f.name!r} declared twice")
            seen.add(f.name)
            if f.offset != at:
                raise ValueError(
                    f"layout {self.name}: field {f.name!r} at offset {f.offset}, expected {at} "
                    "(fields must tile the record with no gap or overlap)"
                )
            if f.width <= 0:
                raise ValueError(f"layout {self.name}: field {f.name!r} has width {f.width}")
            if f.kind.is_integer and f.width > 8:
                raise ValueError(f"layout {self.name}: integer field {f.name!r} wider than 8 bytes")
            at = f.end

    def _class_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.replace("-", "_").split("_")) or "Record"

    def _build_struct(self) -> tuple[struct.Struct, tuple[tuple[Field, int], ...]]:
        """One struct.Struct for the whole record; odd-width integers travel as bytes and are converted."""
        codes = [">" if self.byteorder == "big" else "<"]
        plan = []
        for f in self.fields:
            if f.kind is Kind.PAD:
                codes.append(f"{f.width}x")
                continue
            if f.kind.is_integer and f.width in _STRUCT_CODES:
                codes.append(_STRUCT_CODES[f.width])
                plan.append((f, 0))
            elif f.kind is Kind.NUMERIC:
                codes.append(f"{f.width}s")
                plan.append((f, 3))
            else:
                codes.append(f"{f.width}s")
                plan.append((f, 1 if f.kind.is_integer else 2))
        return struct.Struct("".join(codes)), tuple(plan)

    # --- scalar codec -------------------------------------------------------------------------------

    def pack(self, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> bytes:
        """Encode one record. Integers are range-checked, text is ASCII and at most the field's width."""
        given = dict(values or {}, **kwargs)
        if self.tag is not None:
            given.setdefault(self.tag_field, self.tag.decode("ascii"))
        unknown = set(given) - {f.name for f in self.value_fields}
        if unknown:
            raise KeyError(f"{self.name}: no field(s) {sorted(unknown)}")
        args = []
        for f, how in self._plan:
            if f.name not in given:
                raise KeyError(f"{self.name}: field {f.name!r} is required")
            v = given[f.name]
            if how == 3:
                text = str(int(v))
                if int(v) < 0 or len(text) > f.width:
                    raise ValueError(f"{self.name}.{f.name}: {v} does not fit {f.width} ASCII digits")
                args.append(text.rjust(f.width).encode("ascii"))
                continue
            if how == 2:
                raw = v.encode("ascii") if isinstance(v, str) else bytes(v)
                if len(raw) > f.width:
                    raise ValueError(f"{self.name}.{f.name}: {v!r} is longer than {f.width} bytes")
                args.append(raw.ljust(f.width, b" "))
                continue
            v = int(v)
            if not 0 <= v <= f.max_value:
                raise ValueError(f"{self.name}.{f.name}: {v} does not fit {f.width} unsigned bytes")
            args.append(v if how == 0 else v.to_bytes(f.width, self.byteorder))
        return self._struct.pack(*args)

    def packer(self, *variable: str, **constants: Any) -> Callable[..., bytes]:
        """A hot-path encoder: `constants` are checked and encoded once (as `pack` does), and the returned
        function takes the `variable` fields positionally, in that order, and returns the record's bytes.

        The function is generated from the field table (like namedtuple's): one struct call over the whole
        record, the constants baked in as bytes. Integers out of range raise ValueError (struct's check);
        text must be ASCII and at most the field's width (else ValueError) and is space-padded like `pack`.
        Every value field must be either variable or constant (the tag field is filled in).
        """
        names = {f.name for f, _ in self._plan}
        unknown = (set(variable) | set(constants)) - names
        missing = names - set(variable) - set(constants) - ({self.tag_field} if self.tag is not None else set())
        both = set(variable) & set(constants)
        if unknown or missing or both:
            raise KeyError(f"{self.name}.packer: unknown {sorted(unknown)}, missing {sorted(missing)}, "
                           f"both variable and constant {sorted(both)}")  # fmt: skip
        given = dict(constants)
        if self.tag is not None:
            given.setdefault(self.tag_field, self.tag.decode("ascii"))
        # Encode every constant once through pack's own checks, then read each back as struct argument.
        placeholders = {n: 0 if self.by_name[n].kind.is_integer or self.by_name[n].kind is Kind.NUMERIC else ""
                        for n in variable}  # fmt: skip
        fixed_args = self._struct.unpack(self.pack({**placeholders, **given}))

        def explain(*values: Any) -> None:  # the error path only: pack's checks name the field
            self.pack({**given, **dict(zip(variable, values))})

        scope: dict[str, Any] = {"_pack": self._struct.pack, "_error": struct.error, "_explain": explain}
        params = [f"v{i}" for i in range(len(variable))]
        checks, args = [], []
        for (f, how), fixed in zip(self._plan, fixed_args):
            if f.name not in variable:
                scope[f"c_{f.name}"] = fixed
                args.append(f"c_{f.name}")
                continue
            v = params[variable.index(f.name)]
            if how == 0:
                args.append(v)
            elif how == 1:
                args.append(f"{v}.to_bytes({f.width}, {self.byteorder!r})")
            else:  # text (2) or ASCII digits (3): encoded here, refused (by pack's own check) when too long
                encode = f"str(int({v})).rjust({f.width})" if how == 3 else v
                checks.append(f"    e_{v} = {encode}.encode('ascii')")
                checks.append(f"    if len(e_{v}) > {f.width} or e_{v}.startswith(b'-'): _explain({', '.join(params)})")
                args.append(f"e_{v}.ljust({f.width})")
        call = ", ".join(params)
        source = "\n".join(
            [f"def pack({call}):", *checks, "    try:", f"        return _pack({', '.join(args)})",
             "    except (_error, OverflowError) as e:", f"        _explain({call})",
             f"        raise ValueError('{self.name}: ' + str(e))"]
        )  # fmt: skip
        exec(source, scope)  # code generated from the field table, as namedtuple does
        return scope["pack"]

    def unpack(self, buf: bytes | bytearray | memoryview, offset: int = 0) -> Any:
        """Decode one record starting at `offset`; returns the layout's namedtuple."""
        if len(buf) - offset < self.length:
            raise TruncatedError(self.name, offset, f"{self.length} bytes", f"{max(0, len(buf) - offset)} bytes left")
        raw = self._struct.unpack_from(buf, offset)
        out = []
        for (f, how), v in zip(self._plan, raw):
            if how == 1:
                v = int.from_bytes(v, self.byteorder)
            elif how == 3:
                text = v.strip(b" ")
                if not text.isdigit():
                    raise MalformedError(
                        f"{self.name}.{f.name}", offset + f.offset, "right-justified ASCII digits", repr(v)
                    )
                v = int(text)
            elif how == 2:
                try:
                    v = v.decode("ascii").rstrip(" ")
                except UnicodeDecodeError:
                    raise MalformedError(f"{self.name}.{f.name}", offset + f.offset, "ASCII text", repr(v)) from None
            out.append(v)
        record = self.record(*out)
        if self.tag is not None and getattr(record, self.tag_field).encode("ascii") != self.tag:
            raise MalformedError(self.name, offset, f"type {self.tag!r}", repr(getattr(record, self.tag_field)))
        return record

    # --- numpy --------------------------------------------------------------------------------------

    @property
    def wire_dtype(self) -> np.dtype:
        """The record's bytes as they are on the wire (no copy needed to view a packed buffer)."""
        order = ">" if self.byteorder == "big" else "<"
        names, formats, offsets = [], [], []
        for f in self.value_fields:
            if f.kind.is_integer and f.width in _STRUCT_CODES:
                fmt = f"{order}u{f.width}"
            elif f.kind.is_integer:
                fmt = f"V{f.width}"
            else:
                fmt = f"S{f.width}"
            names.append(f.name)
            formats.append(fmt)
            offsets.append(f.offset)
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": self.length})

    @property
    def native_dtype(self) -> np.dtype:
        """Decoded form: integers widened to native u1/u2/u4/u8, text as fixed-width bytes."""
        formats = []
        for f in self.value_fields:
            if f.kind.is_integer:
                formats.append(f"=u{next(w for w in (1, 2, 4, 8) if w >= f.width)}")
            else:
                formats.append(f"S{f.width}")
        return np.dtype(list(zip([f.name for f in self.value_fields], formats)))

    def decode_array(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Decode an (n, length) uint8 array of packed records into the native dtype.

        `out`, when given, is any structured array of n rows that has the native fields (it may have more,
        e.g. an index column); the fields are written into it and it is returned.
        """
        if rows.ndim != 2 or rows.shape[1] != self.length:
            raise ValueError(f"{self.name}: need (n, {self.length}) bytes, got shape {rows.shape}")
        rows = np.ascontiguousarray(rows, dtype=np.uint8)
        wire = rows.view(self.wire_dtype).reshape(-1)
        if out is None:
            out = np.empty(len(rows), dtype=self.native_dtype)
        for f in self.value_fields:
            if f.kind.is_integer and f.width not in _STRUCT_CODES:
                out[f.name] = _odd_width_uint(rows[:, f.offset : f.end], self.byteorder)
            else:
                out[f.name] = wire[f.name]
        return out

    def encode_array(self, records: np.ndarray) -> np.ndarray:
        """Inverse of decode_array: native-dtype records to an (n, length) uint8 array of wire bytes."""
        rows = np.zeros((len(records), self.length), dtype=np.uint8)
        wire = rows.view(self.wire_dtype).reshape(-1)
        for f in self.value_fields:
            if f.kind.is_integer and f.width not in _STRUCT_CODES:
                values = records[f.name].astype(np.uint64)
                shifts = np.arange(f.width, dtype=np.uint64) * np.uint64(8)
                if self.byteorder == "big":
                    shifts = shifts[::-1]
                rows[:, f.offset : f.end] = ((values[:, None] >> shifts) & np.uint64(0xFF)).astype(np.uint8)
            elif f.kind is Kind.ALPHA:
                wire[f.name] = np.char.ljust(records[f.name], f.width)
            else:
                wire[f.name] = records[f.name]
        return rows

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, {self.length} bytes, {len(self.fields)} fields)"


def _odd_width_uint(cols: np.ndarray, byteorder: str) -> np.ndarray:
    """(n, w) bytes with w in 3..7 to uint64, by padding to 8 bytes and viewing."""
    n, w = cols.shape
    padded = np.zeros((n, 8), dtype=np.uint8)
    if byteorder == "big":
        padded[:, 8 - w :] = cols
        return padded.view(">u8").reshape(-1).astype(np.uint64)
    padded[:, :w] = cols
    return padded.view("<u8").reshape(-1).astype(np.uint64)
