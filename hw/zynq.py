"""The PYNQ-Z2 build: the FeedHandler core in a Zynq block design that the driver's `pynq` backend loads.

    PS7 (ARM, DDR) --M_AXI_GP0--> AXI interconnect --+--> feed_handler_0 s_axil (the card's CSRs)
                                                      +--> axi_dma_0 S_AXI_LITE
    axi_dma_0 M_AXIS_MM2S (feed frames, look-aside) --> feed_handler_0 s_axis_a
    feed_handler_0 m_axis_bbo (512-bit records)     --> axi_dma_0 S_AXIS_S2MM
    axi_dma_0 M_AXI_SG / M_AXI_MM2S / M_AXI_S2MM   --> AXI interconnect --> PS7 S_AXI_HP0 (DDR)
    PS7 FCLK_CLK0 (`core_mhz`) clocks the PL; proc_sys_reset gives the resets; the DMA's interrupts go to
    IRQ_F2P. Line B's input is tied idle (the PS has one Ethernet port: the host feeds line A).

Names match the driver's defaults (driver/pynq_card.py: `feed_handler_0`, `axi_dma_0`); the DMA runs in
scatter-gather mode (the driver keeps S2MM on a cyclic descriptor ring), MM2S as wide as the core's
datapath, S2MM as wide as a record. The core is a module reference to the Verilog `write_verilog` emits;
the Amaranth top (`ZynqTop`) instantiates the block design's wrapper and drives the LEDs.

`build_plan(...)` is Amaranth's Vivado build plan (`platform.build(..., do_build=False)`): the Amaranth top,
the core's Verilog, the block-design Tcl (`block_design_tcl`), the constraints and the Vivado script that
creates the block design after the sources are read, generates it into the synthesis run, and copies the
hardware handoff (.hwh) next to the bitstream, which is what `pynq.Overlay` wants. Running it needs Vivado
(`plan.execute_local(...)`); without it the plan is still generated and checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib import io

from ..driver.pynq_card import DEFAULT_CSR_IP, DEFAULT_DMA_IP

__all__ = ["BD_NAME", "ZynqDesign", "ZynqTop", "block_design_tcl", "build_plan"]

BD_NAME = "wirebook_bd"
CORE_CELL = DEFAULT_CSR_IP  # the names the driver looks for
DMA_CELL = DEFAULT_DMA_IP


@dataclass(frozen=True)
class ZynqDesign:
    """What the block design is built with: the core's parameters and the PL clock."""

    data_width: int = 32
    n_instruments: int = 64
    n_orders: int = 16384
    n_levels: int = 16
    core_mhz: float = 50.0

    def core_parameters(self) -> dict[str, int]:
        return {"data_width": self.data_width, "n_instruments": self.n_instruments, "n_orders": self.n_orders,
                "n_levels": self.n_levels}  # fmt: skip


