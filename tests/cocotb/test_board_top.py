"""The Colorlight board top in Verilator through cocotb, at its pins: RGMII in and out with cocotbext-eth.

What runs is the Verilog of what `wirebook hw build` gives yosys for the Colorlight 5A-75B (sim.board_sim:
the platform's own elaboration of CardTop, PLL, DDR registers, input delays and pad buffers as ECP5
instances), with behavioural models of those primitives (sim/ecp5/*.v) and a smaller core (CORE) and PHY
reset hold (PHY_RESET_SECONDS). The bench is the board's surroundings: the 25 MHz oscillator, and a PHY per
port, cocotbext-eth's RgmiiSource on the receive pins (each with its own 125 MHz receive clock, 125 ppm off
the card's, in opposite directions) and RgmiiSink on the transmit pins (clocked by the PHY's delayed TXC,
sim.board_sim.PHY_TX_CLOCK_DELAY). Both PHYs are held while the card drives their reset pin low.

`board_top_bench` (the cocotb test):
- power-up: the PHY reset pin is released after the PLL locks and the hold time passes; the transmit clock
  at the pins runs at 125 MHz (the PLL's CLKOP);
- the host port answers a CSR request reading the identity registers with the constants of this build
  (magic, map version, the build_id its elaboration gave the core, the core's parameters: board_sim.built()),
  addressed back to the host, from the card's address and CSR port, every access OK;
- the configuration sim.verilated_card.configuration makes (instrument locate 7 subscribed) and a SUBSCRIBE,
  in one request: every access OK;
- a MoldUDP64 frame of ITCH messages on line A into port 0 (adds on both sides, a partial cancel, a
  delete) comes out of port 1 as one record packet to the subscriber, which card_link.decode_records (the
  driver's parser) decodes to the golden model's records (driver.model_card), card_timestamp aside;
- the counters then say line A took that one frame, one packet, its messages, and the book holds the
  orders left; line B saw nothing;
- every frame the card sends has the preamble and SFD, no TX_ER and a right FCS (`checked_frame`, whose
  refusals `test_checked_frame_refuses_a_bad_fcs_preamble_or_tx_er` shows); port 0 sends nothing, port 1
  nothing but the answers and the record packet.
The pytest side builds the simulation once per configuration (out/sim/board-verilator-<key>) and fails
when the cocotb test failed.
"""

from __future__ import annotations

import zlib

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.handle import SimHandleBase
from cocotb.triggers import ClockCycles, Timer, with_timeout
from cocotb.utils import get_sim_time
from cocotbext.eth import GmiiFrame, RgmiiSink, RgmiiSource

from wirebook.driver.model_card import ModelCard
from wirebook.hw.boards import board
from wirebook.hw.card_top import DEFAULT_IP, DEFAULT_MAC, PORTS
from wirebook.hw.eth.mac import PREAMBLE, SFD
from wirebook.proto import bbo, card_link, itch, moldudp64, net, registers
from wirebook.proto.card_link import CsrAccess, CsrOp, CsrRequest, CsrStatus
from wirebook.proto.registers import REGISTERS, WORD_BYTES
from wirebook.sim import board_sim, feed
from wirebook.sim.verilated_card import configuration

pytestmark = pytest.mark.cocotb

# The board's core (its width, one feed line, counters and tables in block RAM), with smaller tables.
CORE = board(board_sim.BOARD).core | {"n_instruments": 4, "n_orders": 256, "n_levels": 4, "n_locates": 64}
PHY_RESET_SECONDS = 2e-6
PLAN = PORTS[board_sim.BOARD]  # port 0 the feed, port 1 the host link
OSCILLATOR_NS = 40  # the board's 25 MHz
RX_PERIOD_PS = {PLAN.feed: 8001, PLAN.host: 7999}  # each PHY's receive clock: 125 MHz -/+ 125 ppm
TX_PERIOD_NS = 8  # the card's transmit clock, the PLL's CLKOP
CARD_MAC, CARD_IP = net.mac_address(DEFAULT_MAC), net.ipv4_address(DEFAULT_IP)
HOST_MAC, HOST_IP = net.mac_address("02:57:42:00:00:03"), net.ipv4_address("10.0.0.1")
HOST_PORT, RECORD_PORT = 40001, 40002
LOCATE = 7
IDENTITY = ("magic", "version", "build_id", "data_width", "n_instruments", "n_orders", "n_levels", "n_groups",
            "n_lines")  # fmt: skip
