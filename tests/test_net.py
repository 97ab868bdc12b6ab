"""wirebook.proto.net: header field tables, checksums against scapy, and every refusal of parse_udp_frame."""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import IP, UDP, IPOption_Router_Alert
from scapy.layers.l2 import Dot1Q, Ether, getmacbyip
from scapy.packet import Padding, Raw
from scapy.utils import checksum as scapy_checksum

from wirebook.proto import net
from wirebook.proto.errors import MalformedError, TruncatedError

SRC_MAC, SRC_IP, DST_IP = "02:57:42:00:00:01", "192.0.2.10", "233.54.12.111"
SRC_PORT, DST_PORT = 26400, 26477


def scapy_frame(payload: bytes, *, vlan=None, prio=0, ttl=64, ident=0, df=False, options=False, dst_mac=None):
    eth = Ether(src=SRC_MAC, dst=dst_mac or getmacbyip(DST_IP))
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan, prio=prio)
    ip = IP(src=SRC_IP, dst=DST_IP, ttl=ttl, id=ident, flags="DF" if df else 0)
    if options:
        ip.options = [IPOption_Router_Alert()]
    return bytes(eth / ip / UDP(sport=SRC_PORT, dport=DST_PORT) / Raw(payload))


# --- field tables -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "length"), [(net.ETHERNET, 14), (net.VLAN_TAG, 4), (net.ETHERNET_VLAN, 18), (net.IPV4, 20), (net.UDP, 8)]
)
def test_layout_round_trip(layout, length):
    assert layout.length == length
    rng = random.Random(layout.name)
    for _ in range(20):
        values = {f.name: rng.randrange(f.max_value + 1) for f in layout.value_fields}
        raw = layout.pack(values)
        assert len(raw) == length
        assert layout.unpack(raw)._asdict() == values
        assert layout.unpack(b"pad" + raw, 3)._asdict() == values


def test_vlan_header_is_ethernet_with_the_tag_inserted():
    names = [(f.name, f.offset, f.width) for f in net.ETHERNET_VLAN.fields]
    assert names == [
        ("destination", 0, 6),
        ("source", 6, 6),
        ("tpid", 12, 2),
        ("tci", 14, 2),
        ("ethertype", 16, 2),
    ]


@pytest.mark.parametrize(
    ("layout", "bits"), [(net.IPV4, net.IPV4_BITS), (net.VLAN_TAG, net.VLAN_BITS)], ids=["ipv4", "vlan"]
)
def test_bit_fields_tile_their_field(layout, bits):
    for name, subfields in bits.items():
        width = 8 * layout.by_name[name].width
        masks = [b.mask for b in subfields]
        assert sum(masks) == (1 << width) - 1, name  # cover every bit ...
        for a in range(len(masks)):
            for b in range(a + 1, len(masks)):
                assert masks[a] & masks[b] == 0, name  # ... exactly once
        assert masks == sorted(masks, reverse=True), name  # listed most significant first


def test_bit_field_get_put():
    assert net.IPV4_VERSION.mask == 0xF0 and net.IPV4_IHL.mask == 0x0F
    assert net.IPV4_FLAG_MORE_FRAGMENTS.mask == 0x2000 and net.IPV4_FRAGMENT_OFFSET.mask == 0x1FFF
    assert net.VLAN_VID.mask == 0x0FFF and net.VLAN_PCP.mask == 0xE000
    value = net.IPV4_VERSION.put(4) | net.IPV4_IHL.put(5)
    assert value == 0x45 and net.IPV4_VERSION.get(value) == 4 and net.IPV4_IHL.get(value) == 5
    with pytest.raises(ValueError):
        net.IPV4_IHL.put(16)


# --- addresses and checksums --------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["224.0.0.1", "233.54.12.111", "233.49.196.111", "239.255.255.250", "238.128.1.2"])
def test_multicast_mac_matches_scapy(group):
    assert net.format_mac(net.multicast_mac(group)) == getmacbyip(group)


def test_multicast_mac_refuses_unicast():
    with pytest.raises(ValueError, match="multicast"):
        net.multicast_mac("192.0.2.1")


def test_mac_address_forms():
    value = 0x01005E360C6F
    assert net.mac_address("01:00:5e:36:0c:6f") == value
    assert net.mac_address("01-00-5E-36-0C-6F") == value
    assert net.mac_address(value.to_bytes(6, "big")) == value
    assert net.format_mac(value) == "01:00:5e:36:0c:6f"
    with pytest.raises(ValueError):
        net.mac_address("01:00:5e:36:0c")


def test_internet_checksum_matches_scapy():
    rng = random.Random(1)
    for n in [*range(12), 19, 20, 1399, 1400]:
        data = rng.randbytes(n)
        assert net.internet_checksum(data) == scapy_checksum(data), n
    assert net.internet_checksum(b"\xff\xff") == 0  # the sum is negative zero, not zero
    assert net.internet_checksum(b"\0\0\0") == 0xFFFF


