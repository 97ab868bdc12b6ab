"""The BBO update record: byte layout and canonical form."""

import numpy as np

from wirebook.proto import bbo


def test_record_is_one_cache_line_little_endian():
    assert bbo.SIZE == 64 and bbo.DTYPE.itemsize == 64
    r = bbo.empty(1)
    r["sequence"] = 0x0102030405060708
    r["bid_price"] = 0x11223344
    raw = r.tobytes()
    assert raw[0:8] == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    assert raw[32:36] == bytes([0x44, 0x33, 0x22, 0x11])


def test_pack_agrees_with_dtype():
    values = dict(sequence=7, itch_timestamp=9, card_timestamp=11, locate=3, flags=bbo.FLAG_HALTED, cause="A",
                  bid_price=100, bid_shares=200, bid_orders=2, ask_price=300, ask_shares=50, ask_orders=1)  # fmt: skip
    raw = bbo.RECORD.pack(**values)
    arr = np.frombuffer(raw, dtype=bbo.DTYPE)
    for name, value in values.items():
        got = arr[name][0]
        assert (got.decode() if isinstance(got, bytes) else int(got)) == value


def test_canonical_form_ignores_card_timestamp_only():
    a = bbo.empty(2)
    a["sequence"] = [1, 2]
    b = a.copy()
    b["card_timestamp"] = [123, 456]
    assert bbo.canonical_bytes(a) == bbo.canonical_bytes(b)
    assert bbo.digest([a]) == bbo.digest([b[:1], b[1:]])
    b["bid_shares"][1] = 1
    assert bbo.digest([a]) != bbo.digest([b])
