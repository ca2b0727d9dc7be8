"""Container resource readers against recorded cgroup v1/v2 trees, limited and not."""

import asyncio
import math
import shutil
from pathlib import Path

import pytest

from iotedge.edge.container import ContainerMonitor, ContainerSample, ContainerSampler

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cgroup"
GIB = 1 << 30
HOST_MEMORY = 16 * GIB  # MemTotal in every fixture's proc/meminfo


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def copy_fixture(name: str, tmp_path: Path) -> Path:
    """A writable copy of one fixture tree (so a test can advance its counters)."""
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def sampler_for(root: Path, clock: FakeClock | None = None) -> ContainerSampler:
    """A sampler reading the fixture tree at ``root`` on a fixed 4-CPU host."""
    return ContainerSampler(
        cgroup_root=root / "cgroup",
        proc_root=root / "proc",
        disk_path=root,
        clock=clock or FakeClock(),
        host_cpus=4,
    )


@pytest.mark.parametrize(
    ("fixture", "cgroup", "cores", "memory", "limit", "cpu_limited", "memory_limited"),
    [
        pytest.param("v2-limited", "v2", 1.5, 100_663_296, 256 << 20, True, True, id="v2-limited-nested"),
        pytest.param("v2-unlimited", "v2", 4.0, 83_886_080, HOST_MEMORY, False, False, id="v2-unlimited"),
        pytest.param("v1-limited", "v1", 0.5, 157_286_400, 512 << 20, True, True, id="v1-limited-docker"),
        pytest.param("v1-unlimited", "v1", 4.0, 91_709_440, HOST_MEMORY, False, False, id="v1-unlimited"),
    ],
)
def test_limits_and_working_set(
    fixture: str,
    cgroup: str,
    cores: float,
    memory: int,
    limit: int,
    cpu_limited: bool,
    memory_limited: bool,
) -> None:
    """Limits come from the cgroup (or the host when unset); memory excludes inactive cache."""
    sample = sampler_for(FIXTURES / fixture).sample()
    assert sample.cgroup == cgroup
    assert sample.cpu_limit_cores == cores
    assert sample.cpu_limited is cpu_limited
    assert sample.memory_bytes == memory
    assert sample.memory_limit_bytes == limit
    assert sample.memory_limited is memory_limited
    assert sample.memory_percent == pytest.approx(100 * memory / limit)


def test_first_sample_has_no_cpu_rate() -> None:
    """A rate needs two readings: the first CPU percent is NaN, not a made-up 0."""
    assert math.isnan(sampler_for(FIXTURES / "v2-limited").sample().cpu_percent)


@pytest.mark.parametrize(
    ("fixture", "counter", "before", "after", "expected"),
    [
        # 1.5 CPU-seconds in 2 s against a 1.5-core limit: half of the limit.
        pytest.param(
            "v2-limited",
            "kubepods/pod1/ctr/cpu.stat",
            "usage_usec 5000000\n",
            "usage_usec 6500000\n",
            50.0,
            id="v2-quota",
        ),
        # 0.5 CPU-seconds in 2 s against a 0.5-core limit: all of it.
        pytest.param(
            "v1-limited",
            "cpu,cpuacct/cpuacct.usage",
            "3000000000\n",
            "3500000000\n",
            50.0,
            id="v1-quota",
        ),
        # 2 CPU-seconds in 2 s on a 4-CPU host without a limit: a quarter of the host.
        pytest.param(
            "v2-unlimited",
            "cpu.stat",
            "usage_usec 2000000\n",
            "usage_usec 4000000\n",
            25.0,
            id="v2-host-cores",
        ),
    ],
)
def test_cpu_percent_is_a_rate_against_the_limit(
    tmp_path: Path, fixture: str, counter: str, before: str, after: str, expected: float
) -> None:
    """CPU percent is CPU time used between two samples over wall time times cores."""
    root = copy_fixture(fixture, tmp_path)
    clock = FakeClock(100.0)
    sampler = sampler_for(root, clock)
    (root / "cgroup" / counter).write_text(before)
    sampler.sample()
    (root / "cgroup" / counter).write_text(after)
    clock.now = 102.0
    assert sampler.sample().cpu_percent == pytest.approx(expected)