# --- building, compared byte for byte with scapy --------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 2, 7, 20, 57, 1000, 1399, 1400])
@pytest.mark.parametrize("vlan", [None, 100])
def test_build_matches_scapy(size, vlan):
    payload = random.Random(size).randbytes(size)
    ours = net.build_udp_frame(
        SRC_MAC, None, SRC_IP, DST_IP, SRC_PORT, DST_PORT, payload, ttl=31, identification=size, vlan=vlan
    )
    assert ours == scapy_frame(payload, vlan=vlan, ttl=31, ident=size)


def test_build_options_priority_df_match_scapy():
    payload = b"options and priority"
    ours = net.build_udp_frame(
        SRC_MAC,
        "01:00:5e:00:00:fb",
        SRC_IP,
        DST_IP,
        SRC_PORT,
        DST_PORT,
        payload,
        identification=0xBEEF,
        dont_fragment=True,
        vlan=4095,
        vlan_priority=5,
        ip_options=bytes(IPOption_Router_Alert()),
    )
    expected = scapy_frame(payload, vlan=4095, prio=5, ident=0xBEEF, df=True, options=True, dst_mac="01:00:5e:00:00:fb")
    assert ours == expected


def test_udp_checksum_zero_is_sent_as_ffff_like_scapy():
    # Choose the last two payload bytes so that the computed checksum is 0: it must go out as 0xFFFF.
    head = b"make the checksum zero"
    probe = net.parse_udp_frame(net.build_udp_frame(SRC_MAC, None, SRC_IP, DST_IP, SRC_PORT, DST_PORT, head + b"\0\0"))
    payload = head + probe.udp.checksum.to_bytes(2, "big")
    ours = net.build_udp_frame(SRC_MAC, None, SRC_IP, DST_IP, SRC_PORT, DST_PORT, payload)
    assert net.parse_udp_frame(ours).udp.checksum == 0xFFFF
    assert ours == scapy_frame(payload)


def test_udp_flow_reuses_headers():
    flow = net.UdpFlow(SRC_MAC, None, SRC_IP, DST_IP, SRC_PORT, DST_PORT)
    for ident, payload in enumerate([b"", b"a", b"bb" * 300]):
        assert flow.frame(payload, ident) == scapy_frame(payload, ident=ident)


def test_build_refuses_bad_options_and_oversize():
    with pytest.raises(ValueError, match="options"):
        net.build_udp_frame(SRC_MAC, None, SRC_IP, DST_IP, 1, 2, b"", ip_options=b"\x01\x01")
    with pytest.raises(ValueError, match="does not fit"):
        net.build_udp_frame(SRC_MAC, None, SRC_IP, DST_IP, 1, 2, bytes(65536 - 28))


# --- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("vlan", [None, 7])
@pytest.mark.parametrize("options", [False, True])
def test_parse_scapy_frames(vlan, options):
    payload = b"MoldUDP64 would be here"
    frame = scapy_frame(payload, vlan=vlan, prio=2, ttl=17, ident=99, df=True, options=options)
    eth, ip, udp, body = net.parse_udp_frame(frame)
    assert body == payload
    assert net.format_mac(eth.destination) == getmacbyip(DST_IP) and net.format_mac(eth.source) == SRC_MAC
    assert eth.ethertype == net.ETHERTYPE_IPV4
    if vlan is not None:
        assert eth.tpid == net.ETHERTYPE_VLAN
        assert net.VLAN_VID.get(eth.tci) == vlan and net.VLAN_PCP.get(eth.tci) == 2
    assert net.IPV4_IHL.get(ip.version_ihl) == (6 if options else 5)
    assert (ip.ttl, ip.identification, net.format_ipv4(ip.source), net.format_ipv4(ip.destination)) == (
        17,
        99,
        SRC_IP,
        DST_IP,
    )
    assert net.IPV4_FLAG_DONT_FRAGMENT.get(ip.flags_fragment_offset) == 1
    assert (udp.source_port, udp.destination_port, udp.length) == (SRC_PORT, DST_PORT, 8 + len(payload))


def test_parse_ignores_ethernet_padding_and_accepts_no_udp_checksum():
    frame = bytes(
        Ether(src=SRC_MAC) / IP(src=SRC_IP, dst=DST_IP) / UDP(sport=1, dport=2, chksum=0) / b"x" / Padding(bytes(17))
    )
    assert len(frame) == 60
    frame_ = net.parse_udp_frame(frame)
    assert frame_.payload == b"x" and frame_.udp.checksum == 0


