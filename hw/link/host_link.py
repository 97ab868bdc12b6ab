"""The host link as one component: CSR server, record sender and the transmit arbiter between them."""

from __future__ import annotations

from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...hdl.stream import RECORD_BITS, frame_signature
from ...proto.registers import REGISTERS
from .axi_lite_master import axi_lite_initiator_members
from .csr_server import CsrServer
from .record_sender import DEFAULT_FLUSH_CYCLES, SUBSCRIBER, RecordSender
from .tx_arbiter import TxArbiter

__all__ = ["RESPONSES", "STROBES", "HostLink", "connect_feed_handler", "connect_registers"]

RESPONSES, RECORDS = 0, 1  # TX arbiter inputs: responses go first
STROBES = ("requests", "repeats", "bad_requests", "frames_ignored", "frames_overrun", "records_dropped",
           "packets_sent")  # fmt: skip
"""The link's one-cycle event strobes (for counters; see CsrServer and RecordSender)."""


class HostLink(wiring.Component):
    """The card's host-facing port: proto/card_link.py in gateware (sim/net_card.py is its model).

    Accepts on `rx` the port's received frames and answers CSR requests over `m_axil_*` (to the core's
    `s_axil_*`) as CsrServer says; takes the core's BBO records on `bbo` and sends them to the subscriber
    as RecordSender says (`flush_cycles`: idle cycles before a packet that is not full goes out). The
    card's own address is `local_mac` / `local_ip` (inputs: the board top ties them to its constants;
    they cannot come from the CSRs, which are reached through them).
    Emits on `tx` the responses and the record packets, whole frames, never interleaved; a response goes
    before a record packet waiting with it (TxArbiter, responses on input 0): a response waits at most
    for the record packet under way (1466 bytes when full), and record packets wait at most one response
    (one request is answered at a time). `subscriber` shows where records go; the strobes in STROBES
    count events. Latency, throughput and bad input: as CsrServer, RecordSender and TxArbiter say; the
    only back-pressure into the core is on `bbo`, while both record banks are full.
    """

    def __init__(self, data_width: int = 64, *, addr_width: int = REGISTERS.address_width) -> None:
        self.data_width = data_width
        self.addr_width = addr_width
        super().__init__(
            {
                "rx": In(frame_signature(data_width)),
                "tx": Out(frame_signature(data_width)),
                "local_mac": In(48),
                "local_ip": In(32),
                **axi_lite_initiator_members(addr_width),
                "bbo": In(stream.Signature(unsigned(RECORD_BITS))),
                "flush_cycles": In(16, init=DEFAULT_FLUSH_CYCLES),
                "subscriber": Out(SUBSCRIBER),
                **{name: Out(1) for name in STROBES},
            }
        )

    def elaborate(self, platform):
        m = Module()
        server = m.submodules.server = CsrServer(self.data_width, addr_width=self.addr_width)
        sender = m.submodules.sender = RecordSender(self.data_width)
        arbiter = m.submodules.arbiter = TxArbiter(self.data_width, 2)
        wiring.connect(m, wiring.flipped(self.rx), server.rx)
        wiring.connect(m, wiring.flipped(self.bbo), sender.records)
        wiring.connect(m, server.subscribe, sender.subscribe)
        wiring.connect(m, server.tx, arbiter.inputs[RESPONSES])
        wiring.connect(m, sender.tx, arbiter.inputs[RECORDS])
        wiring.connect(m, arbiter.frames, wiring.flipped(self.tx))
        for name, member in axi_lite_initiator_members(self.addr_width).items():
            ours, theirs = getattr(self, name), getattr(server, name)
            m.d.comb += ours.eq(theirs) if member.flow == Out else theirs.eq(ours)
        m.d.comb += [
            server.local_mac.eq(self.local_mac),
            server.local_ip.eq(self.local_ip),
            sender.local_mac.eq(self.local_mac),
            sender.local_ip.eq(self.local_ip),
            sender.flush_cycles.eq(self.flush_cycles),
            self.subscriber.eq(sender.subscriber),
        ]
        for name in STROBES:
            source = sender if name in sender.signature.members else server
            m.d.comb += getattr(self, name).eq(getattr(source, name))
        return m


def connect_registers(m: Module, link: HostLink, target) -> None:
    """Wire `link`'s AXI4-Lite master to the flat `s_axil_*` ports of `target` (a FeedHandler, a CsrBank)."""
    for name, member in axi_lite_initiator_members(link.addr_width).items():
        ours, theirs = getattr(link, name), getattr(target, name.replace("m_axil_", "s_axil_", 1))
        m.d.comb += theirs.eq(ours) if member.flow == Out else ours.eq(theirs)


def connect_feed_handler(m: Module, link: HostLink, core) -> None:
    """Wire `link` to a FeedHandler `core`: its registers (connect_registers), and the core's `m_axis_bbo_*`
    records to `link.bbo` (the record is the whole 512-bit beat; tkeep and tlast, always set by the core,
    are not looked at)."""
    connect_registers(m, link, core)
    m.d.comb += [
        link.bbo.payload.eq(core.m_axis_bbo_tdata),
        link.bbo.valid.eq(core.m_axis_bbo_tvalid),
        core.m_axis_bbo_tready.eq(link.bbo.ready),
    ]