def block_design_tcl(design: ZynqDesign) -> str:
    """Vivado Tcl that creates the block design (run inside a project that has the core's Verilog)."""
    from ..proto import bbo

    record_bits = 8 * bbo.SIZE
    return f"""# wirebook: the PYNQ-Z2 block design (hw/zynq.py). Generated: do not edit.
create_bd_design "{BD_NAME}"

# The processing system: DDR and MIO from the PYNQ-Z2 board preset, one PL clock, GP0 master, HP0 slave.
set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 processing_system7_0]
apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \\
    -config {{make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"}} $ps
set_property -dict [list \\
    CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {{{design.core_mhz:g}}} \\
    CONFIG.PCW_USE_M_AXI_GP0 {{1}} \\
    CONFIG.PCW_USE_S_AXI_HP0 {{1}} \\
    CONFIG.PCW_S_AXI_HP0_DATA_WIDTH {{64}} \\
    CONFIG.PCW_USE_FABRIC_INTERRUPT {{1}} \\
    CONFIG.PCW_IRQ_F2P_INTR {{1}} \\
] $ps

# The card's core: the FeedHandler Verilog, as a module reference.
set core [create_bd_cell -type module -reference feed_handler {CORE_CELL}]

# The AXI DMA: scatter-gather; MM2S carries feed frames into the core, S2MM the core's records out.
set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma:7.1 {DMA_CELL}]
set_property -dict [list \\
    CONFIG.c_include_sg {{1}} \\
    CONFIG.c_sg_length_width {{23}} \\
    CONFIG.c_sg_include_stscntrl_strm {{0}} \\
    CONFIG.c_m_axi_mm2s_data_width {{64}} \\
    CONFIG.c_m_axis_mm2s_tdata_width {{{design.data_width}}} \\
    CONFIG.c_mm2s_burst_size {{16}} \\
    CONFIG.c_m_axi_s2mm_data_width {{64}} \\
    CONFIG.c_s_axis_s2mm_tdata_width {{{record_bits}}} \\
    CONFIG.c_s2mm_burst_size {{16}} \\
] $dma

# Clocks and resets: everything on FCLK_CLK0.
set reset [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset:5.0 proc_sys_reset_0]
connect_bd_net [get_bd_pins processing_system7_0/FCLK_CLK0] \\
    [get_bd_pins processing_system7_0/M_AXI_GP0_ACLK] [get_bd_pins processing_system7_0/S_AXI_HP0_ACLK] \\
    [get_bd_pins {CORE_CELL}/clk] [get_bd_pins {DMA_CELL}/s_axi_lite_aclk] [get_bd_pins {DMA_CELL}/m_axi_sg_aclk] \\
    [get_bd_pins {DMA_CELL}/m_axi_mm2s_aclk] [get_bd_pins {DMA_CELL}/m_axi_s2mm_aclk] \\
    [get_bd_pins proc_sys_reset_0/slowest_sync_clk]
connect_bd_net [get_bd_pins processing_system7_0/FCLK_RESET0_N] [get_bd_pins proc_sys_reset_0/ext_reset_in]
connect_bd_net [get_bd_pins proc_sys_reset_0/peripheral_reset] [get_bd_pins {CORE_CELL}/rst]
connect_bd_net [get_bd_pins proc_sys_reset_0/peripheral_aresetn] [get_bd_pins {DMA_CELL}/axi_resetn]

# Control: GP0 -> the core's CSRs and the DMA's registers (addresses assigned below).
apply_bd_automation -rule xilinx.com:bd_rule:axi4 \\
    -config {{Clk_master {{Auto}} Clk_slave {{Auto}} Clk_xbar {{Auto}} Master {{/processing_system7_0/M_AXI_GP0}} \\
             Slave {{/{CORE_CELL}/s_axil}} intc_ip {{New AXI Interconnect}} master_apm {{0}}}} \\
    [get_bd_intf_pins {CORE_CELL}/s_axil]
apply_bd_automation -rule xilinx.com:bd_rule:axi4 \\
    -config {{Clk_master {{Auto}} Clk_slave {{Auto}} Clk_xbar {{Auto}} Master {{/processing_system7_0/M_AXI_GP0}} \\
             Slave {{/{DMA_CELL}/S_AXI_LITE}} intc_ip {{Auto}} master_apm {{0}}}} \\
    [get_bd_intf_pins {DMA_CELL}/S_AXI_LITE]

# Data: the DMA's three masters -> HP0 -> DDR.
foreach master {{M_AXI_SG M_AXI_MM2S M_AXI_S2MM}} {{
    apply_bd_automation -rule xilinx.com:bd_rule:axi4 \\
        -config [list Clk_master {{Auto}} Clk_slave {{Auto}} Clk_xbar {{Auto}} Master /{DMA_CELL}/$master \\
                 Slave {{/processing_system7_0/S_AXI_HP0}} intc_ip {{Auto}} master_apm {{0}}] \\
        [get_bd_intf_pins processing_system7_0/S_AXI_HP0]
}}

# Streams: feed frames into line A, records out; line B idle (the PS has the only Ethernet port).
connect_bd_intf_net [get_bd_intf_pins {DMA_CELL}/M_AXIS_MM2S] [get_bd_intf_pins {CORE_CELL}/s_axis_a]
connect_bd_intf_net [get_bd_intf_pins {CORE_CELL}/m_axis_bbo] [get_bd_intf_pins {DMA_CELL}/S_AXIS_S2MM]
set idle [create_bd_cell -type ip -vlnv xilinx.com:ip:xlconstant:1.1 line_b_idle]
set_property -dict [list CONFIG.CONST_VAL {{0}} CONFIG.CONST_WIDTH {{1}}] $idle
connect_bd_net [get_bd_pins line_b_idle/dout] [get_bd_pins {CORE_CELL}/s_axis_b_tvalid]

# Interrupts: the DMA's two channels to the PS.
set irq [create_bd_cell -type ip -vlnv xilinx.com:ip:xlconcat:2.1 irq_concat]
connect_bd_net [get_bd_pins {DMA_CELL}/mm2s_introut] [get_bd_pins irq_concat/In0]
connect_bd_net [get_bd_pins {DMA_CELL}/s2mm_introut] [get_bd_pins irq_concat/In1]
connect_bd_net [get_bd_pins irq_concat/dout] [get_bd_pins processing_system7_0/IRQ_F2P]

# The PL clock and reset also leave the block design, for the top's LEDs.
make_bd_pins_external [get_bd_pins processing_system7_0/FCLK_CLK0]
make_bd_pins_external [get_bd_pins proc_sys_reset_0/peripheral_aresetn]

assign_bd_address
validate_bd_design
save_bd_design
"""


