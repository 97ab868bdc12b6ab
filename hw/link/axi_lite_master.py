"""An AXI4-Lite master that runs one register access at a time: the other end of hdl/csr's target."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...hdl.csr.axi_lite import DATA_WIDTH, RESP_OKAY, axi_lite_target_members

__all__ = ["AxiLiteMaster", "access_layout", "axi_lite_initiator_members"]

RESULT = data.StructLayout({"error": 1, "data": unsigned(DATA_WIDTH)})
"""What an access gave: `error` for any response but OKAY (the bank's SLVERR), `data` of a read (else 0)."""


def access_layout(addr_width: int) -> data.StructLayout:
    """One register access: a read, or a write of `data`'s bytes that `strobe` selects, at byte `address`."""
    return data.StructLayout(
        {"write": 1, "address": unsigned(addr_width), "data": unsigned(DATA_WIDTH), "strobe": unsigned(DATA_WIDTH // 8)}
    )


def axi_lite_initiator_members(addr_width: int) -> dict[str, wiring.Member]:
    """The AXI4-Lite channels seen from the master: hdl.csr's target members flipped, named `m_axil_*`."""
    prefix = "s_axil_"
    return {
        f"m_axil_{name[len(prefix) :]}": member.flip() for name, member in axi_lite_target_members(addr_width).items()
    }


class AxiLiteMaster(wiring.Component):
    """Register accesses in, AXI4-Lite transactions on the flat `m_axil_*` ports, results out.

    Accepts on `command` one access (access_layout) at a time, taken when the previous result has been
    taken. A write raises AWVALID and WVALID together (each drops at its own handshake) with BREADY high
    until the response; a read raises ARVALID, with RREADY high until the response. AxPROT is 0.
    Emits on `result` (RESULT) the response: `error` for SLVERR or DECERR, `data` the read data of an
    OKAY read and 0 otherwise, held until taken.
    Latency: AxVALID rise the cycle after the command is taken; `result` is valid the cycle after the B or
    R handshake. Throughput: one transaction at a time. Bad input: none (a target that never answers
    stalls it; the bank always answers).
    """

    def __init__(self, addr_width: int) -> None:
        self.addr_width = addr_width
        super().__init__(
            {
                "command": In(stream.Signature(access_layout(addr_width))),
                "result": Out(stream.Signature(RESULT)),
                **axi_lite_initiator_members(addr_width),
            }
        )

    def elaborate(self, platform):
        m = Module()
        command, result = self.command, self.result
        access = command.payload
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += command.ready.eq(1)
                with m.If(command.valid):
                    with m.If(access.write):
                        m.d.sync += [
                            self.m_axil_awaddr.eq(access.address),
                            self.m_axil_awvalid.eq(1),
                            self.m_axil_wdata.eq(access.data),
                            self.m_axil_wstrb.eq(access.strobe),
                            self.m_axil_wvalid.eq(1),
                        ]
                        m.next = "WRITE"
                    with m.Else():
                        m.d.sync += [self.m_axil_araddr.eq(access.address), self.m_axil_arvalid.eq(1)]
                        m.next = "READ"
            with m.State("WRITE"):
                m.d.comb += self.m_axil_bready.eq(1)
                with m.If(self.m_axil_awready):
                    m.d.sync += self.m_axil_awvalid.eq(0)
                with m.If(self.m_axil_wready):
                    m.d.sync += self.m_axil_wvalid.eq(0)
                with m.If(self.m_axil_bvalid):
                    m.d.sync += [result.payload.error.eq(self.m_axil_bresp != RESP_OKAY), result.payload.data.eq(0)]
                    m.next = "RESULT"
            with m.State("READ"):
                m.d.comb += self.m_axil_rready.eq(1)
                with m.If(self.m_axil_arready):
                    m.d.sync += self.m_axil_arvalid.eq(0)
                with m.If(self.m_axil_rvalid):
                    error = self.m_axil_rresp != RESP_OKAY
                    m.d.sync += [
                        result.payload.error.eq(error),
                        result.payload.data.eq(Mux(error, 0, self.m_axil_rdata)),
                    ]
                    m.next = "RESULT"
            with m.State("RESULT"):
                m.d.comb += result.valid.eq(1)
                with m.If(result.ready):
                    m.next = "IDLE"
        return m
