"""Property tests of the tile planner over random AOIs (polygons, holes, multipolygons, slivers)."""
from __future__ import annotations

import numpy as np
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely import affinity
from shapely.geometry import MultiPolygon, Point, Polygon

from tiling.budget import Budget
from tiling.grid import GridSpec, Tile, Window
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


@SETTINGS
@given(aoi=aois(), size=sizes, res=resolutions)
def test_compute_windows_hold_every_aoi_pixel_and_little_else(aoi, size, res):
    """A tile's compute window holds every pixel of its core whose centre is in the AOI (the engine's
    'in the AOI'), lies in the core, and is the bounding window of the AOI's part of the core: never
    more than the core cut to the AOI's bounding box."""
    plan = plan_tiles(aoi, 32755, res, Budget(dates=10, max_bytes=2**40), tile_size=size)
    shapely.prepare(aoi)
    aoi_box = Window.covering(aoi.bounds, res)
    for tile in plan.tiles:
        col, row, w, h = tile.window
        cols, rows = np.meshgrid(np.arange(col, col + w), np.arange(row, row + h))
        inside = shapely.contains_xy(aoi, (cols + 0.5) * res, -(rows + 0.5) * res)
        window = plan.compute_window(tile)
        if window is None:
            assert not inside.any()
            continue
        assert window.intersection(tile.window) == window
        wc, wr, ww, wh = window
        in_window = (cols >= wc) & (cols < wc + ww) & (rows >= wr) & (rows < wr + wh)
        assert not (inside & ~in_window).any()
        assert window.intersection(aoi_box) == window
        assert window == Window.covering(aoi.intersection(tile.core).bounds, res).intersection(tile.window)


def test_a_diagonal_aoi_computes_little_beyond_its_own_pixels():
    """A triangle over 8 x 8 tiles of 64 px: its tiles cut to its bounding box hold 1.24 times its
    pixels (the tiles along the diagonal, whole); its compute windows, under 1.1 times."""
    side = 8 * 64 * 30.0
    tri = Polygon([(X0, Y0), (X0 + side, Y0), (X0, Y0 + side)])
    plan = plan_tiles(tri, 32755, 30.0, Budget(dates=10, max_bytes=2**40), tile_size=64)
    box = Window.covering(tri.bounds, 30.0)
    bbox_cut = sum(w.width * w.height for t in plan.tiles if (w := box.intersection(t.window)) is not None)
    assert bbox_cut > 1.2 * plan.aoi_pixels
    assert plan.aoi_pixels <= plan.compute_pixels < 1.1 * plan.aoi_pixels
