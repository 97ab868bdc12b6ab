"""ITCH 5.0 messages into book operations, generated from proto.itch's field tables.

`BOOK_OPS` says, per book message type, which ITCH field fills which BOOK_OP field; `STATUS` does the
same for the messages that only update status outputs (S, R). Offsets and widths come from
`wirebook.proto.itch.MESSAGES` through `hdl.fields.value`, so nothing here is written per byte.
"""

from dataclasses import dataclass, field

from amaranth.hdl import Const, Module, Mux, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...proto import itch
from ...proto.fields import Layout
from ..fields import value
from ..stream import BOOK_OP, DECODED, MESSAGE, BookOpKind

__all__ = ["BOOK_OPS", "STATUS", "BookMapping", "ItchDecoder", "Letter", "NotLetter"]


@dataclass(frozen=True)
class Letter:
    """A one-letter ALPHA field read as a number: `choices` maps each allowed letter to its value; any
    other letter is a bad field (the message is dropped)."""

    field: str
    choices: dict[str, int]

    def read(self, raw: Value, layout: Layout) -> tuple[Value, Value]:
        letter = value(raw, layout, self.field)
        result, ok = Const(0), Const(0)
        for text, number in self.choices.items():
            result = Mux(letter == ord(text), number, result)
            ok = ok | (letter == ord(text))
        return result, ok


@dataclass(frozen=True)
class NotLetter:
    """A one-letter ALPHA field read as 1 unless it is `letter` (never a bad field)."""

    field: str
    letter: str

    def read(self, raw: Value, layout: Layout) -> tuple[Value, Value]:
        return value(raw, layout, self.field) != ord(self.letter), Const(1)


@dataclass(frozen=True)
class BookMapping:
    """One book message type: the op kind, and per BOOK_OP field the ITCH field that fills it (a field name
    is copied as an integer; `Letter` / `NotLetter` convert a letter). BOOK_OP fields not named are zero,
    apart from the ones every op carries (kind, cause, locate, sequence, timestamp)."""

    kind: BookOpKind
    fields: dict[str, str | Letter | NotLetter] = field(default_factory=dict)


_SIDE = Letter("buy_sell_indicator", {"B": 0, "S": 1})
_ADD = BookMapping(
    BookOpKind.ADD, {"ref": "order_reference_number", "side": _SIDE, "shares": "shares", "price": "price"}
)
_EXECUTE = BookMapping(BookOpKind.EXECUTE, {"ref": "order_reference_number", "shares": "executed_shares"})

BOOK_OPS: dict[str, BookMapping] = {
    "A": _ADD,
    "F": _ADD,
    "E": _EXECUTE,
    "C": _EXECUTE,  # the execution price is not the order's: the order's level does not move
    "X": BookMapping(BookOpKind.CANCEL, {"ref": "order_reference_number", "shares": "cancelled_shares"}),
    "D": BookMapping(BookOpKind.DELETE, {"ref": "order_reference_number"}),
    "U": BookMapping(
        BookOpKind.REPLACE,
        {
            "ref": "original_order_reference_number",
            "new_ref": "new_order_reference_number",
            "shares": "shares",
            "price": "price",
        },
    ),
    "H": BookMapping(BookOpKind.TRADING_ACTION, {"halted": NotLetter("trading_state", "T")}),
}
"""Book message type -> how its fields become a BOOK_OP."""

STATUS: dict[str, tuple[str, dict[str, str]]] = {
    "S": ("system_event", {"event_code": "event_code"}),
    "R": ("directory", {"directory_locate": "stock_locate", "directory_stock": "stock"}),
}
"""Status message type -> (the DECODED flag it sets, {DECODED field: ITCH field})."""

# Every op carries these, read from the header every message shares.
_HEADER_FIELDS = {"cause": "message_type", "locate": "stock_locate", "timestamp": "timestamp"}


