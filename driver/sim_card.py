"""The `sim` backend: the gateware itself, its Verilog compiled by Verilator (sim/verilated_card.py).

The same Verilog that goes into the bitstream runs here cycle by cycle in C++, so every command that takes
`--card sim` exercises the real core: its frame filters, MoldUDP64 sequencing, ITCH decoder, book engine
and CSR bank. The registers are the core's AXI4-Lite port (each access a whole bus transaction that clocks
the model); look-aside frames are queued on the core's stream inputs; records come off its output stream.

Time: the simulated card runs only when the host asks. `receive()` runs it until the frames queued so far
are through and the core has gone quiet (`quiet_cycles` without a record), at most `max_cycles` per call so
that the agent's loop stays responsive; a core still busy after that is run again at the next call. The
card's clock (records' card_timestamp) counts simulated cycles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..proto import bbo

__all__ = ["SimBackend"]

MAX_CYCLES_PER_RECEIVE = 100_000
QUIET_CYCLES = 64


class SimBackend:
    """The FeedHandler's Verilog in Verilator behind the card API (see the module docstring).

    `parameters` are the core's (data_width, n_instruments, n_orders, n_levels); the library is built once
    per set of them (minutes the first time) and cached under out/sim.
    """

    name = "sim"
    fresh = True  # a new simulated core, just reset: nothing subscribed
    records_lost = 0  # the records leave the core straight into this process: none can be lost

    def __init__(
        self, *, max_cycles: int = MAX_CYCLES_PER_RECEIVE, quiet_cycles: int = QUIET_CYCLES, **parameters: Any
    ) -> None:
        self.parameters = parameters
        self.max_cycles = max_cycles
        self.quiet_cycles = quiet_cycles
        self.core: Any = None
        self.bus = self
        self._busy = False

    def open(self) -> None:
        from ..sim.verilated_card import VerilatedCard

        self.core = VerilatedCard(**self.parameters)
        self.core.reset()

    def close(self) -> None:
        if self.core is not None:
            self.core.close()
            self.core = None

    # --- the register bus: the core's AXI4-Lite port -----------------------------------------------------

    def read32(self, address: int) -> int:
        return self.core.read32(address)

    def write32(self, address: int, value: int) -> None:
        self.core.write32(address, value)

    # --- streams -------------------------------------------------------------------------------------------

    def push_frames(self, line: int, frames: Sequence[bytes]) -> None:
        self.core.push_frames(line, frames)
        self._busy = True

    def receive(self) -> np.ndarray:
        core = self.core
        if self._busy:
            ran = core.run(self.max_cycles, self.quiet_cycles)
            self._busy = ran >= self.max_cycles  # not quiet yet: more next time
        if core.records_waiting:
            return core.records()
        return bbo.empty(0)
