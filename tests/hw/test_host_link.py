"""HostLink (hw/link): the card's host link in Amaranth's simulator, against the card's software model.

The DUT is HostLink with the real register bank (hdl/csr/bank.py) as its AXI4-Lite target (the record
tests need none; the end-to-end test puts a small FeedHandler behind it). Requests are built with
proto.card_link.encode_request inside frames built with proto.net; what comes out of `tx` is parsed
with proto.net.parse_udp_frame (so every IPv4 header checksum is checked) and card_link's decoders.

DatagramReceiver is also tested alone, against proto.net.parse_udp_frame (what the model's kernel takes):
every IHL, every truncation, padding, each check failing alone, broken keep rules, overrun, and its timing.

Expected answers come from sim/net_card.py's NetCardModel, answering the same request payloads over a
loopback UDP socket with `RegisterModel` as its core: proto.registers' bus behaviour written plainly in
software (the register values the test gave the bank's status and counter ports, config resets and
writes, SLVERR for unmapped words and writes to read-only ones, VerilatedCard's refusal of unaligned and
out-of-window addresses). Independently, the values the bank holds are read from its ports, and the
command pulses it makes are counted, against the model's. Record packets are compared with the records
pushed in. Data tests run at every data width, at full rate and with random idle cycles on `rx` and
`bbo` and back-pressure on `tx`.
"""

from __future__ import annotations

import random
import socket
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.hdl import Module, Value
from amaranth.sim import Simulator

from wirebook.driver.model_card import ModelCard
from wirebook.hdl.csr.bank import CsrBank
from wirebook.hdl.feed_handler import FeedHandler
from wirebook.hw.link.host_link import STROBES, HostLink, connect_feed_handler, connect_registers
from wirebook.hw.link.receiver import DatagramReceiver
from wirebook.proto import bbo, card_link, itch, moldudp64, net
from wirebook.proto.card_link import (
    CSR_ACCESS,
    CSR_HEADER,
    MAX_OPS,
    MAX_RECORDS,
    CsrAccess,
    CsrOp,
    CsrRequest,
    CsrResponse,
    CsrResult,
    CsrStatus,
)
from wirebook.proto.errors import WireError
from wirebook.proto.registers import COMMAND, CONFIG, COUNTER, COUNTER_RESET, REGISTERS, STATUS, WORD_BYTES
from wirebook.sim import feed
from wirebook.sim.net_card import NetCardModel
from wirebook.sim.testbench import Beat, Flow, beats, frame_bytes, stream_put
from wirebook.sim.verilated_card import configuration

WIDTHS = (8, 32, 64)
FLOWS = {"full_rate": 0.0, "idle_and_backpressure": 0.3}
CARD_MAC, CARD_IP = net.mac_address("02:57:42:00:00:01"), net.ipv4_address("10.42.0.2")
HOST_MAC, HOST_IP, HOST_PORT = net.mac_address("02:57:42:00:00:02"), net.ipv4_address("10.42.0.1"), 40001
RECORD_PORT = 40002
CONSTANTS = {"build_id": 0xC0FFEE42, "data_width": 64, "n_instruments": 64, "n_orders": 1024, "n_levels": 8}
COUNTS = {("frames_a", 0): 3, ("duplicates", 0): 6}  # what the bench presents to the bank's counters
FLUSH_CYCLES = 40  # well above any idle gap a Flow(0.3) draws between records
TIMEOUT = 20_000  # cycles a response or packet may take before the DUT is declared hung


def cells(access):
    """(register, element) of every element of an access kind."""
    for r in REGISTERS.of(access):
        for i in range(r.elements):
            yield r, i


def index_of(r, i):
    return i if r.is_array else None


class RegisterModel:
    """proto.registers on a bus, in software: the core NetCardModel drives in these tests.

    Reads and writes behave as docs/registers.md says and VerilatedCard reports them: ValueError for an
    address not a multiple of 4 or outside the AXI window (the model answers BAD_REQUEST), RuntimeError
    for the bank's SLVERR (unmapped words; writes to status, counter and constant registers). Values
    change only through writes (the bench holds the bank's status and counter ports still).
    """

    records_waiting = False

    def __init__(self, status: dict) -> None:
        self.values = {}
        for r in REGISTERS:
            for i in range(r.elements):
                if r.access is STATUS:
                    self.values[r.name, i] = CONSTANTS.get(r.name, r.reset) if r.constant else status[r.name, i]
                elif r.access is COUNTER:
                    self.values[r.name, i] = COUNTS.get((r.name, i), 0)
                else:
                    self.values[r.name, i] = r.reset
        self.pulses: Counter[str] = Counter()

    def _cell(self, address: int):
        if address % WORD_BYTES or not 0 <= address < 1 << REGISTERS.address_width:
            raise ValueError(f"address {address:#x} refused")
        try:
            return REGISTERS.at(address)
        except KeyError:
            raise RuntimeError(f"SLVERR at {address:#x}") from None

    def read32(self, address: int) -> int:
        r, i, k = self._cell(address)
        if r.access is COMMAND:
            return 0
        return (self.values[r.name, i] >> (32 * k)) & 0xFFFF_FFFF

    def write32(self, address: int, value: int, strb: int = 0xF) -> None:
        r, i, k = self._cell(address)
        if not r.access.writable:
            raise RuntimeError(f"SLVERR: {r.name} is read-only")
        strobed = sum(0xFF << (8 * lane) for lane in range(4) if strb >> lane & 1)
        if r.access is COMMAND:
            if value & strobed & r.max_value:
                self.pulses[r.name] += 1
                if r.name == COUNTER_RESET:
                    for c, j in cells(COUNTER):
                        self.values[c.name, j] = 0
            return
        mask = (strobed << (32 * k)) & r.max_value
        self.values[r.name, i] = (self.values[r.name, i] & ~mask) | ((value << (32 * k)) & mask)


class Model:
    """NetCardModel over a RegisterModel, asked through a loopback UDP socket."""

    def __init__(self, status: dict) -> None:
        self.core = RegisterModel(status)
        self.card = NetCardModel(self.core, ("127.0.0.1", 0))
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))
        self.client.settimeout(5)

    def answer(self, payload: bytes) -> bytes:
        self.client.sendto(payload, self.card.address)
        self.card.serve(1.0)
        return self.client.recv(4096)

    def close(self) -> None:
        self.client.close()
        self.card.close()


@pytest.fixture
def model():
    made = []

    def make(status: dict) -> Model:
        made.append(Model(status))
        return made[-1]

    yield make
    for m in made:
        m.close()


@dataclass
class Sent:
    """A frame taken off `tx`: the cycles of its first and last beats, its bytes, and what they parse to."""

    first: int
    last: int
    data: bytes
    parsed: net.UdpFrame | None


