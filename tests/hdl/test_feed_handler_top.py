# amaranth: UnusedElaboratable=no
"""The FeedHandler top as a netlist: the command writes it, with the AXI port names boards and benches use.

Its behaviour is tested whole in Verilator (tests/cocotb/test_feed_handler.py)."""

import re

import pytest

from wirebook.cli import main
from wirebook.hdl.feed_handler import FeedHandler, build_id
from wirebook.proto import registers

# Cores built here to read their parameters are never elaborated, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def test_wirebook_hdl_verilog_writes_the_core_with_axi_port_names(tmp_path, capsys):
    out = tmp_path / "fh.v"
    assert (
        main(["hdl", "verilog", "--data-width", "32", "--instruments", "16", "--orders", "1024", "-o", str(out)]) == 0
    )
    text = out.read_text()
    ports = set(re.findall(r"^\s*(?:input|output)\s+(?:\[\d+:0\]\s+)?(\w+);", text, re.M))
    for line in ("a", "b"):
        assert {f"s_axis_{line}_{s}" for s in ("tdata", "tkeep", "tlast", "tvalid", "tready")} <= ports
    assert {"m_axis_bbo_tdata", "m_axis_bbo_tvalid", "m_axis_bbo_tready", "s_axil_awaddr", "s_axil_rdata"} <= ports
    assert re.search(r"input \[31:0\] s_axis_a_tdata;", text)
    assert re.search(r"output \[511:0\] m_axis_bbo_tdata;", text)


def test_identity_registers_carry_the_build_parameters():
    core = FeedHandler(8, n_instruments=16, n_orders=2048, n_levels=4)
    constants = core.bank.constants
    assert constants["data_width"] == 8 and constants["n_instruments"] == 16
    assert constants["n_orders"] == 2048 and constants["n_levels"] == 4
    assert constants["build_id"] == build_id() != 0
    assert registers.register("magic").decode(constants["magic"]) == registers.MAGIC


def test_wirebook_hdl_registers_prints_the_register_document(capsys):
    assert main(["hdl", "registers"]) == 0
    assert capsys.readouterr().out == registers.markdown()


def test_a_one_line_core_has_no_line_b_ports_and_says_so():
    from amaranth.back import verilog

    text = verilog.convert(FeedHandler(8, n_instruments=4, n_orders=256, n_levels=2, n_lines=1), name="fh")
    ports = set(re.findall(r"^\s*(?:input|output)\s+(?:\[\d+:0\]\s+)?(\w+);", text, re.M))
    assert "s_axis_a_tdata" in ports and not any(p.startswith("s_axis_b") for p in ports)
    assert FeedHandler(8, n_lines=1).bank.constants["n_lines"] == 1
    assert FeedHandler(8).bank.constants["n_lines"] == 2
    with pytest.raises(ValueError, match="n_lines must be 1"):
        FeedHandler(8, n_lines=3)


def test_bad_width_is_refused():
    with pytest.raises(ValueError, match="data_width must be one of"):
        FeedHandler(16)
