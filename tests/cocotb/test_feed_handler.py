"""System tests of the FeedHandler gateware in Verilator through cocotb: every BBO record the card emits
must equal the golden model's, in order, bit for bit (card_timestamp aside).

Frames come from the market generator and the feed publisher (sim.market, sim.feed), are played on both
lines by cocotbext-axi (optionally with random idle cycles) and the records are taken with random
back-pressure. Expected records come from model.replay of the same pcap.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from wirebook.hw.boards import BOARDS
from wirebook.model.replay import replay
from wirebook.proto import bbo, itch, moldudp64, net, pcap, registers
from wirebook.sim import feed, market
from wirebook.sim.card_sim import CardConfig, feed_locates, run_card, run_card_lines, split_lines

pytestmark = pytest.mark.cocotb


def _market(folder: Path, symbols: int, messages: int, seed: int, **feed_options) -> Path:
    itch_path, pcap_path = folder / "market.itch", folder / "market.pcap"
    market.write_itch(itch_path, symbols, messages, seed)
    feed.write_feed_pcap(itch_path, pcap_path, **(feed.DENSE_FEED | feed_options))
    return pcap_path


def _golden(pcap_path: Path) -> tuple[np.ndarray, dict]:
    batches: list[np.ndarray] = []
    summary = replay(pcap_path, on_records=batches.append)
    records = bbo.empty(sum(len(b) for b in batches))
    at = 0
    for b in batches:
        records[at : at + len(b)] = b
        at += len(b)
    return records, summary.messages


def _assert_same_records(got: np.ndarray, expected: np.ndarray) -> None:
    for i in range(min(len(got), len(expected))):
        if bbo.canonical_bytes(got[i : i + 1]) != bbo.canonical_bytes(expected[i : i + 1]):
            pytest.fail(f"record {i} differs:\ncard  {got[i]}\nmodel {expected[i]}")
    assert len(got) == len(expected), f"card emitted {len(got)} records, the model {len(expected)}"


def _assert_type_counts(counters: dict, messages: dict[str, int]) -> None:
    by_type = dict(zip(itch.TYPES, counters["messages_by_type"]))
    assert by_type == {t: messages[t] for t in itch.TYPES}


@pytest.fixture(scope="module")
def small_market(tmp_path_factory) -> tuple[Path, np.ndarray, dict]:
    pcap_path = _market(tmp_path_factory.mktemp("market"), symbols=12, messages=6000, seed=11)
    return (pcap_path, *_golden(pcap_path))


@pytest.mark.parametrize("data_width", [8, 32, 64])
def test_bbo_equals_golden_model_at_line_rate_and_with_idle_and_backpressure(small_market, data_width, tmp_path):
    pcap_path, expected, messages = small_market
    config = CardConfig(data_width=data_width)
    for idle, backpressure in ((0.0, 0.0), (0.3, 0.3)):
        run = run_card(pcap_path, config=config, idle=idle, backpressure=backpressure, seed=data_width)
        _assert_same_records(run.records, expected)
        counters = run.report["counters"]
        _assert_type_counts(counters, messages)
        total = sum(messages.values())
        assert counters["messages_accepted"] == total and counters["gaps"] == 0
        assert counters["duplicates"] == total  # every message came on both lines
        assert counters["bbo_records"] == len(expected)
        assert sum(counters["drops_a"]) == sum(counters["drops_b"]) == 0
        if not backpressure:
            assert run.report["stalled_cycles"] == 0, "an input refused a beat while the output was ready"


def test_line_b_fills_what_line_a_lost_and_gaps_are_reported(tmp_path):
    """A loses three packets that B brings; both lose one (a gap). The lines stay in step: a lost packet
    is replaced by a frame of the same size the card must drop (another UDP port), as if the lines had
    equal delay and A's copy had been corrupted."""
    itch_path, pcap_path = tmp_path / "m.itch", tmp_path / "m.pcap"
    market.write_itch(itch_path, 8, 3000, 5)
    feed.write_feed_pcap(itch_path, pcap_path, **feed.DENSE_FEED)
    line_a, line_b = split_lines(pcap_path, feed.DEFAULT_LINES, tmp_path)
    packets = _mold_packets(pcap_path, feed.LINE_A)
    lost_on_a, lost_on_both = {packets[n][0] for n in (2, 3, 9)}, packets[6]
    lost = {lost_on_both[0]} | lost_on_a
    replaced = [_lose(line_a, lost, tmp_path / "a.pcap"), _lose(line_b, {lost_on_both[0]}, tmp_path / "b.pcap")]
    run = run_card_lines(replaced, locates=feed_locates(pcap_path))
    counters = run.report["counters"]
    first, count = lost_on_both
    assert (counters["gaps"], counters["missing_messages"]) == (1, count)
    assert (counters["last_gap_first"], counters["last_gap_count"]) == (first, count)
    assert counters["drops_a"][registers.DROP_REASONS.index("UDP_PORT")] == len(lost)
    expected = _golden_without(itch_path, set(range(first, first + count)))
    _assert_same_records(run.records, expected)


