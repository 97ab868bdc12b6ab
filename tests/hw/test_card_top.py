# amaranth: UnusedElaboratable=no
"""CardTop (hw/card_top.py): the ECP5 boards' top — PLL settings, the build plan, the port dispatcher, and the
whole card in Amaranth's simulator.

- The PLL settings are checked against the EHXPLLL's ranges and against an independent search of every
  divider setting (the fastest core clock not above the board's, 125 MHz exactly on CLKOP).
- The top is elaborated for each board's real platform (`platform.prepare`: RTLIL and LPF, no yosys run):
  the PLL instance with the computed dividers, every pin the top uses located, every clock constrained.
- FrameDispatcher (the ECPIX-5's one port shared by the feed and the host link) against the rule written
  plainly over the bytes with proto.net's tables, at every data width, with and without idle cycles and
  back-pressure.
- End to end, per board, with the PLL replaced by the simulator's clocks and the DDR registers by
  test_eth's DDRModel: a CSR request (the configuration sim.verilated_card.configuration makes, then
  SUBSCRIBE) goes into the host port's RGMII pins and is answered on them; then a MoldUDP64 feed frame
  into the feed port's pins comes out of the host port as a record packet that card_link.decode_records
  decodes to the golden model's records (driver.model_card); line A counted that one frame only, and
  the host link ignored none (on the ECPIX-5: the dispatcher separated them).

(The first line silences Amaranth's UnusedElaboratable: some tests make a CardTop only to read its settings.)
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections import deque
from types import SimpleNamespace

import pytest
from amaranth.hdl import Fragment, Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator
from test_eth import SimulationDDRPlatform  # tests/hw is on sys.path, as for the other tests here

from wirebook.driver.model_card import ModelCard
from wirebook.hw.boards import board
from wirebook.hw.card_top import (
    DEFAULT_IP,
    DEFAULT_MAC,
    PLL_DIVIDER_MAX,
    PLL_PFD_HZ,
    PLL_VCO_HZ,
    PORTS,
    CardTop,
    FrameDispatcher,
    check_core_keeps_up,
    pll_settings,
)
from wirebook.hw.eth.mac import PREAMBLE, SFD
from wirebook.proto import bbo, card_link, itch, moldudp64, net
from wirebook.proto.card_link import MAX_OPS, CsrAccess, CsrOp, CsrRequest, CsrStatus
from wirebook.proto.registers import REGISTERS, WORD_BYTES
from wirebook.sim import feed
from wirebook.sim.testbench import Flow, beats, frame_bytes, stream_put
from wirebook.sim.verilated_card import configuration

BOARDS = tuple(PORTS)
OSCILLATOR_HZ = {"colorlight-5a75b": 25e6, "ecpix5-85": 100e6}
CORE_TOLERANCE = 0.05  # the core clock: at most the board's, at least 95 % of it
WIDTHS = (8, 32, 64)
FLOWS = {"full_rate": 0.0, "idle_and_backpressure": 0.3}
CARD_MAC, CARD_IP = net.mac_address(DEFAULT_MAC), net.ipv4_address(DEFAULT_IP)
HOST_MAC, HOST_IP = net.mac_address("02:57:42:00:00:03"), net.ipv4_address("10.0.0.1")
HOST_PORT, RECORD_PORT = 40001, 40002
ETH_PERIOD = 8e-9


# --- the PLL -----------------------------------------------------------------------------------------------


def every_core_clock(f_in: float) -> list[float]:
    """Every CLKOS frequency an EHXPLLL makes from `f_in` with exactly 125 MHz on CLKOP (fed back from CLKOP),
    by brute force over the dividers: the reference for pll_settings' choice."""
    found = []
    for clki in range(1, PLL_DIVIDER_MAX + 1):
        for clkfb in range(1, 81):
            if not (PLL_PFD_HZ[0] <= f_in / clki <= PLL_PFD_HZ[1] and f_in * clkfb == 125e6 * clki):
                continue
            for clkop in range(1, PLL_DIVIDER_MAX + 1):
                vco = 125e6 * clkop
                if PLL_VCO_HZ[0] <= vco <= PLL_VCO_HZ[1]:
                    found += [vco / clkos for clkos in range(1, PLL_DIVIDER_MAX + 1)]
    return found


