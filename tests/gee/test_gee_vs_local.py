"""gee == local on the same data, at CI size: ``python -m benchmarks.gee_vs_local`` must pass.

Both backends on the gee tests' QUICK plan (Landsat 8, half a year, 1.3 km x 1.2 km, 4 tiles of
32 px), through the engine's CLI, the gee backend against the executing stand-in: images table,
masks, gap statistics, observations and filled NDVI compared, and gee tiled against gee in one
tile. Half a year of Landsat 8 (with 90 % of the dates training) leaves too few clear training dates for models (masked in both
backends alike, and PCA smoothing off); the benchmark's default run compares models and
predictions (README, Benchmarks)."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.standin, pytest.mark.slow]

CI_ARGS = ["--aoi", "145.770,-17.070,145.782,-17.059", "--mission", "L8", "--start", "2021-01-01",
           "--end", "2021-07-01", "--tile-size", "32", "--set", "PCA_SMOOTH=false", "--set", "TRAIN_TEST_SPLIT=0.9"]


def test_gee_equals_local(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    from benchmarks.gee_vs_local import main

    code = main([*CI_ARGS, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    header = next(line for line in out.splitlines() if line.startswith("AOI "))
    # the conditions the comparison must cover: several tiles, a paired date covering part of the
    # AOI, optical dates without S1
    tiles = int(header.split(": ")[1].split(" gee tiles")[0])
    assert tiles >= 4, header
    assert " 0 paired dates covering only part" not in header, header
    assert " 0 without S1" not in header, header
    assert "model constant" in out and "images table: identical" in out
    assert "agrees (n equal" in out.split("held-out skill (gee downloaded")[1].splitlines()[0]