def test_a_one_line_core_drops_replayed_packets_reports_a_loss_and_keeps_the_book(tmp_path):
    """The core built with line A only and its counters in block RAM (the Colorlight's): line A alone, with
    one packet lost and two replayed later (a retransmission arriving after the line moved on), gives the
    golden model's records without the lost messages; the gap is reported and the replays are counted as
    duplicates.
    Line B's counters read 0 and `n_lines` reads 1."""
    itch_path, pcap_path = tmp_path / "m.itch", tmp_path / "m.pcap"
    market.write_itch(itch_path, 8, 3000, 6)
    feed.write_feed_pcap(itch_path, pcap_path, **feed.DENSE_FEED)
    (line_a,) = split_lines(pcap_path, (feed.LINE_A,), tmp_path)
    packets = _mold_packets(pcap_path, feed.LINE_A)
    lost, replayed = packets[5], (packets[2], packets[8])
    frames = list(pcap.iter_pcap(line_a))
    data_frames = {}  # data packets by first sequence
    for _time_ns, frame in frames:
        header = moldudp64.HEADER.unpack(net.parse_udp_frame(frame).payload)
        if header.message_count not in (moldudp64.HEARTBEAT_COUNT, moldudp64.END_OF_SESSION_COUNT):
            data_frames[header.sequence_number] = frame
    played = tmp_path / "played.pcap"
    with pcap.PcapWriter(played) as writer:
        for n, (time_ns, frame) in enumerate(frames):
            header = moldudp64.HEADER.unpack(net.parse_udp_frame(frame).payload)
            if header.sequence_number == lost[0] and header.message_count == lost[1]:
                continue
            writer.write(time_ns, frame)
            if n == len(frames) // 2:  # late copies of packets already delivered
                for sequence, _count in replayed:
                    writer.write(time_ns, data_frames[sequence])
    # The Colorlight's core (its width, line A only, counters, tables and operation queue in block RAM), with
    # an order table and levels deep enough that the golden model's book is never cut short.
    colorlight = BOARDS["colorlight-5a75b"].core
    config = CardConfig(**{**colorlight, "n_orders": 16384, "n_ways": 4, "n_levels": 16})
    run = run_card_lines([played], locates=feed_locates(pcap_path), config=config, lines=(feed.LINE_A,))
    counters = run.report["counters"]
    first, count = lost
    assert (counters["gaps"], counters["missing_messages"]) == (1, count)
    assert (counters["last_gap_first"], counters["last_gap_count"]) == (first, count)
    assert counters["duplicates"] == sum(n for _sequence, n in replayed)
    assert counters["n_lines"] == 1
    line_b = [name for name in counters if name.endswith("_b")]
    assert line_b and all(not any(v) if isinstance(v, list) else v == 0 for v in map(counters.get, line_b))
    expected = _golden_without(itch_path, set(range(first, first + count)))
    _assert_same_records(run.records, expected)


def _lose(line_pcap: Path, sequences: set[int], out: Path) -> Path:
    """A copy of a line's pcap where the data packets starting at `sequences` go to another UDP port."""
    with pcap.PcapWriter(out) as writer:
        for time_ns, frame in pcap.iter_pcap(line_pcap):
            parsed = net.parse_udp_frame(frame)
            header = moldudp64.HEADER.unpack(parsed.payload)
            data = header.message_count not in (moldudp64.HEARTBEAT_COUNT, moldudp64.END_OF_SESSION_COUNT)
            if data and header.sequence_number in sequences:
                udp = net.ETHERNET.length + net.IPV4.length + net.UDP.by_name["destination_port"].offset
                frame = frame[:udp] + (parsed.udp.destination_port + 1).to_bytes(2, "big") + frame[udp + 2 :]
            writer.write(time_ns, frame)
    return out


def _mold_packets(pcap_path: Path, line: feed.Line) -> list[tuple[int, int]]:
    """(sequence, message count) of every data packet of one line, in order."""
    out = []
    for _time, frame in pcap.iter_pcap(pcap_path):
        parsed = net.parse_udp_frame(frame)
        if parsed.ip.destination != net.ipv4_address(line.group):
            continue
        header = moldudp64.HEADER.unpack(parsed.payload)
        if header.message_count not in (moldudp64.HEARTBEAT_COUNT, moldudp64.END_OF_SESSION_COUNT):
            out.append((header.sequence_number, header.message_count))
    return out


