"""ITCH 5.0 field tables against the specification, and the codec."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirebook.proto import itch
from wirebook.proto.errors import MalformedError, TruncatedError
from wirebook.proto.fields import Kind

# Message lengths as printed in the ITCH 5.0 specification (section 4), typed in from the spec.
SPEC_LENGTHS = {
    "S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21, "A": 36,
    "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44, "Q": 40, "B": 19, "I": 50, "N": 20, "O": 48,
}  # fmt: skip


def test_every_type_of_the_specification_is_declared():
    assert set(itch.MESSAGES) == set(SPEC_LENGTHS)
    assert len(itch.MESSAGES) == 23


@pytest.mark.parametrize("letter", sorted(SPEC_LENGTHS))
def test_length_and_header(letter):
    layout = itch.MESSAGES[letter]
    assert layout.length == SPEC_LENGTHS[letter]
    assert [(f.name, f.offset, f.width) for f in layout.fields[:4]] == [
        ("message_type", 0, 1), ("stock_locate", 1, 2), ("tracking_number", 3, 2), ("timestamp", 5, 6),
    ]  # fmt: skip
    assert itch.LENGTH_BY_TYPE_BYTE[ord(letter)] == SPEC_LENGTHS[letter]


def test_add_order_offsets_match_spec():
    fields = {f.name: (f.offset, f.width) for f in itch.MESSAGES["A"].fields}
    assert fields["order_reference_number"] == (11, 8)
    assert fields["buy_sell_indicator"] == (19, 1)
    assert fields["shares"] == (20, 4)
    assert fields["stock"] == (24, 8)
    assert fields["price"] == (32, 4)


def _value_strategy(field):
    if field.kind is Kind.ALPHA:
        return st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=field.width)
    return st.integers(0, field.max_value)


@pytest.mark.parametrize("letter", sorted(SPEC_LENGTHS))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_round_trip_every_type(letter, data):
    layout = itch.MESSAGES[letter]
    values = {f.name: data.draw(_value_strategy(f)) for f in layout.value_fields if f.name != "message_type"}
    raw = itch.encode(letter, **values)
    assert len(raw) == layout.length and raw[0] == ord(letter)
    decoded = itch.decode(raw)
    assert decoded._asdict() == {"message_type": letter, **values}
    # the bulk path agrees with the scalar path on the same bytes
    buf = np.frombuffer(b"\0\0" + raw, dtype=np.uint8)
    bulk = itch.decode_bulk(buf, np.array([2]), np.array([ord(letter)], dtype=np.uint8))[letter]
    for name, value in values.items():
        got = bulk[name][0]
        assert (got.decode().rstrip() if isinstance(got, bytes) else int(got)) == value


def test_decode_errors():
    raw = itch.encode("D", stock_locate=1, tracking_number=0, timestamp=5, order_reference_number=9)
    with pytest.raises(TruncatedError, match="order_delete at byte offset 3"):
        itch.decode(b"xxx" + raw[:-1], 3)
    with pytest.raises(MalformedError, match="got 'z'"):
        itch.decode(b"z" + raw[1:])
    with pytest.raises(KeyError, match="not an ITCH 5.0 message type"):
        itch.encode("z")
