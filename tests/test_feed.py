"""wirebook.sim.feed: the dual-line MoldUDP64 feed written as a pcap, and the line handler reading it back.

Expectations come from the test's own inputs (the messages it wrote and the documented packetization,
heartbeat and timing rules), never from the reader under test; tshark's MoldUDP64 dissector checks the
capture independently.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import subprocess
from dataclasses import dataclass

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import rdpcap

from wirebook.proto import itch, itch_file, moldudp64, net, pcap
from wirebook.proto.errors import MalformedError
from wirebook.proto.fields import Kind
from wirebook.sim import feed

SPAN = feed.DEFAULT_PACKET_SPAN_NS
INTERVAL = feed.DEFAULT_HEARTBEAT_INTERVAL_NS
MIDNIGHT = feed.midnight_epoch_ns(feed.DEFAULT_DATE)
LINE_OF_GROUP = {line.group: line.name for line in feed.DEFAULT_LINES}


# --- the input: an ITCH file of every message type --------------------------------------------------


def make_message(rng: random.Random, type_: str, timestamp: int) -> bytes:
    layout = itch.MESSAGES[type_]
    values = {}
    for f in layout.value_fields:
        if f.name == "message_type":
            continue
        if f.name == "timestamp":
            values[f.name] = timestamp
        elif f.kind is Kind.ALPHA:
            values[f.name] = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(f.width))
        else:
            values[f.name] = rng.randrange(f.max_value + 1)
    return itch.encode(type_, **values)


def make_day(seed: int = 5) -> tuple[list[bytes], list[int]]:
    """~450 messages: every type, a same-nanosecond burst (size breaks), gaps over the packet span (time
    breaks) and one 2.5 s silence (two heartbeats)."""
    rng = random.Random(seed)
    messages, times = [], []
    t = 34_200_000_000_000  # 09:30
    types = list(itch.TYPES)
    for i in range(450):
        if i == 200:
            t += 2_500_000_000
        elif 100 <= i < 160:
            pass  # a burst: 60 messages in the same nanosecond
        elif i % 37 == 0:
            t += rng.choice([SPAN + 1, 3 * SPAN, 250 * SPAN])
        else:
            t += rng.choice([0, 1, 500, 20_000, 300_000])
        messages.append(make_message(rng, types[i % len(types)], t))
        times.append(t)
    return messages, times


@dataclass
class Day:
    messages: list[bytes]
    times: list[int]
    itch_path: str
    pcap_path: str


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Day:
    messages, times = make_day()
    folder = tmp_path_factory.mktemp("feed")
    itch_path = folder / "day.itch"
    with itch_file.ItchWriter(itch_path) as w:
        for m in messages:
            w.write(m)
    pcap_path = folder / "day.pcap"
    feed.write_feed_pcap(itch_path, pcap_path)
    return Day(messages, times, str(itch_path), str(pcap_path))


# --- what the documented rules say the feed must be ---------------------------------------------------


def expected_packets(messages, times, max_payload=feed.DEFAULT_MAX_PAYLOAD):
    """[(first sequence, count, send time since midnight)] by the packetization rule."""
    out, i = [], 0
    while i < len(messages):
        size, j = moldudp64.HEADER_LENGTH + 2 + len(messages[i]), i + 1
        while j < len(messages) and size + 2 + len(messages[j]) <= max_payload and times[j] - times[i] <= SPAN:
            size += 2 + len(messages[j])
            j += 1
        out.append((i + 1, j - i, times[i]))
        i = j
    return out


def expected_line(messages, times):
    """Every transmission of one line: [(sequence, count, send time since midnight)], heartbeats included."""
    out, last = [], None
    for sequence, count, t in expected_packets(messages, times):
        while last is not None and last + INTERVAL < t:
            last += INTERVAL
            out.append((sequence, moldudp64.HEARTBEAT_COUNT, last))
        out.append((sequence, count, t))
        last = t
    out.append((len(messages) + 1, moldudp64.END_OF_SESSION_COUNT, last + feed.END_OF_SESSION_DELAY_NS))
    return out


def capture(path):
    """[(capture time, line, sequence, count, frame)] read with scapy, not with the code under test."""
    out = []
    for p in rdpcap(str(path)):
        head = moldudp64.HEADER.unpack(bytes(p[UDP].payload))
        out.append((int(p.time * 1_000_000_000), LINE_OF_GROUP[p[IP].dst], head.sequence_number, head.message_count))
    return out


def copy_pcap(source, target, edit=lambda i, t, f: [(t, f)]):
    """Rewrite a capture frame by frame; `edit(index, time, frame)` returns the records to write instead."""
    with pcap.PcapWriter(target) as w:
        for i, (t, f) in enumerate(pcap.iter_pcap(source)):
            for record in edit(i, t, f):
                w.write(*record)


def write_faulty(day, tmp_path, **faults) -> str:
    path = str(tmp_path / "faulty.pcap")
    feed.write_feed_pcap(day.itch_path, path, faults=feed.Faults(**faults))
    return path


# --- the writer ----------------------------------------------------------------------------------------


def test_capture_follows_the_rules(day):
    line = expected_line(day.messages, day.times)
    frames = capture(day.pcap_path)
    assert len(frames) == 2 * len(line)
    for name in ("A", "B"):
        mine = [f for f in frames if f[1] == name]
        assert [(s, c) for _, _, s, c in mine] == [(s, c) for s, c, _ in line]
        for (arrival, *_), (_, _, sent) in zip(mine, line):
            assert 0 <= arrival - (MIDNIGHT + sent) <= feed.DEFAULT_JITTER_NS
    assert [t for t, *_ in frames] == sorted(t for t, *_ in frames)
    assert sum(c == 0 for *_, c in frames) == 2 * 2  # two heartbeats on each line
    first_line: dict[int, str] = {}
    for _, name, sequence, count in frames:
        if count not in (0, 0xFFFF):
            first_line.setdefault(sequence, name)
    winners = list(first_line.values())
    assert 0 < winners.count("B") < len(winners)  # the seeded jitter lets either line win


def test_summary(day, tmp_path):
    n_packets = len(expected_packets(day.messages, day.times))
    summary = feed.write_feed_pcap(day.itch_path, tmp_path / "again.pcap")
    assert summary["messages"] == len(day.messages) and summary["next_sequence"] == len(day.messages) + 1
    assert summary["packets"] == n_packets and summary["heartbeats"] == 2 and summary["end_of_session"] == 1
    assert summary["frames"] == 2 * (n_packets + 3)
    assert summary["session"] == feed.DEFAULT_SESSION
    assert summary["lines"] == {"A": "233.54.12.111:26477", "B": "233.49.196.111:26477"}
    assert summary["start_ns"] >= MIDNIGHT + day.times[0]


def test_deterministic_and_independent_of_chunk_size(day, tmp_path):
    original = open(day.pcap_path, "rb").read()
    feed.write_feed_pcap(day.itch_path, tmp_path / "small_chunks.pcap", chunk_size=2 + itch.MAX_LENGTH)
    assert (tmp_path / "small_chunks.pcap").read_bytes() == original
    feed.write_feed_pcap(day.itch_path, tmp_path / "other_seed.pcap", seed=1)
    assert (tmp_path / "other_seed.pcap").read_bytes() != original


def test_new_york_midnight():
    # 2019-01-30 is in EST (UTC-5); 2019-07-01 in EDT (UTC-4).
    assert feed.midnight_epoch_ns(dt.date(2019, 1, 30)) == 1_548_824_400 * 1_000_000_000
    assert feed.midnight_epoch_ns(dt.date(2019, 7, 1)) == 1_561_953_600 * 1_000_000_000


def test_writer_refuses_bad_options(day, tmp_path):
    with pytest.raises(ValueError, match="max_payload"):
        feed.write_feed_pcap(day.itch_path, tmp_path / "x.pcap", max_payload=60)
    with pytest.raises(ValueError, match="unknown line"):
        feed.write_feed_pcap(day.itch_path, tmp_path / "x.pcap", faults=feed.Faults(drop={("C", 1)}))
    with pytest.raises(ValueError):
        feed.write_feed_pcap(day.itch_path, tmp_path / "x.pcap", session="ELEVENCHARS")


# --- the reader --------------------------------------------------------------------------------------


def sequenced(day):
    return [(i + 1, m) for i, m in enumerate(day.messages)]


def test_round_trip(day):
    reader = feed.read_feed_pcap(day.pcap_path)
    assert list(reader) == sequenced(day)
    n_packets = len(expected_packets(day.messages, day.times))
    c = reader.counters
    assert c.frames == 2 * (n_packets + 3) and c.skipped == 0 and c.malformed == 0
    assert c.packets == {"A": n_packets, "B": n_packets}
    assert c.heartbeats == {"A": 2, "B": 2}
    assert c.end_of_session == {"A": 1, "B": 1} and c.end_of_session_seen
    assert c.duplicates == n_packets and c.out_of_order == 0
    assert c.messages == len(day.messages) and sum(c.won.values()) == len(day.messages)
    assert c.won["A"] > 0 and c.won["B"] > 0
    assert reader.session == feed.DEFAULT_SESSION and reader.first_sequence == 1


def test_itch_file_format(day, tmp_path):
    out = feed.feed_pcap_to_itch(day.pcap_path)
    assert out.first_sequence == 1
    assert out.data == open(day.itch_path, "rb").read()
    assert out.counters.messages == len(day.messages)
    count = feed.read_feed_pcap(day.pcap_path).write_itch(tmp_path / "back.itch")
    assert count == len(day.messages)
    assert (tmp_path / "back.itch").read_bytes() == out.data


def test_a_reader_reads_once(day):
    reader = feed.read_feed_pcap(day.pcap_path)
    list(reader)
    with pytest.raises(RuntimeError):
        list(reader)


def test_arbitration_fills_single_line_drops(day, tmp_path):
    packets = expected_packets(day.messages, day.times)
    path = write_faulty(day, tmp_path, drop={("A", 1), ("A", 3), ("B", 2), ("A", len(packets) - 1)})
    reader = feed.read_feed_pcap(path)
    assert list(reader) == sequenced(day)
    assert reader.counters.packets == {"A": len(packets) - 3, "B": len(packets) - 1}
    assert reader.counters.won["B"] >= packets[1][1] + packets[3][1] + packets[-1][1]
    assert reader.counters.won["A"] >= packets[2][1]


def test_gap_on_both_lines(day, tmp_path):
    packets = expected_packets(day.messages, day.times)
    lost = 4
    path = write_faulty(day, tmp_path, drop={("A", lost), ("B", lost)})
    first, count, _ = packets[lost]
    detected = next(i for i, (_, _, s, _) in enumerate(capture(path)) if s > first)
    delivered = []
    with pytest.raises(feed.SequenceGapError) as info:
        for item in feed.read_feed_pcap(path):
            delivered.append(item)
    error = info.value
    assert (error.first_missing, error.last_missing) == (first, first + count - 1)
    assert error.frame_index == detected
    assert f"{first}..{first + count - 1}" in str(error)
    assert delivered == sequenced(day)[: first - 1]
    records = list(pcap.PcapReader(path))
    assert error.offset == pcap.FILE_HEADER_LENGTH + sum(16 + len(f) for _, f in records[:detected])


def test_gap_at_the_end_is_announced_by_end_of_session(day, tmp_path):
    packets = expected_packets(day.messages, day.times)
    last = len(packets) - 1
    path = write_faulty(day, tmp_path, drop={("A", last), ("B", last)})
    with pytest.raises(feed.SequenceGapError) as info:
        list(feed.read_feed_pcap(path))
    assert (info.value.first_missing, info.value.last_missing) == (packets[last][0], len(day.messages))


def test_gap_times_out(day, tmp_path):
    # Packet 3 lost on both lines; the reader gives up gap_timeout_ns after noticing, before the capture ends.
    path = write_faulty(day, tmp_path, drop={("A", 3), ("B", 3)})
    frames = capture(path)
    reader = feed.read_feed_pcap(path, gap_timeout_ns=0)
    with pytest.raises(feed.SequenceGapError):
        list(reader)
    assert reader.counters.frames < len(frames)


def test_duplicates_are_dropped(day, tmp_path):
    path = write_faulty(day, tmp_path, duplicate={("A", 2), ("B", 5), ("B", 6)})
    reader = feed.read_feed_pcap(path)
    assert list(reader) == sequenced(day)
    n_packets = len(expected_packets(day.messages, day.times))
    assert reader.counters.duplicates == n_packets + 3
    assert reader.counters.packets == {"A": n_packets + 1, "B": n_packets + 2}


@pytest.mark.parametrize(
    "faults",
    [
        {"reorder": {("A", 7), ("B", 7)}},
        {"reorder": {("A", 7), ("A", 8), ("B", 8)}},
        {"reorder": {("A", 7)}, "drop": {("B", 7)}},
        {"reorder": {("B", 10)}, "duplicate": {("A", 11)}, "drop": {("A", 10)}},
    ],
    ids=["both-lines", "consecutive", "reorder-and-drop", "mixed"],
)
def test_reordering_is_repaired(day, tmp_path, faults):
    path = write_faulty(day, tmp_path, **faults)
    packets = expected_packets(day.messages, day.times)
    for name, number in faults["reorder"]:
        arrivals = [s for _, line, s, _ in capture(path) if line == name]
        assert arrivals.index(packets[number + 1][0]) < arrivals.index(packets[number][0])
    reader = feed.read_feed_pcap(path)
    assert list(reader) == sequenced(day)
    if faults == {"reorder": {("A", 7), ("B", 7)}}:
        assert reader.counters.out_of_order >= 1


def test_join_mid_session(day, tmp_path):
    packets = expected_packets(day.messages, day.times)
    start = packets[3][0]
    frames = capture(day.pcap_path)
    path = tmp_path / "late.pcap"
    copy_pcap(day.pcap_path, path, lambda i, t, f: [(t, f)] if frames[i][2] >= start else [])
    assert list(feed.read_feed_pcap(path, first_sequence=None)) == sequenced(day)[start - 1 :]
    out = feed.feed_pcap_to_itch(path, first_sequence=None)
    assert out.first_sequence == start
    with pytest.raises(feed.SequenceGapError) as info:
        list(feed.read_feed_pcap(path))
    assert (info.value.first_missing, info.value.last_missing) == (1, start - 1)


def test_non_feed_frames_are_skipped(day, tmp_path):
    group, port = feed.LINE_A.group, feed.LINE_A.port
    other = [
        net.build_udp_frame(feed.SOURCE_MAC, None, feed.SOURCE_IP, group, 1, port + 1, b"other port"),
        net.build_udp_frame(feed.SOURCE_MAC, None, feed.SOURCE_IP, "233.54.12.112", 1, port, b"other group"),
        bytes(Ether() / IP(src=feed.SOURCE_IP, dst=group, proto=2) / b"\x16\x00\xfa\x04" / b"igmp"),
        bytes(Ether() / IP(src=feed.SOURCE_IP, dst=group) / TCP(dport=port)),
        bytes(Ether() / ARP()),
        bytes(Ether() / IPv6() / UDP(dport=port)),
        b"runt",
    ]
    path = tmp_path / "mixed.pcap"
    copy_pcap(day.pcap_path, path, lambda i, t, f: [(t, f), (t, other[i])] if i < len(other) else [(t, f)])
    reader = feed.read_feed_pcap(path)
    assert list(reader) == sequenced(day)
    assert reader.counters.skipped == len(other)


def test_vlan_tagged_feed(day, tmp_path):
    path = tmp_path / "vlan.pcap"
    feed.write_feed_pcap(day.itch_path, path, vlan=42)
    eth, _ = net.parse_ethernet(next(iter(pcap.iter_pcap(path)))[1])
    assert net.VLAN_VID.get(eth.tci) == 42
    assert list(feed.read_feed_pcap(path)) == sequenced(day)


def test_other_session_refused(day, tmp_path):
    with pytest.raises(MalformedError, match="session") as info:
        list(feed.read_feed_pcap(day.pcap_path, session="OTHERSESS1"))
    raw = open(day.pcap_path, "rb").read()
    assert raw[info.value.offset : info.value.offset + 10] == feed.DEFAULT_SESSION.encode()

    flow = net.UdpFlow(feed.SOURCE_MAC, None, feed.SOURCE_IP, feed.LINE_B.group, 1, feed.LINE_B.port)
    intruder = flow.frame(moldudp64.encode_packet("OTHERSESS1", 1, [day.messages[0]]))
    path = tmp_path / "two_sessions.pcap"
    copy_pcap(day.pcap_path, path, lambda i, t, f: [(t, f), (t, intruder)] if i == 5 else [(t, f)])
    with pytest.raises(MalformedError, match="OTHERSESS1"):
        list(feed.read_feed_pcap(path))


def test_corrupt_frame_raises_or_is_filled_by_the_other_line(day, tmp_path):
    frames = capture(day.pcap_path)
    victim = next(i for i, f in enumerate(frames) if f[1] == "A" and f[3] not in (0, 0xFFFF))
    records = list(pcap.PcapReader(day.pcap_path))
    checksum_at = pcap.FILE_HEADER_LENGTH + sum(16 + len(f) for _, f in records[:victim]) + 16 + 14 + 20 + 6

    def corrupt(i, t, f):
        return [(t, f[:-1] + bytes([f[-1] ^ 0xFF]) if i == victim else f)]

    path = tmp_path / "corrupt.pcap"
    copy_pcap(day.pcap_path, path, corrupt)
    with pytest.raises(MalformedError, match="UDP checksum") as info:
        list(feed.read_feed_pcap(path))
    assert info.value.offset == checksum_at
    reader = feed.read_feed_pcap(path, on_malformed="skip")
    assert list(reader) == sequenced(day)
    assert reader.counters.malformed == 1


def test_bad_message_block_names_the_file_offset(day, tmp_path):
    frames = capture(day.pcap_path)
    victim = next(i for i, f in enumerate(frames) if f[3] not in (0, 0xFFFF))
    records = list(pcap.PcapReader(day.pcap_path))
    payload_at = pcap.FILE_HEADER_LENGTH + sum(16 + len(f) for _, f in records[:victim]) + 16 + 14 + 20 + 8
    _, frame = records[victim]
    parsed = net.parse_udp_frame(frame)
    payload = bytearray(parsed.payload)
    payload[moldudp64.HEADER_LENGTH + 1] += 1  # first block's length no longer matches its message type
    flow = net.UdpFlow(
        parsed.eth.source, None, parsed.ip.source, parsed.ip.destination, parsed.udp.source_port, feed.LINE_A.port
    )
    bad = flow.frame(bytes(payload), parsed.ip.identification)
    path = tmp_path / "bad_block.pcap"
    copy_pcap(day.pcap_path, path, lambda i, t, f: [(t, bad if i == victim else f)])
    with pytest.raises(MalformedError, match="MoldUDP64 message blocks") as info:
        list(feed.read_feed_pcap(path))
    assert info.value.offset == payload_at + moldudp64.HEADER_LENGTH


# --- independent check: tshark's MoldUDP64 dissector ---------------------------------------------------

TSHARK = shutil.which("tshark")
TSHARK_FIELDS = [
    "ip.dst",
    "moldudp64.session",
    "moldudp64.sequence",
    "moldudp64.count",
    "moldudp64.msglen",
    "ip.checksum.status",
    "udp.checksum.status",
]


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)")
def test_tshark_dissects_the_feed(day):
    command = [TSHARK, "-r", day.pcap_path, "-d", f"udp.port=={feed.LINE_A.port},moldudp64"]
    command += ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=;"]
    for name in TSHARK_FIELDS:
        command += ["-e", name]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    rows = [line.split(";") for line in result.stdout.splitlines()]
    line = expected_line(day.messages, day.times)
    lengths = {}
    for sequence, count, _ in expected_packets(day.messages, day.times):
        lengths[sequence] = [str(len(m)) for m in day.messages[sequence - 1 : sequence - 1 + count]]
    assert len(rows) == 2 * len(line)
    for name, group in (("A", feed.LINE_A.group), ("B", feed.LINE_B.group)):
        mine = [r for r in rows if r[0] == group]
        assert [r[1] for r in mine] == [feed.DEFAULT_SESSION] * len(line), name
        assert [(int(r[2]), int(r[3])) for r in mine] == [(s, c) for s, c, _ in line], name
        for r, (sequence, count, _) in zip(mine, line):
            expected = lengths[sequence] if count not in (0, 0xFFFF) else []
            assert (r[4].split(",") if r[4] else []) == expected
        assert {(r[5], r[6]) for r in mine} == {("1", "1")}  # 1 = "Good" for both checksums


def test_empty_itch_file_is_just_end_of_session(tmp_path):
    (tmp_path / "empty.itch").write_bytes(b"")
    summary = feed.write_feed_pcap(tmp_path / "empty.itch", tmp_path / "empty.pcap")
    assert (summary["messages"], summary["packets"], summary["frames"]) == (0, 0, 2)
    out = feed.feed_pcap_to_itch(tmp_path / "empty.pcap")
    assert (out.first_sequence, out.data) == (None, b"")
    assert out.counters.end_of_session == {"A": 1, "B": 1}
