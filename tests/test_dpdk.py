"""DPDK binding (wirebook.driver.dpdk): net_pcap receive and transmit, net_ring round trip, net_af_packet on
a veth pair into a network namespace, and the errors for what is missing.

DPDK's EAL initialises once per process, so every scenario runs in a child process: this file is also the
runner (`python tests/test_dpdk.py SCENARIO JSON_ARGS`), printing its result as JSON on its last line.
Frames are UDP frames built with proto/net.py; captures are written and read with proto/pcap.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FEED = dict(source_mac="02:00:00:00:00:01", destination_mac=None, source_ip="10.0.0.1",
            destination_ip="233.54.12.1", source_port=40000, destination_port=26477)  # fmt: skip
T0 = 1_700_000_000_123_456_789  # ns since the epoch


def feed_frames(payload_lengths: list[int]) -> list[bytes]:
    from wirebook.proto import net

    flow = net.UdpFlow(**FEED)
    return [flow.frame(bytes((i + k) % 251 for k in range(n)), identification=i) for i, n in enumerate(payload_lengths)]


# Every frame length from the bare headers (42 bytes) to a few cache lines, a full 1514-byte frame, and
# (pcap only) jumbo frames that the PMD chains over several mbufs.
SMALL = list(range(0, 100))
STANDARD = [*SMALL, 1472, 1471, 5]
JUMBO = [*STANDARD, 8958, 4000, 9]


# --- the child side -----------------------------------------------------------------------------------


def attempt(action: Callable[[], Any]) -> dict[str, Any]:
    try:
        action()
    except Exception as e:
        return {"error": type(e).__name__, "message": str(e)}
    return {"error": None}


def stats(port: Any) -> dict[str, int]:
    import dataclasses

    return dataclasses.asdict(port.stats())


def receive_all(port: Any, want: int = 0, seconds: float = 0.0) -> dict[str, Any]:
    """Receive until a call comes back empty (and `want` frames are in, or `seconds` are over)."""
    from wirebook.driver.dpdk import slots_to_frames

    frames, lengths, timestamps, batches = [], [], [], []
    deadline = time.monotonic() + seconds
    while True:
        rows, lens, stamps = port.receive_timestamped()
        if len(lens) == 0:
            if len(frames) >= want or time.monotonic() > deadline:
                break
            time.sleep(0.001)
            continue
        batches.append(len(lens))
        frames += [f.hex() for f in slots_to_frames(rows, lens)]
        lengths += lens.tolist()
        timestamps += stamps.tolist()
    return {"frames": frames, "lengths": lengths, "timestamps": timestamps, "batches": batches}


def scenario_pcap_receive(pcap: str, batch: int, slot_size: int) -> dict[str, Any]:
    from wirebook.driver.dpdk import DpdkPort

    with DpdkPort(f"net_pcap0,rx_pcap={pcap}", batch=batch, slot_size=slot_size) as port:
        got = receive_all(port)
        return {**got, "has_rx_timestamps": port.has_rx_timestamps, "stats": stats(port)}


def scenario_transmit(device: str, frames: list[str], loop_back: bool) -> dict[str, Any]:
    from wirebook.driver.dpdk import DpdkPort, frames_to_slots

    with DpdkPort(device, batch=64) as port:
        slots, lengths = frames_to_slots([bytes.fromhex(f) for f in frames])
        half = len(frames) // 2  # two calls: order must hold across them too
        sent = port.send(slots[:half], lengths[:half]) + port.send(slots[half:], lengths[half:])
        got = receive_all(port) if loop_back else {}
        return {"sent": sent, **got, "stats": stats(port)}


def scenario_af_packet(iface: str, namespace: str, peer: str, frames: list[str]) -> dict[str, Any]:
    from wirebook.driver.dpdk import DpdkPort

    with DpdkPort(f"net_af_packet0,iface={iface}") as port:
        # the port is up before the first frame leaves the namespace
        sender = (
            "import json, socket, sys\n"
            "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
            "s.bind((sys.argv[1], 0))\n"
            "for frame in json.load(sys.stdin):\n"
            "    s.send(bytes.fromhex(frame))\n"
        )
        subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", sender, peer],
                       input=json.dumps(frames), text=True, check=True, timeout=30)  # fmt: skip
        got = receive_all(port, want=len(frames), seconds=10)
        return {**got, "stats": stats(port)}


def scenario_open(device: str) -> dict[str, Any]:
    from wirebook.driver.dpdk import DpdkPort

    return attempt(lambda: DpdkPort(device).close())


def scenario_init_twice(first: list[str], second: list[str]) -> dict[str, Any]:
    from wirebook.driver.dpdk import Eal

    return {
        "first": attempt(lambda: Eal.init(first)),
        "again": attempt(lambda: Eal.init(first)),
        "other": attempt(lambda: Eal.init(second)),
    }


def scenario_misuse() -> dict[str, Any]:
    import numpy as np

    from wirebook.driver.dpdk import DpdkPort, frames_to_slots, slots_to_frames

    port = DpdkPort("net_ring0", batch=8, slot_size=128)
    slots = np.zeros((2, 128), np.uint8)
    read_only = np.zeros((2, 128), np.uint8)
    read_only.flags.writeable = False
    outcomes = {
        "max_frames_over_batch": attempt(lambda: port.receive(9)),
        "empty_frame": attempt(lambda: port.send(slots, [60, 0])),
        "frame_over_slot": attempt(lambda: port.send(slots, [60, 129])),
        "lengths_shape": attempt(lambda: port.send(slots, [60])),
        "foreign_layout": attempt(lambda: port.receive_into(slots.astype(np.uint16), np.zeros(2, np.uint32))),
        "other_args_same_name": attempt(lambda: DpdkPort("net_ring0,nodeaction=r1:0:CREATE")),
        "read_only": attempt(lambda: port.receive_into(read_only, np.zeros(2, np.uint32))),
    }
    # the caller's arrays, two rows at a time
    frames = feed_frames([10, 20, 30])
    rows, lengths, stamps = np.zeros((2, 128), np.uint8), np.zeros(2, np.uint32), np.zeros(2, np.uint64)
    outcomes["sent"] = port.send(*frames_to_slots(frames, 128))
    outcomes["received_into"] = []
    for _ in range(3):
        n = port.receive_into(rows, lengths, stamps)
        outcomes["received_into"] += [f.hex() for f in slots_to_frames(rows[:n], lengths[:n])]
    port.close()
    outcomes["closed"] = attempt(lambda: port.receive())
    outcomes["reopen"] = attempt(lambda: DpdkPort("net_ring0").close())
    return outcomes


def scenario_load() -> dict[str, Any]:
    from wirebook.driver.dpdk import build

    return {"module": build.load().__file__}


SCENARIOS = {name[len("scenario_") :]: f for name, f in dict(globals()).items() if name.startswith("scenario_")}


# --- the parent side ----------------------------------------------------------------------------------


def run(scenario: str, env: dict[str, str] | None = None, **args: Any) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, scenario, json.dumps(args)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )  # fmt: skip
    assert done.returncode == 0, f"scenario {scenario} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_pcap(path: Path, frames: list[bytes]) -> list[int]:
    from wirebook.proto.pcap import PcapWriter

    stamps = [T0 + i * 1_234_567 for i in range(len(frames))]
    with PcapWriter(path) as writer:
        for stamp, frame in zip(stamps, frames):
            writer.write(stamp, frame)
    return stamps


@pytest.mark.parametrize(("batch", "slot_size"), [(512, 9216), (7, 256)], ids=["whole-frames", "truncating"])
def test_pcap_receive_matches_the_capture(tmp_path: Path, batch: int, slot_size: int) -> None:
    from wirebook.proto.pcap import iter_pcap

    pcap = tmp_path / "feed.pcap"
    write_pcap(pcap, feed_frames(JUMBO))
    expected = list(iter_pcap(pcap))  # what the capture holds, as the project's reader sees it
    got = run("pcap_receive", pcap=str(pcap), batch=batch, slot_size=slot_size)

    assert got["lengths"] == [len(f) for _, f in expected]
    assert [bytes.fromhex(f) for f in got["frames"]] == [f[:slot_size] for _, f in expected]
    assert got["has_rx_timestamps"]
    assert got["timestamps"] == [t // 1000 for t, _ in expected]  # net_pcap: microseconds since the epoch
    assert max(got["batches"]) <= batch
    assert got["stats"]["ipackets"] == len(expected)
    assert got["stats"]["truncated"] == sum(len(f) > slot_size for _, f in expected)
    assert got["stats"]["imissed"] == got["stats"]["ierrors"] == got["stats"]["rx_nombuf"] == 0


def test_pcap_transmit_writes_the_frames_in_order(tmp_path: Path) -> None:
    from wirebook.proto.pcap import iter_pcap

    frames = feed_frames(STANDARD)
    out = tmp_path / "out.pcap"
    got = run("transmit", device=f"net_pcap0,tx_pcap={out}", frames=[f.hex() for f in frames], loop_back=False)
    assert got["sent"] == len(frames)
    assert [f for _, f in iter_pcap(out)] == frames
    assert got["stats"]["opackets"] == len(frames)


def test_ring_round_trip() -> None:
    frames = feed_frames(STANDARD)
    got = run("transmit", device="net_ring0", frames=[f.hex() for f in frames], loop_back=True)
    assert got["sent"] == len(frames)
    assert [bytes.fromhex(f) for f in got["frames"]] == frames
    assert got["lengths"] == [len(f) for f in frames]
    assert got["timestamps"] == [0] * len(frames)  # net_ring stamps nothing


@pytest.fixture
def veth_into_namespace() -> Any:
    """(our end, namespace, its end): a veth pair whose far end is in a namespace made for this test."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns) to make a network namespace")
    tag = f"wbd{os.getpid() % 100000}"
    namespace, ours, theirs = f"{tag}ns", f"{tag}a", f"{tag}b"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    ip("netns", "add", namespace)
    try:
        ip("link", "add", ours, "type", "veth", "peer", "name", theirs, "netns", namespace)
        # no IPv6 router solicitations or MLD reports mixed into the test's frames
        ip("netns", "exec", namespace, "sysctl", "-qw", f"net.ipv6.conf.{theirs}.disable_ipv6=1")
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{ours}.disable_ipv6=1"], check=True, capture_output=True)
        ip("link", "set", ours, "up")
        ip("-n", namespace, "link", "set", theirs, "up")
        yield ours, namespace, theirs
    finally:
        subprocess.run(["ip", "link", "del", ours], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


def test_af_packet_receives_from_a_namespace(veth_into_namespace: tuple[str, str, str]) -> None:
    from wirebook.proto import net

    ours, namespace, theirs = veth_into_namespace
    frames = feed_frames(STANDARD)
    got = run("af_packet", iface=ours, namespace=namespace, peer=theirs, frames=[f.hex() for f in frames])

    def ours_only(frame: bytes) -> bool:
        try:
            return net.parse_udp_frame(frame).udp.destination_port == FEED["destination_port"]
        except ValueError:
            return False

    received = [bytes.fromhex(f) for f in got["frames"]]
    assert [f for f in received if ours_only(f)] == frames
    assert got["stats"]["imissed"] == 0


def test_missing_pmd_is_named_with_its_package() -> None:
    got = run("open", device="net_nosuchpmd0")
    assert got["error"] == "DpdkMissingError", got
    assert "no poll-mode driver for vdev 'net_nosuchpmd0'" in got["message"]
    assert "apt-get install librte-net-nosuchpmd" in got["message"]
    assert "net_pcap" in got["message"]  # what is installed instead


def test_missing_pmd_in_eal_arguments_fails_init_and_any_retry() -> None:
    got = run("init_twice", first=["--no-huge", "--no-pci", "--no-shconf", "--vdev=net_nosuchpmd0"],
              second=["--no-huge", "--no-pci", "--no-shconf"])  # fmt: skip
    assert got["first"]["error"] == "DpdkMissingError", got
    assert "librte_net_nosuchpmd" in got["first"]["message"]
    assert got["again"]["error"] == got["other"]["error"] == "DpdkError"
    assert "failed to initialise earlier" in got["other"]["message"]


def test_vdev_arguments_refused_quote_dpdk(tmp_path: Path) -> None:
    got = run("open", device=f"net_pcap0,rx_pcap={tmp_path / 'absent.pcap'}")
    assert got["error"] == "DpdkError", got
    assert "could not create vdev 'net_pcap0" in got["message"]
    assert "absent.pcap: No such file or directory" in got["message"]  # from DPDK's log


def test_second_init_with_other_arguments_is_refused() -> None:
    args = ["--no-huge", "--no-pci", "--no-shconf"]
    got = run("init_twice", first=args, second=[*args, "--vdev=net_ring0"])
    assert got["first"] == got["again"] == {"error": None}
    assert got["other"]["error"] == "DpdkError"
    assert "already initialised" in got["other"]["message"] and "--vdev=net_ring0" in got["other"]["message"]


def test_misuse_is_refused_with_the_reason() -> None:
    got = run("misuse")
    assert "not in 0..8" in got["max_frames_over_batch"]["message"]
    assert "frame 1 has length 0" in got["empty_frame"]["message"]
    assert "frame 1 has length 129" in got["frame_over_slot"]["message"]
    assert "lengths has shape (1,)" in got["lengths_shape"]["message"]
    assert "C-contiguous uint8" in got["foreign_layout"]["message"]
    assert "frames is read-only" in got["read_only"]["message"]
    assert "already exists as 'net_ring0'" in got["other_args_same_name"]["message"]
    assert got["closed"] == {"error": "DpdkError", "message": "DPDK port net_ring0 is closed"}
    assert got["reopen"] == {"error": None}  # a hotplugged vdev is removed on close, its name free again
    assert got["sent"] == 3
    assert [bytes.fromhex(f) for f in got["received_into"]] == feed_frames([10, 20, 30])


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


def test_missing_dpdk_is_named_with_its_package(tmp_path: Path) -> None:
    # a cache without the shim, so it has to be built, and a pkg-config that finds no libdpdk
    env = {**os.environ, "WIREBOOK_DPDK_CACHE": str(tmp_path / "cache"), "PKG_CONFIG_LIBDIR": str(tmp_path)}
    got = run("open", env=without(env, "PKG_CONFIG_PATH"), device="net_ring0")
    assert got["error"] == "DpdkMissingError", got
    assert "pkg-config finds no libdpdk" in got["message"] and "apt-get install libdpdk-dev" in got["message"]


def test_missing_build_tools_are_named_with_their_packages(tmp_path: Path) -> None:
    env = {**os.environ, "WIREBOOK_DPDK_CACHE": str(tmp_path / "cache"), "PATH": str(tmp_path / "bin")}
    (tmp_path / "bin").mkdir()
    got = run("open", env=env, device="net_ring0")
    assert got["error"] == "DpdkMissingError" and "apt-get install pkg-config" in got["message"], got

    pkg_config = shutil.which("pkg-config")
    assert pkg_config is not None
    (tmp_path / "bin" / "pkg-config").symlink_to(pkg_config)
    got = run("open", env=env, device="net_ring0")
    assert got["error"] == "DpdkMissingError" and "apt-get install gcc" in got["message"], got


def test_hugepages_asked_for_but_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wirebook.driver.dpdk import DpdkMissingError, Eal, port

    sizes = tmp_path / "hugepages"
    (sizes / "hugepages-2048kB").mkdir(parents=True)
    (sizes / "hugepages-2048kB" / "nr_hugepages").write_text("0\n")
    monkeypatch.setattr(port, "HUGEPAGES", sizes)
    with pytest.raises(DpdkMissingError, match=r"no hugepages are reserved.*nr_hugepages.*or pass --no-huge"):
        Eal.init(["--no-pci"])  # refused before DPDK starts: this process's EAL stays untouched

    (sizes / "hugepages-2048kB" / "nr_hugepages").write_text("512\n")
    mounts = tmp_path / "mounts"
    mounts.write_text("proc /proc proc rw 0 0\n")
    monkeypatch.setattr(port, "MOUNTS", mounts)
    with pytest.raises(DpdkMissingError, match=r"no hugetlbfs is mounted.*mount -t hugetlbfs"):
        Eal.init(["--no-pci"])
    assert Eal.args() is None


def test_concurrent_first_uses_build_once(tmp_path: Path) -> None:
    env = {**os.environ, "WIREBOOK_DPDK_CACHE": str(tmp_path)}
    command = [sys.executable, __file__, "load", "{}"]
    children = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]  # fmt: skip
    results = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], results
    modules = {json.loads(out.strip().splitlines()[-1])["module"] for out, _ in results}
    assert len(modules) == 1
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert [p.name for p in folder.iterdir()] == [Path(next(iter(modules))).name]  # no build leftovers


if __name__ == "__main__":
    result = SCENARIOS[sys.argv[1]](**json.loads(sys.argv[2]))
    print(json.dumps(result))
