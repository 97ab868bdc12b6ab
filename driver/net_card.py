"""The `net` backend: a card inline on the wire, reached over UDP (proto/card_link.py).

The card takes the exchange feed on its own feed port; on its host-facing port it answers register
accesses and sends the BBO records it makes. Here:

- `UdpCsrBus`: the card's registers as a RegisterBus. One request in flight; an answer is waited for
  `timeout_s` and the request sent again (same sequence number: the card answers a repeat without applying
  it twice) up to `retries` times; answers with another sequence (late answers to earlier tries, reordered
  packets) or that do not decode are dropped and counted. No answer at all, or the card's bus error, is a
  CardError naming the access, the address and its register.
- `SocketRecords` / `DpdkRecords`: where record packets arrive, through the kernel (a UDP socket) or
  through DPDK (kernel bypass: a port's frames, the UDP payloads cut out in bulk). Each keeps the packet
  sequence: a jump is counted as lost packets (their records are gone: the driver reports a gap).
- `NetBackend` ties them together for GatewareCard. The card is not reset when the host starts
  (`fresh = False`), so configure clears the instrument table first. Frames the host receives itself
  (look-aside input) only feed the directory scan: the card has the feed already.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..proto import bbo, card_link, registers
from ..proto.card_link import CsrAccess, CsrOp, CsrRequest, CsrStatus
from ..proto.errors import WireError
from .csr import CardError

__all__ = ["DpdkRecords", "NetBackend", "SocketRecords", "UdpCsrBus"]

log = logging.getLogger(__name__)


def _register_at(address: int) -> str:
    for reg in registers.REGISTERS:
        if reg.offset is not None and reg.offset <= address < reg.end:
            return reg.name
    return "no register"


def _what(access: CsrAccess) -> str:
    if access.op is CsrOp.SUBSCRIBE:
        return f"SUBSCRIBE (records to port {access.value})"
    return f"{access.op.name} of {access.address:#x} ({_register_at(access.address)})"


class UdpCsrBus:
    """The card's registers over UDP; see the module docstring."""

    def __init__(
        self, card: tuple[str, int], *, timeout_s: float = 0.02, retries: int = 5, local: tuple[str, int] = ("", 0)
    ) -> None:
        if timeout_s <= 0 or retries < 0:
            raise ValueError(f"timeout_s must be > 0 and retries >= 0, got {timeout_s}, {retries}")
        self.card = card
        self.timeout_s = timeout_s
        self.retries = retries
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(local)
        self.socket.setblocking(False)
        self.counts: Counter[str] = Counter()  # requests, retries, stale, malformed
        self._sequence = int(time.monotonic_ns()) & 0xFFFF_0000  # a restarted host never repeats its last one

    def read32(self, address: int) -> int:
        return self.transact([CsrAccess(CsrOp.READ, address)])[0]

    def write32(self, address: int, value: int) -> None:
        self.transact([CsrAccess(CsrOp.WRITE, address, value)])

    def write32_many(self, writes: Sequence[tuple[int, int]]) -> None:
        """Many word writes, in order, `MAX_OPS` to a request."""
        for at in range(0, len(writes), card_link.MAX_OPS):
            self.transact([CsrAccess(CsrOp.WRITE, a, v) for a, v in writes[at : at + card_link.MAX_OPS]])

    def subscribe(self, port: int) -> None:
        """Ask the card to send its record packets to this socket's address, UDP port `port`."""
        self.transact([CsrAccess(CsrOp.SUBSCRIBE, 0, port)])

    def transact(self, accesses: Sequence[CsrAccess]) -> list[int]:
        """Apply `accesses` in one request (retried as one); their values. CardError on the first that failed."""
        self._sequence = (self._sequence + 1) & 0xFFFF_FFFF
        sequence = self._sequence
        request = card_link.encode_request(CsrRequest(sequence, tuple(accesses)))
        self.counts["requests"] += 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.counts["retries"] += 1
            self.socket.sendto(request, self.card)
            response = self._answer(sequence, len(accesses), time.monotonic() + self.timeout_s)
            if response is None:
                continue
            if len(response.results) != len(accesses):
                raise CardError(f"net card at {self.card[0]}:{self.card[1]}: the request with {_what(accesses[0])} "
                                f"was refused as malformed (BAD_REQUEST)")  # fmt: skip
            for access, result in zip(accesses, response.results):
                if result.status is not CsrStatus.OK:
                    raise CardError(f"net card at {self.card[0]}:{self.card[1]}: {_what(access)} answered "
                                    f"{result.status.name}")  # fmt: skip
            return [result.value for result in response.results]
        what = _what(accesses[0]) + (f" and {len(accesses) - 1} more" if len(accesses) > 1 else "")
        raise CardError(
            f"net card at {self.card[0]}:{self.card[1]}: no answer to {what} after {self.retries + 1} tries of "
            f"{self.timeout_s * 1e3:.0f} ms"
        )

    def _answer(self, sequence: int, count: int, deadline: float) -> card_link.CsrResponse | None:
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.socket], [], [], left)
            if not readable:
                return None
            try:
                payload, source = self.socket.recvfrom(2048)
            except BlockingIOError:
                continue
            try:
                response = card_link.decode_response(payload)
            except WireError as e:
                self.counts["malformed"] += 1
                log.warning("net card: dropped an answer from %s: %s", source, e)
                continue
            if response.sequence != sequence:
                self.counts["stale"] += 1  # a late answer to an earlier try or request
                continue
            refused = len(response.results) == 1 and response.results[0].status is CsrStatus.BAD_REQUEST
            if len(response.results) != count and not refused:  # a malformed request gets one BAD_REQUEST
                self.counts["malformed"] += 1
                log.warning("net card: answer %d has %d results for %d accesses", sequence, len(response.results),
                            count)  # fmt: skip
                continue
            return response
        return None

    def close(self) -> None:
        self.socket.close()


