"""The payloads that flow between the feed handler's stages, declared once.

- Frame beats (`frame_layout(data_width)`): an Ethernet frame without FCS, `data_width` bits a beat.
  Byte i of a beat is data[8i:8i+8] (the first byte of the frame in the lowest lane, as in AXI-Stream).
  `keep` marks valid lanes: every beat but the last is full; the last beat's valid lanes are the lowest
  ones and there is at least one. `last` marks the frame's final beat.
- Messages (`MESSAGE`): one MoldUDP64 message block's payload (one ITCH message) per transfer, with the
  sequence number it has in its session and the line (A=0, B=1) that carried it.
- Book operations (`BOOK_OP`): what the book gets: one transfer per book or state message (U is one
  REPLACE op; the book engine splits it).
- Decoded messages (`DECODED`): one ITCH message as the decoder reads it, before line arbitration: its
  sequence and line, the book operation it makes (if any) and what it tells the status counters.
- BBO records: `wirebook.proto.bbo.RECORD` as a byte vector (see hdl.fields), 512 bits a transfer.
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data, enum, stream

from ..proto import bbo, itch

DATA_WIDTHS = (8, 32, 64)
MESSAGE_BYTES = itch.MAX_LENGTH  # the longest ITCH 5.0 message


def frame_layout(data_width: int) -> data.StructLayout:
    if data_width not in DATA_WIDTHS:
        raise ValueError(f"data width must be one of {DATA_WIDTHS}, got {data_width}")
    return data.StructLayout({"data": unsigned(data_width), "keep": unsigned(data_width // 8), "last": unsigned(1)})


def frame_signature(data_width: int) -> stream.Signature:
    return stream.Signature(frame_layout(data_width))


MESSAGE = data.StructLayout(
    {
        "data": unsigned(8 * MESSAGE_BYTES),  # byte k (k=0: the type letter) at bits 8k..; zero past length
        "length": range(MESSAGE_BYTES + 1),
        "sequence": unsigned(64),
        "line": unsigned(1),
    }
)


class BookOpKind(enum.Enum, shape=unsigned(3)):
    ADD = 0  # A, F: ref, side, shares, price
    EXECUTE = 1  # E, C: take `shares` from ref (C's execution price does not move the order)
    CANCEL = 2  # X: take `shares` from ref
    DELETE = 3  # D: take all of ref
    REPLACE = 4  # U: delete ref, add new_ref with shares and price on the same side and instrument
    TRADING_ACTION = 5  # H: `halted` is 1 when the trading state is not 'T'


BOOK_OP = data.StructLayout(
    {
        "kind": BookOpKind,
        "cause": unsigned(8),  # the message's type letter, copied into the record
        "locate": unsigned(16),
        "sequence": unsigned(64),
        "timestamp": unsigned(48),
        "ref": unsigned(64),
        "new_ref": unsigned(64),
        "side": unsigned(1),  # 0 buy (bid), 1 sell (ask)
        "shares": unsigned(32),
        "price": unsigned(32),
        "halted": unsigned(1),
    }
)
DECODED = data.StructLayout(
    {
        "sequence": unsigned(64),
        "line": unsigned(1),
        "book": unsigned(1),  # `op` is an operation for the book
        "op": BOOK_OP,
        "counted": unsigned(1),  # a known type with its right length: counted under `type_index`
        "type_index": range(len(itch.TYPES)),  # index in proto.itch.TYPES
        "unknown_type": unsigned(1),  # not an ITCH 5.0 type letter (not counted)
        "bad_length": unsigned(1),  # not the type's length (not counted)
        "bad_field": unsigned(1),  # an A or F whose buy/sell indicator is neither B nor S (counted, no op)
        "system_event": unsigned(1),  # an S message: `event_code`
        "event_code": unsigned(8),
        "directory": unsigned(1),  # an R message: `directory_locate`, `directory_stock`
        "directory_locate": unsigned(16),
        "directory_stock": unsigned(64),  # ALPHA(8), first character in the lowest byte
    }
)

RECORD_BITS = 8 * bbo.SIZE
