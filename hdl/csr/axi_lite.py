"""An AXI4-Lite target that turns bus transactions into register accesses of any latency.

The AXI side is the five standard channels (AW, W, B, AR, R) with 32-bit data and byte strobes, as flat
ports named `s_axil_awaddr`, `s_axil_wdata`, ... so that the converted Verilog module's ports are the
names Vivado infers an AXI4-Lite slave interface from. The register side is `CsrBus`: an address and a
one-cycle write or read strobe; the register file answers with `done` as many cycles later as it needs.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RESP_OKAY", "RESP_SLVERR", "AxiLiteTarget", "CsrBusSignature", "axi_lite_target_members"]

DATA_WIDTH = 32
RESP_OKAY = 0b00
RESP_SLVERR = 0b10


def axi_lite_target_members(addr_width: int) -> dict[str, wiring.Member]:
    """The AXI4-Lite channels seen from the target (slave), named as Vivado infers them."""
    return {
        "s_axil_awaddr": In(addr_width),
        "s_axil_awprot": In(3),
        "s_axil_awvalid": In(1),
        "s_axil_awready": Out(1),
        "s_axil_wdata": In(DATA_WIDTH),
        "s_axil_wstrb": In(DATA_WIDTH // 8),
        "s_axil_wvalid": In(1),
        "s_axil_wready": Out(1),
        "s_axil_bresp": Out(2),
        "s_axil_bvalid": Out(1),
        "s_axil_bready": In(1),
        "s_axil_araddr": In(addr_width),
        "s_axil_arprot": In(3),
        "s_axil_arvalid": In(1),
        "s_axil_arready": Out(1),
        "s_axil_rdata": Out(DATA_WIDTH),
        "s_axil_rresp": Out(2),
        "s_axil_rvalid": Out(1),
        "s_axil_rready": In(1),
    }


class CsrBusSignature(wiring.Signature):
    """The register-file side of `AxiLiteTarget`, seen from the target (the initiator).

    In a cycle with `w_stb`, the register file is asked to write the bytes of `w_data` selected by `w_strb`
    at the byte address `addr`; in a cycle with `r_stb`, to read `addr`. `addr`, `w_data` and `w_strb` are
    only meaningful in the strobe cycle (the register file keeps what it needs). At most one strobe is high
    in a cycle, and the initiator issues no strobe from a strobe until the cycle after the register file
    answers: `done` high for one cycle, any number of cycles (at least one) after the strobe, with `error`
    (1: answer SLVERR) and, after a read, `r_data` valid in that cycle.
    """

    def __init__(self, addr_width: int):
        self.addr_width = addr_width
        super().__init__(
            {
                "addr": Out(addr_width),
                "w_stb": Out(1),
                "w_data": Out(DATA_WIDTH),
                "w_strb": Out(DATA_WIDTH // 8),
                "r_stb": Out(1),
                "done": In(1),
                "r_data": In(DATA_WIDTH),
                "error": In(1),
            }
        )


class AxiLiteTarget(wiring.Component):
    """AXI4-Lite slave in front of a `CsrBus` register file.

    AW and W are accepted in either order or together, each into its own holding register; AR into a third.
    A write is issued on the bus once both AW and W are held, a read once AR is held, each only while the
    bus is idle (no access between its strobe and its `done`); when both are ready, the write goes first.
    The response is on B (OKAY, or SLVERR when the register file raises `error`) or on R (with the read
    data) the cycle after `done`. One transaction is outstanding per direction: AWREADY/WREADY stay low from
    the issue of a write until its B handshake, ARREADY from the issue of a read until its R handshake; so
    one write and one read may be in flight together, taking turns on the bus.
    Latency on an idle bus: the strobe is the cycle after the later of the AW and W handshakes (after the
    AR handshake for a read); BVALID / RVALID rise 1 cycle after the register file's `done`. AxPROT is
    ignored; the low 2 address bits are passed on (the register file ignores them).
    """

    def __init__(self, addr_width: int):
        if addr_width < 2:
            raise ValueError(f"AXI4-Lite address width must be at least 2 (32-bit words), got {addr_width}")
        self.addr_width = addr_width
        super().__init__({**axi_lite_target_members(addr_width), "bus": Out(CsrBusSignature(addr_width))})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        # Write address and data, each held until the write issues.
        aw_full, aw_addr = Signal(), Signal(self.addr_width)
        w_full, w_data, w_strb = Signal(), Signal(DATA_WIDTH), Signal(DATA_WIDTH // 8)
        ar_full, ar_addr = Signal(), Signal(self.addr_width)
        # The access on the bus, from its strobe until its `done`.
        writing, reading = Signal(), Signal()
        b_busy = writing | self.s_axil_bvalid
        r_busy = reading | self.s_axil_rvalid

        m.d.comb += [
            self.s_axil_awready.eq(~aw_full & ~b_busy),
            self.s_axil_wready.eq(~w_full & ~b_busy),
            self.s_axil_arready.eq(~ar_full & ~r_busy),
        ]
        with m.If(self.s_axil_awvalid & self.s_axil_awready):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(self.s_axil_awaddr)]
        with m.If(self.s_axil_wvalid & self.s_axil_wready):
            m.d.sync += [w_full.eq(1), w_data.eq(self.s_axil_wdata), w_strb.eq(self.s_axil_wstrb)]
        with m.If(self.s_axil_arvalid & self.s_axil_arready):
            m.d.sync += [ar_full.eq(1), ar_addr.eq(self.s_axil_araddr)]

        bus_idle = ~writing & ~reading
        issue_write = bus_idle & aw_full & w_full
        issue_read = bus_idle & ar_full & ~issue_write
        m.d.comb += [
            bus.addr.eq(Mux(issue_write, aw_addr, ar_addr)),
            bus.w_stb.eq(issue_write),
            bus.w_data.eq(w_data),
            bus.w_strb.eq(w_strb),
            bus.r_stb.eq(issue_read),
        ]
        with m.If(issue_write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), writing.eq(1)]
        with m.If(issue_read):
            m.d.sync += [ar_full.eq(0), reading.eq(1)]

        # A response register follows the bus until its VALID rises (with `done`), then holds.
        response = Mux(bus.error, RESP_SLVERR, RESP_OKAY)
        with m.If(~self.s_axil_bvalid):
            m.d.sync += self.s_axil_bresp.eq(response)
        with m.If(~self.s_axil_rvalid):
            m.d.sync += [self.s_axil_rresp.eq(response), self.s_axil_rdata.eq(bus.r_data)]
        with m.If(bus.done & writing):
            m.d.sync += [writing.eq(0), self.s_axil_bvalid.eq(1)]
        with m.Elif(self.s_axil_bready):
            m.d.sync += self.s_axil_bvalid.eq(0)
        with m.If(bus.done & reading):
            m.d.sync += [reading.eq(0), self.s_axil_rvalid.eq(1)]
        with m.Elif(self.s_axil_rready):
            m.d.sync += self.s_axil_rvalid.eq(0)
        return m