class ZynqTop(Elaboratable):
    """The PYNQ-Z2 top: the block design's wrapper (PS7, DMA, core) and LEDs: a heartbeat of the PL clock
    on LED 0, reset released on LED 1."""

    def elaborate(self, platform):
        m = Module()
        fclk, aresetn = Signal(), Signal()
        m.submodules.bd = Instance(f"{BD_NAME}_wrapper", o_FCLK_CLK0_0=fclk, o_peripheral_aresetn_0=aresetn)
        m.domains.sync = sync = ClockDomain("sync")
        m.d.comb += [sync.clk.eq(fclk), sync.rst.eq(~aresetn)]
        beat = Signal(26)
        m.d.sync += beat.eq(beat + 1)
        if platform is not None:
            for index, value in enumerate((beat[-1], aresetn)):
                led = m.submodules[f"led_{index}"] = io.Buffer("o", platform.request("led", index, dir="-"))
                m.d.comb += led.o.eq(value)
        return m


VIVADO_AFTER_READ = f"""\
source {BD_NAME}.tcl
set_property synth_checkpoint_mode None [get_files {BD_NAME}.bd]
generate_target all [get_files {BD_NAME}.bd]
add_files -norecurse [make_wrapper -files [get_files {BD_NAME}.bd] -top]
"""


def _copy_handoff(name: str) -> str:
    """Tcl run after write_bitstream: the block design's hardware handoff next to the bitstream."""
    return (
        f"file copy -force [lindex [glob -directory [get_property DIRECTORY [current_project]] "
        f"{{*.gen/sources_1/bd/{BD_NAME}/hw_handoff/{BD_NAME}.hwh}}] 0] {name}.hwh\n"
    )


def build_plan(design: ZynqDesign = ZynqDesign(), name: str = "wirebook"):
    """Amaranth's Vivado build plan for the PYNQ-Z2 (see the module docstring)."""
    from amaranth.back import verilog

    from ..hdl.feed_handler import FeedHandler
    from .platforms.pynq_z2 import PynqZ2Platform

    platform = PynqZ2Platform()
    core = verilog.convert(FeedHandler(**design.core_parameters()), name="feed_handler", emit_src=False)
    platform.add_file("feed_handler.v", core)
    platform.add_file(f"{BD_NAME}.tcl", block_design_tcl(design))
    return platform.build(
        ZynqTop(), name=name, do_build=False,
        script_after_read=VIVADO_AFTER_READ,
        script_after_bitstream=_copy_handoff(name),
    )  # fmt: skip
