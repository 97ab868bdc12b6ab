"""A model of the `net` card: the gateware (Verilator) behind the card link of proto/card_link.py.

What the board issue's inline card does, in software, so the host's `net` backend is tested against the
real core over a real network path: `NetCardModel` takes feed frames (from a raw AF_PACKET socket on its
feed interface, as the card's feed port takes them off the wire, or pushed by the caller), runs the
FeedHandler core (sim/verilated_card.py) until it is quiet, and sends the BBO records it made to the
subscribed host in record packets; on its CSR socket it answers register accesses with the core's AXI4-Lite
answers (SLVERR -> BUS_ERROR), a malformed request with BAD_REQUEST, and a repeat of the last request's
sequence number with the last answer, not applied again.

Faults for the host's tests: `drop_responses` (probability an answer is not sent), `reorder_responses`
(probability an answer is held back and sent after the next one), `drop_records` (probability a record
packet is not sent); seeded.

`python -m wirebook.sim.net_card --feed-interface veth1 --csr 10.0.0.2:22338` runs one (e.g. inside a
network namespace); it prints one line, `net card ready on ADDRESS:PORT`, once it answers.
"""

from __future__ import annotations

import argparse
import queue
import random
import select
import socket
import sys
import threading
from typing import Any

import numpy as np

from ..proto import card_link
from ..proto.card_link import CsrAccess, CsrOp, CsrResponse, CsrResult, CsrStatus
from ..proto.errors import WireError

__all__ = ["NetCardModel", "main"]

ETH_P_ALL = 0x0003
FEED_LINE = 0
RUN_CYCLES = 20_000  # per turn: CSR requests are answered between runs, as the card answers them at once
FEED_BUFFER = 64 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux's value; Python names it only on some builds
QUIET_CYCLES = 64


