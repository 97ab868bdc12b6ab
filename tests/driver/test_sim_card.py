"""The card API over the `sim` backend: the gateware's Verilog in Verilator, driven through GatewareCard.

Expected records come from the golden model (wirebook.model.replay of the same ITCH day), never from the
card: the records the card hands out must be the model's, bit for bit (card_timestamp aside), with both feed
lines carrying every packet, with only the wanted instruments subscribed, and across a feed gap (which must
raise `gap` until cleared).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from wirebook.driver.card import CardError, CardSetup, GatewareCard, open_card
from wirebook.driver.csr import CardRegisters
from wirebook.driver.model_card import ModelCard
from wirebook.model.replay import replay
from wirebook.proto import bbo, itch, moldudp64, net, registers
from wirebook.sim import market

SESSION = "DRIVERS001"
GROUP_A = ("233.54.12.111", 26477)
GROUP_B = ("233.49.196.111", 26478)
SETUP = CardSetup(groups=[f"{GROUP_A[0]}:{GROUP_A[1]}", f"{GROUP_B[0]}:{GROUP_B[1]}"], session=SESSION)


def frames_of(messages: list[bytes], group: tuple[str, int], skip: set[int] = frozenset()) -> list[bytes]:
    """The day as MoldUDP64 frames to `group`, leaving out the packets starting at a sequence in `skip`."""
    flow = net.UdpFlow("02:00:00:00:00:01", None, "192.0.2.10", group[0], 26400, group[1])
    return [flow.frame(p) for first, p in moldudp64.packetize(SESSION, 1, messages, max_payload=700)
            if first not in skip]  # fmt: skip


def join(batches: list[np.ndarray]) -> np.ndarray:
    out = bbo.empty(sum(len(b) for b in batches))
    at = 0
    for b in batches:
        out[at : at + len(b)] = b
        at += len(b)
    return out


def play(card, frames: list[bytes], line: int = 0, chunk: int = 16) -> np.ndarray:
    batches = []
    for at in range(0, len(frames), chunk):
        card.push_frames(frames[at : at + chunk], line)
        batches.append(card.poll())
    for _ in range(3):
        batches.append(card.poll())
    return join(batches)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    path = tmp_path_factory.mktemp("driver") / "day.itch"
    market.write_itch(path, symbols=6, messages=4000, seed=11)
    return path, list(market.generate(6, 4000, 11))


@pytest.fixture
def card():
    made = []

    def make(**options) -> GatewareCard:
        made.append(open_card("sim", SETUP, **options))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_records_equal_the_golden_models_with_both_lines(day, card):
    path, messages = day
    expected = replay(path)
    sim = card()
    a, b = frames_of(messages, GROUP_A), frames_of(messages, GROUP_B)
    interleaved = [f for pair in zip(a, b) for f in pair]
    records = play(sim, interleaved)
    assert len(records) == expected.bbo_updates
    digest = bbo.Digest()
    digest.update(records)
    assert digest.hexdigest() == expected.bbo_sha256
    state = sim.feed_state()
    assert (state.messages, state.duplicates, state.gaps) == (len(messages), len(messages), 0)
    directory = [itch.decode(m) for m in messages if m[:1] == b"R"]
    assert sim.symbols == {d.stock_locate: d.stock.strip() for d in directory}
    assert sim.counters()["bbo_records"] == len(records)
    assert not sim.gap


def test_only_wanted_instruments_are_subscribed(day, card):
    _, messages = day
    frames = frames_of(messages, GROUP_A)
    model = ModelCard()
    model.configure(SETUP)
    everything = play(model, frames)
    wanted = sorted(model.symbols.values())[:2]
    sim = card(instruments=wanted)
    records = play(sim, frames)
    locates = {locate for locate, symbol in model.symbols.items() if symbol in wanted}
    assert set(sim.symbols.values()) == set(wanted)
    expected = everything[np.isin(everything["locate"], list(locates))]
    assert bbo.canonical_bytes(records) == bbo.canonical_bytes(expected)
    assert sim.counters()["unsubscribed"] > 0  # the others' messages reached the card and were left alone


def test_a_feed_gap_raises_gap_until_cleared(day, card):
    _, messages = day
    first_sequences = [first for first, _ in moldudp64.packetize(SESSION, 1, messages, max_payload=700)]
    lost = first_sequences[len(first_sequences) // 2]
    frames = frames_of(messages, GROUP_A, skip={lost})
    model = ModelCard()
    model.configure(SETUP)
    expected = play(model, frames)
    sim = card()
    records = play(sim, frames)
    assert bbo.canonical_bytes(records) == bbo.canonical_bytes(expected)  # the model is lenient the same way
    assert sim.gap and model.gap
    status = sim.status()
    assert status["last_gap_first"] == lost == model.counts.first_missing
    sim.clear_gap()
    assert not sim.gap
    sim.poll()
    assert not sim.gap  # no new gap: it stays cleared


def test_a_full_instrument_table_leaves_the_rest_out(tmp_path, card, caplog):
    many = list(market.generate(70, 2000, 5))  # 70 instruments in the directory; the card has 64 slots
    sim = card()
    with caplog.at_level(logging.WARNING):
        play(sim, frames_of(many, GROUP_A))
    assert len(sim.symbols) == sim.identity.n_instruments == 64
    assert len(sim.left_out) == 70 - 64
    assert "instrument table full" in caplog.text


def test_counters_status_and_clock(day, card):
    _, messages = day
    sim = card()
    sim.set_clock(1 << 40)
    records = play(sim, frames_of(messages[:500], GROUP_A))
    assert len(records) and int(records["card_timestamp"].min()) >= 1 << 40
    assert sim.status()["clock"] > 1 << 40
    counters = sim.counters()
    assert counters["messages_accepted"] == 500
    assert counters["drops_a"]["MAC"] == 0
    assert set(counters) == {r.name for r in registers.REGISTERS if r.access is registers.COUNTER}
    sim.configure(SETUP)  # configure again: counters cleared, books cleared, nothing subscribed
    assert sim.counters()["messages_accepted"] == 0
    assert sim.symbols == {}


def test_frames_for_another_destination_are_dropped_and_counted(day, card):
    _, messages = day
    sim = card()
    records = play(sim, frames_of(messages[:300], ("233.54.12.112", 26477)))
    assert len(records) == 0
    assert sim.counters()["drops_a"]["IP_DESTINATION"] > 0


def test_registers_refuse_bad_accesses_naming_them(card):
    sim = card()
    regs = CardRegisters(sim.backend.bus, where="sim card")
    with pytest.raises(CardError, match="register 'bbo_records' is counter, not writable"):
        regs.write("bbo_records", 1)
    with pytest.raises(RuntimeError, match=r"write.*0x0.*magic"):
        sim.backend.bus.write32(registers.address("magic"), 1)  # the bank's SLVERR, through the bus
    with pytest.raises(ValueError, match="does not fit"):
        regs.write("instrument_locate", 1 << 16)


class ZeroBus:
    def read32(self, address: int) -> int:
        return 0

    def write32(self, address: int, value: int) -> None:
        pass


def test_identify_refuses_something_that_is_not_a_card():
    with pytest.raises(CardError, match="not a wirebook card"):
        CardRegisters(ZeroBus(), where="test bus").identify()
