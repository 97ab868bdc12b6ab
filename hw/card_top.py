"""The board top of the ECP5 boards (`wirebook hw build`): clocks, the Ethernet ports, the core and its host link.

    oscillator ─ CardClocks: EHXPLLL ─ eth_tx (CLKOP, 125 MHz), sync (CLKOS, the core, about board.core_mhz);
                 resets held until the PLL locks and the PHY reset time has passed; the PHYs' reset pin

    Colorlight 5A-75B (two ports)
      port 0, feed:  RgmiiPhy ─ MacRx (eth_rx0) ─ FrameRxCDC ─ FeedHandler line A     (line B idle, TX idle)
      port 1, host:  RgmiiPhy ─ MacRx (eth_rx1) ─ FrameRxCDC ─ HostLink rx
                     RgmiiPhy ─ MacTx (eth_tx)  ─ FrameTxCDC ─ HostLink tx
    ECPIX-5 (one port, shared by address)
      port 0:        RgmiiPhy ─ MacRx (eth_rx0) ─ FrameRxCDC ─ FrameDispatcher ─┬ host: HostLink rx
                                                                              └ feed: FeedHandler line A
                     RgmiiPhy ─ MacTx (eth_tx)  ─ FrameTxCDC ─ HostLink tx
    FeedHandler (board.core) ─ s_axil, m_axis_bbo ─ connect_feed_handler ─ HostLink

The card's own address (`mac`, `ip`: CardTop's parameters, default 02:57:42:00:00:02 and 10.0.0.2) is where
the host sends CSR requests (UDP port card_link.CSR_PORT) and where record packets come from; it is built in
(the CSRs are reached through it). To change it, pass `CardTop(board, mac=..., ip=...)`. The card answers no
ARP: the host needs a static neighbour entry, e.g. `ip neigh replace 10.0.0.2 lladdr 02:57:42:00:00:02 dev
eth1`. The card answers each request to the MAC, address and port it came from, so it needs nothing of the
host's. (The core's `local_mac` register is another thing: the unicast MAC feed frames may be sent to.)

Throughput: every receive path must take a frame's beats faster than the line brings its bytes (the
contract in hw.eth.frame_cdc, with the host link receiver's 3 idle cycles after each frame). `CardTop`
checks it for the board's data width and the core clock the PLL gives (`check_core_keeps_up`): at 32 bits
and 39.47 MHz the core is busy at most 79 % of the time at line rate: a 1514-byte frame takes it 382 cycles,
9.7 us, against 12.3 us on the wire (preamble, FCS and gap included); a minimum-size frame 18 cycles,
456 ns, against 672 ns. (FrameRxCDC alone needs 31.25 MHz at 32 bits.)

(No `from __future__ import annotations` here: wiring.Component reads the class-level signature
annotations as objects.)
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amaranth.build import Resource
from amaranth.hdl import (
    Cat,
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Elaboratable,
    Instance,
    Module,
    Mux,
    Signal,
    Value,
)
from amaranth.lib import data, fifo, io, wiring
from amaranth.lib.cdc import PulseSynchronizer, ResetSynchronizer
from amaranth.lib.wiring import In, Out

from ..hdl.feed_handler import FeedHandler
from ..hdl.stream import frame_layout, frame_signature
from ..proto import card_link, net
from .boards import Board
from .eth.frame_cdc import FrameRxCDC, FrameTxCDC
from .eth.mac import FCS_BYTES, MAX_FRAME, MIN_FRAME, MacRx, MacTx
from .eth.rgmii import LINE_RATE_HZ, RgmiiPhy
from .link.host_link import HostLink, connect_feed_handler

__all__ = [
    "DEFAULT_IP",
    "DEFAULT_MAC",
    "PORTS",
    "CardClocks",
    "CardTop",
    "EthernetPort",
    "FrameDispatcher",
    "PllSettings",
    "check_core_keeps_up",
    "pll_settings",
]

DEFAULT_MAC = "02:57:42:00:00:02"  # locally administered (bit 1 of the first byte), unicast
DEFAULT_IP = "10.0.0.2"


@dataclass(frozen=True)
class Ports:
    """Which RGMII port of a board carries the feed and which the host link, and the PHY's clock skew."""

    feed: int
    host: int
    rx_delay: float  # seconds: RgmiiPhy's rx_delay (2 ns: the FPGA delays RXD against RXC; 0: the PHY does)
    tx_delay: float  # seconds: RgmiiPhy's tx_delay (0: the PHY delays TXC)

    @property
    def shared(self) -> bool:
        return self.feed == self.host


