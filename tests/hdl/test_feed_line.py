"""FeedLine: Ethernet frames of one feed line into MoldUDP64 messages, against a software reference.

Frames are built with the project's codecs (proto.net.build_udp_frame, proto.moldudp64, proto.itch /
sim.market messages) and mutated through the same field tables; nothing is typed as hex. What the line
should do with a frame is worked out by `reference`, the drop policy of the FeedLine docstring written
plainly over the frame's bytes with proto's parsers; the feed capture run compares against
proto.net.parse_udp_frame + proto.moldudp64.decode_packet instead.

A monitor samples the ports every cycle: the messages (sequence, bytes, zero padding, line), every strobe
(attributed to the frame whose beats were on the input when it rose, or whose last beat the line was
still working on), `frames.ready` (never low at full rate: line rate) and the latency of every message
from the beat holding its last byte.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from wirebook.hdl.feed_line import DropReason, FeedLine, session_const
from wirebook.hdl.stream import MESSAGE, MESSAGE_BYTES, frame_layout
from wirebook.proto import itch, moldudp64, net
from wirebook.proto.pcap import iter_pcap
from wirebook.sim import feed, market
from wirebook.sim.testbench import Flow, beats

WIDTHS = (8, 32, 64)
FLOWS = {"full_rate": (0.0, 0.0), "idle_and_backpressure": (0.3, 0.3)}
LINE_A, LINE_B = feed.LINE_A, feed.LINE_B
LOCAL_MAC = net.mac_address("02:57:42:00:00:99")
STROBES = ("frame_seen", "packet_accepted", "heartbeat", "end_of_session", "truncated", "bad_message_length")
FIRST_SEQUENCE = (1 << 40) + 7  # carries into the upper half of the 64-bit sequence


# --- configuration and frames ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    enable: bool = True
    local_mac: int = LOCAL_MAC
    accept_multicast: bool = True
    groups: tuple[tuple[bool, str, int], ...] = ((True, LINE_A.group, LINE_A.port),)  # (valid, address, port)
    session: str = feed.DEFAULT_SESSION
    check_session: bool = True


@dataclass
class Item:
    """One frame on the input: its bytes, the configuration while it passes, and optionally one beat whose
    keep is replaced (beat index, negative from the end; keep) to break the framing rules."""

    frame: bytes
    config: Config = field(default_factory=Config)
    bad_keep: tuple[int, int] | None = None
    name: str = ""

    def bad_beat(self, lanes: int) -> int | None:
        if self.bad_keep is None:
            return None
        return self.bad_keep[0] % -(-len(self.frame) // lanes)


def packet(
    messages,
    sequence: int = FIRST_SEQUENCE,
    *,
    session: str = feed.DEFAULT_SESSION,
    line=LINE_A,
    port: int | None = None,
    destination_mac=None,
    vlan: int | None = None,
    options: bytes = b"",
    padding: bytes = b"",
    payload: bytes | None = None,
) -> bytes:
    """A feed frame carrying `messages` (or the UDP `payload` given), optionally tagged / with IPv4 options."""
    if payload is None:
        payload = moldudp64.encode_packet(session, sequence, messages)
    frame = net.build_udp_frame(
        feed.SOURCE_MAC,
        destination_mac,
        feed.SOURCE_IP,
        line.group,
        feed.SOURCE_PORT,
        line.port if port is None else port,
        payload,
        vlan=vlan,
        ip_options=options,
    )
    return frame + padding


def ip_offset(frame: bytes) -> int:
    return net.parse_ethernet(frame)[1]


def with_ip(frame: bytes, *, fix_checksum: bool = True, **fields) -> bytes:
    """The frame with IPv4 header fields replaced (the header checksum recomputed unless told not to)."""
    at = ip_offset(frame)
    ihl = net.IPV4_IHL.get(frame[at])
    header = bytearray(net.IPV4.pack(net.IPV4.unpack(frame, at)._replace(**fields)._asdict()))
    header += frame[at + net.IPV4.length : at + 4 * ihl]
    if fix_checksum:
        checksum = net.IPV4.by_name["header_checksum"]
        header[checksum.offset : checksum.end] = net.ipv4_header_checksum(header).to_bytes(2, "big")
    return frame[:at] + bytes(header) + frame[at + 4 * ihl :]


def with_udp(frame: bytes, **fields) -> bytes:
    at = ip_offset(frame)
    at += 4 * net.IPV4_IHL.get(frame[at])
    return frame[:at] + net.UDP.pack(net.UDP.unpack(frame, at)._replace(**fields)._asdict()) + frame[at + 8 :]


def blocks(messages) -> bytes:
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)


def mold_payload(messages, count: int, sequence: int = FIRST_SEQUENCE, raw_blocks: bytes | None = None) -> bytes:
    """A MoldUDP64 payload whose header announces `count` blocks whatever follows."""
    header = moldudp64.HEADER.pack(session=feed.DEFAULT_SESSION, sequence_number=sequence, message_count=count)
    return header + (blocks(messages) if raw_blocks is None else raw_blocks)


def samples(seed: int = 3) -> dict[str, list[bytes]]:
    """Generated market messages by type letter (every ITCH 5.0 type)."""
    by_type: dict[str, list[bytes]] = {}
    for raw in market.generate(30, 2500, seed=seed):
        by_type.setdefault(chr(raw[0]), []).append(raw)
    assert set(by_type) == set(itch.TYPES)
    return by_type


# --- the policy, as a reference --------------------------------------------------------------------------


@dataclass
class Outcome:
    reason: DropReason | None
    messages: list[tuple[int, bytes, int]] = field(default_factory=list)  # (sequence, bytes, last byte position)
    strobes: Counter = field(default_factory=Counter)
    accepted_at: int = -1  # frame position of the byte that decides acceptance (the MoldUDP64 header's last)
    finished_at: int | None = None  # frame position where the framer is done with the packet (None: frame end)


def reference(frame: bytes, config: Config) -> Outcome:
    """What the line does with `frame` under `config` (keep rules aside), per the FeedLine docstring."""
    n = len(frame)

    def drop(reason):
        return Outcome(reason)

    if not config.enable:
        return drop(DropReason.DISABLED)
    if n < net.ETHERNET.length:
        return drop(DropReason.BAD_FRAMING)
    eth = net.ETHERNET.unpack(frame)
    multicast = eth.destination >> 24 == 0x01005E and not eth.destination >> 23 & 1
    if eth.destination != config.local_mac and not (config.accept_multicast and multicast):
        return drop(DropReason.MAC)
    l3, ethertype = net.ETHERNET.length, eth.ethertype
    if ethertype == net.ETHERTYPE_VLAN:
        if n < net.ETHERNET_VLAN.length:
            return drop(DropReason.BAD_FRAMING)
        l3, ethertype = net.ETHERNET_VLAN.length, net.ETHERNET_VLAN.unpack(frame).ethertype
    if ethertype != net.ETHERTYPE_IPV4:
        return drop(DropReason.ETHERTYPE)
    if n < l3 + net.IPV4.length:
        return drop(DropReason.BAD_FRAMING)
    ip = net.IPV4.unpack(frame, l3)
    ihl = net.IPV4_IHL.get(ip.version_ihl)
    if net.IPV4_VERSION.get(ip.version_ihl) != 4 or ihl < 5 or ip.total_length < 4 * ihl + net.UDP.length:
        return drop(DropReason.IP_HEADER)
    l4 = l3 + 4 * ihl
    if n < l4:
        return drop(DropReason.BAD_FRAMING)
    if net.internet_checksum(frame[l3:l4]) != 0:
        return drop(DropReason.IP_CHECKSUM)
    flags = ip.flags_fragment_offset
    if net.IPV4_FLAG_MORE_FRAGMENTS.get(flags) or net.IPV4_FRAGMENT_OFFSET.get(flags):
        return drop(DropReason.IP_FRAGMENT)
    if ip.protocol != net.IP_PROTOCOL_UDP:
        return drop(DropReason.IP_PROTOCOL)
    groups = [(net.ipv4_address(a), p) for valid, a, p in config.groups if valid]
    if ip.destination not in {a for a, _ in groups}:
        return drop(DropReason.IP_DESTINATION)
    if n < l4 + net.UDP.length:
        return drop(DropReason.BAD_FRAMING)
    udp = net.UDP.unpack(frame, l4)
    if (ip.destination, udp.destination_port) not in groups:
        return drop(DropReason.UDP_PORT)
    if udp.length != ip.total_length - 4 * ihl or udp.length < net.UDP.length + moldudp64.HEADER_LENGTH:
        return drop(DropReason.UDP_LENGTH)
    mold_at = l4 + net.UDP.length
    if n < mold_at + moldudp64.HEADER_LENGTH:
        return drop(DropReason.BAD_FRAMING)
    head = moldudp64.HEADER.unpack(frame, mold_at)
    session = frame[mold_at : mold_at + 10]
    if config.check_session and session != config.session.ljust(10).encode("ascii"):
        return drop(DropReason.MOLD_SESSION)
    count = head.message_count
    special = count in (moldudp64.HEARTBEAT_COUNT, moldudp64.END_OF_SESSION_COUNT)
    if special and udp.length != net.UDP.length + moldudp64.HEADER_LENGTH:
        return drop(DropReason.MOLD_LENGTH)

    out = Outcome(None, accepted_at=mold_at + moldudp64.HEADER_LENGTH - 1)
    out.strobes["packet_accepted"] += 1
    out.strobes["heartbeat"] += count == moldudp64.HEARTBEAT_COUNT
    out.strobes["end_of_session"] += count == moldudp64.END_OF_SESSION_COUNT
    expected = 0 if count == moldudp64.END_OF_SESSION_COUNT else count
    end = l3 + ip.total_length
    at, index, decided = mold_at + moldudp64.HEADER_LENGTH, 0, out.accepted_at
    while True:
        if at == end:
            out.strobes["truncated"] += index < expected
            out.finished_at = decided
            break
        if index >= expected or at + 2 > end:
            out.strobes["bad_message_length"] += 1
            out.finished_at = decided
            break
        if at + 2 > n:
            out.strobes["truncated"] += 1
            break
        length = int.from_bytes(frame[at : at + 2], "big")
        if length == 0 or length > MESSAGE_BYTES or at + 2 + length > end:
            out.strobes["bad_message_length"] += 1
            out.finished_at = max(decided, at + 1)
            break
        if at + 2 + length > n:
            out.strobes["truncated"] += 1
            break
        decided = at + 1 + length
        out.messages.append((head.sequence_number + index, frame[at + 2 : at + 2 + length], decided))
        index += 1
        at += 2 + length
    return out


def expect(item: Item, lanes: int) -> Outcome:
    """The reference with the item's keep breakage applied."""
    out = reference(item.frame, item.config)
    if item.bad_keep is None:
        return out
    bad_beat = item.bad_beat(lanes)
    if out.reason is not None or bad_beat <= out.accepted_at // lanes:
        return Outcome(DropReason.BAD_FRAMING)
    finished_at = len(item.frame) - 1 if out.finished_at is None else out.finished_at
    if finished_at // lanes < bad_beat:
        return out
    out.messages = [m for m in out.messages if m[2] // lanes < bad_beat]
    out.strobes["truncated"], out.strobes["bad_message_length"] = 1, 0
    return out


# --- the bench --------------------------------------------------------------------------------------------


def group_value(config: Config, n_groups: int) -> list[dict]:
    """The `groups` input: the configured entries, then invalid ones (pointing at line B, to show that
    `valid` matters)."""
    entries = [{"valid": int(v), "address": net.ipv4_address(a), "port": p} for v, a, p in config.groups]
    filler = {"valid": 0, "address": net.ipv4_address(LINE_B.group), "port": LINE_B.port}
    return entries + [filler] * (n_groups - len(entries))


class TB:
    """Drives a FeedLine with items and records every transfer and strobe, cycle by cycle."""

    def __init__(self, width: int, items: list[Item], flow: str, seed: int = 0, line: int = 0):
        self.width, self.lanes, self.items, self.line = width, width // 8, items, line
        self.dut = FeedLine(width, line=line)
        idle, backpressure = FLOWS[flow]
        self.full_rate = idle == 0 and backpressure == 0
        self.in_flow, self.out_flow = Flow(idle, seed + 1), Flow(backpressure, seed + 2)
        self.expected = [expect(item, self.lanes) for item in items]
        self.beats = [self._beats(item) for item in items]
        self.taken_at: list[int] = []  # cycle each beat was taken
        self.messages: list[tuple[int, bytes, int, int]] = []  # (sequence, bytes, line, first valid cycle)
        self.strobes: list[tuple[int, str]] = []
        self.stalls = 0  # cycles frames.valid was high and frames.ready low
        self.latencies: Counter = Counter()  # cycles from the beat with a message's last byte: messages
        self.errors: list[str] = []
        self.cycles = 0

    def _beats(self, item: Item) -> list[int]:
        layout = frame_layout(self.width)
        keep_at, last_at = layout["keep"].offset, layout["last"].offset
        out = []
        for i, b in enumerate(beats(item.frame, self.width)):
            keep = item.bad_keep[1] if i == item.bad_beat(self.lanes) else b.keep
            out.append(b.data | keep << keep_at | b.last << last_at)
        return out

    def run(self) -> TB:
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_testbench(self.drive)
        sim.add_testbench(self.consume, background=True)
        sim.add_testbench(self.monitor, background=True)
        sim.run()
        return self

    def _configure(self, ctx, config: Config) -> None:
        dut = self.dut
        ctx.set(dut.enable, int(config.enable))
        ctx.set(dut.local_mac, config.local_mac)
        ctx.set(dut.accept_multicast, int(config.accept_multicast))
        ctx.set(dut.session, session_const(config.session))
        ctx.set(dut.check_session, int(config.check_session))
        ctx.set(dut.groups, group_value(config, dut.n_groups))

    async def drive(self, ctx):
        dut, payload = self.dut, self.dut.frames.payload.as_value()
        config, valid = None, False
        for item, item_beats in zip(self.items, self.beats):
            if item.config != config:
                self._configure(ctx, item.config)
                config = item.config
            for beat in item_beats:
                if pause := self.in_flow.pause():
                    if valid:
                        ctx.set(dut.frames.valid, 0)
                        valid = False
                    await ctx.tick().repeat(pause)
                ctx.set(payload, beat)
                if not valid:
                    ctx.set(dut.frames.valid, 1)
                    valid = True
                await ctx.tick().until(dut.frames.ready)
        ctx.set(dut.frames.valid, 0)
        want = sum(len(out.messages) for out in self.expected)
        for _ in range(200 + 4 * want):
            if len(self.messages) >= want:
                break
            await ctx.tick()
        await ctx.tick().repeat(4)  # the last strobes

    async def consume(self, ctx):
        ready = None
        while True:
            now = self.out_flow.pause() == 0
            if now != ready:
                ctx.set(self.dut.messages.ready, int(now))
                ready = now
            await ctx.tick()

    async def monitor(self, ctx):
        dut = self.dut
        names = ("drop", *STROBES)
        data_bits = 8 * MESSAGE_BYTES
        length_at, sequence_at, line_at = (MESSAGE[name].offset for name in ("length", "sequence", "line"))
        cycle, held = 0, False
        async for _, _, fv, fr, mv, mr, payload, reason, *strobes in ctx.tick().sample(
            dut.frames.valid, dut.frames.ready, dut.messages.valid, dut.messages.ready,
            dut.messages.payload.as_value(), dut.drop_reason.as_value(), *(getattr(dut, n) for n in names),
        ):  # fmt: skip
            if fv and fr:
                self.taken_at.append(cycle)
            if fv and not fr:
                self.stalls += 1
            if mv and not held:
                length = payload >> length_at & 0x3F
                data = payload & ((1 << data_bits) - 1)
                if data >> (8 * length):
                    self.errors.append(f"cycle {cycle}: message bytes past its length are not zero")
                message = data.to_bytes(MESSAGE_BYTES, "little")[:length]
                sequence = payload >> sequence_at & ((1 << 64) - 1)
                self.messages.append((sequence, message, payload >> line_at & 1, cycle))
            held = bool(mv and not mr)
            for name, on in zip(names, strobes):
                if on:
                    self.strobes.append((cycle, f"drop:{DropReason(reason).name}" if name == "drop" else name))
            cycle += 1
            self.cycles = cycle

    # --- checks ---

    def check(self, *, line_rate: bool | None = None) -> None:
        assert not self.errors, self.errors[:5]
        want = [(s, m, self.line) for out in self.expected for s, m, _ in out.messages]
        got = [(s, m, line) for s, m, line, _ in self.messages]
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"message {i}: got {g}, want {w}"
        assert len(got) == len(want)
        self.check_strobes()
        self.check_latency()
        if line_rate if line_rate is not None else self.full_rate:
            assert self.stalls == 0, f"frames.ready low in {self.stalls} cycles at full rate"
            assert self.taken_at[-1] - self.taken_at[0] + 1 == len(self.taken_at), "idle cycles on the input"

    def check_strobes(self) -> None:
        """Every strobe rises 2 cycles after the beat that decided it (`drop` and `frame_seen` 3 after the
        frame's last beat): a frame's strobes come later than 1 cycle after its first beat is taken and no
        later than 2 cycles after the next frame's first beat is (the line is done with a frame's last beat
        before it takes the next one)."""
        firsts, at = [], 0
        for item_beats in self.beats:
            firsts.append(self.taken_at[at] + 1)
            at += len(item_beats)
        ends = [*(first + 1 for first in firsts[1:]), self.cycles]
        per_frame = [Counter() for _ in self.items]
        frame = 0
        for cycle, name in self.strobes:
            while frame < len(ends) and cycle > ends[frame]:
                frame += 1
            assert frame < len(ends), f"strobe {name} at cycle {cycle} after the last frame"
            assert cycle > firsts[frame], f"strobe {name} at cycle {cycle} before frame {frame} began"
            per_frame[frame][name] += 1
        for i, (item, out, got) in enumerate(zip(self.items, self.expected, per_frame)):
            want = Counter({"frame_seen": 1, **{k: v for k, v in out.strobes.items() if v}})
            if out.reason is not None:
                want[f"drop:{out.reason.name}"] += 1
            assert got == want, f"frame {i} ({item.name}): strobes {dict(got)}, want {dict(want)}"

    def check_latency(self) -> None:
        """Every message valid the cycle after the beat holding its last byte was taken, when that beat ends
        no other message before it and did not bring the message's length too. Each cycle the line handles
        one message end and one length, so a beat's later messages leave one cycle after another, and the
        first one cycle later when its length came in the same beat (blocks of at most lanes - 1 bytes,
        never ITCH). Back-pressure can only delay a message."""
        expected = []
        base = 0
        for item_beats, out in zip(self.beats, self.expected):
            beats_ending: dict[int, int] = {}
            for _, message, last in out.messages:
                beat = base + last // self.lanes
                if beat not in beats_ending:  # the first message of the beat: did its length come with it?
                    length_low = last - len(message)
                    beats_ending[beat] = int(length_low // self.lanes == last // self.lanes)
                else:
                    beats_ending[beat] += 1
                expected.append((beat, 1 + beats_ending[beat]))
            base += len(item_beats)
        latencies = Counter()
        for (*_, first_valid), (beat, want) in zip(self.messages, expected):
            latency = first_valid - self.taken_at[beat]
            latencies[latency] += 1
            if self.out_flow.idle == 0:
                assert latency == want, f"latency {latency}, want {want}"
            else:
                assert latency >= want, f"latency {latency}, want at least {want}"
        self.latencies = latencies


def run(width: int, items: list[Item], flow: str, seed: int = 0, **check) -> TB:
    tb = TB(width, items, flow, seed).run()
    tb.check(**check)
    return tb


# --- message framing --------------------------------------------------------------------------------------

HEADER_SHIFTS = ({}, {"vlan": 5}, {"options": bytes(4)}, {"vlan": 7, "options": bytes(range(12))})


def alignment_items(width: int, seed: int = 1) -> list[Item]:
    """Packets in which every ITCH type starts at every lane of a beat (and so ends at many), under
    every header shift, with heartbeats, an end of session and padded frames among them."""
    lanes, rng, by_type = width // 8, random.Random(seed), samples()
    wanted = {(t, lane) for t in itch.TYPES for lane in range(lanes)}
    items, sequence, shift = [], FIRST_SEQUENCE, 0
    while wanted:
        options = HEADER_SHIFTS[shift % len(HEADER_SHIFTS)]
        shift += 1
        start = len(packet([], **options)) + 2  # frame position of the first message's type letter
        chosen, at = [], start
        while wanted and at - start < 1000:
            here = [t for t in itch.TYPES if (t, at % lanes) in wanted]
            if here:
                letter = rng.choice(here)
            else:  # move to a lane that still misses types
                letter = max(
                    itch.TYPES,
                    key=lambda t: sum((u, (at + 2 + len(by_type[t][0])) % lanes) in wanted for u in itch.TYPES),
                )
            wanted.discard((letter, at % lanes))
            message = rng.choice(by_type[letter])
            chosen.append(message)
            at += len(message) + 2
        padding = bytes(rng.randrange(256) for _ in range(rng.choice((0, 3, 9))))
        items.append(Item(packet(chosen, sequence, padding=padding, **options), name=f"shift {options}"))
        sequence += len(chosen)
        items.append(Item(packet([], sequence, **options), name="heartbeat"))
    items.append(Item(packet([], sequence, payload=moldudp64.encode_end_of_session(feed.DEFAULT_SESSION, sequence))))
    return items


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("width", WIDTHS)
def test_every_type_at_every_alignment(width, flow):
    tb = run(width, alignment_items(width), flow)
    letters = Counter(chr(m[0]) for _, m, *_ in tb.messages)
    assert set(letters) == set(itch.TYPES)
    assert sum(s == "end_of_session" for _, s in tb.strobes) == 1
    assert sum(s == "heartbeat" for _, s in tb.strobes) >= 1


@pytest.mark.parametrize("width", WIDTHS)
def test_line_rate(width):
    """Back-to-back frames of a random ITCH mix at full rate: frames.ready never drops, one beat a cycle."""
    rng = random.Random(width)
    messages = list(market.generate(20, {8: 40, 32: 150, 64: 300}[width], seed=width))
    items, sequence = [], FIRST_SEQUENCE
    while messages:
        batch, messages = messages[: rng.randint(1, 12)], messages[12:]
        items.append(Item(packet(batch, sequence, **rng.choice(HEADER_SHIFTS))))
        sequence += len(batch)
    tb = run(width, items, "full_rate", line_rate=True)
    assert tb.stalls == 0 and len(tb.taken_at) == sum(len(b) for b in tb.beats)


@pytest.mark.parametrize("width", WIDTHS)
def test_output_stall(width):
    """With `messages.ready` low the line fills its output register, takes the beat ending the next message
    (it waits in the line's skid) and then holds `frames.ready` low until the output is read; nothing is
    lost or reordered. `frames.ready` is a register: it never follows `messages.ready` within a cycle."""
    by_type = samples()
    item = Item(packet([by_type[t][0] for t in "APDSIRUEAF"]))
    tb = TB(width, [item], "full_rate")
    dut, lanes, out = tb.dut, tb.lanes, tb.expected[0]
    stall_beat = out.messages[1][2] // lanes  # the beat ending the second message: the last one taken
    data_bits = 8 * MESSAGE_BYTES
    length_at, sequence_at = MESSAGE["length"].offset, MESSAGE["sequence"].offset
    got = []

    async def bench(ctx):
        tb._configure(ctx, item.config)
        payload = dut.frames.payload.as_value()
        beats, taken, stalled, reading = tb.beats[0], 0, 0, 0
        for _ in range(40 * len(beats)):
            if taken < len(beats):
                ctx.set(payload, beats[taken])
            ctx.set(dut.frames.valid, int(taken < len(beats)))
            ctx.set(dut.messages.ready, 1 - reading)
            other = ctx.get(dut.frames.ready)
            ctx.set(dut.messages.ready, reading)
            ready = ctx.get(dut.frames.ready)
            assert ready == other, "frames.ready follows messages.ready"
            if ctx.get(dut.messages.valid) and reading:
                word = ctx.get(dut.messages.payload.as_value())
                length = word >> length_at & 0x3F
                message = (word & ((1 << data_bits) - 1)).to_bytes(MESSAGE_BYTES, "little")[:length]
                got.append((word >> sequence_at & ((1 << 64) - 1), message))
            if taken < len(beats) and ready:
                taken, stalled = taken + 1, 0
            elif taken < len(beats):
                stalled += 1
            if not reading and stalled == 4:
                assert taken == stall_beat + 1, f"{taken} beats taken before the stall, want {stall_beat + 1}"
                assert ctx.get(dut.messages.valid), "the output register holds the first message"
                reading = 1
            await ctx.tick()
        assert reading, "the line never stalled"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [(sequence, message) for sequence, message, _ in out.messages]


# --- drops: one mutated packet per reason, each followed by a valid one -------------------------------------


def arp_frame() -> bytes:
    eth = net.ETHERNET.pack(destination=LOCAL_MAC, source=net.mac_address(feed.SOURCE_MAC), ethertype=0x0806)
    return eth + bytes(28)  # an ARP reply's length; its contents do not matter here


def drop_cases(message: bytes) -> dict[str, tuple[DropReason, Item]]:
    """name -> (the reason it must be dropped for, the frame)."""
    good = packet([message])
    tagged = packet([message], vlan=12)
    with_options = packet([message], options=bytes(range(1, 9)))
    at = ip_offset(with_options) + net.IPV4.length + 3  # an option byte: covered by the checksum only
    broken_option = with_options[:at] + bytes([with_options[at] ^ 0x40]) + with_options[at + 1 :]
    flags = net.IPV4.unpack(good, ip_offset(good)).flags_fragment_offset
    udp_length = net.UDP.unpack(good, ip_offset(good) + net.IPV4.length).length
    ip_length = net.IPV4.unpack(good, ip_offset(good)).total_length
    header_end = len(packet([]))
    short_by = udp_length - (net.UDP.length + moldudp64.HEADER_LENGTH - 1)  # one byte short of a MoldUDP64 header
    c = Config()
    return {
        "keep_short_beat": (DropReason.BAD_FRAMING, Item(good, bad_keep=(1, 0))),
        "keep_broken_after_wrong_mac": (
            DropReason.BAD_FRAMING,
            Item(packet([message], destination_mac="02:00:00:00:00:02"), bad_keep=(-2, 0)),
        ),
        "runt": (DropReason.BAD_FRAMING, Item(good[:10])),
        "cut_in_ip_header": (DropReason.BAD_FRAMING, Item(good[:30])),
        "cut_in_ip_options": (DropReason.BAD_FRAMING, Item(with_options[: ip_offset(with_options) + 24])),
        "cut_in_mold_header": (DropReason.BAD_FRAMING, Item(good[: header_end - 5])),
        "disabled": (DropReason.DISABLED, Item(good, replace(c, enable=False))),
        "wrong_mac": (DropReason.MAC, Item(packet([message], destination_mac="02:00:00:00:00:02"))),
        "multicast_not_accepted": (DropReason.MAC, Item(good, replace(c, accept_multicast=False))),
        "not_an_ipv4_multicast_mac": (DropReason.MAC, Item(packet([message], destination_mac="01:00:5e:80:00:01"))),
        "not_ipv4": (DropReason.ETHERTYPE, Item(arp_frame())),
        "tagged_not_ipv4": (DropReason.ETHERTYPE, Item(tagged[:16] + b"\x86\xdd" + tagged[18:])),
        "ip_version": (DropReason.IP_HEADER, Item(with_ip(good, version_ihl=0x65))),
        "ip_ihl": (DropReason.IP_HEADER, Item(with_ip(good, version_ihl=0x44))),
        "ip_total_length": (DropReason.IP_HEADER, Item(with_ip(good, total_length=net.IPV4.length + 7))),
        "ip_checksum": (DropReason.IP_CHECKSUM, Item(with_ip(good, ttl=3, fix_checksum=False))),
        "ip_checksum_options": (DropReason.IP_CHECKSUM, Item(broken_option)),
        "more_fragments": (DropReason.IP_FRAGMENT, Item(with_ip(good, flags_fragment_offset=flags | 1 << 13))),
        "fragment_offset": (DropReason.IP_FRAGMENT, Item(with_ip(good, flags_fragment_offset=flags | 185))),
        "tcp": (DropReason.IP_PROTOCOL, Item(with_ip(good, protocol=6))),
        "other_group": (DropReason.IP_DESTINATION, Item(packet([message], line=LINE_B))),
        "invalid_group_entry": (
            DropReason.IP_DESTINATION,
            Item(good, replace(c, groups=((False, LINE_A.group, LINE_A.port),))),
        ),
        "wrong_port": (DropReason.UDP_PORT, Item(packet([message], port=LINE_A.port + 1))),
        "port_of_other_group": (
            DropReason.UDP_PORT,
            Item(good, replace(c, groups=((True, LINE_B.group, LINE_A.port), (True, LINE_A.group, 1)))),
        ),
        "udp_length_long": (DropReason.UDP_LENGTH, Item(with_udp(good, length=udp_length + 1))),
        "udp_length_short": (DropReason.UDP_LENGTH, Item(with_udp(good, length=udp_length - 1))),
        "udp_payload_too_short": (
            DropReason.UDP_LENGTH,
            Item(with_udp(with_ip(good, total_length=ip_length - short_by), length=udp_length - short_by)),
        ),
        "wrong_session": (DropReason.MOLD_SESSION, Item(packet([message], session="OTHER"))),
        "heartbeat_with_payload": (
            DropReason.MOLD_LENGTH,
            Item(packet([], payload=mold_payload([message], moldudp64.HEARTBEAT_COUNT))),
        ),
        "end_of_session_with_payload": (
            DropReason.MOLD_LENGTH,
            Item(packet([], payload=mold_payload([message], moldudp64.END_OF_SESSION_COUNT))),
        ),
    }


# Frames that must pass, under configurations that differ from the default.
def accept_cases(message: bytes) -> dict[str, Item]:
    c = Config()
    return {
        "unicast_to_local_mac": Item(packet([message], destination_mac=LOCAL_MAC)),
        "unicast_with_multicast_off": Item(
            packet([message], destination_mac=LOCAL_MAC), replace(c, accept_multicast=False)
        ),
        "session_not_checked": Item(packet([message], session="OTHER"), replace(c, check_session=False)),
        "second_group_entry": Item(
            packet([message], line=LINE_B),
            replace(c, groups=((True, LINE_A.group, LINE_A.port), (True, LINE_B.group, LINE_B.port))),
        ),
        "tagged_with_options": Item(packet([message], vlan=4095, options=bytes(40))),
        "options_in_checksum": Item(packet([message], options=bytes(range(0x11, 0x11 + 40, 5)))),
        "padded": Item(packet([message], padding=bytes(range(30)))),
    }


DROP_NAMES = tuple(drop_cases(b"S" + bytes(11)))
_runs: dict[tuple, tuple[TB, dict[str, int]]] = {}


def drop_run(width: int, flow: str) -> tuple[TB, dict[str, int]]:
    """One simulation per width and flow for every drop case (each followed by a valid packet) and every
    accept case, shared by their tests: (the bench, case name -> index of the case's frame)."""
    key = ("drops", width, flow)
    if key not in _runs:
        by_type = samples()
        message = by_type["S"][0]  # short messages: the 8-bit runs take a cycle per byte
        items, index = [], {}
        for n, (name, (_, item)) in enumerate(drop_cases(message).items()):
            index[name] = len(items)
            item.name = name
            after = by_type["SWDBYN"[n % 6]][0]
            items += [item, Item(packet([after], FIRST_SEQUENCE + n), name="valid")]
        for name, item in accept_cases(message).items():
            index[name] = len(items)
            item.name = name
            items.append(item)
        _runs[key] = TB(width, items, flow, seed=width, line=1).run(), index  # line B, for once
    return _runs[key]


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", DROP_NAMES)
def test_drop(case, width, flow):
    tb, index = drop_run(width, flow)
    tb.check()  # every frame of the run, against the reference
    reason, _ = drop_cases(b"S" + bytes(11))[case]
    i = index[case]
    assert tb.expected[i].reason is reason, "the reference disagrees with the case"
    assert tb.expected[i + 1].reason is None and len(tb.expected[i + 1].messages) == 1


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("width", WIDTHS)
def test_accepted_configurations(width, flow):
    tb, index = drop_run(width, flow)
    tb.check()
    for name in accept_cases(b"S" + bytes(11)):
        out = tb.expected[index[name]]
        assert out.reason is None and len(out.messages) == 1, name


# --- what is only known late: truncated frames, bad message lengths, short blocks ------------------------


def late_cases(width: int) -> list[Item]:
    by_type = samples()
    rng = random.Random(width + 100)
    m = [by_type[t][0] for t in "APDSIRUE"]
    good = packet(m[:4])
    first_block = len(packet([]))  # frame position of the first block's length
    cases = {
        "cut_in_first_message": good[: first_block + 2 + 5],
        "cut_in_second_length": good[: first_block + 2 + len(m[0]) + 1],
        "cut_at_block_boundary": good[: first_block + 2 + len(m[0]) + 2 + len(m[1])],
        "count_too_high": packet([], payload=mold_payload(m[:3], 5)),
        "count_too_high_empty": packet([], payload=mold_payload([], 2)),
        "count_too_low": packet([], payload=mold_payload(m[:3], 2)),
        "length_zero": packet([], payload=mold_payload(m[:1], 3, raw_blocks=blocks(m[:1]) + bytes(2) + blocks(m[1:2]))),
        "length_too_long": packet(
            [], payload=mold_payload(m[:1], 2, raw_blocks=blocks(m[:1]) + (51).to_bytes(2, "big") + bytes(51))
        ),
        "past_the_payload": packet([], payload=mold_payload(m[:2], 2, raw_blocks=blocks(m[:2])[:-3])),
        "lone_byte_after_blocks": packet([], payload=mold_payload(m[:2], 3, raw_blocks=blocks(m[:2]) + b"\x00")),
        "payload_cut_by_padding": with_ip(good, total_length=net.IPV4.unpack(good, 14).total_length - 1)[:-1],
    }
    items = [Item(frame, name=name) for name, frame in cases.items()]
    # The UDP length has to follow the IPv4 total length for the last case to reach the framer.
    items[-1].frame = with_udp(items[-1].frame, length=net.UDP.unpack(good, 34).length - 1)
    # Keep broken after acceptance: in the middle of the messages, and on the last beat.
    lanes = width // 8
    long_packet = packet(m[:3])
    beat_count = -(-len(long_packet) // lanes)
    items.append(Item(long_packet, bad_keep=(beat_count - 3, 0), name="keep_broken_mid_payload"))
    items.append(Item(long_packet, bad_keep=(beat_count - 1, 0), name="keep_empty_last_beat"))
    if lanes > 2:
        items.append(Item(long_packet, bad_keep=(beat_count - 1, 0b101), name="keep_gap_last_beat"))
    items.append(Item(long_packet + bytes(3 * lanes), bad_keep=(beat_count + 1, 0), name="keep_in_padding"))
    # Blocks shorter than a beat: several end in one beat (held beats), at every alignment.
    short = [bytes([ord("S")]) + bytes(rng.randrange(256) for _ in range(n)) for n in range(7)]
    for shift in range(3):
        items.append(Item(packet(short[shift:] + short[:shift] + m[:1]), name=f"short_blocks_{shift}"))
    # Sequence numbers carrying across 32 bits; a packet with more blocks than a byte counts.
    items.append(Item(packet(m[:5], (1 << 32) - 2), name="sequence_carry"))
    if lanes > 1:
        tiny = [bytes([ord("S"), n & 0xFF]) for n in range(300)]
        items.append(Item(packet(tiny, (1 << 48) - 150), name="many_blocks"))
    # Something to show the line recovered.
    items.append(Item(packet(m[:2]), name="valid"))
    for item in items:
        item.frame = bytes(item.frame)
    return items


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("width", WIDTHS)
def test_truncated_and_bad_lengths(width, flow):
    items = late_cases(width)
    tb = run(width, items, flow, seed=width + 7, line_rate=False)
    outcomes = {item.name: out for item, out in zip(items, tb.expected)}
    for name in ("cut_in_first_message", "cut_in_second_length", "count_too_high", "count_too_high_empty"):
        assert outcomes[name].strobes["truncated"] == 1, name
    for name in ("count_too_low", "length_zero", "length_too_long", "past_the_payload", "lone_byte_after_blocks"):
        assert outcomes[name].strobes["bad_message_length"] == 1, name
    assert outcomes["cut_at_block_boundary"].strobes["truncated"] == 1
    assert len(outcomes["cut_at_block_boundary"].messages) == 2
    assert outcomes["keep_broken_mid_payload"].strobes["truncated"] == 1
    assert outcomes["keep_in_padding"].strobes["truncated"] == 0
    assert len(outcomes["keep_in_padding"].messages) == 3
    assert outcomes["payload_cut_by_padding"].strobes["bad_message_length"] == 1
    if flow == "full_rate" and width == 64:
        assert tb.stalls > 0  # the held beats of the short blocks


# --- a real feed capture ------------------------------------------------------------------------------------


def capture_items(tmp_path, messages: int) -> tuple[list[Item], list[tuple[int, bytes]]]:
    """Line A's frames of a generated feed capture, and its messages decoded in software."""
    itch_path, pcap_path = tmp_path / "market.itch", tmp_path / "feed.pcap"
    market.write_itch(itch_path, 20, messages, seed=11)
    # Long packet spans: full packets, as in a busy market (and fewer header bytes to simulate).
    feed.write_feed_pcap(itch_path, pcap_path, packet_span_ns=10**14, heartbeat_interval_ns=3 * 3600 * 10**9)
    group = net.ipv4_address(LINE_A.group)
    items, decoded = [], []
    for _, frame in iter_pcap(pcap_path):
        parsed = net.parse_udp_frame(frame)
        if parsed.ip.destination != group:
            continue
        items.append(Item(frame))
        mold = moldudp64.decode_packet(parsed.payload)
        decoded += [(mold.sequence_number + i, m) for i, m in enumerate(mold.messages)]
    return items, decoded


@pytest.mark.parametrize(
    ("width", "flow", "messages"),
    [
        (64, "full_rate", 2000),
        (64, "idle_and_backpressure", 400),
        (32, "full_rate", 600),
        (32, "idle_and_backpressure", 150),
        (8, "full_rate", 120),
        (8, "idle_and_backpressure", 40),
    ],
)
def test_feed_capture(tmp_path, width, flow, messages):
    items, decoded = capture_items(tmp_path, messages)
    tb = run(width, items, flow, seed=5)
    assert [(s, m) for s, m, *_ in tb.messages] == decoded
    assert decoded[0][0] == 1 and len(decoded) == messages
    kinds = Counter(name for _, name in tb.strobes)
    assert kinds["frame_seen"] == kinds["packet_accepted"] == len(items)
    assert kinds["end_of_session"] == 1


# --- the netlist --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_converts_to_verilog(width):
    assert "module feed_line" in verilog.convert(FeedLine(width, line=1), name="feed_line")
