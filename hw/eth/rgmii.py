"""RGMII (gigabit only) to a GMII-like byte interface, through the FPGA's DDR I/O registers.

RGMII carries a GMII byte per 125 MHz cycle on four data wires and one control wire, both edges:

    rx_clk / tx_clk   ‾‾‾‾\\____/‾‾‾‾\\____
    rx_data/tx_data   < 3:0 >< 7:4 >< 3:0 >...   bits 3:0 of the byte on the rising edge, 7:4 on the falling
    rx_ctl / tx_ctl   < DV  ><DV^ER>             RX_DV (TX_EN) on the rising edge, DV xor ER on the falling

The pins go through `amaranth.lib.io.DDRBuffer`s (IDDRX1F / ODDRX1F on ECP5: `i[0]`/`o[0]` is the
rising-edge half, `i[1]`/`o[1]` the falling-edge half of the same cycle); the byte-level logic
(`RgmiiRx`, `RgmiiTx`) sits behind them and is what the simulator tests, with a behavioural DDR model in
place of the vendor primitives.

(No `from __future__ import annotations` here: wiring.Component reads the class-level signature
annotations as objects.)
"""

from amaranth.hdl import Cat, ClockSignal, Const, DomainRenamer, Instance, Module, ResetSignal, Signal
from amaranth.lib import data, enum, io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["GMII", "LINK_STATUS", "RgmiiPhy", "RgmiiRx", "RgmiiTx", "Speed"]

LINE_RATE_HZ = 125e6  # a byte a cycle at 1 Gb/s
DELAY_TAP = 25e-12  # one step of the ECP5's DELAYG, nominal (the figure LiteEth's ECP5 PHY uses too)
MAX_DELAY_TAPS = 127

GMII = data.StructLayout({"data": 8, "valid": 1, "error": 1})
"""A GMII byte: RX_DV / TX_EN is `valid`, RX_ER / TX_ER is `error`; one per 125 MHz cycle, no flow control."""


class Speed(enum.Enum, shape=2):
    MBPS_10 = 0
    MBPS_100 = 1
    MBPS_1000 = 2


LINK_STATUS = data.StructLayout({"link_up": 1, "speed": Speed, "full_duplex": 1})
"""What a PHY reports in band on RXD between frames (RGMII 2.0 in-band status), when set up to."""


class RgmiiRx(wiring.Component):
    """Receive half, byte level: the two halves of each rx_clk cycle into a GMII byte.

    Accepts, every cycle: `ctl` and `data` as the DDR input registers deliver them (index 0 the rising
    edge, 1 the following falling edge).
    Emits, registered (latency 1 cycle, one byte a cycle): `rx.data` = {falling nibble, rising nibble},
    `rx.valid` = RX_DV (the rising-edge ctl), `rx.error` = RX_ER (rising xor falling ctl). Between frames
    (RX_DV and RX_ER low) `status` takes the in-band link status from the rising-edge nibble.
    Bad input: none to reject; an RX_ER is passed on for the MAC to drop the frame.
    """

    ctl: In(data.ArrayLayout(1, 2))
    data: In(data.ArrayLayout(4, 2))
    rx: Out(GMII)
    status: Out(LINK_STATUS)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [
            self.rx.data.eq(Cat(self.data[0], self.data[1])),
            self.rx.valid.eq(self.ctl[0]),
            self.rx.error.eq(self.ctl[0] ^ self.ctl[1]),
        ]
        with m.If(~self.ctl[0] & ~self.ctl[1]):
            m.d.sync += self.status.eq(self.data[0])
        return m


class RgmiiTx(wiring.Component):
    """Transmit half, byte level: a GMII byte into the two halves of a tx_clk cycle.

    Accepts, every cycle: `tx` (data, valid = TX_EN, error = TX_ER).
    Emits, combinationally (the DDR output registers are the pipeline): `data[0]` = bits 3:0 (rising
    edge), `data[1]` = bits 7:4 (falling edge), `ctl[0]` = TX_EN, `ctl[1]` = TX_EN xor TX_ER.
    Latency 0; one byte a cycle; no bad input.
    """

    tx: In(GMII)
    ctl: Out(data.ArrayLayout(1, 2))
    data: Out(data.ArrayLayout(4, 2))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.data[0].eq(self.tx.data[:4]),
            self.data[1].eq(self.tx.data[4:]),
            self.ctl[0].eq(self.tx.valid),
            self.ctl[1].eq(self.tx.valid ^ self.tx.error),
        ]
        return m


