"""The card API over the `pynq` backend, on this machine, through the real pynq 4.0 package.

The board is sim/pynq_device.py's SimulatedZynq: a pynq Device whose CSR window is the FeedHandler's
AXI4-Lite port in Verilator and whose AXI DMA is a model of PG021 moving bytes between its simulated DDR
(pynq.allocate buffers) and the core's streams. Nothing of pynq is mocked: the backend reaches the card
through pynq.Bitstream, pynq.MMIO, pynq.allocate and pynq.lib.dma.DMA, and pynq's own DMA driver (its simple
and scatter-gather channels) is run against the model too, so the model answers what pynq expects of the IP.

Expected records come from the golden model (wirebook.model.replay, ModelCard fed the same frames), never
from the card: bit for bit (card_timestamp aside) over both lines, across the ring's wrap-around, and after
an overrun, whose lost records must be counted exactly and raise `gap`.
"""

from __future__ import annotations

import signal

import numpy as np
import pynq
import pytest
from pynq.lib.dma import DMA

from wirebook.driver.card import CardError, CardSetup, GatewareCard, open_card
from wirebook.driver.csr import CardRegisters
from wirebook.driver.model_card import ModelCard
from wirebook.driver.pynq_card import BD_BUFFER, BD_NEXT, MIN_RING_RECORDS, S2MM, SR_HALTED
from wirebook.hdl.feed_handler import build_id
from wirebook.model.replay import replay
from wirebook.proto import bbo, moldudp64, net, registers
from wirebook.sim import feed, market
from wirebook.sim.pynq_device import BusError, SimulatedZynq
from wirebook.sim.verilated_card import build_library, configuration

SESSION = "PYNQCARD01"
GROUP_A = ("233.54.12.111", 26477)
GROUP_B = ("233.49.196.111", 26478)
SETUP = CardSetup(
    groups=[f"{GROUP_A[0]}:{GROUP_A[1]}", f"{GROUP_B[0]}:{GROUP_B[1]}"],
    session=SESSION,
    status_interval_ms=1e-6,  # every poll reads the gap counter: `gap` is checked at the poll it happens
)
CORE = {"data_width": 64, "n_instruments": 64, "n_orders": 16384, "n_levels": 16}  # the default core's


def frames_of(messages: list[bytes], group: tuple[str, int]) -> list[bytes]:
    flow = net.UdpFlow("02:00:00:00:00:01", None, "192.0.2.10", group[0], 26400, group[1])
    return [flow.frame(p) for _, p in moldudp64.packetize(SESSION, 1, messages, max_payload=700)]


def join(batches: list[np.ndarray]) -> np.ndarray:
    out = bbo.empty(sum(len(b) for b in batches))
    at = 0
    for b in batches:
        out[at : at + len(b)] = b
        at += len(b)
    return out


def golden_batches(frames: list[bytes], chunks: list[int]) -> list[np.ndarray]:
    """The golden model's records for each chunk of `frames` (chunk sizes in order)."""
    model = ModelCard()
    model.configure(SETUP)
    out, at = [], 0
    for size in chunks:
        model.push_frames(frames[at : at + size])
        out.append(model.poll())
        at += size
    return out


def rows(records: np.ndarray) -> list[bytes]:
    raw = bbo.canonical_bytes(records)
    return [raw[k : k + bbo.SIZE] for k in range(0, len(raw), bbo.SIZE)]


@pytest.fixture(scope="module")
def library():
    """The default core's Verilator library: built once (cached under out/sim), the simulated PL's bitstream."""
    return build_library(**CORE)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    path = tmp_path_factory.mktemp("pynq") / "day.itch"
    market.write_itch(path, symbols=6, messages=4000, seed=11)
    messages = list(market.generate(6, 4000, 11))
    return path, frames_of(messages, GROUP_A), frames_of(messages, GROUP_B), len(messages)


