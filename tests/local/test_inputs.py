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
