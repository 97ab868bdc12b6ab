"""ZeroMQ PUB socket for other local consumers: BBO update batches and our quotes.

Two topics, each a two-frame message [topic, payload]:
- b"bbo": a batch of BBO update records as raw bytes, proto.bbo.DTYPE (64 bytes each): a subscriber reads
  them with `np.frombuffer(payload, dtype=bbo.DTYPE)`;
- b"quote": one JSON object per order request the agent sent ({"locate", "symbol", "kind", "side",
  "price", "shares", "token"}).

Sending never blocks the agent: a message that would (a slow subscriber filled the high-water mark) is
dropped and counted in `dropped`.
"""

from __future__ import annotations

import json

import numpy as np
import zmq
from pydantic import Field

from .orders import OrderRequest
from .validated import ConfigModel

__all__ = ["Publisher", "PublisherConfig"]

BBO_TOPIC = b"bbo"
QUOTE_TOPIC = b"quote"


class PublisherConfig(ConfigModel):
    """[publish] section: where the PUB socket binds (empty: no publishing)."""

    endpoint: str = Field("tcp://127.0.0.1:8471", description="ZeroMQ endpoint to bind, '' to disable")
    high_water_mark: int = Field(10_000, gt=0)


class Publisher:
    def __init__(self, config: PublisherConfig, context: zmq.Context | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, config.high_water_mark)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(config.endpoint)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sent = 0
        self.dropped = 0

    def bbo(self, records: np.ndarray) -> None:
        self._send(BBO_TOPIC, memoryview(np.ascontiguousarray(records)).cast("B"))

    def quote(self, request: OrderRequest, symbol: str, token: str) -> None:
        payload = {
            "locate": request.locate, "symbol": symbol, "kind": request.kind.value, "side": request.side.value,
            "price": request.price, "shares": request.shares, "token": token,
        }  # fmt: skip
        self._send(QUOTE_TOPIC, json.dumps(payload).encode())

    def _send(self, topic: bytes, payload: bytes | memoryview) -> None:
        try:
            self.socket.send_multipart((topic, payload), flags=zmq.NOBLOCK, copy=False)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1

    def close(self) -> None:
        self.socket.close(linger=0)
