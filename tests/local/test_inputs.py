"""The streamed SAR composites equal the composites of the period's whole stack, bit for bit."""
from __future__ import annotations

import numpy as np

from engine.backends.local import inputs
from engine.backends.local.inputs import read_composites, to_days
from engine.science.sar import composite
from engine.sources.synthetic import SyntheticSource
from tiling.grid import GridSpec


def test_read_composites_equals_the_whole_stack(monkeypatch):
    src = SyntheticSource(seed=1)
    gbox = GridSpec(32755, 30.0, 64).geobox(10600, -263800, 40, 30)  # near the North Qld site
    sar = src.sar_catalog(gbox, "2020-12-01", "2021-06-01").sort_values("time")
    days = to_days(sar["time"])
    assert len(sar) > 12
    # unsorted targets, one repeated, one with no S1 image in its window
    targets = np.array([days[9] + 3, days[2], days[0] - 40, days[5] + 1, days[2], days[-1]])
    stack = src.read_sar(gbox, list(sar["id"]))
    want = [composite(stack[b].values, days, targets, 12)[0] for b in ("vv", "vh")]
    assert np.isfinite(want[0]).any() and np.isnan(want[0][2]).all()
    monkeypatch.setattr(inputs, "CHUNK_IMAGES", 3)  # several reads, slots freed, reused and grown
    reads = []
    real = src.read_sar
    monkeypatch.setattr(src, "read_sar", lambda g, ids: reads.append(list(ids)) or real(g, ids))
    got = read_composites(src, gbox, list(sar["id"]), days, targets, 12)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.float32 and np.array_equal(g, w, equal_nan=True)
    read = [i for chunk in reads for i in chunk]
    assert len(read) == len(set(read)) and len(reads) > 1  # each image read once, in chunks


def test_truth_read_on_the_skill_lattice_equals_the_window_read_selected():
    from types import SimpleNamespace

    import pandas as pd

    from engine.backends.local.finish import skill_truth
    from engine.backends.scoring import skill_pixels
    from tiling.grid import Window

    src = SyntheticSource(seed=2)
    grid = GridSpec(32755, 30.0, 64)
    window = Window(10601, -263803, 41, 29)  # not aligned to the lattice on either axis
    gbox = grid.geobox(*window)
    ids = list(src.optical_catalog(gbox, "S2", "2021-01-01", "2021-03-01")["id"][:4])
    inside = np.ones(gbox.shape, bool)
    inside[5:12, 7:30] = False  # a hole of the AOI
    for step in (1, 3, 5):
        stats = SimpleNamespace(skill_step=step, paired=pd.DataFrame({"id": ids}))
        want = src.read_truth_ndvi(gbox, ids).values[:, skill_pixels(window, stats, inside)]
        got = skill_truth(src, grid, window, stats, inside)
        assert got.shape == want.shape and want.shape[1] > 0
        assert np.array_equal(got, want, equal_nan=True)
