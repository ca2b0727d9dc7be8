"""CPU, memory and disk of the container the edge runs in, read from cgroup v2 or v1.

Inside a container the host's figures are wrong: a container limited to 1 CPU and
256 MiB on a 64-core host would report the host's cores and memory. So each resource is
measured against the container's *limit* when the cgroup sets one (the smallest limit of
the process's cgroup and its ancestors), and against the host's capacity otherwise.

Usage always comes from the process's own cgroup when it can be read (that is what the
container consumes, even without a limit); the host-wide figures (``/proc/stat``,
``/proc/meminfo``) are used only when no cgroup file is readable. Memory is the *working
set* (usage minus inactive file cache), as ``docker stats`` and the kubelet count it,
because the page cache is reclaimed before the limit is hit.

CPU percent is a rate, so it needs two samples: the first :meth:`ContainerSampler.sample`
reports ``nan``; later ones report the usage over the time since the previous sample.
:class:`ContainerMonitor` samples in the background so that scrapes only read the latest.
"""

import asyncio
import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ContainerMonitor", "ContainerSample", "ContainerSampler"]

_log = logging.getLogger(__name__)

DEFAULT_CGROUP_ROOT = Path("/sys/fs/cgroup")
DEFAULT_PROC_ROOT = Path("/proc")