def test_host_figures_without_any_cgroup(tmp_path: Path) -> None:
    """With no cgroup mounted, memory and CPU come from /proc/meminfo and /proc/stat."""
    root = copy_fixture("v1-unlimited", tmp_path)
    shutil.rmtree(root / "cgroup")
    sampler = sampler_for(root)
    first = sampler.sample()
    assert first.cgroup == "none"
    assert first.memory_bytes == 8 * GIB  # MemTotal - MemAvailable
    assert first.memory_limit_bytes == HOST_MEMORY
    assert first.memory_percent == pytest.approx(50.0)
    assert first.cpu_limit_cores == 4.0
    # 150 busy ticks out of 500 on all CPUs: 30 % of the host.
    (root / "proc" / "stat").write_text("cpu  1100 0 550 8300 550 0 0 0 0 0\n")
    assert sampler.sample().cpu_percent == pytest.approx(30.0)


def test_cpu_counter_reset_is_not_negative(tmp_path: Path) -> None:
    """A counter that goes backwards (a new cgroup) reads as idle, never below zero."""
    root = copy_fixture("v2-unlimited", tmp_path)
    clock = FakeClock()
    sampler = sampler_for(root, clock)
    sampler.sample()
    (root / "cgroup" / "cpu.stat").write_text("usage_usec 10\n")
    clock.now += 1
    assert sampler.sample().cpu_percent == 0.0


def test_limit_above_host_memory_counts_as_unlimited(tmp_path: Path) -> None:
    """A memory limit larger than the host is no limit: the host total is the ceiling."""
    root = copy_fixture("v1-limited", tmp_path)
    (root / "cgroup" / "memory" / "memory.limit_in_bytes").write_text(f"{64 * GIB}\n")
    sample = sampler_for(root).sample()
    assert sample.memory_limit_bytes == HOST_MEMORY
    assert sample.memory_limited is False


def test_disk_of_a_directory_not_created_yet(tmp_path: Path) -> None:
    """Disk figures come from the nearest existing parent of the data directory."""
    sample = ContainerSampler(
        cgroup_root=tmp_path / "none", proc_root=tmp_path / "none", disk_path=tmp_path / "a/b"
    ).sample()
    assert sample.disk_total_bytes > 0
    assert 0 < sample.disk_used_bytes <= sample.disk_total_bytes
    assert sample.disk_percent == pytest.approx(100 * sample.disk_used_bytes / sample.disk_total_bytes)


def test_sample_is_frozen() -> None:
    """Samples are immutable values, safe to hand to a scrape in another thread."""
    sample = sampler_for(FIXTURES / "v1-limited").sample()
    with pytest.raises(AttributeError):
        sample.cpu_percent = 1.0  # type: ignore[misc]


def test_this_machine_reads_plausible_figures() -> None:
    """On the real /sys/fs/cgroup and /proc the figures are within their ranges."""
    sampler = ContainerSampler()
    sampler.sample()
    sample = sampler.sample()
    assert sample.cpu_limit_cores > 0
    assert 0 < sample.memory_bytes <= sample.memory_limit_bytes
    assert 0 <= sample.memory_percent <= 100
    assert math.isnan(sample.cpu_percent) or sample.cpu_percent >= 0


class BrokenSampler(ContainerSampler):
    """A sampler whose reads fail, as a vanished file system would."""

    def sample(self) -> ContainerSample:
        raise OSError("gone")


def test_monitor_keeps_the_last_sample_and_never_raises() -> None:
    """The background monitor swallows reader errors and keeps serving the last sample."""
    monitor = ContainerMonitor(sampler_for(FIXTURES / "v2-limited"), interval=5)
    first = monitor.refresh()
    assert first is not None and monitor.latest is first
    broken = ContainerMonitor(BrokenSampler(cgroup_root=Path("/nonexistent")), interval=5)
    assert broken.refresh() is None
    assert broken.latest is None


def test_monitor_run_samples_in_the_background() -> None:
    """run() fills ``latest`` without the caller sampling; cancelling it stops it."""
    monitor = ContainerMonitor(sampler_for(FIXTURES / "v2-unlimited"), interval=0.01)

    async def scenario() -> ContainerSample | None:
        task = asyncio.create_task(monitor.run())
        for _ in range(500):  # bounded: at most ~5 s
            if monitor.latest is not None:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return monitor.latest

    assert asyncio.run(scenario()) is not None