ANSWER_US = 100  # at most, from a request's last bit to its answer's
RECORDS_US = 200  # at most, from the feed frame to its record packet (the host link flushes after 1000 cycles)


def test_board_top_answers_csr_requests_and_sends_the_records_of_a_feed_frame_at_its_pins(tmp_path):
    board_sim.run_board(__name__, core=CORE, phy_reset_seconds=PHY_RESET_SECONDS, test_dir=tmp_path)


def test_checked_frame_refuses_a_bad_fcs_preamble_or_tx_er():
    frame = net.build_udp_frame(CARD_MAC, HOST_MAC, CARD_IP, HOST_IP, card_link.CSR_PORT, HOST_PORT, bytes(30))
    good = GmiiFrame.from_payload(frame)
    assert checked_frame(good, "a good frame")[: len(frame)] == frame
    bad_fcs = GmiiFrame(bytearray(good.data))
    bad_fcs.data[-1] ^= 0x01
    bad_preamble = GmiiFrame(bytearray(good.data))
    bad_preamble.data[7] = PREAMBLE
    tx_er = GmiiFrame(bytearray(good.data), [0] * 20 + [1] + [0] * (len(good.data) - 21))
    for bad, why in ((bad_fcs, "FCS"), (bad_preamble, "preamble"), (tx_er, "TX_ER")):
        with pytest.raises(AssertionError, match=why):
            checked_frame(bad, "a bad frame")


def checked_frame(frame: GmiiFrame, what: str) -> bytes:
    """The frame (padding included, FCS stripped) of a burst an RgmiiSink took, once its preamble and SFD, its
    TX_ER and its FCS (cocotbext-eth's check_fcs) are right; AssertionError naming `what` otherwise."""
    data = bytes(frame.data)
    head = bytes([PREAMBLE] * 7 + [SFD])
    assert data[:8] == head, f"{what}: preamble and SFD {data[:8].hex()}, expected {head.hex()}"
    assert not any(frame.error or []), f"{what}: TX_ER during the frame (byte {list(frame.error).index(1)})"
    assert len(data) >= 8 + 64, f"{what}: {len(data) - 8} bytes after the SFD, shorter than a minimum frame"
    assert frame.check_fcs(), f"{what}: bad FCS {data[-4:].hex()}, expected {zlib.crc32(data[8:-4]):08x}"
    return data[8:-4]


def reads(names: tuple[str, ...]) -> list[CsrAccess]:
    """READ accesses of every word of the named registers, least significant word first (as the bank wants)."""
    return [CsrAccess(CsrOp.READ, REGISTERS[name].address() + WORD_BYTES * k)
            for name in names for k in range(REGISTERS[name].words)]  # fmt: skip


def values(names: tuple[str, ...], results: list[card_link.CsrResult]) -> dict[str, int]:
    """The registers' values from the results of `reads(names)`."""
    out, at = {}, 0
    for name in names:
        words = REGISTERS[name].words
        out[name] = REGISTERS[name].from_words([r.value for r in results[at : at + words]])
        at += words
    return out