@pytest.fixture
def zynq(library):
    made: list[SimulatedZynq] = []

    def make(**options) -> SimulatedZynq:
        made.append(SimulatedZynq(**CORE, **options))
        assert made[-1].bitfile == library
        return made[-1]

    yield make
    for z in made:
        z.close()


@pytest.fixture
def card(zynq):
    made: list[GatewareCard] = []

    def make(device: SimulatedZynq | None = None, **options) -> GatewareCard:
        device = device or zynq()
        options = {"bitfile": str(device.bitfile), "ip_dict": device.ip_dict, "device": device,
                   "line_b_dma_ip": "axi_dma_1", **options}  # fmt: skip
        made.append(open_card("pynq", SETUP, **options))
        return made[-1]

    yield make
    for c in made:
        c.close()


@pytest.fixture
def watchdog():
    """pynq's own DMA waits spin forever: a model that never finishes fails the test instead of hanging it."""

    def expire(signum, frame):
        raise TimeoutError("pynq's DMA driver waited more than 30 s on the simulated DMA")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --- records ------------------------------------------------------------------------------------------------


def test_records_equal_the_golden_models_over_both_lines(day, card):
    path, a, b, messages = day
    expected = replay(path)
    pynq_card = card()
    assert pynq_card.kind == "pynq" and pynq_card.backend.fresh  # it loaded the PL: nothing to clear
    batches = []
    for at in range(0, len(a), 8):  # both lines carry every packet: the card takes the first of each
        pynq_card.push_frames(a[at : at + 8], 0)
        pynq_card.push_frames(b[at : at + 8], 1)
        batches.append(pynq_card.poll())
    batches += [pynq_card.poll() for _ in range(3)]
    records = join(batches)
    assert len(records) == expected.bbo_updates
    digest = bbo.Digest()
    digest.update(records)
    assert digest.hexdigest() == expected.bbo_sha256
    counters = pynq_card.counters()
    assert (counters["frames_a"], counters["frames_b"]) == (len(a), len(b))  # one MM2S packet per frame
    assert (counters["messages_accepted"], counters["duplicates"]) == (messages, messages)
    assert counters["bbo_records"] == len(records)
    assert pynq_card.backend.records_lost == 0 and not pynq_card.gap
    dma = pynq.MMIO(0x4040_0000, 0x100, device=pynq_card.backend.device)
    pynq_card.close()
    assert dma.read(S2MM + 4) & SR_HALTED  # closed: the DMA writes nothing more into the freed ring


def test_the_ring_wraps_and_is_read_in_order(day, card):
    _, a, _, _ = day
    pynq_card = card(ring_records=MIN_RING_RECORDS)
    expected = join(golden_batches(a, [1] * len(a)))
    records = []
    for frame in a:  # a frame makes fewer records than the ring holds: polled each frame, none is lost
        pynq_card.push_frames([frame])
        records.append(pynq_card.poll())
    records = join(records)
    assert len(records) > 10 * MIN_RING_RECORDS  # round the ring more than ten times
    assert bbo.canonical_bytes(records) == bbo.canonical_bytes(expected)
    ring = pynq_card.backend.ring
    assert (ring.taken, ring.slot) == (len(records), len(records) % MIN_RING_RECORDS)
    assert pynq_card.backend.records_lost == 0 and not pynq_card.gap