class _RecordSequence:
    """Packet sequence tracking shared by the receivers."""

    def __init__(self) -> None:
        self.next = 1
        self.packets = 0
        self.lost = 0  # packets never received
        self.late = 0  # packets below the expected sequence (reordered or repeated): dropped
        self.malformed = 0

    def accept(self, sequence: int) -> bool:
        if sequence < self.next:
            self.late += 1
            return False
        if sequence > self.next:
            self.lost += sequence - self.next
            log.warning("net card: record packets %d..%d lost", self.next, sequence - 1)
        self.next = sequence + 1
        self.packets += 1
        return True


class SocketRecords:
    """Record packets through a kernel UDP socket."""

    def __init__(self, local: tuple[str, int] = ("", 0)) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.socket.bind(local)
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]
        self.sequence = _RecordSequence()

    def receive(self, max_packets: int = 256) -> np.ndarray:
        batches = []
        for _ in range(max_packets):
            try:
                payload = self.socket.recv(2048)
            except BlockingIOError:
                break
            try:
                sequence, records = card_link.decode_records(payload)
            except WireError as e:
                self.sequence.malformed += 1
                log.warning("net card: dropped a record packet: %s", e)
                continue
            if self.sequence.accept(sequence):
                batches.append(records)
        return bbo.join(batches)

    def restart(self) -> None:
        self.sequence = _RecordSequence()

    def close(self) -> None:
        self.socket.close()