def feed_traffic() -> tuple[bytes, bytes]:
    """A line-A feed frame of ITCH messages for the subscribed instrument, and its MoldUDP64 packet."""
    orders = [("B", 100, 100_000), ("S", 50, 100_500), ("B", 200, 100_100), ("S", 30, 100_400)]
    messages = [
        itch.encode("A", stock_locate=LOCATE, tracking_number=0, timestamp=1_000 + n, order_reference_number=n + 1,
                    buy_sell_indicator=side, shares=shares, stock="WBK", price=price)
        for n, (side, shares, price) in enumerate(orders)
    ]  # fmt: skip
    messages += [
        itch.encode("X", stock_locate=LOCATE, tracking_number=0, timestamp=2_000, order_reference_number=3,
                    cancelled_shares=150),
        itch.encode("D", stock_locate=LOCATE, tracking_number=0, timestamp=2_001, order_reference_number=4),
    ]  # fmt: skip
    packet = moldudp64.encode_packet(feed.DEFAULT_SESSION, 1, messages)
    frame = net.build_udp_frame(feed.SOURCE_MAC, None, feed.SOURCE_IP, feed.LINE_A.group, feed.SOURCE_PORT,
                                feed.LINE_A.port, packet)  # fmt: skip
    return frame, packet


class TB:
    """The board on the bench: its oscillator, and a PHY per port (see the module docstring)."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.phy_reset = dut.eth_rgmii_0__rst__io  # shared by both PHYs; low holds them in reset
        Clock(dut.clk25_0__io, OSCILLATOR_NS, unit="ns").start()
        for port, period in RX_PERIOD_PS.items():
            Clock(self.pin(port, "rx_clk"), period, unit="ps", period_high=4000).start()
        held = {"reset": self.phy_reset, "reset_active_level": False}
        self.feed = RgmiiSource(self.pin(PLAN.feed, "rx_data"), self.pin(PLAN.feed, "rx_ctl"),
                                self.pin(PLAN.feed, "rx_clk"), **held)  # fmt: skip
        self.host = RgmiiSource(self.pin(PLAN.host, "rx_data"), self.pin(PLAN.host, "rx_ctl"),
                                self.pin(PLAN.host, "rx_clk"), **held)  # fmt: skip
        self.sent = {port: RgmiiSink(self.pin(port, "tx_data"), self.pin(port, "tx_ctl"),
                                     self.pin(port, "tx_clk", "phy"), **held)
                     for port in (PLAN.feed, PLAN.host)}  # fmt: skip
        self.sequence = 0

    def pin(self, port: int, name: str, side: str = "io") -> SimHandleBase:
        """A port's RGMII pin (`io`), or what its PHY makes of it (`phy`: the delayed TXC); the resources as
        CardTop requests them: port 0 whole, port 1's data pins as eth_rgmii_data 1."""
        resource = "eth_rgmii_0" if port == 0 else f"eth_rgmii_data_{port}"
        return getattr(self.dut, f"{resource}__{name}__{side}")

    async def power_up(self) -> None:
        """Wait until the card releases the PHYs' reset, then check the transmit clock at the pins."""
        while not int(self.phy_reset.value):
            await with_timeout(self.phy_reset.value_change, 20 * PHY_RESET_SECONDS, "sec")
        released = get_sim_time("ns")
        assert released >= PHY_RESET_SECONDS * 1e9, f"PHY reset released at {released} ns"
        tx_clk = self.pin(PLAN.host, "tx_clk")
        await ClockCycles(tx_clk, 1)
        start = get_sim_time("ps")
        await ClockCycles(tx_clk, 100)
        assert get_sim_time("ps") - start == 100 * TX_PERIOD_NS * 1000, "the transmit clock is not 125 MHz"

    async def received(self, what: str, timeout_us: float) -> net.UdpFrame:
        """The next frame out of the host port, checked, as UDP."""
        try:
            frame = await with_timeout(self.sent[PLAN.host].recv(), timeout_us, "us")
        except TimeoutError:
            raise AssertionError(f"{what}: nothing out of port {PLAN.host} within {timeout_us} us") from None
        return net.parse_udp_frame(checked_frame(frame, what))

    async def transact(self, accesses: list[CsrAccess], what: str) -> list[card_link.CsrResult]:
        """One CSR request into the host port and its answer's results, every one OK, the answer addressed
        back to where the request came from."""
        self.sequence += 1
        payload = card_link.encode_request(CsrRequest(self.sequence, tuple(accesses)))
        request = net.build_udp_frame(HOST_MAC, CARD_MAC, HOST_IP, CARD_IP, HOST_PORT, card_link.CSR_PORT, payload)
        await self.host.send(GmiiFrame.from_payload(request))
        answer = await self.received(f"the answer to {what}", ANSWER_US)
        assert (answer.eth.destination, answer.ip.destination, answer.udp.destination_port) == (
            HOST_MAC, HOST_IP, HOST_PORT), f"{what}: answered to the wrong address"  # fmt: skip
        assert (answer.eth.source, answer.ip.source, answer.udp.source_port) == (
            CARD_MAC, CARD_IP, card_link.CSR_PORT), f"{what}: answered from the wrong address"  # fmt: skip
        response = card_link.decode_response(answer.payload)
        assert response.sequence == self.sequence, f"{what}: answer to request {response.sequence}"
        statuses = [r.status for r in response.results]
        assert statuses == [CsrStatus.OK] * len(accesses), f"{what}: statuses {statuses}"
        return list(response.results)