def test_an_overrun_counts_the_lost_records_and_raises_gap(day, card, caplog):
    _, a, _, _ = day
    pynq_card = card(ring_records=MIN_RING_RECORDS)
    before, unread, after = a[:40], a[40:80], a[80:]
    expected = golden_batches(a, [1] * len(before) + [len(unread)] + [1] * len(after))
    expected_before, expected_unread, expected_after = expected[:40], expected[40], expected[41:]
    assert len(expected_unread) > MIN_RING_RECORDS  # more than the ring holds

    read = []
    for frame in before:
        pynq_card.push_frames([frame])
        read.append(pynq_card.poll())
    assert bbo.canonical_bytes(join(read)) == bbo.canonical_bytes(join(expected_before))
    assert not pynq_card.gap

    pynq_card.push_frames(unread)  # the host does not read while these go through: the ring is written over
    assert len(pynq_card.poll()) == 0  # nothing of the overwritten ring is handed out
    assert pynq_card.backend.records_lost == len(expected_unread)  # every record it missed, counted
    assert pynq_card.gap
    assert "record ring overrun" in caplog.text

    pynq_card.clear_gap()
    read = []
    for frame in after:
        pynq_card.push_frames([frame])
        read.append(pynq_card.poll())
    assert bbo.canonical_bytes(join(read)) == bbo.canonical_bytes(join(expected_after))  # in step again
    assert not pynq_card.gap and pynq_card.backend.records_lost == len(expected_unread)


def test_a_lagging_pl_loses_records_only_in_counted_runs(day, card, zynq):
    """Frames also arrive from the wire (queued straight on the core's input, as a PL MAC would) while the PL
    runs only a few hundred cycles per host access: records land while the host reads the ring, and some
    polls find the DMA coming round to slots they are reading. Whatever the timing, every record is handed
    out once, in order, or counted lost; each poll's records are consecutive in the golden sequence."""
    _, a, _, _ = day
    device = zynq(max_cycles=256)
    pynq_card = card(device, ring_records=MIN_RING_RECORDS)
    expected = rows(join(golden_batches(a, [len(a)])))
    position = {row: k for k, row in enumerate(expected)}
    assert len(position) == len(expected)  # each record is unique: it can be placed
    got = []
    for frame in a[:10]:  # the directory comes first: through MM2S, so the host subscribes as it passes
        pynq_card.push_frames([frame])
        got.append(rows(pynq_card.poll()))
    pattern = [(3, 1), (9, 2), (14, 1), (5, 3), (12, 1), (13, 2), (1, 1), (11, 1), (16, 2), (7, 1)]
    at, partial_polls = 10, 0
    while at < len(a):
        for size, polls in pattern:
            for frame in a[at : at + size]:
                device.push_frame(0, frame)
            at += size
            for _ in range(polls):
                lost_before = pynq_card.backend.records_lost
                batch = rows(pynq_card.poll())
                got.append(batch)
                partial_polls += bool(batch and pynq_card.backend.records_lost > lost_before)
    while device.core.queued_bytes(0) or len(got[-1]):
        got.append(rows(pynq_card.poll()))
    places = [[position[row] for row in batch] for batch in got]
    for batch in filter(None, places):
        assert batch == list(range(batch[0], batch[0] + len(batch)))
    flat = [p for batch in places for p in batch]
    assert flat == sorted(set(flat))  # in order, none twice
    assert len(flat) + pynq_card.backend.records_lost == len(expected)
    assert pynq_card.backend.records_lost > 0 and pynq_card.gap
    assert partial_polls > 0  # some overruns were caught while reading: the good part was kept


def test_a_counter_reset_keeps_the_ring_in_step(day, card):
    _, a, _, _ = day
    pynq_card = card()
    expected = golden_batches(a, [30, 30])
    pynq_card.push_frames(a[:30])
    pynq_card.registers.command(registers.COUNTER_RESET)  # bbo_records back to 0 with records unread
    pynq_card.push_frames(a[30:60])
    records = join([pynq_card.poll(), pynq_card.poll()])
    assert bbo.canonical_bytes(records) == bbo.canonical_bytes(join(expected))
    assert pynq_card.counters()["bbo_records"] == len(expected[1])
    assert pynq_card.backend.records_lost == 0 and not pynq_card.gap


# --- registers ----------------------------------------------------------------------------------------------