class TB:
    """HostLink and (optionally) the register bank behind it; frame, record and strobe helpers.

    `rx` and `bbo` are driven with random idle cycles and `tx` back-pressured per `flow` (`tx_hold` holds
    `tx.ready` low). A background sink takes every frame off `tx` and parses it (`responses`, `packets`;
    a frame that does not parse fails the test), a monitor counts cycles, the link's strobes and the
    bank's command pulses.
    """

    def __init__(self, data_width: int = 64, *, flow: float = 0.0, seed: int = 0, bank: bool = True, core=None):
        self.data_width = data_width
        self.link = HostLink(data_width)
        self.core = core
        self.bank = core.bank if core is not None else CsrBank(constants=CONSTANTS) if bank else None
        self.top = Module()
        self.top.submodules.link = self.link
        if core is not None:
            self.top.submodules.core = core
            connect_feed_handler(self.top, self.link, core)
        elif self.bank is not None:
            self.top.submodules.bank = self.bank
            connect_registers(self.top, self.link, self.bank)
        self.rx_flow, self.tx_flow, self.bbo_flow = Flow(flow, seed), Flow(flow, seed + 1), Flow(flow, seed + 2)
        self.tx_hold = False
        self.rng = random.Random(seed + 3)
        self.cycle = 0
        self.responses: list[Sent] = []
        self.packets: list[Sent] = []
        self.records_out = 0
        self.strobes: Counter[str] = Counter()
        self.pulses: Counter[str] = Counter()
        self.bbo_stalls = 0  # cycles a record was offered and not taken

    def run(self, *benches, flush_cycles: int = FLUSH_CYCLES) -> None:
        async def setup(ctx):
            ctx.set(self.link.local_mac, CARD_MAC)
            ctx.set(self.link.local_ip, CARD_IP)
            ctx.set(self.link.flush_cycles, flush_cycles)
            await ctx.tick()

        sim = Simulator(self.top)
        sim.add_clock(1e-8)
        sim.add_testbench(self._sink, background=True)
        sim.add_testbench(self._monitor, background=True)
        for bench in benches:

            async def run_bench(ctx, bench=bench):
                await setup(ctx)
                await bench(ctx)

            sim.add_testbench(run_bench)
        sim.run()

    async def _sink(self, ctx):
        tx = self.link.tx
        received, first, pause = [], 0, self.tx_flow.pause()
        # Cycle by cycle (no `until`, so that the process can be dropped anywhere when the bench ends).
        async for _, _, valid, ready, payload in ctx.tick().sample(tx.valid, tx.ready, tx.payload):
            if valid and ready:
                if not received:
                    first = self.cycle
                received.append({"data": payload.data, "keep": payload.keep})
                if payload.last:
                    self._sent(Sent(first, self.cycle, frame_bytes(received, self.data_width), None))
                    received = []
                pause = self.tx_flow.pause()
            if pause and not self.tx_hold:
                pause -= 1
            ctx.set(tx.ready, not (pause or self.tx_hold))

    def _sent(self, sent: Sent) -> None:
        sent.parsed = net.parse_udp_frame(sent.data)  # checks the IPv4 header checksum and the lengths
        if sent.parsed.udp.source_port == card_link.CSR_PORT:
            self.responses.append(sent)
        else:
            assert sent.parsed.udp.source_port == card_link.RECORD_PORT, "a response or a record packet"
            self.packets.append(sent)
            self.records_out += len(card_link.decode_records(sent.parsed.payload)[1])

    async def _monitor(self, ctx):
        link = self.link
        commands = [r.name for r in REGISTERS.of(COMMAND)] if self.bank is not None else []
        ports = [getattr(link, name) for name in STROBES] + [self.bank.command[name] for name in commands]
        async for _, _, stalled, *values in ctx.tick().sample(link.bbo.valid & ~link.bbo.ready, *ports):
            self.cycle += 1
            self.bbo_stalls += stalled
            for name, v in zip(STROBES, values):
                self.strobes[name] += v
            for name, v in zip(commands, values[len(STROBES) :]):
                self.pulses[name] += bool(v)

    async def send(self, ctx, frame: bytes) -> None:
        for beat in beats(frame, self.data_width):
            await stream_put(ctx, self.link.rx, beat.as_payload(), self.rx_flow)

    async def wait_for(self, ctx, condition, what: str, timeout: int = TIMEOUT) -> None:
        for _ in range(timeout):
            if condition():
                return
            await ctx.tick()
        raise AssertionError(f"{what}: nothing after {timeout} cycles")

    async def exchange(self, ctx, payload: bytes, *, source=(HOST_MAC, HOST_IP, HOST_PORT), **changes) -> bytes:
        """Send a request payload from `source` (`changes`: UdpFlow's options); the response's payload (its
        frame's headers checked)."""
        before = len(self.responses)
        await self.send(ctx, request_frame(payload, source, **changes))
        await self.wait_for(ctx, lambda: len(self.responses) > before, "response")
        assert len(self.responses) == before + 1, "one response per request"
        return response_payload(self.responses[-1], source)

    async def present_state(self, ctx, status: dict) -> None:
        """The core's side of the bank: status values, and the counts of COUNTS as increments."""
        for (name, i), v in status.items():
            ctx.set(Value.cast(self.bank.port(name, index_of(REGISTERS[name], i))), v)
        for (name, i), total in COUNTS.items():
            port = self.bank.port(name, index_of(REGISTERS[name], i))
            step = (1 << len(port)) - 1
            while total:
                ctx.set(port, min(step, total))
                total -= min(step, total)
                await ctx.tick()
            ctx.set(port, 0)
        await ctx.tick().repeat(4)

    def config(self, ctx) -> dict:
        """Every config register's value as the bank drives it."""
        return {(r.name, i): ctx.get(Value.cast(self.bank.port(r.name, index_of(r, i)))) for r, i in cells(CONFIG)}


def encode(sequence: int, accesses) -> bytes:
    return card_link.encode_request(CsrRequest(sequence, tuple(accesses)))


def request_frame(payload: bytes, source=(HOST_MAC, HOST_IP, HOST_PORT), **changes) -> bytes:
    mac, ip, port = source
    return net.build_udp_frame(mac, CARD_MAC, ip, CARD_IP, port, card_link.CSR_PORT, payload, **changes)


def response_payload(sent: Sent, destination=(HOST_MAC, HOST_IP, HOST_PORT)) -> bytes:
    parsed = sent.parsed
    mac, ip, port = destination
    assert (parsed.eth.destination, parsed.eth.source) == (mac, CARD_MAC)
    assert (parsed.ip.destination, parsed.ip.source) == (ip, CARD_IP)
    assert (parsed.udp.destination_port, parsed.udp.source_port) == (port, card_link.CSR_PORT)
    return parsed.payload


def random_status(rng: random.Random) -> dict:
    return {(r.name, i): rng.getrandbits(r.width) for r, i in cells(STATUS) if not r.constant}


