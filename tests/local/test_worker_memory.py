"""A local worker keeps the memory it frees for its next tile, instead of handing it back to the
operating system (which, on a virtual machine, makes the next tile fault it in again, slowly)."""
from __future__ import annotations

import os

from engine.backends.local.dask import open_client

MIB = 2**20


def _resident() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _allocate_and_free(n_bytes: int) -> tuple[int, int]:
    """In a worker: resident memory gained by filling an array of ``n_bytes``, and kept after freeing it."""
    import numpy as np

    before = _resident()
    a = np.ones(n_bytes // 8)
    held = _resident()
    del a
    return held - before, _resident() - before


def test_a_worker_keeps_a_freed_tile_array_for_the_next_tile():
    with open_client(None, 1) as client:
        gained, kept = client.submit(_allocate_and_free, 200 * MIB, pure=False).result()
    assert gained >= 190 * MIB  # the array was resident
    assert kept >= gained - 8 * MIB, (gained / MIB, kept / MIB)  # and its pages stayed with the worker