class NetCardModel:
    """See the module docstring. `core` is a VerilatedCard (or anything with its register and stream calls)."""

    def __init__(
        self,
        core: Any,
        csr: tuple[str, int] = ("127.0.0.1", card_link.CSR_PORT),
        *,
        feed_interface: str | None = None,
        drop_responses: float = 0.0,
        reorder_responses: float = 0.0,
        drop_records: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.core = core
        self.csr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.csr.bind(csr)
        self.csr.setblocking(False)
        self.address = self.csr.getsockname()
        self.feed: socket.socket | None = None
        if feed_interface:
            self.feed = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.feed.bind((feed_interface, 0))
            self.feed.setblocking(False)
            # The card's port takes the feed at line rate; the model runs slower in bursts: buffer generously
            # (SO_RCVBUFFORCE passes rmem_max as root), so the model loses no frame the wire delivered.
            try:
                self.feed.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, FEED_BUFFER)
            except PermissionError:
                self.feed.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FEED_BUFFER)
        self.records_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.subscriber: tuple[str, int] | None = None
        self.record_sequence = 1
        self.drop_responses, self.reorder_responses, self.drop_records = drop_responses, reorder_responses, drop_records
        self._random = random.Random(seed)
        self._last: tuple[int, bytes] | None = None  # (sequence, answer) of the last request
        self._held: tuple[bytes, tuple[str, int]] | None = None  # an answer held back (reordering)
        self._busy = False
        self._offered: queue.SimpleQueue[list[bytes]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.counts = {"requests": 0, "repeats": 0, "bad_requests": 0, "record_packets": 0, "records": 0,
                       "feed_frames": 0}  # fmt: skip

    # --- the card's loop ---------------------------------------------------------------------------------

    def serve(self, timeout_s: float = 0.001) -> None:
        """One turn: answer waiting requests, take waiting feed frames, run the core, send its records."""
        sockets = [self.csr] + ([self.feed] if self.feed is not None else [])
        readable, _, _ = select.select(sockets, [], [], 0 if self._busy else timeout_s)
        if self.csr in readable:
            self._requests()
        if self.feed is not None and self.feed in readable:
            self._feed_frames()
        while not self._offered.empty():
            self.push_frames(self._offered.get())
        if self._busy:
            ran = self.core.run(RUN_CYCLES, QUIET_CYCLES)
            self._busy = ran >= RUN_CYCLES
        if self.core.records_waiting:
            self._send_records(self.core.records())

    def offer(self, frames: list[bytes]) -> None:
        """Feed frames as if they came in on the feed port, from any thread (taken at the next `serve`)."""
        self._offered.put(list(frames))

    def push_frames(self, frames: list[bytes]) -> None:
        """Feed frames as if they came in on the feed port (on the thread that runs `serve`)."""
        self.core.push_frames(FEED_LINE, frames)
        self.counts["feed_frames"] += len(frames)
        self._busy = True

    def run_forever(self) -> None:
        """Serve until `stop()`."""
        while not self._stop.is_set():
            self.serve(0.002)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.csr.close()
        self.records_socket.close()
        if self.feed is not None:
            self.feed.close()

    # --- CSR requests ----------------------------------------------------------------------------------------

    def _requests(self) -> None:
        while True:
            try:
                payload, source = self.csr.recvfrom(2048)
            except BlockingIOError:
                return
            self._answer(payload, source)

    def _answer(self, payload: bytes, source: tuple[str, int]) -> None:
        self.counts["requests"] += 1
        try:
            request = card_link.decode_request(payload)
        except WireError:
            self.counts["bad_requests"] += 1
            sequence = int.from_bytes(payload[4:8], "big") if len(payload) >= 8 else 0
            bad = CsrResponse(sequence, (CsrResult(CsrStatus.BAD_REQUEST),))
            self._send(card_link.encode_response(bad), source)
            return
        if self._last is not None and self._last[0] == request.sequence:
            self.counts["repeats"] += 1  # a retry: the answer again, the accesses not again
            self._send(self._last[1], source)
            return
        results = tuple(self._apply(access, source) for access in request.accesses)
        answer = card_link.encode_response(CsrResponse(request.sequence, results))
        self._last = (request.sequence, answer)
        self._send(answer, source)

    def _apply(self, access: CsrAccess, source: tuple[str, int]) -> CsrResult:
        try:
            if access.op is CsrOp.READ:
                return CsrResult(CsrStatus.OK, self.core.read32(access.address))
            if access.op is CsrOp.WRITE:
                self.core.write32(access.address, access.value, access.strobe)
            else:
                self.subscriber = (source[0], access.value)
                self.record_sequence = 1
            return CsrResult(CsrStatus.OK)
        except ValueError:  # the core's own check: unaligned or outside its window
            return CsrResult(CsrStatus.BAD_REQUEST)
        except RuntimeError:  # CsrError: the bank answered SLVERR (or nothing)
            return CsrResult(CsrStatus.BUS_ERROR)

    def _send(self, answer: bytes, destination: tuple[str, int]) -> None:
        if self._random.random() < self.drop_responses:
            return
        held, self._held = self._held, None
        if held is None and self._random.random() < self.reorder_responses:
            self._held = (answer, destination)  # goes out after the next answer
            return
        self.csr.sendto(answer, destination)
        if held is not None:
            self.csr.sendto(*held)

    # --- feed and records ----------------------------------------------------------------------------------

    def _feed_frames(self) -> None:
        frames = []
        assert self.feed is not None
        while len(frames) < 256:
            try:
                frame, address = self.feed.recvfrom(65536)
            except BlockingIOError:
                break
            if address[2] == socket.PACKET_OUTGOING:
                continue  # our own record packets and answers leaving by this interface
            frames.append(frame)
        if frames:
            self.push_frames(frames)

    def _send_records(self, records: np.ndarray) -> None:
        if self.subscriber is None:
            return  # nobody subscribed: the records go nowhere, as on the card
        for at in range(0, len(records), card_link.MAX_RECORDS):
            chunk = records[at : at + card_link.MAX_RECORDS]
            packet = card_link.encode_records(self.record_sequence, chunk)
            self.record_sequence += 1
            if self._random.random() < self.drop_records:
                continue
            self.records_socket.sendto(packet, self.subscriber)
            self.counts["record_packets"] += 1
            self.counts["records"] += len(chunk)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wirebook.sim.net_card", description=__doc__.splitlines()[0])
    p.add_argument("--csr", default=f"0.0.0.0:{card_link.CSR_PORT}", help="address:port of the CSR socket")
    p.add_argument("--feed-interface", help="interface whose frames are the feed (raw socket)")
    p.add_argument("--drop-responses", type=float, default=0.0)
    p.add_argument("--reorder-responses", type=float, default=0.0)
    p.add_argument("--drop-records", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    from .verilated_card import VerilatedCard

    address, _, port = args.csr.rpartition(":")
    core = VerilatedCard()
    core.reset()
    card = NetCardModel(core, (address, int(port)), feed_interface=args.feed_interface,
                        drop_responses=args.drop_responses, reorder_responses=args.reorder_responses,
                        drop_records=args.drop_records, seed=args.seed)  # fmt: skip
    print(f"net card ready on {card.address[0]}:{card.address[1]}", flush=True)
    try:
        card.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        card.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
