"""DPDK ports for the card's host side: frame batches between a poll-mode driver and numpy, no Python per
frame.

`Eal.init(args)` starts DPDK once per process; `DpdkPort(device)` opens a port (a vdev spec such as
"net_pcap0,rx_pcap=feed.pcap", "net_ring0", "net_af_packet0,iface=veth0", or a port id), starting the EAL
with its defaults first if nobody did. Frames cross in one layout both ways: a C-contiguous uint8 array
of fixed-size slots, frame i in row i, and a uint32 array of frame lengths (`frames_to_slots`,
`slots_to_frames` convert from and to bytes objects).
"""

from __future__ import annotations

import atexit
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .build import DpdkError, DpdkMissingError, load

__all__ = [
    "LOG_DEBUG",
    "LOG_ERR",
    "LOG_INFO",
    "LOG_NOTICE",
    "LOG_WARNING",
    "DpdkError",
    "DpdkMissingError",
    "DpdkPort",
    "DpdkStats",
    "Eal",
    "frames_to_slots",
    "slots_to_frames",
]

# DPDK's log levels (rte_log.h), for Eal.init(log_echo=...); 0 echoes nothing.
LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG = 4, 5, 6, 7, 8

DEFAULT_SLOT_SIZE = 2048  # a standard frame (1518 bytes, 1522 with a VLAN tag) fits with room to spare
DEFAULT_DATA_ROOM = 2048 + 128  # RTE_MBUF_DEFAULT_BUF_SIZE: 2 KiB of frame after RTE_PKTMBUF_HEADROOM
HUGEPAGES = Path("/sys/kernel/mm/hugepages")
MOUNTS = Path("/proc/mounts")


def _shim() -> tuple[Any, Any]:
    module = load()
    return module.ffi, module.lib


def _log_excerpt(since: int, lines: int = 12) -> str:
    """What DPDK logged since mark `since` (Eal.log_mark()), for an error message."""
    tail = Eal.log(lines, since=since)
    return "\n  DPDK said:\n    " + "\n    ".join(tail.splitlines()) if tail else " (DPDK logged nothing)"