PORTS: dict[str, Ports] = {
    # The delays LiteX-Boards' targets give LiteEth's ECP5 RGMII PHY on these boards (RgmiiPhy's are the same
    # quantities): the Colorlight delays RX in the FPGA and leaves TXC to its B50612D PHYs; the ECPIX-5's PHY
    # delays RXC itself, and the FPGA delays TXC (LiteEth's default 2 ns).
    "colorlight-5a75b": Ports(feed=0, host=1, rx_delay=2e-9, tx_delay=0.0),
    "ecpix5-85": Ports(feed=0, host=0, rx_delay=0.0, tx_delay=2e-9),
}
"""The port plan of each ECP5 board CardTop builds (hw.boards names)."""

PHY_SHARED = ("rst", "mdc", "mdio")
"""The Colorlight's two PHYs share these pins: amaranth-boards lists them in both eth_rgmii resources."""

PHY_RESET_SECONDS = 10e-3  # the PHYs' hardware reset after power-up: longer than RGMII PHYs ask for
RECEIVER_IDLE_CYCLES = 3  # HostLink's DatagramReceiver: `frames.ready` low for three cycles after each frame
STRETCH_SECONDS = {"activity": 0.05, "error": 0.5}  # how long an LED stays lit after one event


# --- the PLL -----------------------------------------------------------------------------------------------

PLL_INPUT_HZ = (8e6, 400e6)  # ECP5 family data sheet (DS1044), sysCLOCK PLL timing
PLL_PFD_HZ = (3.125e6, 400e6)
PLL_VCO_HZ = (400e6, 800e6)
PLL_DIVIDER_MAX = 128  # CLKI_DIV, CLKOP_DIV, CLKOS_DIV
PLL_FEEDBACK_MAX = 80  # CLKFB_DIV, as far as ecppll (prjtrellis) goes
PLL_EXACT = 1e-6  # relative: "exactly", for floating-point ratios


@dataclass(frozen=True)
class PllSettings:
    """An EHXPLLL's dividers, with its feedback from CLKOP (`FEEDBK_PATH="CLKOP"`):

    f_PFD = f_in / CLKI_DIV, f_CLKOP = f_PFD * CLKFB_DIV, f_VCO = f_CLKOP * CLKOP_DIV, f_CLKOS = f_VCO / CLKOS_DIV.
    """

    f_in: float
    clki_div: int
    clkfb_div: int
    clkop_div: int
    clkos_div: int

    @property
    def f_pfd(self) -> float:
        return self.f_in / self.clki_div

    @property
    def f_op(self) -> float:
        return self.f_pfd * self.clkfb_div

    @property
    def f_vco(self) -> float:
        return self.f_op * self.clkop_div

    @property
    def f_os(self) -> float:
        return self.f_vco / self.clkos_div

    def summary(self) -> dict[str, Any]:
        return {"f_in_mhz": self.f_in / 1e6, "CLKI_DIV": self.clki_div, "CLKFB_DIV": self.clkfb_div,
                "CLKOP_DIV": self.clkop_div, "CLKOS_DIV": self.clkos_div, "f_vco_mhz": self.f_vco / 1e6,
                "f_clkop_mhz": self.f_op / 1e6, "f_clkos_mhz": self.f_os / 1e6}  # fmt: skip


