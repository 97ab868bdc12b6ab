"""The per-line front end of the card: Ethernet frames of one feed line in, MoldUDP64 messages out."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
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
    follow registered positions, settled beats before the bytes they place), and a byte's lane is the low
    bits of its position, so no stage waits on the one in front of it within a cycle (which bytes a beat
    carries is itself a register, worked out the cycle before). Each header check is resolved by the beat
    that brings the last byte it reads and registered with it; the checks are walked in order the next
    cycle (the verdict stage, registers only). The UDP and MoldUDP64 checks are decided from that beat;
    the MAC and IPv4 ones from the registered header bytes the cycle after, so a walk sees them as of the
    beat taken before the one it walks (their headers end a beat or more before the UDP header's). All
    of them are decided by the beat holding the MoldUDP64 header's last byte, and the verdict is ready for
    the beat after it, the first that can end a message. A frame's last beat is closed the cycle after
    its walk, with every check as of that beat.

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
    - `frame_seen` strobes once per frame, for its last beat; every frame counts once, as `drop` or as
      `packet_accepted`. Every strobe is one registered 1-cycle pulse per event, 2 cycles after the beat
      that decided it is taken (`drop` with `drop_reason`, and `frame_seen`: 3 cycles after the frame's
      last beat; `truncated` / `bad_message_length`: after the framer's cycle that decided it, later for
      a beat waiting in the framer's skid), always before the next frame's strobes.

    Latency: `messages.valid` rises 1 cycle after the beat holding the message's last byte is taken, at
    8, 32 and 64 bits alike, for every ITCH message while `messages.ready` is high (measured for every
    message by tests/hdl/test_feed_line.py). Throughput: one beat a cycle at every width for any ITCH
    message mix while `messages.ready` is high (`frames.ready` stays high, frames may follow one another
    without idle cycles). `frames.ready` is a register: the framer takes each beat into a one-beat skid
    and drops `frames.ready` while it holds one, so back-pressure costs no message: a beat ending a
    message while the output register is full waits there until `messages.ready` frees it. The framer
    handles one message end and one block length a cycle: a beat holding more (blocks of at most
    data_width/8 - 1 bytes, never ITCH) waits one more cycle for each, and its messages leave one a
    cycle, the first one cycle late when its length came in the same beat (held beats of a packet
    dropped by its last header byte may cost a cycle too).
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
            framer.payload_length.eq(udp.payload_length),
            framer.blocks.eq(mold.blocks),
            framer.first_sequence.eq(mold.first_sequence),
        ]
        wiring.connect(m, wiring.flipped(self.messages), framer.messages)

        # Each check is resolved by the beat that brings its last byte and registered with that beat; the
        # walk over them runs the next cycle (the verdict stage), on registers only. The MAC and IPv4
        # checks decide `failed` from registered bytes the cycle after that beat ("late" checks): the
        # verdict stage registers them again, so each walk sees them as of the beat taken before the one
        # it walks (their headers end a beat or more before the UDP header, whose checks make `viable`).
        enabled = Signal()  # `enable` as sampled at the first beat
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
        late = {
            DropReason.MAC,
            DropReason.ETHERTYPE,
            DropReason.IP_HEADER,
            DropReason.IP_CHECKSUM,
            DropReason.IP_FRAGMENT,
            DropReason.IP_PROTOCOL,
            DropReason.IP_DESTINATION,
        }
        decided = Signal(data.ArrayLayout(CHECK, len(checks)))  # the checks as of the beat taken last cycle
        taken = Signal()  # a beat was taken last cycle: the verdict stage looks at it
        taken_last = Signal()
        taken_bad_keep = Signal()
        taken_heartbeat = Signal()
        taken_end_of_session = Signal()
        m.d.sync += taken.eq(take)
        with m.If(take):
            m.d.sync += [
                decided.eq(Cat(check for _, check in checks)),
                taken_last.eq(tap.last),
                taken_bad_keep.eq(tap.bad_keep),
                taken_heartbeat.eq(mold.heartbeat),
                taken_end_of_session.eq(mold.end_of_session),
                enabled.eq(Mux(tap.last, 0, enabled_now)),
            ]
        # The late checks as of the beat walked last (`resolved` from `decided`, `failed` read now), and
        # whether that beat is of the frame of the next beat walked (it did not end its frame).
        settled = Signal(data.ArrayLayout(CHECK, len(checks)))
        settled_current = Signal()
        with m.If(taken):
            for i, (reason, check) in enumerate(checks):
                if reason in late:
                    m.d.sync += [settled[i].resolved.eq(decided[i].resolved), settled[i].failed.eq(check.failed)]
            m.d.sync += settled_current.eq(~taken_last)

        def walk(status) -> tuple[Value, Value, Value]:
            """Walk the checks in order (status(i, reason) -> resolved, failed): the first failing one
            decides, an unresolved one stops the walk (its bytes have not arrived yet). Gives whether one
            fails and which, and whether all through UDP pass."""
            failing, failing_reason = Signal(), Signal(DropReason)
            passed = 1
            for i, (reason, _) in enumerate(checks):
                resolved, failed_check = status(i, reason)
                with m.If(passed & resolved & failed_check):
                    m.d.comb += [failing.eq(1), failing_reason.eq(reason)]
                passed = passed & resolved & ~failed_check
                if reason is DropReason.UDP_LENGTH:
                    udp_passed = passed
            return failing, failing_reason, udp_passed

        def walked(i: int, reason: DropReason) -> tuple[Value, Value]:
            if reason in late:
                return settled[i].resolved & settled_current, settled[i].failed
            return decided[i].resolved, decided[i].failed

        # Per-frame verdict state, cleared by the frame's last beat.
        keep_broken = Signal()  # an earlier beat broke the keep rules
        accepted = Signal()
        viable = Signal()  # every check decided so far passed, the UDP ones included
        failed = Signal()
        failed_reason = Signal(DropReason)
        failing, failing_reason, udp_passed = walk(walked)
        keep_broken_now = keep_broken | taken_bad_keep
        accepting = Signal()
        accepted_so_far = Signal()  # the packet of the beat taken last cycle is accepted
        # The UDP header ends two beats or more before the MoldUDP64 one: at the beat completing that, the
        # checks through UDP all passed if and only if `viable` says so (set by an earlier walk), so only
        # the MoldUDP64 ones are looked at.
        mold_passed = 1
        for i, (reason, _) in enumerate(checks):
            if reason in (DropReason.MOLD_SESSION, DropReason.MOLD_LENGTH):
                mold_passed = mold_passed & decided[i].resolved & ~decided[i].failed
        m.d.comb += [
            accepting.eq(~accepted & viable & mold_passed & ~keep_broken_now),
            accepted_so_far.eq(taken & (accepted | accepting)),
            framer.accepted.eq(Mux(taken, accepted_so_far & ~taken_last, accepted)),
            framer.last_accepted.eq(accepted_so_far),
        ]

        m.d.sync += [
            self.packet_accepted.eq(0),
            self.heartbeat.eq(0),
            self.end_of_session.eq(0),
        ]
        m.d.sync += [self.truncated.eq(framer.truncated), self.bad_message_length.eq(framer.bad_length)]
        # A frame's last beat closes it: the cycle after its walk, its drop (if any) is decided from the
        # checks as of that beat, the late ones included (registered then), and strobed the cycle after.
        closing = Signal()  # the walk last cycle was of a frame's last beat
        closing_dropped = Signal()  # ... which was not accepted
        closing_bad_keep = Signal()  # ... and broke the keep rules
        closing_failed = Signal()  # ... or failed a check by then
        closing_failed_reason = Signal(DropReason)
        closing_checks = Signal(data.ArrayLayout(CHECK, len(checks)))  # its checks (the late ones: `settled`)
        m.d.sync += closing.eq(taken & taken_last)
        with m.If(taken):
            m.d.sync += [
                closing_dropped.eq(~accepted & ~accepting),
                closing_bad_keep.eq(keep_broken_now),
                closing_failed.eq(failed | failing),
                closing_failed_reason.eq(Mux(failed, failed_reason, failing_reason)),
                closing_checks.eq(decided),
            ]
            with m.If(taken_bad_keep):
                m.d.sync += keep_broken.eq(1)
            with m.If(~accepted & ~failed & failing):
                m.d.sync += [failed.eq(1), failed_reason.eq(failing_reason)]
            with m.If(accepting):
                m.d.sync += [
                    accepted.eq(1),
                    self.packet_accepted.eq(1),
                    self.heartbeat.eq(taken_heartbeat),
                    self.end_of_session.eq(taken_end_of_session),
                ]
            with m.If(taken_last):
                m.d.sync += [keep_broken.eq(0), accepted.eq(0), failed.eq(0)]
        # `viable` for the framer is a register of its own, for the beat offered (a new frame's first beat
        # is not viable).
        viable_next = Signal()
        viable_offered = Signal()
        m.d.comb += [
            viable_next.eq(
                Mux(taken, (viable | udp_passed) & ~failed & ~failing & ~keep_broken_now & ~taken_last, viable)
            ),
            framer.viable.eq(viable_offered),
        ]
        m.d.sync += [viable.eq(viable_next), viable_offered.eq(viable_next & ~(take & tap.last))]

        def closed(i: int, reason: DropReason) -> tuple[Value, Value]:
            if reason in late:
                return settled[i].resolved, settled[i].failed
            return closing_checks[i].resolved, closing_checks[i].failed

        closing_failing, closing_reason, _ = walk(closed)
        m.d.sync += [self.frame_seen.eq(closing), self.drop.eq(closing & closing_dropped)]
        with m.If(closing & closing_dropped):
            with m.If(closing_bad_keep):
                m.d.sync += self.drop_reason.eq(DropReason.BAD_FRAMING)
            with m.Elif(closing_failed):
                m.d.sync += self.drop_reason.eq(closing_failed_reason)
            with m.Elif(closing_failing):  # a late check decided by the last beat
                m.d.sync += self.drop_reason.eq(closing_reason)
            with m.Else():  # the frame ended before a header a check needs
                m.d.sync += self.drop_reason.eq(DropReason.BAD_FRAMING)
        return m