def _golden_without(itch_path: Path, lost: set[int]) -> np.ndarray:
    """The model's records over the ITCH file minus the lost sequences (each keeps its sequence number)."""
    from wirebook.model.book import BookModel
    from wirebook.proto import itch_file

    model = BookModel(lenient=True)
    chunks = []
    for chunk in itch_file.iter_chunks(itch_path):
        for position in range(len(chunk)):
            sequence = chunk.first_index + position + 1
            if sequence in lost:
                continue
            start = int(chunk.offsets[position]) - 2
            length = 2 + int(itch.LENGTH_BY_TYPE_BYTE[chunk.types[position]])
            one = np.frombuffer(chunk.buffer[start : start + length].tobytes(), dtype=np.uint8)
            offsets, types, _ = itch_file.frame(one)
            chunks.append(model.apply_chunk(itch_file.Chunk(one, offsets, types, 0, 0), sequence))
    return np.concatenate(chunks).astype(bbo.DTYPE) if chunks else bbo.empty(0)


def _junk_frames(valid: list[tuple[int, bytes]], rng: random.Random, session: str) -> list[tuple[int, bytes, str]]:
    """Bad frames to interleave with line A's traffic, each with the drop or outcome it should have."""
    group, port = feed.LINE_A.group, feed.LINE_A.port
    flow = net.UdpFlow(feed.SOURCE_MAC, None, feed.SOURCE_IP, group, feed.SOURCE_PORT, port)
    junk = []
    for time_ns, frame in valid:
        kind = rng.randrange(7)
        if kind == 0:  # random bytes
            junk.append((time_ns, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))), "random"))
        elif kind == 1:  # a flipped IPv4 header byte: the checksum no longer holds (or the header is bad)
            bad = bytearray(frame)
            bad[14 + rng.randrange(20)] ^= 1 << rng.randrange(8)
            junk.append((time_ns, bytes(bad), "ip"))
        elif kind == 2:  # another session
            payload = moldudp64.encode_packet("OTHERSESS1", 10**9, [itch.encode("S", stock_locate=0,
                                              tracking_number=0, timestamp=0, event_code="O")])  # fmt: skip
            junk.append((time_ns, flow.frame(payload), "session"))
        elif kind == 3:  # another port
            other = net.UdpFlow(feed.SOURCE_MAC, None, feed.SOURCE_IP, group, feed.SOURCE_PORT, port + 1)
            junk.append((time_ns, other.frame(net.parse_udp_frame(frame).payload), "port"))
        elif kind == 4:  # a runt
            junk.append((time_ns, frame[: rng.randrange(1, 40)], "runt"))
        elif kind == 5:  # a first fragment (more-fragments set), checksum recomputed so only the flag is wrong
            junk.append((time_ns, _with_ip_flags(frame, net.IPV4_FLAG_MORE_FRAGMENTS.put(1)), "fragment"))
        else:  # a corrupted copy of a packet already delivered: the arbiter drops it as old
            bad = bytearray(frame)
            at = len(bad) - 1 - rng.randrange(max(1, len(bad) - 80))
            bad[at] ^= 0xFF
            junk.append((time_ns, bytes(bad), "old"))
    return junk


def _with_ip_flags(frame: bytes, flags: int) -> bytes:
    bad = bytearray(frame)
    ip = net.ETHERNET.length
    field, checksum = net.IPV4.by_name["flags_fragment_offset"], net.IPV4.by_name["header_checksum"]
    bad[ip + field.offset : ip + field.end] = flags.to_bytes(2, "big")
    header = bad[ip : ip + net.IPV4.length]
    bad[ip + checksum.offset : ip + checksum.end] = net.ipv4_header_checksum(header).to_bytes(2, "big")
    return bytes(bad)