class Frame:
    """A good frame's headers as field values, re-packed with the mutations a case asks for."""

    def __init__(self, *, vlan: int | None = None, options: bytes = b"") -> None:
        good = net.parse_udp_frame(
            net.build_udp_frame(
                SRC_MAC, None, SRC_IP, DST_IP, SRC_PORT, DST_PORT, b"payload!", vlan=vlan, ip_options=options
            )
        )
        self.eth_layout = net.ETHERNET if vlan is None else net.ETHERNET_VLAN
        self.eth = good.eth._asdict()
        self.ip = good.ip._asdict()
        self.udp = good.udp._asdict()
        self.options = options
        self.payload = good.payload
        self.l3 = self.eth_layout.length
        self.l4 = self.l3 + net.IPV4.length + len(options)

    def bytes(self, *, ip_checksum: int | None = None, udp_checksum: int | None = None, cut: int = 0) -> bytes:
        ip_header = net.IPV4.pack(self.ip) + self.options
        self.ip["header_checksum"] = net.ipv4_header_checksum(ip_header) if ip_checksum is None else ip_checksum
        segment = net.UDP.pack(self.udp) + self.payload
        if udp_checksum is None:
            udp_checksum = net.udp_checksum(self.ip["source"], self.ip["destination"], segment)
        self.udp["checksum"] = udp_checksum
        out = self.eth_layout.pack(self.eth) + net.IPV4.pack(self.ip) + self.options + net.UDP.pack(self.udp)
        out += self.payload
        return out[: len(out) - cut]


def refused(frame: bytes, error: type, offset: int) -> None:
    with pytest.raises(error) as info:
        net.parse_udp_frame(frame)
    assert type(info.value) is error, info.value
    assert info.value.offset == offset, info.value


VARIANTS = [
    pytest.param(None, b"", id="plain"),
    pytest.param(12, b"", id="vlan"),
    pytest.param(None, bytes(IPOption_Router_Alert()) * 2, id="options"),
]


@pytest.mark.parametrize(("vlan", "options"), VARIANTS)
def test_good_frame_parses(vlan, options):
    assert net.parse_udp_frame(Frame(vlan=vlan, options=options).bytes()).payload == b"payload!"


def test_runt_frames():
    refused(bytes(13), TruncatedError, 0)
    tagged = Frame(vlan=3).bytes()
    refused(tagged[:17], TruncatedError, 0)


def test_ethertype_refused():
    f = Frame()
    f.eth["ethertype"] = 0x86DD
    refused(f.bytes(), MalformedError, 12)
    v = Frame(vlan=3)
    v.eth["ethertype"] = 0x0806
    refused(v.bytes(), MalformedError, 16)
    stacked = Frame(vlan=3)
    stacked.eth["ethertype"] = net.ETHERTYPE_VLAN  # only one tag is accepted
    refused(stacked.bytes(), MalformedError, 16)


@pytest.mark.parametrize(("vlan", "options"), VARIANTS)
def test_ipv4_refusals(vlan, options):
    l3 = Frame(vlan=vlan, options=options).l3
    ihl = 5 + len(options) // 4

    def case(**ip):
        f = Frame(vlan=vlan, options=options)
        f.ip.update(ip)
        return f

    refused(Frame(vlan=vlan, options=options).bytes()[: l3 + 19], TruncatedError, l3)
    refused(case(version_ihl=0x60 | ihl).bytes(), MalformedError, l3)  # version 6
    refused(case(version_ihl=0x44).bytes(), MalformedError, l3)  # IHL 4
    long_options = case(version_ihl=0x4F)  # 40 option bytes announced, fewer in the frame
    refused(long_options.bytes()[: l3 + 40], TruncatedError, l3 + 20)
    refused(case(total_length=4 * ihl - 1).bytes(), MalformedError, l3 + 2)
    refused(Frame(vlan=vlan, options=options).bytes(cut=1), TruncatedError, l3 + 2)
    refused(Frame(vlan=vlan, options=options).bytes(ip_checksum=0x1234), MalformedError, l3 + 10)
    refused(case(flags_fragment_offset=net.IPV4_FLAG_MORE_FRAGMENTS.mask).bytes(), MalformedError, l3 + 6)
    refused(case(flags_fragment_offset=net.IPV4_FRAGMENT_OFFSET.put(185)).bytes(), MalformedError, l3 + 6)
    refused(case(protocol=6).bytes(), MalformedError, l3 + 9)


@pytest.mark.parametrize(("vlan", "options"), VARIANTS)
def test_udp_refusals(vlan, options):
    def case():
        return Frame(vlan=vlan, options=options)

    l4 = case().l4
    short = case()
    short.ip["total_length"] = net.IPV4.length + len(options) + 4
    refused(short.bytes(), TruncatedError, l4)
    bad_length = case()
    bad_length.udp["length"] += 1
    refused(bad_length.bytes(), MalformedError, l4 + 4)
    refused(case().bytes(udp_checksum=0x4242), MalformedError, l4 + 6)
    assert net.parse_udp_frame(case().bytes(udp_checksum=0)).payload == b"payload!"  # 0: not computed


def test_errors_say_what_was_expected():
    with pytest.raises(MalformedError, match=r"IPv4 header checksum at byte offset 24: expected 0x[0-9a-f]{4}"):
        net.parse_udp_frame(Frame().bytes(ip_checksum=0x1234))
