"""SoupBinTCP 3.0 codec and stream framer: round trips, any split of the stream, typed errors, tshark."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirebook.proto import soupbintcp as soup
from wirebook.proto.errors import MalformedError, TruncatedError
from wirebook.proto.soupbintcp import Sender, SoupBinTCPFramer

# Packet lengths (type byte + payload) of the fixed packets, from the specification.
SPEC_FIXED_LENGTHS = {"A": 31, "J": 2, "H": 1, "Z": 1, "L": 47, "R": 1, "O": 1}


def with_length(packet: bytes, length: int) -> bytes:
    """A packet whose length field says `length` instead of the truth."""
    return length.to_bytes(2, "big") + packet[2:]


# --- declarations ------------------------------------------------------------------------------------


def test_fixed_packet_lengths_are_the_specification_lengths():
    for packet_type, length in SPEC_FIXED_LENGTHS.items():
        layout = {**soup.SERVER_PACKETS, **soup.CLIENT_PACKETS}[packet_type]
        assert layout.length - soup.LENGTH_WIDTH == length, packet_type


def test_packet_type_sets_per_sender():
    assert set(soup.SERVER_PACKETS) == set("+AJSHZ")
    assert set(soup.CLIENT_PACKETS) == set("+LURO")
    assert set(soup.SERVER_PACKETS) & set(soup.CLIENT_PACKETS) == {"+"}


def test_heartbeat_timing_constants():
    assert soup.HEARTBEAT_INTERVAL_S == 1.0
    assert soup.HEARTBEAT_TIMEOUT_S == 15.0


def test_constant_packets():
    constants = {
        "H": soup.SERVER_HEARTBEAT_PACKET,
        "Z": soup.END_OF_SESSION_PACKET,
        "R": soup.CLIENT_HEARTBEAT_PACKET,
        "O": soup.LOGOUT_REQUEST_PACKET,
    }
    for letter, packet in constants.items():
        assert packet == (1).to_bytes(2, "big") + letter.encode()  # length 1: the type byte alone


# --- round trips ----------------------------------------------------------------------------------------

# (sender, packet bytes, type, expected fields, expected payload)
ROUND_TRIPS = [
    (Sender.SERVER, soup.encode_debug("server says hi"), "+", {}, b"server says hi"),
    (Sender.CLIENT, soup.encode_debug("client says hi"), "+", {}, b"client says hi"),
    (
        Sender.SERVER,
        soup.encode_login_accepted("SESSION001", 123_456_789_012),
        "A",
        {"session": "SESSION001", "sequence_number": 123_456_789_012},
        b"",
    ),
    (Sender.SERVER, soup.encode_login_rejected("A"), "J", {"reject_reason_code": "A"}, b""),
    (Sender.SERVER, soup.encode_login_rejected("S"), "J", {"reject_reason_code": "S"}, b""),
    (Sender.SERVER, soup.encode_sequenced_data(b"\x00\x01any bytes\xff"), "S", {}, b"\x00\x01any bytes\xff"),
    (Sender.SERVER, soup.SERVER_HEARTBEAT_PACKET, "H", {}, b""),
    (Sender.SERVER, soup.END_OF_SESSION_PACKET, "Z", {}, b""),
    (
        Sender.CLIENT,
        soup.encode_login_request("ALICE", "secret", "SESSION001", 42),
        "L",
        {"username": "ALICE", "password": "secret", "requested_session": "SESSION001", "requested_sequence_number": 42},
        b"",
    ),
    (
        Sender.CLIENT,
        soup.encode_login_request("BOB", "pw"),
        "L",
        {"username": "BOB", "password": "pw", "requested_session": "", "requested_sequence_number": 0},
        b"",
    ),
    (Sender.CLIENT, soup.encode_unsequenced_data(b"order bytes"), "U", {}, b"order bytes"),
    (Sender.CLIENT, soup.CLIENT_HEARTBEAT_PACKET, "R", {}, b""),
    (Sender.CLIENT, soup.LOGOUT_REQUEST_PACKET, "O", {}, b""),
]


@pytest.mark.parametrize(("sender", "packet", "packet_type", "fields", "payload"), ROUND_TRIPS)
def test_round_trip_every_packet_type(sender, packet, packet_type, fields, payload):
    (decoded,) = soup.decode_stream(packet, sender)
    assert decoded.packet_type == packet_type
    assert decoded.payload == payload
    assert decoded.offset == 0
    assert decoded.wire_length == len(packet)
    assert decoded.fields.packet_length == len(packet) - 2
    for name, value in fields.items():
        assert getattr(decoded.fields, name) == value, name


def test_login_fields_are_padded_as_the_specification_says():
    packet = soup.encode_login_request("BOB", "pw", "", 7)
    # username alpha 6, password alpha 10, session alpha 10 (all blank: current), sequence numeric 20
    assert packet[3:9] == b"BOB   "
    assert packet[9:19] == b"pw        "
    assert packet[19:29] == b" " * 10
    assert packet[29:49] == b" " * 19 + b"7"
    accepted = soup.encode_login_accepted("S1", 1)
    assert accepted[3:13] == b"S1        " and accepted[13:33] == b" " * 19 + b"1"


def _stream(sender: Sender) -> tuple[bytes, list[tuple[str, bytes]]]:
    cases = [(p, t, payload) for s, p, t, _, payload in ROUND_TRIPS if s is sender]
    return b"".join(p for p, _, _ in cases), [(t, payload) for _, t, payload in cases]


@pytest.mark.parametrize("sender", list(Sender))
def test_byte_at_a_time(sender):
    stream, expected = _stream(sender)
    framer = SoupBinTCPFramer(sender)
    packets = []
    for i in range(len(stream)):
        packets += framer.feed(stream[i : i + 1])
        assert framer.offset == i + 1
    framer.finish()
    assert [(p.packet_type, p.payload) for p in packets] == expected
    offsets = [p.offset for p in packets]
    assert offsets == [sum(p.wire_length for p in packets[:i]) for i in range(len(packets))]
    assert framer.pending == 0


@pytest.mark.parametrize("sender", list(Sender))
@given(cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=40))
def test_any_split_of_the_stream(sender, cuts):
    stream, expected = _stream(sender)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    framer = SoupBinTCPFramer(sender)
    packets = []
    for start, end in zip([0, *points], [*points, len(stream)]):
        packets += framer.feed(stream[start:end])
    framer.finish()
    assert [(p.packet_type, p.payload) for p in packets] == expected


def _alpha(width: int) -> st.SearchStrategy[str]:
    # ALPHA fields are space padded, so trailing spaces do not survive a round trip by design
    return st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=width).map(str.rstrip)


numeric20 = st.integers(min_value=0, max_value=10**20 - 1)


@given(
    username=_alpha(6),
    password=_alpha(10),
    session=_alpha(10),
    sequence=numeric20,
    accepted_sequence=numeric20,
    messages=st.lists(st.binary(max_size=300), max_size=5),
    debug=_alpha(40),
)
def test_property_round_trip(username, password, session, sequence, accepted_sequence, messages, debug):
    client = soup.encode_login_request(username, password, session, sequence) + soup.encode_debug(debug)
    client += b"".join(soup.encode_unsequenced_data(m) for m in messages) + soup.LOGOUT_REQUEST_PACKET
    login, text, *data, logout = soup.decode_stream(client, Sender.CLIENT)
    assert (login.fields.username, login.fields.password) == (username, password)
    assert (login.fields.requested_session, login.fields.requested_sequence_number) == (session, sequence)
    assert text.payload == debug.encode("ascii")
    assert [p.payload for p in data] == messages and all(p.packet_type == "U" for p in data)
    assert logout.packet_type == "O"

    server = soup.encode_login_accepted(session, accepted_sequence)
    server += b"".join(soup.encode_sequenced_data(m) for m in messages) + soup.END_OF_SESSION_PACKET
    accepted, *data, end = soup.decode_stream(server, Sender.SERVER)
    assert (accepted.fields.session, accepted.fields.sequence_number) == (session, accepted_sequence)
    assert [p.payload for p in data] == messages and all(p.packet_type == "S" for p in data)
    assert end.packet_type == "Z"


# --- errors --------------------------------------------------------------------------------------------

PREFIX = soup.encode_debug("x") + soup.encode_debug("two")  # valid packets before the bad one: 4 + 6 bytes


def _fails(sender: Sender, stream: bytes, **kwargs) -> pytest.ExceptionInfo:
    framer = SoupBinTCPFramer(sender, **kwargs)
    with pytest.raises(MalformedError) as info:
        for i in range(len(stream)):
            framer.feed(stream[i : i + 1])
    # the framer cannot resynchronise: it keeps failing with the same error
    with pytest.raises(MalformedError) as again:
        framer.feed(soup.encode_debug("more"))
    assert str(again.value) == str(info.value)
    return info


@pytest.mark.parametrize("sender", list(Sender))
def test_zero_length_is_malformed_at_its_stream_offset(sender):
    info = _fails(sender, PREFIX + with_length(soup.encode_debug(""), 0))
    assert info.value.offset == len(PREFIX)
    assert "packet length" in info.value.expected


def test_length_over_the_configured_maximum_is_malformed_before_the_payload_arrives():
    packet = soup.encode_sequenced_data(bytes(100))  # packet length 101
    assert soup.decode_stream(packet, Sender.SERVER, max_packet_length=101)[0].payload == bytes(100)
    framer = SoupBinTCPFramer(Sender.SERVER, max_packet_length=100)
    framer.feed(PREFIX)
    with pytest.raises(MalformedError) as info:
        framer.feed(packet[:2])  # the length field alone is enough to refuse it
    assert info.value.offset == len(PREFIX)
    assert "1..100" in info.value.expected and info.value.got == "101"


def test_max_packet_length_is_validated():
    for bad in (0, 0x10000):
        with pytest.raises(ValueError, match="max_packet_length"):
            SoupBinTCPFramer(Sender.CLIENT, max_packet_length=bad)


@pytest.mark.parametrize(
    ("sender", "packet"),
    [
        (Sender.SERVER, soup.encode_login_request("u", "p")),  # client packets from the server
        (Sender.SERVER, soup.encode_unsequenced_data(b"m")),
        (Sender.SERVER, soup.CLIENT_HEARTBEAT_PACKET),
        (Sender.SERVER, soup.LOGOUT_REQUEST_PACKET),
        (Sender.CLIENT, soup.encode_login_accepted("s", 1)),  # server packets from the client
        (Sender.CLIENT, soup.encode_login_rejected("A")),
        (Sender.CLIENT, soup.encode_sequenced_data(b"m")),
        (Sender.CLIENT, soup.SERVER_HEARTBEAT_PACKET),
        (Sender.CLIENT, soup.END_OF_SESSION_PACKET),
        (Sender.SERVER, soup.SERVER_HEARTBEAT_PACKET[:2] + b"X"),  # nobody's
        (Sender.CLIENT, soup.SERVER_HEARTBEAT_PACKET[:2] + b"\x00"),
    ],
)
def test_packet_type_not_sent_by_that_side_is_malformed_at_the_type_byte(sender, packet):
    info = _fails(sender, PREFIX + packet)
    assert info.value.offset == len(PREFIX) + 2
    assert sender.value in info.value.expected


@pytest.mark.parametrize(
    ("sender", "packet", "wrong_length"),
    [
        (Sender.SERVER, soup.SERVER_HEARTBEAT_PACKET + b" ", 2),
        (Sender.SERVER, soup.END_OF_SESSION_PACKET + b" ", 2),
        (Sender.SERVER, soup.encode_login_accepted("s", 1)[:-1], 30),
        (Sender.SERVER, soup.encode_login_accepted("s", 1) + b" ", 32),
        (Sender.SERVER, soup.encode_login_rejected("A") + b"A", 3),
        (Sender.CLIENT, soup.encode_login_request("u", "p")[:-1], 46),
        (Sender.CLIENT, soup.CLIENT_HEARTBEAT_PACKET + b" ", 2),
        (Sender.CLIENT, soup.LOGOUT_REQUEST_PACKET + b" ", 2),
    ],
)
def test_fixed_packet_with_wrong_length_is_malformed(sender, packet, wrong_length):
    info = _fails(sender, PREFIX + with_length(packet, wrong_length))
    assert info.value.offset == len(PREFIX)
    assert info.value.got == str(wrong_length)


def test_non_digit_sequence_number_is_malformed_at_the_field():
    good = soup.encode_login_accepted("SESSION001", 5)
    bad = good[:13] + b"5x".rjust(20) + good[33:]
    info = _fails(Sender.SERVER, PREFIX + bad)
    assert info.value.offset == len(PREFIX) + 13
    assert "digits" in info.value.expected


@pytest.mark.parametrize("keep", [1, 2, 3, 20])
def test_stream_ending_inside_a_packet_is_truncated(keep):
    framer = SoupBinTCPFramer(Sender.CLIENT)
    assert framer.feed(PREFIX + soup.encode_login_request("u", "p")[:keep]) != []
    assert framer.pending == keep
    with pytest.raises(TruncatedError) as info:
        framer.finish()
    assert info.value.offset == len(PREFIX)


def test_encode_refuses_what_cannot_be_sent():
    with pytest.raises(ValueError, match="not a SoupBinTCP packet type"):
        soup.encode("Q")
    with pytest.raises(ValueError, match="no payload"):
        soup.encode("H", b"x")
    with pytest.raises(ValueError, match="filled in"):
        soup.encode("A", packet_length=5, session="s", sequence_number=1)
    with pytest.raises(ValueError, match="reject reason"):
        soup.encode_login_rejected("X")
    with pytest.raises(ValueError, match="2-byte"):
        soup.encode_sequenced_data(bytes(0xFFFF))
    with pytest.raises(ValueError, match="longer than 10"):
        soup.encode_login_accepted("ELEVENCHARS", 1)
    assert len(soup.encode_sequenced_data(bytes(0xFFFE))) == 0xFFFF + 2


# --- tshark, an independent decoder -------------------------------------------------------------------

SESSION = "SESSION042"
FIRST_SEQUENCE = 1_234_567
SEQUENCED = [b"first message", b"second", b"third!"]  # first bytes are not OUCH types: shown as raw bytes
UNSEQUENCED = [b"client data", b"more client data"]


def _conversation() -> list[tuple[str, bytes]]:
    writes = [("client", soup.encode_login_request("ALICE", "secret", SESSION, FIRST_SEQUENCE))]
    writes.append(("server", soup.encode_login_accepted(SESSION, FIRST_SEQUENCE)))
    writes.append(("server", soup.encode_debug("hello client")))
    writes += [("server", soup.encode_sequenced_data(m)) for m in SEQUENCED]
    writes += [("client", soup.encode_unsequenced_data(m)) for m in UNSEQUENCED]
    writes += [("client", soup.CLIENT_HEARTBEAT_PACKET), ("server", soup.SERVER_HEARTBEAT_PACKET)]
    writes += [("client", soup.encode_debug("hello server"))]
    writes += [("server", soup.encode_login_rejected("S")), ("server", soup.END_OF_SESSION_PACKET)]
    writes += [("client", soup.LOGOUT_REQUEST_PACKET)]
    return writes


def _number(layer, field: str) -> int:
    # tshark keeps SoupBinTCP sequence numbers out of the field value; they are in its display text
    return int(re.search(r": (\d+)", layer.get(field)["showname"]).group(1))


@pytest.mark.parametrize("segment", [None, 5], ids=["segment-per-packet", "5-byte-segments"])
def test_tshark_decodes_what_we_encode(tmp_path, tshark, tcp_capture, segment):
    pcap = tmp_path / "soupbintcp.pcap"
    writes = _conversation()
    port = tcp_capture(pcap, writes, segment=segment)
    layers = [layer for layer in tshark(pcap, f"tcp.port=={port},soupbintcp") if layer.protocol == "soupbintcp"]

    expected_types = [packet[2:3] for _, packet in writes]
    assert [layer.raw("soupbintcp.packet_type") for layer in layers] == expected_types
    by_type: dict[bytes, list] = {}
    for layer in layers:
        by_type.setdefault(layer.raw("soupbintcp.packet_type"), []).append(layer)

    (login,) = by_type[b"L"]
    assert login.get("soupbintcp.packet_length")["show"] == "47"
    assert login.get("soupbintcp.username")["show"] == "ALICE "
    assert login.get("soupbintcp.password")["show"] == "secret    "
    assert login.get("soupbintcp.session")["show"] == SESSION
    assert _number(login, "soupbintcp.req_seq_num") == FIRST_SEQUENCE

    (accepted,) = by_type[b"A"]
    assert accepted.get("soupbintcp.packet_length")["show"] == "31"
    assert accepted.get("soupbintcp.session")["show"] == SESSION
    assert _number(accepted, "soupbintcp.next_seq_num") == FIRST_SEQUENCE

    # tshark counts Sequenced Data packets from Login Accepted's number, as a client must
    sequenced = by_type[b"S"]
    assert [_number(layer, "soupbintcp.seq_num") for layer in sequenced] == [
        FIRST_SEQUENCE + i for i in range(len(SEQUENCED))
    ]
    assert [layer.raw("soupbintcp.message") for layer in sequenced] == SEQUENCED
    assert [layer.get("soupbintcp.packet_length")["show"] for layer in sequenced] == [
        str(1 + len(m)) for m in SEQUENCED
    ]
    assert [layer.raw("soupbintcp.message") for layer in by_type[b"U"]] == UNSEQUENCED
    assert [layer.get("soupbintcp.text")["show"] for layer in by_type[b"+"]] == ["hello client", "hello server"]
    (rejected,) = by_type[b"J"]
    assert rejected.raw("soupbintcp.reject_code") == b"S"
    assert "Session not available" in rejected.get("soupbintcp.reject_code")["showname"]
    for letter in b"HZRO":
        (layer,) = by_type[bytes([letter])]
        assert layer.get("soupbintcp.packet_length")["show"] == "1"