@pytest.mark.parametrize("name", BOARDS)
def test_pll_makes_125_mhz_exactly_and_the_fastest_core_clock_not_above_the_boards(name):
    b = board(name)
    assert b.platform().default_clk_frequency == OSCILLATOR_HZ[name]
    s = pll_settings(OSCILLATOR_HZ[name], 125e6, b.core_mhz * 1e6)
    assert PLL_PFD_HZ[0] <= s.f_pfd <= PLL_PFD_HZ[1]
    assert PLL_VCO_HZ[0] <= s.f_vco <= PLL_VCO_HZ[1]
    assert all(1 <= d <= PLL_DIVIDER_MAX for d in (s.clki_div, s.clkfb_div, s.clkop_div, s.clkos_div))
    # The dividers as the EHXPLLL uses them (feedback from CLKOP).
    assert s.f_in * s.clkfb_div / s.clki_div == pytest.approx(125e6, rel=1e-9)
    assert s.f_in * s.clkfb_div * s.clkop_div / s.clki_div / s.clkos_div == pytest.approx(s.f_os, rel=1e-9)
    target = b.core_mhz * 1e6
    assert (1 - CORE_TOLERANCE) * target <= s.f_os <= target
    assert s.f_os == pytest.approx(max(f for f in every_core_clock(s.f_in) if f <= target * (1 + 1e-9)), rel=1e-9)
    # The settings the report states: VCO 750 MHz, CLKOP / 6 = 125 MHz, CLKOS / 19 = 39.47 MHz.
    assert (s.f_pfd * s.clkfb_div, s.clkop_div, s.clkos_div, round(s.f_os)) == (125e6, 6, 19, 39_473_684)
    assert CardTop(b).core_hz == s.f_os


def test_pll_refuses_what_it_cannot_make():
    with pytest.raises(ValueError, match="input must be 8-400 MHz"):
        pll_settings(4e6, 125e6, 40e6)
    with pytest.raises(ValueError, match="no EHXPLLL setting makes 1000 MHz on CLKOP"):
        pll_settings(25e6, 1000e6, 40e6)  # above the VCO's range
    with pytest.raises(ValueError, match="more than 5% below"):
        pll_settings(25e6, 125e6, 401e6)  # VCO 500, 625 or 750 MHz: 375 MHz (750 / 2) at best, 6.5 % below


def test_the_core_keeps_up_with_the_line_at_the_boards_clock_and_not_below_it():
    for name in BOARDS:
        top = CardTop(board(name))
        assert 0.5 < top.receive_load < 1  # 0.79 at 32 bits, 39.47 MHz: the longest frames
        assert top.receive_load == check_core_keeps_up(32, top.core_hz)
    with pytest.raises(ValueError, match="FrameRxCDC's contract"):
        check_core_keeps_up(32, 30e6)
    # At the CDC's limit the preamble and gap cover the host link receiver's idle cycles at 32 bits, not at 64.
    assert check_core_keeps_up(32, 31.25e6) < 1
    with pytest.raises(ValueError, match="falls behind the line on 65-byte frames"):
        check_core_keeps_up(64, 15.625e6)


# --- the build plan ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BOARDS)
def plan(request):
    b = board(request.param)
    platform = b.platform()
    top = CardTop(b)
    return SimpleNamespace(board=b, platform=platform, top=top, files=platform.prepare(top, name="wirebook").files)


