"""The per-line front end of the card: Ethernet frames of one feed line in, MoldUDP64 messages out."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..proto import moldudp64
from ..proto.registers import DROP_REASONS
from .mold.framer import SESSION_BITS, MessageFramer, MoldHeaderParser, session_const
from .net.ethernet import EthernetParser
from .net.header import CHECK, BeatTracker
from .net.ipv4 import GROUP, Ipv4Parser
from .net.udp import UdpParser
from .stream import MESSAGE, frame_signature

__all__ = ["GROUP", "DropReason", "FeedLine", "session_const"]


class DropReason(enum.Enum, shape=unsigned(4)):
    """Why a frame was dropped whole, in the order the checks are made (the first failing one counts).

    Generated from the register map's DROP_REASONS (one counter per reason), where each is explained."""

    _ignore_ = ("_value", "_name")
    for _value, _name in enumerate(DROP_REASONS):
        vars()[_name] = _value


class FeedLine(wiring.Component):
    """Ethernet frames of one feed line in, one MoldUDP64 message a transfer out.

    Accepts on `frames` Ethernet frames without FCS (hdl.stream.frame_layout, 8, 32 or 64 bits). Emits on
    `messages` every message of every accepted packet: byte 0 the ITCH type letter, bytes past `length`
    zero, `sequence` = the MoldUDP64 header's sequence number + the message's index in the packet, `line`
    = the constructor's `line` (0 A, 1 B).

    Configuration (plain inputs; the top drives them from CSRs): `enable`, `local_mac` (48-bit integer:
    01:02:03:04:05:06 is 0x010203040506), `accept_multicast` (also accept 01:00:5e:0xxxxx), `groups`
    (GROUP entries: valid, IPv4 address as an integer, UDP port), `session` (`session_const("NAME")`: the
    10-byte ALPHA, first character in the lowest byte) and `check_session`. `enable` is sampled at a
    frame's first beat, the rest when the check reading it is decided.

    Parsing. The frame is parsed in place as it passes, never realigned: Ethernet at byte 0, IPv4 at 14
    (18 behind one 802.1Q tag), UDP at IPv4 + IHL*4, the MoldUDP64 header right after it, one stage per
    layer (hdl.net.ethernet, .ipv4, .udp, hdl.mold.framer), each reading its header through hdl.fields
    from the proto field table. Where a header starts is registered (the IPv4 header is captured from a
    fixed window at 14 and placed by the ethertype; the UDP and MoldUDP64 headers and the first block
    follow registered positions, settled beats before the bytes they place), so no stage waits on the
    one in front of it within a cycle. Each header check is decided in the beat that brings the last byte
    it reads; all of them are decided by the beat holding the MoldUDP64 header's last byte, before any
    message byte can leave.

    Drop policy:

    - Whole-packet drops. A packet that fails a header check emits nothing. `drop` strobes at its last
      beat with `drop_reason` the first failing check in DropReason order: BAD_FRAMING if any beat broke
      the keep rules (a beat other than the last not full; a last beat empty or not contiguous from lane
      0); DISABLED if `enable` was low; then the header checks, walked in order as in proto.net: MAC,
      ETHERTYPE, IP_HEADER (version 4, IHL >= 5, total length >= IHL*4 + 8), IP_CHECKSUM (all IHL*4
      bytes, options included), IP_FRAGMENT (more-fragments or an offset), IP_PROTOCOL (17),
      IP_DESTINATION (a valid `groups` entry's address), UDP_PORT (that entry's port), UDP_LENGTH (equal
      to total length - IHL*4, and at least 8 + 20 for the MoldUDP64 header), MOLD_SESSION (with
      `check_session`), MOLD_LENGTH (a heartbeat or end of session with bytes after its header). A frame
      that ends before the bytes of the next check in the walk is BAD_FRAMING there (a runt: an ARP
      frame is ETHERTYPE however short, an IPv4 frame cut inside its headers BAD_FRAMING).
    - Acceptance. A packet passing every check is accepted with the beat holding the MoldUDP64 header's
      last byte (unless a beat so far broke the keep rules): `packet_accepted` strobes, with `heartbeat`
      (count 0) or `end_of_session` (count 0xFFFF); its messages flow. Bytes past the IPv4 total length
      (Ethernet padding) are ignored.
    - Late faults cannot un-send complete messages; each packet strobes at most one of these and the rest
      of its frame is ignored. `truncated`: the frame ends before the UDP payload does, the payload holds
      fewer blocks than the count, or a beat breaks the keep rules after acceptance (the partial message,
      and anything from the bad beat on, is discarded). `bad_message_length`: a block length of 0 or more
      than MESSAGE_BYTES, a block (or its length field) running past the UDP payload, or payload left
      after the counted blocks.
    - `frame_seen` strobes once per frame, at its last beat; every frame counts once, as `drop` or as
      `packet_accepted`. Every strobe is one registered 1-cycle pulse per event, the cycle after the beat
      that decided it.

    Latency: `messages.valid` rises 1 cycle after the beat holding the message's last byte is taken, at
    8, 32 and 64 bits alike (measured for every message by tests/hdl/test_feed_line.py): the output
    register is loaded straight from that beat's lanes. Throughput: one beat a cycle at every width for
    any ITCH message mix while `messages.ready` is high (`frames.ready` stays high, frames may follow one
    another without idle cycles). When `messages` back-pressures, `frames.ready` drops while an accepted
    packet's beat waits for the output register, and nothing is lost. A beat that ends k > 1 messages
    (messages of at most data_width/8 - 3 bytes: never ITCH) is held k - 1 cycles, one message leaving
    each. `frames.ready` depends combinationally on `messages.ready`, and for such beats on
    `frames.payload`.
    """

    def __init__(self, data_width: int, *, line: int, n_groups: int = 8) -> None:
        if line not in (0, 1):
            raise ValueError(f"line must be 0 (A) or 1 (B), got {line}")
        if n_groups < 1:
            raise ValueError(f"n_groups must be at least 1, got {n_groups}")
        self.data_width = data_width
        self.line = line
        self.n_groups = n_groups
        super().__init__(
            {
                "frames": In(frame_signature(data_width)),
                "messages": Out(stream.Signature(MESSAGE)),
                "enable": In(1),
                "local_mac": In(48),
                "accept_multicast": In(1),
                "groups": In(data.ArrayLayout(GROUP, n_groups)),
                "session": In(SESSION_BITS),
                "check_session": In(1),
                "frame_seen": Out(1),
                "drop": Out(1),
                "drop_reason": Out(DropReason),
                "packet_accepted": Out(1),
                "heartbeat": Out(1),
                "end_of_session": Out(1),
                "truncated": Out(1),
                "bad_message_length": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        width = self.data_width
        frames = self.frames

        m.submodules.tracker = tracker = BeatTracker(width)
        m.submodules.ethernet = ethernet = EthernetParser(width)
        m.submodules.ipv4 = ipv4 = Ipv4Parser(width, self.n_groups)
        m.submodules.udp = udp = UdpParser(width, self.n_groups, min_payload=moldudp64.HEADER_LENGTH)
        m.submodules.mold = mold = MoldHeaderParser(width)
        m.submodules.framer = framer = MessageFramer(width, line=self.line)
        tap = tracker.tap

        take = frames.valid & frames.ready
        m.d.comb += [
            tracker.beat.eq(frames.payload),
            tracker.valid.eq(frames.valid),
            tracker.take.eq(take),
            frames.ready.eq(framer.ready),
            ethernet.tap.eq(tap),
            ethernet.local_mac.eq(self.local_mac),
            ethernet.accept_multicast.eq(self.accept_multicast),
            ipv4.tap.eq(tap),
            ipv4.tagged.eq(ethernet.tagged),
            ipv4.groups.eq(self.groups),
            udp.tap.eq(tap),
            udp.start.eq(ipv4.payload_start),
            udp.ip_payload_length.eq(ipv4.payload_length),
            udp.groups.eq(self.groups),
            udp.group_hits.eq(ipv4.group_hits),
            mold.tap.eq(tap),
            mold.start.eq(udp.payload_start),
            mold.payload_length.eq(udp.payload_length),
            mold.session.eq(self.session),
            mold.check_session.eq(self.check_session),
            framer.tap.eq(tap),
            framer.first_block.eq(mold.first_block),
            framer.payload_end.eq(ipv4.payload_end),
            framer.blocks.eq(mold.blocks),
            framer.first_sequence.eq(mold.first_sequence),
        ]
        wiring.connect(m, wiring.flipped(self.messages), framer.messages)

        # Per-frame verdict state, cleared by the frame's last beat.
        enabled = Signal()  # `enable` as sampled at the first beat
        keep_broken = Signal()  # an earlier beat broke the keep rules
        accepted = Signal()
        failed = Signal()
        failed_reason = Signal(DropReason)

        enabled_now = Signal()
        m.d.comb += enabled_now.eq(Mux(tap.first, self.enable, enabled))
        disabled_check = Signal(CHECK)
        m.d.comb += [disabled_check.resolved.eq(1), disabled_check.failed.eq(~enabled_now)]
        checks = (
            (DropReason.DISABLED, disabled_check),
            (DropReason.MAC, ethernet.mac_check),
            (DropReason.ETHERTYPE, ethernet.ethertype_check),
            (DropReason.IP_HEADER, ipv4.header_check),
            (DropReason.IP_CHECKSUM, ipv4.checksum_check),
            (DropReason.IP_FRAGMENT, ipv4.fragment_check),
            (DropReason.IP_PROTOCOL, ipv4.protocol_check),
            (DropReason.IP_DESTINATION, ipv4.destination_check),
            (DropReason.UDP_PORT, udp.port_check),
            (DropReason.UDP_LENGTH, udp.length_check),
            (DropReason.MOLD_SESSION, mold.session_check),
            (DropReason.MOLD_LENGTH, mold.count_check),
        )
        # Walk the checks in order over the headers seen so far (the offered beat included): the first
        # failing check decides, an unresolved one stops the walk (its bytes have not arrived yet).
        failing = Signal()
        failing_reason = Signal(DropReason)
        passed = 1
        for reason, check in checks:
            with m.If(passed & check.resolved & check.failed):
                m.d.comb += [failing.eq(1), failing_reason.eq(reason)]
            passed = passed & check.resolved & ~check.failed
        keep_broken_now = keep_broken | tap.bad_keep
        accepting = ~accepted & ~failed & passed & ~keep_broken_now
        m.d.comb += framer.active.eq(accepted | accepting)

        m.d.sync += [
            self.frame_seen.eq(0),
            self.drop.eq(0),
            self.packet_accepted.eq(0),
            self.heartbeat.eq(0),
            self.end_of_session.eq(0),
        ]
        m.d.sync += [self.truncated.eq(framer.truncated), self.bad_message_length.eq(framer.bad_length)]
        with m.If(take):
            with m.If(tap.first):
                m.d.sync += enabled.eq(self.enable)
            with m.If(tap.bad_keep):
                m.d.sync += keep_broken.eq(1)
            with m.If(~accepted & ~failed & failing):
                m.d.sync += [failed.eq(1), failed_reason.eq(failing_reason)]
            with m.If(accepting):
                m.d.sync += [
                    accepted.eq(1),
                    self.packet_accepted.eq(1),
                    self.heartbeat.eq(mold.heartbeat),
                    self.end_of_session.eq(mold.end_of_session),
                ]
            with m.If(tap.last):
                m.d.sync += [self.frame_seen.eq(1), enabled.eq(0), keep_broken.eq(0), accepted.eq(0), failed.eq(0)]
                with m.If(~accepted & ~accepting):
                    m.d.sync += self.drop.eq(1)
                    with m.If(keep_broken_now):
                        m.d.sync += self.drop_reason.eq(DropReason.BAD_FRAMING)
                    with m.Elif(failed):
                        m.d.sync += self.drop_reason.eq(failed_reason)
                    with m.Elif(failing):
                        m.d.sync += self.drop_reason.eq(failing_reason)
                    with m.Else():  # the frame ended before a header a check needs
                        m.d.sync += self.drop_reason.eq(DropReason.BAD_FRAMING)
        return m
