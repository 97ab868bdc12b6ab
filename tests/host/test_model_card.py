"""The model card: MoldUDP64 packets (or feed frames) in, the same BBO records as replaying the ITCH file, gaps
and duplicates; frames filtered by destination as the card's registers say."""

from __future__ import annotations

import socket

import pytest

from wirebook.driver.card import CardSetup
from wirebook.driver.feed_input import SocketFeed
from wirebook.driver.model_card import ModelCard
from wirebook.model.replay import replay
from wirebook.proto import bbo, moldudp64, net
from wirebook.sim import market

SESSION = "TESTSESS01"


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    path = tmp_path_factory.mktemp("card") / "day.itch"
    market.write_itch(path, symbols=5, messages=4000, seed=3)
    messages = list(market.generate(5, 4000, 3))
    return path, messages


def test_packets_give_the_files_records(day):
    path, messages = day
    expected = replay(path)
    card = ModelCard()
    digest = bbo.Digest()
    for _, packet in moldudp64.packetize(SESSION, 1, messages, max_payload=600):
        card.push_packet(packet)
        digest.update(card.poll())
    assert card.poll().size == 0
    assert digest.hexdigest() == expected.bbo_sha256
    assert digest.count == expected.bbo_updates
    assert card.counts.messages == len(messages)
    assert card.counts.gaps == card.counts.duplicates == 0
    assert card.symbols  # the stock directory was seen
    assert card.session == SESSION


def test_duplicates_and_overlaps_are_dropped(day):
    _, messages = day
    packets = list(moldudp64.packetize(SESSION, 1, messages[:300], max_payload=400))
    once, twice = ModelCard(), ModelCard()
    for _, p in packets:
        once.push_packet(p)
    for _, p in packets:
        twice.push_packet(p)
        twice.push_packet(p)  # the B line brings every packet again
    # An overlapping packet: messages 1..20 again in one packet.
    twice.push_packet(moldudp64.encode_packet(SESSION, 1, messages[:20]))
    assert bbo.canonical_bytes(once.poll()) == bbo.canonical_bytes(twice.poll())
    assert twice.counts.duplicates == 300 + 20
    assert twice.next_sequence == 301


def test_a_gap_is_counted_and_flagged(day):
    _, messages = day
    card = ModelCard()
    card.push_packet(moldudp64.encode_packet(SESSION, 1, messages[:50]))
    card.push_packet(moldudp64.encode_packet(SESSION, 61, messages[60:80]))
    assert card.gap
    assert (card.counts.gaps, card.counts.first_missing, card.counts.missing) == (1, 51, 10)
    assert card.next_sequence == 81
    card.clear_gap()
    assert not card.gap


def test_bad_packets_are_counted_not_raised(day):
    _, messages = day
    card = ModelCard(session=SESSION)
    card.push_packet(b"\x00" * 7)  # shorter than a header
    card.push_packet(moldudp64.encode_packet("OTHER00001", 1, messages[:5]))
    card.push_packet(moldudp64.encode_heartbeat(SESSION, 1))
    card.push_packet(moldudp64.encode_end_of_session(SESSION, 1))
    assert (card.counts.malformed, card.counts.other_session, card.counts.heartbeats) == (1, 1, 1)
    assert card.counts.end_of_session
    assert card.next_sequence == 1


def test_socket_feed_on_loopback_gives_frames_the_card_takes(day):
    _, messages = day
    feed = SocketFeed("127.0.0.1", 0)
    card = ModelCard()
    card.configure(CardSetup(groups=[feed.destination]))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packets = list(moldudp64.packetize(SESSION, 1, messages[:200], max_payload=500))
        for _, p in packets:
            sender.sendto(p, ("127.0.0.1", feed.port))
        received = 0
        for _ in range(1000):
            received += feed.receive(card)
            if received == len(packets):
                break
        assert received == len(packets)
        assert card.counts.messages == 200
        assert card.counts.not_for_us == 0
        assert card.feed_state().messages == 200
    finally:
        sender.close()
        feed.close()


def test_frames_not_for_the_configured_destination_are_dropped_and_counted(day):
    _, messages = day
    card = ModelCard()
    card.configure(CardSetup(groups=["233.54.12.111:26477"], local_mac="02:00:00:00:00:aa"))
    packet = moldudp64.encode_packet(SESSION, 1, messages[:10])

    def frame(destination_ip: str, port: int, mac: str | None = None) -> bytes:
        return net.build_udp_frame("02:00:00:00:00:01", mac, "192.0.2.1", destination_ip, 1000, port, packet)

    card.push_frames([frame("233.54.12.111", 26478), frame("233.54.12.112", 26477), b"\x00" * 20])
    assert (card.counts.not_for_us, card.counts.malformed, card.counts.messages) == (2, 1, 0)
    card.push_frames([frame("233.54.12.111", 26477, mac="02:00:00:00:00:bb")])  # a unicast MAC not ours
    assert card.counts.not_for_us == 3
    card.push_frames([frame("233.54.12.111", 26477)])  # the group's multicast MAC
    assert card.counts.messages == 10
