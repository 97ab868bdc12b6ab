"""Classic libpcap capture files: a streaming reader and a nanosecond writer.

File layout: a 24-byte file header (`FILE_HEADER`), then records, each a 16-byte header (`RECORD_HEADER`)
followed by `captured_length` frame bytes. The magic number fixes both the byte order of every header field
and the timestamp resolution: 0xa1b2c3d4 microseconds, 0xa1b23c4d nanoseconds.

- `PcapWriter` writes little-endian, nanosecond-resolution files (magic 0xa1b23c4d, version 2.4), snaplen
  65535, linktype 1 (Ethernet) by default. A frame longer than the snaplen is refused, never cut.
- `PcapReader` / `iter_pcap` accept both magics in either byte order and yield (timestamp in ns since the
  epoch, frame bytes) one record at a time; the file is read through a buffer, never loaded whole. A file
  that is not pcap, or a record that is truncated or impossible (fraction >= 1 s, length above
  `MAX_CAPTURED_LENGTH`), raises MalformedError / TruncatedError naming the file offset. The reader's
  `index` / `record_offset` say which record was yielded last, for error messages further up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

from .errors import MalformedError, TruncatedError
from .fields import UINT, Layout

MAGIC_MICROSECONDS = 0xA1B2C3D4
MAGIC_NANOSECONDS = 0xA1B23C4D
VERSION = (2, 4)
LINKTYPE_ETHERNET = 1
LINKTYPE_MASK = 0x0FFFFFFF  # the upper 4 bits may carry an FCS length (pcap draft, "LinkType and additional info")
DEFAULT_SNAPLEN = 65535
MAX_CAPTURED_LENGTH = 262144  # libpcap's largest snaplen: anything longer means a corrupt record header


def is_pcap(head: bytes) -> bool:
    """Do these first 4 bytes of a file start a classic pcap file (either magic, either byte order)?"""
    return len(head) >= 4 and any(
        int.from_bytes(head[:4], order) in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS) for order in ("little", "big")
    )


def _file_header(byteorder: str) -> Layout:
    return Layout(
        "pcap_file_header",
        (
            ("magic", 0, 4, UINT),
            ("version_major", 4, 2, UINT),
            ("version_minor", 6, 2, UINT),
            ("thiszone", 8, 4, UINT),  # GMT offset, always 0 in practice
            ("sigfigs", 12, 4, UINT),  # timestamp accuracy, always 0 in practice
            ("snaplen", 16, 4, UINT),
            ("linktype", 20, 4, UINT),
        ),
        byteorder=byteorder,
        description=f"libpcap file header ({byteorder}-endian file)",
    )


def _record_header(byteorder: str) -> Layout:
    return Layout(
        "pcap_record_header",
        (
            ("seconds", 0, 4, UINT),
            ("fraction", 4, 4, UINT),  # microseconds or nanoseconds, per the magic
            ("captured_length", 8, 4, UINT),
            ("original_length", 12, 4, UINT),
        ),
        byteorder=byteorder,
        description=f"libpcap record header ({byteorder}-endian file)",
    )


FILE_HEADER = {order: _file_header(order) for order in ("little", "big")}
RECORD_HEADER = {order: _record_header(order) for order in ("little", "big")}
FILE_HEADER_LENGTH = FILE_HEADER["little"].length
RECORD_HEADER_LENGTH = RECORD_HEADER["little"].length
_FRACTION = RECORD_HEADER["little"].by_name["fraction"]
_CAPTURED_LENGTH = RECORD_HEADER["little"].by_name["captured_length"]


class PcapWriter:
    """Writes a nanosecond-resolution, little-endian pcap file, one frame per `write`."""

    def __init__(
        self,
        target: str | os.PathLike | BinaryIO,
        *,
        snaplen: int = DEFAULT_SNAPLEN,
        linktype: int = LINKTYPE_ETHERNET,
        buffer_size: int = 1 << 20,
    ) -> None:
        self._own = not hasattr(target, "write")
        self._f: BinaryIO = (
            open(target, "wb", buffering=buffer_size) if self._own else target  # type: ignore[arg-type,assignment]
        )
        self.snaplen = snaplen
        self.count = 0
        self._record = RECORD_HEADER["little"]
        self._f.write(
            FILE_HEADER["little"].pack(
                magic=MAGIC_NANOSECONDS,
                version_major=VERSION[0],
                version_minor=VERSION[1],
                thiszone=0,
                sigfigs=0,
                snaplen=snaplen,
                linktype=linktype,
            )
        )

    def write(self, timestamp_ns: int, frame: bytes | bytearray | memoryview) -> None:
        """Append one record; `timestamp_ns` is nanoseconds since the Unix epoch."""
        if len(frame) > self.snaplen:
            raise ValueError(f"frame of {len(frame)} bytes exceeds the snaplen {self.snaplen}")
        seconds, fraction = divmod(timestamp_ns, 1_000_000_000)
        self._f.write(
            self._record.pack(
                seconds=seconds, fraction=fraction, captured_length=len(frame), original_length=len(frame)
            )
        )
        self._f.write(frame)
        self.count += 1

    def close(self) -> None:
        if self._own:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcapReader:
    """Streams the records of a pcap file as (timestamp_ns, frame bytes).

    The file header is read on construction: `byteorder`, `nanosecond`, `snaplen`, `linktype` (with the FCS
    bits masked off) and `version` describe the file. While iterating, `index` is the 0-based number of the
    record last yielded and `record_offset` the file offset of its record header (`frame_offset` that of its
    first frame byte). A reader can be iterated once.
    """

    def __init__(self, source: str | os.PathLike | BinaryIO, *, buffer_size: int = 1 << 20) -> None:
        self._own = not hasattr(source, "read")
        self._f: BinaryIO = (
            open(source, "rb", buffering=buffer_size) if self._own else source  # type: ignore[arg-type,assignment]
        )
        try:
            self._read_file_header()
        except BaseException:
            self.close()
            raise
        self.index = -1
        self.record_offset = -1
        self.frame_offset = -1

    def _read_file_header(self) -> None:
        raw = self._f.read(FILE_HEADER_LENGTH)
        if len(raw) < 4:
            raise TruncatedError("pcap file header", 0, "a 4-byte magic number", f"{len(raw)} bytes")
        for order in ("little", "big"):
            magic = int.from_bytes(raw[:4], order)
            if magic in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS):
                break
        else:
            raise MalformedError(
                "pcap file header",
                0,
                f"magic {MAGIC_MICROSECONDS:#010x} or {MAGIC_NANOSECONDS:#010x} in either byte order",
                f"{int.from_bytes(raw[:4], 'big'):#010x}",
            )
        if len(raw) < FILE_HEADER_LENGTH:
            raise TruncatedError("pcap file header", len(raw), f"{FILE_HEADER_LENGTH} bytes", f"{len(raw)} bytes")
        header = FILE_HEADER[order].unpack(raw)
        if header.version_major != VERSION[0]:
            raise MalformedError(
                "pcap file header version", 4, f"major version {VERSION[0]}", str(header.version_major)
            )
        self.byteorder = order
        self.nanosecond = magic == MAGIC_NANOSECONDS
        self.version = (header.version_major, header.version_minor)
        self.snaplen = header.snaplen
        self.linktype = header.linktype & LINKTYPE_MASK

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        record = RECORD_HEADER[self.byteorder]
        scale = 1 if self.nanosecond else 1000
        limit = 1_000_000_000 // scale
        read = self._f.read
        at = FILE_HEADER_LENGTH
        try:
            while True:
                raw = read(RECORD_HEADER_LENGTH)
                if not raw:
                    return
                if len(raw) < RECORD_HEADER_LENGTH:
                    raise TruncatedError(
                        f"pcap record {self.index + 1} header", at, f"{RECORD_HEADER_LENGTH} bytes", f"{len(raw)} bytes"
                    )
                head = record.unpack(raw)
                if head.fraction >= limit:
                    raise MalformedError(
                        f"pcap record {self.index + 1} timestamp",
                        at + _FRACTION.offset,
                        f"a fraction below {limit} ({'ns' if self.nanosecond else 'us'})",
                        str(head.fraction),
                    )
                if head.captured_length > MAX_CAPTURED_LENGTH:
                    raise MalformedError(
                        f"pcap record {self.index + 1} captured length",
                        at + _CAPTURED_LENGTH.offset,
                        f"at most {MAX_CAPTURED_LENGTH} bytes",
                        str(head.captured_length),
                    )
                frame = read(head.captured_length)
                if len(frame) < head.captured_length:
                    raise TruncatedError(
                        f"pcap record {self.index + 1} frame",
                        at + RECORD_HEADER_LENGTH,
                        f"{head.captured_length} bytes",
                        f"{len(frame)} bytes",
                    )
                self.index += 1
                self.record_offset = at
                self.frame_offset = at + RECORD_HEADER_LENGTH
                at = self.frame_offset + head.captured_length
                yield head.seconds * 1_000_000_000 + head.fraction * scale, frame
        finally:
            self.close()

    def close(self) -> None:
        if self._own:
            self._f.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_pcap(source: str | os.PathLike | BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(timestamp_ns, frame bytes) for every record of a pcap file, streamed."""
    yield from PcapReader(source)
