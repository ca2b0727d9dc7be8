"""glibc allocator settings for the long-running processes (no-ops where libc is not glibc).

Why: glibc gives each thread that allocates its own arena (up to 8 per core). The edge's
event loop shares the process with worker threads (``asyncio.to_thread`` for metrics and
the SQLite reads, the outbox's executor); every arena keeps its freed pages, so a few
threads that once allocated during the first cycle's backfill hold megabytes for good.
Two arenas keep that bounded at no measurable CPU cost (docs/performance.md), and a trim
after a large, short-lived allocation (the backfill) hands the freed pages back.
"""

import ctypes
import ctypes.util
import os

__all__ = ["limit_arenas", "trim"]

_M_ARENA_MAX = -8  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
# Blocks from this size up get their own mapping, unmapped when freed. glibc's default
# threshold rises to the largest block freed so far (up to 32 MiB), after which a scrape's
# text (a few MB, rendered in a worker thread) and a cycle's large lists come from the
# arenas' heaps and stay resident until the next trim: RSS spikes of 20-40 MiB in steady state.
_MMAP_THRESHOLD = 1 << 20


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    # musl and others have no mallopt/malloc_trim: nothing to tune there.
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def limit_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas and fix its mmap threshold; call before the process starts
    threads. True if the arena cap was applied.

    ``MALLOC_ARENA_MAX`` and ``MALLOC_MMAP_THRESHOLD_`` in the environment each win over
    its own setting here: an operator's explicit choice is kept.
    """
    if _LIBC is None:
        return False
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        _LIBC.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(_MMAP_THRESHOLD))
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(_LIBC.mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(arenas)))


def trim() -> None:
    """Return the allocator's free memory at the top of each arena to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(ctypes.c_size_t(0))
