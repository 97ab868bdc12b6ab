"""The `net` backend across a real network path: the card model (sim/net_card.py, the gateware in Verilator)
runs in a network namespace made for the test, on the far end of a veth pair; the feed reaches it as
Ethernet frames on that interface (its raw socket is the card's feed port), and the host side talks to it
over the veth: CSR requests in UDP through the kernel, record packets received through DPDK's af_packet
PMD (kernel bypass) or through a kernel socket.

DPDK's EAL initialises once per process, so the host side runs in a child process: this file is also its
runner (`python tests/driver/test_net_card_veth.py host JSON_ARGS`), printing its result as JSON on its last
line. Expected records come from the golden model (ModelCard fed the same frames).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SESSION = "VETHCARD01"
GROUP = ("233.54.12.111", 26477)
RECORD_PORT = 22339


def feed(messages: int = 3000, symbols: int = 5, seed: int = 29) -> list[bytes]:
    from wirebook.proto import moldudp64, net
    from wirebook.sim import market

    flow = net.UdpFlow("02:00:00:00:00:01", None, "192.0.2.10", GROUP[0], 26400, GROUP[1])
    day = list(market.generate(symbols, messages, seed))
    return [flow.frame(p) for _, p in moldudp64.packetize(SESSION, 1, day, max_payload=700)]


def setup() -> Any:
    from wirebook.driver.card import CardSetup

    return CardSetup(groups=[f"{GROUP[0]}:{GROUP[1]}"], session=SESSION)


# --- the host side (child process) --------------------------------------------------------------------------


def host_side(iface: str, card_ip: str, host_ip: str, records: str, expected: int) -> dict[str, Any]:
    import socket

    from wirebook.driver.card import open_card
    from wirebook.proto import bbo

    options: dict[str, Any] = {"card": (card_ip, 22338), "local_address": host_ip, "timeout_s": 0.05}
    if records == "dpdk":
        from wirebook.driver.dpdk import DpdkPort

        port = DpdkPort(f"net_af_packet0,iface={iface}")
        options |= {"records": port, "record_port": RECORD_PORT}
    card = open_card("net", setup(), **options)
    wire = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)  # the exchange's side of the feed wire
    wire.bind((iface, 0))
    frames = feed()
    digest = bbo.Digest()
    try:
        for at in range(0, len(frames), 16):
            chunk = frames[at : at + 16]
            card.push_frames(chunk)  # the directory: subscribe before the card sees the frames
            for frame in chunk:
                wire.send(frame)
            digest.update(card.poll())
        quiet = 0
        while digest.count < expected and quiet < 500:
            got = card.poll()
            digest.update(got)
            quiet = 0 if len(got) else quiet + 1
            time.sleep(0.002)
        backend = card.backend
        return {"count": digest.count, "sha256": digest.hexdigest(), "lost": backend.records.sequence.lost,
                "gap": card.gap, "symbols": sorted(card.symbols.values()),
                "bbo_records": card.counters()["bbo_records"]}  # fmt: skip
    finally:
        card.close()
        wire.close()


# --- the test side --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden() -> tuple[int, str]:
    from wirebook.driver.model_card import ModelCard
    from wirebook.proto import bbo

    model = ModelCard()
    model.configure(setup())
    model.push_frames(feed())
    digest = bbo.Digest()
    digest.update(model.poll())
    return digest.count, digest.hexdigest()


@pytest.fixture
def card_in_namespace():
    """(host interface, card address, host address): the card model running in a namespace made for the test,
    on the far end of a veth pair."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns) to make a network namespace")
    tag = f"wbn{os.getpid() % 100000}"
    namespace, ours, theirs = f"{tag}ns", f"{tag}h", f"{tag}c"
    subnet = 10 + os.getpid() % 200
    host_ip, card_ip = f"10.77.{subnet}.1", f"10.77.{subnet}.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    ip("netns", "add", namespace)
    card = None
    try:
        ip("link", "add", ours, "type", "veth", "peer", "name", theirs, "netns", namespace)
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{ours}.disable_ipv6=1"], check=True, capture_output=True)
        ip("netns", "exec", namespace, "sysctl", "-qw", f"net.ipv6.conf.{theirs}.disable_ipv6=1")
        ip("addr", "add", f"{host_ip}/24", "dev", ours)
        ip("link", "set", ours, "up")
        ip("-n", namespace, "addr", "add", f"{card_ip}/24", "dev", theirs)
        ip("-n", namespace, "link", "set", theirs, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        card = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "wirebook.sim.net_card", "--csr",
             f"{card_ip}:22338", "--feed-interface", theirs],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        )  # fmt: skip
        line = card.stdout.readline()
        assert line.startswith("net card ready"), line
        yield ours, card_ip, host_ip
    finally:
        if card is not None:
            card.kill()
            card.wait(10)
        subprocess.run(["ip", "link", "del", ours], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


def run_host(**args: Any) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "host", json.dumps(args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, f"host side exited {done.returncode}:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("records", ["dpdk", "socket"])
def test_the_card_across_a_veth_gives_the_golden_records(card_in_namespace, golden, records):
    iface, card_ip, host_ip = card_in_namespace
    count, sha256 = golden
    got = run_host(iface=iface, card_ip=card_ip, host_ip=host_ip, records=records, expected=count)
    assert (got["count"], got["sha256"]) == (count, sha256), got
    assert got["lost"] == 0 and not got["gap"]
    assert got["bbo_records"] == count
    assert len(got["symbols"]) == 5


if __name__ == "__main__":
    scenario, arguments = sys.argv[1], json.loads(sys.argv[2])
    assert scenario == "host", scenario
    result = host_side(**arguments)
    print(json.dumps(result))
    sys.exit(0)
