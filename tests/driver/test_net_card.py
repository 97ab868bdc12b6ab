"""The card API over the `net` backend: the card link of proto/card_link.py against a model of the inline
card (sim/net_card.py: the gateware in Verilator behind a CSR socket and a record sender).

On loopback here; tests/driver/test_net_card_veth.py runs the same across a veth pair into a network
namespace, receiving through DPDK. Expected records come from the golden model (ModelCard fed the same
frames). Lost and reordered CSR answers must be retried or dropped without a wrong access; lost record
packets must raise the card's `gap`.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from wirebook.driver.card import CardError, CardSetup, open_card
from wirebook.driver.model_card import ModelCard
from wirebook.proto import bbo, card_link, moldudp64, net
from wirebook.sim import market
from wirebook.sim.net_card import NetCardModel
from wirebook.sim.verilated_card import VerilatedCard

SESSION = "NETCARD001"
GROUP = ("233.54.12.111", 26477)
SETUP = CardSetup(groups=[f"{GROUP[0]}:{GROUP[1]}"], session=SESSION)


def frames_of(messages: list[bytes]) -> list[bytes]:
    flow = net.UdpFlow("02:00:00:00:00:01", None, "192.0.2.10", GROUP[0], 26400, GROUP[1])
    return [flow.frame(p) for _, p in moldudp64.packetize(SESSION, 1, messages, max_payload=700)]


def join(batches: list[np.ndarray]) -> np.ndarray:
    out = bbo.empty(sum(len(b) for b in batches))
    at = 0
    for b in batches:
        out[at : at + len(b)] = b
        at += len(b)
    return out


@pytest.fixture(scope="module")
def frames():
    return frames_of(list(market.generate(5, 3000, 17)))


@pytest.fixture(scope="module")
def golden(frames):
    model = ModelCard()
    model.configure(SETUP)
    model.push_frames(frames)
    return model.poll()


@pytest.fixture
def net_card():
    running = []

    def start(**faults) -> NetCardModel:
        core = VerilatedCard()
        core.reset()
        card = NetCardModel(core, ("127.0.0.1", 0), **faults)
        thread = threading.Thread(target=card.run_forever, daemon=True)
        thread.start()
        running.append((card, thread, core))
        return card

    yield start
    for card, thread, core in running:
        card.stop()
        thread.join(5)
        card.close()
        core.close()


def play(host, card: NetCardModel, frames: list[bytes], expected_records: int, chunk: int = 16) -> np.ndarray:
    """The host learns the directory from the frames (subscribing before the card sees them), the card takes
    them on its feed port; the host polls until `expected_records` arrived or the card has gone quiet."""
    batches = []
    for at in range(0, len(frames), chunk):
        part = frames[at : at + chunk]
        host.push_frames(part)
        card.offer(part)
        batches.append(host.poll())
    received = sum(len(b) for b in batches)
    quiet = 0
    while received < expected_records and quiet < 100:  # until all came, or nothing for 0.2 s
        batch = host.poll()
        received += len(batch)
        batches.append(batch)
        quiet = 0 if len(batch) else quiet + 1
        if not len(batch):
            threading.Event().wait(0.002)
    return join(batches)


def test_records_over_the_link_equal_the_golden_models(net_card, frames, golden):
    card = net_card()
    host = open_card("net", SETUP, card=card.address)
    try:
        records = play(host, card, frames, len(golden))
        assert bbo.canonical_bytes(records) == bbo.canonical_bytes(golden)
        assert host.counters()["bbo_records"] == len(golden)
        assert not host.gap
        assert host.backend.records.sequence.lost == 0
    finally:
        host.close()


def test_lost_and_reordered_answers_are_retried_and_dropped(net_card, frames, golden):
    card = net_card(drop_responses=0.15, reorder_responses=0.15, seed=3)
    host = open_card("net", SETUP, card=card.address, timeout_s=0.01, retries=20)
    try:
        records = play(host, card, frames, len(golden))
        assert bbo.canonical_bytes(records) == bbo.canonical_bytes(golden)  # every access took effect once
        counts = host.backend.bus.counts
        assert counts["retries"] > 0 and counts["stale"] > 0
        assert card.counts["repeats"] > 0  # retries answered again, not applied again
    finally:
        host.close()


def test_lost_record_packets_raise_gap(net_card, frames, golden):
    card = net_card(drop_records=0.2, seed=5)
    host = open_card("net", SETUP, card=card.address)
    try:
        records = play(host, card, frames, len(golden))
        lost = host.backend.records.sequence.lost
        assert lost > 0
        assert host.gap
        assert 0 < len(records) < len(golden)
        golden_rows = set(np.frombuffer(bbo.canonical_bytes(golden), dtype=f"V{bbo.SIZE}").tolist())
        received_rows = np.frombuffer(bbo.canonical_bytes(records), dtype=f"V{bbo.SIZE}").tolist()
        assert all(row in golden_rows for row in received_rows)  # what arrived is right, only some is missing
    finally:
        host.close()


def test_bus_errors_and_silence_are_card_errors(net_card):
    card = net_card()
    host = open_card("net", SETUP, card=card.address)
    try:
        with pytest.raises(CardError, match=r"WRITE of 0x0 \(magic\) answered BUS_ERROR"):
            host.backend.bus.write32(0, 1)
    finally:
        host.close()
    with pytest.raises(CardError, match=r"no answer to SUBSCRIBE \(records to port \d+\) after 3 tries"):
        open_card("net", SETUP, card=("127.0.0.1", 9), timeout_s=0.01, retries=2)


def test_malformed_answers_are_counted_and_dropped(net_card):
    card = net_card()
    host = open_card("net", SETUP, card=card.address)
    try:
        bus = host.backend.bus
        bus.socket.sendto(b"\x00" * 5, bus.socket.getsockname())  # garbage arriving on the CSR socket
        assert host.registers.read("magic") == "WBK1"
        assert bus.counts["malformed"] == 1
    finally:
        host.close()


def test_link_codecs_refuse_bad_packets():
    read = card_link.CsrAccess(card_link.CsrOp.READ, 4)
    request = card_link.encode_request(
        card_link.CsrRequest(9, (read, card_link.CsrAccess(card_link.CsrOp.WRITE, 8, 5)))
    )
    assert card_link.decode_request(request).accesses[1].value == 5
    response = card_link.encode_response(card_link.CsrResponse(9, (card_link.CsrResult(card_link.CsrStatus.OK, 3),)))
    with pytest.raises(ValueError, match="magic"):
        card_link.decode_response(b"\x00" + response[1:])
    at = card_link.CSR_HEADER.length  # the first access's op byte
    with pytest.raises(ValueError, match="op"):
        card_link.decode_request(request[:at] + b"\x09" + request[at + 1 :])
    with pytest.raises(ValueError, match="count"):
        card_link.decode_request(request[:-1])
    with pytest.raises(ValueError, match="1..100 accesses"):
        card_link.encode_request(card_link.CsrRequest(1, (read,) * 101))
    packet = card_link.encode_records(7, bbo.empty(2))
    assert card_link.decode_records(packet)[0] == 7
    with pytest.raises(ValueError, match="2 records"):
        card_link.decode_records(packet[:-1])


def test_the_card_section_names_what_a_net_card_needs():
    with pytest.raises(CardError, match="net_card"):
        CardSetup().backend_options("net")
    with pytest.raises(CardError, match="dpdk_device"):
        CardSetup(net_card="10.0.0.2:22338", net_records="dpdk").backend_options("net")
    options = CardSetup(net_card="10.0.0.2:22338").backend_options("net")
    assert options == {"card": ("10.0.0.2", 22338), "local_address": "", "record_port": 22339}


def test_a_request_the_card_finds_malformed_is_a_clear_error(net_card):
    card = net_card()
    host = open_card("net", SETUP, card=card.address)
    try:
        bad = [card_link.CsrAccess(card_link.CsrOp.READ, 0), card_link.CsrAccess(card_link.CsrOp.SUBSCRIBE, 0, 70_000)]
        with pytest.raises(CardError, match="refused as malformed"):
            host.backend.bus.transact(bad)
        assert host.registers.read("magic") == "WBK1"  # the link carries on
    finally:
        host.close()
