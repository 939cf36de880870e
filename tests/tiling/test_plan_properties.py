"""Property tests of the tile planner over random AOIs (polygons, holes, multipolygons, slivers)."""
from __future__ import annotations

import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely import affinity
from shapely.geometry import MultiPolygon, Point, Polygon

from tiling.budget import Budget
from tiling.grid import GridSpec, Tile
from tiling.plan import plan_tiles

X0, Y0 = 500_000.0, 6_100_000.0  # a southern-hemisphere UTM neighbourhood

coord = st.floats(-3000, 3000, allow_nan=False, allow_infinity=False)


@st.composite
def blob(draw) -> Polygon:
    pts = draw(st.lists(st.tuples(coord, coord), min_size=3, max_size=9, unique=True))
    hull = shapely.MultiPoint([(X0 + x, Y0 + y) for x, y in pts]).convex_hull
    if hull.area < 100:
        hull = Point(X0 + pts[0][0], Y0 + pts[0][1]).buffer(draw(st.floats(20, 800)))
    return hull


@st.composite
def aois(draw):
    kind = draw(st.sampled_from(["blob", "holed", "multi", "sliver"]))
    a = draw(blob())
    if kind == "holed":
        hole = a.centroid.buffer(max(1.0, (a.area**0.5) / 4))
        holed = a.difference(hole)
        return holed if holed.area > 0 else a
    if kind == "multi":
        b = affinity.translate(draw(blob()), draw(st.floats(4000, 9000)), draw(st.floats(-500, 500)))
        return shapely.unary_union([a, b])
    if kind == "sliver":
        length = draw(st.floats(500, 6000))
        width = draw(st.floats(0.5, 40))
        angle = draw(st.floats(0, 180))
        s = shapely.box(X0, Y0, X0 + length, Y0 + width)
        return affinity.rotate(s, angle, origin=(X0, Y0))
    return a


sizes = st.sampled_from([16, 32, 64, 128])
resolutions = st.sampled_from([10.0, 30.0])
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(aoi=aois(), size=sizes, res=resolutions)
def test_cores_disjoint_cover_and_touch(aoi, size, res):
    plan = plan_tiles(aoi, 32755, res, Budget(dates=10, max_bytes=2**40), tile_size=size)
    cores = [t.core for t in plan.tiles]
    assert len({t.id for t in plan.tiles}) == len(plan.tiles)
    union = shapely.unary_union(cores)
    # pairwise disjoint interiors: the union's area is the sum of the parts
    assert abs(union.area - sum(c.area for c in cores)) < 1e-6 * union.area
    # the union covers the AOI
    assert aoi.difference(union).area <= 1e-9 * aoi.area
    # every tile shares area with the AOI
    assert all(c.intersection(aoi).area > 0 for c in cores)
    # cores are on the pixel grid of the analysis scale
    for t in plan.tiles:
        minx, miny, maxx, maxy = t.core.bounds
        assert minx % res == 0 and maxy % res == 0 and (maxx - minx) == size * res


@SETTINGS
@given(aoi=aois(), res=resolutions, dates=st.integers(1, 400), budget_mb=st.floats(8, 8192))
def test_budget_sized_tiles_fit(aoi, res, dates, budget_mb):
    budget = Budget(dates=dates, max_bytes=int(budget_mb * 2**20))
    try:
        plan = plan_tiles(aoi, 32755, res, budget)
    except Exception as e:  # only a too-small budget may refuse, with a remedy
        assert "TILE_BUDGET_MB" in str(e)
        return
    side = plan.grid.tile_size
    assert budget.fits(side)
    assert not budget.fits(side * 2) or side * 2 + 2 * budget.halo > 32768
    assert budget.tile_bytes(side) == dates * 10 * (side + 2 * budget.halo) ** 2 * 4


@SETTINGS
@given(aoi=aois(), size=sizes, res=resolutions, grow=st.floats(1, 2000),
       dx=st.floats(-5000, 5000), dy=st.floats(-5000, 5000))
def test_ids_stable_when_aoi_grows_or_shifts(aoi, size, res, grow, dx, dy):
    budget = Budget(dates=10, max_bytes=2**40)
    base = {t.id: t.core for t in plan_tiles(aoi, 32755, res, budget, tile_size=size).tiles}
    grown = {t.id: t.core for t in plan_tiles(aoi.buffer(grow), 32755, res, budget, tile_size=size).tiles}
    assert set(base) <= set(grown)
    assert all(grown[k].equals(v) for k, v in base.items())
    moved_aoi = affinity.translate(aoi, dx, dy)
    moved = {t.id: t.core for t in plan_tiles(moved_aoi, 32755, res, budget, tile_size=size).tiles}
    common = aoi.intersection(moved_aoi)
    for tid, core in base.items():
        if core.intersection(common).area > 1e-6:
            assert tid in moved and moved[tid].equals(core)


@given(ix=st.integers(-5000, 5000), iy=st.integers(-5000, 5000), path=st.text("abcd", max_size=3))
def test_children_partition_parent_and_ids_round_trip(ix, iy, path):
    grid = GridSpec(32755, 30.0, 256)
    tile = Tile(grid, ix, iy, path)
    kids = tile.children()
    assert all(k.id.startswith(tile.id) and len(k.id) == len(tile.id) + 1 for k in kids)
    assert shapely.unary_union([k.core for k in kids]).equals(tile.core)
    assert sum(k.core.area for k in kids) == tile.core.area
    assert Tile.from_id(tile.id) == tile
    assert tile.halo.contains(tile.core) and tile.halo.area > tile.core.area


def test_split_depth_is_bounded():
    t = Tile(GridSpec(32755, 30.0, 64), 0, 0)
    grandkids = t.children()[0].children()
    assert grandkids[0].size == 16
    try:
        grandkids[0].children()
    except Exception as e:
        assert "cannot be split" in str(e)
    else:
        raise AssertionError("splitting below 16 px must be refused")


def test_multipolygon_parts_far_apart_give_no_tiles_between():
    a = shapely.box(X0, Y0, X0 + 100, Y0 + 100)
    b = shapely.box(X0 + 100_000, Y0, X0 + 100_100, Y0 + 100)
    plan = plan_tiles(MultiPolygon([a, b]), 32755, 30.0, Budget(10, 2**40), tile_size=64)
    assert 2 <= len(plan.tiles) <= 8
