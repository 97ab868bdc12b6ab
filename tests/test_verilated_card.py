"""The Verilated card (sim/verilated_card.py, sim/verilated/card_api.cpp): the FeedHandler core compiled into
a shared library and driven from C must emit the golden model's records, in order, bit for bit
(card_timestamp aside), with and without random idle cycles and back-pressure; answer its CSRs as
docs/registers.md says; never lose a record to a full ring; keep several cards in one process apart; and
refuse bad arguments by name.

One library (the default core: 64 bits, 64 instruments, 16k orders, 16 levels) is built once under out/sim
(a few minutes the first time) and shared by every test. Expected values come from wirebook.model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from wirebook.hdl.feed_handler import build_id
from wirebook.model.replay import replay
from wirebook.proto import bbo, itch, registers
from wirebook.sim import feed, market
from wirebook.sim.card_sim import feed_locates, line_group
from wirebook.sim.latency import frames_by_line
from wirebook.sim.verilated_card import CsrError, VerilatedCard, build_library

PARAMETERS = {"data_width": 64, "n_instruments": 64, "n_orders": 16384, "n_levels": 16}


@dataclass(frozen=True)
class Market:
    pcap: Path
    locates: list[int]
    frames: tuple[list[bytes], list[bytes]]  # every frame of line A, of line B, in capture order
    expected: np.ndarray  # the golden model's records
    messages: dict[str, int]  # messages by type, as the model counted them


@pytest.fixture(scope="module")
def library() -> Path:
    return build_library(**PARAMETERS)


@pytest.fixture(scope="module")
def small_market(tmp_path_factory) -> Market:
    folder = tmp_path_factory.mktemp("market")
    itch_path, pcap_path = folder / "market.itch", folder / "market.pcap"
    market.write_itch(itch_path, 12, 4000, 11)
    feed.write_feed_pcap(itch_path, pcap_path, **feed.DENSE_FEED)
    batches: list[np.ndarray] = []
    summary = replay(pcap_path, on_records=batches.append)
    line_a, line_b = frames_by_line(pcap_path, [line_group(line) for line in feed.DEFAULT_LINES])
    frames = ([f for _t, f in line_a], [f for _t, f in line_b])
    return Market(pcap_path, feed_locates(pcap_path), frames, _joined(batches), summary.messages)


@pytest.fixture
def card(library):
    with VerilatedCard(**PARAMETERS) as card:
        yield card


def _joined(batches: list[np.ndarray]) -> np.ndarray:
    out = bbo.empty(sum(len(b) for b in batches))  # np.concatenate would drop the dtype's padding
    at = 0
    for batch in batches:
        out[at : at + len(batch)] = batch
        at += len(batch)
    return out


def _assert_same_records(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == bbo.DTYPE
    for i in range(min(len(got), len(expected))):
        if bbo.canonical_bytes(got[i : i + 1]) != bbo.canonical_bytes(expected[i : i + 1]):
            pytest.fail(f"record {i} differs:\ncard  {got[i]}\nmodel {expected[i]}")
    assert len(got) == len(expected), f"card emitted {len(got)} records, the model {len(expected)}"


def _play(card: VerilatedCard, m: Market, lines: tuple[int, ...] = (0, 1)) -> np.ndarray:
    card.configure(m.locates)
    for line in lines:
        card.push_frames(line, m.frames[line])
    return card.drain()


@pytest.mark.parametrize(("idle", "backpressure"), [(0.0, 0.0), (0.3, 0.3)])
def test_records_and_counters_equal_the_golden_model(card, small_market, idle, backpressure):
    m = small_market
    card.idle(idle, seed=5)
    card.backpressure(backpressure, seed=6)
    records = _play(card, m)
    _assert_same_records(records, m.expected)
    assert np.all(np.diff(records["card_timestamp"].astype(np.int64)) >= 0), "card clock went backwards"
    assert card.queued_bytes(0) == card.queued_bytes(1) == 0
    counters = card.counters()
    total = sum(m.messages.values())
    assert dict(zip(itch.TYPES, counters["messages_by_type"])) == {t: m.messages[t] for t in itch.TYPES}
    assert counters["bbo_records"] == len(m.expected)
    assert counters["messages_accepted"] == counters["duplicates"] == total  # every message on both lines
    assert counters["frames_a"] == len(m.frames[0]) and counters["frames_b"] == len(m.frames[1])
    assert counters["gaps"] == 0 and sum(counters["drops_a"]) == sum(counters["drops_b"]) == 0
    if not backpressure:
        assert card.stalled_cycles == 0, "an input refused a beat while the output was ready"


def test_identity_registers_read_back(card):
    assert card.read("magic") == registers.MAGIC
    assert card.read("version") == registers.VERSION
    assert card.read("build_id") == build_id()
    assert {name: card.read(name) for name in PARAMETERS} == PARAMETERS
    assert card.read("n_groups") == registers.N_GROUPS


def test_config_registers_read_back_what_was_written(card):
    card.write("local_mac", 0x0257_4200_0042)
    card.write("session", "ABCDEFGHIJ")
    card.write("group", {"address": 0xE936_0C6F, "port": 26477, "valid": 1}, 3)
    assert card.read("local_mac") == 0x0257_4200_0042
    assert card.read("session") == "ABCDEFGHIJ"
    assert card.read("group", 3) == {"address": 0xE936_0C6F, "port": 26477, "valid": 1}
    low = registers.address("local_mac")
    card.write32(low, 0xAABB_CCDD, strb=0b0101)  # bytes 0 and 2 only
    assert card.read32(low) == 0x42BB_00DD


def test_unmapped_address_and_write_to_read_only_answer_slverr(card):
    unmapped = -(-registers.REGISTERS.size // registers.WORD_BYTES) * registers.WORD_BYTES
    assert unmapped < 1 << card.address_bits
    with pytest.raises(CsrError, match=rf"read at {unmapped:#x} \(unmapped\): SLVERR"):
        card.read32(unmapped)
    with pytest.raises(CsrError, match=r"write at 0x0 \(magic\): SLVERR"):
        card.write32(registers.address("magic"), 0)
    with pytest.raises(CsrError, match=r"\(bbo_records word 1\)"):
        card.write32(registers.address("bbo_records") + registers.WORD_BYTES, 0)
    assert card.read("magic") == registers.MAGIC  # the bus is still usable


def test_streams_flow_while_a_csr_access_runs(card, small_market):
    m = small_market
    card.configure(m.locates)
    card.push_frames(0, m.frames[0])
    queued, clock = card.queued_bytes(0), card.read("clock")
    for _ in range(500):
        card.read32(registers.address("bbo_records"))
    assert card.queued_bytes(0) < queued and card.read("clock") > clock
    assert card.records_waiting > 0


def test_a_full_ring_backpressures_the_core_and_loses_nothing(library, small_market):
    m = small_market
    with VerilatedCard(**PARAMETERS, ring_records=8) as card:
        card.configure(m.locates)
        for line in (0, 1):
            card.push_frames(line, m.frames[line])
        card.run(20_000)
        assert card.records_waiting == 8
        held = card.queued_bytes(0)
        card.run(1_000)
        assert card.queued_bytes(0) == held > 0, "the core kept taking input behind a full ring"
        batches = [card.records()]
        while card.run(1_000, quiet_cycles=200) == 1_000 or card.records_waiting:
            batches.append(card.records())
    _assert_same_records(_joined(batches), m.expected)


def test_two_cards_in_one_process_are_independent(library, small_market):
    """Card 1 is fed line A only, card 2 line B only, run in alternation: each line carries every message,
    so both must emit every record, and each must count only its own line's frames."""
    m = small_market
    with VerilatedCard(**PARAMETERS) as one, VerilatedCard(**PARAMETERS) as two:
        one.idle(0.2, seed=1)
        two.backpressure(0.2, seed=2)
        for card, line in ((one, 0), (two, 1)):
            card.configure(m.locates)
            card.push_frames(line, m.frames[line])
        got: dict[int, list[np.ndarray]] = {0: [], 1: []}
        quiet = {0: False, 1: False}
        while not all(quiet.values()):
            for card, line in ((one, 0), (two, 1)):
                quiet[line] = card.run(2_000, quiet_cycles=200) < 2_000
                got[line].append(card.records())
        for card, line in ((one, 0), (two, 1)):
            _assert_same_records(_joined(got[line]), m.expected)
            counters = card.counters()
            assert counters[f"frames_{'ab'[line]}"] == len(m.frames[line])
            assert counters[f"frames_{'ab'[1 - line]}"] == 0
        assert one.cycles != two.cycles


def test_bad_arguments_are_refused_by_name(card):
    with pytest.raises(ValueError, match="line"):
        card.push_frame(2, b"\x00" * 60)
    with pytest.raises(ValueError, match="frame"):
        card.push_frame(0, b"")
    with pytest.raises(ValueError, match="line"):
        card.queued_bytes(-1)
    with pytest.raises(ValueError, match="address"):
        card.read32(2)
    with pytest.raises(ValueError, match="address"):
        card.write32(1 << card.address_bits, 0)
    with pytest.raises(ValueError, match="value"):
        card.write32(0, 1 << 32)
    with pytest.raises(ValueError, match="strb"):
        card.write32(0, 0, strb=0x10)
    with pytest.raises(ValueError, match="probability"):
        card.idle(1.0)
    with pytest.raises(ValueError, match="seed"):
        card.backpressure(0.5, seed=-1)
    with pytest.raises(ValueError, match="ring_records"):
        VerilatedCard(**PARAMETERS, ring_records=0)
    with pytest.raises(ValueError, match="data_width"):
        VerilatedCard(16)
    card.close()
    with pytest.raises(RuntimeError, match="closed"):
        card.run(1)
