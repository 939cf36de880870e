"""Damaged outputs of a completed run are detected on resume and exactly their tiles are redone."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.reliability.helpers import GLOBAL, assert_same_products, attempts, run_cli_proc, tile_chunk

pytestmark = pytest.mark.slow


def test_damaged_outputs_are_redone_and_nothing_else(reference, run_cli, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference.run_dir, run_dir)
    tiles = sorted({t for (t, s) in attempts(run_dir) if t != GLOBAL})
    assert len(tiles) == reference.n_tiles >= 5

    truncated, flipped, deleted, gap_deleted, garbled = tiles[0], tiles[2], tiles[4], tiles[6], tiles[8]
    model = run_dir / "tiles" / truncated / "model.tif"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # a train product
    chunk = tile_chunk(run_dir, flipped, "filled")  # a finish product
    data = bytearray(chunk.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    chunk.write_bytes(bytes(data))
    tile_chunk(run_dir, deleted, "prediction").unlink()  # a finish product
    tile_chunk(run_dir, gap_deleted, "gap_max").unlink()  # a train product (gap layer)
    shard = tile_chunk(run_dir, garbled, "observation")  # a whole shard overwritten: its index too
    shard.write_bytes(os.urandom(shard.stat().st_size))

    # status reports the damage before the resume (and changes nothing)
    code, out, err = run_cli("status", str(run_dir))
    assert code == 3 and "DAMAGED" in out, out[-800:]
    for t in (truncated, flipped, deleted, gap_deleted, garbled):
        assert t in out.split("damaged (missing or corrupt):")[1], (t, out[-800:])
    before = attempts(run_dir)
    proc = run_cli_proc(["resume", str(run_dir), "-q"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = attempts(run_dir)
    changed = {k for k in before if after[k] != before[k]}
    # a finish redo needs the tile's stage-A work files, which a completed run has deleted: it retrains
    expected = {(t, s) for t in (truncated, flipped, deleted, gap_deleted, garbled) for s in ("train", "finish")}
    assert changed == expected | {(GLOBAL, "merge")}, sorted(changed)
    assert all(after[k] == before[k] + 1 for k in changed)
    assert_same_products(run_dir, reference.run_dir)

    code, out, err = run_cli("status", str(run_dir))
    assert code == 0, out[-500:]