def test_fuzz_bad_frames_are_dropped_and_the_book_stays_exact(small_market, tmp_path):
    pcap_path, expected, _messages = small_market
    rng = random.Random(7)
    line_a, line_b = split_lines(pcap_path, feed.DEFAULT_LINES, tmp_path)
    valid_a = list(pcap.iter_pcap(line_a))
    junk = _junk_frames(valid_a, rng, feed.DEFAULT_SESSION)
    mixed = tmp_path / "line_a_fuzzed.pcap"
    with pcap.PcapWriter(mixed) as writer:
        for (time_ns, frame), (_t, bad, kind) in zip(valid_a, junk):
            if kind != "old":
                writer.write(time_ns, bad)
            writer.write(time_ns, frame)
            if kind == "old":
                writer.write(time_ns, bad)
    run = run_card_lines([mixed, line_b], locates=feed_locates(pcap_path), config=CardConfig(data_width=64),
                         idle=0.2, backpressure=0.2)  # fmt: skip
    _assert_same_records(run.records, expected)
    counters = run.report["counters"]
    drops = dict(zip(registers.DROP_REASONS, counters["drops_a"]))
    kinds = {kind for _t, _f, kind in junk}
    assert "ip" not in kinds or drops["IP_CHECKSUM"] + drops["IP_HEADER"] + drops["IP_FRAGMENT"] > 0
    assert "session" not in kinds or drops["MOLD_SESSION"] > 0
    assert "port" not in kinds or drops["UDP_PORT"] > 0
    assert "runt" not in kinds or drops["BAD_FRAMING"] > 0
    assert "fragment" not in kinds or drops["IP_FRAGMENT"] > 0
    assert counters["gaps"] == 0
    assert sum(drops.values()) >= sum(1 for k in kinds if k not in ("old",))


def _shortest_messages_itch(path: Path, orders: int) -> None:
    """Book messages back to back with the shortest ITCH message between each: adds, replaces, executions,
    cancels and deletes of `orders` orders on 4 instruments, a system event (12 bytes) after every one."""
    out = bytearray()
    clock = iter(range(1, 10 * orders + 100))

    def put(letter: str, **fields) -> None:
        message = itch.encode(letter, tracking_number=0, timestamp=next(clock), **fields)
        out.extend(len(message).to_bytes(2, "big") + message)
        put_event()

    def put_event() -> None:
        message = itch.encode("S", stock_locate=0, tracking_number=0, timestamp=next(clock), event_code="Q")
        out.extend(len(message).to_bytes(2, "big") + message)

    for k in range(orders):
        put("A", stock_locate=1 + k % 4, order_reference_number=1 + k, buy_sell_indicator="BS"[k % 2],
            shares=300, stock=f"S{k % 4}", price=1_000_000 + (k % 7 - 3 + (2 * (k % 2) - 1) * 10) * 100)  # fmt: skip
    for k in range(orders):
        price = 1_000_000 + (2 * (k % 2) - 1) * 500
        put("U", stock_locate=1 + k % 4, original_order_reference_number=1 + k,
            new_order_reference_number=orders + 1 + k, shares=200, price=price)  # fmt: skip
    for k in range(orders):
        ref = orders + 1 + k
        put("E", stock_locate=1 + k % 4, order_reference_number=ref, executed_shares=50, match_number=k)
        put("X", stock_locate=1 + k % 4, order_reference_number=ref, cancelled_shares=50)
        put("D", stock_locate=1 + k % 4, order_reference_number=ref)
    path.write_bytes(bytes(out))


@pytest.mark.parametrize("data_width", [8, 64])
def test_line_rate_holds_on_the_shortest_messages(data_width, tmp_path):
    itch_path, pcap_path = tmp_path / "short.itch", tmp_path / "short.pcap"
    _shortest_messages_itch(itch_path, orders=300)
    feed.write_feed_pcap(itch_path, pcap_path, **feed.DENSE_FEED)
    expected, messages = _golden(pcap_path)
    run = run_card(pcap_path, config=CardConfig(data_width=data_width))
    _assert_same_records(run.records, expected)
    _assert_type_counts(run.report["counters"], messages)
    assert run.report["stalled_cycles"] == 0, "an input refused a beat while the output was ready"


@pytest.mark.slow
def test_soak_200k_messages(tmp_path):
    pcap_path = _market(tmp_path, symbols=40, messages=200_000, seed=3)
    expected, messages = _golden(pcap_path)
    run = run_card(pcap_path, config=CardConfig(data_width=64))
    _assert_same_records(run.records, expected)
    _assert_type_counts(run.report["counters"], messages)
    assert run.report["stalled_cycles"] == 0


@pytest.mark.parametrize("source", ["market.itch", "market.pcap"])
def test_replay_engine_sim_prints_the_model_digest(small_market, source, capsys):
    from wirebook.cli import main

    path = small_market[0].with_name(source)
    summaries = {}
    for engine in ("model", "sim"):
        assert main(["replay", str(path), "--engine", engine, "--json"]) == 0
        summaries[engine] = json.loads(capsys.readouterr().out)
    model, sim = summaries["model"], summaries["sim"]
    assert sim["bbo_sha256"] == model["bbo_sha256"]
    assert sim["bbo_updates"] == model["bbo_updates"] == len(small_market[1])
    assert sim["messages"] == model["messages"]
    for name, top in sim["final_bbo"].items():
        assert model["final_bbo"][name] == top
