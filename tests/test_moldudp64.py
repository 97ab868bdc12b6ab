"""MoldUDP64 1.00 codec: every packet kind, packetize(), typed errors, and tshark's dissector as a check."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirebook.proto import itch
from wirebook.proto import moldudp64 as mold
from wirebook.proto.errors import MalformedError, TruncatedError

SESSION = "2024010100"
MESSAGES = [
    itch.encode("S", stock_locate=0, tracking_number=1, timestamp=3_600_000_000_000, event_code="O"),
    b"",  # an empty message block is legal
    bytes(range(256)) * 3,
    b"x",
]


def test_header_and_request_layouts_are_the_specification_layouts():
    # session alpha 10, sequence number 8, message count 2 (downstream and re-request alike)
    for layout, count in ((mold.HEADER, "message_count"), (mold.REQUEST, "requested_message_count")):
        assert [(f.name, f.offset, f.width) for f in layout.fields] == [
            ("session", 0, 10),
            ("sequence_number", 10, 8),
            (count, 18, 2),
        ]
    assert mold.HEADER_LENGTH == 20
    assert (mold.HEARTBEAT_COUNT, mold.END_OF_SESSION_COUNT, mold.MAX_MESSAGES_PER_PACKET) == (0, 0xFFFF, 0xFFFE)


def test_packet_wire_form():
    packet = mold.encode_packet("ABC", 0x0102030405060708, [b"hi", b"there"])
    assert packet[:10] == b"ABC       "
    assert packet[10:18] == bytes(range(1, 9))
    assert packet[18:20] == (2).to_bytes(2, "big")
    assert packet[20:] == (2).to_bytes(2, "big") + b"hi" + (5).to_bytes(2, "big") + b"there"


def test_round_trip_message_packet():
    packet = mold.decode_packet(mold.encode_packet(SESSION, 1_000, MESSAGES))
    assert packet == mold.Packet(SESSION, 1_000, tuple(MESSAGES))
    assert not packet.is_heartbeat and not packet.end_of_session
    assert packet.next_sequence == 1_000 + len(MESSAGES)


def test_round_trip_heartbeat():
    wire = mold.encode_heartbeat(SESSION, 77)
    assert len(wire) == 20 and wire[18:20] == bytes(2)
    packet = mold.decode_packet(wire)
    assert packet.is_heartbeat and not packet.end_of_session
    assert (packet.session, packet.sequence_number, packet.next_sequence) == (SESSION, 77, 77)


def test_round_trip_end_of_session():
    wire = mold.encode_end_of_session(SESSION, 78)
    assert len(wire) == 20 and wire[18:20] == b"\xff\xff"
    packet = mold.decode_packet(wire)
    assert packet.end_of_session and not packet.is_heartbeat
    assert (packet.session, packet.sequence_number, packet.messages) == (SESSION, 78, ())


def test_round_trip_request():
    wire = mold.encode_request(SESSION, 5_000, 12)
    assert len(wire) == 20
    assert mold.decode_request(wire) == (SESSION, 5_000, 12)


def _check_packetized(session, first, messages, max_payload):
    packets = list(mold.packetize(session, first, messages, max_payload=max_payload))
    expected_sequence = first
    replayed = []
    for sequence, wire in packets:
        decoded = mold.decode_packet(wire)
        assert decoded.session == session
        assert sequence == decoded.sequence_number == expected_sequence
        assert 1 <= len(decoded.messages) <= mold.MAX_MESSAGES_PER_PACKET
        # a packet may exceed max_payload only to carry a single message that alone does not fit
        assert len(wire) <= max_payload or len(decoded.messages) == 1
        expected_sequence = decoded.next_sequence
        replayed += decoded.messages
    assert replayed == list(messages)
    return packets


def test_packetize_fills_packets_up_to_the_payload_limit():
    messages = [bytes([i % 256]) * (i % 50) for i in range(500)]
    packets = _check_packetized(SESSION, 1, messages, 1400)
    # greedy: adding the next message to a packet would have overflowed it
    for (_, wire), (_, following) in itertools.pairwise(packets):
        first_block = 2 + int.from_bytes(following[20:22], "big")
        assert len(wire) + first_block > 1400


def test_packetize_respects_the_message_count_limit():
    packets = _check_packetized(SESSION, 10, [b""] * (mold.MAX_MESSAGES_PER_PACKET + 5), 10**6)
    assert [mold.decode_packet(w).next_sequence - s for s, w in packets] == [mold.MAX_MESSAGES_PER_PACKET, 5]


def test_packetize_nothing():
    assert list(mold.packetize(SESSION, 1, [])) == []


@given(
    session=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=10),
    first=st.integers(min_value=0, max_value=2**63),
    messages=st.lists(st.binary(max_size=400), max_size=60),
    max_payload=st.integers(min_value=22, max_value=3000),
)
def test_property_packetize_then_decode(session, first, messages, max_payload):
    _check_packetized(session, first, messages, max_payload)


@given(
    session=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=10).map(str.rstrip),
    sequence=st.integers(min_value=0, max_value=2**64 - 1),
    messages=st.lists(st.binary(max_size=200), max_size=20),
)
def test_property_round_trip(session, sequence, messages):
    assert mold.decode_packet(mold.encode_packet(session, sequence, messages)).messages == tuple(messages)
    assert mold.decode_packet(mold.encode_heartbeat(session, sequence)).sequence_number == sequence
    assert mold.decode_packet(mold.encode_end_of_session(session, sequence)).session == session
    count = len(messages)
    assert mold.decode_request(mold.encode_request(session, sequence, count)) == (session, sequence, count)


# --- errors --------------------------------------------------------------------------------------------

WIRE = mold.encode_packet(SESSION, 1, [b"abcd", b"efghij"])  # blocks at 20 (2 + 4) and 26 (2 + 6); ends at 34


@pytest.mark.parametrize("keep", [0, 1, 19])
def test_short_header_is_truncated_at_0(keep):
    with pytest.raises(TruncatedError) as info:
        mold.decode_packet(WIRE[:keep])
    assert info.value.offset == 0


@pytest.mark.parametrize(
    ("keep", "offset", "expected"),
    [
        (20, 20, "a 2-byte length"),
        (21, 20, "a 2-byte length"),
        (25, 20, "4 message bytes"),
        (27, 26, "a 2-byte length"),
    ],
)
def test_cut_message_block_is_truncated_at_the_block(keep, offset, expected):
    with pytest.raises(TruncatedError) as info:
        mold.decode_packet(WIRE[:keep])
    assert (info.value.offset, info.value.expected) == (offset, expected)


def test_count_larger_than_the_blocks_is_truncated():
    wire = mold.HEADER.pack(session=SESSION, sequence_number=1, message_count=3) + WIRE[20:]
    with pytest.raises(TruncatedError) as info:
        mold.decode_packet(wire)
    assert info.value.offset == len(WIRE)


def test_blocks_beyond_the_count_are_malformed():
    wire = mold.HEADER.pack(session=SESSION, sequence_number=1, message_count=1) + WIRE[20:]
    with pytest.raises(MalformedError) as info:
        mold.decode_packet(wire)
    assert info.value.offset == 26


def test_end_of_session_with_blocks_is_malformed():
    wire = mold.encode_end_of_session(SESSION, 3) + WIRE[20:]
    with pytest.raises(MalformedError) as info:
        mold.decode_packet(wire)
    assert info.value.offset == 20


def test_non_ascii_session_is_malformed_at_0():
    with pytest.raises(MalformedError) as info:
        mold.decode_packet(b"\xe9" + WIRE[1:])
    assert info.value.offset == 0


@pytest.mark.parametrize("delta", [-1, 1])
def test_request_of_wrong_length_is_malformed(delta):
    wire = mold.encode_request(SESSION, 1, 1)
    wire = wire[:delta] if delta < 0 else wire + b" "
    with pytest.raises(MalformedError) as info:
        mold.decode_request(wire)
    assert info.value.offset == 0 and info.value.expected == "20 bytes"


def test_encode_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="at most"):
        mold.encode_packet(SESSION, 1, [b""] * (mold.MAX_MESSAGES_PER_PACKET + 1))
    with pytest.raises(ValueError, match="2-byte length"):
        mold.encode_packet(SESSION, 1, [bytes(0x10000)])
    with pytest.raises(ValueError, match="longer than 10"):
        mold.encode_heartbeat("ELEVENCHARS", 1)


# --- tshark, an independent decoder -------------------------------------------------------------------

PORT = 26_400


def test_tshark_decodes_what_we_encode(tmp_path, tshark):
    from scapy.all import IP, UDP, Ether, wrpcap

    messages = [b"first", b"", b"third message", bytes(300)]
    data = [wire for _, wire in mold.packetize(SESSION, 500, messages, max_payload=60)]
    datagrams = [
        *data,
        mold.encode_heartbeat(SESSION, 504),
        mold.encode_end_of_session(SESSION, 504),
        mold.encode_request(SESSION, 501, 2),
    ]
    pcap = tmp_path / "moldudp64.pcap"
    frames = [Ether() / IP(src="127.0.0.1", dst="127.0.0.3") / UDP(sport=30_000, dport=PORT) / d for d in datagrams]
    wrpcap(str(pcap), frames)
    layers = [layer for layer in tshark(pcap, f"udp.port=={PORT},moldudp64") if layer.protocol == "moldudp64"]
    assert len(layers) == len(datagrams)
    assert all(layer.get("moldudp64.session")["show"] == SESSION for layer in layers)

    # message packets: packetize put [first, empty, third] in one packet (11 bytes of blocks within 60) and
    # the 300-byte message alone in the next
    *data_layers, heartbeat, end, request = layers
    assert [layer.get("moldudp64.sequence")["show"] for layer in data_layers] == ["500", "503"]
    assert [layer.get("moldudp64.count")["show"] for layer in data_layers] == ["3", "1"]
    blocks = [f for layer in data_layers for f in layer.fields if f["name"] == "moldudp64.msgseq"]
    assert [f["show"] for f in blocks] == ["500", "501", "502", "503"]
    lengths = [f["show"] for layer in data_layers for f in layer.all("moldudp64.msglen")]
    assert lengths == [str(len(m)) for m in messages]
    payloads = [bytes.fromhex(f.get("value", "")) for layer in data_layers for f in layer.all("moldudp64.msgdata")]
    assert payloads == messages
    assert not [f for layer in data_layers for f in layer.fields if f["name"] == "_ws.expert"]

    assert (heartbeat.get("moldudp64.sequence")["show"], heartbeat.get("moldudp64.count")["show"]) == ("504", "0")
    assert not heartbeat.all("moldudp64.msgblock") and not heartbeat.all("_ws.expert")
    assert (end.get("moldudp64.sequence")["show"], end.get("moldudp64.count")["show"]) == ("504", "65535")
    assert not end.all("moldudp64.msgblock")
    assert (request.get("moldudp64.sequence")["show"], request.get("moldudp64.count")["show"]) == ("501", "2")
    assert request.all("moldudp64.request")  # tshark's note: a count with no blocks is a re-request
