"""The serving processes' allocator settings (dermai_site.memory), in a fresh interpreter each."""

import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings apply to glibc only")


def run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return result.stdout


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