class Eal:
    """DPDK's Environment Abstraction Layer: initialised once per process, never re-initialised.

    `init(args)` runs rte_eal_init with `args` (default `DEFAULT_ARGS`: no hugepages, no PCI scan, no
    shared config, so it needs neither root-only setup nor a NIC) plus a `--vdev=SPEC` per `vdevs`. A
    second `init` with the same arguments is a no-op; with other arguments it raises DpdkError, as does any
    `init` after one that failed (DPDK cannot retry in the same process: run another EAL in another
    process). Arguments without --no-huge need reserved, mounted hugepages: without them `init` raises
    DpdkMissingError before DPDK starts, saying how to reserve them.

    DPDK's log goes to a buffer (`log()`, quoted in errors) and, from `log_echo` severity up (default:
    errors), to stderr. rte_eal_init pins the calling thread (and the threads it starts later) to the main
    lcore's CPU: choose it with -l / --main-lcore. At exit, ports still open are closed (the pcap PMD
    writes its file out then) and the EAL is cleaned up.
    """

    DEFAULT_ARGS: ClassVar[tuple[str, ...]] = ("--no-huge", "--no-pci", "--no-shconf")
    _args: ClassVar[tuple[str, ...] | None] = None
    _failure: ClassVar[str | None] = None
    _vdevs: ClassVar[dict[str, str]] = {}  # vdevs the EAL arguments created: name -> spec
    _ports: ClassVar[set[DpdkPort]] = set()  # open ports, closed at exit if their owner did not

    @classmethod
    def init(
        cls, args: Sequence[str] | None = None, *, vdevs: Sequence[str] = (), log_echo: int = LOG_ERR
    ) -> tuple[str, ...]:
        """Start the EAL (see the class docstring); returns the arguments it runs with."""
        wanted = (*(cls.DEFAULT_ARGS if args is None else args), *(f"--vdev={v}" for v in vdevs))
        if cls._args is not None:
            if wanted != cls._args:
                raise DpdkError(
                    f"the DPDK EAL is already initialised in this process with {list(cls._args)}; it cannot be "
                    f"initialised again with {list(wanted)} (one EAL per process: use another process)"
                )
            return cls._args
        if cls._failure is not None:
            raise DpdkError(f"the DPDK EAL failed to initialise earlier in this process ({cls._failure}); "
                            "DPDK cannot retry in the same process")  # fmt: skip
        if "--no-huge" not in wanted:
            _require_hugepages(wanted)
        ffi, lib = _shim()
        lib.wb_log_capture(log_echo)
        argv_items = [ffi.new("char[]", a.encode()) for a in ("wirebook", *wanted)]
        argv = ffi.new("char *[]", argv_items)
        ret = lib.wb_eal_init(len(argv_items), argv)
        if ret < 0:
            reason = ffi.string(lib.wb_strerror(ret)).decode()
            cls._failure = f"rte_eal_init({list(wanted)}): {reason}"
            for spec in _vdev_specs(wanted):
                _diagnose_vdev(spec)
            raise DpdkError(f"{cls._failure}{_log_excerpt(0)}")
        cls._args = wanted
        cls._vdevs = {_vdev_name(spec): spec for spec in _vdev_specs(wanted)}
        atexit.register(cls._at_exit)
        return wanted

    @classmethod
    def args(cls) -> tuple[str, ...] | None:
        """The arguments the EAL runs with, or None before `init`."""
        return cls._args

    @classmethod
    def log(cls, lines: int | None = None, *, since: int = 0) -> str:
        """DPDK's log (its last 16 KiB) from `init`, or from mark `since` (`log_mark()`); only the last
        `lines` lines if given."""
        if cls._args is None and cls._failure is None:
            return ""
        ffi, lib = _shim()
        buf = ffi.new("char[]", lib.WB_LOG_KEEP + 1)
        lib.wb_log_tail(buf, lib.WB_LOG_KEEP + 1, since)
        text = ffi.string(buf).decode(errors="replace")
        return text if lines is None else "\n".join(text.splitlines()[-lines:])

    @classmethod
    def log_mark(cls) -> int:
        """A mark in DPDK's log: `log(since=mark)` is what DPDK logged after it."""
        return int(_shim()[1].wb_log_end()) if cls._args is not None else 0

    @classmethod
    def _at_exit(cls) -> None:
        for port in list(cls._ports):
            port.close()
        _shim()[1].wb_eal_cleanup()


def _vdev_specs(args: Sequence[str]) -> list[str]:
    specs = []
    for i, arg in enumerate(args):
        if arg.startswith("--vdev="):
            specs.append(arg.split("=", 1)[1])
        elif arg == "--vdev" and i + 1 < len(args):
            specs.append(args[i + 1])
    return specs


def _vdev_name(spec: str) -> str:
    return spec.split(",", 1)[0]


def _require_hugepages(args: Sequence[str]) -> None:
    sizes = sorted(HUGEPAGES.glob("hugepages-*")) if HUGEPAGES.is_dir() else []
    reserved = {d.name: int((d / "nr_hugepages").read_text()) for d in sizes}
    problem = None
    if not any(reserved.values()):
        problem = f"no hugepages are reserved ({reserved or 'the kernel offers no hugepage sizes'})"
    elif "--in-memory" not in args:
        mounts = MOUNTS.read_text().splitlines()
        if not any(line.split()[2:3] == ["hugetlbfs"] for line in mounts):
            problem = "no hugetlbfs is mounted"
    if problem:
        raise DpdkMissingError(
            f"the EAL arguments {list(args)} ask for hugepages (there is no --no-huge), but {problem}. As root: "
            "`echo 512 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages && mkdir -p /dev/hugepages && "
            "mount -t hugetlbfs nodev /dev/hugepages`, or `dpdk-hugepages.py --setup 1G` (Debian package dpdk); "
            "or pass --no-huge"
        )