def delay_taps(seconds: float) -> int:
    """ECP5 DELAYG taps for a delay (rounded to the nearest tap); ValueError past the element's range."""
    taps = round(seconds / DELAY_TAP)
    if not 0 <= taps <= MAX_DELAY_TAPS:
        most = MAX_DELAY_TAPS * DELAY_TAP * 1e9
        raise ValueError(f"a DELAYG delays 0 to {most:.2f} ns, asked for {seconds * 1e9:.2f} ns")
    return taps


class RgmiiPhy(wiring.Component):
    """A gigabit RGMII port: pins to GMII bytes, receive in `rx_domain`, transmit in `tx_domain`.

    Accepts the six RGMII ports (`amaranth.lib.io` port-likes; `from_resource` takes a requested
    `eth_rgmii` resource), and in `tx_domain` (125 MHz from the board's PLL, defined by the board top) a
    GMII byte a cycle on `tx`.
    Emits, in `rx_domain`: a GMII byte a cycle on `rx`, and `status` (in-band link status, see RgmiiRx).
    The board top defines `rx_domain` (`m.domains.eth_rx = ClockDomain()`); this component drives its
    clock from rx_clk (the board top constrains it to 125 MHz at its pin) and its reset through a
    ResetSynchronizer from `tx_domain`'s, so the board's one PLL-lock reset covers both.

    Clock/data alignment, the board's choice (RGMII launches clock and data together; someone has to
    delay the clock ~2 ns, or the data as seen against it):
    - `rx_delay` (seconds, default 2 ns, LiteEth's ECP5 default, which its Colorlight targets keep):
      rx_ctl / rx_data pass an ECP5 DELAYG before their IDDRX1F. 0: no delay element, the pins feed
      `io.DDRBuffer`s directly (a PHY that delays RXC itself, RGMII-RXID; and the only setting that
      simulates or builds for a non-ECP5 platform).
    - `tx_delay` (seconds, default 0): tx_clk is an ODDRX1F copy of the tx clock (high in the first half
      of each cycle), launched with the data; 0 relies on the PHY's internal TXC delay (RGMII-TXID, as
      LiteEth's Colorlight targets do); > 0 delays tx_clk by a DELAYG so the PHY sees each edge centred
      on its data half (use 2e-9 for a PHY without TX delay).
    Latency: rx pins -> `rx`: the IDDRX1F (one rx_clk cycle) then RgmiiRx (one); `tx` -> pins: the
    ODDRX1F's pipeline, the same for tx_clk, tx_ctl and tx_data. Throughput: a byte a cycle each way.
    Only 1000BASE-T: at 10/100 Mb/s RGMII clocks a nibble, not a byte, per cycle.
    """

    rx: Out(GMII)
    status: Out(LINK_STATUS)
    tx: In(GMII)

    def __init__(
        self,
        *,
        rx_clk: io.PortLike,
        rx_ctl: io.PortLike,
        rx_data: io.PortLike,
        tx_clk: io.PortLike,
        tx_ctl: io.PortLike,
        tx_data: io.PortLike,
        rx_delay: float = 2e-9,
        tx_delay: float = 0.0,
        rx_domain: str = "eth_rx",
        tx_domain: str = "eth_tx",
    ) -> None:
        ports = {"rx_clk": (rx_clk, 1), "rx_ctl": (rx_ctl, 1), "rx_data": (rx_data, 4),
                 "tx_clk": (tx_clk, 1), "tx_ctl": (tx_ctl, 1), "tx_data": (tx_data, 4)}  # fmt: skip
        for name, (port, width) in ports.items():
            if len(port) != width:
                raise ValueError(f"RGMII {name} must be {width} bit(s) wide, got {len(port)}")
        self._ports = {name: port for name, (port, _) in ports.items()}
        self.rx_delay_taps, self.tx_delay_taps = delay_taps(rx_delay), delay_taps(tx_delay)
        self.rx_domain, self.tx_domain = rx_domain, tx_domain
        super().__init__()

    @classmethod
    def from_resource(cls, pins, **parameters) -> "RgmiiPhy":
        """From `platform.request("eth_rgmii", n, dir="-")`: amaranth-boards names the control pins
        `rx_ctl` / `tx_ctl` on some boards (Colorlight) and `rx_ctrl` / `tx_ctrl` on others (ECPIX-5)."""

        def pin(*names):
            for name in names:
                if hasattr(pins, name):
                    return getattr(pins, name)
            raise AttributeError(f"the RGMII resource has none of {names}")

        return cls(
            rx_clk=pin("rx_clk"),
            rx_ctl=pin("rx_ctl", "rx_ctrl"),
            rx_data=pin("rx_data"),
            tx_clk=pin("tx_clk"),
            tx_ctl=pin("tx_ctl", "tx_ctrl"),
            tx_data=pin("tx_data"),
            **parameters,
        )

    def elaborate(self, platform):
        for what, taps in (("rx_delay", self.rx_delay_taps), ("tx_delay", self.tx_delay_taps)):
            if taps and getattr(platform, "family", None) != "ecp5":
                raise NotImplementedError(f"RgmiiPhy {what} uses the ECP5's DELAYG; on {platform!r} set it to 0")
        m = Module()
        ports = self._ports

        def ddr_input(name, domain):
            """The rising- and falling-edge halves of an input port, as IDDRX1F gives them."""
            if not self.rx_delay_taps:
                m.submodules[f"{name}_ddr"] = buffer = io.DDRBuffer("i", ports[name], i_domain=domain)
                return buffer.i[0], buffer.i[1]
            m.submodules[f"{name}_buffer"] = pad = io.Buffer("i", ports[name])
            rise, fall = Signal(len(pad.i), name=f"{name}_rise"), Signal(len(pad.i), name=f"{name}_fall")
            for bit in range(len(pad.i)):
                delayed = Signal(name=f"{name}_delayed{bit}")
                m.submodules[f"{name}_delay{bit}"] = Instance(
                    "DELAYG", p_DEL_MODE="USER_DEFINED", p_DEL_VALUE=self.rx_delay_taps, i_A=pad.i[bit], o_Z=delayed
                )
                m.submodules[f"{name}_ddr{bit}"] = Instance(
                    "IDDRX1F", i_SCLK=ClockSignal(domain), i_RST=Const(0), i_D=delayed, o_Q0=rise[bit], o_Q1=fall[bit]
                )
            return rise, fall

        # Receive: rx_clk clocks the receive domain (defined above us: Amaranth 0.6 wants a domain defined at
        # or above every module using it, and MacRx beside us uses it).
        m.submodules.rx_clk_buffer = rx_clk = io.Buffer("i", ports["rx_clk"])
        # Its 125 MHz constraint is the board top's, at the pin (CardTop._port_pins): a constraint on this
        # buffer's output names a net yosys merges away, and nextpnr would ignore it with a warning.
        m.d.comb += ClockSignal(self.rx_domain).eq(rx_clk.i)
        m.submodules.rx_reset = ResetSynchronizer(ResetSignal(self.tx_domain), domain=self.rx_domain)
        m.submodules.rx = rx = DomainRenamer(self.rx_domain)(RgmiiRx())
        for name, member in (("rx_ctl", rx.ctl), ("rx_data", rx.data)):
            rise, fall = ddr_input(name, self.rx_domain)
            m.d.comb += [member[0].eq(rise), member[1].eq(fall)]
        m.d.comb += [self.rx.eq(rx.rx), self.status.eq(rx.status)]

        # Transmit: clock, control and data through the same kind of output register, so they stay aligned.
        m.submodules.tx = tx = RgmiiTx()
        m.submodules.tx_ctl_ddr = tx_ctl = io.DDRBuffer("o", ports["tx_ctl"], o_domain=self.tx_domain)
        m.submodules.tx_data_ddr = tx_data = io.DDRBuffer("o", ports["tx_data"], o_domain=self.tx_domain)
        m.d.comb += [tx.tx.eq(self.tx), tx_ctl.o.eq(tx.ctl), tx_data.o.eq(tx.data)]
        if not self.tx_delay_taps:
            m.submodules.tx_clk_ddr = tx_clk = io.DDRBuffer("o", ports["tx_clk"], o_domain=self.tx_domain)
            m.d.comb += [tx_clk.o[0].eq(1), tx_clk.o[1].eq(0)]
        else:
            m.submodules.tx_clk_buffer = pad = io.Buffer("o", ports["tx_clk"])
            forwarded = Signal()
            m.submodules.tx_clk_ddr = Instance(
                "ODDRX1F", i_SCLK=ClockSignal(self.tx_domain), i_RST=Const(0), i_D0=Const(1), i_D1=Const(0),
                o_Q=forwarded,
            )  # fmt: skip
            m.submodules.tx_clk_delay = Instance(
                "DELAYG", p_DEL_MODE="USER_DEFINED", p_DEL_VALUE=self.tx_delay_taps, i_A=forwarded, o_Z=pad.o
            )
        return m
