"""The local cluster's dask keeps short developer logs: a tile task's arguments (the run's context and
statistics) are not kept alive by the scheduler, in the driver, once the task is done."""
from __future__ import annotations

import gc

from engine.backends.local.dask import DASK_LOG_LENGTH, open_client, run_wave
from engine.run.stages import TileOutcome
from tiling.grid import GridSpec, Tile

MARK = "dask-log-probe"


def _task(shared: list, tile: Tile) -> TileOutcome:
    return TileOutcome(tile.id, "train", "done")


def _alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is list and len(o) == 2 and type(o[0]) is str and o[0] == MARK)


def test_the_scheduler_keeps_no_more_than_a_short_log_of_the_tasks_arguments():
    grid = GridSpec(epsg=32755, resolution=30.0, tile_size=64, halo=12)
    n = 3 * DASK_LOG_LENGTH
    shared = [MARK, list(range(1000))]  # what the driver holds itself: one
    with open_client(None, 1) as client:
        done: list[TileOutcome] = []
        run_wave(client, "train", _task, [Tile(grid, i, 0) for i in range(n)], "x", [shared],
                 lambda t: None, done.append)
        assert [o.status for o in done] == ["done"] * n
        # each task's copy, unpickled by the scheduler in this process, goes with the task but for the
        # last few messages the log holds (dask's default log of 1000 kept all of them)
        assert _alive() <= 1 + DASK_LOG_LENGTH + 2