def random_access(rng: random.Random) -> CsrAccess:
    """A register access of any kind the card meets: mapped or not, writable or not, refused addresses."""
    address, *_ = rng.choice(list(REGISTERS.cells()))
    kind = rng.random()
    if kind < 0.08:
        address = rng.randrange(REGISTERS.size, 1 << REGISTERS.address_width, WORD_BYTES)  # unmapped: SLVERR
    elif kind < 0.12:
        address += rng.randrange(1, WORD_BYTES)  # unaligned: refused
    elif kind < 0.16:
        address += 1 << REGISTERS.address_width  # outside the window: refused
    r, _, _ = REGISTERS.at(address - address % WORD_BYTES) if address < REGISTERS.size else (None, 0, 0)
    if rng.random() < 0.45:
        return CsrAccess(CsrOp.READ, address)
    if rng.random() < 0.05:
        return CsrAccess(CsrOp.SUBSCRIBE, 0, rng.randrange(1, 1 << 16))
    if r is not None and r.access is COMMAND and r.name == COUNTER_RESET and rng.random() < 0.5:
        address = REGISTERS.address("local_ip")  # keep the counts mostly
    return CsrAccess(CsrOp.WRITE, address, rng.getrandbits(32), rng.randrange(16))


# --- CSR requests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("flow", FLOWS.values(), ids=FLOWS.keys())
@pytest.mark.parametrize("data_width", WIDTHS)
def test_requests_are_answered_as_the_model_answers_them(data_width, flow, model):
    """Random batches of accesses of every kind, some requests repeated: the response payloads are the
    model's byte for byte; the bank ends with the model's register values and made its command pulses."""
    tb = TB(data_width, flow=flow, seed=data_width)
    status = random_status(tb.rng)
    reference = model(status)

    async def bench(ctx):
        await tb.present_state(ctx, status)
        sequence = tb.rng.getrandbits(32)
        payload = b""
        for n in range(9):
            if n and tb.rng.random() < 0.2:  # a retry: the same sequence (and, here, other accesses)
                accesses = tuple(random_access(tb.rng) for _ in range(tb.rng.randrange(1, 4)))
            else:
                sequence = (sequence + 1) & 0xFFFF_FFFF
                accesses = tuple(random_access(tb.rng) for _ in range(tb.rng.randrange(1, 7)))
            payload = card_link.encode_request(CsrRequest(sequence, accesses))
            options = bytes(4 * tb.rng.randrange(3))  # the payload at every lane of a beat
            assert await tb.exchange(ctx, payload, ip_options=options) == reference.answer(payload), f"request {n}"
        assert await tb.exchange(ctx, payload) == reference.answer(payload), "a plain retry"
        assert tb.config(ctx) == {key: reference.core.values[key] for key in tb.config(ctx)}
        await ctx.tick().repeat(5)
        assert tb.pulses == +reference.core.pulses
        assert tb.strobes["requests"] + tb.strobes["repeats"] == 10

    tb.run(bench)


def test_write_then_read_back_and_bus_errors():
    """A batch writing config words (with strobes), then one reading them back; SLVERR (a write to a
    read-only register, a read of an unmapped word) is BUS_ERROR and the accesses after it still apply;
    refused addresses are BAD_REQUEST without a bus transaction."""
    tb = TB(32, seed=5)
    ip, mac = REGISTERS["local_ip"], REGISTERS["local_mac"]
    unmapped = REGISTERS.size + WORD_BYTES

    async def bench(ctx):
        writes = (
            CsrAccess(CsrOp.WRITE, ip.address(), 0x0A2A_0002),
            CsrAccess(CsrOp.WRITE, mac.address(), 0x1122_3344),
            CsrAccess(CsrOp.WRITE, mac.address() + WORD_BYTES, 0xAABB_CCDD, 0b0001),
            CsrAccess(CsrOp.WRITE, REGISTERS.address("magic"), 1),  # read-only: SLVERR
            CsrAccess(CsrOp.WRITE, ip.address(), 0xFF00_0000, 0b1000),  # still applied after the error
        )
        answer = card_link.decode_response(await tb.exchange(ctx, encode(1, writes)))
        assert [r.status for r in answer.results] == [CsrStatus.OK] * 3 + [CsrStatus.BUS_ERROR, CsrStatus.OK]
        reads = (
            CsrAccess(CsrOp.READ, ip.address()),
            CsrAccess(CsrOp.READ, mac.address()),
            CsrAccess(CsrOp.READ, mac.address() + WORD_BYTES),
            CsrAccess(CsrOp.READ, unmapped),
            CsrAccess(CsrOp.READ, REGISTERS.address("magic")),
            CsrAccess(CsrOp.READ, ip.address() + 2),  # unaligned: refused
            CsrAccess(CsrOp.WRITE, 1 << REGISTERS.address_width, 5),  # outside the window: refused
        )
        answer = card_link.decode_response(await tb.exchange(ctx, encode(2, reads)))
        expected_ip = 0xFF2A_0002
        assert answer == CsrResponse(
            2,
            (
                CsrResult(CsrStatus.OK, expected_ip),
                CsrResult(CsrStatus.OK, 0x1122_3344),
                CsrResult(CsrStatus.OK, 0xDD),
                CsrResult(CsrStatus.BUS_ERROR),
                CsrResult(CsrStatus.OK, REGISTERS["magic"].reset),
                CsrResult(CsrStatus.BAD_REQUEST),
                CsrResult(CsrStatus.BAD_REQUEST),
            ),
        )
        assert ctx.get(tb.bank.config.local_ip) == expected_ip  # the bank itself holds it
        assert ctx.get(tb.bank.config.local_mac) == 0xDD_1122_3344

    tb.run(bench)


def test_repeat_is_answered_again_and_applied_once():
    """A retry (the last sequence again) gets the first answer byte for byte, sent to where the retry
    came from, and applies nothing: the command pulses once, a later write is not undone."""
    tb = TB(64, seed=6)
    ip = REGISTERS.address("local_ip")
    first = encode(77, (CsrAccess(CsrOp.WRITE, REGISTERS.address("book_clear"), 1),
                        CsrAccess(CsrOp.WRITE, ip, 0x0A00_0001), CsrAccess(CsrOp.READ, ip)))  # fmt: skip
    other_port = (HOST_MAC, HOST_IP, HOST_PORT + 5)

    async def bench(ctx):
        answer = await tb.exchange(ctx, first)
        assert card_link.decode_response(answer).results[2] == CsrResult(CsrStatus.OK, 0x0A00_0001)
        assert await tb.exchange(ctx, first) == answer
        assert await tb.exchange(ctx, first, source=other_port) == answer
        await tb.exchange(ctx, encode(78, (CsrAccess(CsrOp.WRITE, ip, 0x0A00_0002),)))
        assert ctx.get(tb.bank.config.local_ip) == 0x0A00_0002
        await ctx.tick().repeat(5)
        assert tb.pulses["book_clear"] == 1
        assert (tb.strobes["requests"], tb.strobes["repeats"]) == (2, 2)

    tb.run(bench)