def test_registers_through_mmio(zynq, card):
    device = zynq()
    pynq_card = card(device)
    identity = pynq_card.identity
    assert (identity.build_id, identity.data_width, identity.n_instruments, identity.n_orders, identity.n_levels) == (
        build_id(), CORE["data_width"], CORE["n_instruments"], CORE["n_orders"], CORE["n_levels"])  # fmt: skip
    window = device.ip_dict["feed_handler_0"]
    mmio = pynq.MMIO(window["phys_addr"], window["addr_range"], device=device)
    assert mmio.read(registers.address("magic")) == int.from_bytes(registers.MAGIC.encode(), "little")
    regs = pynq_card.registers
    regs.write("session", "READBACK01")
    regs.write("group", {"address": net.ipv4_address("233.1.2.3"), "port": 4242, "valid": 1}, 5)
    assert regs.read("session") == "READBACK01"
    assert regs.read("group", 5) == {"address": net.ipv4_address("233.1.2.3"), "port": 4242, "valid": 1}
    assert mmio.read(registers.address("session")) == int.from_bytes(b"READ", "little")
    with pytest.raises(CardError, match=r"feed_handler_0 at 0x43c00000: write of 0x1 at 0x0.*magic.*SLVERR"):
        pynq_card.backend.bus.write32(registers.address("magic"), 1)  # read-only: the core answers SLVERR
    with pytest.raises(CardError, match=r"read at 0xffc.*SLVERR"):
        pynq_card.backend.bus.read32(0xFFC)  # inside the window, no register there
    with pytest.raises(ValueError, match="multiple of 4 below 0x1000"):
        pynq_card.backend.bus.read32(0x1000)
    with pytest.raises(BusError, match="DECERR, no slave there"):
        pynq.MMIO(0x4100_0000, 4, device=device).read(0)


# --- look-aside frames --------------------------------------------------------------------------------------


def test_each_look_aside_frame_is_one_mm2s_packet(card):
    pynq_card = card(frame_buffer_bytes=4096)  # a few frames per DMA run: a push takes several
    generator = np.random.default_rng(5)
    lengths = [*range(1, 200), 1499, 1500, 4000, 4096]  # every length near the 64-byte staging slots
    frames = [generator.integers(0, 256, n, dtype=np.uint8).tobytes() for n in lengths]
    pynq_card.push_frames(frames, 0)
    pynq_card.push_frames(frames[::-1], 1)
    counters = pynq_card.counters()
    assert (counters["frames_a"], counters["frames_b"]) == (len(frames), len(frames))
    assert sum(counters["drops_a"].values()) == len(frames)  # none is a frame of ours: dropped, counted
    with pytest.raises(ValueError, match=r"frame 1 has 4097 bytes; a frame has 1 to 4096"):
        pynq_card.push_frames([b"x", bytes(4097)], 0)
    with pytest.raises(ValueError, match="frame 0 has 0 bytes"):
        pynq_card.push_frames([b""], 1)


def test_a_dma_error_is_reported_naming_the_engine(day, card, zynq):
    _, a, _, _ = day
    device = zynq()
    pynq_card = card(device)
    ring = pynq_card.backend.ring
    ring.descriptors[ring.slot + 3, BD_BUFFER] = 0x0000_1000  # a stray write: slot 3's buffer now points nowhere
    pynq_card.push_frames(a[:4])
    with pytest.raises(CardError, match=r"axi_dma_0 at 0x40400000 S2MM \(records\): DMASR 0x[0-9a-f]+: DMADecErr"):
        pynq_card.poll()
    assert any("no memory there" in why for why in device.errors["axi_dma_0"])
    line_b = pynq_card.backend.senders[1]
    line_b.descriptors[0, BD_NEXT] = 0x0000_1000  # the second frame's descriptor is fetched from nowhere
    with pytest.raises(CardError, match=r"axi_dma_1 at 0x40410000 MM2S \(line B\): DMASR 0x[0-9a-f]+: SGDecErr"):
        pynq_card.push_frames(a[:2], 1)


