"""Look-aside feed input: the feed the host receives, pushed to the card as frames, through a kernel socket
(SocketFeed) or a DPDK port (DpdkFeed, here net_pcap replaying a capture of the feed). The card is the
`sim` backend (the gateware in Verilator); expected records come from the golden model's replay.

DPDK's EAL initialises once per process, so the DPDK case runs in a child process: this file is also its
runner (`python tests/driver/test_feed_input.py dpdk JSON_ARGS`), printing JSON on its last line.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SESSION = "FEEDIN0001"
GROUP = ("233.54.12.111", 26477)


def day(messages: int = 3000) -> list[bytes]:
    from wirebook.sim import market

    return list(market.generate(5, messages, 31))


def packets(messages: list[bytes]) -> list[bytes]:
    from wirebook.proto import moldudp64

    return [p for _, p in moldudp64.packetize(SESSION, 1, messages, max_payload=700)]


def setup(groups: list[str]) -> Any:
    from wirebook.driver.card import CardSetup

    return CardSetup(groups=groups, session=SESSION)


def golden(frames: list[bytes], groups: list[str]) -> tuple[int, str]:
    from wirebook.driver.model_card import ModelCard
    from wirebook.proto import bbo

    model = ModelCard()
    model.configure(setup(groups))
    model.push_frames(frames)
    digest = bbo.Digest()
    digest.update(model.poll())
    return digest.count, digest.hexdigest()


def dpdk_side(pcap: str, expected: int) -> dict[str, Any]:
    from wirebook.driver.card import open_card
    from wirebook.driver.dpdk import DpdkPort
    from wirebook.driver.feed_input import DpdkFeed
    from wirebook.proto import bbo

    card = open_card("sim", setup([f"{GROUP[0]}:{GROUP[1]}"]))
    feed = DpdkFeed(DpdkPort(f"net_pcap0,rx_pcap={pcap}"))
    digest = bbo.Digest()
    quiet = 0
    while digest.count < expected and quiet < 200:
        n = feed.receive(card)
        got = card.poll()
        digest.update(got)
        quiet = 0 if n or len(got) else quiet + 1
    feed.close()
    card.close()
    return {"count": digest.count, "sha256": digest.hexdigest(), "frames": feed.frames, "truncated": feed.truncated}


def test_dpdk_feed_from_a_capture_to_the_sim_card(tmp_path):
    from wirebook.proto import net
    from wirebook.proto.pcap import PcapWriter

    flow = net.UdpFlow("02:00:00:00:00:01", None, "192.0.2.10", GROUP[0], 26400, GROUP[1])
    frames = [flow.frame(p) for p in packets(day())]
    pcap = tmp_path / "feed.pcap"
    with PcapWriter(pcap) as writer:
        for i, frame in enumerate(frames):
            writer.write(1_700_000_000_000_000_000 + i * 1000, frame)
    count, sha256 = golden(frames, [f"{GROUP[0]}:{GROUP[1]}"])
    done = subprocess.run([sys.executable, __file__, "dpdk", json.dumps({"pcap": str(pcap), "expected": count})],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert (got["count"], got["sha256"], got["frames"], got["truncated"]) == (count, sha256, len(frames), 0)


def test_socket_feed_on_loopback_to_the_sim_card():
    from wirebook.driver.card import open_card
    from wirebook.driver.feed_input import SocketFeed
    from wirebook.proto import bbo, net

    feed = SocketFeed("127.0.0.1", 0)
    card = open_card("sim", setup([feed.destination]))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sent = packets(day())
        sender.bind(("127.0.0.1", 0))
        source = sender.getsockname()
        # What the card should see: the frames SocketFeed rebuilds (the socket's own address as destination).
        flow = net.UdpFlow(0x02_00_00_00_00_00 | net.ipv4_address(source[0]), "02:57:42:00:00:02", source[0],
                           "127.0.0.1", source[1], feed.port)  # fmt: skip
        count, sha256 = golden([flow.frame(p) for p in sent], [feed.destination])
        digest = bbo.Digest()
        for at in range(0, len(sent), 32):
            for p in sent[at : at + 32]:
                sender.sendto(p, ("127.0.0.1", feed.port))
            feed.receive(card)
            digest.update(card.poll())
        deadline = time.monotonic() + 10
        while digest.count < count and time.monotonic() < deadline:
            feed.receive(card)
            digest.update(card.poll())
        assert (digest.count, digest.hexdigest()) == (count, sha256)
        assert feed.frames == len(sent)
    finally:
        sender.close()
        feed.close()
        card.close()


if __name__ == "__main__":
    if sys.argv[1] != "dpdk":
        raise SystemExit(f"unknown scenario {sys.argv[1]!r}")
    print(json.dumps(dpdk_side(**json.loads(sys.argv[2]))))