def pll_settings(f_in: float, f_op: float, f_os: float, *, os_tolerance: float = 0.05) -> PllSettings:
    """The EHXPLLL dividers that make `f_op` on CLKOP exactly (the Ethernet clock: 125 MHz is not negotiable)
    and on CLKOS the fastest clock not above `f_os` (the core: timing is closed at f_os, so never above it),
    within `os_tolerance` below it; the PFD and the VCO in range. Among equals: the highest PFD (smallest
    CLKI_DIV), then the VCO nearest 600 MHz, the middle of its range (ecppll's choice). ValueError, saying
    what was asked, when none fits."""
    if not PLL_INPUT_HZ[0] <= f_in <= PLL_INPUT_HZ[1]:
        raise ValueError(f"the PLL's input must be {PLL_INPUT_HZ[0] / 1e6:g}-{PLL_INPUT_HZ[1] / 1e6:g} MHz, "
                         f"got {f_in / 1e6:g} MHz")  # fmt: skip
    best: tuple[tuple[float, int, float], PllSettings] | None = None
    for clki_div in range(1, PLL_DIVIDER_MAX + 1):
        f_pfd = f_in / clki_div
        if not PLL_PFD_HZ[0] <= f_pfd <= PLL_PFD_HZ[1]:
            continue
        for clkfb_div in range(1, PLL_FEEDBACK_MAX + 1):
            if abs(f_pfd * clkfb_div - f_op) > f_op * PLL_EXACT:
                continue
            for clkop_div in range(1, PLL_DIVIDER_MAX + 1):
                f_vco = f_pfd * clkfb_div * clkop_div
                if not PLL_VCO_HZ[0] <= f_vco <= PLL_VCO_HZ[1]:
                    continue
                clkos_div = max(1, math.ceil(f_vco / f_os * (1 - PLL_EXACT)))
                if clkos_div > PLL_DIVIDER_MAX:
                    continue
                settings = PllSettings(f_in, clki_div, clkfb_div, clkop_div, clkos_div)
                rank = (settings.f_os, -clki_div, -abs(f_vco - 600e6))
                if best is None or rank > best[0]:
                    best = (rank, settings)
    asked = f"{f_op / 1e6:g} MHz on CLKOP and {f_os / 1e6:g} MHz on CLKOS from {f_in / 1e6:g} MHz"
    if best is None:
        raise ValueError(f"no EHXPLLL setting makes {asked} (VCO 400-800 MHz)")
    settings = best[1]
    if settings.f_os < f_os * (1 - os_tolerance):
        raise ValueError(f"no EHXPLLL setting makes {asked}: CLKOS {settings.f_os / 1e6:.4f} MHz at best, more than "
                         f"{os_tolerance:.0%} below")  # fmt: skip
    return settings