def malformed_requests(rng: random.Random) -> list[bytes]:
    """Request payloads that card_link.decode_request refuses, each built from the field tables."""
    write = CsrAccess(CsrOp.WRITE, REGISTERS.address("local_ip"), 0x0102_0304)
    good = encode(0x5150_0000, (write, CsrAccess(CsrOp.READ, 0)))
    header = CSR_HEADER.unpack(good)._asdict()

    def with_header(**fields) -> bytes:
        return CSR_HEADER.pack({**header, **fields}) + good[CSR_HEADER.length :]

    def with_access(k: int, **fields) -> bytes:
        at = CSR_HEADER.length + k * CSR_ACCESS.length
        access = CSR_ACCESS.unpack(good, at)._asdict()
        return good[:at] + CSR_ACCESS.pack({**access, **fields}) + good[at + CSR_ACCESS.length :]

    many = encode(9, [write] * MAX_OPS)
    too_many = (
        CSR_HEADER.pack({**header, "count": MAX_OPS + 1}) + many[CSR_HEADER.length :] + many[-CSR_ACCESS.length :]
    )
    return [
        b"",
        good[:5],
        good[:8],
        good[: CSR_HEADER.length - 1],
        good[: CSR_HEADER.length],
        with_header(magic=card_link.MAGIC ^ 0x0100),
        with_header(version=card_link.VERSION + 1),
        with_header(kind=card_link.Kind.CSR_RESPONSE),
        with_header(count=0)[: CSR_HEADER.length],
        with_header(count=3),
        good + b"\0",
        good[:-1],
        too_many,
        with_access(1, op=0),
        with_access(1, op=max(CsrOp) + 1),
        with_access(1, strobe=0x10),
        bytes(rng.getrandbits(8) for _ in range(40)),
    ]


@pytest.mark.parametrize("data_width", (8, 64))
def test_malformed_requests_answer_bad_request_and_change_nothing(data_width, model):
    """Each malformed request gets the model's BAD_REQUEST answer, applies nothing (its write to local_ip
    never lands) and leaves the remembered answer: a malformed request with the last sequence is not a
    repeat, and the retry after it still gets the first answer."""
    tb = TB(data_width, seed=7)
    status = random_status(tb.rng)
    reference = model(status)
    good = encode(0x5150_0000, (CsrAccess(CsrOp.READ, REGISTERS.address("version")),))

    async def bench(ctx):
        await tb.present_state(ctx, status)
        remembered = await tb.exchange(ctx, good)
        assert remembered == reference.answer(good)
        for n, payload in enumerate(malformed_requests(tb.rng)):
            answer = await tb.exchange(ctx, payload)
            assert answer == reference.answer(payload), f"malformed request {n}"
            assert card_link.decode_response(answer).results == (CsrResult(CsrStatus.BAD_REQUEST),)
        assert await tb.exchange(ctx, good) == remembered
        assert ctx.get(tb.bank.config.local_ip) == REGISTERS["local_ip"].reset
        assert tb.strobes["bad_requests"] == len(malformed_requests(random.Random(0)))

    tb.run(bench)


def test_a_short_request_padded_by_the_mac_is_answered_with_sequence_zero(model):
    """A payload shorter than 8 bytes has no sequence (the answer carries 0); the Ethernet padding after
    the IPv4 packet is not read as payload."""
    tb = TB(32, seed=8)
    payload = encode(0x1234_5678, (CsrAccess(CsrOp.READ, 0),))[:6]
    frame = request_frame(payload)
    padded = frame + bytes(60 - len(frame))

    async def bench(ctx):
        await tb.send(ctx, padded)
        await tb.wait_for(ctx, lambda: tb.responses, "response")
        answer = response_payload(tb.responses[0])
        assert answer == model(random_status(tb.rng)).answer(payload)
        assert card_link.decode_response(answer) == CsrResponse(0, (CsrResult(CsrStatus.BAD_REQUEST),))

    tb.run(bench)


def test_subscribe_port_must_fit_16_bits():
    """SUBSCRIBE to a port above 0xFFFF is refused (BAD_REQUEST) and changes nothing; NetCardModel would
    take it and fail when sending (a divergence kept on purpose: see CsrServer)."""
    tb = TB(64, seed=9, bank=False)

    async def bench(ctx):
        answer = card_link.decode_response(await tb.exchange(ctx, encode(1, (CsrAccess(CsrOp.SUBSCRIBE, 0, 1 << 16),))))
        assert answer.results == (CsrResult(CsrStatus.BAD_REQUEST),)
        assert ctx.get(tb.link.subscriber.valid) == 0
        await tb.exchange(ctx, encode(2, (CsrAccess(CsrOp.SUBSCRIBE, 0, RECORD_PORT),)))
        subscriber = tb.link.subscriber
        assert ctx.get(subscriber.valid) == 1
        destination = tuple(ctx.get(getattr(subscriber.destination, name)) for name in ("mac", "ip", "port"))
        assert destination == (HOST_MAC, HOST_IP, RECORD_PORT)

    tb.run(bench)


def frames_not_for_the_card() -> dict[str, bytes]:
    """Frames carrying a good request that the card must not answer, by what is wrong with them."""
    payload = encode(3, (CsrAccess(CsrOp.WRITE, REGISTERS.address("book_clear"), 1),))
    good = request_frame(payload)
    l3 = net.ETHERNET.length

    def ip_changed(**fields) -> bytes:
        ip = net.IPV4.unpack(good, l3)._asdict()
        header = bytearray(net.IPV4.pack({**ip, **fields}))
        at = net.IPV4.by_name["header_checksum"].offset
        header[at : at + 2] = net.ipv4_header_checksum(header).to_bytes(2, "big")
        return good[:l3] + bytes(header) + good[l3 + net.IPV4.length :]

    bad_checksum = bytearray(good)
    bad_checksum[l3 + net.IPV4.by_name["header_checksum"].offset] ^= 0x40
    bad_udp_checksum = bytearray(good)
    bad_udp_checksum[-1] ^= 0x01  # the payload changed under its checksum

    def to(mac=CARD_MAC, ip=CARD_IP, port=card_link.CSR_PORT) -> bytes:
        return net.build_udp_frame(HOST_MAC, mac, HOST_IP, ip, HOST_PORT, port, payload)

    return {
        "another MAC": to(mac=CARD_MAC + 1),
        "broadcast": to(mac=(1 << 48) - 1),
        "another IP": to(ip=CARD_IP + 1),
        "another port": to(port=card_link.CSR_PORT + 1),
        "IPv4 checksum": bytes(bad_checksum),
        "UDP checksum": bytes(bad_udp_checksum),
        "not UDP": ip_changed(protocol=6),
        "fragment": ip_changed(flags_fragment_offset=net.IPV4_FLAG_MORE_FRAGMENTS.put(1)),
        "VLAN tagged": request_frame(payload, vlan=5),
        "truncated": good[:-3],
        "not IPv4": good[: l3 - 2] + (0x0806).to_bytes(2, "big") + good[l3:],
    }


