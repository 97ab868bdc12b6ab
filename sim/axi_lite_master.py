"""An AXI4-Lite master for Amaranth's simulator, driving a DUT's flat `s_axil_*` ports.

Each `write` or `read` is one transaction. The request channels wait a random number of idle cycles
(`flow`) before asserting VALID; a write presents AW and W in a chosen or random order ("aw_first",
"w_first", "together"); the response channels are back-pressured (`backpressure`): READY stays low for a
random number of cycles after the DUT raises VALID, or is high before VALID when no pause is drawn.
While it waits, the master checks the DUT keeps its response VALID and payload stable (AXI requires it).
A write and a read may run at the same time from two test benches (they use separate channels).
"""

from __future__ import annotations

import random

from .testbench import Flow

__all__ = ["ORDERS", "RESP_OKAY", "RESP_SLVERR", "AxiLiteMaster"]

RESP_OKAY = 0b00
RESP_SLVERR = 0b10
ORDERS = ("aw_first", "w_first", "together")


class AxiLiteMaster:
    def __init__(
        self,
        dut,
        *,
        flow: Flow | None = None,
        backpressure: Flow | None = None,
        seed: int = 0,
        timeout: int = 1000,
    ):
        self.dut = dut
        self.flow = flow or Flow()
        self.backpressure = backpressure or Flow()
        self.timeout = timeout  # cycles a handshake may take before the DUT is declared hung
        self._rng = random.Random(seed)

    def _port(self, name: str):
        return getattr(self.dut, f"s_axil_{name}")

    async def _until(self, ctx, what: str, condition, *samples):
        """Tick until `condition` is high at a clock edge; returns `samples` at that edge."""
        for _ in range(self.timeout):
            _, _, hit, *values = await ctx.tick().sample(condition, *samples)
            if hit:
                return tuple(values)
        raise AssertionError(f"AXI4-Lite {what}: no handshake in {self.timeout} cycles")

    async def _send(self, ctx, channel: str, payload: dict[str, int]) -> None:
        """Hold `channel`VALID with `payload` until the DUT takes it."""
        if n := self.flow.pause():
            await ctx.tick().repeat(n)
        for name, value in payload.items():
            ctx.set(self._port(name), value)
        ctx.set(self._port(f"{channel}valid"), 1)
        await self._until(ctx, channel.upper(), self._port(f"{channel}ready"))
        ctx.set(self._port(f"{channel}valid"), 0)

    async def _send_together(self, ctx, aw: dict[str, int], w: dict[str, int]) -> None:
        if n := self.flow.pause():
            await ctx.tick().repeat(n)
        for name, value in {**aw, **w}.items():
            ctx.set(self._port(name), value)
        pending = {"aw", "w"}
        for channel in pending:
            ctx.set(self._port(f"{channel}valid"), 1)
        for _ in range(self.timeout):
            if not pending:
                return
            _, _, aw_ready, w_ready = await ctx.tick().sample(self._port("awready"), self._port("wready"))
            for channel, ready in (("aw", aw_ready), ("w", w_ready)):
                if channel in pending and ready:
                    ctx.set(self._port(f"{channel}valid"), 0)
                    pending.discard(channel)
        if pending:
            raise AssertionError(
                f"AXI4-Lite {' and '.join(sorted(pending)).upper()}: no handshake in {self.timeout} cycles"
            )

    async def _receive(self, ctx, channel: str, payload: tuple[str, ...]) -> tuple[int, ...]:
        """Take one response from `channel`, back-pressured per `self.backpressure`."""
        valid, ready = self._port(f"{channel}valid"), self._port(f"{channel}ready")
        fields = tuple(self._port(name) for name in payload)
        if pause := self.backpressure.pause():
            await self._until(ctx, channel.upper(), valid)
            held = tuple(ctx.get(f) for f in fields)
            for _ in range(pause):
                _, _, still, *now = await ctx.tick().sample(valid, *fields)
                assert still and tuple(now) == held, f"DUT changed {channel.upper()} before its handshake"
        ctx.set(ready, 1)
        values = await self._until(ctx, channel.upper(), valid, *fields)
        ctx.set(ready, 0)
        return tuple(values)

    async def write(self, ctx, address: int, data: int, strb: int = 0xF, *, order: str | None = None) -> int:
        """Write `data` (bytes selected by `strb`) at byte `address`; returns BRESP."""
        order = order or self._rng.choice(ORDERS)
        aw = {"awaddr": address, "awprot": 0}
        w = {"wdata": data, "wstrb": strb}
        if order == "aw_first":
            await self._send(ctx, "aw", aw)
            await self._send(ctx, "w", w)
        elif order == "w_first":
            await self._send(ctx, "w", w)
            await self._send(ctx, "aw", aw)
        elif order == "together":
            await self._send_together(ctx, aw, w)
        else:
            raise ValueError(f"write order must be one of {ORDERS}, got {order!r}")
        (resp,) = await self._receive(ctx, "b", ("bresp",))
        return resp

    async def read(self, ctx, address: int) -> tuple[int, int]:
        """Read the word at byte `address`; returns (RDATA, RRESP)."""
        await self._send(ctx, "ar", {"araddr": address, "arprot": 0})
        data, resp = await self._receive(ctx, "r", ("rdata", "rresp"))
        return data, resp
