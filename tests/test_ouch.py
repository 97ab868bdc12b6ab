"""OUCH 4.2 codec: every message both ways, typed errors, and tshark's OUCH dissector as a second opinion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirebook.proto import ouch
from wirebook.proto import soupbintcp as soup
from wirebook.proto.errors import MalformedError, TruncatedError
from wirebook.proto.fields import Kind

# Message lengths (type byte included) from the OUCH 4.2 specification.
SPEC_LENGTHS = {
    "inbound": {"O": 49, "U": 47, "X": 19, "M": 20, "N": 15},
    "outbound": {
        "S": 10,
        "A": 66,
        "U": 80,
        "C": 28,
        "D": 37,
        "E": 40,
        "B": 32,
        "G": 45,
        "F": 41,
        "J": 24,
        "P": 23,
        "I": 23,
        "T": 36,
        "M": 28,
    },
}

T0 = 34_200_000_000_123  # 9:30:00.000000123 in nanoseconds since midnight
ENTER = dict(
    order_token="WB000000000001",
    buy_sell_indicator=ouch.BUY,
    shares=1_500,
    stock="AAPL",
    price=1_234_500,
    time_in_force=ouch.TIME_IN_FORCE_MARKET_HOURS,
    firm="WBK1",
    display="A",
    capacity="P",
    intermarket_sweep_eligibility="N",
    minimum_quantity=100,
    cross_type="N",
    customer_type="R",
)
ORDER_ECHO = dict(
    buy_sell_indicator=ouch.SELL,
    shares=2_500,
    stock="MSFT",
    price=3_456_700,
    time_in_force=ouch.TIME_IN_FORCE_SYSTEM_HOURS,
    firm="WBK2",
    display="N",
    order_reference_number=987_654_321_012,
    capacity="A",
    intermarket_sweep_eligibility="Y",
    minimum_quantity=50,
    cross_type="O",
    order_state="L",
)
EXECUTION = dict(executed_shares=400, execution_price=1_234_400, liquidity_flag="A", match_number=55_555_555_555)

# (direction, type, tshark's name for the message, fields): one sample of every OUCH 4.2 message
SAMPLES = [
    ("inbound", "O", "Enter Order", ENTER),
    (
        "inbound",
        "U",
        "Replace Order",
        dict(
            existing_order_token="WB000000000001",
            replacement_order_token="WB000000000002",
            shares=2_000,
            price=1_234_600,
            time_in_force=ouch.TIME_IN_FORCE_IMMEDIATE_OR_CANCEL,
            display="Y",
            intermarket_sweep_eligibility="Y",
            minimum_quantity=0,
        ),
    ),
    ("inbound", "X", "Cancel Order", dict(order_token="WB000000000002", shares=0)),
    ("inbound", "M", "Modify Order", dict(order_token="SHORT1", buy_sell_indicator=ouch.SELL_SHORT, shares=300)),
    ("inbound", "N", None, dict(order_token="WB000000000003")),  # Trade Now: newer than Wireshark's dissector
    ("outbound", "S", "System Event", dict(timestamp=T0, event_code="S")),
    (
        "outbound",
        "A",
        "Accepted",
        dict(timestamp=T0 + 1, order_token="WB000000000001", bbo_weight_indicator="2", **ORDER_ECHO),
    ),
    (
        "outbound",
        "U",
        "Replaced",
        dict(
            timestamp=T0 + 2,
            replacement_order_token="WB000000000002",
            previous_order_token="WB000000000001",
            bbo_weight_indicator="S",
            **ORDER_ECHO,
        ),
    ),
    (
        "outbound",
        "C",
        "Canceled",
        dict(timestamp=T0 + 3, order_token="WB000000000002", decrement_shares=700, reason="U"),
    ),
    (
        "outbound",
        "D",
        "AIQ Canceled",
        dict(
            timestamp=T0 + 4,
            order_token="WB000000000004",
            decrement_shares=10,
            reason="Q",
            quantity_prevented_from_trading=12,
            execution_price=1_000_100,
            liquidity_flag="R",
        ),
    ),
    ("outbound", "E", "Executed", dict(timestamp=T0 + 5, order_token="WB000000000005", **EXECUTION)),
    (
        "outbound",
        "B",
        "Broken Trade",
        dict(timestamp=T0 + 6, order_token="WB000000000005", match_number=55_555_555_555, reason="E"),
    ),
    (
        "outbound",
        "G",
        "Executed with Reference Price",
        dict(
            timestamp=T0 + 7,
            order_token="WB000000000006",
            reference_price=1_234_300,
            reference_price_type="I",
            **EXECUTION,
        ),
    ),
    (
        "outbound",
        "F",
        "Trade Correction",
        dict(timestamp=T0 + 8, order_token="WB000000000006", reason="N", **EXECUTION),
    ),
    ("outbound", "J", "Rejected", dict(timestamp=T0 + 9, order_token="WB000000000007", reason="X")),
    ("outbound", "P", "Cancel Pending", dict(timestamp=T0 + 10, order_token="WB000000000008")),
    ("outbound", "I", "Cancel Reject", dict(timestamp=T0 + 11, order_token="WB000000000009")),
    (
        "outbound",
        "T",
        "Order Priority Update",
        dict(timestamp=T0 + 12, order_token="WB000000000010", price=1_111_100, display="A", order_reference_number=77),
    ),
    (
        "outbound",
        "M",
        "Order Modified",
        dict(timestamp=T0 + 13, order_token="SHORT1", buy_sell_indicator=ouch.SELL_SHORT_EXEMPT, shares=250),
    ),
]

ENCODE = {"inbound": ouch.encode_inbound, "outbound": ouch.encode_outbound}
DECODE = {"inbound": ouch.decode_inbound, "outbound": ouch.decode_outbound}
TABLE = {"inbound": ouch.INBOUND, "outbound": ouch.OUTBOUND}
SAMPLE_IDS = [f"{d}-{t}" for d, t, _, _ in SAMPLES]


def test_every_message_of_the_specification_is_declared_with_its_length():
    for direction, lengths in SPEC_LENGTHS.items():
        assert {t: layout.length for t, layout in TABLE[direction].items()} == lengths
    assert ouch.MAX_MESSAGE_LENGTH == 80


def test_samples_cover_every_message_and_every_field():
    assert {(d, t) for d, t, _, _ in SAMPLES} == {(d, t) for d in TABLE for t in TABLE[d]}
    for direction, type_, _, fields in SAMPLES:
        names = {f.name for f in TABLE[direction][type_].value_fields} - {"message_type"}
        assert set(fields) == names, (direction, type_)


@pytest.mark.parametrize(("direction", "type_", "name", "fields"), SAMPLES, ids=SAMPLE_IDS)
def test_round_trip_every_message(direction, type_, name, fields):
    message = ENCODE[direction](type_, **fields)
    assert len(message) == SPEC_LENGTHS[direction][type_]
    assert message[:1] == type_.encode()
    decoded = DECODE[direction](message)
    assert decoded.message_type == type_
    assert decoded._asdict() == {"message_type": type_, **fields}


def test_order_token_and_timestamp_encoding():
    message = ouch.encode_outbound("P", timestamp=T0, order_token="TOKEN")
    assert message[1:9] == T0.to_bytes(8, "big")
    assert message[9:23] == b"TOKEN" + b" " * 9


def test_u_and_m_mean_different_messages_in_each_direction():
    replace, replaced = ouch.INBOUND["U"], ouch.OUTBOUND["U"]
    assert replace.name == "ouch_replace_order" and replaced.name == "ouch_replaced"
    assert ouch.INBOUND["M"].name == "ouch_modify_order" and ouch.OUTBOUND["M"].name == "ouch_order_modified"
    inbound_u = ouch.encode_inbound("U", **SAMPLES[1][3])
    with pytest.raises(TruncatedError) as info:
        ouch.decode_outbound(inbound_u)  # 47 bytes are not a whole Replaced
    assert info.value.offset == 0 and info.value.expected == "80 bytes"
    outbound_m = ouch.encode_outbound("M", **SAMPLES[-1][3])
    with pytest.raises(MalformedError) as info:
        ouch.decode_inbound(outbound_m)  # 28 bytes are more than a Modify Order
    assert info.value.offset == 20


def _value(field) -> st.SearchStrategy:
    if field.kind is Kind.ALPHA:
        codes = ouch.INBOUND_CODES.get(field.name)
        if codes is not None:
            return st.sampled_from(sorted(codes)).map(str.rstrip)  # blank code " " decodes as ""
        text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=field.width)
        return text.map(str.rstrip)  # padding spaces do not survive a round trip by design
    return st.integers(min_value=0, max_value=field.max_value)


@given(data=st.data())
def test_property_round_trip(data):
    direction = data.draw(st.sampled_from(sorted(TABLE)))
    type_ = data.draw(st.sampled_from(sorted(TABLE[direction])))
    layout = TABLE[direction][type_]
    fields = {f.name: data.draw(_value(f), label=f.name) for f in layout.value_fields if f.name != "message_type"}
    message = ENCODE[direction](type_, **fields)
    assert len(message) == layout.length
    assert DECODE[direction](message)._asdict() == {"message_type": type_, **fields}


@given(messages=st.lists(st.sampled_from(range(len(SAMPLES))), max_size=12), chunk=st.integers(1, 9))
def test_property_ouch_over_soupbintcp_streams(messages, chunk):
    """Messages survive SoupBinTCP framing whatever the TCP segmentation."""
    chosen = [SAMPLES[i] for i in messages]
    streams = {"inbound": b"", "outbound": b""}
    for direction, type_, _, fields in chosen:
        wrap = soup.encode_unsequenced_data if direction == "inbound" else soup.encode_sequenced_data
        streams[direction] += wrap(ENCODE[direction](type_, **fields))
    for direction, sender in (("inbound", soup.Sender.CLIENT), ("outbound", soup.Sender.SERVER)):
        framer = soup.SoupBinTCPFramer(sender, max_packet_length=1 + ouch.MAX_MESSAGE_LENGTH)
        packets = []
        for at in range(0, len(streams[direction]), chunk):
            packets += framer.feed(streams[direction][at : at + chunk])
        framer.finish()
        decoded = [DECODE[direction](p.payload)._asdict() for p in packets]
        assert decoded == [{"message_type": t, **f} for d, t, _, f in chosen if d == direction]


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_empty_message_is_truncated(direction):
    with pytest.raises(TruncatedError) as info:
        DECODE[direction](b"")
    assert info.value.offset == 0 and "type" in info.value.expected


@pytest.mark.parametrize(
    ("direction", "message"),
    [
        ("outbound", ouch.encode_inbound("O", **ENTER)),  # Enter Order is never sent by Nasdaq
        ("outbound", ouch.encode_inbound("X", order_token="T", shares=1)),
        ("inbound", ouch.encode_outbound("S", timestamp=0, event_code="E")),
        ("inbound", ouch.encode_outbound("E", timestamp=0, order_token="T", **EXECUTION)),
        ("inbound", b"?" + bytes(14)),
    ],
)
def test_unknown_type_for_the_direction_is_malformed_at_offset_0(direction, message):
    with pytest.raises(MalformedError) as info:
        DECODE[direction](message)
    assert info.value.offset == 0
    assert info.value.got == repr(message[:1])


@pytest.mark.parametrize(("direction", "type_", "name", "fields"), SAMPLES, ids=SAMPLE_IDS)
def test_wrong_length_is_a_typed_error(direction, type_, name, fields):
    message = ENCODE[direction](type_, **fields)
    for cut in (1, len(message) - 1):
        with pytest.raises(TruncatedError) as info:
            DECODE[direction](message[:cut])
        assert info.value.offset == 0
        assert info.value.expected == f"{SPEC_LENGTHS[direction][type_]} bytes"
    with pytest.raises(MalformedError) as info:
        DECODE[direction](message + b" ")
    assert info.value.offset == SPEC_LENGTHS[direction][type_]


def test_non_ascii_text_is_malformed_at_its_field():
    message = bytearray(ouch.encode_outbound("J", timestamp=T0, order_token="TOKEN", reason="X"))
    message[12] = 0xE9
    with pytest.raises(MalformedError) as info:
        ouch.decode_outbound(bytes(message))
    assert info.value.offset == 9  # the order token starts after the type byte and the timestamp


def test_blank_code_round_trips_as_empty_text():
    message = ouch.encode_inbound("O", **{**ENTER, "customer_type": " "})
    assert message[48:49] == b" "
    assert ouch.decode_inbound(message).customer_type == ""
    assert ouch.encode_inbound("O", **{**ENTER, "customer_type": ""}) == message


def test_decoding_accepts_codes_added_after_the_specification():
    message = ouch.encode_outbound("J", timestamp=T0, order_token="TOKEN", reason="Y")
    assert ouch.decode_outbound(message).reason == "Y"


def test_encode_inbound_refuses_undocumented_codes_and_unknown_types():
    for name, bad in (("buy_sell_indicator", "X"), ("display", "?"), ("cross_type", "Q"), ("customer_type", "Z")):
        with pytest.raises(ValueError, match=name):
            ouch.encode_inbound("O", **{**ENTER, name: bad})
    with pytest.raises(KeyError, match="inbound"):
        ouch.encode_inbound("S", timestamp=0, event_code="S")
    with pytest.raises(KeyError, match="outbound"):
        ouch.encode_outbound("O", **ENTER)
    with pytest.raises(ValueError, match="first argument"):
        ouch.encode_inbound("X", message_type="O", order_token="T", shares=1)
    with pytest.raises(KeyError, match="required"):
        ouch.encode_inbound("X", order_token="T")
    with pytest.raises(ValueError, match="longer than 14"):
        ouch.encode_inbound("X", order_token="FIFTEEN_CHARS__", shares=1)


def test_documented_constants():
    assert (ouch.BUY, ouch.SELL, ouch.SELL_SHORT, ouch.SELL_SHORT_EXEMPT) == ("B", "S", "T", "E")
    assert ouch.TIME_IN_FORCE_IMMEDIATE_OR_CANCEL == 0
    assert (ouch.TIME_IN_FORCE_MARKET_HOURS, ouch.TIME_IN_FORCE_SYSTEM_HOURS) == (99_998, 99_999)
    assert ouch.MARKET_PRICE == 2_147_483_647  # $214,748.3647
    for table in (ouch.CANCEL_REASON, ouch.REJECT_REASON, ouch.LIQUIDITY_FLAG, ouch.BBO_WEIGHT_INDICATOR):
        assert all(len(code) == 1 for code in table)
    assert set(ouch.ORDER_STATE) == {"L", "D"} and set(ouch.EVENT_CODE) == {"S", "E"}


# --- tshark, an independent decoder -------------------------------------------------------------------

# our field name -> Wireshark's OUCH field; "reason" depends on the message
TSHARK_FIELD = {
    "timestamp": "ouch.timestamp",
    "order_token": "ouch.order_token",
    "existing_order_token": "ouch.existing_order_token",
    "replacement_order_token": "ouch.replacement_order_token",
    "previous_order_token": "ouch.previous_order_token",
    "buy_sell_indicator": "ouch.buy_sell_indicator",
    "shares": "ouch.shares",
    "stock": "ouch.stock",
    "price": "ouch.price",
    "time_in_force": "ouch.tif",
    "firm": "ouch.firm",
    "display": "ouch.display",
    "capacity": "ouch.capacity",
    "intermarket_sweep_eligibility": "ouch.iso_eligible",
    "minimum_quantity": "ouch.min_quantity",
    "cross_type": "ouch.cross_type",
    "customer_type": "ouch.customer_type",
    "event_code": "ouch.event_code",
    "order_reference_number": "ouch.order_reference_number",
    "order_state": "ouch.order_state",
    "bbo_weight_indicator": "ouch.bbo_weight_indicator",
    "decrement_shares": "ouch.decrement_shares",
    "quantity_prevented_from_trading": "ouch.quantity_prevented_from_trading",
    "execution_price": "ouch.execution_price",
    "liquidity_flag": "ouch.liquidity_flag",
    "match_number": "ouch.match_number",
    "executed_shares": "ouch.executed_shares",
    "reference_price": "ouch.reference_price",
    "reference_price_type": "ouch.reference_price_type",
}
TSHARK_REASON = {
    "C": "ouch.cancel_reason",
    "D": "ouch.cancel_reason",
    "B": "ouch.broken_trade_reason",
    "J": "ouch.reject_reason",
    "F": "ouch.trade_correction_reason",
}
LOGIN_SEQUENCE = 1_001


def _tshark_name(type_: str, field: str) -> str:
    return TSHARK_REASON[type_] if field == "reason" else TSHARK_FIELD[field]


def _expected_bytes(value: object, width: int) -> bytes:
    if isinstance(value, str):
        return value.encode("ascii").ljust(width, b" ")
    return int(value).to_bytes(width, "big")


@pytest.mark.parametrize("segment", [None, 7], ids=["segment-per-packet", "7-byte-segments"])
def test_tshark_decodes_every_message_as_we_encoded_it(tmp_path, tshark, tcp_capture, segment):
    checked = [s for s in SAMPLES if s[2] is not None]
    writes = [("client", soup.encode_login_request("WBK", "pw", "", LOGIN_SEQUENCE))]
    writes.append(("server", soup.encode_login_accepted("OUCHSESS", LOGIN_SEQUENCE)))
    for direction, type_, _, fields in checked:
        if direction == "inbound":
            writes.append(("client", soup.encode_unsequenced_data(ouch.encode_inbound(type_, **fields))))
        else:
            writes.append(("server", soup.encode_sequenced_data(ouch.encode_outbound(type_, **fields))))
    pcap = tmp_path / "ouch.pcap"
    port = tcp_capture(pcap, writes, segment=segment)
    layers = tshark(pcap, f"tcp.port=={port},soupbintcp")
    soup_layers = [layer for layer in layers if layer.protocol == "soupbintcp"]
    ouch_layers = [layer for layer in layers if layer.protocol == "ouch"]

    assert [layer.raw("soupbintcp.packet_type") for layer in soup_layers] == [w[1][2:3] for w in writes]
    sequenced = [layer for layer in soup_layers if layer.raw("soupbintcp.packet_type") == b"S"]
    expected_sequence = range(LOGIN_SEQUENCE, LOGIN_SEQUENCE + len(sequenced))
    assert [f"Sequence number: {n} (Calculated)" for n in expected_sequence] == [
        layer.get("soupbintcp.seq_num")["showname"] for layer in sequenced
    ]

    assert [layer.title for layer in ouch_layers] == [f"OUCH, {name}" for _, _, name, _ in checked]
    for layer, (direction, type_, name, fields) in zip(ouch_layers, checked):
        assert layer.raw("ouch.packet_type") == type_.encode()
        shown = {f["name"] for f in layer.fields} - {"ouch.packet_type"}
        assert shown == {_tshark_name(type_, field) for field in fields}, name
        layout = TABLE[direction][type_]
        for field, value in fields.items():
            tshark_field = layer.get(_tshark_name(type_, field))
            where = f"{name}.{field}"
            assert int(tshark_field["pos"]) - layer.position == layout.by_name[field].offset, where
            assert int(tshark_field["size"]) == layout.by_name[field].width, where
            assert bytes.fromhex(tshark_field["value"]) == _expected_bytes(value, layout.by_name[field].width), where

    # a few values as tshark displays them, worked out by hand from the inputs
    enter = ouch_layers[0]
    assert enter.get("ouch.price")["showname"] == "Price: $123.4500"
    assert enter.get("ouch.tif")["showname"] == "Time In Force: Market Hours (99998)"
    assert enter.get("ouch.shares")["show"] == "1500"
    assert enter.get("ouch.stock")["show"] == "AAPL    "
    system_event = ouch_layers[[t for _, t, _, _ in checked].index("S", 4)]
    assert system_event.get("ouch.timestamp")["show"] == "9:30:00.000000123"