def pins_of(platform, name: str, number: int, subsignals=None) -> set[str]:
    resource = platform.lookup(name, number)
    out = set()
    for sub in resource.ios:
        if hasattr(sub, "names"):
            out |= set(sub.names)
        elif subsignals is None or sub.name in subsignals:
            out |= set(sub.ios[0].names)
    return out


def test_the_plan_has_the_pll_with_its_dividers_and_every_clock_constrained(plan):
    rtlil, lpf = plan.files["wirebook.il"], plan.files["wirebook.lpf"]
    assert rtlil.count("cell \\EHXPLLL ") == 1
    pll = rtlil[rtlil.index("cell \\EHXPLLL ") :]
    pll = pll[: pll.index("\n  end")]
    s = plan.top.pll
    for parameter, value in (("CLKI_DIV", s.clki_div), ("CLKFB_DIV", s.clkfb_div), ("CLKOP_DIV", s.clkop_div),
                             ("CLKOS_DIV", s.clkos_div)):  # fmt: skip
        assert re.search(rf"parameter \\{parameter} {value}\b", pll), parameter
    assert 'parameter \\FEEDBK_PATH "CLKOP"' in pll
    frequencies = re.findall(r'FREQUENCY (?:NET|PORT) "([^"]+)" ([\d.]+) HZ;', lpf)
    ports = sorted({PORTS[plan.board.name].feed, PORTS[plan.board.name].host})
    # The PLL's outputs by name (kept through synthesis: `keep`), the receive clocks at their pins, the
    # oscillator at its pin. Nothing on a net synthesis merges away (nextpnr would ignore it, with a warning).
    expected = {("clocks.pll_clkop", 125e6), ("clocks.pll_clkos", s.f_os)}
    expected |= {(("eth_rgmii_0" if k == 0 else f"eth_rgmii_data_{k}") + "__rx_clk__io", 125e6) for k in ports}
    expected.add((f"{plan.platform.default_clk}_0__io", OSCILLATOR_HZ[plan.board.name]))
    assert {(net_, round(float(f))) for net_, f in frequencies} == {(n, round(f)) for n, f in expected}
    assert len(frequencies) == len(expected)
    for output in ("pll_clkop", "pll_clkos"):
        assert re.search(rf"attribute \\keep 1\n  wire width 1 \\{output}\n", rtlil), output


def test_the_lpf_locates_every_pin_the_top_uses(plan):
    platform, lpf = plan.platform, plan.files["wirebook.lpf"]
    sites = re.findall(r'LOCATE COMP "[^"]+" SITE "([^"]+)";', lpf)
    assert len(sites) == len(set(sites)), "a pin located twice"
    wanted = pins_of(platform, platform.default_clk, 0) | pins_of(platform, "eth_rgmii", 0)
    if plan.board.name == "colorlight-5a75b":
        port1 = {"tx_clk", "tx_ctl", "tx_data", "rx_clk", "rx_ctl", "rx_data"}
        wanted |= pins_of(platform, "eth_rgmii", 1, port1) | pins_of(platform, "led", 0)
        assert pins_of(platform, "eth_rgmii", 1) - pins_of(platform, "eth_rgmii", 1, port1) <= set(sites)  # shared
    else:
        wanted |= pins_of(platform, "rst", 0)
        for k in range(4):
            wanted |= pins_of(platform, "rgb_led", k)
    assert set(sites) == wanted


# --- the dispatcher ------------------------------------------------------------------------------------------


def is_csr_request(frame: bytes) -> bool:
    """The dispatcher's rule, plainly: the header of a UDP datagram to the card's CSR port, no IP options."""
    ip_at, udp_at = net.ETHERNET.length, net.ETHERNET.length + net.IPV4.length
    if len(frame) < udp_at + 4:
        return False
    padded = frame + bytes(64)
    eth, ip, udp = net.ETHERNET.unpack(padded), net.IPV4.unpack(padded, ip_at), net.UDP.unpack(padded, udp_at)
    return (eth.destination, eth.ethertype, ip.version_ihl, ip.protocol, ip.destination, udp.destination_port) == (
        CARD_MAC, net.ETHERTYPE_IPV4, 0x45, net.IP_PROTOCOL_UDP, CARD_IP, card_link.CSR_PORT,
    )  # fmt: skip


