"""ItchDecoder: ITCH 5.0 messages into book operations, checked against the software codec.

Messages are built with proto.itch.encode (every type, random field values) or taken from a generated
market (sim.market); what the decoder should emit is worked out here from proto.itch.decode of the same
bytes and the book semantics of model/book.py, written out plainly rather than from the decoder's own
table. The decoder is combinational: each message is set on its input and the record read back at once.
"""

import random
from collections import Counter

from amaranth.back import verilog
from amaranth.sim import Simulator

from wirebook.hdl.itch.decoder import ItchDecoder
from wirebook.hdl.stream import BOOK_OP, BookOpKind
from wirebook.proto import itch
from wirebook.proto.fields import Kind
from wirebook.sim import market

OP_FIELDS = tuple(BOOK_OP.members)
STROBES = ("counted", "unknown_type", "bad_length", "bad_field", "system_event", "directory")


# --- messages --------------------------------------------------------------------------------------------


def random_message(letter: str, rng: random.Random, **given) -> bytes:
    """A valid message of type `letter` with random field values (`given` ones fixed)."""
    values = {}
    for f in itch.MESSAGES[letter].value_fields:
        if f.name == "message_type":
            continue
        if f.kind is Kind.ALPHA:
            values[f.name] = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(f.width))
        else:
            values[f.name] = rng.choice((0, 1, f.max_value, rng.randint(0, f.max_value)))
    values["buy_sell_indicator"] = rng.choice("BS")
    values["trading_state"] = rng.choice("THPQV")
    values = {k: v for k, v in values.items() if k in itch.MESSAGES[letter].by_name}
    return itch.encode(letter, **{**values, **given})


def alpha(text: str, width: int) -> int:
    """An ALPHA field as the gateware holds it: the wire bytes, first character in the lowest byte."""
    return int.from_bytes(text.ljust(width).encode("ascii"), "little")


# --- what the decoder should do, from the software codec --------------------------------------------------


def expect(message: bytes, sequence: int, length: int | None = None) -> tuple[dict | None, dict]:
    """(the BOOK_OP fields or None, the status strobes) for one message offered with `length`."""
    length = len(message) if length is None else length
    letter = chr(message[0])
    if letter not in itch.TYPES:
        return None, {"unknown_type": 1}
    if length != itch.MESSAGES[letter].length:
        return None, {"bad_length": 1}
    m = itch.decode(message)
    status = {"counted": 1, "type_index": itch.TYPES.index(letter)}
    op = {name: 0 for name in OP_FIELDS}
    op.update(cause=message[0], locate=m.stock_locate, sequence=sequence, timestamp=m.timestamp)
    if letter in "AF":
        if m.buy_sell_indicator not in ("B", "S"):
            return None, {**status, "bad_field": 1}
        op.update(kind=BookOpKind.ADD, ref=m.order_reference_number, side=int(m.buy_sell_indicator == "S"))
        op.update(shares=m.shares, price=m.price)
    elif letter in "EC":
        op.update(kind=BookOpKind.EXECUTE, ref=m.order_reference_number, shares=m.executed_shares)
    elif letter == "X":
        op.update(kind=BookOpKind.CANCEL, ref=m.order_reference_number, shares=m.cancelled_shares)
    elif letter == "D":
        op.update(kind=BookOpKind.DELETE, ref=m.order_reference_number)
    elif letter == "U":
        op.update(kind=BookOpKind.REPLACE, ref=m.original_order_reference_number)
        op.update(new_ref=m.new_order_reference_number, shares=m.shares, price=m.price)
    elif letter == "H":
        op.update(kind=BookOpKind.TRADING_ACTION, halted=int(m.trading_state != "T"))
    else:
        if letter == "S":
            status.update(system_event=1, event_code=alpha(m.event_code, 1))
        elif letter == "R":
            status.update(directory=1, directory_locate=m.stock_locate, directory_stock=alpha(m.stock, 8))
        return None, status
    return op, status


# --- the bench -------------------------------------------------------------------------------------------