# --- bad setups ---------------------------------------------------------------------------------------------


def test_bad_setups_are_refused_naming_them(zynq, card):
    device = zynq()
    with pytest.raises(CardError, match=r"no IP 'feed_handler_9' \(the card's CSRs\).*'axi_dma_0'"):
        card(device, csr_ip="feed_handler_9")
    with pytest.raises(CardError, match=r"feed_handler_0 .* is wirebook:user:feed_handler:1.0, not an AXI DMA"):
        card(device, dma_ip="feed_handler_0")
    with pytest.raises(CardError, match=r"no IP 'axi_dma_7' \(line B frames\)"):
        card(device, line_b_dma_ip="axi_dma_7")
    with pytest.raises(CardError, match=r"axi_dma_1 .*no S2MM channel"):
        card(device, dma_ip="axi_dma_1")
    with pytest.raises(ValueError, match=r"ring_records must be at least 128"):
        card(device, ring_records=64)
    with pytest.raises(ValueError, match=r"frame_buffer_bytes must be at least 2048"):
        card(device, frame_buffer_bytes=1024)
    with pytest.raises(ValueError, match="give bitfile"):
        open_card("pynq", SETUP)
    with pytest.raises(ValueError, match="is not this PL's configuration"):
        card(device, bitfile=__file__)
    unconfigured = zynq()
    with pytest.raises(CardError, match="the PL is not configured"):
        card(unconfigured, download=False)
    one_line = card(zynq(line_b_dma=False), line_b_dma_ip=None)
    with pytest.raises(CardError, match="no MM2S channel feeds line B"):
        one_line.push_frames([b"frame"], 1)
    with pytest.raises(CardError, match=r"built without scatter-gather \(c_include_sg=0\)"):
        card(zynq(scatter_gather=False))


# --- pynq's own DMA driver against the model ----------------------------------------------------------------


def configure_by_hand(device: SimulatedZynq, locates: list[int]) -> CardRegisters:
    """Load the PL and set the core up for the day through pynq.MMIO alone (no wirebook driver)."""
    pynq.Bitstream(str(device.bitfile), device=device).download()
    window = device.ip_dict["feed_handler_0"]
    mmio = pynq.MMIO(window["phys_addr"], window["addr_range"], device=device)

    class Bus:
        def read32(self, address: int) -> int:
            return mmio.read(address)

        def write32(self, address: int, value: int) -> None:
            mmio.write(address, value)

    regs = CardRegisters(Bus())
    lines = (feed.Line("A", *GROUP_A), feed.Line("B", *GROUP_B))
    for name, value, index in configuration(locates, lines=lines, session=SESSION):
        regs.write(name, value, index)
    return regs


def subscribed(frames: list[bytes]) -> list[int]:
    model = ModelCard()
    model.configure(SETUP)
    model.push_frames(frames)
    return sorted(model.symbols)