class DpdkRecords:
    """Record packets through a DPDK port (kernel bypass): frames to `port` cut out in bulk.

    `dpdk_port` is a driver.dpdk DpdkPort already started; frames that are not IPv4 / UDP to `port` (ARP,
    the card's CSR answers going to the kernel, anything else on the wire) are skipped.
    """

    def __init__(self, dpdk_port: Any, port: int, burst: int = 64) -> None:
        self.dpdk_port = dpdk_port
        self.port = port
        self.burst = burst
        self.sequence = _RecordSequence()

    def receive(self, max_bursts: int = 8) -> np.ndarray:
        batches = []
        for _ in range(max_bursts):
            frames, lengths = self.dpdk_port.receive(self.burst)
            if not len(lengths):
                break
            for frame in _udp_payloads_to(frames, lengths, self.port):
                try:
                    sequence, records = card_link.decode_records(frame)
                except WireError as e:
                    self.sequence.malformed += 1
                    log.warning("net card: dropped a record packet: %s", e)
                    continue
                if self.sequence.accept(sequence):
                    batches.append(records.copy())  # the receive buffer is reused by the next burst
        return bbo.join(batches)

    def restart(self) -> None:
        self.sequence = _RecordSequence()

    def close(self) -> None:
        pass


ETHERTYPE_IPV4 = 0x0800
UDP_PROTOCOL = 17


def _udp_payloads_to(frames: np.ndarray, lengths: np.ndarray, port: int) -> list[memoryview]:
    """The UDP payloads of the untagged IPv4 / UDP frames to `port` among a burst (header checks in numpy)."""
    n = len(lengths)
    f = frames[:n]
    ethertype = f[:, 12].astype(np.uint16) << 8 | f[:, 13]
    ihl = (f[:, 14] & 0x0F).astype(np.int64) * 4
    protocol = f[:, 23]
    udp = 14 + ihl
    rows = np.arange(n)
    udp_clamped = np.minimum(udp, f.shape[1] - 8)
    destination = f[rows, udp_clamped + 2].astype(np.uint16) << 8 | f[rows, udp_clamped + 3]
    udp_length = f[rows, udp_clamped + 4].astype(np.int64) << 8 | f[rows, udp_clamped + 5]
    ok = (ethertype == ETHERTYPE_IPV4) & (protocol == UDP_PROTOCOL) & (f[:, 14] >> 4 == 4) & (ihl >= 20)
    ok &= (destination == port) & (udp + udp_length <= lengths) & (udp_length >= 8)
    out = []
    for i in np.flatnonzero(ok):
        start = int(udp[i]) + 8
        out.append(memoryview(f[i, start : start + int(udp_length[i]) - 8]))
    return out


class NetBackend:
    """A card on the network (see the module docstring).

    `card`: the card's (address, CSR port). `records`: "socket" (the kernel) or a DpdkPort to receive the
    record packets with (`record_port` is then the UDP port they are addressed to on this host).
    """

    name = "net"
    fresh = False  # the card keeps running across host restarts

    def __init__(
        self,
        card: tuple[str, int],
        *,
        records: Any = "socket",
        record_port: int = 0,
        local_address: str = "",
        timeout_s: float = 0.02,
        retries: int = 5,
    ) -> None:
        self.card_address = card
        self._records_option = records
        self._record_port = record_port
        self._local_address = local_address
        self.bus = UdpCsrBus(card, timeout_s=timeout_s, retries=retries, local=(local_address, 0))
        self.records: Any = None

    def open(self) -> None:
        if self._records_option == "socket":
            self.records = SocketRecords((self._local_address, self._record_port))
            port = self.records.port
        else:
            if not self._record_port:
                raise ValueError("record_port is needed to receive record packets through DPDK")
            self.records = DpdkRecords(self._records_option, self._record_port)
            port = self._record_port
        self.bus.subscribe(port)
        self.records.restart()

    def close(self) -> None:
        if self.records is not None:
            self.records.close()
        self.bus.close()

    def receive(self) -> np.ndarray:
        return self.records.receive()

    def push_frames(self, line: int, frames: Sequence[bytes]) -> None:
        """Inline: the card takes the feed on its own port; the host's frames served the directory scan."""

    @property
    def records_lost(self) -> int:
        """Record packets lost between the card and this host (their records never arrived)."""
        return self.records.sequence.lost if self.records is not None else 0
