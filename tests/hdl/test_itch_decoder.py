"""ItchDecoder: ITCH 5.0 messages into book operations, checked against the software codec.

Messages are built with proto.itch.encode (every type, random field values) or taken from a generated
market (sim.market); what the decoder should emit is worked out here from proto.itch.decode of the same
bytes and the book semantics of model/book.py, written out plainly rather than from the decoder's own
table. A monitor samples the status outputs every cycle; the 1-cycle latency, the one-message-a-cycle
throughput and the back-pressure rule are checked on the way.
"""

import random
from collections import Counter

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from wirebook.hdl.itch.decoder import ItchDecoder
from wirebook.hdl.stream import BOOK_OP, BookOpKind
from wirebook.proto import itch
from wirebook.proto.fields import Kind
from wirebook.sim import market
from wirebook.sim.testbench import Flow, stream_get, stream_put

FLOWS = {"full_rate": (0.0, 0.0), "idle_and_backpressure": (0.3, 0.3), "heavy_backpressure": (0.0, 0.7)}
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


class TB:
    """Drives an ItchDecoder with (bytes, length) messages and records ops, strobes and handshakes."""

    def __init__(self, messages: list[tuple[bytes, int]], first_sequence: int, idle: float, backpressure: float):
        self.dut = ItchDecoder()
        self.messages = messages
        self.first_sequence = first_sequence
        self.in_flow, self.out_flow = Flow(idle, 11), Flow(backpressure, 12)
        self.expected = [expect(raw, first_sequence + i, length) for i, (raw, length) in enumerate(messages)]
        self.ops: list = []
        self.taken_at: list[int] = []  # cycle of each message's transfer
        self.op_at: list[int] = []  # first cycle each op is valid
        self.status: list[tuple[int, dict]] = []  # (cycle, strobes and what they latched)
        self.errors: list[str] = []
        self.latched: dict[str, int] = {}
        self.cycle = 0  # the monitor's count of clock edges
        self.cycle_limit = 4 * len(messages) / (1 - max(idle, backpressure)) + 100

    def run(self) -> None:
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_testbench(self.drive)
        sim.add_testbench(self.consume)
        sim.add_testbench(self.monitor, background=True)
        while sim.advance():  # sim.run(), with a watchdog: a DUT that loses a transfer would hang it
            assert self.cycle < self.cycle_limit, f"stuck after {self.cycle} cycles"
        assert not self.errors, self.errors[:5]

    async def drive(self, ctx):
        for i, (raw, length) in enumerate(self.messages):
            payload = {"data": int.from_bytes(raw, "little"), "length": length, "sequence": self.first_sequence + i}
            await stream_put(ctx, self.dut.messages, {**payload, "line": i & 1}, self.in_flow)
        await ctx.tick().repeat(2)  # the last message's strobes
        self.latched = {
            name: ctx.get(getattr(self.dut, name)) for name in ("event_code", "directory_locate", "directory_stock")
        }

    async def consume(self, ctx):
        for _ in range(sum(op is not None for op, _ in self.expected)):
            self.ops.append(await stream_get(ctx, self.dut.ops, self.out_flow))

    async def monitor(self, ctx):
        dut = self.dut
        held = False  # the op on the output was valid and not taken last self.cycle
        async for _, _, *v in ctx.tick().sample(
            dut.messages.valid, dut.messages.ready, dut.ops.valid, dut.ops.ready,
            *(getattr(dut, name) for name in STROBES),
            dut.type_index, dut.event_code, dut.directory_locate, dut.directory_stock,
        ):  # fmt: skip
            in_valid, in_ready, op_valid, op_ready = v[:4]
            strobes = dict(zip(STROBES, v[4 : 4 + len(STROBES)]))
            type_index, event_code, directory_locate, directory_stock = v[4 + len(STROBES) :]
            if in_ready != (not op_valid or op_ready):
                self.errors.append(
                    f"cycle {self.cycle}: messages.ready {in_ready} with ops valid {op_valid} ready {op_ready}"
                )
            if in_valid and in_ready:
                self.taken_at.append(self.cycle)
            if op_valid and not held:
                self.op_at.append(self.cycle)
            held = bool(op_valid and not op_ready)
            if any(strobes.values()):
                seen = {name: 1 for name, on in strobes.items() if on}
                if strobes["counted"]:
                    seen["type_index"] = type_index
                if strobes["system_event"]:
                    seen["event_code"] = event_code
                if strobes["directory"]:
                    seen.update(directory_locate=directory_locate, directory_stock=directory_stock)
                self.status.append((self.cycle, seen))
            self.cycle += 1

    def check(self) -> None:
        got_ops = [{name: getattr(p, name) for name in OP_FIELDS} for p in self.ops]
        want_ops = [op for op, _ in self.expected if op is not None]
        assert len(got_ops) == len(want_ops)
        for i, (got, want) in enumerate(zip(got_ops, want_ops)):
            assert got == want, f"op {i}: field {next(k for k in want if got[k] != want[k])}"
        assert [seen for _, seen in self.status] == [status for _, status in self.expected]
        # Latency 1: a message's strobes, and its op, in the cycle after it was taken.
        assert [cycle for cycle, _ in self.status] == [t + 1 for t in self.taken_at]
        assert self.op_at == [t + 1 for t, (op, _) in zip(self.taken_at, self.expected) if op is not None]
        for name in ("event_code", "directory_locate", "directory_stock"):
            last = [status[name] for _, status in self.expected if name in status]
            if last:
                assert self.latched[name] == last[-1], f"{name} is not latched"


def run(messages: list[tuple[bytes, int]], flow: str, first_sequence: int = 1) -> TB:
    tb = TB(messages, first_sequence, *FLOWS[flow])
    tb.run()
    tb.check()
    if flow == "full_rate":  # one message a cycle
        assert tb.taken_at == list(range(tb.taken_at[0], tb.taken_at[0] + len(messages)))
    return tb


# --- tests -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flow", FLOWS)
def test_every_message_type(flow):
    rng = random.Random(5)
    messages = [random_message(letter, rng) for _ in range(4) for letter in itch.TYPES]
    messages += [random_message(letter, rng, trading_state="T") for letter in "HH"]
    messages += [random_message("S", rng, event_code=" "), random_message("R", rng, stock="AB")]
    tb = run([(raw, len(raw)) for raw in messages], flow, first_sequence=(1 << 63) + 5)
    assert Counter(status["type_index"] for _, status in tb.status) == Counter(
        itch.TYPES.index(chr(raw[0])) for raw in messages
    )


@pytest.mark.parametrize("flow", FLOWS)
def test_bad_input_is_dropped(flow):
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
    tb = run(messages, flow)
    kinds = Counter(name for _, status in tb.expected for name in status if name in STROBES)
    assert kinds["unknown_type"] > 30 and kinds["bad_length"] == 2 * len(itch.TYPES) and kinds["bad_field"] == 8


@pytest.mark.parametrize("flow", ["full_rate", "idle_and_backpressure"])
def test_generated_market(flow):
    messages = list(market.generate(30, 2500, seed=3))
    assert {chr(raw[0]) for raw in messages} == set(itch.TYPES)
    tb = run([(raw, len(raw)) for raw in messages], flow, first_sequence=1_000_000)
    assert len(tb.ops) == sum(chr(raw[0]) in "AFECXDUH" for raw in messages)


def test_converts_to_verilog():
    assert "module itch_decoder" in verilog.convert(ItchDecoder(), name="itch_decoder")