class CardClocks(wiring.Component):
    """The card's clocks and resets: the board's oscillator through an ECP5 PLL.

    Accepts the oscillator's pin (`clk_in`, `f_in` = settings.f_in) and, if the board has one, its reset
    button (`button`, pressed = 1 after the resource's inversion).
    Drives the clocks of the `eth_tx` domain (CLKOP, 125 MHz: RGMII transmit, the Ethernet side of the CDCs)
    and `sync` (CLKOS: the core), both constrained for nextpnr (add_clock_constraint on the PLL's outputs),
    and their resets: asserted at once while the PLL is unlocked, the PHY reset time has not passed, or the
    button is pressed; released synchronously to each domain's own clock (ResetSynchronizer). The receive
    domains follow eth_tx's (RgmiiPhy synchronises it), so one PLL lock covers every domain.
    Emits `phy_reset`: high for `phy_reset_seconds` of the oscillator from power-up (a reset-less counter
    that configuration clears), then low: for the PHYs' hardware reset pin.
    """

    phy_reset: Out(1)

    def __init__(
        self, clk_in: io.PortLike, settings: PllSettings, *, button: io.PortLike | None = None,
        phy_reset_seconds: float = PHY_RESET_SECONDS,
    ) -> None:  # fmt: skip
        self._clk_in, self._button = clk_in, button
        self.settings = settings
        self.phy_reset_cycles = max(1, round(phy_reset_seconds * settings.f_in))
        super().__init__()

    @classmethod
    def for_platform(
        cls, platform, settings: PllSettings, *, phy_reset_seconds: float = PHY_RESET_SECONDS
    ) -> "CardClocks":
        """From the platform's default clock (which must run at settings.f_in) and reset button, if any."""
        if platform.default_clk_frequency != settings.f_in:
            running = platform.default_clk_frequency / 1e6
            raise ValueError(f"the PLL was set up for {settings.f_in / 1e6:g} MHz, the platform's "
                             f"{platform.default_clk} runs at {running:g} MHz")  # fmt: skip
        button = platform.request(platform.default_rst, dir="-") if platform.default_rst else None
        oscillator = platform.request(platform.default_clk, dir="-")
        return cls(oscillator, settings, button=button, phy_reset_seconds=phy_reset_seconds)

    def elaborate(self, platform):
        m = Module()
        s = self.settings
        m.submodules.clk_in = clk_in = io.Buffer("i", self._clk_in)

        # Power-up: the oscillator runs from configuration on, the PLL's outputs only once locked.
        m.domains.oscillator = oscillator = ClockDomain("oscillator", reset_less=True, local=True)
        m.d.comb += oscillator.clk.eq(clk_in.i)
        count = Signal(range(self.phy_reset_cycles + 1))
        powered = Signal()
        with m.If(count != self.phy_reset_cycles):
            m.d.oscillator += count.eq(count + 1)
        m.d.oscillator += powered.eq(count == self.phy_reset_cycles)
        m.d.comb += self.phy_reset.eq(~powered)

        # `keep`: yosys merges each PLL output with the domain clock it drives and keeps one name, not
        # necessarily this one; kept, the name is an alias nextpnr finds for the LPF's FREQUENCY NET.
        clk_op, clk_os = Signal(name="pll_clkop", attrs={"keep": 1}), Signal(name="pll_clkos", attrs={"keep": 1})
        locked = Signal(name="pll_lock")
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{s.f_in / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{s.f_op / 1e6:g}",
            a_FREQUENCY_PIN_CLKOS=f"{s.f_os / 1e6:.4f}",
            # The loop filter ecppll and LiteX's ECP5PLL use.
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_FEEDBK_PATH="CLKOP", p_CLKI_DIV=s.clki_div, p_CLKFB_DIV=s.clkfb_div,
            # CPHASE = DIV - 1: no phase shift. The outputs' phases do not matter here: the domains meet
            # only through asynchronous FIFOs and synchronisers.
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=s.clkop_div, p_CLKOP_CPHASE=s.clkop_div - 1, p_CLKOP_FPHASE=0,
            p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=s.clkos_div, p_CLKOS_CPHASE=s.clkos_div - 1, p_CLKOS_FPHASE=0,
            i_CLKI=clk_in.i, i_CLKFB=clk_op, i_RST=Const(0), i_STDBY=Const(0),
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1), i_PHASESTEP=Const(1),
            i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0),
            o_CLKOP=clk_op, o_CLKOS=clk_os, o_LOCK=locked,
        )  # fmt: skip
        platform.add_clock_constraint(clk_op, s.f_op)
        platform.add_clock_constraint(clk_os, s.f_os)
        m.d.comb += [ClockSignal("eth_tx").eq(clk_op), ClockSignal("sync").eq(clk_os)]

        hold = ~locked | ~powered
        if self._button is not None:
            m.submodules.button = button = io.Buffer("i", self._button)
            hold |= button.i
        m.submodules.eth_tx_reset = ResetSynchronizer(hold, domain="eth_tx")
        m.submodules.sync_reset = ResetSynchronizer(hold, domain="sync")
        return m


# --- the core's throughput ---------------------------------------------------------------------------------