def _diagnose_vdev(spec: str) -> None:
    """Raise DpdkMissingError if no installed PMD can drive this vdev (rte_dev_probe only says EFAULT)."""
    ffi, lib = _shim()
    eal = Path(ffi.string(lib.wb_eal_library()).decode())
    folders = sorted(eal.parent.glob("dpdk/pmds-*"))
    if not folders:
        return  # a static or custom DPDK: nothing to look in, DPDK's own log has to do
    driver = re.sub(r"\d+$", "", _vdev_name(spec))
    library = re.sub(r"^eth_", "net_", driver)  # DPDK's vdev drivers keep eth_* aliases of their net_* names
    if any(any(folder.glob(f"librte_{library}.so*")) for folder in folders):
        return
    installed = sorted({p.name.split(".so")[0][len("librte_") :] for f in folders for p in f.glob("librte_net_*.so*")})
    abi = eal.name.split(".so.")[-1].split(".")[0]
    package = "librte-" + library.replace("_", "-") + ("-" if library[-1].isdigit() else "") + abi
    raise DpdkMissingError(
        f"DPDK has no poll-mode driver for vdev {spec!r}: no librte_{library}.so in {', '.join(map(str, folders))}. "
        f"On Debian every PMD is its own package: apt-get install {package} (libdpdk-dev brings them all). "
        f"Network PMDs installed here: {', '.join(installed) or 'none'}"
    )


@dataclass(frozen=True)
class DpdkStats:
    """A port's counters (rte_eth_stats) since start or `reset_stats`, plus wirebook's `truncated`."""

    ipackets: int  # frames received by the port
    ibytes: int
    imissed: int  # dropped by the NIC / kernel ring: the rx queue was full (poll faster or grow rx_descriptors)
    ierrors: int  # erroneous frames received
    rx_nombuf: int  # dropped for want of a free mbuf (grow mbufs)
    opackets: int
    obytes: int
    oerrors: int
    truncated: int  # frames longer than the slot: only the first slot_size bytes were kept


