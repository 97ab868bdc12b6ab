"""Test-bench helpers for the gateware in Amaranth's simulator: stream drivers with idle cycles and
back-pressure, and frame <-> beat conversion for every data width.

Used by the per-block unit tests (tests/hdl/); the cocotb system tests use cocotbext-axi instead, with
the same `beats` conversion for what they expect.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["Beat", "Flow", "beats", "frame_bytes", "stream_get", "stream_put"]


@dataclass(frozen=True)
class Beat:
    data: int
    keep: int
    last: int

    def as_payload(self) -> dict:
        return {"data": self.data, "keep": self.keep, "last": self.last}


def beats(frame: bytes, data_width: int) -> Iterator[Beat]:
    """A frame as stream beats: byte i of a beat in lane i, every beat full but the last."""
    if not frame:
        raise ValueError("a frame has at least one byte")
    lanes = data_width // 8
    for at in range(0, len(frame), lanes):
        chunk = frame[at : at + lanes]
        yield Beat(int.from_bytes(chunk, "little"), (1 << len(chunk)) - 1, int(at + lanes >= len(frame)))


def frame_bytes(received: Iterable[Beat | dict], data_width: int) -> bytes:
    """The bytes of beats (the inverse of `beats`; lanes outside `keep` are ignored)."""
    lanes = data_width // 8
    out = bytearray()
    for b in received:
        data, keep = (b.data, b.keep) if isinstance(b, Beat) else (b["data"], b["keep"])
        raw = int(data).to_bytes(lanes, "little")
        out += bytes(raw[i] for i in range(lanes) if keep >> i & 1)
    return bytes(out)


@dataclass
class Flow:
    """How often a driver inserts an idle cycle (or a sink withholds ready): a probability and a seed."""

    idle: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.idle < 1.0:
            raise ValueError(f"idle probability must be in [0, 1), got {self.idle}")
        self._rng = random.Random(self.seed)

    def pause(self) -> int:
        """Cycles to wait before the next transfer (0 on a full-rate flow)."""
        n = 0
        while self.idle and self._rng.random() < self.idle:
            n += 1
        return n


async def stream_put(ctx, port, payload, flow: Flow | None = None) -> None:
    """Offer one transfer on a stream the DUT consumes; returns after the cycle it was taken."""
    if flow is not None and (n := flow.pause()):
        await ctx.tick().repeat(n)
    ctx.set(port.valid, 1)
    ctx.set(port.payload, payload)
    await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def stream_get(ctx, port, flow: Flow | None = None):
    """Take one transfer from a stream the DUT produces (withholding ready per `flow`); returns the payload."""
    if flow is not None and (n := flow.pause()):
        await ctx.tick().repeat(n)
    ctx.set(port.ready, 1)
    (payload,) = await ctx.tick().sample(port.payload).until(port.valid)
    ctx.set(port.ready, 0)
    return payload
