"""`wirebook doctor`: is this machine prepared to run the agent on bare metal? Each check says what is missing.

The checks read the kernel's own files (under `root`, "/" on a real machine; tests point it at a fake tree):
- isolated cores: the agent's core should be kept from the scheduler (`isolcpus=` / `nohz_full=` on the
  kernel command line: /sys/devices/system/cpu/isolated, /proc/cmdline);
- CPU frequency governor `performance` on the agent's core (no frequency ramp under a burst);
- hugepages reserved for DPDK (/proc/meminfo HugePages_Total, Hugepagesize);
- a NIC bound to a DPDK-capable driver (vfio-pci or uio_pci_generic: /sys/bus/pci/drivers/*/0000:*);
- locked-memory limit high enough for DPDK and the agent's buffers (RLIMIT_MEMLOCK);
- clock synchronisation: chronyd, ntpd or (best, in colo) ptp4l + phc2sys running (/proc/*/comm);
- transparent hugepages not `always` (khugepaged compaction stalls).
A check is `ok`, `warn` (works, but not as it should be in a colo rack) or `fail` (the named feature will
not work). `wirebook doctor --json` prints them as data; the exit status is 1 when any check fails.
"""

from __future__ import annotations

import os
import resource
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Check", "run_checks"]

MIN_MEMLOCK = 64 << 20  # bytes


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    found: str
    advice: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _read(root: Path, path: str) -> str | None:
    try:
        return (root / path.lstrip("/")).read_text()
    except OSError:
        return None


def _cpu_list(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def check_isolated(root: Path, cpu: int | None) -> Check:
    isolated = _cpu_list(_read(root, "/sys/devices/system/cpu/isolated") or "")
    cmdline = _read(root, "/proc/cmdline") or ""
    advice = "add isolcpus=<cores> nohz_full=<cores> rcu_nocbs=<cores> to the kernel command line and reboot"
    if not isolated:
        return Check("isolated cores", "warn", "no isolated cores", advice)
    found = f"isolated: {sorted(isolated)}" + (" (nohz_full)" if "nohz_full=" in cmdline else "")
    if cpu is not None and cpu not in isolated:
        return Check("isolated cores", "warn", f"{found}; the agent's core {cpu} is not one", advice)
    return Check("isolated cores", "ok", found)


def check_governor(root: Path, cpu: int | None) -> Check:
    core = 0 if cpu is None else cpu
    governor = _read(root, f"/sys/devices/system/cpu/cpu{core}/cpufreq/scaling_governor")
    if governor is None:
        return Check("cpu governor", "ok", f"cpu{core}: no cpufreq control (fixed frequency or virtual machine)")
    governor = governor.strip()
    if governor != "performance":
        return Check(
            "cpu governor", "warn", f"cpu{core}: {governor}",
            f"echo performance > /sys/devices/system/cpu/cpu{core}/cpufreq/scaling_governor (or cpupower)",
        )  # fmt: skip
    return Check("cpu governor", "ok", f"cpu{core}: performance")


def check_hugepages(root: Path) -> Check:
    meminfo = _read(root, "/proc/meminfo") or ""
    fields = dict(line.split(":", 1) for line in meminfo.splitlines() if ":" in line)
    total = int(fields.get("HugePages_Total", "0").strip() or 0)
    size = fields.get("Hugepagesize", "?").strip()
    if total == 0:
        return Check(
            "hugepages", "fail", "none reserved",
            "reserve them for DPDK: echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages and mount "
            "hugetlbfs (or default_hugepagesz=1G hugepagesz=1G hugepages=4 on the kernel command line)",
        )  # fmt: skip
    return Check("hugepages", "ok", f"{total} x {size}")


def check_dpdk_nic(root: Path) -> Check:
    bound = []
    for driver in ("vfio-pci", "uio_pci_generic", "igb_uio"):
        folder = root / "sys/bus/pci/drivers" / driver
        if folder.is_dir():
            bound += [f"{entry.name} ({driver})" for entry in sorted(folder.iterdir()) if entry.name.count(":") == 2]
    if not bound:
        return Check(
            "dpdk nic", "fail", "no PCI device bound to vfio-pci / uio_pci_generic",
            "modprobe vfio-pci; dpdk-devbind.py --bind=vfio-pci <pci address of the card-facing port>",
        )  # fmt: skip
    return Check("dpdk nic", "ok", ", ".join(bound))


def check_memlock(limit: int | None = None) -> Check:
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0] if limit is None else limit
    if soft != resource.RLIM_INFINITY and soft < MIN_MEMLOCK:
        return Check(
            "locked memory", "warn", f"RLIMIT_MEMLOCK {soft >> 10} KiB",
            "LimitMEMLOCK=infinity in the systemd unit (deploy/wirebook-agent.service does this)",
        )  # fmt: skip
    return Check("locked memory", "ok", "unlimited" if soft == resource.RLIM_INFINITY else f"{soft >> 20} MiB")


def check_clock_sync(root: Path) -> Check:
    running = set()
    proc = root / "proc"
    if proc.is_dir():
        for entry in proc.iterdir():
            if entry.name.isdigit():
                comm = _read(root, f"/proc/{entry.name}/comm")
                if comm:
                    running.add(comm.strip())
    daemons = sorted(running & {"chronyd", "ptp4l", "phc2sys", "ntpd", "systemd-timesyn"})
    if not daemons:
        return Check(
            "clock sync", "fail", "no chronyd, ptp4l or ntpd running",
            "run chrony (apt install chrony) or, with a PTP-capable NIC, linuxptp's ptp4l + phc2sys",
        )  # fmt: skip
    if "ptp4l" not in daemons:
        return Check("clock sync", "warn", f"running: {', '.join(daemons)}", "use PTP (ptp4l + phc2sys) in colo")
    return Check("clock sync", "ok", f"running: {', '.join(daemons)}")


def check_thp(root: Path) -> Check:
    text = _read(root, "/sys/kernel/mm/transparent_hugepage/enabled")
    if text is None:
        return Check("transparent hugepages", "ok", "not available")
    chosen = text[text.find("[") + 1 : text.find("]")] if "[" in text else text.strip()
    if chosen == "always":
        return Check(
            "transparent hugepages", "warn", "always",
            "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (compaction stalls the hot path)",
        )  # fmt: skip
    return Check("transparent hugepages", "ok", chosen)


def run_checks(root: str | os.PathLike = "/", cpu: int | None = None, memlock: int | None = None) -> list[Check]:
    r = Path(root)
    return [
        check_isolated(r, cpu),
        check_governor(r, cpu),
        check_hugepages(r),
        check_dpdk_nic(r),
        check_memlock(memlock),
        check_clock_sync(r),
        check_thp(r),
    ]
