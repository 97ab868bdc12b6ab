"""The PYNQ-Z2 (TUL, xc7z020clg400-1) for Amaranth: the programmable logic's pins that wirebook uses.

Pins from the board's public master constraints (PYNQ-Z2 v1.0 master XDC): the 125 MHz clock the Ethernet
PHY gives the PL, four LEDs, two RGB LEDs, four buttons, two switches. The processing system's own pins
(DDR, MIO: the Ethernet port the host feed arrives on, USB, SD) belong to the PS7 cell of the block design
(hw/zynq.py) and need no constraints here.
"""

from __future__ import annotations

from typing import ClassVar

from amaranth.build import Attrs, Clock, Pins, Resource, Subsignal
from amaranth.vendor import XilinxPlatform

__all__ = ["PynqZ2Platform"]

LVCMOS33 = Attrs(IOSTANDARD="LVCMOS33")


class PynqZ2Platform(XilinxPlatform):
    device = "xc7z020"
    package = "clg400"
    speed = "1"
    default_clk = "clk125"
    resources: ClassVar[list[Resource]] = [
        Resource("clk125", 0, Pins("H16", dir="i"), Clock(125e6), LVCMOS33),
        *[Resource("led", i, Pins(pin, dir="o"), LVCMOS33) for i, pin in enumerate(("R14", "P14", "N16", "M14"))],
        Resource(
            "rgb_led",
            0,
            Subsignal("r", Pins("N15", dir="o")),
            Subsignal("g", Pins("G17", dir="o")),
            Subsignal("b", Pins("L15", dir="o")),
            LVCMOS33,
        ),
        Resource(
            "rgb_led",
            1,
            Subsignal("r", Pins("M15", dir="o")),
            Subsignal("g", Pins("L14", dir="o")),
            Subsignal("b", Pins("G14", dir="o")),
            LVCMOS33,
        ),
        *[Resource("button", i, Pins(pin, dir="i"), LVCMOS33) for i, pin in enumerate(("D19", "D20", "L20", "L19"))],
        *[Resource("switch", i, Pins(pin, dir="i"), LVCMOS33) for i, pin in enumerate(("M20", "M19"))],
    ]
    connectors: ClassVar[list] = []
