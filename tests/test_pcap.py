"""wirebook.proto.pcap: round trips, files written by scapy (micro/nanosecond, either byte order), refusals."""

from __future__ import annotations

import random
import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import EDecimal, rdpcap, wrpcap

from wirebook.proto import pcap
from wirebook.proto.errors import MalformedError, TruncatedError

T0 = 1_548_858_600_000_000_000  # 2019-01-30 14:30 UTC


def frames(n: int = 10) -> list[bytes]:
    rng = random.Random(n)
    return [
        bytes(Ether() / IP(dst="233.54.12.111") / UDP(dport=26477) / rng.randbytes(rng.randrange(0, 1400)))
        for _ in range(n)
    ]


def write(path, records) -> None:
    with pcap.PcapWriter(path) as w:
        for t, f in records:
            w.write(t, f)


def test_round_trip(tmp_path):
    records = [(T0 + 1_234_567 * i + i, f) for i, f in enumerate(frames())]
    path = tmp_path / "a.pcap"
    write(path, records)
    reader = pcap.PcapReader(path)
    assert (reader.byteorder, reader.nanosecond, reader.linktype, reader.snaplen, reader.version) == (
        "little",
        True,
        pcap.LINKTYPE_ETHERNET,
        65535,
        (2, 4),
    )
    assert list(reader) == records
    assert list(pcap.iter_pcap(path)) == records
    raw = path.read_bytes()
    assert int.from_bytes(raw[:4], "little") == pcap.MAGIC_NANOSECONDS


def test_empty_capture(tmp_path):
    path = tmp_path / "empty.pcap"
    write(path, [])
    assert path.stat().st_size == pcap.FILE_HEADER_LENGTH
    assert list(pcap.iter_pcap(path)) == []


def test_scapy_reads_our_nanosecond_file(tmp_path):
    records = [(T0 + 999_999_999 * i + 7, f) for i, f in enumerate(frames(5))]
    path = tmp_path / "ours.pcap"
    write(path, records)
    packets = rdpcap(str(path))
    assert [bytes(p) for p in packets] == [f for _, f in records]
    assert [int(p.time * 1_000_000_000) for p in packets] == [t for t, _ in records]


@pytest.mark.parametrize("endianness", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_reads_scapy_files(tmp_path, endianness, nano):
    packets = [Ether(f) for f in frames(6)]
    unit = 1 if nano else 1000
    for i, p in enumerate(packets):
        p.time = EDecimal(T0 + 1_000_003_001 * i) / 1_000_000_000
    path = tmp_path / "scapy.pcap"
    wrpcap(str(path), packets, endianness=endianness, nano=nano)
    reader = pcap.PcapReader(path)
    assert reader.byteorder == ("little" if endianness == "<" else "big")
    assert reader.nanosecond == nano
    assert reader.linktype == pcap.LINKTYPE_ETHERNET
    got = list(reader)
    assert [f for _, f in got] == [bytes(p) for p in packets]
    assert [t for t, _ in got] == [(T0 + 1_000_003_001 * i) // unit * unit for i in range(len(packets))]


def test_streams_without_loading_the_file(tmp_path):
    path = tmp_path / "big.pcap"
    write(path, [(T0 + i, f) for i, f in enumerate(frames(200))])
    with open(path, "rb") as f:
        reader = pcap.PcapReader(f)
        it = iter(reader)
        next(it)
        assert reader.index == 0 and reader.record_offset == pcap.FILE_HEADER_LENGTH
        assert f.tell() < path.stat().st_size // 10
        next(it)
        assert reader.index == 1 and reader.frame_offset == reader.record_offset + pcap.RECORD_HEADER_LENGTH


def test_writer_refuses_frame_over_snaplen(tmp_path):
    with pcap.PcapWriter(tmp_path / "s.pcap", snaplen=100) as w, pytest.raises(ValueError, match="snaplen"):
        w.write(T0, bytes(101))


# --- refusals ---------------------------------------------------------------------------------------


def file_header(magic=pcap.MAGIC_NANOSECONDS, major=2, order="<") -> bytes:
    return struct.pack(order + "IHHiIII", magic, major, 4, 0, 0, 65535, 1)


def record(seconds=1, fraction=0, captured=4, original=None, order="<") -> bytes:
    return struct.pack(order + "IIII", seconds, fraction, captured, captured if original is None else original)


def refused(tmp_path, data: bytes, error: type, offset: int) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(data)
    with pytest.raises(error) as info:
        list(pcap.iter_pcap(path))
    assert type(info.value) is error, info.value
    assert info.value.offset == offset, info.value


def test_refuses_empty_and_short_header(tmp_path):
    refused(tmp_path, b"", TruncatedError, 0)
    refused(tmp_path, file_header()[:10], TruncatedError, 10)


def test_refuses_bad_magic_and_version(tmp_path):
    refused(tmp_path, struct.pack("<I", 0x0A0D0D0A) + bytes(20), MalformedError, 0)  # pcapng
    refused(tmp_path, file_header(major=3), MalformedError, 4)


@pytest.mark.parametrize("order", ["<", ">"])
def test_refuses_truncated_records(tmp_path, order):
    good = file_header(order=order) + record(captured=4, order=order) + b"abcd"
    second = len(good)
    refused(tmp_path, good + record(order=order)[:9], TruncatedError, second)
    refused(tmp_path, good + record(captured=10, order=order) + b"short", TruncatedError, second + 16)


def test_refuses_impossible_records(tmp_path):
    head = file_header()
    at = len(head)
    refused(tmp_path, head + record(fraction=1_000_000_000) + b"abcd", MalformedError, at + 4)
    micro = file_header(magic=pcap.MAGIC_MICROSECONDS)
    refused(tmp_path, micro + record(fraction=1_000_000) + b"abcd", MalformedError, at + 4)
    refused(tmp_path, head + record(captured=pcap.MAX_CAPTURED_LENGTH + 1), MalformedError, at + 8)


def test_big_endian_microsecond_by_hand(tmp_path):
    data = file_header(magic=pcap.MAGIC_MICROSECONDS, order=">") + record(5, 6, 3, 60, order=">") + b"xyz"
    path = tmp_path / "be.pcap"
    path.write_bytes(data)
    assert list(pcap.iter_pcap(path)) == [(5_000_006_000, b"xyz")]
