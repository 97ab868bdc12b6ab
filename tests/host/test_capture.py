"""A real run captured on loopback and decoded by tshark's SoupBinTCP and OUCH dissectors: an independent
check of our wire format. Every Enter / Replace / Cancel Order tshark sees is one the agent journaled as
sent, with the same fields, and every Accepted tshark sees is the exchange's."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time

import pytest

from wirebook.host.journal import EventKind, JournalConfig, open_journal
from wirebook.host.run import MainJob
from wirebook.proto import ouch
from wirebook.sim.exchange import DEFAULT_USERNAME


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tshark_decodes_a_real_run(tmp_path, tshark):
    if shutil.which("dumpcap") is None:
        pytest.fail("dumpcap is not installed: `make test` installs tshark, which brings it")
    port = free_tcp_port()
    pcap = tmp_path / "run.pcapng"
    capture = subprocess.Popen(
        ["dumpcap", "-i", "lo", "-f", f"tcp port {port}", "-q", "-w", str(pcap)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not pcap.exists():  # dumpcap creates the file once it captures
        assert capture.poll() is None, capture.stderr.read()
        assert time.monotonic() < deadline, "dumpcap did not start"
        time.sleep(0.05)
    job = MainJob(workdir=tmp_path, symbols=3, messages=6_000, seed=5, rate="4000", ouch_port=port)
    try:
        job.run(seconds=2.5)
    finally:
        job.close()
    time.sleep(0.3)
    capture.send_signal(signal.SIGINT)
    capture.wait(20)

    layers = tshark(pcap, f"tcp.port=={port},soupbintcp")
    soup = [layer for layer in layers if layer.protocol == "soupbintcp"]
    orders = [layer for layer in layers if layer.protocol == "ouch"]
    login = next(layer for layer in soup if layer.raw("soupbintcp.packet_type") == b"L")
    assert login.raw("soupbintcp.username").decode().rstrip() == DEFAULT_USERNAME

    entered = [layer for layer in orders if layer.raw("ouch.packet_type") == b"O"]
    replaced = [layer for layer in orders if layer.all("ouch.existing_order_token")]  # inbound U, not Replaced
    canceled = [layer for layer in orders if layer.raw("ouch.packet_type") == b"X"]
    accepted = [layer for layer in orders if layer.raw("ouch.packet_type") == b"A"]
    assert entered and replaced and canceled and accepted

    with open_journal(JournalConfig(path=tmp_path / "journal.sqlite3")) as journal:
        events = list(journal.events())
    sent = [e for e in events if e.kind is EventKind.ORDER_SENT]
    assert [
        (layer.raw("ouch.order_token").decode(), layer.raw("ouch.buy_sell_indicator").decode(),
         int.from_bytes(layer.raw("ouch.shares"), "big"), layer.raw("ouch.stock").decode().rstrip(),
         int.from_bytes(layer.raw("ouch.price"), "big"))
        for layer in entered
    ] == [(e.token, e.side.value, e.shares, e.stock, e.price) for e in sent]  # fmt: skip
    replaces = [e for e in events if e.kind is EventKind.REPLACE_SENT]
    assert [
        (layer.raw("ouch.existing_order_token").decode(), layer.raw("ouch.replacement_order_token").decode(),
         int.from_bytes(layer.raw("ouch.price"), "big"))
        for layer in replaced
    ] == [(e.token, e.other_token, e.price) for e in replaces]  # fmt: skip
    assert [layer.raw("ouch.order_token").decode() for layer in canceled] == [
        e.token for e in events if e.kind is EventKind.CANCEL_SENT
    ]
    exchange_accepted = [m for m in map(ouch.decode_outbound, job.exchange.sequenced_messages(DEFAULT_USERNAME))
                         if m.message_type == "A"]  # fmt: skip
    assert [(layer.raw("ouch.order_token").decode(), int.from_bytes(layer.raw("ouch.shares"), "big"))
            for layer in accepted] == [(m.order_token, m.shares) for m in exchange_accepted]  # fmt: skip
