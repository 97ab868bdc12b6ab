"""What an ECP5 bitstream built by `wirebook hw build` must hold, shared by the build tests."""

from __future__ import annotations

import re
from pathlib import Path

PREAMBLE = b"\xff\xff\xbd\xb3"  # ECP5 sysCONFIG: the synchronisation word every bitstream starts its commands with
VERIFY_ID = b"\xe2\x00\x00\x00"  # ECP5 sysCONFIG: VERIFY_ID, followed by the device's JTAG IDCODE


def assert_bitstream_for(folder: Path, idcode: int) -> None:
    """wirebook.bit is an ECP5 bitstream for the device of `idcode` (Lattice ECP5 family data sheet, DS1044,
    JTAG IDCODE table), and wirebook.svf compares the device's IDCODE with it before programming."""
    bit = (folder / "wirebook.bit").read_bytes()
    assert bit.index(PREAMBLE) < 1024
    at = bit.index(VERIFY_ID)
    assert int.from_bytes(bit[at + 4 : at + 8], "big") == idcode
    svf = (folder / "wirebook.svf").read_text()
    # IDCODE instruction (0xE0), then the 32-bit IDCODE compared with the device's, before any programming
    read_id = re.search(r"SIR\s+8\s+TDI\s+\(E0\);\s*SDR\s+32\s+TDI\s+\(00000000\)\s+TDO\s+\(([0-9A-F]{8})\)", svf)
    assert read_id is not None and int(read_id.group(1), 16) == idcode
    burst = re.search(r"SIR\s+8\s+TDI\s+\(7A\);", svf)  # LSC_BITSTREAM_BURST: the configuration data follow
    assert burst is not None and read_id.start() < burst.start()