def test_pynq_direct_register_dma_moves_frames_and_records(day, zynq, watchdog):
    _, a, _, _ = day
    every = golden_batches(a[:40], [1] * 40)
    frames, expected = a[:12], every[:12]
    faulty = next(k for k in range(12, 40) if len(every[k]))  # the next frame that makes a record
    device = zynq(scatter_gather=False, line_b_dma=False)
    regs = configure_by_hand(device, subscribed(a))
    dma = DMA(device.ip_dict["axi_dma_0"])
    assert type(dma.sendchannel).__name__ == "_SDMAChannel"
    send = pynq.allocate(2048, np.uint8, target=device)
    record = pynq.allocate(1, bbo.DTYPE, target=device)
    got = []
    for frame, records in zip(frames, expected):
        send[: len(frame)] = np.frombuffer(frame, np.uint8)
        dma.sendchannel.transfer(send, nbytes=len(frame))
        dma.sendchannel.wait()
        assert dma.sendchannel.transferred == len(frame)
        for _ in records:  # one S2MM transfer per record packet; unarmed, the record stream waits
            dma.recvchannel.transfer(record)
            dma.recvchannel.wait()
            assert dma.recvchannel.transferred == bbo.SIZE
            got.append(record.copy())
    assert bbo.canonical_bytes(join(got)) == bbo.canonical_bytes(join(expected))
    assert regs.read("frames_a") == len(frames)

    for frame in a[12 : faulty + 1]:  # its record goes to an address with no memory behind it
        send[: len(frame)] = np.frombuffer(frame, np.uint8)
        dma.sendchannel.transfer(send, nbytes=len(frame))
        dma.sendchannel.wait()
    dma.mmio.write(0x48, 0x0000_1000)  # S2MM_DA
    dma.mmio.write(0x58, bbo.SIZE)  # S2MM_LENGTH: go
    with pytest.raises(RuntimeError):  # PG021: an error clears DMACR.RS, so the channel is halted
        dma.recvchannel.wait()
    assert dma.recvchannel.error and not dma.recvchannel.running  # pynq's reading of DMASR
    assert dma.mmio.read(0x34) & 0x4041 == 0x4041  # S2MM_DMASR: DMADecErr, Err_Irq, Halted


@pytest.mark.filterwarnings("ignore:.close no longer functional:DeprecationWarning")  # pynq's own SG channel
def test_pynq_scatter_gather_dma_moves_frames_and_records(day, zynq, watchdog):
    _, a, _, _ = day
    frames = a[:3]
    expected = join(golden_batches(frames, [len(frames)]))
    device = zynq(line_b_dma=False)
    configure_by_hand(device, subscribed(a))
    dma = DMA(device.ip_dict["axi_dma_0"])
    assert type(dma.recvchannel).__name__ == "_SGDMAChannel"
    send = pynq.allocate(2048, np.uint8, target=device)
    for frame in frames:  # pynq splits each transfer over two descriptors, SOF on the first, EOF on the last
        send[: len(frame)] = np.frombuffer(frame, np.uint8)
        dma.sendchannel.transfer(send, nbytes=len(frame))
        dma.sendchannel.wait()
        assert dma.sendchannel.transferred == len(frame)
    pairs = pynq.allocate(2, bbo.DTYPE, target=device)  # two descriptors of one record each
    got = []
    for _ in range(len(expected) // 2):
        dma.recvchannel.transfer(pairs)
        dma.recvchannel.wait()
        assert dma.recvchannel.transferred == 2 * bbo.SIZE
        got.append(pairs.copy())
    if len(expected) % 2:
        single = pynq.allocate(1, bbo.DTYPE, target=device)  # one record across two 32-byte descriptors
        dma.recvchannel.transfer(single)
        dma.recvchannel.wait()
        got.append(single.copy())
    assert bbo.canonical_bytes(join(got)) == bbo.canonical_bytes(expected)


def test_pynq_cyclic_mm2s_repeats_a_frame_until_stopped(day, zynq, watchdog):
    _, a, _, _ = day
    device = zynq(line_b_dma=False, max_cycles=4096)  # cyclic MM2S never finishes: bound each access's run
    regs = configure_by_hand(device, [])
    dma = DMA(device.ip_dict["axi_dma_0"])
    send = pynq.allocate(len(a[0]), np.uint8, target=device)
    send[:] = np.frombuffer(a[0], np.uint8)
    dma.sendchannel.transfer(send, cyclic=True)
    first = regs.read("frames_a")
    assert regs.read("frames_a") > first > 1  # the same frame again and again
    dma.sendchannel.stop()  # cyclic: halts and soft-resets the DMA
    for _ in range(8):  # the frames it had read ahead into the core still arrive
        regs.read("frames_a")
    stopped = regs.read("frames_a")
    assert regs.read("frames_a") == stopped
