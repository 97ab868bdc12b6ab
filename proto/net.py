"""Ethernet II, 802.1Q, IPv4 and UDP: the headers in front of every MoldUDP64 packet, as field tables.

The tables below (`ETHERNET`, `VLAN_TAG`, `ETHERNET_VLAN`, `IPV4`, `UDP`) are the single description of these
headers: the software codec here and the gateware header parsers are both generated from them. Header bytes
that pack several sub-fields (IPv4 version/IHL, DSCP/ECN, flags/fragment offset, the VLAN TCI) are one
integer field in the table; their bit sub-fields are declared as `BitField`s in `IPV4_BITS` / `VLAN_BITS`.
MAC addresses are 6-byte and IPv4 addresses 4-byte unsigned integers, as they are on the wire.

`build_udp_frame` builds one Ethernet frame (optionally VLAN tagged, optionally with IPv4 options) with a
valid IPv4 header checksum and UDP checksum (a computed 0 is sent as 0xFFFF); `UdpFlow` prepares a flow's
headers once for many frames. Frames are not padded to the 60-byte Ethernet minimum (the MAC pads; every
MoldUDP64 frame is longer anyway) and carry no FCS, as in a libpcap capture.

Parsing runs one stage per layer (`parse_ethernet`, `parse_ipv4`, `parse_udp`); `parse_udp_frame` chains
them and accepts exactly what the gateware accepts, raising `TruncatedError` / `MalformedError` naming the
byte offset in the frame otherwise:

- ethertype IPv4 (0x0800), or one 802.1Q tag (TPID 0x8100) whose inner ethertype is IPv4;
- IPv4 version 4, IHL >= 5 (options are skipped, but covered by the checksum), total length >= the header
  and no longer than the frame (trailing bytes after it are Ethernet padding and ignored);
- header checksum valid; not a fragment (MF flag clear and fragment offset 0; the DF and reserved flags are
  not checked);
- protocol UDP (17); UDP length equal to the IPv4 payload length; UDP checksum valid unless it is 0
  (0 means "not computed" in IPv4 UDP).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import MalformedError, TruncatedError
from .fields import UINT, Layout

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = 0x8100  # 802.1Q tag protocol identifier (TPID)
IP_PROTOCOL_UDP = 17
IPV4_VERSION_4 = 4
IPV4_MIN_IHL = 5  # header length in 32-bit words without options
DEFAULT_TTL = 64

ETHERNET = Layout(
    "ethernet",
    (
        ("destination", 0, 6, UINT),
        ("source", 6, 6, UINT),
        ("ethertype", 12, 2, UINT),
    ),
    description="Ethernet II header (no FCS)",
)

VLAN_TAG = Layout(
    "vlan_tag",
    (
        ("tpid", 0, 2, UINT),
        ("tci", 2, 2, UINT),
    ),
    description="IEEE 802.1Q tag, inserted between the source MAC and the ethertype",
)

ETHERNET_VLAN = Layout(
    "ethernet_vlan",
    (
        *((f.name, f.offset, f.width, f.kind) for f in ETHERNET.fields[:2]),
        *((f.name, ETHERNET.by_name["ethertype"].offset + f.offset, f.width, f.kind) for f in VLAN_TAG.fields),
        ("ethertype", ETHERNET.by_name["ethertype"].offset + VLAN_TAG.length, 2, UINT),
    ),
    description="Ethernet II header with one 802.1Q tag; `ethertype` is the inner (payload) ethertype",
)

IPV4 = Layout(
    "ipv4",
    (
        ("version_ihl", 0, 1, UINT),
        ("dscp_ecn", 1, 1, UINT),
        ("total_length", 2, 2, UINT),
        ("identification", 4, 2, UINT),
        ("flags_fragment_offset", 6, 2, UINT),
        ("ttl", 8, 1, UINT),
        ("protocol", 9, 1, UINT),
        ("header_checksum", 10, 2, UINT),
        ("source", 12, 4, UINT),
        ("destination", 16, 4, UINT),
    ),
    description="IPv4 header without options (IHL*4 - 20 option bytes follow when IHL > 5)",
)

UDP = Layout(
    "udp",
    (
        ("source_port", 0, 2, UINT),
        ("destination_port", 2, 2, UINT),
        ("length", 4, 2, UINT),
        ("checksum", 6, 2, UINT),
    ),
    description="UDP header; length counts header and payload",
)


@dataclass(frozen=True)
class BitField:
    """A run of bits inside an integer header field: `width` bits starting `shift` bits above the LSB."""

    name: str
    shift: int
    width: int

    @property
    def mask(self) -> int:
        """The sub-field's bits in place (e.g. 0xF0 for the IPv4 version)."""
        return ((1 << self.width) - 1) << self.shift

    def get(self, value: int) -> int:
        return (value & self.mask) >> self.shift

    def put(self, sub_value: int) -> int:
        if not 0 <= sub_value < (1 << self.width):
            raise ValueError(f"{self.name}: {sub_value} does not fit {self.width} bits")
        return sub_value << self.shift