# cgroup v1 writes PAGE_COUNTER_MAX (about 2**63) for "no memory limit"; any limit at or
# above the host's memory is no limit in practice either.
_V1_UNLIMITED = 1 << 62
_V1_CONTROLLER_DIRS = {
    "cpu": ("cpu", "cpu,cpuacct", "cpuacct,cpu"),
    "cpuacct": ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"),
    "memory": ("memory",),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ContainerSample:
    """One reading of the container's resources.

    Percentages are 0-100 of the limit (or of the host when there is none); ``cpu_percent``
    is ``nan`` on the first sample. ``cgroup`` is ``"v2"``, ``"v1"`` or ``"none"``;
    ``taken_at`` is the sampler's clock (monotonic seconds by default).
    """

    cpu_percent: float
    cpu_limit_cores: float
    memory_bytes: int
    memory_limit_bytes: int
    memory_percent: float
    disk_used_bytes: int
    disk_total_bytes: int
    disk_percent: float
    cpu_limited: bool
    memory_limited: bool
    cgroup: str
    taken_at: float


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _read_keyed(path: Path, key: str) -> int | None:
    """The value of ``key`` in a ``name value`` per line file (cpu.stat, memory.stat)."""
    text = _read(path)
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            with contextlib.suppress(ValueError):
                return int(value.strip())
    return None


def _own_cgroups(proc_root: Path) -> dict[str, str]:
    """Controller (or ``""`` for the v2 unified line) -> cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in (_read(proc_root / "self" / "cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
        for name in controllers.split(","):
            if name:
                paths[name] = path
    return paths


def _resolve(mount: Path, cgroup_path: str) -> Path | None:
    """The directory of our cgroup under ``mount``.

    With a private cgroup namespace the mount *is* our cgroup and the path reads ``/``;
    with the host's namespace (Docker on v1) the path names a parent that is not mounted
    here. Dropping leading components until a directory exists covers both.
    """
    if not mount.is_dir():
        return None
    parts = [part for part in cgroup_path.split("/") if part and part != ".."]
    for start in range(len(parts) + 1):
        candidate = mount.joinpath(*parts[start:])
        if candidate.is_dir():
            return candidate
    return mount


def _lineage(leaf: Path, mount: Path) -> list[Path]:
    """``leaf`` and its ancestors up to ``mount``; limits of any of them apply."""
    chain = [leaf]
    while chain[-1] != mount and mount in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


@dataclass(frozen=True, kw_only=True, slots=True)
class _Raw:
    cpu_usage_s: float | None  # cumulative CPU seconds of the cgroup
    cpu_quota_cores: float | None  # None: no CPU limit
    memory_bytes: int | None  # working set
    memory_limit: int | None  # None: no memory limit


class _V2:
    def __init__(self, mount: Path, path: str) -> None:
        self.leaf = _resolve(mount, path) or mount
        self.lineage = _lineage(self.leaf, mount)

    def read(self) -> _Raw:
        usage_us = _read_keyed(self.leaf / "cpu.stat", "usage_usec")
        quotas = [q for q in map(self._cpu_max, self.lineage) if q is not None]
        current = _read_int(self.leaf / "memory.current")
        memory = None
        if current is not None:
            inactive = _read_keyed(self.leaf / "memory.stat", "inactive_file") or 0
            memory = max(current - inactive, 0)
        limits = [v for v in (_read_int(d / "memory.max") for d in self.lineage) if v]
        return _Raw(
            cpu_usage_s=None if usage_us is None else usage_us / 1e6,
            cpu_quota_cores=min(quotas, default=None),
            memory_bytes=memory,
            memory_limit=min(limits, default=None),
        )

    @staticmethod
    def _cpu_max(directory: Path) -> float | None:
        # "max 100000" means no limit; "150000 100000" means 1.5 CPUs.
        fields = (_read(directory / "cpu.max") or "").split()
        if len(fields) != 2 or fields[0] == "max":
            return None
        try:
            quota, period = int(fields[0]), int(fields[1])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None


class _V1:
    def __init__(self, root: Path, paths: dict[str, str]) -> None:
        self.dirs: dict[str, list[Path]] = {}
        for controller, names in _V1_CONTROLLER_DIRS.items():
            for name in names:
                mount = root / name
                leaf = _resolve(mount, paths.get(controller, "/"))
                if leaf is not None:
                    self.dirs[controller] = _lineage(leaf, mount)
                    break

    def _leaf(self, controller: str) -> Path | None:
        chain = self.dirs.get(controller)
        return chain[0] if chain else None

    def read(self) -> _Raw:
        acct = self._leaf("cpuacct")
        usage_ns = _read_int(acct / "cpuacct.usage") if acct else None
        quotas = []
        for directory in self.dirs.get("cpu", []):
            quota = _read_int(directory / "cpu.cfs_quota_us")
            period = _read_int(directory / "cpu.cfs_period_us")
            if quota is not None and period and quota > 0:  # -1 means no limit
                quotas.append(quota / period)
        mem = self._leaf("memory")
        memory = None
        usage = _read_int(mem / "memory.usage_in_bytes") if mem else None
        if mem is not None and usage is not None:
            inactive = _read_keyed(mem / "memory.stat", "total_inactive_file") or 0
            memory = max(usage - inactive, 0)
        limits = []
        for directory in self.dirs.get("memory", []):
            limit = _read_int(directory / "memory.limit_in_bytes")
            if limit and limit < _V1_UNLIMITED:
                limits.append(limit)
        return _Raw(
            cpu_usage_s=None if usage_ns is None else usage_ns / 1e9,
            cpu_quota_cores=min(quotas, default=None),
            memory_bytes=memory,
            memory_limit=min(limits, default=None),
        )


def _host_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _disk(path: Path) -> tuple[int, int]:
    """(used, total) bytes of the file system holding ``path`` (or its nearest parent)."""
    target = path.absolute()
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        usage = shutil.disk_usage(target)
    except OSError:
        return 0, 0
    # Like df: what non-root users can still write counts as free, root's reserve as used.
    return usage.used, usage.used + usage.free


class ContainerSampler:
    """Reads the container's CPU, memory and disk use against its limits.

    Args:
        cgroup_root: where the cgroup file systems are mounted.
        proc_root: the proc file system (for ``self/cgroup``, ``stat``, ``meminfo``).
        disk_path: a directory on the disk to report (the edge's data directory).
        clock: monotonic seconds, used for CPU rates.
        host_cpus: the host's usable CPU count (default: this process's CPU affinity).
    """

    def __init__(
        self,
        *,
        cgroup_root: Path = DEFAULT_CGROUP_ROOT,
        proc_root: Path = DEFAULT_PROC_ROOT,
        disk_path: Path = Path(),
        clock: Callable[[], float] = time.monotonic,
        host_cpus: int | None = None,
    ) -> None:
        self._proc = proc_root
        self._disk_path = disk_path
        self._clock = clock
        self._host_cpus = host_cpus or _host_cpus()
        paths = _own_cgroups(proc_root)
        self._reader: _V2 | _V1 | None
        if (cgroup_root / "cgroup.controllers").is_file():
            self._reader, self.cgroup = _V2(cgroup_root, paths.get("", "/")), "v2"
        elif any((cgroup_root / name).is_dir() for name in ("memory", "cpu", "cpuacct")):
            self._reader, self.cgroup = _V1(cgroup_root, paths), "v1"
        else:
            self._reader, self.cgroup = None, "none"
        self._last_cgroup_cpu: tuple[float, float] | None = None  # (at, cpu seconds)
        self._last_host_cpu: tuple[int, int] | None = None  # (busy, total) jiffies

    def sample(self) -> ContainerSample:
        """Read every figure once; never raises for missing or odd files."""
        now = self._clock()
        raw = (
            self._reader.read()
            if self._reader
            else _Raw(cpu_usage_s=None, cpu_quota_cores=None, memory_bytes=None, memory_limit=None)
        )
        cores = float(self._host_cpus)
        if raw.cpu_quota_cores is not None:
            cores = min(cores, raw.cpu_quota_cores)
        cpu_percent = self._cpu_percent(now, raw.cpu_usage_s, cores)

        host_total, host_used = self._meminfo()
        memory_limit = host_total
        if raw.memory_limit is not None and (host_total == 0 or raw.memory_limit < host_total):
            memory_limit = raw.memory_limit
        memory = raw.memory_bytes if raw.memory_bytes is not None else host_used

        disk_used, disk_total = _disk(self._disk_path)
        return ContainerSample(
            cpu_percent=cpu_percent,
            cpu_limit_cores=cores,
            memory_bytes=memory,
            memory_limit_bytes=memory_limit,
            memory_percent=_percent(memory, memory_limit),
            disk_used_bytes=disk_used,
            disk_total_bytes=disk_total,
            disk_percent=_percent(disk_used, disk_total),
            cpu_limited=raw.cpu_quota_cores is not None and raw.cpu_quota_cores < self._host_cpus,
            memory_limited=memory_limit != host_total,
            cgroup=self.cgroup,
            taken_at=now,
        )

    def _cpu_percent(self, now: float, usage_s: float | None, cores: float) -> float:
        if usage_s is None:
            return self._host_cpu_percent()
        previous, self._last_cgroup_cpu = self._last_cgroup_cpu, (now, usage_s)
        if previous is None or now <= previous[0]:
            return math.nan
        used = max(usage_s - previous[1], 0.0)  # a reset cgroup counts as idle, not negative
        return 100.0 * used / ((now - previous[0]) * cores)

    def _host_cpu_percent(self) -> float:
        # First line of /proc/stat: cpu user nice system idle iowait irq softirq steal ...
        line = (_read(self._proc / "stat") or "").partition("\n")[0].split()
        try:
            ticks = [int(value) for value in line[1:9]]
        except ValueError:
            return math.nan
        if line[:1] != ["cpu"] or len(ticks) < 5:
            return math.nan
        total, busy = sum(ticks), sum(ticks) - ticks[3] - ticks[4]
        previous, self._last_host_cpu = self._last_host_cpu, (busy, total)
        if previous is None or total <= previous[1]:
            return math.nan
        return 100.0 * max(busy - previous[0], 0) / (total - previous[1])

    def _meminfo(self) -> tuple[int, int]:
        """(total, used) bytes of the host, used = MemTotal - MemAvailable."""
        fields: dict[str, int] = {}
        for line in (_read(self._proc / "meminfo") or "").splitlines():
            name, _, rest = line.partition(":")
            with contextlib.suppress(ValueError, IndexError):
                fields[name] = int(rest.split()[0]) * 1024  # the file counts kB
        total = fields.get("MemTotal", 0)
        return total, max(total - fields.get("MemAvailable", total), 0)


def _percent(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else math.nan


class ContainerMonitor:
    """Samples a :class:`ContainerSampler` every ``interval`` seconds in the background.

    Scrapes read :attr:`latest` (no file I/O on the scrape path, and a CPU rate over a
    fixed window that does not depend on how often or by how many servers we are scraped).
    """

    def __init__(self, sampler: ContainerSampler, *, interval: float = 5.0) -> None:
        self._sampler = sampler
        self.interval = interval
        self.latest: ContainerSample | None = None
        self._failing = False

    def refresh(self) -> ContainerSample | None:
        """Take one sample and keep it as :attr:`latest`; never raises."""
        try:
            self.latest = self._sampler.sample()
        except Exception:  # noqa: BLE001 - a metrics reader must never take the edge down
            if not self._failing:
                _log.warning("container resource sampling failed", exc_info=True)
            self._failing = True
            return self.latest
        if self._failing:
            _log.info("container resource sampling recovered")
        self._failing = False
        return self.latest

    async def run(self) -> None:
        """Sample forever (until cancelled), off the event loop.

        The second sample comes after one second, so the CPU rate is known soon after
        start; then one every ``interval``.
        """
        await asyncio.to_thread(self.refresh)
        await asyncio.sleep(min(1.0, self.interval))
        while True:
            await asyncio.to_thread(self.refresh)
            await asyncio.sleep(self.interval)