def decode_all(messages: list[tuple[bytes, int]], first_sequence: int) -> list[tuple[dict | None, dict]]:
    """What the (combinational) decoder makes of each (bytes, length) message: (op fields or None, status)."""
    dut = ItchDecoder()
    out: list[tuple[dict | None, dict]] = []

    async def bench(ctx):
        for i, (raw, length) in enumerate(messages):
            sequence = first_sequence + i
            ctx.set(dut.message, {"data": int.from_bytes(raw, "little"), "length": length, "sequence": sequence,
                                  "line": i & 1})  # fmt: skip
            d = ctx.get(dut.decoded)
            assert (d.sequence, d.line) == (sequence, i & 1)
            status = {name: 1 for name in STROBES if getattr(d, name)}
            if d.counted:
                status["type_index"] = d.type_index
            if d.system_event:
                status["event_code"] = d.event_code
            if d.directory:
                status.update(directory_locate=d.directory_locate, directory_stock=d.directory_stock)
            op = {name: getattr(d.op, name) for name in OP_FIELDS} if d.book else None
            out.append((op, status))
            await ctx.delay(1e-9)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return out


def run(messages: list[tuple[bytes, int]], first_sequence: int = 1) -> list[tuple[dict | None, dict]]:
    """Decode `messages` and check every record against `expect`; the expected records."""
    expected = [expect(raw, first_sequence + i, length) for i, (raw, length) in enumerate(messages)]
    got = decode_all(messages, first_sequence)
    for i, ((got_op, got_status), (want_op, want_status)) in enumerate(zip(got, expected, strict=True)):
        assert got_status == want_status, f"message {i}: status {got_status}, want {want_status}"
        if want_op is None:
            assert got_op is None, f"message {i}: an op for a message that makes none"
        else:
            assert got_op is not None, f"message {i}: no op"
            assert got_op == want_op, f"message {i}: field {next(k for k in want_op if got_op[k] != want_op[k])}"
    return expected


# --- tests -----------------------------------------------------------------------------------------------


def test_every_message_type():
    rng = random.Random(5)
    messages = [random_message(letter, rng) for _ in range(4) for letter in itch.TYPES]
    messages += [random_message(letter, rng, trading_state="T") for letter in "HH"]
    messages += [random_message("S", rng, event_code=" "), random_message("R", rng, stock="AB")]
    expected = run([(raw, len(raw)) for raw in messages], first_sequence=(1 << 63) + 5)
    assert Counter(status["type_index"] for _, status in expected) == Counter(
        itch.TYPES.index(chr(raw[0])) for raw in messages
    )


def test_bad_input_is_dropped():
    rng = random.Random(9)
    messages: list[tuple[bytes, int]] = []
    for letter in itch.TYPES:
        good = random_message(letter, rng)
        messages.append((good[:-1], len(good) - 1))  # one byte short
        messages.append((good, len(good) + 1))  # one byte long (the extra byte is zero, as MESSAGE pads)
        messages.append((good, len(good)))
    known = {ord(letter) for letter in itch.TYPES}
    for type_byte in sorted(set(range(256)) - known)[::7]:
        good = random_message("A", rng)
        messages.append((bytes([type_byte]) + good[1:], len(good)))
    for letter in "AF":
        for side in ("X", " ", "b", "s"):
            raw = random_message(letter, rng, buy_sell_indicator=side)
            messages += [(raw, len(raw)), (random_message(letter, rng), len(raw))]
    rng.shuffle(messages)
    expected = run(messages)
    kinds = Counter(name for _, status in expected for name in status if name in STROBES)
    assert kinds["unknown_type"] > 30 and kinds["bad_length"] == 2 * len(itch.TYPES) and kinds["bad_field"] == 8


def test_generated_market():
    messages = list(market.generate(30, 2500, seed=3))
    assert {chr(raw[0]) for raw in messages} == set(itch.TYPES)
    expected = run([(raw, len(raw)) for raw in messages], first_sequence=1_000_000)
    assert sum(op is not None for op, _ in expected) == sum(chr(raw[0]) in "AFECXDUH" for raw in messages)


def test_converts_to_verilog():
    assert "module itch_decoder" in verilog.convert(ItchDecoder(), name="itch_decoder")
