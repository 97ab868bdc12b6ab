"""Latency of the card in clock cycles, from the bench's beat-level timing log.

For each message the arrival is the cycle the beat holding its last byte was taken on whichever line
brought it first; a record's latency is the cycle it left the core minus the arrival of the message that
caused it (its `sequence`). Per cause type: min / median / max over every record of that type.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..proto import itch, moldudp64, net, pcap


def frames_by_line(pcap_path, groups: list[dict]) -> list[list[tuple[int, bytes]]]:
    """The pcap's (time, frame) pairs split by destination: line i gets the frames sent to groups[i]'s
    address and port; other frames are left out."""
    by_flow = {(net.ipv4_address(g["address"]), g["port"]): i for i, g in enumerate(groups)}
    lines: list[list[tuple[int, bytes]]] = [[] for _ in groups]
    for time_ns, frame in pcap.iter_pcap(pcap_path):
        parsed = net.parse_udp_frame(frame)
        line = by_flow.get((parsed.ip.destination, parsed.udp.destination_port))
        if line is not None:
            lines[line].append((time_ns, frame))
    return lines


def message_ends(frame: bytes) -> list[tuple[int, int]]:
    """(sequence, byte offset of the message's last byte in the frame) of every message of a feed frame."""
    _eth, at = net.parse_ethernet(frame)
    _ip, header_length = net.parse_ipv4(frame, at)
    at += header_length + net.UDP.length
    header = moldudp64.HEADER.unpack(frame, at)
    if header.message_count in (moldudp64.HEARTBEAT_COUNT, moldudp64.END_OF_SESSION_COUNT):
        return []
    at += moldudp64.HEADER_LENGTH
    out = []
    for k in range(header.message_count):
        length = int.from_bytes(frame[at : at + 2], "big")
        at += 2 + length
        out.append((header.sequence_number + k, at - 1))
    return out


def arrivals(lines: list[list[bytes]], beats: list[tuple[int, int, int]], data_width: int) -> dict[int, int]:
    """Sequence -> cycle its last byte entered the core (earliest line)."""
    lanes = data_width // 8
    cycles_by_line: list[list[int]] = [[] for _ in lines]
    for cycle, line, _last in beats:
        cycles_by_line[line].append(cycle)
    first: dict[int, int] = {}
    for line, frames in enumerate(lines):
        cycles = cycles_by_line[line]
        beat = 0
        for frame in frames:
            for sequence, end in message_ends(frame):
                at = cycles[beat + end // lanes]
                if sequence not in first or at < first[sequence]:
                    first[sequence] = at
            beat += -(-len(frame) // lanes)
        if beat != len(cycles):
            raise ValueError(f"line {line}: the log has {len(cycles)} beats, the frames make {beat}")
    return first


def latency_by_type(records: np.ndarray, record_cycles: list[int], first: dict[int, int]) -> dict[str, dict]:
    """Cause type -> {count, min, median, max} of record latency in cycles."""
    if len(records) != len(record_cycles):
        raise ValueError(f"{len(records)} records but {len(record_cycles)} record cycles in the log")
    samples: dict[str, list[int]] = defaultdict(list)
    for record, cycle in zip(records, record_cycles):
        samples[record["cause"].decode()].append(cycle - first[int(record["sequence"])])
    out = {}
    for letter in itch.TYPES:
        if letter in samples:
            s = np.array(samples[letter])
            out[letter] = {"count": len(s), "min": int(s.min()), "median": float(np.median(s)), "max": int(s.max())}
    return out
