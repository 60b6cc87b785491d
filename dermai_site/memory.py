"""Allocator settings for serving processes (gunicorn workers, and the benchmarks that stand in for them)."""

import ctypes
import os
import platform
from pathlib import Path

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
KEPT_FREE_MB = 64  # the freed heap a worker may keep (M_TRIM_THRESHOLD)


def keep_freed_memory() -> None:
    """Let glibc keep freed buffers in the heap instead of returning each one to the kernel.

    With glibc's defaults, freed memory goes back to the kernel eagerly (large buffers are unmapped,
    the top of the heap is trimmed), and the next request faults its image and activation buffers
    in again: 2–3 ms of system time per request, 15 % of a worker's CPU. With these settings it is
    ~0.2 ms, for a few MB more RSS (docs/benchmarks.md).
    Other C libraries are left alone.
    """
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024)  # allocations below 16 MB come from the heap
    libc.mallopt(M_TRIM_THRESHOLD, KEPT_FREE_MB * 1024 * 1024)  # this much free heap is kept


def release_freed_memory() -> None:
    """Give every free page of the heap back to the kernel now (glibc's ``malloc_trim``).

    Requests of different sizes (an 11 MB upload, then a small one) leave free holes inside the heap
    that the trim threshold never returns, so a worker's RSS creeps up by tens of MB under varied
    traffic. A trim costs about 1 ms here, so it runs only when a worker nears its ceiling.
    """
    if platform.libc_ver()[0] == "glibc":
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def resident_mb() -> float | None:
    """This process's resident memory (RSS) in MB, or None where /proc is not available."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def over_ceiling(ceiling_mb: float) -> float | None:
    """This process's RSS in MB when it exceeds ``ceiling_mb`` even after returning its free heap, else None.

    Within :data:`KEPT_FREE_MB` of the ceiling the free heap is returned first (:func:`release_freed_memory`):
    only memory still held after that counts. Below that band a check is one read of /proc.
    """
    rss = resident_mb()
    if rss is None or rss <= ceiling_mb - KEPT_FREE_MB:
        return None
    release_freed_memory()
    rss = resident_mb()
    return rss if rss is not None and rss > ceiling_mb else None
