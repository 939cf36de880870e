"""A full disk stops a local run at once with one line and the resume command (every later tile would fail)."""
from __future__ import annotations

import errno
import time

import pytest
from distributed import Client, LocalCluster

from engine.backends.local.dask import run_wave
from engine.run.stages import TileOutcome
from tiling.grid import GridSpec, Tile


def _task(tile: Tile) -> TileOutcome:
    if tile.ix == 3:
        raise OSError(errno.ENOSPC, "No space left on device", "/full/cube.zarr/filled/c/0/0/0")
    if tile.ix == 4:
        raise ValueError("a bug in one tile")
    time.sleep(0.05)
    return TileOutcome(tile.id, "train", "done")


def test_a_full_disk_stops_the_wave_where_another_failure_does_not():
    grid = GridSpec(epsg=32755, resolution=30.0, tile_size=64, halo=12)
    started: list[str] = []
    done: list[TileOutcome] = []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        run_wave(client, "train", _task, [Tile(grid, i, 0) for i in (4, 5, 6)], "x", [],
                 lambda t: started.append(t.id), done.append)
        assert [o.status for o in done] == ["failed", "done", "done"]  # a bug fails its tile only
        started.clear()
        done.clear()
        with pytest.raises(OSError) as e:
            run_wave(client, "train", _task, [Tile(grid, i, 0) for i in range(20)], "y", [],
                     lambda t: started.append(t.id), done.append)
    assert e.value.errno == errno.ENOSPC
    assert [o.tile_id for o in done if o.status == "failed"] == [Tile(grid, 3, 0).id]
    assert len(started) <= 3 + 2  # tiles 0-2, the full one, and what was in flight behind it; never all 20


def test_the_cli_says_disk_full_in_one_line_with_the_resume_command(run_cli, tmp_path, monkeypatch):
    import engine.cli.commands as commands

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "cube.zarr" / "x"))

    monkeypatch.setattr(commands, "_execute_run", full)
    code, out, err = run_cli("run", "--aoi", "145.77,-17.07,145.78,-17.06", "--run-dir", str(tmp_path / "run"),
                             "--yes", "-q")
    assert code == 2 and "Traceback" not in err
    line = err.strip()
    assert "\n" not in line and line.startswith("error: no space left on device writing ")
    assert line.endswith(f"then resume with: python -m engine resume {tmp_path / 'run'}")
