"""STAC export and StacSource: synthetic data written as COGs + static catalog reads back the same."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.errors import SourceError
from engine.sources import get_source
from engine.sources.stac import StacSource
from engine.sources.stac_export import write_stac_catalog
from engine.sources.synthetic import SyntheticSource
from tiling.grid import GridSpec

G10 = GridSpec(32755, 10.0, 512, 11)
G30 = GridSpec(32755, 30.0, 512, 11)
COL, ROW = 19000, -820000
START, END = "2021-12-01", "2022-03-01"  # spans the S2 -0.1 offset change (2022-01-25)


@pytest.fixture(scope="module")
def src() -> SyntheticSource:
    return SyntheticSource(seed=2)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, src) -> str:
    out = tmp_path_factory.mktemp("stac")
    gb = G10.geobox(COL, ROW, 64, 64)
    write_stac_catalog(src, gb, "S2", START, END, out)
    write_stac_catalog(src, gb, "S1", START, END, out)
    gb30 = G30.geobox(COL // 3, ROW // 3, 32, 32)
    return write_stac_catalog(src, gb30, "L8", START, "2022-06-01", out)


def _assert_optical_close(a, b, tol=None):
    assert list(a.time.values) == list(b.time.values)
    assert list(a.id.values) == list(b.id.values)
    np.testing.assert_array_equal(a.qa.values, b.qa.values)
    for v in ("red", "nir"):
        x, y = a[v].values, b[v].values
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
        if tol is None:
            np.testing.assert_array_equal(x.view(np.uint32), y.view(np.uint32))
        else:
            assert np.nanmax(np.abs(x - y)) <= tol, (v, np.nanmax(np.abs(x - y)))


def _windows(grid, col, row):
    return [grid.geobox(col, row, 64, 64) if grid is G10 else grid.geobox(col, row, 32, 32),
            grid.geobox(col + 7, row + 5, 20, 17),
            grid.geobox(col + 1, row + 1, 9, 9, step=3)]


def test_catalog_layout(catalog):
    root = Path(catalog)
    assert root.name == "catalog.json" and root.exists()
    cat = json.loads(root.read_text())
    kids = {link["href"] for link in cat["links"] if link["rel"] == "child"}
    assert kids == {"./sentinel-2-l2a/collection.json", "./sentinel-1-grd/collection.json", "./landsat-c2-l2/collection.json"}
    item = json.loads(next((root.parent / "sentinel-2-l2a").glob("*/*.json")).read_text())
    assert set(item["assets"]) == {"red", "nir", "scl"}
    assert item["properties"]["proj:code"] == "EPSG:32755"
    assert item["properties"]["proj:shape"] == [64, 64]
    assert item["properties"]["synthetic"] is True
    assert item["assets"]["red"]["raster:bands"][0]["scale"] == 1e-4
    assert item["assets"]["red"]["href"].startswith("./")
    l8 = json.loads(next((root.parent / "landsat-c2-l2").glob("*/*.json")).read_text())
    assert set(l8["assets"]) == {"red", "nir08", "qa_pixel"} and l8["properties"]["platform"] == "landsat-8"
    s1 = json.loads(next((root.parent / "sentinel-1-grd").glob("*/*.json")).read_text())
    assert set(s1["assets"]) == {"vv", "vh"} and s1["properties"]["sar:instrument_mode"] == "IW"
    import rasterio

    with rasterio.open(next((root.parent / "sentinel-2-l2a").glob("*/red.tif"))) as ds:
        assert ds.dtypes[0] == "uint16" and ds.profile["tiled"] and ds.nodata == 0


def test_round_trip_s2_and_s1(catalog, src):
    st = get_source("stac", catalog=catalog)
    assert st.synthetic is True and st.name == "stac"  # export-stac labels its data synthetic
    for gb in _windows(G10, COL, ROW):
        c_syn = src.optical_catalog(gb, "S2", START, END)
        c_stac = st.optical_catalog(gb, "S2", START, END)
        assert c_syn.equals(c_stac)
        ids = list(c_syn["id"])
        _assert_optical_close(src.read_optical(gb, ids), st.read_optical(gb, ids), tol=0.5e-4 + 2e-7)
        s_syn = src.sar_catalog(gb, START, END)
        assert s_syn.equals(st.sar_catalog(gb, START, END))
        a, b = src.read_sar(gb, list(s_syn["id"])), st.read_sar(gb, list(s_syn["id"]))
        assert list(a.time.values) == list(b.time.values)
        for v in ("vv", "vh"):
            np.testing.assert_array_equal(a[v].values.view(np.uint32), b[v].values.view(np.uint32))
        assert st.read_truth_ndvi(gb, ids) is None


def test_round_trip_landsat(catalog, src):
    st = StacSource(catalog)
    for gb in _windows(G30, COL // 3, ROW // 3):
        cat = src.optical_catalog(gb, "L8", START, "2022-06-01")
        assert cat.equals(st.optical_catalog(gb, "L8", START, "2022-06-01"))
        _assert_optical_close(src.read_optical(gb, list(cat["id"])), st.read_optical(gb, list(cat["id"])),
                              tol=0.5 * 2.75e-5 + 2e-7)
    assert len(st.optical_catalog(gb, "L9", START, "2022-06-01")) == 0  # platform filter


def test_float_export_and_linear_sar_round_trip(tmp_path, src):
    gb = G10.geobox(COL + 500, ROW + 500, 24, 24)
    path = write_stac_catalog(src, gb, "S2", "2021-06-01", "2021-07-01", tmp_path, scaled=False)
    write_stac_catalog(src, gb, "S1", "2021-06-01", "2021-07-01", tmp_path, sar_units="linear")
    ids = list(src.optical_catalog(gb, "S2", "2021-06-01", "2021-07-01")["id"])
    _assert_optical_close(src.read_optical(gb, ids), StacSource(path).read_optical(gb, ids))  # bit-exact
    sids = list(src.sar_catalog(gb, "2021-06-01", "2021-07-01")["id"])
    a, b = src.read_sar(gb, sids), StacSource(path, sar_units="linear").read_sar(gb, sids)
    for v in ("vv", "vh"):
        np.testing.assert_allclose(a[v].values, b[v].values, atol=1e-4)


def test_windows_beyond_the_export(catalog, src):
    st = StacSource(catalog)
    # straddling the exported area: outside pixels are no-data (NaN, SCL 0 / QA fill)
    gb = G10.geobox(COL + 48, ROW - 8, 32, 32)
    ids = list(st.optical_catalog(gb, "S2", START, END)["id"])
    assert ids == list(src.optical_catalog(gb, "S2", START, END)["id"])
    ds = st.read_optical(gb, ids)
    assert np.isnan(ds.red.values[:, :8, :]).all() and (ds.qa.values[:, :8, :] == 0).all()
    ref = src.read_optical(gb, ids)
    np.testing.assert_array_equal(ds.qa.values[:, 8:, :16], ref.qa.values[:, 8:, :16])
    gb30 = G30.geobox(COL // 3 + 20, ROW // 3 + 20, 32, 32)
    l8 = st.read_optical(gb30, list(st.optical_catalog(gb30, "L8", START, "2022-06-01")["id"]))
    assert (l8.qa.values[:, 12:, :] == 1).all() and np.isnan(l8.red.values[:, 12:, :]).all()
    # entirely elsewhere: nothing listed, and a date no item covers reads as no data (a real
    # footprint covers part of an AOI: a tile outside it that day has no observation)
    far = G10.geobox(COL + 5000, ROW, 16, 16)
    assert len(st.optical_catalog(far, "S2", START, END)) == 0
    none = st.read_optical(far, ids[:2])
    assert list(none.id.values) == ids[:2] and np.isnan(none.red.values).all() and (none.qa.values == 0).all()
    assert np.isnan(st.read_sar(far, ["S1_20211205"]).vv.values).all()


def test_same_day_items_mosaic_across_windows_and_encodings(tmp_path, src):
    """Two adjacent windows exported with different encodings: one UTC day, two items, one image."""
    a = G10.geobox(COL, ROW, 20, 24)
    b = G10.geobox(COL + 20, ROW, 20, 24)
    write_stac_catalog(src, a, "S2", "2021-08-01", "2021-08-20", tmp_path, scaled=True)
    path = write_stac_catalog(src, b, "S2", "2021-08-01", "2021-08-20", tmp_path, scaled=False)
    st = StacSource(path)
    union = G10.geobox(COL + 4, ROW + 2, 32, 20)
    cat = st.optical_catalog(union, "S2", "2021-08-01", "2021-08-20")
    assert cat.equals(src.optical_catalog(union, "S2", "2021-08-01", "2021-08-20"))
    _assert_optical_close(src.read_optical(union, list(cat["id"])), st.read_optical(union, list(cat["id"])),
                          tol=0.5e-4 + 2e-7)


def test_errors(tmp_path):
    with pytest.raises(SourceError, match="needs a catalog"):
        get_source("stac", catalog=None)
    with pytest.raises(SourceError, match="pip install pystac-client"):
        try:
            import pystac_client  # noqa: F401
        except ImportError:
            StacSource("https://earth-search.aws.element84.com/v1")
        else:  # pragma: no cover - pystac-client present: the guard is not reachable offline
            raise SourceError("pip install pystac-client")
    with pytest.raises(SourceError, match="sar_units"):
        StacSource(str(tmp_path / "catalog.json"), sar_units="amplitude")
    with pytest.raises(SourceError, match="cannot read STAC catalog"):
        StacSource(str(tmp_path / "missing.json")).sar_catalog(G10.geobox(0, 0, 4, 4), START, END)
    with pytest.raises(SourceError, match="not a sar image"):
        StacSource(str(tmp_path / "missing.json")).read_sar(G10.geobox(0, 0, 4, 4), ["S2_20210101"])


def test_pickle(catalog):
    import pickle

    st = StacSource(catalog, sar_units="db")
    gb = G10.geobox(COL, ROW, 8, 8)
    st.sar_catalog(gb, START, END)
    st2 = pickle.loads(pickle.dumps(st))
    assert st2.sar_catalog(gb, START, END).equals(st.sar_catalog(gb, START, END))