@pytest.mark.parametrize("data_width", (8, 64))
def test_frames_not_for_the_card_are_ignored(data_width):
    """Only well-formed IPv4 / UDP frames to the card's MAC, address and CSR port are answered: these are
    dropped without an answer; requests with UDP checksum 0, or behind IPv4 options, are answered."""
    tb = TB(data_width, flow=0.3, seed=10)
    others = frames_not_for_the_card()

    async def bench(ctx):
        for frame in others.values():
            await tb.send(ctx, frame)
            await ctx.tick().repeat(3)  # the receive buffer is never held by these
        await ctx.tick().repeat(200)
        assert tb.responses == [], "no answer to a frame not for the card"
        assert tb.strobes["frames_ignored"] == len(others)
        for n, changes in enumerate(({}, {"compute_udp_checksum": False}, {"ip_options": bytes(4)})):
            payload = encode(4 + n, (CsrAccess(CsrOp.READ, 0),))
            await tb.send(ctx, request_frame(payload, (HOST_MAC, HOST_IP + n, 1234 + n), **changes))
            await tb.wait_for(ctx, lambda n=n: len(tb.responses) > n, "response")
            response_payload(tb.responses[-1], (HOST_MAC, HOST_IP + n, 1234 + n))
        assert tb.pulses["book_clear"] == 0 and tb.strobes["frames_ignored"] == len(others)

    tb.run(bench)


def test_request_arriving_while_one_is_worked_on_is_dropped():
    """One request at a time: a frame for the card arriving while the buffer still holds a request is
    dropped (`frames_overrun`), never half-read; the host's retry is answered."""
    tb = TB(64, seed=11)
    first = encode(1, [CsrAccess(CsrOp.READ, 0)] * 4)
    second = encode(2, (CsrAccess(CsrOp.WRITE, REGISTERS.address("book_clear"), 1),))

    async def bench(ctx):
        await tb.send(ctx, request_frame(first))
        await tb.send(ctx, request_frame(second))
        await tb.wait_for(ctx, lambda: tb.responses, "response")
        await ctx.tick().repeat(200)
        assert len(tb.responses) == 1 and card_link.decode_response(response_payload(tb.responses[0])).sequence == 1
        assert (tb.strobes["frames_overrun"], tb.pulses["book_clear"]) == (1, 0)
        assert card_link.decode_response(await tb.exchange(ctx, second)).sequence == 2
        assert tb.pulses["book_clear"] == 1

    tb.run(bench)


# --- record packets ---------------------------------------------------------------------------------------


def random_records(rng: random.Random, n: int) -> np.ndarray:
    return np.frombuffer(rng.randbytes(n * bbo.SIZE), dtype=bbo.DTYPE)


def record_packets(
    tb: TB, destination=(HOST_MAC, HOST_IP, RECORD_PORT), start: int = 0
) -> list[tuple[int, np.ndarray]]:
    """(sequence, records) of the record packets sent so far from the `start`-th on, addresses checked."""
    out = []
    for sent in tb.packets[start:]:
        parsed = sent.parsed
        mac, ip, port = destination
        assert (parsed.eth.destination, parsed.eth.source) == (mac, CARD_MAC)
        assert (parsed.ip.destination, parsed.ip.source, parsed.udp.destination_port) == (ip, CARD_IP, port)
        out.append(card_link.decode_records(parsed.payload))
    return out


async def push_records(ctx, tb: TB, records: np.ndarray) -> None:
    for record in records:
        await stream_put(ctx, tb.link.bbo, int.from_bytes(record.tobytes(), "little"), tb.bbo_flow)


async def subscribe(ctx, tb: TB, sequence: int, port: int = RECORD_PORT, source=(HOST_MAC, HOST_IP, HOST_PORT)):
    answer = await tb.exchange(ctx, encode(sequence, (CsrAccess(CsrOp.SUBSCRIBE, 0, port),)), source=source)
    assert card_link.decode_response(answer).results == (CsrResult(CsrStatus.OK),)


def check_stream(packets: list[tuple[int, np.ndarray]], records: np.ndarray) -> None:
    """The packets carry exactly `records`, in order, numbered 1, 2, ..., all full but the last."""
    assert [sequence for sequence, _ in packets] == list(range(1, len(packets) + 1))
    assert b"".join(r.tobytes() for _, r in packets) == records.tobytes()
    assert [len(r) for _, r in packets[:-1]] == [MAX_RECORDS] * (len(packets) - 1)


@pytest.mark.parametrize("flow", FLOWS.values(), ids=FLOWS.keys())
@pytest.mark.parametrize("data_width", WIDTHS)
def test_records_go_to_the_subscriber_in_packets_numbered_from_1(data_width, flow):
    """After SUBSCRIBE the records pushed come out in record packets that decode to exactly those records,
    in order: full packets, the rest flushed by the idle timer, sequences 1, 2, ...; a CSR request
    answered meanwhile shares the port (whole frames only); a new SUBSCRIBE restarts the sequence at 1
    and moves the packets to the new subscriber."""
    tb = TB(data_width, flow=flow, seed=20 + data_width, bank=False)
    records = random_records(tb.rng, MAX_RECORDS + 5 if data_width == 8 else 2 * MAX_RECORDS + 5)
    later = random_records(tb.rng, 3)
    moved = (HOST_MAC + 1, HOST_IP + 1, HOST_PORT)

    async def bench(ctx):
        await subscribe(ctx, tb, 1)
        await push_records(ctx, tb, records[:MAX_RECORDS])  # a full packet: it goes out at once
        answer = await tb.exchange(ctx, encode(2, (CsrAccess(CsrOp.READ, 2),)))  # refused: no bus access
        assert card_link.decode_response(answer) == CsrResponse(2, (CsrResult(CsrStatus.BAD_REQUEST),))
        await push_records(ctx, tb, records[MAX_RECORDS:])
        await tb.wait_for(ctx, lambda: tb.records_out == len(records), "records")
        packets = record_packets(tb)
        check_stream(packets, records)

        await subscribe(ctx, tb, 3, RECORD_PORT + 1, source=moved)
        await push_records(ctx, tb, later)
        await tb.wait_for(ctx, lambda: tb.records_out == len(records) + len(later), "records after SUBSCRIBE")
        check_stream(record_packets(tb, (moved[0], moved[1], RECORD_PORT + 1), len(packets)), later)
        assert tb.strobes["packets_sent"] == len(packets) + 1 and tb.strobes["records_dropped"] == 0

    tb.run(bench)


