"""Allocator settings for serving processes (gunicorn workers, and the benchmarks that stand in for them)."""

import ctypes
import os
import platform
from pathlib import Path

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>


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
    libc.mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024)  # up to 64 MB of free heap is kept


def resident_mb() -> float | None:
    """This process's resident memory (RSS) in MB, or None where /proc is not available."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
