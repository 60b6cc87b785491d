"""The serving processes' allocator settings (dermai_site.memory), in a fresh interpreter each."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from dermai_site import memory

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator settings apply to glibc only")


def run(code: str) -> str:
    # glibc's own allocator, as a worker has it: no preloaded allocator, no MALLOC_* tuning.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True, env=env
    )
    return result.stdout


@glibc_only
def test_freed_holes_in_the_heap_stay_resident_until_released():
    # 150 buffers of 1 MB from the heap, each followed by a small one that stays: freeing the big
    # ones leaves 150 holes of 1 MB between live blocks, which the trim threshold never returns.
    out = run(
        """
        from dermai_site.memory import keep_freed_memory, release_freed_memory, resident_mb
        keep_freed_memory()
        before = resident_mb()
        buffers, pins = [], []
        for _ in range(150):
            buffers.append(bytearray(2**20))
            buffers[-1][::4096] = b"x" * 256  # every page touched: resident
            pins.append(bytearray(2000))
        del buffers
        held = resident_mb()
        release_freed_memory()
        print(round(held - before), round(resident_mb() - before))
        """
    )
    held, released = map(int, out.split())
    assert held > 120  # kept: a worker that only checked its RSS would count this against its ceiling
    assert released < 20


@pytest.mark.parametrize(
    ("before", "after", "trims", "over"),
    [
        (400.0, None, 0, None),  # far below: one read, no trim
        (560.0, 500.0, 1, None),  # near: trims, and what is left is under the ceiling
        (640.0, 610.0, 1, 610.0),  # over even after trimming: replace it
        (None, None, 0, None),  # no /proc: never judged
    ],
)
def test_a_worker_is_judged_on_the_memory_it_holds_after_returning_its_free_heap(
    monkeypatch, before, after, trims, over
):
    readings, trimmed = iter([before, after]), []
    monkeypatch.setattr(memory, "resident_mb", lambda: next(readings))
    monkeypatch.setattr(memory, "release_freed_memory", lambda: trimmed.append(1))
    assert memory.over_ceiling(600) == over
    assert len(trimmed) == trims
