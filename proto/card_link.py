"""The `net` card's host link: register accesses and BBO record packets in UDP, declared once.

A card inline on the wire takes the exchange feed on its feed port and talks to the host on its
host-facing port (the gateware of the board issue speaks this; sim/net_card.py is its model):

CSR requests (host -> card, UDP port `CSR_PORT` on the card)
    A request carries a `sequence` number the host chose and 1..`MAX_OPS` register accesses, applied in
    order: `op` READ or WRITE, a 32-bit `address` (a byte offset of proto.registers), the `value` and byte
    `strobe` of a write; or SUBSCRIBE: send the record packets to the address this request came from, UDP
    port `value` (packet sequence numbers start again from 1). The card answers with a response carrying
    the same sequence and one result per access, in order: a status and the value (read: the register's
    value; otherwise 0). An access that fails (the bank's SLVERR) changes nothing; the accesses after it
    are still applied. The card remembers its last answer: a request that repeats the last sequence number
    (a retry after a lost response) is answered again without being applied again, so a retried write or
    command takes effect once. The host keeps one request in flight, so an answer with another sequence
    number is stale (a late answer to an earlier try) and is dropped.

Record packets (card -> host, to the address and port of the last SUBSCRIBE)
    A header, then `count` BBO records (proto.bbo, 64 bytes each) back to back, at most `MAX_RECORDS` so a
    packet fits a 1500-byte MTU. `sequence` numbers the packets from 1 after the card's reset, so the host
    sees a lost packet as a jump.

Headers are big-endian (network order) and start with `MAGIC` and `VERSION`; a packet whose magic,
version, kind or length is wrong is refused (MalformedError naming what and where), never half-read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import bbo
from .errors import MalformedError, TruncatedError
from .fields import PAD, UINT, Layout

__all__ = [
    "CSR_ACCESS",
    "CSR_HEADER",
    "CSR_PORT",
    "CSR_RESULT",
    "MAGIC",
    "MAX_OPS",
    "MAX_RECORDS",
    "RECORD_HEADER",
    "RECORD_PORT",
    "VERSION",
    "CsrAccess",
    "CsrOp",
    "CsrRequest",
    "CsrResponse",
    "CsrResult",
    "CsrStatus",
    "Kind",
    "decode_records",
    "decode_request",
    "decode_response",
    "encode_records",
    "encode_request",
    "encode_response",
]

MAGIC = 0x5742  # "WB"
VERSION = 1
CSR_PORT = 22338  # the card's CSR port
RECORD_PORT = 22339  # the host's record port (the default the card is configured with)


class CsrOp(enum.IntEnum):
    READ = 1
    WRITE = 2
    SUBSCRIBE = 3  # send record packets to this request's source address, UDP port `value`; sequence from 1


class CsrStatus(enum.IntEnum):
    OK = 0
    BUS_ERROR = 1  # the register bank answered SLVERR: unmapped address, or a write to a read-only register
    BAD_REQUEST = 2  # the request itself is malformed (unknown op, bad strobe)


class Kind(enum.IntEnum):
    CSR_REQUEST = 1
    CSR_RESPONSE = 2
    RECORDS = 3


CSR_HEADER = Layout(
    "card_csr_header",
    (
        ("magic", 0, 2, UINT),
        ("version", 2, 1, UINT),
        ("kind", 3, 1, UINT),
        ("sequence", 4, 4, UINT),
        ("count", 8, 2, UINT),
        ("reserved", 10, 2, PAD),
    ),
    description="the header of a CSR request or response: `count` accesses or results follow",
)
CSR_ACCESS = Layout(
    "card_csr_access",
    (
        ("op", 0, 1, UINT),
        ("strobe", 1, 1, UINT),
        ("reserved", 2, 2, PAD),
        ("address", 4, 4, UINT),
        ("value", 8, 4, UINT),
    ),
    description="one register access of a request",
)
CSR_RESULT = Layout(
    "card_csr_result",
    (
        ("status", 0, 1, UINT),
        ("reserved", 1, 3, PAD),
        ("value", 4, 4, UINT),
    ),
    description="the result of one access, in a response",
)
MAX_OPS = 100  # accesses per request: 1212 bytes, one packet
RECORD_HEADER = Layout(
    "card_record_header",
    (
        ("magic", 0, 2, UINT),
        ("version", 2, 1, UINT),
        ("kind", 3, 1, UINT),
        ("count", 4, 2, UINT),
        ("reserved", 6, 2, PAD),
        ("sequence", 8, 8, UINT),
    ),
    description="the header of a packet of BBO records, card to host",
)
MAX_RECORDS = (1500 - 20 - 8 - RECORD_HEADER.length) // bbo.SIZE  # IPv4 + UDP headers in a 1500-byte MTU


@dataclass(frozen=True)
class CsrAccess:
    op: CsrOp
    address: int
    value: int = 0
    strobe: int = 0xF


@dataclass(frozen=True)
class CsrRequest:
    sequence: int
    accesses: tuple[CsrAccess, ...]


@dataclass(frozen=True)
class CsrResult:
    status: CsrStatus
    value: int = 0


@dataclass(frozen=True)
class CsrResponse:
    sequence: int
    results: tuple[CsrResult, ...]


def encode_request(request: CsrRequest) -> bytes:
    if not 0 < len(request.accesses) <= MAX_OPS:
        raise ValueError(f"a request carries 1..{MAX_OPS} accesses, got {len(request.accesses)}")
    head = CSR_HEADER.pack(magic=MAGIC, version=VERSION, kind=Kind.CSR_REQUEST, sequence=request.sequence,
                           count=len(request.accesses))  # fmt: skip
    return head + b"".join(
        CSR_ACCESS.pack(op=a.op, strobe=a.strobe, address=a.address, value=a.value) for a in request.accesses
    )


def encode_response(response: CsrResponse) -> bytes:
    head = CSR_HEADER.pack(magic=MAGIC, version=VERSION, kind=Kind.CSR_RESPONSE, sequence=response.sequence,
                           count=len(response.results))  # fmt: skip
    return head + b"".join(CSR_RESULT.pack(status=r.status, value=r.value) for r in response.results)


def _header(layout: Layout, payload: bytes | bytearray | memoryview, kind: Kind):
    if len(payload) < layout.length:
        raise TruncatedError(layout.name, 0, f"{layout.length} bytes", f"{len(payload)} bytes")
    header = layout.unpack(payload)
    if header.magic != MAGIC:
        raise MalformedError(f"{layout.name}.magic", 0, f"{MAGIC:#06x}", f"{header.magic:#06x}")
    if header.version != VERSION:
        raise MalformedError(f"{layout.name}.version", 2, str(VERSION), str(header.version))
    if header.kind != kind:
        raise MalformedError(f"{layout.name}.kind", 3, f"{int(kind)} ({kind.name})", str(header.kind))
    return header


def _items(payload: bytes | bytearray | memoryview, kind: Kind, item: Layout, most: int) -> tuple[Any, list]:
    h = _header(CSR_HEADER, payload, kind)
    expected = CSR_HEADER.length + h.count * item.length
    if not 0 < h.count <= most or len(payload) != expected:
        raise MalformedError(
            f"{CSR_HEADER.name}.count", 8, f"1..{most} {item.name} ({expected} bytes)",
            f"{h.count} in {len(payload)} bytes",
        )  # fmt: skip
    return h, [item.unpack(payload, CSR_HEADER.length + k * item.length) for k in range(h.count)]


def decode_request(payload: bytes | bytearray | memoryview) -> CsrRequest:
    """A request; MalformedError / TruncatedError when it is not one (an unknown op or strobe included)."""
    h, items = _items(payload, Kind.CSR_REQUEST, CSR_ACCESS, MAX_OPS)
    accesses = []
    for k, a in enumerate(items):
        at = CSR_HEADER.length + k * CSR_ACCESS.length
        try:
            op = CsrOp(a.op)
        except ValueError:
            raise MalformedError(
                f"{CSR_ACCESS.name}.op", at, "1 (READ), 2 (WRITE) or 3 (SUBSCRIBE)", str(a.op)
            ) from None
        if a.strobe > 0xF:
            raise MalformedError(f"{CSR_ACCESS.name}.strobe", at + 1, "4 bits", f"{a.strobe:#x}")
        if op is CsrOp.SUBSCRIBE and not 0 < a.value <= 0xFFFF:
            raise MalformedError(f"{CSR_ACCESS.name}.value", at + 8, "a UDP port 1..65535", str(a.value))
        accesses.append(CsrAccess(op, a.address, a.value, a.strobe))
    return CsrRequest(h.sequence, tuple(accesses))


def decode_response(payload: bytes | bytearray | memoryview) -> CsrResponse:
    h, items = _items(payload, Kind.CSR_RESPONSE, CSR_RESULT, MAX_OPS)
    results = []
    for k, r in enumerate(items):
        try:
            status = CsrStatus(r.status)
        except ValueError:
            at = CSR_HEADER.length + k * CSR_RESULT.length
            raise MalformedError(f"{CSR_RESULT.name}.status", at, "0, 1 or 2", str(r.status)) from None
        results.append(CsrResult(status, r.value))
    return CsrResponse(h.sequence, tuple(results))


def encode_records(sequence: int, records: np.ndarray) -> bytes:
    """One record packet; at most MAX_RECORDS records."""
    if records.dtype != bbo.DTYPE:
        raise TypeError(f"need BBO records of dtype {bbo.DTYPE}, got {records.dtype}")
    if not 0 < len(records) <= MAX_RECORDS:
        raise ValueError(f"a record packet carries 1..{MAX_RECORDS} records, got {len(records)}")
    header = RECORD_HEADER.pack(magic=MAGIC, version=VERSION, kind=Kind.RECORDS, count=len(records), sequence=sequence)
    return header + records.tobytes()


def decode_records(payload: bytes | bytearray | memoryview) -> tuple[int, np.ndarray]:
    """(packet sequence, records) of a record packet; the records are a view of `payload`'s bytes."""
    h = _header(RECORD_HEADER, payload, Kind.RECORDS)
    expected = RECORD_HEADER.length + h.count * bbo.SIZE
    if not 0 < h.count <= MAX_RECORDS or len(payload) != expected:
        raise MalformedError(
            RECORD_HEADER.name, 4, f"1..{MAX_RECORDS} records and {expected} bytes",
            f"{h.count} records in {len(payload)} bytes",
        )  # fmt: skip
    return h.sequence, np.frombuffer(payload, dtype=bbo.DTYPE, offset=RECORD_HEADER.length, count=h.count)