IPV4_VERSION = BitField("version", 4, 4)
IPV4_IHL = BitField("ihl", 0, 4)  # header length in 32-bit words
IPV4_DSCP = BitField("dscp", 2, 6)
IPV4_ECN = BitField("ecn", 0, 2)
IPV4_FLAG_RESERVED = BitField("reserved", 15, 1)
IPV4_FLAG_DONT_FRAGMENT = BitField("dont_fragment", 14, 1)
IPV4_FLAG_MORE_FRAGMENTS = BitField("more_fragments", 13, 1)
IPV4_FRAGMENT_OFFSET = BitField("fragment_offset", 0, 13)  # in 8-byte units
VLAN_PCP = BitField("priority", 13, 3)
VLAN_DEI = BitField("drop_eligible", 12, 1)
VLAN_VID = BitField("vlan_id", 0, 12)

IPV4_BITS: dict[str, tuple[BitField, ...]] = {
    "version_ihl": (IPV4_VERSION, IPV4_IHL),
    "dscp_ecn": (IPV4_DSCP, IPV4_ECN),
    "flags_fragment_offset": (
        IPV4_FLAG_RESERVED,
        IPV4_FLAG_DONT_FRAGMENT,
        IPV4_FLAG_MORE_FRAGMENTS,
        IPV4_FRAGMENT_OFFSET,
    ),
}
"""IPV4 field name -> its bit sub-fields, most significant first."""

VLAN_BITS: dict[str, tuple[BitField, ...]] = {"tci": (VLAN_PCP, VLAN_DEI, VLAN_VID)}
"""VLAN_TAG field name -> its bit sub-fields, most significant first."""

_IPV4_CHECKSUM = IPV4.by_name["header_checksum"]
_UDP_CHECKSUM = UDP.by_name["checksum"]

MacLike = str | int | bytes
Ipv4Like = str | int | ipaddress.IPv4Address


# --- addresses --------------------------------------------------------------------------------------


def mac_address(mac: MacLike) -> int:
    """A MAC address ("01:00:5e:00:00:01", "01-00-5e-...", 6 bytes or an int) as the 48-bit integer."""
    if isinstance(mac, int):
        value = mac
    elif isinstance(mac, bytes):
        if len(mac) != 6:
            raise ValueError(f"a MAC address is 6 bytes, got {len(mac)}")
        value = int.from_bytes(mac, "big")
    else:
        parts = mac.replace("-", ":").split(":")
        if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
            raise ValueError(f"not a MAC address: {mac!r}")
        value = int("".join(p.rjust(2, "0") for p in parts), 16)
    if not 0 <= value < 1 << 48:
        raise ValueError(f"MAC address {value:#x} does not fit 48 bits")
    return value


def format_mac(mac: int) -> str:
    """The 48-bit integer as "aa:bb:cc:dd:ee:ff"."""
    return ":".join(f"{b:02x}" for b in mac.to_bytes(6, "big"))


def ipv4_address(address: Ipv4Like) -> int:
    """An IPv4 address (dotted quad, IPv4Address or int) as the 32-bit integer."""
    return int(ipaddress.IPv4Address(address))


def format_ipv4(address: int) -> str:
    return str(ipaddress.IPv4Address(address))


_MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")
_MULTICAST_MAC_PREFIX = 0x01005E << 24  # IANA OUI 01:00:5e, next bit 0


def multicast_mac(group: Ipv4Like) -> int:
    """The Ethernet address of an IPv4 multicast group: 01:00:5e and the group's low 23 bits (RFC 1112)."""
    address = ipaddress.IPv4Address(group)
    if address not in _MULTICAST:
        raise ValueError(f"{address} is not an IPv4 multicast group (224.0.0.0/4)")
    return _MULTICAST_MAC_PREFIX | (int(address) & 0x7FFFFF)


# --- checksums --------------------------------------------------------------------------------------