def dispatcher_frames(seed: int) -> list[bytes]:
    rng = random.Random(seed)

    def request(n_ops: int = 1, **changes) -> bytes:
        payload = card_link.encode_request(CsrRequest(n_ops, tuple(CsrAccess(CsrOp.READ, 4 * k) for k in range(n_ops))))
        target = {"mac": CARD_MAC, "ip": CARD_IP, "port": card_link.CSR_PORT} | changes.pop("to", {})
        return net.build_udp_frame(HOST_MAC, target["mac"], HOST_IP, target["ip"], HOST_PORT, target["port"],
                                   payload, **changes)  # fmt: skip

    def feed_frame(length: int) -> bytes:
        payload = rng.randbytes(length - 42)
        return net.build_udp_frame(feed.SOURCE_MAC, None, feed.SOURCE_IP, feed.LINE_A.group, feed.SOURCE_PORT,
                                   feed.LINE_A.port, payload)  # fmt: skip

    whole = request(2)
    tcp = bytearray(request())
    tcp[net.ETHERNET.length + net.IPV4.by_name["protocol"].offset] = 6
    frames = [
        request(1), request(3), whole, feed_frame(60), feed_frame(64), feed_frame(301),
        request(to={"mac": HOST_MAC}), request(to={"ip": HOST_IP}), request(to={"port": card_link.CSR_PORT + 1}),
        request(to={"mac": net.multicast_mac(feed.LINE_A.group), "ip": feed.LINE_A.group}),
        request(vlan=5), request(ip_options=bytes(4)), bytes(tcp),
        *[whole[:n] for n in (1, 5, 6, 13, 36, 37, 38, 39, 40)],  # cut short: from 38 bytes on the header is all there
        request(1), feed_frame(60), request(2), request(1),
    ]  # fmt: skip
    return frames


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("data_width", WIDTHS)
def test_dispatcher_sends_csr_requests_to_the_host_and_the_rest_to_the_feed_whole_and_in_order(data_width, flow):
    frames = dispatcher_frames(data_width)
    assert {is_csr_request(f) for f in frames} == {True, False}
    dut = FrameDispatcher(data_width)
    out = {"host": [], "feed": []}

    async def source(ctx):
        ctx.set(dut.local_mac, CARD_MAC)
        ctx.set(dut.local_ip, CARD_IP)
        pause = Flow(FLOWS[flow], 1)
        for frame in frames:
            for beat in beats(frame, data_width):
                await stream_put(ctx, dut.i, beat.as_payload(), pause)

    def sink(name: str, seed: int):
        async def run(ctx):  # cycle by cycle (no `until`), so the simulation can end anywhere
            port, backpressure = getattr(dut, name), Flow(FLOWS[flow], seed)
            received, pause, cycle = [], backpressure.pause(), 0
            async for _, _, valid, ready, payload in ctx.tick().sample(port.valid, port.ready, port.payload):
                cycle += 1
                if valid and ready:
                    received.append({"data": payload.data, "keep": payload.keep})
                    if payload.last:
                        out[name].append((cycle, frame_bytes(received, data_width)))
                        received = []
                    pause = backpressure.pause()
                elif pause:
                    pause -= 1
                ctx.set(port.ready, not pause)

        return run

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink("host", 2), background=True)
    sim.add_testbench(sink("feed", 3), background=True)

    async def wait(ctx):
        for _ in range(20 * sum(len(f) for f in frames)):
            if len(out["host"]) + len(out["feed"]) == len(frames):
                return
            await ctx.tick()

    sim.add_testbench(wait)
    sim.run()
    assert [f for _, f in out["host"]] == [f for f in frames if is_csr_request(f)]
    assert [f for _, f in out["feed"]] == [f for f in frames if not is_csr_request(f)]
    assert [f for _, f in sorted(out["host"] + out["feed"])] == frames  # one at a time, in arrival order


