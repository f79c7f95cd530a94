"""The pure statistics and parsers of `twinstack measure`, on recorded samples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinstack.measure import probes, stats

# /proc/<pid>/smaps of a qemu process under TCG (768 MiB guest), trimmed to three mappings:
# the guest RAM block, the TCG translation cache (executable) and a library.
SMAPS = """\
55c43694b000-55c436f6c000 r--p 00000000 fd:00 1058      /usr/bin/qemu-system-x86_64
Size:               6276 kB
Rss:                5120 kB
Pss:                2560 kB
Anonymous:             0 kB
7ff4e7e00000-7ff517e00000 rw-p 00000000 00:00 0
Size:             786432 kB
KernelPageSize:        4 kB
Rss:              276480 kB
Pss:              276480 kB
Anonymous:        276480 kB
AnonHugePages:    256000 kB
7ff518000000-7ff557fff000 rwxp 00000000 00:00 0
Size:            1048572 kB
Rss:              417792 kB
Pss:              417792 kB
Anonymous:        417792 kB
"""

ROLLUP = """\
55c43694b000-7ffda99f0000 ---p 00000000 00:00 0                          [rollup]
Rss:              847872 kB
Pss:              842639 kB
Shared_Clean:       7488 kB
Shared_Dirty:          0 kB
Private_Clean:     30328 kB
Private_Dirty:    810056 kB
Anonymous:        810056 kB
KSM:                   0 kB
"""

# cgroup v1 memory.stat of an idle `web` container (python http.server), recorded here
MEMSTAT_V1 = """\
cache 61440
rss 9953280
shmem 0
inactive_file 0
total_cache 61440
total_rss 10010624
total_shmem 0
total_inactive_file 4096
"""

MEMSTAT_V2 = """\
anon 9568256
file 1310720
kernel 450560
shmem 4096
inactive_file 1048576
active_file 262144
"""


def test_percentile_interpolates_like_numpy_linear() -> None:
    xs = [5.31, 5.39]
    assert stats.percentile(xs, 50) == pytest.approx(5.35)
    assert stats.percentile(xs, 95) == pytest.approx(5.31 + 0.95 * 0.08)
    assert stats.percentile([1, 2, 3, 4, 10], 95) == pytest.approx(8.8)
    assert stats.percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_summary_is_ordered(xs: list[float]) -> None:
    s = stats.summarize(xs)
    assert s is not None
    assert s.min <= s.p50 <= s.p95 <= s.max
    assert s.min <= s.mean * (1 + 1e-12) + 1e-9 and s.mean <= s.max * (1 + 1e-12) + 1e-9
    assert s.n == len(xs)


def test_summarize_empty_and_ratio() -> None:
    assert stats.summarize([]) is None
    tool = stats.summarize([5.31, 5.39])
    bare = stats.summarize([5.28, 5.28])
    r = stats.ratio(tool, bare)
    assert r is not None
    assert r.p50 == pytest.approx(5.35 / 5.28)
    assert r.within_target
    slow = stats.ratio(stats.summarize([70.0]), stats.summarize([60.0]))
    assert slow is not None and not slow.within_target
    assert slow.to_json()["withinTarget"] is False
    assert stats.ratio(tool, None) is None
    assert stats.ratio(tool, stats.summarize([0.0])) is None


def test_cores() -> None:
    assert stats.cores(0.5, 10.0) == pytest.approx(0.05)
    assert stats.cores(-0.1, 10.0) == 0.0
    with pytest.raises(ValueError):
        stats.cores(1.0, 0.0)


def test_smaps_rollup_and_guest_ram_mapping() -> None:
    roll = stats.parse_kb_table(ROLLUP)
    assert roll["Rss"] == 847872 * 1024
    assert roll["Private_Dirty"] == 810056 * 1024
    maps = stats.parse_smaps(SMAPS)
    assert [m.perms for m in maps] == ["r--p", "rw-p", "rwxp"]
    ram = stats.guest_ram_mapping(maps, 768 * stats.MIB)
    assert ram is not None and ram.rss == 276480 * 1024  # not the executable TCG cache
    # no exact size: the smallest non-executable anonymous block that can hold the guest
    assert stats.guest_ram_mapping(maps, 700 * stats.MIB) == ram
    assert stats.guest_ram_mapping(maps, 2048 * stats.MIB) is None


def test_meminfo_used() -> None:
    info = stats.parse_kb_table(
        "MemTotal:  765432 kB\nMemFree: 500000 kB\nMemAvailable: 600000 kB\n"
    )
    assert stats.meminfo_used(info) == (765432 - 600000) * 1024


def test_proc_stat_ticks_with_odd_comm() -> None:
    # comm may contain spaces and parentheses; utime/stime are fields 14/15
    line = "4242 (qemu (x) y) S 1 2 3 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 5 0 99 0 0"
    assert stats.proc_stat_ticks(line) == 1234 + 567


def test_cgroup_memory_v1_and_v2() -> None:
    v1 = stats.cgroup_memory(1, "10948608\n", MEMSTAT_V1)
    assert (v1.usage, v1.anon, v1.file, v1.inactive_file) == (10948608, 10010624, 61440, 4096)
    assert v1.working_set == 10948608 - 4096
    v2 = stats.cgroup_memory(2, "11329536", MEMSTAT_V2)
    assert (v2.anon, v2.file, v2.shmem) == (9568256, 1310720, 4096)
    assert v2.working_set == 11329536 - 1048576
    assert v2.to_json()["cgroupVersion"] == 2


def test_cgroup_cpu_and_paths() -> None:
    assert stats.cgroup_cpu_usec(1, "123456789\n") == 123456
    assert stats.cgroup_cpu_usec(2, "usage_usec 4711\nuser_usec 11\nsystem_usec 4700\n") == 4711
    v1 = "4:memory:/docker/abc\n2:cpuacct:/docker/abc\n1:cpu,cpuacct:/docker/abc\n0::/docker/abc\n"
    assert stats.cgroup_path(v1, "memory") == (1, "/docker/abc")
    assert stats.cgroup_path(v1, "cpuacct") == (1, "/docker/abc")
    assert stats.cgroup_path("0::/system.slice/docker-abc.scope\n", "memory") == (
        2,
        "/system.slice/docker-abc.scope",
    )
    with pytest.raises(ValueError):
        stats.cgroup_path("1:name=systemd:/x\n", "memory")


def test_docker_timestamps_and_first_healthy() -> None:
    t = probes.docker_time("2026-11-27T03:37:19.123456789Z")
    assert t == pytest.approx(probes.docker_time("2026-11-27T03:37:19Z") + 0.123456789)
    assert probes.docker_time("0001-01-01T00:00:00Z") == 0.0
    assert probes.docker_time("2026-11-27T04:37:19.5+01:00") == pytest.approx(
        probes.docker_time("2026-11-27T03:37:19.5Z")
    )
    state = {
        "Health": {
            "Status": "healthy",
            "Log": [
                {"ExitCode": 1, "End": "2026-11-27T03:37:20.000000000Z"},
                {"ExitCode": 0, "End": "2026-11-27T03:37:25.250000000Z"},
                {"ExitCode": 0, "End": "2026-11-27T03:37:30.250000000Z"},
            ],
        }
    }
    assert probes.first_healthy_at(state) == pytest.approx(
        probes.docker_time("2026-11-27T03:37:25.25Z")
    )
    assert probes.first_healthy_at({}) is None
