"""iotedge.memory: the glibc allocator settings are safe to call and respect the operator's choice."""

import pytest

from iotedge import memory


def test_an_explicit_malloc_arena_max_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert memory.limit_arenas() is False


def test_trim_returns_freed_memory_without_error() -> None:
    garbage = [bytes(4096) for _ in range(1000)]
    del garbage
    memory.trim()  # a no-op where libc is not glibc