def _check_tables() -> None:
    """Refuse a table naming a field that its ITCH message or BOOK_OP does not have (at import, not in
    the middle of an elaboration)."""
    for letter, mapping in BOOK_OPS.items():
        layout = itch.MESSAGES[letter]
        for name, source in mapping.fields.items():
            source_name = source if isinstance(source, str) else source.field
            if name not in BOOK_OP.members or source_name not in layout.by_name:
                raise ValueError(
                    f"BOOK_OPS[{letter!r}]: {name} <- {source_name}: no such BOOK_OP or {layout.name} field"
                )
    for letter, (_, latches) in STATUS.items():
        missing = [source for source in latches.values() if source not in itch.MESSAGES[letter].by_name]
        if missing:
            raise ValueError(f"STATUS[{letter!r}]: {itch.MESSAGES[letter].name} has no field {missing}")


_check_tables()


class ItchDecoder(wiring.Component):
    """Decode one ITCH 5.0 message into a DECODED record: the book operation it makes and its status.

    Combinational: `decoded` follows `message` (MESSAGE: the type letter in byte 0, `length` the message's
    length) in the same cycle, so the feed handler decodes each line's message on its way into the line
    arbiter's head register instead of spending a stage on it (hdl.mold.arbiter).

    A message whose type and length are right is `counted` under `type_index` (its index in
    ``proto.itch.TYPES``). Then, by ``BOOK_OPS``, A F E C X D U H make one BOOK_OP (`book` set, `op` with
    kind, cause (the type letter), locate, sequence and timestamp, plus the mapped fields; others zero);
    S sets `system_event` with `event_code`; R sets `directory` with `directory_locate` and
    `directory_stock` (ALPHA, first character in the lowest byte, as ``hdl.fields.value`` returns it);
    every other type is only counted. `sequence` and `line` are the message's.

    Bad input makes no op and sets one of: `unknown_type` (the letter is not an ITCH 5.0 type; not
    counted), `bad_length` (`length` is not the type's table length; not counted), `bad_field` (an A or F
    whose buy/sell indicator is neither B nor S; counted, as its type and length are right).

    Latency 0 (no register); depth: a type-letter compare, a length compare and a field select.
    """

    message: In(MESSAGE)
    decoded: Out(DECODED)

    def elaborate(self, platform):
        m = Module()
        message = self.message
        raw = message.data
        out = self.decoded
        op = out.op

        m.d.comb += [out.sequence.eq(message.sequence), out.line.eq(message.line), op.sequence.eq(message.sequence)]
        m.d.comb += [
            getattr(op, name).eq(value(raw, itch.HEADER_LAYOUT, source)) for name, source in _HEADER_FIELDS.items()
        ]

        def emit(mapping: BookMapping, layout: Layout) -> None:
            reads = {
                name: (value(raw, layout, source), Const(1)) if isinstance(source, str) else source.read(raw, layout)
                for name, source in mapping.fields.items()
            }
            ok = Const(1)
            for _, valid in reads.values():
                ok = ok & valid
            m.d.comb += [
                op.kind.eq(mapping.kind),
                out.book.eq(ok),
                out.bad_field.eq(~ok),
                *(getattr(op, name).eq(result) for name, (result, _) in reads.items()),
            ]

        def report(flag: str, latches: dict[str, str], layout: Layout) -> None:
            m.d.comb += getattr(out, flag).eq(1)
            m.d.comb += [getattr(out, name).eq(value(raw, layout, source)) for name, source in latches.items()]

        with m.Switch(value(raw, itch.HEADER_LAYOUT, "message_type")):
            for index, (letter, layout) in enumerate(itch.MESSAGES.items()):
                with m.Case(ord(letter)):
                    with m.If(message.length != layout.length):
                        m.d.comb += out.bad_length.eq(1)
                    with m.Else():
                        m.d.comb += [out.counted.eq(1), out.type_index.eq(index)]
                        if letter in BOOK_OPS:
                            emit(BOOK_OPS[letter], layout)
                        elif letter in STATUS:
                            report(*STATUS[letter], layout)
            with m.Default():
                m.d.comb += out.unknown_type.eq(1)
        return m