def _sum16(data: bytes | bytearray | memoryview) -> int:
    """The 16-bit word sum of `data` modulo 0xFFFF (odd length: padded with a zero byte).

    2**16 == 1 modulo 0xFFFF, so the end-around-carry sum of the words is the whole buffer read as one
    big-endian integer, modulo 0xFFFF; sums of even-length pieces simply add.
    """
    return (int.from_bytes(data, "big") << (8 * (len(data) & 1))) % 0xFFFF


def ones_complement_sum(data: bytes | bytearray | memoryview) -> int:
    """The RFC 1071 16-bit ones' complement sum of `data` (0xFFFF, "negative zero", for a non-zero multiple)."""
    total = _sum16(data)
    return 0xFFFF if total == 0 and any(data) else total


def internet_checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071 checksum: the complement of the ones' complement sum."""
    return ~ones_complement_sum(data) & 0xFFFF


def _complement(total: int) -> int:
    """Checksum from a _sum16 total of data known to be non-zero (so the ones' complement sum is 1..0xFFFF)."""
    return 0xFFFF - (total % 0xFFFF or 0xFFFF)


def ipv4_header_checksum(header: bytes | bytearray | memoryview) -> int:
    """Checksum of an IPv4 header (options included); the checksum field's current value is ignored."""
    at = _IPV4_CHECKSUM.offset
    return internet_checksum(bytes(header[:at]) + b"\0\0" + bytes(header[at + 2 :]))


def _pseudo_header_sum(source: int, destination: int, udp_length: int) -> int:
    """_sum16 of the IPv4 pseudo-header: source, destination, zero, protocol, UDP length."""
    return (
        (source >> 16) + (source & 0xFFFF) + (destination >> 16) + (destination & 0xFFFF) + IP_PROTOCOL_UDP + udp_length
    )


def udp_checksum(source: Ipv4Like, destination: Ipv4Like, segment: bytes | bytearray | memoryview) -> int:
    """UDP checksum over the IPv4 pseudo-header and `segment` (UDP header + payload; its checksum field is
    ignored). A computed 0 is sent as 0xFFFF, since 0 on the wire means "no checksum"."""
    at = _UDP_CHECKSUM.offset
    total = _pseudo_header_sum(ipv4_address(source), ipv4_address(destination), len(segment))
    total += _sum16(segment[:at]) + _sum16(segment[at + 2 :])  # both pieces have even offsets
    return _complement(total) or 0xFFFF


# --- build ------------------------------------------------------------------------------------------