@pytest.mark.parametrize("flow", FLOWS.values(), ids=FLOWS.keys())
def test_every_packet_after_a_subscribe_response_is_numbered_from_1(flow):
    """SUBSCRIBE again (the same destination) at random moments while packets go out: in the order of the
    wire, the packets after each response are numbered 1, 2, ... and none before it is; no record is lost
    or repeated."""
    tb = TB(64, flow=flow, seed=40, bank=False)
    records = random_records(tb.rng, 4 * MAX_RECORDS)
    subscribes = 5

    async def subscriber(ctx):
        for n in range(subscribes):
            await subscribe(ctx, tb, 1 + n)
            await ctx.tick().repeat(tb.rng.randrange(20, 200))

    async def pusher(ctx):
        await tb.wait_for(ctx, lambda: tb.responses, "the first SUBSCRIBE")
        await push_records(ctx, tb, records)
        await tb.wait_for(ctx, lambda: tb.records_out == len(records), "records")
        await tb.wait_for(ctx, lambda: len(tb.responses) == subscribes, "every SUBSCRIBE answered")
        wire = sorted([(sent.first, sent) for sent in tb.responses + tb.packets], key=lambda item: item[0])
        expected, carried = 0, []
        for _, sent in wire:
            if sent.parsed.udp.source_port == card_link.CSR_PORT:
                expected = 1
                continue
            sequence, batch = card_link.decode_records(sent.parsed.payload)
            assert sequence == expected, "numbered from 1 after each response"
            expected += 1
            carried.append(batch.tobytes())
        assert b"".join(carried) == records.tobytes()

    tb.run(subscriber, pusher)


def test_records_are_dropped_while_nobody_subscribed():
    tb = TB(32, flow=0.3, seed=30, bank=False)

    async def bench(ctx):
        await push_records(ctx, tb, random_records(tb.rng, 10))
        await ctx.tick().repeat(3 * FLUSH_CYCLES)
        assert tb.packets == [] and tb.bbo_stalls == 0
        assert tb.strobes["records_dropped"] == 10

    tb.run(bench)


