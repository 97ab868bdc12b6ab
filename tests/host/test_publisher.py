"""The ZeroMQ publisher: a subscriber gets BBO batches as records and quotes as JSON."""

from __future__ import annotations

import json

import numpy as np
import zmq

from wirebook.host.orders import OrderRequest, RequestKind, Side
from wirebook.host.publisher import Publisher, PublisherConfig
from wirebook.proto import bbo


def test_subscriber_receives_bbo_and_quotes():
    context = zmq.Context()
    publisher = Publisher(PublisherConfig(endpoint="tcp://127.0.0.1:*"), context)
    subscriber = context.socket(zmq.SUB)
    subscriber.setsockopt(zmq.SUBSCRIBE, b"")
    subscriber.setsockopt(zmq.RCVTIMEO, 2000)
    subscriber.connect(publisher.endpoint)
    try:
        records = bbo.empty(3)
        records["locate"] = [1, 2, 3]
        records["bid_price"] = [101_0000, 55_5500, 9_9900]
        records["cause"] = b"A"
        # PUB drops messages until the subscription has propagated: send until one arrives.
        poller = zmq.Poller()
        poller.register(subscriber, zmq.POLLIN)
        for _ in range(200):
            publisher.bbo(records)
            if poller.poll(10):
                break
        topic, payload = subscriber.recv_multipart()
        assert topic == b"bbo"
        got = np.frombuffer(payload, dtype=bbo.DTYPE)
        assert bbo.canonical_bytes(got) == bbo.canonical_bytes(records)
        while poller.poll(50):
            subscriber.recv_multipart()  # drain the extra BBO batches
        publisher.quote(OrderRequest(RequestKind.NEW, 1, Side.BUY, 100_0000, 200), "AAPL", "WB000000000007")
        topic, payload = subscriber.recv_multipart()
        assert topic == b"quote"
        assert json.loads(payload) == {
            "locate": 1, "symbol": "AAPL", "kind": "new", "side": "B", "price": 100_0000, "shares": 200,
            "token": "WB000000000007",
        }  # fmt: skip
    finally:
        subscriber.close(linger=0)
        publisher.close()
        context.term()