@cocotb.test()
async def board_top_bench(dut) -> None:
    tb = TB(dut)
    await tb.power_up()

    # The build's constants, read through the host port.
    made, core = board_sim.built(), board_sim.built()["core"]
    identity = values(IDENTITY, await tb.transact(reads(IDENTITY), "the identity read"))
    assert identity == {
        "magic": registers.text_value(registers.MAGIC, 4), "version": registers.VERSION,
        "build_id": made["build_id"], "data_width": core["data_width"], "n_instruments": core["n_instruments"],
        "n_orders": core["n_orders"], "n_levels": core["n_levels"], "n_groups": registers.N_GROUPS,
        "n_lines": core.get("n_lines", len(registers.LINES)),
    }  # fmt: skip

    # The feed's configuration, and the host subscribed to the records.
    accesses = []
    for name, value, index in configuration([LOCATE], session=feed.DEFAULT_SESSION):
        register = REGISTERS[name]
        accesses += [CsrAccess(CsrOp.WRITE, register.address(index) + WORD_BYTES * k, word)
                     for k, word in enumerate(register.to_words(value))]  # fmt: skip
    accesses.append(CsrAccess(CsrOp.SUBSCRIBE, 0, RECORD_PORT))
    await tb.transact(accesses, "the configuration")

    # A feed frame into port 0: its records out of port 1, as the golden model has them.
    frame, packet = feed_traffic()
    golden = ModelCard(feed.DEFAULT_SESSION)
    golden.push_packet(packet)
    expected = golden.poll()
    assert len(expected) > 1
    await tb.feed.send(GmiiFrame.from_payload(frame))
    records = await tb.received("the record packet", RECORDS_US)
    assert (records.eth.destination, records.ip.destination, records.udp.destination_port) == (
        HOST_MAC, HOST_IP, RECORD_PORT)  # fmt: skip
    assert (records.eth.source, records.ip.source) == (CARD_MAC, CARD_IP)
    sequence, got = card_link.decode_records(records.payload)
    assert sequence == 1
    assert bbo.canonical_bytes(got) == bbo.canonical_bytes(expected), f"card:\n{got}\nmodel:\n{expected}"

    # What the core counted: that frame alone, on line A.
    counters = ("frames_a", "packets_accepted_a", "messages_accepted", "frames_b", "orders_live", "bbo_records")
    counted = values(counters, await tb.transact(reads(counters), "the counters read"))
    assert counted == {"frames_a": 1, "packets_accepted_a": 1, "messages_accepted": 6, "frames_b": 0,
                       "orders_live": 3, "bbo_records": len(expected)}  # fmt: skip

    # Nothing else on the wires: no frame from port 0, none but the answers and the records from port 1.
    await Timer(20, "us")
    assert tb.sent[PLAN.feed].empty(), "port 0 sent a frame"
    assert tb.sent[PLAN.host].empty(), "port 1 sent an unexpected frame"
