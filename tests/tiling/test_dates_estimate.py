"""The tile budget's dates: the revisit of every track that sees the AOI (planning, no catalog)."""
from __future__ import annotations

import pandas as pd
import pytest

from engine.backends.local.global_pass import sample_geobox
from engine.run.context import acquisition_tracks, build_context
from engine.sources.synthetic import SyntheticSource
from tiling.budget import estimate_dates, swath_tracks


def test_swath_tracks_grow_with_width_and_latitude():
    # one S2 orbit sees a point near the equator; a 3 degree wide area meets two; at 60 degrees
    # the 290 km swath spans more than the 2.5 degree orbit spacing, so a point meets two
    assert swath_tracks("S2", 145.0, 145.0, 1.0) in (1, 2)
    assert swath_tracks("S2", 145.0, 148.0, 1.0) >= 2
    assert swath_tracks("S2", 145.0, 145.0, 60.0) >= 2
    assert swath_tracks("S2", 145.0, 145.0, 60.0) >= swath_tracks("S2", 145.0, 145.0, 0.0)
    assert swath_tracks("S1", 179.9, 179.95, 0.0) >= 1  # at the antimeridian


def test_estimate_dates_multiplies_the_revisit_by_the_tracks():
    assert estimate_dates("L8", 730) == 46
    assert estimate_dates("L8", 730, tracks=3) == 138
    assert estimate_dates("L8", 730, include_landsat9=True, tracks=2) == 2 * 92


@pytest.mark.parametrize("aoi,mission", [("091084", "L8"), ("North Qld", "S2"), ("Central Tas", "S2"),
                                         ("Wheatbelt WA", "S2"), ("North Qld", "L8")])
def test_the_plan_expects_the_dates_the_catalog_holds(aoi, mission):
    """The synthetic source acquires along the same tracks (WRS-2 paths, nominal orbits), so the
    plan's estimate is its catalog's count of dates; a scene meets three Landsat paths."""
    ctx = build_context(None, {"OPTICAL_MISSION": mission, "START_DATE": "2021-01-01", "END_DATE": "2022-01-01"}, aoi)
    over_aoi = sample_geobox(ctx.plan.grid, ctx.plan.aoi, 33)  # the catalog is over the AOI's bounds
    catalog = SyntheticSource(0).optical_catalog(over_aoi, mission, pd.Timestamp("2021-01-01", tz="UTC"),
                                                 pd.Timestamp("2022-01-01", tz="UTC"))
    assert ctx.plan.budget.dates == len(catalog)
    if aoi == "091084":
        assert acquisition_tracks("L8", ctx.aoi) == 3

