"""`wirebook hw build`'s ECP5 flow, run for real on a small design: the Colorlight 5A-75B's platform with a
counter on its LED in place of the card top, through YoWASP's yosys, nextpnr-ecp5 (timing report) and
ecppack, in seconds (the first YoWASP call on a machine compiles each tool, about a minute).

Checked: the build's result (the clock timed against its constraint, the device's use), a .bit that is an
ECP5 bitstream for the LFE5U-25F (the sysCONFIG preamble, the device's IDCODE after VERIFY_ID), an .svf that
checks the IDCODE over JTAG before programming, nextpnr's report agreeing with the result, and the progress
lines. The card itself does not route on the 25F yet (bench/results/boards_built.md).
"""

from __future__ import annotations

import json

import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io
from ecp5_bitstream import assert_bitstream_for

from wirebook.hw import build as hw_build
from wirebook.hw import card_top

LFE5U_25F_IDCODE = 0x41111043  # Lattice ECP5 family data sheet (DS1044), JTAG IDCODE table
OSCILLATOR_MHZ = 25.0  # the Colorlight's oscillator, the platform's default clock


class Blinky(Elaboratable):
    """The LED toggling every 2**23 cycles of the board's oscillator: CardTop's stand-in."""

    def __init__(self, board) -> None:
        self.board = board

    def elaborate(self, platform):
        m = Module()
        count = Signal(24)
        m.d.sync += count.eq(count + 1)
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += led.o.eq(count[-1])
        return m


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colorlight-blinky")
    said: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(card_top, "CardTop", Blinky)
        result = hw_build.build("colorlight-5a75b", folder, said.append)
    return folder, result, said


def test_the_flow_times_the_clock_against_its_constraint_and_counts_the_device(built):
    _folder, result, said = built
    assert result.timing_met is True
    (clock,) = result.fmax_mhz
    assert result.target_mhz[clock] == OSCILLATOR_MHZ and result.fmax_mhz[clock] > OSCILLATOR_MHZ
    use = result.utilisation
    assert 24 <= use["FF"] <= 64 and 0 < use["LUT4"] < 200 and use["EBR"] == 0  # a 24-bit counter
    assert use["IO"] >= 2  # the oscillator and the LED
    for stage in ("yosys: synthesising", "nextpnr: packing", "nextpnr: placing", "nextpnr: routing"):
        assert any(stage in line for line in said), stage


def test_nextpnr_places_with_the_static_placer_and_routes_with_router2(built):
    folder, _result, _said = built
    log = (folder / "wirebook.tim").read_text()
    assert "Info: Running Static placer" in log and "Info: Running router2" in log
    assert "analytical placer" not in log  # (HeAP's)


def test_the_bitstream_is_for_the_lfe5u_25f_and_the_svf_checks_the_idcode(built):
    folder, result, _said = built
    assert result.bitstream == str(folder / "wirebook.bit")
    assert_bitstream_for(folder, LFE5U_25F_IDCODE)


def test_nextpnr_report_agrees_with_the_result(built):
    folder, result, _said = built
    report = json.loads((folder / "wirebook.report.json").read_text())
    assert {c: round(float(v["achieved"]), 2) for c, v in report["fmax"].items()} == result.fmax_mhz
    assert int(report["utilization"]["TRELLIS_COMB"]["used"]) == result.utilisation["LUT4"]
    assert int(report["utilization"]["TRELLIS_FF"]["used"]) == result.utilisation["FF"]
