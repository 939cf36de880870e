"""gee == local on the same data, at CI size: ``python -m benchmarks.gee_vs_local`` must pass.

Both backends on a 1.05 km x 1 km box near the North Qld site (Sentinel-2, 8 months, 64 px tiles: 4
tiles), through the engine's CLI, the gee backend against the executing stand-in: images table,
masks, gap statistics, models, predictions and filled NDVI compared, and gee tiled against gee
in one tile."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.standin, pytest.mark.slow]

CI_ARGS = ["--aoi", "145.771,-17.069,145.781,-17.060", "--mission", "S2", "--start", "2021-01-01",
           "--end", "2021-09-01", "--tile-size", "64"]


def test_gee_equals_local(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    from benchmarks.gee_vs_local import main

    code = main([*CI_ARGS, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    header = out.splitlines()[0]
    # the conditions the comparison must cover: several tiles, a paired date covering part of the
    # AOI, optical dates without S1
    tiles = int(header.split(": ")[1].split(" gee tiles")[0])
    assert tiles >= 4, header
    assert " 0 paired dates covering only part" not in header, header
    assert " 0 without S1" not in header, header
    assert "model constant" in out and "images table: identical" in out