class UdpFlow:
    """The headers of one Ethernet / [802.1Q] / IPv4 / UDP flow, prepared once; `frame()` builds each frame.

    `destination_mac=None` derives the multicast MAC of `destination_ip`. `vlan` is the 12-bit VLAN ID
    (None: untagged). `ip_options` must be a multiple of 4 bytes (at most 40). The IPv4 header checksum is
    always computed; the UDP checksum too unless `compute_udp_checksum=False` (then it is sent as 0).
    """

    def __init__(
        self,
        source_mac: MacLike,
        destination_mac: MacLike | None,
        source_ip: Ipv4Like,
        destination_ip: Ipv4Like,
        source_port: int,
        destination_port: int,
        *,
        ttl: int = DEFAULT_TTL,
        dont_fragment: bool = False,
        dscp: int = 0,
        vlan: int | None = None,
        vlan_priority: int = 0,
        ip_options: bytes = b"",
        compute_udp_checksum: bool = True,
    ) -> None:
        if len(ip_options) % 4 or len(ip_options) > 40:
            raise ValueError(f"IPv4 options must be a multiple of 4 bytes, at most 40; got {len(ip_options)}")
        if destination_mac is None:
            destination_mac = multicast_mac(destination_ip)
        self.source_ip, self.destination_ip = ipv4_address(source_ip), ipv4_address(destination_ip)
        self.source_port, self.destination_port = source_port, destination_port
        if vlan is None:
            self._eth = ETHERNET.pack(
                destination=mac_address(destination_mac), source=mac_address(source_mac), ethertype=ETHERTYPE_IPV4
            )
        else:
            self._eth = ETHERNET_VLAN.pack(
                destination=mac_address(destination_mac),
                source=mac_address(source_mac),
                tpid=ETHERTYPE_VLAN,
                tci=VLAN_PCP.put(vlan_priority) | VLAN_VID.put(vlan),
                ethertype=ETHERTYPE_IPV4,
            )
        self._ip_options = bytes(ip_options)
        self._ip_header_length = IPV4.length + len(ip_options)
        self._ip: dict[str, Any] = {
            "version_ihl": IPV4_VERSION.put(IPV4_VERSION_4) | IPV4_IHL.put(self._ip_header_length // 4),
            "dscp_ecn": IPV4_DSCP.put(dscp),
            "flags_fragment_offset": IPV4_FLAG_DONT_FRAGMENT.put(int(dont_fragment)),
            "ttl": ttl,
            "protocol": IP_PROTOCOL_UDP,
            "header_checksum": 0,
            "source": self.source_ip,
            "destination": self.destination_ip,
        }
        UDP.pack(source_port=source_port, destination_port=destination_port, length=0, checksum=0)  # range check
        self._checksum = compute_udp_checksum
        # The UDP checksum's constant part: pseudo-header addresses and protocol, and the two ports; the UDP
        # length appears twice (pseudo-header and UDP header) and is added per frame.
        self._udp_sum = _pseudo_header_sum(self.source_ip, self.destination_ip, 0) + source_port + destination_port

    def frame(self, payload: bytes | bytearray | memoryview, identification: int = 0) -> bytes:
        """One frame carrying `payload`, with IPv4 identification `identification`."""
        udp_length = UDP.length + len(payload)
        total_length = self._ip_header_length + udp_length
        if total_length > 0xFFFF:
            raise ValueError(f"UDP payload of {len(payload)} bytes does not fit one IPv4 packet")
        ip = bytearray(IPV4.pack(self._ip, total_length=total_length, identification=identification))
        ip += self._ip_options
        at = _IPV4_CHECKSUM.offset
        ip[at : at + 2] = _complement(_sum16(ip)).to_bytes(2, "big")
        checksum = (_complement(self._udp_sum + 2 * udp_length + _sum16(payload)) or 0xFFFF) if self._checksum else 0
        udp = UDP.pack(
            source_port=self.source_port, destination_port=self.destination_port, length=udp_length, checksum=checksum
        )
        return b"".join((self._eth, ip, udp, payload))


def build_udp_frame(
    source_mac: MacLike,
    destination_mac: MacLike | None,
    source_ip: Ipv4Like,
    destination_ip: Ipv4Like,
    source_port: int,
    destination_port: int,
    payload: bytes | bytearray | memoryview,
    *,
    ttl: int = DEFAULT_TTL,
    identification: int = 0,
    dont_fragment: bool = False,
    dscp: int = 0,
    vlan: int | None = None,
    vlan_priority: int = 0,
    ip_options: bytes = b"",
    compute_udp_checksum: bool = True,
) -> bytes:
    """One Ethernet II / [802.1Q] / IPv4 / UDP frame carrying `payload`; the options are UdpFlow's. For many
    frames of one flow, make the UdpFlow once."""
    flow = UdpFlow(
        source_mac,
        destination_mac,
        source_ip,
        destination_ip,
        source_port,
        destination_port,
        ttl=ttl,
        dont_fragment=dont_fragment,
        dscp=dscp,
        vlan=vlan,
        vlan_priority=vlan_priority,
        ip_options=ip_options,
        compute_udp_checksum=compute_udp_checksum,
    )
    return flow.frame(payload, identification)


# --- parse ------------------------------------------------------------------------------------------


class UdpFrame(NamedTuple):
    """A parsed frame. `eth` is an ETHERNET record, or an ETHERNET_VLAN record (with `tpid`, `tci`) when
    tagged; `ip` an IPV4 record (options are not kept), `udp` a UDP record."""

    eth: Any
    ip: Any
    udp: Any
    payload: bytes


def _at(layout: Layout, name: str) -> int:
    return layout.by_name[name].offset


def parse_ethernet(frame: bytes | bytearray | memoryview) -> tuple[Any, int]:
    """MAC stage: the Ethernet header (the VLAN tag followed if present) and the offset of its payload.

    Only checks that the header is complete; the caller checks `eth.ethertype`.
    """
    eth = ETHERNET.unpack(frame)
    if eth.ethertype != ETHERTYPE_VLAN:
        return eth, ETHERNET.length
    return ETHERNET_VLAN.unpack(frame), ETHERNET_VLAN.length


def parse_ipv4(frame: bytes | bytearray | memoryview, offset: int) -> tuple[Any, int]:
    """IPv4 stage: the header at `offset` and its length in bytes (options included), fully checked:
    version, IHL, total length against the frame, checksum, not a fragment. The protocol is not checked."""
    ip = IPV4.unpack(frame, offset)
    version, ihl = IPV4_VERSION.get(ip.version_ihl), IPV4_IHL.get(ip.version_ihl)
    if version != IPV4_VERSION_4:
        raise MalformedError("IPv4 version", offset, f"version {IPV4_VERSION_4}", str(version))
    if ihl < IPV4_MIN_IHL:
        raise MalformedError("IPv4 IHL", offset, f"header length >= {IPV4_MIN_IHL} words", str(ihl))
    header_length = 4 * ihl
    available = len(frame) - offset
    if header_length > available:
        raise TruncatedError(
            "IPv4 options",
            offset + IPV4.length,
            f"{header_length - IPV4.length} option bytes (IHL {ihl})",
            f"{available - IPV4.length} bytes left",
        )
    at = offset + _at(IPV4, "total_length")
    if ip.total_length < header_length:
        raise MalformedError("IPv4 total length", at, f">= the {header_length}-byte header", str(ip.total_length))
    if ip.total_length > available:
        raise TruncatedError(
            "IPv4 packet", at, f"{ip.total_length} bytes (total length)", f"{available} bytes in the frame"
        )
    header = frame[offset : offset + header_length]
    if _sum16(header) != 0:  # a valid header sums to 0xFFFF, i.e. 0 modulo 0xFFFF
        raise MalformedError(
            "IPv4 header checksum",
            offset + _IPV4_CHECKSUM.offset,
            f"{ipv4_header_checksum(header):#06x}",
            f"{ip.header_checksum:#06x}",
        )
    flags = ip.flags_fragment_offset
    if IPV4_FLAG_MORE_FRAGMENTS.get(flags) or IPV4_FRAGMENT_OFFSET.get(flags):
        raise MalformedError(
            "IPv4 fragment",
            offset + _at(IPV4, "flags_fragment_offset"),
            "an unfragmented datagram (MF clear, fragment offset 0)",
            f"flags/fragment offset {flags:#06x}",
        )
    return ip, header_length


def parse_udp(frame: bytes | bytearray | memoryview, offset: int, end: int, ip: Any) -> tuple[Any, bytes]:
    """UDP stage: the header at `offset` of the IPv4 payload `frame[offset:end]` and the UDP payload; checks
    the UDP length against the IPv4 payload and, when not 0, the checksum (pseudo-header from `ip`)."""
    if end - offset < UDP.length:
        raise TruncatedError("UDP header", offset, f"{UDP.length} bytes", f"{end - offset} bytes of IPv4 payload")
    udp = UDP.unpack(frame, offset)
    if udp.length != end - offset:
        raise MalformedError(
            "UDP length", offset + _at(UDP, "length"), f"{end - offset} (IPv4 payload length)", str(udp.length)
        )
    segment = frame[offset:end]
    if udp.checksum and (_pseudo_header_sum(ip.source, ip.destination, udp.length) + _sum16(segment)) % 0xFFFF:
        raise MalformedError(
            "UDP checksum",
            offset + _UDP_CHECKSUM.offset,
            f"{udp_checksum(ip.source, ip.destination, segment):#06x} (or 0)",
            f"{udp.checksum:#06x}",
        )
    return udp, bytes(frame[offset + UDP.length : end])


def parse_udp_frame(frame: bytes | bytearray | memoryview) -> UdpFrame:
    """Parse and check an Ethernet / IPv4 / UDP frame; raise a WireError naming the frame offset otherwise."""
    eth, l3 = parse_ethernet(frame)
    if eth.ethertype != ETHERTYPE_IPV4:
        expected = f"ethertype {ETHERTYPE_IPV4:#06x} (IPv4)"
        if l3 == ETHERNET.length:
            expected += f" or {ETHERTYPE_VLAN:#06x} (802.1Q)"
        raise MalformedError("Ethernet ethertype", l3 - 2, expected, f"{eth.ethertype:#06x}")
    ip, header_length = parse_ipv4(frame, l3)
    if ip.protocol != IP_PROTOCOL_UDP:
        raise MalformedError("IPv4 protocol", l3 + _at(IPV4, "protocol"), f"{IP_PROTOCOL_UDP} (UDP)", str(ip.protocol))
    udp, payload = parse_udp(frame, l3 + header_length, l3 + ip.total_length, ip)
    return UdpFrame(eth, ip, udp, payload)
