"""`wirebook doctor` against fake /proc and /sys trees: a prepared machine passes, a bare one is told what to do."""

from __future__ import annotations

import resource

from wirebook.host.doctor import run_checks


def write(root, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def test_prepared_machine(tmp_path):
    write(tmp_path, "/sys/devices/system/cpu/isolated", "2-3\n")
    write(tmp_path, "/proc/cmdline", "BOOT_IMAGE=/vmlinuz isolcpus=2-3 nohz_full=2-3\n")
    write(tmp_path, "/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor", "performance\n")
    write(tmp_path, "/proc/meminfo", "MemTotal: 1 kB\nHugePages_Total:    1024\nHugepagesize:       2048 kB\n")
    (tmp_path / "sys/bus/pci/drivers/vfio-pci/0000:3b:00.1").mkdir(parents=True)
    (tmp_path / "sys/bus/pci/drivers/vfio-pci/new_id").touch()
    write(tmp_path, "/proc/412/comm", "ptp4l\n")
    write(tmp_path, "/proc/413/comm", "phc2sys\n")
    write(tmp_path, "/sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n")
    checks = run_checks(tmp_path, cpu=3, memlock=resource.RLIM_INFINITY)
    assert {c.name: c.status for c in checks} == dict.fromkeys(
        ["isolated cores", "cpu governor", "hugepages", "dpdk nic", "locked memory", "clock sync",
         "transparent hugepages"], "ok",
    )  # fmt: skip
    found = {c.name: c.found for c in checks}
    assert found["isolated cores"] == "isolated: [2, 3] (nohz_full)"
    assert found["hugepages"] == "1024 x 2048 kB"
    assert found["dpdk nic"] == "0000:3b:00.1 (vfio-pci)"
    assert found["clock sync"] == "running: phc2sys, ptp4l"


def test_bare_machine_is_told_what_is_missing(tmp_path):
    write(tmp_path, "/sys/devices/system/cpu/isolated", "\n")
    write(tmp_path, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "powersave\n")
    write(tmp_path, "/proc/meminfo", "HugePages_Total:       0\n")
    write(tmp_path, "/proc/1/comm", "init\n")
    write(tmp_path, "/sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n")
    checks = {c.name: c for c in run_checks(tmp_path, memlock=8 << 20)}
    assert {n: c.status for n, c in checks.items()} == {
        "isolated cores": "warn", "cpu governor": "warn", "hugepages": "fail", "dpdk nic": "fail",
        "locked memory": "warn", "clock sync": "fail", "transparent hugepages": "warn",
    }  # fmt: skip
    assert "isolcpus=" in checks["isolated cores"].advice
    assert "nr_hugepages" in checks["hugepages"].advice
    assert "vfio-pci" in checks["dpdk nic"].advice
    assert checks["locked memory"].found == "RLIMIT_MEMLOCK 8192 KiB"
    assert "chrony" in checks["clock sync"].advice


def test_agent_core_not_isolated(tmp_path):
    write(tmp_path, "/sys/devices/system/cpu/isolated", "2\n")
    check = run_checks(tmp_path, cpu=5)[0]
    assert check.status == "warn" and "core 5 is not one" in check.found
