"""A card bitstream built the way a user builds it: `wirebook hw build --board ... --json` through YoWASP
(yosys, nextpnr-ecp5 with its timing report, ecppack), then checked.

Built here: the ECPIX-5 (LFE5UM5G-85F), the ECP5 card that routes. The Colorlight's LFE5U-25F card does not
route yet (bench/results/boards_built.md) and joins BUILT once it does. The build is real and takes minutes
(the first YoWASP call on a machine also compiles the tools, about a minute each; ~/.cache/YoWASP keeps
them). Checked: the command's JSON (every clock of the card timed, each at or above its constraint, the use
of the device within it), a .bit that is an ECP5 bitstream for the board's device (its preamble and the
device's IDCODE in the verify-ID command), an .svf that checks that IDCODE before programming, and
nextpnr's own report agreeing with the JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest
from ecp5_bitstream import assert_bitstream_for

from wirebook.hw.boards import board

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Device:
    idcode: int  # Lattice ECP5 family data sheet (DS1044), JTAG IDCODE table
    luts: int
    ebr: int
    clocks: tuple[str, ...]  # the card's clock domains on this board


DEVICES = {
    "ecpix5-85": Device(0x81113043, 83640, 208, ("sync", "eth_tx", "eth_rx0")),  # LFE5UM5G-85F; one port
    "colorlight-5a75b": Device(0x41111043, 24288, 56, ("sync", "eth_tx", "eth_rx0", "eth_rx1")),  # LFE5U-25F
}
BUILT = ["ecpix5-85"]


@pytest.mark.parametrize("name", BUILT)
def test_the_card_builds_meets_timing_and_makes_a_bitstream_for_its_device(name, tmp_path):
    """One test, one build: a module fixture would be built again on each pytest-xdist worker."""
    done = subprocess.run([sys.executable, "-m", "wirebook", "hw", "build", "--board", name, "--folder", str(tmp_path),
                           "--json"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, f"the build failed:\n{done.stderr[-4000:]}"
    assert "yosys" in done.stderr and "nextpnr" in done.stderr, "the progress display names the stages"
    built = (name, tmp_path, json.loads(done.stdout))
    check_timing_on_every_clock_and_the_device_use(built)
    check_the_bitstream_is_for_the_device_and_the_svf_checks_it_first(built)
    check_nextpnr_report_agrees_with_the_json(built)


def check_timing_on_every_clock_and_the_device_use(built) -> None:
    name, _folder, result = built
    device = DEVICES[name]
    assert result["board"] == name and result["timing_met"] is True
    timed = {_domain(clock) for clock in result["fmax_mhz"]}
    assert set(device.clocks) <= timed, f"clocks timed: {sorted(result['fmax_mhz'])}"
    for clock, mhz in result["fmax_mhz"].items():
        assert mhz >= result["target_mhz"][clock] > 0, clock
    core = [mhz for clock, mhz in result["target_mhz"].items() if _domain(clock) == "sync"]
    assert core and abs(core[0] - board(name).core_mhz) < 0.05 * board(name).core_mhz
    use = result["utilisation"]
    assert 0 < use["LUT4"] <= device.luts and 0 < use["FF"] <= device.luts and 0 < use["EBR"] <= device.ebr


def check_the_bitstream_is_for_the_device_and_the_svf_checks_it_first(built) -> None:
    name, folder, result = built
    assert result["bitstream"] == str(folder / "wirebook.bit")
    assert_bitstream_for(folder, DEVICES[name].idcode)


def check_nextpnr_report_agrees_with_the_json(built) -> None:
    _name, folder, result = built
    report = json.loads((folder / "wirebook.report.json").read_text())
    assert {c: round(float(v["achieved"]), 2) for c, v in report["fmax"].items()} == result["fmax_mhz"]
    assert int(report["utilization"]["TRELLIS_COMB"]["used"]) == result["utilisation"]["LUT4"]
    assert int(report["utilization"]["DP16KD"]["used"]) == result["utilisation"]["EBR"]


def _domain(clock_net: str) -> str:
    """The clock domain of a nextpnr clock net: `$glbnet$port0.eth_rx0_clk` -> eth_rx0, and the PLL's
    core output `$glbnet$clocks.clk` -> sync (names as nextpnr prints them)."""
    name = clock_net.removeprefix("$glbnet$").rsplit(".", 1)[-1].removesuffix("_clk")
    return "sync" if name == "clk" else name