class DpdkPort:
    """One DPDK ethdev with one rx and one tx queue, its frames in preallocated numpy batches.

    `device` is a vdev spec ("net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap", "net_ring0",
    "net_af_packet0,iface=veth0"; hotplugged unless the EAL arguments created it) or the id of a port the
    EAL found. The EAL is started with `Eal.DEFAULT_ARGS` if it is not running. The port gets its own
    mempool of `mbufs` mbufs of `data_room` bytes, `rx_descriptors` / `tx_descriptors` (as adjusted by the
    PMD), promiscuous mode where the PMD has it, and is started.

    `receive` hands out what is waiting, never waits, at most `batch` frames per call, in arrival order:
    views of the port's own arrays, overwritten by the next receive. A frame longer than `slot_size` keeps
    its first `slot_size` bytes; its length says how long it was, and `stats().truncated` counts it. Rx
    timestamps are the PMD's (`has_rx_timestamps`): net_pcap gives the capture time in microseconds since
    the epoch, NICs their clock's ticks; 0 for a frame without one. `send` copies frames into mbufs and
    returns how many the tx queue took, in order. rx and tx calls on one port must come from one thread at
    a time (DPDK's queue rule); the GIL is released during them.

    Missing PMDs raise DpdkMissingError; a PMD that refuses its arguments (a pcap file that is not there,
    an interface that does not exist) raises DpdkError quoting DPDK's log. `close` (or leaving a `with`
    block) stops and releases the port; a hotplugged vdev is removed, so its name can be opened again.
    """

    def __init__(
        self,
        device: str | int,
        *,
        batch: int = 512,
        slot_size: int = DEFAULT_SLOT_SIZE,
        mbufs: int = 8191,
        data_room: int = DEFAULT_DATA_ROOM,
        rx_descriptors: int = 1024,
        tx_descriptors: int = 1024,
    ) -> None:
        if batch < 1 or slot_size < 1:
            raise ValueError(f"batch and slot_size must be at least 1, not {batch} and {slot_size}")
        if not 0 < data_room <= 0xFFFF:
            raise ValueError(f"data_room {data_room} is not in 1..65535 bytes (an mbuf's data room is a uint16)")
        if Eal.args() is None:
            Eal.init()
        self._ffi, self._lib = ffi, lib = _shim()
        self._hotplugged = False
        self._open = False
        mark = Eal.log_mark()
        self.port_id, self.name = self._attach(device, mark)
        err = ffi.new("char[]", 512)
        ret = lib.wb_port_start(self.port_id, mbufs, data_room, rx_descriptors, tx_descriptors, err, 512)
        if ret != 0:
            self._detach()
            raise DpdkError(f"DPDK port {self.name} ({device!r}): {ffi.string(err).decode()}{_log_excerpt(mark)}")
        self._open = True
        Eal._ports.add(self)
        self.batch, self.slot_size = batch, slot_size
        self.max_tx_frame = int(lib.wb_port_max_tx_frame(self.port_id))
        self.has_rx_timestamps = bool(lib.wb_port_has_rx_timestamp(self.port_id))
        self._frames = np.zeros((batch, slot_size), np.uint8)
        self._lengths = np.zeros(batch, np.uint32)
        self._timestamps = np.zeros(batch, np.uint64)
        self._frames_p = ffi.from_buffer("uint8_t[]", self._frames)
        self._lengths_p = ffi.from_buffer("uint32_t[]", self._lengths)
        self._timestamps_p = ffi.from_buffer("uint64_t[]", self._timestamps)

    def _attach(self, device: str | int, mark: int) -> tuple[int, str]:
        ffi, lib = self._ffi, self._lib
        name_buf = ffi.new("char[]", 64)
        if isinstance(device, int):
            if not (0 <= device < 1 << 16 and lib.wb_port_valid(device)):
                raise DpdkError(f"there is no DPDK port {device}: the EAL found {lib.wb_port_count()} ports")
            lib.wb_port_name(device, name_buf, 64)
            return device, ffi.string(name_buf).decode()
        name = _vdev_name(device)
        port_id = ffi.new("uint16_t *")
        if lib.wb_port_by_name(name.encode(), port_id) == 0:
            created_as = Eal._vdevs.get(name, name)
            if device not in (name, created_as):
                raise DpdkError(
                    f"DPDK port {name} already exists as {created_as!r}; it cannot be opened as {device!r} "
                    "(close it first, or give the new one another name)"
                )
            return port_id[0], name
        ret = lib.wb_dev_probe(device.encode())
        if ret != 0:
            _diagnose_vdev(device)
            # rte_dev_probe passes a driver's -1 through: only other values are errno codes
            reason = "its driver refused it" if ret == -1 else ffi.string(lib.wb_strerror(ret)).decode()
            raise DpdkError(f"DPDK could not create vdev {device!r}: {reason}{_log_excerpt(mark)}")
        self._hotplugged = True
        if lib.wb_port_by_name(name.encode(), port_id) != 0:
            raise DpdkError(f"vdev {device!r} was created but no ethdev is named {name!r}")
        return port_id[0], name

    def _detach(self) -> None:
        if self._hotplugged:
            self._lib.wb_vdev_remove(self.name.encode())
            self._hotplugged = False

    # --- the hot path -----------------------------------------------------------------------------------

    def receive(self, max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(frames uint8[n, slot_size], lengths uint32[n]) of what is waiting, n <= max_frames (default batch)."""
        n = self._lib.wb_rx(
            self.port_id, self._frames_p, self.slot_size, self._limit(max_frames), self._lengths_p, self._ffi.NULL
        )
        return self._frames[:n], self._lengths[:n]

    def receive_timestamped(self, max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`receive` plus the frames' PMD rx timestamps (uint64[n]; 0 where the PMD gave none)."""
        n = self._lib.wb_rx(
            self.port_id, self._frames_p, self.slot_size, self._limit(max_frames), self._lengths_p, self._timestamps_p
        )
        return self._frames[:n], self._lengths[:n], self._timestamps[:n]

    def receive_into(self, frames: np.ndarray, lengths: np.ndarray, timestamps: np.ndarray | None = None) -> int:
        """Receive into the caller's arrays (uint8[N, S] C-contiguous, uint32[N], uint64[N] or None) instead
        of the port's; returns how many rows were filled. Same contract as `receive` with batch N, slot S."""
        self._check_open()
        for label, array in (("frames", frames), ("lengths", lengths), ("timestamps", timestamps)):
            if array is not None and not array.flags.writeable:
                raise ValueError(f"{label} is read-only: receive_into writes into it")
        if frames.dtype != np.uint8 or frames.ndim != 2 or not frames.flags.c_contiguous:
            raise ValueError(f"frames must be a C-contiguous uint8 [N, slot] array, not {frames.dtype} {frames.shape}")
        count = frames.shape[0]
        for label, array, dtype in (("lengths", lengths, np.uint32), ("timestamps", timestamps, np.uint64)):
            if array is not None and (array.dtype != dtype or array.shape != (count,) or not array.flags.c_contiguous):
                raise ValueError(f"{label} must be a contiguous {np.dtype(dtype)} [{count}] array, "
                                 f"not {array.dtype} {array.shape}")  # fmt: skip
        ffi = self._ffi
        return int(
            self._lib.wb_rx(
                self.port_id,
                ffi.from_buffer("uint8_t[]", frames),
                frames.shape[1],
                count,
                ffi.from_buffer("uint32_t[]", lengths),
                ffi.NULL if timestamps is None else ffi.from_buffer("uint64_t[]", timestamps),
            )
        )

    def send(self, frames: np.ndarray, lengths: np.ndarray | Sequence[int]) -> int:
        """Send frames[i, :lengths[i]] for each row i, in order; returns how many the tx queue took (the rest,
        from that index on, were not sent). Each length must be 1..min(slot, max_tx_frame)."""
        self._check_open()
        if frames.dtype != np.uint8 or frames.ndim != 2:
            raise ValueError(f"frames must be a uint8 [N, slot] array, not {frames.dtype} {frames.shape}")
        frames = np.ascontiguousarray(frames)
        lengths = np.ascontiguousarray(lengths, dtype=np.uint32)
        if lengths.shape != (frames.shape[0],):
            raise ValueError(f"lengths has shape {lengths.shape}, frames has {frames.shape[0]} rows")
        limit = min(frames.shape[1], self.max_tx_frame)
        bad = np.flatnonzero((lengths == 0) | (lengths > limit))
        if bad.size:
            raise ValueError(f"frame {bad[0]} has length {lengths[bad[0]]}: lengths must be 1..{limit} "
                             f"(slot {frames.shape[1]}, mbuf {self.max_tx_frame} bytes)")  # fmt: skip
        ffi = self._ffi
        return int(
            self._lib.wb_tx(
                self.port_id,
                ffi.from_buffer("uint8_t[]", frames),
                frames.shape[1],
                ffi.from_buffer("uint32_t[]", lengths),
                frames.shape[0],
            )
        )

    def _limit(self, max_frames: int | None) -> int:
        self._check_open()
        if max_frames is None:
            return self.batch
        if not 0 <= max_frames <= self.batch:
            raise ValueError(f"max_frames {max_frames} is not in 0..{self.batch} (the port's batch)")
        return max_frames

    def _check_open(self) -> None:
        if not self._open:
            raise DpdkError(f"DPDK port {self.name} is closed")

    # --- the rest ---------------------------------------------------------------------------------------

    def stats(self) -> DpdkStats:
        """The port's counters now."""
        self._check_open()
        out = self._ffi.new("struct wb_stats *")
        ret = self._lib.wb_port_stats(self.port_id, out)
        if ret != 0:
            reason = self._ffi.string(self._lib.wb_strerror(ret)).decode()
            raise DpdkError(f"rte_eth_stats_get on port {self.name}: {reason}")
        return DpdkStats(**{f.name: getattr(out, f.name) for f in dataclasses.fields(DpdkStats)})

    def reset_stats(self) -> None:
        self._check_open()
        self._lib.wb_port_stats_reset(self.port_id)

    def close(self) -> None:
        """Stop and release the port and its mempool (idempotent); see the class docstring."""
        if not self._open:
            return
        self._open = False
        Eal._ports.discard(self)
        self._lib.wb_port_close(self.port_id)
        self._detach()

    def __enter__(self) -> DpdkPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DpdkPort({self.name!r}, port_id={self.port_id}, {'open' if self._open else 'closed'})"


def frames_to_slots(frames: Sequence[bytes], slot_size: int = DEFAULT_SLOT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Pack frames into the slot layout: (uint8[n, slot_size], uint32[n]); a frame longer than a slot is refused."""
    slots = np.zeros((len(frames), slot_size), np.uint8)
    lengths = np.zeros(len(frames), np.uint32)
    for i, frame in enumerate(frames):
        if len(frame) > slot_size:
            raise ValueError(f"frame {i} has {len(frame)} bytes, more than the slot of {slot_size}")
        slots[i, : len(frame)] = np.frombuffer(frame, np.uint8)
        lengths[i] = len(frame)
    return slots, lengths


def slots_to_frames(frames: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """The frames of a batch as bytes objects (the first slot_size bytes of a truncated frame)."""
    return [frames[i, : int(n)].tobytes() for i, n in enumerate(lengths)]
