"""Shared fixtures: captures built with scapy, decoded by tshark as an independent reference."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CLIENT = ("127.0.0.1", 40001)
SERVER = ("127.0.0.2", 15001)


@dataclass
class Layer:
    """One protocol layer of one PDU as tshark dissected it (from PDML): title and fields in tree order."""

    protocol: str
    title: str
    position: int
    fields: list[dict[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[dict[str, str]]:
        return [f for f in self.fields if f["name"] == name]

    def get(self, name: str) -> dict[str, str]:
        found = self.all(name)
        assert len(found) == 1, f"tshark {self.title!r}: {len(found)} fields {name!r}"
        return found[0]

    def raw(self, name: str) -> bytes:
        """The bytes tshark attributes to the field."""
        return bytes.fromhex(self.get(name)["value"])


def _run_tshark(pcap: Path, decode_as: str) -> list[Layer]:
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", decode_as, "-T", "pdml"], capture_output=True, check=True, timeout=120
    ).stdout
    layers = []
    for packet in ET.fromstring(out).iter("packet"):
        for proto in packet.iter("proto"):
            layer = Layer(proto.get("name", ""), proto.get("showname", ""), int(proto.get("pos", "0")))
            layer.fields = [dict(f.attrib) for f in proto.iter("field")]
            layers.append(layer)
    return layers


@pytest.fixture
def tshark() -> Callable[[Path, str], list[Layer]]:
    """tshark(pcap, "tcp.port==N,soupbintcp") -> every protocol layer of every PDU, in capture order."""
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed: `make test` installs it (apt-get install tshark)")
    return _run_tshark


@pytest.fixture
def tcp_capture() -> Callable[..., int]:
    """tcp_capture(path, writes, segment=None) -> server port: one TCP connection written as a pcap.

    `writes` is a time-ordered list of ("client" | "server", bytes); each write is sent as TCP segments of at
    most `segment` bytes (all at once when None), so PDUs can straddle segments and share them.
    """
    from scapy.all import IP, TCP, Ether, wrpcap

    def write(path: Path, writes: Iterable[tuple[str, bytes]], segment: int | None = None) -> int:
        seq = {"client": 1000, "server": 50000}
        ends = {"client": (CLIENT, SERVER), "server": (SERVER, CLIENT)}
        peer = {"client": "server", "server": "client"}

        def frame(side: str, flags: str, payload: bytes = b"") -> Ether:
            (src, sport), (dst, dport) = ends[side]
            tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq[side], ack=seq[peer[side]])
            return Ether() / IP(src=src, dst=dst) / tcp / payload

        frames = [frame("client", "S")]
        seq["client"] += 1  # SYN and SYN-ACK each take one sequence number
        frames.append(frame("server", "SA"))
        seq["server"] += 1
        frames.append(frame("client", "A"))
        for side, data in writes:
            step = segment or len(data)
            for at in range(0, len(data), step):
                chunk = data[at : at + step]
                frames.append(frame(side, "PA", chunk))
                seq[side] += len(chunk)
        wrpcap(str(path), frames)
        return SERVER[1]

    return write
