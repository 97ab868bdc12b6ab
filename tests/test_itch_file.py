"""The ITCH binary file format: chunked streaming, strict and tolerant framing, errors with offsets."""

import io

import numpy as np
import pytest
from ritch_sample import RITCH, RITCH_COUNTS

from wirebook.proto import itch, itch_file
from wirebook.proto.errors import MalformedError, TruncatedError


def _messages(n):
    """n messages of assorted types and lengths, built with the codec."""
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(itch.encode("A", stock_locate=1, tracking_number=0, timestamp=i, order_reference_number=i,
                                   buy_sell_indicator="B", shares=100, stock="XYZ", price=1000 + i))  # fmt: skip
        elif kind == 1:
            out.append(itch.encode("D", stock_locate=1, tracking_number=0, timestamp=i, order_reference_number=i))
        elif kind == 2:
            out.append(itch.encode("S", stock_locate=0, tracking_number=0, timestamp=i, event_code="O"))
        else:
            out.append(itch.encode("I", stock_locate=2, tracking_number=0, timestamp=i, paired_shares=i,
                                   imbalance_shares=0, imbalance_direction="N", stock="XYZ", far_price=0,
                                   near_price=0, current_reference_price=0, cross_type="O",
                                   price_variation_indicator="L"))  # fmt: skip
    return out


def _file_bytes(messages, empty_lengths=False):
    return b"".join((b"\0\0" if empty_lengths else len(m).to_bytes(2, "big")) + m for m in messages)


@pytest.mark.parametrize("chunk_size", [2 + itch.MAX_LENGTH, 100, 101, 257, 4096, 1 << 20])
def test_chunking_never_changes_the_messages(chunk_size):
    messages = _messages(300)
    data = _file_bytes(messages)
    got = []
    index = 0
    for chunk in itch_file.iter_chunks(io.BytesIO(data), chunk_size=chunk_size):
        assert chunk.first_index == index
        got += [chunk.message(i) for i in range(len(chunk))]
        index += len(chunk)
    assert got == messages


def test_writer_writes_true_lengths(tmp_path):
    messages = _messages(50)
    path = tmp_path / "f.itch"
    with itch_file.ItchWriter(path, buffer_size=64) as w:
        for m in messages:
            w.write(m)
    assert path.read_bytes() == _file_bytes(messages)
    with pytest.raises(ValueError, match="must be 19 bytes"):
        itch_file.ItchWriter(io.BytesIO()).write(messages[1] + b"x")


def test_strict_refuses_empty_lengths_naming_offset():
    messages = _messages(10)
    data = _file_bytes(messages[:3]) + _file_bytes(messages[3:], empty_lengths=True)
    offset = len(_file_bytes(messages[:3]))
    with pytest.raises(MalformedError, match=f"noii message at byte offset {offset}: expected 50 .*got 0"):
        list(itch_file.iter_chunks(io.BytesIO(data)))
    chunk = itch_file.read_all(data, tolerant=True)
    assert [chunk.message(i) for i in range(len(chunk))] == messages


def test_wrong_length_is_an_error_even_when_tolerant():
    messages = _messages(4)
    data = bytearray(_file_bytes(messages))
    second = 2 + len(messages[0])
    data[second : second + 2] = (len(messages[1]) + 1).to_bytes(2, "big")
    for tolerant in (False, True):
        with pytest.raises(MalformedError, match=f"order_delete message at byte offset {second}.*got 20"):
            itch_file.read_all(bytes(data), tolerant=tolerant)


def test_unknown_type_names_its_offset():
    data = bytearray(_file_bytes(_messages(3)))
    data[2 + 36 + 2] = ord("z")
    with pytest.raises(MalformedError, match=f"at byte offset {2 + 36 + 2}: .*got byte 0x7a"):
        itch_file.read_all(bytes(data))


def test_truncated_file_names_the_cut_message():
    data = _file_bytes(_messages(4))  # the last one is a 50-byte NOII
    cut = data[:-7]
    start_of_last = len(data) - 2 - 50
    with pytest.raises(TruncatedError, match=f"noii message at byte offset {start_of_last}"):
        list(itch_file.iter_chunks(io.BytesIO(cut), chunk_size=200))


def test_ritch_counts_exact():
    assert itch_file.count_types(RITCH, tolerant=True) == {t: RITCH_COUNTS.get(t, 0) for t in itch.TYPES}


def test_bulk_decode_matches_scalar_decode_on_ritch():
    chunk = itch_file.read_all(RITCH, tolerant=True)
    by_type = chunk.decode()
    assert sum(len(a) for a in by_type.values()) == 12012
    for letter, rows in by_type.items():
        layout = itch.MESSAGES[letter]
        for row in rows[:: max(1, len(rows) // 50)]:
            scalar = itch.decode(chunk.buffer, int(chunk.offsets[row["index"]]))
            for f in layout.value_fields:
                bulk_value = row[f.name]
                if isinstance(bulk_value, bytes):
                    bulk_value = bulk_value.decode().rstrip(" ")
                assert bulk_value == getattr(scalar, f.name), (letter, f.name)


def test_bulk_decode_index_restores_order():
    chunk = itch_file.read_all(_file_bytes(_messages(40)))
    by_type = chunk.decode()
    index = np.sort(np.concatenate([a["index"] for a in by_type.values()]))
    assert index.tolist() == list(range(40))


def test_decode_headers_matches_scalar_decode_on_ritch():
    chunk = itch_file.read_all(RITCH, tolerant=True)
    headers = itch.decode_headers(chunk.buffer, chunk.offsets)
    assert len(headers) == 12012
    for i in range(0, len(chunk), 97):
        scalar = itch.decode(chunk.buffer, int(chunk.offsets[i]))
        row = headers[i]
        assert (row["message_type"].decode(), int(row["stock_locate"]), int(row["timestamp"])) == (
            scalar.message_type, scalar.stock_locate, scalar.timestamp,
        )  # fmt: skip
