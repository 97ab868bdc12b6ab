"""The ITCH binary file format: messages one after another, each behind a 2-byte big-endian length.

Files are read in chunks (`chunk_size` bytes, 64 MiB by default) so a multi-GB day file never has to fit in
memory; a message that straddles a chunk boundary is carried into the next chunk. Framing runs in C
(itch_framer.c); decoding of the framed messages is vectorised (wirebook.proto.itch.decode_bulk).

Modes:
- strict (default): every length field must equal its message type's fixed length; anything else raises a
  MalformedError naming the file offset of the length field.
- tolerant: a length field of zero is accepted and the type's fixed length used instead. Some writers
  (e.g. the R package RITCH) leave every length field empty; a non-zero length that disagrees with the
  type is still an error, since then neither can be trusted.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from . import itch
from ._itch_framer import ffi, lib
from .errors import MalformedError, TruncatedError

DEFAULT_CHUNK_SIZE = 64 << 20
_MIN_MESSAGE_SPAN = 2 + min(layout.length for layout in itch.MESSAGES.values())
_LENGTH_TABLE = np.ascontiguousarray(itch.LENGTH_BY_TYPE_BYTE)
_LENGTH_LIST = _LENGTH_TABLE.tolist()  # plain ints: the per-message writer path avoids numpy scalars


@dataclass
class Chunk:
    """A run of complete messages read from a file.

    `buffer` holds the chunk's bytes; `offsets[i]` is where message i's type byte is in `buffer`,
    `types[i]` its type byte. `file_offset` is the file position of buffer[0] and `first_index` the
    0-based position in the file of message 0 of this chunk.
    """

    buffer: np.ndarray
    offsets: np.ndarray
    types: np.ndarray
    file_offset: int
    first_index: int

    def __len__(self) -> int:
        return len(self.offsets)

    def decode(self) -> dict[str, np.ndarray]:
        """All messages of the chunk, one native structured array per type (see itch.decode_bulk)."""
        return itch.decode_bulk(self.buffer, self.offsets, self.types)

    def message(self, i: int) -> bytes:
        at = int(self.offsets[i])
        return self.buffer[at : at + int(_LENGTH_TABLE[self.types[i]])].tobytes()


def frame(buffer: np.ndarray, *, tolerant: bool = False, file_offset: int = 0, final: bool = True):
    """Frame the messages in `buffer` (uint8). Returns (offsets, types, consumed).

    With `final`, bytes left after the last complete message are an error (a truncated file); otherwise
    the caller is expected to carry them into the next buffer.
    """
    buffer = np.ascontiguousarray(buffer, dtype=np.uint8)
    size = len(buffer)
    capacity = size // _MIN_MESSAGE_SPAN + 1
    offsets = np.empty(capacity, dtype=np.int64)
    types = np.empty(capacity, dtype=np.uint8)
    consumed = ffi.new("int64_t *")
    error_at = ffi.new("int64_t *")
    error_code = ffi.new("int *")
    n = lib.wb_itch_frame(
        ffi.from_buffer("uint8_t[]", buffer),
        size,
        ffi.from_buffer("uint8_t[]", _LENGTH_TABLE),
        int(tolerant),
        ffi.from_buffer("int64_t[]", offsets),
        ffi.from_buffer("uint8_t[]", types),
        capacity,
        consumed,
        error_at,
        error_code,
    )
    if error_code[0] != lib.WB_FRAME_OK:
        _raise_framing_error(buffer, int(error_at[0]), error_code[0], file_offset, tolerant)
    if final and consumed[0] != size:
        _raise_truncated(buffer, int(consumed[0]), file_offset)
    return offsets[:n], types[:n], int(consumed[0])


def _raise_framing_error(buffer: np.ndarray, at: int, code: int, file_offset: int, tolerant: bool) -> None:
    declared = int(buffer[at]) << 8 | int(buffer[at + 1])
    type_byte = int(buffer[at + 2])
    where = file_offset + at
    if code == lib.WB_FRAME_UNKNOWN_TYPE:
        raise MalformedError(
            "ITCH file message",
            where + 2,
            f"an ITCH 5.0 type letter ({''.join(itch.TYPES)})",
            f"byte 0x{type_byte:02x} {chr(type_byte)!r}",
        )
    layout = itch.layout_of(type_byte)
    hint = "" if tolerant or declared != 0 else " (empty length fields: read in tolerant mode)"
    raise MalformedError(
        f"ITCH file length field of a {chr(type_byte)!r} {layout.name} message",
        where,
        f"{layout.length}" + (" or 0" if tolerant else "") + hint,
        str(declared),
    )


def _raise_truncated(buffer: np.ndarray, at: int, file_offset: int) -> None:
    left = len(buffer) - at
    if left < 3:
        raise TruncatedError("ITCH file", file_offset + at, "a 2-byte length and a message type", f"{left} bytes")
    layout = itch.layout_of(int(buffer[at + 2]))
    raise TruncatedError(
        f"ITCH file {layout.name} message", file_offset + at, f"{2 + layout.length} bytes", f"{left} bytes"
    )


def iter_chunks(
    source: str | os.PathLike | BinaryIO, *, tolerant: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Iterator[Chunk]:
    """Stream an ITCH file as Chunks of complete messages, never holding more than ~chunk_size bytes."""
    if chunk_size < 2 + itch.MAX_LENGTH:
        raise ValueError(f"chunk_size must be at least {2 + itch.MAX_LENGTH} bytes, got {chunk_size}")
    own = not hasattr(source, "readinto")
    f: BinaryIO = open(source, "rb") if own else source  # type: ignore[arg-type,assignment]
    try:
        carry = b""
        file_offset = 0
        index = 0
        while True:
            data = f.read(chunk_size - len(carry))
            at_end = not data
            buffer = np.frombuffer(carry + data, dtype=np.uint8) if carry else np.frombuffer(data, np.uint8)
            if len(buffer) == 0:
                return
            offsets, types, consumed = frame(buffer, tolerant=tolerant, file_offset=file_offset, final=at_end)
            if len(offsets):
                yield Chunk(buffer, offsets, types, file_offset, index)
            if at_end:
                return
            index += len(offsets)
            carry = buffer[consumed:].tobytes()
            file_offset += consumed
    finally:
        if own:
            f.close()


def read_all(source: str | os.PathLike | bytes, *, tolerant: bool = False) -> Chunk:
    """A whole (small) file as one Chunk; for tests and tools. Big files: use iter_chunks."""
    if isinstance(source, bytes):
        buffer = np.frombuffer(source, dtype=np.uint8)
    else:
        buffer = np.fromfile(source, dtype=np.uint8)
    offsets, types, _ = frame(buffer, tolerant=tolerant)
    return Chunk(buffer, offsets, types, 0, 0)


class ItchWriter:
    """Writes messages in the file format, each behind its true length."""

    def __init__(self, target: str | os.PathLike | BinaryIO, buffer_size: int = 1 << 20) -> None:
        self._own = not hasattr(target, "write")
        self._f: BinaryIO = open(target, "wb") if self._own else target  # type: ignore[arg-type,assignment]
        self._buf = io.BytesIO()
        self._limit = buffer_size
        self.count = 0

    def write(self, message: bytes) -> None:
        length = _LENGTH_LIST[message[0]]
        if len(message) != length:
            itch.layout_of(message[0])  # names the type letter when it is not an ITCH 5.0 type
            raise ValueError(f"ITCH {chr(message[0])!r} message must be {length} bytes, got {len(message)}")
        self._buf.write(length.to_bytes(2, "big"))
        self._buf.write(message)
        self.count += 1
        if self._buf.tell() >= self._limit:
            self.flush()

    def flush(self) -> None:
        self._f.write(self._buf.getvalue())
        self._buf = io.BytesIO()
        self._f.flush()

    def close(self) -> None:
        self.flush()
        if self._own:
            self._f.close()

    def __enter__(self) -> ItchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def count_types(source: str | os.PathLike | BinaryIO, *, tolerant: bool = False) -> dict[str, int]:
    """Messages per type letter, every ITCH 5.0 type present (0 when absent)."""
    counts = np.zeros(256, dtype=np.int64)
    for chunk in iter_chunks(source, tolerant=tolerant):
        counts += np.bincount(chunk.types, minlength=256)
    return {t: int(counts[ord(t)]) for t in itch.TYPES}
