"""DPDK receive into numpy batches (wirebook.driver.dpdk): 64-byte frames from net_pcap, packets per second.

Target: at least 4M packets/s from a capture file. Run: .venv/bin/python bench/bench_dpdk.py
The frames are 64 bytes as captured (a UDP frame with 22 payload bytes, no FCS). Rows: the capture read
from its file by the PMD (libpcap per frame), and the same frames replayed from memory by the PMD
(infinite_rx), which leaves mostly the binding's own cost: burst, copy into the slots, free.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import DATA, record

FRAME_LENGTH = 64
PAYLOAD = FRAME_LENGTH - 42  # Ethernet 14 + IPv4 20 + UDP 8


def capture(frames: int) -> Path:
    """A pcap of `frames` 64-byte feed frames, made once and reused."""
    from wirebook.proto import net
    from wirebook.proto.pcap import PcapWriter

    path = DATA / f"dpdk-{frames}x{FRAME_LENGTH}.pcap"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        flow = net.UdpFlow("02:00:00:00:00:01", None, "10.0.0.1", "233.54.12.1", 40000, 26477)
        tmp = path.with_suffix(".tmp")
        with PcapWriter(tmp) as writer:
            for i in range(frames):
                writer.write(
                    1_700_000_000_000_000_000 + i * 1000, flow.frame(i.to_bytes(8, "big") * 2 + b"\0" * 6, i & 0xFFFF)
                )
        tmp.rename(path)
    return path


def drain(device: str, batch: int, stop_after: int | None) -> tuple[float, int, int]:
    """Open the port, receive until the capture ends (or `stop_after` frames); (seconds, frames, calls)."""
    from wirebook.driver.dpdk import DpdkPort

    with DpdkPort(device, batch=batch, slot_size=FRAME_LENGTH * 2) as port:
        received = calls = 0
        limit = stop_after or sys.maxsize
        start = time.perf_counter()
        while received < limit:
            _, lengths = port.receive(min(batch, limit - received))
            calls += 1
            if len(lengths) == 0:
                break
            received += len(lengths)
        seconds = time.perf_counter() - start
        stats = port.stats()
        assert stats.imissed == stats.ierrors == stats.rx_nombuf == stats.truncated == 0, stats
        assert stats.ipackets == received and stats.ibytes == received * FRAME_LENGTH, (stats, received)
    return seconds, received, calls


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=2_000_000, help="frames in the capture file")
    p.add_argument("--replay-frames", type=int, default=4096, help="frames in the capture replayed from memory")
    p.add_argument("--batches", type=int, nargs="+", default=[64, 512], help="frames per receive() call at most")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()

    from wirebook.driver.dpdk import Eal

    file_path, replay_path = capture(args.frames), capture(args.replay_frames)
    Eal.init()
    runs = {
        "net_pcap rx_pcap (libpcap reads the file)": (f"net_pcap0,rx_pcap={file_path}", None),
        f"net_pcap infinite_rx ({args.replay_frames} frames replayed from memory)": (
            f"net_pcap0,rx_pcap={replay_path},infinite_rx=1",
            args.frames,
        ),
    }
    rows, file_rates = [], []
    for label, (device, stop_after) in runs.items():
        for batch in args.batches:
            best = None
            for _ in range(args.repeat):
                seconds, received, calls = drain(device, batch, stop_after)
                assert received == args.frames, (label, received)
                best = min(best or (seconds, calls), (seconds, calls))
            seconds, calls = best
            if stop_after is None:
                file_rates.append(received / seconds)
            rows.append([label, f"{received:,}", str(batch), f"{seconds:.3f}", f"{received / seconds / 1e6:.2f} M",
                         f"{seconds / calls * 1e6:.1f}"])  # fmt: skip
    met = "met" if min(file_rates) >= 4e6 else "NOT met"
    print(
        record(
            "dpdk",
            f"DPDK receive into numpy batches: {args.frames:,} frames of {FRAME_LENGTH} bytes from net_pcap",
            ".venv/bin/python bench/bench_dpdk.py",
            ["source", "frames", "batch", "seconds", "packets/s", "µs per receive()"],
            rows,
            notes=f"Best of {args.repeat} runs, timing only the receive loop (the port is opened before), the "
            "capture in the page cache; EAL arguments --no-huge --no-pci --no-shconf, PMD and receive loop on one "
            "core. Each frame is "
            "copied into a 128-byte slot of a preallocated uint8 [batch, slot] array with its length, and its "
            "mbuf freed, in C; no Python per frame. Target: at least 4M packets/s from the capture file, every "
            "batch size: "
            f"{met}.",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
