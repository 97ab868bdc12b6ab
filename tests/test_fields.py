"""The field-table mechanism: declaration checks, scalar codec, numpy codec."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirebook.proto.errors import MalformedError, TruncatedError
from wirebook.proto.fields import ALPHA, NUMERIC, PAD, UINT, Layout


def test_gap_in_table_is_refused():
    with pytest.raises(ValueError, match="offset 3, expected 2"):
        Layout("bad", [("a", 0, 2, UINT), ("b", 3, 1, UINT)])


def test_overlap_in_table_is_refused():
    with pytest.raises(ValueError, match="offset 1, expected 2"):
        Layout("bad", [("a", 0, 2, UINT), ("b", 1, 1, UINT)])


def test_duplicate_field_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        Layout("bad", [("a", 0, 2, UINT), ("a", 2, 1, UINT)])


LAYOUT = Layout(
    "sample",
    [("kind", 0, 1, ALPHA), ("n6", 1, 6, UINT), ("n2", 7, 2, UINT), ("name", 9, 4, ALPHA), ("pad", 13, 3, PAD),
     ("seq", 16, 5, NUMERIC)],
    tag=b"Z",
    tag_field="kind",
)  # fmt: skip


def test_pack_is_big_endian_and_padded():
    raw = LAYOUT.pack(n6=0x010203040506, n2=0x0708, name="AB", seq=42)
    assert raw[:1] == b"Z"
    assert raw[1:7] == bytes([1, 2, 3, 4, 5, 6])
    assert raw[7:9] == bytes([7, 8])
    assert raw[9:13] == b"AB  "
    assert raw[13:16] == b"\0\0\0"
    assert raw[16:21] == b"   42"


def test_pack_range_checks():
    with pytest.raises(ValueError, match="does not fit 2 unsigned bytes"):
        LAYOUT.pack(n6=0, n2=1 << 16, name="", seq=0)
    with pytest.raises(ValueError, match="longer than 4 bytes"):
        LAYOUT.pack(n6=0, n2=0, name="ABCDE", seq=0)
    with pytest.raises(KeyError, match="'n2' is required"):
        LAYOUT.pack(n6=0, name="", seq=0)
    with pytest.raises(ValueError, match="5 ASCII digits"):
        LAYOUT.pack(n6=0, n2=0, name="", seq=123456)


def test_unpack_errors_name_offset():
    raw = LAYOUT.pack(n6=1, n2=2, name="X", seq=3)
    with pytest.raises(TruncatedError, match="at byte offset 5"):
        LAYOUT.unpack(b"\0" * 5 + raw[:-1], 5)
    with pytest.raises(MalformedError, match="type b'Z'"):
        LAYOUT.unpack(b"Q" + raw[1:])
    bad_digits = raw[:16] + b"  x42"
    with pytest.raises(MalformedError, match="sample.seq at byte offset 16"):
        LAYOUT.unpack(bad_digits)


@given(
    n6=st.integers(0, (1 << 48) - 1),
    n2=st.integers(0, 0xFFFF),
    name=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", max_size=4),
    seq=st.integers(0, 99999),
)
def test_round_trip_scalar_and_numpy(n6, n2, name, seq):
    raw = LAYOUT.pack(n6=n6, n2=n2, name=name, seq=seq)
    assert LAYOUT.unpack(raw) == ("Z", n6, n2, name, seq)
    decoded = LAYOUT.decode_array(np.frombuffer(raw, dtype=np.uint8).reshape(1, -1))
    assert int(decoded["n6"][0]) == n6 and int(decoded["n2"][0]) == n2
    assert decoded["name"][0].decode().rstrip() == name
    assert LAYOUT.encode_array(decoded)[0, :16].tobytes() == raw[:16]


def test_little_endian_layout():
    le = Layout("le", [("a", 0, 4, UINT), ("b", 4, 3, UINT)], byteorder="little")
    raw = le.pack(a=0x01020304, b=0x050607)
    assert raw == bytes([4, 3, 2, 1, 7, 6, 5])
    arr = le.decode_array(np.frombuffer(raw, dtype=np.uint8).reshape(1, -1))
    assert int(arr["a"][0]) == 0x01020304 and int(arr["b"][0]) == 0x050607


@given(
    n6=st.integers(0, (1 << 48) - 1),
    n2=st.integers(0, 0xFFFF),
    name=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", max_size=4),
    seq=st.integers(0, 99999),
    variable=st.sets(st.sampled_from(["n6", "n2", "name", "seq"])),
)
def test_packer_gives_packs_bytes(n6, n2, name, seq, variable):
    values = {"n6": n6, "n2": n2, "name": name, "seq": seq}
    order = sorted(variable)
    fast = LAYOUT.packer(*order, **{k: v for k, v in values.items() if k not in variable})
    assert fast(*(values[k] for k in order)) == LAYOUT.pack(**values)


def test_packer_refuses_what_pack_refuses_naming_the_field():
    fast = LAYOUT.packer("n6", "n2", "name", "seq")
    with pytest.raises(ValueError, match=r"sample\.n2: 65536 does not fit 2 unsigned bytes"):
        fast(0, 1 << 16, "", 0)
    with pytest.raises(ValueError, match=r"sample\.n6: -1 does not fit 6"):
        fast(-1, 0, "", 0)
    with pytest.raises(ValueError, match=r"sample\.name: 'ABCDE' is longer than 4 bytes"):
        fast(0, 0, "ABCDE", 0)
    with pytest.raises(ValueError, match=r"sample\.seq: 123456 does not fit 5 ASCII digits"):
        fast(0, 0, "", 123456)
    with pytest.raises(ValueError, match="ascii"):
        fast(0, 0, "Ä", 0)
    with pytest.raises(KeyError, match=r"missing \['seq'\]"):
        LAYOUT.packer("n6", "n2", name="")
    with pytest.raises(KeyError, match=r"unknown \['nope'\]"):
        LAYOUT.packer("n6", "n2", "name", "seq", nope=1)