def test_dispatcher_passes_a_multicast_feed_frame_after_its_first_beat():
    """Latency: a feed frame's destination is known from its first byte, which is offered from the clock
    edge after the one that takes it in, without waiting for the UDP port."""
    dut = FrameDispatcher(32)
    frame = dispatcher_frames(0)[3]
    assert not is_csr_request(frame)

    async def bench(ctx):
        ctx.set(dut.local_mac, CARD_MAC)
        ctx.set(dut.local_ip, CARD_IP)
        ctx.set(dut.feed.ready, 1)
        first = next(beats(frame, 32))
        ctx.set(dut.i.payload, first.as_payload())
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        cycles = 0
        while not ctx.get(dut.feed.valid):
            await ctx.tick()
            cycles += 1
        assert cycles == 1
        assert not ctx.get(dut.host.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# --- the card end to end ---------------------------------------------------------------------------------------


class SimulatedClocks(wiring.Component):
    """CardClocks' stand-in: the simulator drives the `sync` and `eth_tx` clocks; no reset; the PHYs out of reset."""

    def __init__(self) -> None:
        super().__init__({"phy_reset": Out(1)})

    def elaborate(self, platform):
        return Module()


def simulation_platform(name: str):
    """The board's platform with its resources as simulator ports (kept in `ports`) and DDR buffers modelled."""
    base = type(board(name).platform())

    class SimulationCardPlatform(base):
        get_io_buffer = SimulationDDRPlatform.get_io_buffer

        def __init__(self):
            super().__init__()
            self.ports = {}
            # Not "ecp5": what would instantiate an ECP5 primitive (FrameFIFO's EBR) makes its portable
            # equivalent, which Amaranth's simulator can run (sim/board_sim runs the primitives, in Verilator).
            self.family = "simulation"

        def request(self, name, number=0, *, dir=None, xdr=None):
            resource = self.lookup(name, number)

            def port(pins, label):
                return io.SimulationPort({"oe": "o"}.get(pins.dir, pins.dir), len(pins), invert=pins.invert, name=label)

            if hasattr(resource.ios[0], "names"):
                made = port(resource.ios[0], f"{name}{number}")
            else:
                made = SimpleNamespace(**{s.name: port(s.ios[0], f"{name}{number}_{s.name}") for s in resource.ios})
            self.ports[name, number] = made
            return made

    return SimulationCardPlatform()


def pin(pins, *names):
    return next(getattr(pins, n) for n in names if hasattr(pins, n))


def on_the_wire(frame: bytes) -> list[tuple[int, int, int]]:
    """A frame's GMII cycles (byte, RX_DV, RX_ER): preamble, SFD, the frame padded to 60 bytes, its FCS, a gap."""
    padded = frame + bytes(max(0, 60 - len(frame)))
    wire = bytes([PREAMBLE] * 7 + [SFD]) + padded + zlib.crc32(padded).to_bytes(4, "little")
    return [(b, 1, 0) for b in wire] + [(0, 0, 0)] * 12


class CardBench:
    """The top on a simulated board: a PHY model per port drives the RGMII receive pins a byte per 8 ns (both
    edges, the clock centred as an RGMII-ID PHY gives it), a monitor reads the host port's transmit pins back
    into frames (FCS checked and stripped)."""

    def __init__(self, name: str) -> None:
        self.name, self.ports = name, PORTS[name]
        core = {"data_width": 32, "n_instruments": 4, "n_orders": 64, "n_levels": 2, "n_locates": 64}
        self.top = CardTop(
            board(name), core=core, rx_delay=0.0, tx_delay=0.0, clocks=lambda platform, settings: SimulatedClocks()
        )
        self.platform = simulation_platform(name)
        self.fragment = Fragment.get(self.top, self.platform)
        self.queues = {k: deque() for k in sorted({self.ports.feed, self.ports.host})}
        self.sent: list[bytes] = []

    def port_pins(self, index: int):
        return self.platform.ports["eth_rgmii", 0] if index == 0 else self.platform.ports["eth_rgmii_data", index]

    def send(self, index: int, frame: bytes) -> None:
        self.queues[index].extend(on_the_wire(frame))

    async def phys(self, ctx):
        pins = {k: self.port_pins(k) for k in self.queues}
        while True:
            cycle = {k: (q.popleft() if q else (0, 0, 0)) for k, q in self.queues.items()}
            for k, (data, dv, _) in cycle.items():
                ctx.set(pin(pins[k], "rx_data").i, data & 0xF)
                ctx.set(pin(pins[k], "rx_ctl", "rx_ctrl").i, dv)
            await ctx.delay(ETH_PERIOD / 4)
            for k in cycle:
                ctx.set(pin(pins[k], "rx_clk").i, 1)
            await ctx.delay(ETH_PERIOD / 4)
            for k, (data, dv, er) in cycle.items():
                ctx.set(pin(pins[k], "rx_data").i, data >> 4)
                ctx.set(pin(pins[k], "rx_ctl", "rx_ctrl").i, dv ^ er)
            await ctx.delay(ETH_PERIOD / 4)
            for k in cycle:
                ctx.set(pin(pins[k], "rx_clk").i, 0)
            await ctx.delay(ETH_PERIOD / 4)

    async def host_tx(self, ctx):  # a PHY that delays TXC by a quarter cycle itself (RGMII-TXID)
        pins = self.port_pins(self.ports.host)
        tx_clk, tx_data, tx_ctl = pin(pins, "tx_clk"), pin(pins, "tx_data"), pin(pins, "tx_ctl", "tx_ctrl")
        burst = bytearray()
        while True:
            await ctx.posedge(tx_clk.o)
            await ctx.delay(ETH_PERIOD / 4)
            low, dv = ctx.get(tx_data.o), ctx.get(tx_ctl.o)
            await ctx.negedge(tx_clk.o)
            await ctx.delay(ETH_PERIOD / 4)
            high, dv_xor_er = ctx.get(tx_data.o), ctx.get(tx_ctl.o)
            if dv:
                assert dv == dv_xor_er, "TX_ER"
                burst.append(low | high << 4)
            elif burst:
                assert burst[:8] == bytes([PREAMBLE] * 7 + [SFD])
                frame, fcs = bytes(burst[8:-4]), bytes(burst[-4:])
                assert zlib.crc32(frame).to_bytes(4, "little") == fcs
                self.sent.append(frame)
                burst.clear()

    async def wait_for(self, ctx, count: int, what: str, limit: float = 200e-6) -> bytes:
        """The `count`-th frame out of the host port (1-based), within `limit` seconds of simulated time."""
        for _ in range(int(limit / (100 * ETH_PERIOD))):
            if len(self.sent) >= count:
                return self.sent[count - 1]
            await ctx.delay(100 * ETH_PERIOD)
        raise AssertionError(f"{what}: nothing out of the host port")


def request_frame(payload: bytes) -> bytes:
    return net.build_udp_frame(HOST_MAC, CARD_MAC, HOST_IP, CARD_IP, HOST_PORT, card_link.CSR_PORT, payload)


@pytest.mark.parametrize("name", BOARDS)
def test_a_subscribed_host_gets_the_records_of_a_feed_frame_through_the_pins(name):
    tb = CardBench(name)
    locate, session = 7, feed.DEFAULT_SESSION
    accesses = []
    for register_name, value, index in configuration([locate], session=session):
        register = REGISTERS[register_name]
        accesses += [CsrAccess(CsrOp.WRITE, register.address(index) + WORD_BYTES * k, word)
                     for k, word in enumerate(register.to_words(value))]  # fmt: skip
    accesses.append(CsrAccess(CsrOp.SUBSCRIBE, 0, RECORD_PORT))
    assert len(accesses) <= MAX_OPS
    orders = [("B", 100, 100_000), ("S", 50, 100_500), ("B", 200, 100_100), ("S", 30, 100_400)]
    messages = [
        itch.encode("A", stock_locate=locate, tracking_number=0, timestamp=1_000 + n, order_reference_number=n + 1,
                    buy_sell_indicator=side, shares=shares, stock="WBK", price=price)
        for n, (side, shares, price) in enumerate(orders)
    ]  # fmt: skip
    packet = moldudp64.encode_packet(session, 1, messages)
    feed_frame = net.build_udp_frame(feed.SOURCE_MAC, None, feed.SOURCE_IP, feed.LINE_A.group, feed.SOURCE_PORT,
                                     feed.LINE_A.port, packet)  # fmt: skip
    golden = ModelCard(session)
    golden.push_packet(packet)
    expected = golden.poll()
    assert len(expected) > 1

    async def bench(ctx):
        ctx.set(tb.top.host_link.flush_cycles, 40)
        await ctx.delay(20 * ETH_PERIOD)
        tb.send(tb.ports.host, request_frame(card_link.encode_request(CsrRequest(1, tuple(accesses)))))
        response = net.parse_udp_frame(await tb.wait_for(ctx, 1, "the CSR response"))
        assert (response.eth.destination, response.ip.destination, response.udp.destination_port) == (
            HOST_MAC, HOST_IP, HOST_PORT)  # fmt: skip
        assert (response.eth.source, response.ip.source, response.udp.source_port) == (
            CARD_MAC, CARD_IP, card_link.CSR_PORT)  # fmt: skip
        answer = card_link.decode_response(response.payload)
        assert answer.sequence == 1 and [r.status for r in answer.results] == [CsrStatus.OK] * len(accesses)

        tb.send(tb.ports.feed, feed_frame)
        records = net.parse_udp_frame(await tb.wait_for(ctx, 2, "the record packet"))
        assert (records.eth.destination, records.ip.destination, records.udp.destination_port) == (
            HOST_MAC, HOST_IP, RECORD_PORT)  # fmt: skip
        sequence, got = card_link.decode_records(records.payload)
        assert sequence == 1
        assert bbo.canonical_bytes(got) == bbo.canonical_bytes(expected)

        # Line A saw the feed frame alone (the ECPIX-5's CSR requests went to the host link only), and the host
        # link saw no feed frame.
        read = CsrRequest(2, (CsrAccess(CsrOp.READ, REGISTERS.address("frames_a")),))
        tb.send(tb.ports.host, request_frame(card_link.encode_request(read)))
        response = net.parse_udp_frame(await tb.wait_for(ctx, 3, "the read's response"))
        answer = card_link.decode_response(response.payload)
        assert [(r.status, r.value) for r in answer.results] == [(CsrStatus.OK, 1)]
        assert ignored[0] == 0

    ignored = [0]

    async def host_link_monitor(ctx):
        async for _, _, strobe in ctx.tick().sample(tb.top.host_link.frames_ignored):
            ignored[0] += strobe

    sim = Simulator(tb.fragment)
    sim.add_clock(ETH_PERIOD, domain="eth_tx")
    sim.add_clock(1 / tb.top.core_hz, domain="sync", phase=3.1e-9)
    sim.add_testbench(tb.phys, background=True)
    sim.add_testbench(tb.host_tx, background=True)
    sim.add_testbench(host_link_monitor, background=True)
    sim.add_testbench(bench)
    sim.run()
    assert math.isclose(tb.top.core_hz, 750e6 / 19)
