"""DPDK for the card's host side: `Eal`, `DpdkPort` and the frame-batch layout (see port.py).

Importing this package needs neither DPDK nor a compiler: the C shim (shim.c) is built on first use, by
build.py, and anything missing is then named in a DpdkMissingError.
"""

from .build import DpdkError, DpdkMissingError
from .port import (
    LOG_DEBUG,
    LOG_ERR,
    LOG_INFO,
    LOG_NOTICE,
    LOG_WARNING,
    DpdkPort,
    DpdkStats,
    Eal,
    frames_to_slots,
    slots_to_frames,
)

__all__ = [
    "LOG_DEBUG",
    "LOG_ERR",
    "LOG_INFO",
    "LOG_NOTICE",
    "LOG_WARNING",
    "DpdkError",
    "DpdkMissingError",
    "DpdkPort",
    "DpdkStats",
    "Eal",
    "frames_to_slots",
    "slots_to_frames",
]