def check_core_keeps_up(data_width: int, core_hz: float, idle_cycles: int = RECEIVER_IDLE_CYCLES) -> float:
    """How busy the slowest receive path keeps the core at line rate, worst frame length: the core's time for
    a frame (its beats, a beat a cycle, then `idle_cycles` the host link's receiver takes) over the frame's
    time on the wire (with FCS, preamble, SFD and gap, a byte per 8 ns). FrameRxCDC's contract (data_width /
    8 * f_core >= 125 MHz) is the long-frame limit of this. ValueError, naming the frame length, when the
    core falls behind (a load above 1), or when the CDC's contract does not hold."""
    lanes = data_width // 8
    if lanes * core_hz < LINE_RATE_HZ:
        raise ValueError(f"a {data_width}-bit core at {core_hz / 1e6:.3f} MHz takes {lanes * core_hz / 1e6:.1f} M "
                         f"bytes/s, under the line's 125 M (FrameRxCDC's contract)")  # fmt: skip
    wire_extra = FCS_BYTES + 8 + 12  # FCS; preamble and SFD; the inter-frame gap
    worst, worst_length = 0.0, 0
    for length in range(MIN_FRAME - FCS_BYTES, MAX_FRAME - FCS_BYTES + 1):
        load = ((-(-length // lanes) + idle_cycles) / core_hz) / ((length + wire_extra) / LINE_RATE_HZ)
        if load > worst:
            worst, worst_length = load, length
    if worst > 1:
        raise ValueError(f"a {data_width}-bit core at {core_hz / 1e6:.3f} MHz falls behind the line on "
                         f"{worst_length}-byte frames ({worst:.2f} of its time)")  # fmt: skip
    return worst


# --- frames in and out -------------------------------------------------------------------------------------


class EthernetPort(wiring.Component):
    """One RGMII port of the card: pins to the core's frame beats and, with `transmit`, back.

    Receive: RgmiiPhy ─ MacRx, in `rx_domain` (the port's rx_clk; defined here) ─ FrameRxCDC ─ `rx`, in `sync`,
    `data_width` bits (whole checked frames without FCS, as MacRx passes them).
    Transmit (`transmit=True`): `tx`, in `sync` ─ FrameTxCDC ─ MacTx in `eth_tx` ─ RgmiiPhy; otherwise the
    port's TX_EN stays low.
    Emits in `sync` a one-cycle `dropped` per frame MacRx dropped (any RxDrop reason; pulse-synchronised: drops
    are at least a minimum frame apart). `pins`: an eth_rgmii resource (RgmiiPhy.from_resource; the
    management pins, if any, are the board top's). Latency and throughput: MacRx, FrameRxCDC, FrameTxCDC and
    MacTx's, in series; bad input: MacRx drops it.
    """

    def __init__(
        self, pins, data_width: int, *, rx_domain: str, transmit: bool, rx_delay: float = 0.0, tx_delay: float = 0.0
    ) -> None:
        self._pins, self.data_width, self.rx_domain, self.transmit = pins, data_width, rx_domain, transmit
        self.phy = RgmiiPhy.from_resource(pins, rx_delay=rx_delay, tx_delay=tx_delay, rx_domain=rx_domain)
        members = {"rx": Out(frame_signature(data_width)), "dropped": Out(1)}
        if transmit:
            members["tx"] = In(frame_signature(data_width))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.domains += ClockDomain(self.rx_domain)  # clock and reset: RgmiiPhy's
        m.submodules.phy = phy = self.phy
        m.submodules.mac_rx = mac_rx = DomainRenamer(self.rx_domain)(MacRx())
        m.submodules.rx_cdc = rx_cdc = FrameRxCDC(self.data_width, eth_domain=self.rx_domain)
        m.d.comb += mac_rx.gmii.eq(phy.rx)
        wiring.connect(m, mac_rx.frames, rx_cdc.i)
        wiring.connect(m, rx_cdc.o, wiring.flipped(self.rx))
        m.submodules.drops = drops = PulseSynchronizer(self.rx_domain, "sync")
        m.d.comb += [drops.i.eq(mac_rx.drop), self.dropped.eq(drops.o)]
        if self.transmit:
            m.submodules.tx_cdc = tx_cdc = FrameTxCDC(self.data_width)
            m.submodules.mac_tx = mac_tx = DomainRenamer("eth_tx")(MacTx())
            wiring.connect(m, wiring.flipped(self.tx), tx_cdc.i)
            wiring.connect(m, tx_cdc.o, mac_tx.frames)
            m.d.comb += phy.tx.eq(mac_tx.gmii)
        return m


class FrameDispatcher(wiring.Component):
    """Frames of one port to two consumers, whole: the card's CSR requests to `host`, the rest to `feed`.

    Accepts on `i` frames (hdl.stream beats, `data_width` bits). A frame goes to `host` when its header is that
    of a CSR request to the card: destination MAC `local_mac`, untagged IPv4, version 4 without options (IHL
    5), protocol UDP, destination `local_ip`, UDP destination port card_link.CSR_PORT (positions and values
    from proto.net's tables); any other frame (the multicast feed, tagged, ARP, too short) goes to `feed`.
    The host link's receiver still makes all of its checks on what it gets, the core all of its own.
    Emits each frame unchanged on its output, in arrival order over both outputs together.
    Latency: a frame's beats wait in a FIFO until its destination is known: from the beat holding the first
    header byte that differs from a CSR request's (a multicast feed frame: its first beat), else the beat
    holding the UDP port (byte 37: the tenth beat at 32 bits); a beat whose frame's destination is known is
    offered from the clock edge after the one that took it in (SyncFIFOBuffered).
    Throughput: a beat a cycle in and out; a frame waits for the one before it to leave, so back-pressure on
    one output holds the other. Bad input: none (a frame is whatever ends with `last`).
    """

    def __init__(self, data_width: int) -> None:
        self.data_width = data_width
        super().__init__(
            {
                "i": In(frame_signature(data_width)),
                "host": Out(frame_signature(data_width)),
                "feed": Out(frame_signature(data_width)),
                "local_mac": In(48),
                "local_ip": In(32),
            }
        )

    def request_header(self) -> list[tuple[int, Value]]:
        """(frame position, expected byte) of every header byte a CSR request to the card has."""
        ip_at = net.ETHERNET.length
        udp_at = ip_at + net.IPV4.length
        fields = (
            (net.ETHERNET, "destination", 0, self.local_mac),
            (net.ETHERNET, "ethertype", 0, net.ETHERTYPE_IPV4),
            (net.IPV4, "version_ihl", ip_at, net.IPV4_VERSION_4 << 4 | net.IPV4_MIN_IHL),
            (net.IPV4, "protocol", ip_at, net.IP_PROTOCOL_UDP),
            (net.IPV4, "destination", ip_at, self.local_ip),
            (net.UDP, "destination_port", udp_at, card_link.CSR_PORT),
        )
        header = []
        for layout, name, base, value in fields:
            field = layout.by_name[name]
            whole = value if isinstance(value, Value) else Const(value, 8 * field.width)
            for k in range(field.width):  # network order: the first byte is the most significant
                header.append((base + field.offset + k, whole.word_select(field.width - 1 - k, 8)))
        return header

    def elaborate(self, platform):
        m = Module()
        lanes = self.data_width // 8
        layout = frame_layout(self.data_width)
        header = self.request_header()
        decisive = max(at for at, _ in header) // lanes  # the beat that settles a CSR request
        # The FIFO holds a frame up to its decisive beat, so the verdict always comes while it has room.
        beats = m.submodules.beats = fifo.SyncFIFOBuffered(width=layout.size, depth=1 << (decisive + 1).bit_length())
        verdicts = m.submodules.verdicts = fifo.SyncFIFO(width=1, depth=4)  # per frame: 1 host, 0 feed

        # Input: compare the header bytes as their beats go into the FIFO.
        beat = self.i.payload
        index = Signal(range(decisive + 2))  # beats of this frame so far, stopping past the decisive one
        alike = Signal(init=1)  # every header byte so far is a CSR request's
        decided = Signal()  # this frame's verdict is queued
        matches = Signal()  # this beat's header bytes are a CSR request's
        with m.Switch(index):
            for k in range(decisive + 1):
                with m.Case(k):
                    terms = [(beat.data.word_select(at % lanes, 8) == byte) & beat.keep[at % lanes]
                             for at, byte in header if at // lanes == k]  # fmt: skip
                    m.d.comb += matches.eq(Cat(*terms).all() if terms else 1)
            with m.Default():
                m.d.comb += matches.eq(1)
        alike_now = alike & matches
        take = self.i.valid & self.i.ready
        decide = take & ~decided & (~alike_now | (index == decisive) | beat.last)
        m.d.comb += [
            self.i.ready.eq(beats.w_rdy & verdicts.w_rdy),
            beats.w_en.eq(take),
            beats.w_data.eq(beat),
            verdicts.w_en.eq(decide),
            verdicts.w_data.eq(alike_now & (index == decisive)),
        ]
        with m.If(take):
            with m.If(beat.last):
                m.d.sync += [index.eq(0), alike.eq(1), decided.eq(0)]
            with m.Else():
                m.d.sync += [alike.eq(alike_now), decided.eq(decided | decide)]
                with m.If(index != decisive + 1):
                    m.d.sync += index.eq(index + 1)

        # Output: the frame at the head of the FIFO, to where its verdict says.
        head = data.View(layout, beats.r_data)
        to_host = verdicts.r_data[0]
        offered = beats.r_rdy & verdicts.r_rdy
        moved = offered & Mux(to_host, self.host.ready, self.feed.ready)
        for out, chosen in ((self.host, to_host), (self.feed, ~to_host)):
            m.d.comb += [out.payload.eq(head), out.valid.eq(offered & chosen)]
        m.d.comb += [beats.r_en.eq(moved), verdicts.r_en.eq(moved & head.last)]
        return m


# --- the top -----------------------------------------------------------------------------------------------


class CardTop(Elaboratable):
    """The card on an ECP5 board: the board's Ethernet ports, the FeedHandler and the HostLink (module docstring).

    `board`: an hw.boards entry PORTS knows (colorlight-5a75b, ecpix5-85). Parameters: `mac` / `ip`, the
    card's own address (strings or integers); `core`, FeedHandler parameters (default `board.core`);
    `rx_delay` / `tx_delay`, RgmiiPhy's (default the board's, PORTS); `clocks`, what makes the clocks and
    resets (default CardClocks.for_platform; a simulation passes one that leaves the clocks to the simulator).
    The PLL settings (`pll`) and the core's clock (`core_hz`) are worked out here, from the board's
    oscillator, 125 MHz and board.core_mhz; the core's throughput is checked (check_core_keeps_up).
    LEDs: ECPIX-5, RGB LED 0 green: heartbeat (on 1/8 s every second); 1 green: a frame for the feed (lit
    50 ms); 2 blue: a frame for the host link (50 ms); 3 red: a frame a MAC dropped, any port (0.5 s).
    Colorlight (one LED): flickering after a drop, else lit while feed frames come, else the heartbeat.
    Colorlight port 1: its data pins as a resource of their own (`eth_rgmii_data` 1), added here, since
    amaranth-boards' eth_rgmii 1 repeats port 0's PHY reset, MDC and MDIO (one set for both PHYs). The PHY
    reset pin (shared) is driven from CardClocks.phy_reset; MDC is held low and MDIO left floating (pulled
    up by the PHY): the PHYs run on their strapped defaults.
    Clock constraints, one per domain for nextpnr: the oscillator (the platform's), the PLL's two outputs
    (CardClocks), each port's rx_clk at its pin (here).
    """

    def __init__(
        self,
        board: Board,
        *,
        mac: str | int = DEFAULT_MAC,
        ip: str | int = DEFAULT_IP,
        core: dict[str, int] | None = None,
        rx_delay: float | None = None,
        tx_delay: float | None = None,
        clocks: Callable[[Any, PllSettings], wiring.Component] | None = None,
    ) -> None:
        if board.name not in PORTS:
            raise ValueError(f"CardTop builds {', '.join(PORTS)}, not {board.name!r}")
        assert board.platform is not None
        self.board = board
        self.ports = PORTS[board.name]
        self.mac, self.ip = net.mac_address(mac), net.ipv4_address(ip)
        if self.mac >> 40 & 1:
            raise ValueError(f"the card's MAC must be unicast, got {net.format_mac(self.mac)}")
        self.core = dict(board.core if core is None else core)
        self.data_width = self.core.get("data_width", 64)
        self.rx_delay = self.ports.rx_delay if rx_delay is None else rx_delay
        self.tx_delay = self.ports.tx_delay if tx_delay is None else tx_delay
        self.clocks = clocks or CardClocks.for_platform
        oscillator = board.platform().default_clk_frequency
        self.pll = pll_settings(oscillator, LINE_RATE_HZ, board.core_mhz * 1e6)
        self.core_hz = self.pll.f_os
        self.receive_load = check_core_keeps_up(self.data_width, self.core_hz)
        self.feed_handler: FeedHandler | None = None  # the last elaboration's, for a simulation to reach
        self.host_link: HostLink | None = None

    def _port_pins(self, platform, index: int):
        """The pins of RGMII port `index`, requested (dir "-"): port 0's whole resource (with the PHY reset,
        MDC and MDIO, which the Colorlight's two PHYs share), another port's data pins only."""
        if index == 0:
            pins = platform.request("eth_rgmii", 0, dir="-")
        else:
            if ("eth_rgmii_data", index) not in platform.resources:
                full = platform.lookup("eth_rgmii", index)
                data_only = [sub for sub in full.ios if sub.name not in PHY_SHARED]
                platform.add_resources([Resource("eth_rgmii_data", index, *data_only, full.attrs)])
            pins = platform.request("eth_rgmii_data", index, dir="-")
        # The receive clock constrained at its pin (FREQUENCY PORT; nextpnr carries it through the input
        # buffer): a constraint on the buffer's output would name a net yosys merges away.
        if isinstance(pins.rx_clk, io.SingleEndedPort):
            platform.add_clock_constraint(pins.rx_clk.io, LINE_RATE_HZ)
        return pins

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.domains.eth_tx = ClockDomain("eth_tx")
        m.submodules.clocks = clocks = self.clocks(platform, self.pll)

        # The PHYs' management pins (port 0's resource; on the Colorlight shared with port 1's PHY).
        indices = sorted({self.ports.feed, self.ports.host})
        pins = {index: self._port_pins(platform, index) for index in indices}
        management = pins[0]
        m.submodules.phy_reset = phy_reset = io.Buffer("o", management.rst)
        m.submodules.mdc = mdc = io.Buffer("o", management.mdc)
        m.submodules.mdio = io.Buffer("io", management.mdio)  # oe low: released
        m.d.comb += [phy_reset.o.eq(clocks.phy_reset), mdc.o.eq(0)]

        ports = {}
        for index in indices:
            ports[index] = port = EthernetPort(
                pins[index], self.data_width, rx_domain=f"eth_rx{index}", transmit=index == self.ports.host,
                rx_delay=self.rx_delay, tx_delay=self.tx_delay,
            )  # fmt: skip
            m.submodules[f"port{index}"] = port

        core = m.submodules.core = self.feed_handler = FeedHandler(**self.core)
        link = m.submodules.host_link = self.host_link = HostLink(self.data_width)
        connect_feed_handler(m, link, core)
        m.d.comb += [link.local_mac.eq(self.mac), link.local_ip.eq(self.ip)]
        if self.ports.shared:
            dispatcher = m.submodules.dispatcher = FrameDispatcher(self.data_width)
            m.d.comb += [dispatcher.local_mac.eq(self.mac), dispatcher.local_ip.eq(self.ip)]
            wiring.connect(m, ports[self.ports.feed].rx, dispatcher.i)
            feed, host = dispatcher.feed, dispatcher.host
        else:
            feed, host = ports[self.ports.feed].rx, ports[self.ports.host].rx
        wiring.connect(m, host, link.rx)
        wiring.connect(m, link.tx, ports[self.ports.host].tx)
        m.d.comb += [
            core.s_axis_a_tdata.eq(feed.payload.data),
            core.s_axis_a_tkeep.eq(feed.payload.keep),
            core.s_axis_a_tlast.eq(feed.payload.last),
            core.s_axis_a_tvalid.eq(feed.valid),
            feed.ready.eq(core.s_axis_a_tready),
        ]
        if "B" in core.lines:  # a two-line core: line B idle, no second feed port on these boards
            m.d.comb += core.s_axis_b_tvalid.eq(0)

        events = {
            "feed": feed.valid & feed.ready & feed.payload.last,
            "host": host.valid & host.ready & host.payload.last,
            "error": Cat(*(port.dropped for port in ports.values())).any(),
        }
        self._leds(m, platform, events)
        return m

    def _leds(self, m: Module, platform, events: dict[str, Value]) -> None:
        second = round(self.core_hz)
        tick = Signal(range(second))  # cycles into the current second
        m.d.sync += tick.eq(Mux(tick == second - 1, 0, tick + 1))
        heartbeat = tick < second // 8
        flicker = tick[max(0, (second // 16).bit_length() - 1)]  # a bit that toggles every 1/32 to 1/16 s

        def lit_after(event: Value, seconds: float, name: str) -> Value:
            cycles = round(seconds * self.core_hz)
            left = Signal(range(cycles + 1), name=f"{name}_left")
            with m.If(event):
                m.d.sync += left.eq(cycles)
            with m.Elif(left != 0):
                m.d.sync += left.eq(left - 1)
            return left != 0

        feed = lit_after(events["feed"], STRETCH_SECONDS["activity"], "feed_activity")
        host = lit_after(events["host"], STRETCH_SECONDS["activity"], "host_activity")
        error = lit_after(events["error"], STRETCH_SECONDS["error"], "error")

        def led(number: int, value: Value) -> None:
            m.submodules[f"led{number}"] = buffer = io.Buffer("o", platform.request("led", number, dir="-"))
            m.d.comb += buffer.o.eq(value)

        def rgb_led(number: int, colour: str, value: Value) -> None:
            """One colour of an RGB LED lit by `value`; the other two driven off, not left floating."""
            pins = platform.request("rgb_led", number, dir="-")
            for c in "rgb":
                m.submodules[f"rgb_led{number}_{c}"] = buffer = io.Buffer("o", getattr(pins, c))
                m.d.comb += buffer.o.eq(value if c == colour else 0)

        if ("rgb_led", 3) in platform.resources:
            rgb_led(0, "g", heartbeat)
            rgb_led(1, "g", feed)
            rgb_led(2, "b", host)
            rgb_led(3, "r", error)
        else:
            led(0, Mux(error, flicker, feed | heartbeat))
