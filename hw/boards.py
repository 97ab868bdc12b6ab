"""The boards wirebook builds for, by the names the command line takes (`wirebook hw boards`).

Each board says which toolchain builds it, which platform describes its pins, and the core it carries: the
FeedHandler's parameters chosen to fit the device (bench/results/boards.md records what each uses and the
largest counts that fit) and the clock the core runs at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BOARDS", "Board", "board"]


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    toolchain: str  # "yowasp-ecp5" (open, from PyPI) or "vivado" (plan only without Vivado)
    device: str
    core: dict[str, int] = field(default_factory=dict)  # FeedHandler parameters
    core_mhz: float = 50.0
    platform: Callable[[], Any] | None = None

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "toolchain": self.toolchain,
                "device": self.device, "core": self.core, "core_mhz": self.core_mhz}  # fmt: skip


def _colorlight() -> Any:
    from amaranth_boards.colorlight_5a75b_r7_0 import Colorlight_5A75B_R70Platform

    return Colorlight_5A75B_R70Platform()


def _ecpix5() -> Any:
    from amaranth_boards.ecpix5 import ECPIX585Platform

    return ECPIX585Platform()


def _pynq_z2() -> Any:
    from .platforms.pynq_z2 import PynqZ2Platform

    return PynqZ2Platform()


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            "colorlight-5a75b",
            "Colorlight 5A-75B v7.0: LFE5U-25F, two gigabit RGMII ports (feed in on port 0, host link on port 1)",
            "yowasp-ecp5",
            "LFE5U-25F-6BG256C",
            core={
                "data_width": 32,
                "n_instruments": 16,
                "n_orders": 2048,
                "n_ways": 2,
                "n_levels": 2,
                "n_lines": 1,
                "counters_in_ram": True,
                "tables_in_block_ram": True,
            },
            core_mhz=40.0,
            platform=_colorlight,
        ),
        Board(
            "ecpix5-85",
            "LambdaConcept ECPIX-5: LFE5UM5G-85F, gigabit RGMII (feed and host link on one port, by address)",
            "yowasp-ecp5",
            "LFE5UM5G-85F-8BG554I",
            # 8 levels: with 16, nextpnr's router does not converge (the level update and level table are the
            # congestion: bench/results/boards_built.md); with 8 the card routes and meets timing.
            core={"data_width": 32, "n_instruments": 64, "n_orders": 16384, "n_levels": 8},
            core_mhz=40.0,
            platform=_ecpix5,
        ),
        Board(
            "pynq-z2",
            "TUL PYNQ-Z2: Zynq xc7z020; the core behind an AXI DMA, fed by the ARM (look-aside) through pynq",
            "vivado",
            "xc7z020clg400-1",
            core={"data_width": 32, "n_instruments": 64, "n_orders": 16384, "n_levels": 16},
            core_mhz=50.0,
            platform=_pynq_z2,
        ),
    )
}


def board(name: str) -> Board:
    """The board called `name`; KeyError listing the names otherwise."""
    try:
        return BOARDS[name]
    except KeyError:
        raise KeyError(f"no board {name!r}; boards: {', '.join(BOARDS)}") from None
