"""BBO records per second delivered through the card API by each backend, and the sim card's cycles per second.

One generated market (default 20 instruments, 200,000 ITCH messages, seed 7) as MoldUDP64 frames of one
feed line; each backend is opened and configured through `open_card` and the frames are pushed in batches of
64 (`push_frames`), polling after each batch as the agent's loop does (`poll`), until every record the
golden model makes for the market has been delivered (checked: count and digest equal the model's). Time
is wall clock over the whole push-and-poll loop, so it includes each backend's whole path: the model card's
Python book; the sim card's directory scan, frame queueing, the Verilated core run from C and the record
copy; the net card's CSR link and record packets over loopback UDP to a card model (sim/net_card.py, the same
Verilated core) in another thread of this process, sharing its interpreter; the pynq card's MMIO and AXI DMA
rings through the real pynq package on a simulated Zynq (sim/pynq_device.py, the same Verilated core, its
DMA engine modelled in Python: not a board's speed).

Run: .venv/bin/python bench/bench_cards.py  (or `make bench`)
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from common import record

from wirebook.driver.card import CardSetup, open_card
from wirebook.driver.model_card import ModelCard
from wirebook.proto import bbo, moldudp64, net
from wirebook.sim import market

SESSION = "BENCHCARD1"
GROUP = ("233.54.12.111", 26477)
SETUP = CardSetup(groups=[f"{GROUP[0]}:{GROUP[1]}"], session=SESSION)
BATCH = 64


def frames_of(symbols: int, messages: int, seed: int) -> list[bytes]:
    flow = net.UdpFlow("02:00:00:00:00:01", None, "192.0.2.10", GROUP[0], 26400, GROUP[1])
    day = market.generate(symbols, messages, seed)
    return [flow.frame(p) for _, p in moldudp64.packetize(SESSION, 1, day, max_payload=1400)]


def drive(card, frames: list[bytes], expected: int, feed_card=None) -> tuple[float, bbo.Digest]:
    """Push and poll until `expected` records were delivered; (seconds, digest of what was delivered)."""
    digest = bbo.Digest()
    started = time.perf_counter()
    for at in range(0, len(frames), BATCH):
        batch = frames[at : at + BATCH]
        card.push_frames(batch)
        if feed_card is not None:
            feed_card.offer(batch)
        digest.update(card.poll())
    deadline = time.monotonic() + 120
    while digest.count < expected and time.monotonic() < deadline:
        digest.update(card.poll())
    return time.perf_counter() - started, digest


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    frames = frames_of(args.symbols, args.messages, args.seed)
    golden = ModelCard()
    golden.configure(SETUP)
    golden.push_frames(frames)
    expected = bbo.Digest()
    expected.update(golden.poll())

    rows = []

    def row(name: str, seconds: float, digest: bbo.Digest, note: str) -> None:
        if (digest.count, digest.hexdigest()) != (expected.count, expected.hexdigest()):
            raise SystemExit(f"{name}: delivered {digest.count} records, not the golden model's {expected.count}")
        rows.append([name, f"{digest.count:,}", f"{seconds:.2f}", f"{digest.count / seconds / 1e3:,.1f}",
                     f"{args.messages / seconds / 1e3:,.1f}", note])  # fmt: skip

    card = open_card("model", SETUP)
    seconds, digest = drive(card, frames, expected.count)
    row("model", seconds, digest, "golden model in Python")

    card = open_card("sim", SETUP)
    core = card.backend.core
    cycles_before = core.cycles
    seconds, digest = drive(card, frames, expected.count)
    cycles = core.cycles - cycles_before
    card.close()
    row("sim", seconds, digest, f"{cycles:,} simulated cycles: {cycles / seconds / 1e6:.2f} M cycles/s")

    from wirebook.sim.net_card import NetCardModel
    from wirebook.sim.verilated_card import VerilatedCard

    core = VerilatedCard()
    core.reset()
    model = NetCardModel(core, ("127.0.0.1", 0))
    thread = threading.Thread(target=model.run_forever, daemon=True)
    thread.start()
    card = open_card("net", SETUP, card=model.address)
    seconds, digest = drive(card, frames, expected.count, feed_card=model)
    card.close()
    model.stop()
    thread.join(5)
    model.close()
    row("net", seconds, digest, f"loopback UDP, {model.counts['record_packets']:,} record packets")

    from wirebook.sim.pynq_device import SimulatedZynq

    zynq = SimulatedZynq()
    card = open_card("pynq", SETUP, bitfile=str(zynq.bitfile), ip_dict=zynq.ip_dict, device=zynq)
    seconds, digest = drive(card, frames, expected.count)
    card.close()
    zynq.close()
    row("pynq", seconds, digest, "real pynq (MMIO, allocate, DMA registers) on SimulatedZynq: MM2S frames, S2MM ring")

    text = record(
        "cards",
        f"Card backends: BBO records per second through the card API ({args.symbols} symbols, "
        f"{args.messages:,} messages, seed {args.seed})",
        ".venv/bin/python bench/bench_cards.py",
        ["backend", "records", "seconds", "k records/s", "k messages/s", "notes"],
        rows,
        notes=f"{len(frames):,} frames of one feed line pushed {BATCH} at a time with a poll after each batch, "
        "until every record of the golden model was delivered (count and digest checked).",
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