@pytest.mark.parametrize("data_width", (8, 64))
def test_a_lone_record_is_flushed_after_the_idle_cycles(data_width):
    """A packet that is not full goes out once `flush_cycles` idle cycles have passed since its last record
    went in: its first beat 512 / data_width + flush_cycles + 6 cycles after the record's handshake."""
    tb = TB(data_width, seed=31, bank=False)
    flush = 25

    async def bench(ctx):
        await subscribe(ctx, tb, 1)
        for n, record in enumerate(random_records(tb.rng, 2)):
            await ctx.tick().repeat(tb.rng.randrange(1, 50))
            await push_records(ctx, tb, record[None])
            taken = tb.cycle  # counted as the cycle after the handshake
            await tb.wait_for(ctx, lambda n=n: tb.records_out == n + 1, "flush")
            # (the monitor and the bench read the cycle count in either order: one cycle of slack)
            assert abs(tb.packets[-1].first - taken + 1 - (512 // data_width + flush + 6)) <= 1

    tb.run(bench, flush_cycles=flush)


def test_a_busy_port_holds_the_core_back_and_loses_nothing():
    """While the port cannot send, both banks fill and `bbo.ready` drops (the core waits); once the port
    frees, every record goes out, in order."""
    tb = TB(64, seed=32, bank=False)
    records = random_records(tb.rng, 3 * MAX_RECORDS + 2)

    async def pusher(ctx):
        await subscribe(ctx, tb, 1)
        tb.tx_hold = True
        await push_records(ctx, tb, records)
        await tb.wait_for(ctx, lambda: tb.records_out == len(records), "records")
        check_stream(record_packets(tb), records)

    async def release(ctx):
        await tb.wait_for(ctx, lambda: tb.bbo_stalls > 100, "back-pressure on bbo")
        assert tb.packets == []
        tb.tx_hold = False

    tb.run(pusher, release)


# --- the receiver alone ------------------------------------------------------------------------------------


def datagram_kept(frame: bytes) -> dict | None:
    """What DatagramReceiver keeps of a frame with good keep rules, by proto.net's parser (what the model's
    kernel takes) and the card's addresses: the datagram's fields, or None (dropped)."""
    try:
        parsed = net.parse_udp_frame(frame)
    except WireError:
        return None
    if "tpid" in parsed.eth._fields or parsed.eth.destination != CARD_MAC:
        return None
    if (parsed.ip.destination, parsed.udp.destination_port) != (CARD_IP, card_link.CSR_PORT):
        return None
    header_length = 4 * net.IPV4_IHL.get(parsed.ip.version_ihl)
    return {
        "payload_start": net.ETHERNET.length + header_length + net.UDP.length,
        "payload_length": len(parsed.payload),
        "source_mac": parsed.eth.source,
        "source_ip": parsed.ip.source,
        "source_port": parsed.udp.source_port,
    }


def to_the_card(rng: random.Random, ihl: int = 5, payload_length: int = 5, **changes) -> bytes:
    """A datagram to the card's CSR port from a random (unicast) source, behind `ihl` - 5 words of random
    options."""
    return net.build_udp_frame(
        rng.getrandbits(48) & ~(1 << 40), CARD_MAC, rng.getrandbits(32), CARD_IP, rng.getrandbits(16),
        card_link.CSR_PORT, rng.randbytes(payload_length), ip_options=rng.randbytes(4 * (ihl - 5)), **changes,
    )  # fmt: skip


def with_fields(frame: bytes, ip=(), udp=()) -> bytes:
    """`frame` with IPv4 / UDP header fields changed (the UDP header where the new IHL puts it), the IPv4
    header checksum (over the new IHL's bytes) and the UDP checksum (unless given, when the new total
    length leaves a UDP header inside the frame) made right again."""
    out = bytearray(frame)
    l3 = net.ETHERNET.length
    out[l3 : l3 + net.IPV4.length] = net.IPV4.pack({**net.IPV4.unpack(out, l3)._asdict(), **dict(ip)})
    header = net.IPV4.unpack(out, l3)
    header_length = max(4 * net.IPV4_IHL.get(header.version_ihl), net.IPV4.length)
    udp_at, end = l3 + header_length, l3 + header.total_length
    if udp:
        out[udp_at : udp_at + net.UDP.length] = net.UDP.pack({**net.UDP.unpack(out, udp_at)._asdict(), **dict(udp)})
    at = l3 + net.IPV4.by_name["header_checksum"].offset
    out[at : at + 2] = net.ipv4_header_checksum(out[l3 : l3 + header_length]).to_bytes(2, "big")
    if udp_at + net.UDP.length <= end <= len(out) and "checksum" not in dict(udp):
        at = udp_at + net.UDP.by_name["checksum"].offset
        checksum = net.udp_checksum(header.source, header.destination, out[udp_at:end])
        out[at : at + 2] = checksum.to_bytes(2, "big")
    return bytes(out)


def receiver_cases(rng: random.Random) -> list[tuple[str, bytes]]:
    """Frames for the receiver: every IHL with payloads around the header's end, truncated anywhere, padded,
    and each of the checks failing alone."""
    l3 = net.ETHERNET.length
    cases = []
    for ihl in range(net.IPV4_MIN_IHL, 16):
        for n in (0, 1, 2, 3, 4, 5, 7, 8, 9, 13, 64):
            cases.append((f"IHL {ihl}, {n} bytes", to_the_card(rng, ihl, n)))
        cases.append((f"IHL {ihl}, no UDP checksum", to_the_card(rng, ihl, 6, compute_udp_checksum=False)))
        whole = to_the_card(rng, ihl, 3)
        cases += [(f"IHL {ihl} cut to {n} bytes", whole[:n]) for n in range(1, len(whole))]
        for n in range(1, 10):
            cases.append(
                (f"IHL {ihl}, {n} bytes of padding", to_the_card(rng, ihl, rng.randrange(8)) + rng.randbytes(n))
            )

    def good(**changes) -> bytes:
        return to_the_card(rng, rng.randrange(5, 16), rng.randrange(20), **changes)

    def flipped(frame: bytes, at: int, bit: int = 0) -> bytes:
        out = bytearray(frame)
        out[at] ^= 1 << bit
        return bytes(out)

    def ip_field(name: str, value) -> bytes:
        return with_fields(good(), ip={name: value})

    def ip_payload(frame: bytes) -> int:
        header = net.IPV4.unpack(frame, l3)
        return header.total_length - 4 * net.IPV4_IHL.get(header.version_ihl)

    def from_host(destination_mac: int, **changes) -> bytes:
        return net.build_udp_frame(HOST_MAC, destination_mac, HOST_IP, CARD_IP, 1, card_link.CSR_PORT, b"x", **changes)

    def version_ihl(version: int, ihl: int) -> int:
        return net.IPV4_VERSION.put(version) | net.IPV4_IHL.put(ihl)

    def flags(bit_field: net.BitField, value: int) -> bytes:
        return ip_field("flags_fragment_offset", bit_field.put(value))

    ethertype_at = net.ETHERNET.by_name["ethertype"].offset
    cases += [(f"destination MAC byte {k}", flipped(good(), k, rng.randrange(8))) for k in range(6)]
    cases += [(f"destination IP byte {k}", ip_field("destination", CARD_IP ^ 1 << (8 * k + 5))) for k in range(4)]
    cases += [(f"IHL {n}", ip_field("version_ihl", version_ihl(4, n))) for n in range(net.IPV4_MIN_IHL)]
    cases += [
        ("broadcast", from_host((1 << 48) - 1)),
        ("ethertype ARP", good()[:ethertype_at] + (0x0806).to_bytes(2, "big") + good()[l3:]),
        ("VLAN tagged", from_host(CARD_MAC, vlan=3)),
        ("version 6", ip_field("version_ihl", version_ihl(6, 5))),
        ("IHL one word long", with_fields(to_the_card(rng, 6, 12), ip={"version_ihl": version_ihl(4, 7)})),
        ("IHL one word short", with_fields(to_the_card(rng, 7, 12), ip={"version_ihl": version_ihl(4, 6)})),
        ("more fragments", flags(net.IPV4_FLAG_MORE_FRAGMENTS, 1)),
        ("fragment offset 1", flags(net.IPV4_FRAGMENT_OFFSET, 1)),
        ("fragment offset 0x1000", flags(net.IPV4_FRAGMENT_OFFSET, 0x1000)),
        ("don't fragment", flags(net.IPV4_FLAG_DONT_FRAGMENT, 1)),
        ("reserved flag", flags(net.IPV4_FLAG_RESERVED, 1)),
        ("TCP", ip_field("protocol", 6)),
        ("another source", ip_field("source", rng.getrandbits(32))),
        ("another port", with_fields(good(), udp={"destination_port": card_link.CSR_PORT ^ 0x100})),
        ("IPv4 checksum", flipped(good(), l3 + net.IPV4.by_name["header_checksum"].offset, 3)),
        ("IPv4 option changed", flipped(to_the_card(rng, 9, 4), l3 + net.IPV4.length + 13, 5)),
        ("UDP checksum", flipped(good(), -1)),
        ("UDP checksum 0", with_fields(good(), udp={"checksum": 0})),
        ("shorter than the MAC header", good()[: l3 - 1]),
    ]
    for ihl in (5, 8, 15):
        frame = to_the_card(rng, ihl, 10)
        n = ip_payload(frame)

        def lengths(total: int, udp: int | None = None, frame=frame, ihl=ihl) -> bytes:
            return with_fields(frame, ip={"total_length": 4 * ihl + total}, udp={"length": udp} if udp else {})

        cases += [
            (f"IHL {ihl}, UDP length + 1", with_fields(frame, udp={"length": n + 1})),
            (f"IHL {ihl}, UDP length - 1", with_fields(frame, udp={"length": n - 1})),
            (f"IHL {ihl}, the last byte made padding", lengths(n - 1, n - 1)),
            (f"IHL {ihl}, total length past the frame", lengths(n + 1, n + 1)),
            (f"IHL {ihl}, UDP header of 7 bytes", lengths(7, 7)),
            (f"IHL {ihl}, no UDP header", lengths(0)),
            (f"IHL {ihl}, total length below the header", lengths(-4)),
        ]
    cases.append(("a datagram longer than the buffer", to_the_card(rng, 6, 2100)))
    return cases


def bad_keeps(beats_: list, data_width: int) -> dict[str, list]:
    """A frame's beats with the keep rules broken, by the rule broken."""
    lanes = data_width // 8
    full = (1 << lanes) - 1
    first, *middle, end = beats_
    out = {
        "a beat before the last not full": [Beat(first.data, full >> 1 if lanes > 1 else 0, 0), *middle, end],
        "last beat empty": [first, *middle, Beat(end.data, 0, 1)],
    }
    if lanes > 2:
        out["last beat not contiguous"] = [first, *middle, Beat(end.data, 0b101, 1)]
    return out


class ReceiverBench:
    """DatagramReceiver alone, driven a frame (a list of beats) at a time with random idle cycles; a monitor
    records every cycle's handshake and strobes, so the timing is checked after the run."""

    def __init__(self, data_width: int, flow: float, seed: int) -> None:
        self.dut = DatagramReceiver(data_width, port=card_link.CSR_PORT)
        self.data_width, self.lanes = data_width, data_width // 8
        self.flow = Flow(flow, seed)
        self.cycle = 0
        self.last_taken: list[int] = []  # cycles whose edge took a frame's last beat
        self.not_ready: list[int] = []
        self.strobes: list[tuple[int, str]] = []

    def run(self, bench) -> None:
        dut = self.dut

        async def monitor(ctx):
            strobes = (dut.accepted, dut.overrun, dut.ignored)
            frames = dut.frames
            async for _, _, valid, ready, last, *fired in ctx.tick().sample(
                frames.valid, frames.ready, frames.payload.last, *strobes
            ):
                if valid and ready and last:
                    self.last_taken.append(self.cycle)
                if not ready:
                    self.not_ready.append(self.cycle)
                self.strobes += [(self.cycle, name) for name, f in zip(("accepted", "overrun", "ignored"), fired) if f]
                self.cycle += 1

        async def main(ctx):
            ctx.set(dut.local_mac, CARD_MAC)
            ctx.set(dut.local_ip, CARD_IP)
            await ctx.tick()
            await bench(ctx)
            await ctx.tick().repeat(8)

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(monitor, background=True)
        sim.add_testbench(main)
        sim.run()
        # Every frame: `frames.ready` low for exactly the three cycles after its last beat, one strobe the
        # cycle after those; nothing else.
        assert self.not_ready == [t + k for t in self.last_taken for k in (1, 2, 3)]
        assert [t for t, _ in self.strobes] == [t + 4 for t in self.last_taken]

    async def send(self, ctx, beats_) -> str:
        """The frame's beats in; the strobe it gets."""
        before = len(self.strobes)
        for beat in beats_:
            await stream_put(ctx, self.dut.frames, beat.as_payload(), self.flow)
        await ctx.tick().repeat(4)
        assert len(self.strobes) == before + 1, "one strobe a frame"
        return self.strobes[-1][1]

    async def check_kept(self, ctx, frame: bytes, expected: dict, what: str) -> None:
        """The datagram offered is `expected` and the buffer holds the frame's first bytes; then it is taken."""
        datagrams = self.dut.datagrams
        assert ctx.get(datagrams.valid), what
        assert {name: ctx.get(getattr(datagrams.payload, name)) for name in expected} == expected, what
        kept = frame[: self.dut.buffer_bytes]
        for row in range(-(-len(kept) // self.lanes)):
            ctx.set(self.dut.read_addr, row)
            await ctx.tick()
            chunk = kept[row * self.lanes : (row + 1) * self.lanes]
            data = ctx.get(self.dut.read_data) & ((1 << (8 * len(chunk))) - 1)
            assert data.to_bytes(len(chunk), "little") == chunk, f"{what}: buffer row {row}"
        ctx.set(datagrams.ready, 1)
        await ctx.tick()
        ctx.set(datagrams.ready, 0)
        assert not ctx.get(datagrams.valid), what


@pytest.mark.parametrize("flow", FLOWS.values(), ids=FLOWS.keys())
@pytest.mark.parametrize("data_width", WIDTHS)
def test_receiver_keeps_exactly_what_the_parser_accepts(data_width, flow):
    """DatagramReceiver against proto.net's parser and the card's addresses: every IHL with payloads around
    the headers' end, every truncation, padding, each check failing alone, broken keep rules; a kept
    frame's datagram fields and buffer rows are the frame's, the verdict's timing is fixed."""
    rng = random.Random(60 + data_width)
    tb = ReceiverBench(data_width, flow, seed=61)
    cases = receiver_cases(rng)
    broken = bad_keeps(list(beats(to_the_card(rng, 7, 9), data_width)), data_width)

    async def bench(ctx):
        kept = 0
        for what, frame in cases:
            expected = datagram_kept(frame)
            verdict = await tb.send(ctx, beats(frame, data_width))
            assert verdict == ("accepted" if expected else "ignored"), what
            if expected:
                kept += 1
                await tb.check_kept(ctx, frame, expected, what)
        assert kept >= 11 * 21  # every IHL: its payload lengths, no checksum, padding
        for what, beats_ in broken.items():
            assert await tb.send(ctx, beats_) == "ignored", what

    tb.run(bench)


def test_receiver_drops_a_frame_while_the_buffer_is_held():
    """A good frame arriving while the buffer holds a datagram is dropped (`overrun`), a bad one `ignored`;
    neither touches the buffer or the datagram offered. Once it is taken, the next good frame is kept."""
    rng = random.Random(70)
    tb = ReceiverBench(32, 0.3, seed=71)
    first, second = to_the_card(rng, 6, 30), to_the_card(rng, 5, 11)

    async def bench(ctx):
        assert await tb.send(ctx, beats(first, 32)) == "accepted"
        assert await tb.send(ctx, beats(second, 32)) == "overrun"
        assert await tb.send(ctx, beats(second[:-1], 32)) == "ignored"
        await tb.check_kept(ctx, first, datagram_kept(first), "the first frame")
        assert await tb.send(ctx, beats(second, 32)) == "accepted"
        await tb.check_kept(ctx, second, datagram_kept(second), "the second frame")

    tb.run(bench)


# --- the card end to end ------------------------------------------------------------------------------------


def test_a_feed_handler_behind_the_link_end_to_end():
    """A small FeedHandler behind the link (connect_feed_handler): configured through CSR requests (the
    register writes sim.verilated_card.configuration makes), it takes a feed packet on line A, and the BBO
    records it makes reach the subscriber in a record packet, equal (card clock aside) to the golden
    model's for the same packet (driver.model_card)."""
    core = FeedHandler(64, n_instruments=4, n_orders=64, n_levels=2, n_locates=64)
    tb = TB(64, seed=50, core=core)
    locate, session = 7, feed.DEFAULT_SESSION
    writes = []
    for name, value, index in configuration([locate], session=session):
        register = REGISTERS[name]
        writes += [CsrAccess(CsrOp.WRITE, register.address(index) + WORD_BYTES * k, word)
                   for k, word in enumerate(register.to_words(value))]  # fmt: skip
    orders = [("B", 100, 100_000), ("S", 50, 100_500), ("B", 200, 100_100), ("S", 10, 101_000), ("S", 30, 100_400)]
    messages = [
        itch.encode("A", stock_locate=locate, tracking_number=0, timestamp=1_000 + n, order_reference_number=n + 1,
                    buy_sell_indicator=side, shares=shares, stock="WBK", price=price)
        for n, (side, shares, price) in enumerate(orders)
    ]  # fmt: skip
    packet = moldudp64.encode_packet(session, 1, messages)
    frame = net.build_udp_frame(feed.SOURCE_MAC, None, feed.SOURCE_IP, feed.LINE_A.group, feed.SOURCE_PORT,
                                feed.LINE_A.port, packet)  # fmt: skip
    golden = ModelCard(session)
    golden.push_packet(packet)
    expected = golden.poll()
    assert len(expected) > 1

    async def bench(ctx):
        for at in range(0, len(writes), MAX_OPS):
            answer = card_link.decode_response(await tb.exchange(ctx, encode(1 + at, writes[at : at + MAX_OPS])))
            assert {r.status for r in answer.results} == {CsrStatus.OK}
        await subscribe(ctx, tb, 1000)
        for beat in beats(frame, 64):
            ctx.set(core.s_axis_a_tdata, beat.data)
            ctx.set(core.s_axis_a_tkeep, beat.keep)
            ctx.set(core.s_axis_a_tlast, beat.last)
            ctx.set(core.s_axis_a_tvalid, 1)
            await ctx.tick().until(core.s_axis_a_tready)
        ctx.set(core.s_axis_a_tvalid, 0)
        await tb.wait_for(ctx, lambda: tb.records_out == len(expected), "records")
        (sequence, records), *more = record_packets(tb)
        assert (sequence, more) == (1, [])
        assert bbo.canonical_bytes(records) == bbo.canonical_bytes(expected)
        read = encode(2000, (CsrAccess(CsrOp.READ, REGISTERS.address("bbo_records")),))
        assert card_link.decode_response(await tb.exchange(ctx, read)).results == (
            CsrResult(CsrStatus.OK, len(expected)),
        )

    tb.run(bench)
