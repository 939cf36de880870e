"""Real catalogs as they are: partial footprints, overlapping same-day granules whose masks
disagree, a granule in the neighbouring UTM zone, and the same items behind a real STAC API
(``rustac serve`` on loopback) queried through pystac-client."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from engine.run.cube import open_cube
from engine.science.gaps import GAP_BANDS
from engine.science.optical import cloud_mask
from engine.sources.stac import StacSource
from tests.sources import realistic_catalog as rc
from tiling.grid import GridSpec

AOI = ",".join(map(str, rc.AOI))
RUN = ("--aoi", AOI, "--mission", "S2", "--start", rc.START, "--end", rc.END, "--yes", "-q")
GRID = GridSpec(32755, 10.0, 32, 11)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> str:
    return rc.build(tmp_path_factory.mktemp("realistic"))


def _window(st: StacSource):
    from odc.geo.geom import box

    b = box(*rc.AOI, "EPSG:4326").to_crs("EPSG:32755").boundingbox
    return GRID.geobox(int(b.left // 10), int(-b.top // 10), 130, 125)


def test_overlapping_granules_merge_first_clear_then_first_valid(catalog):
    st = StacSource(catalog)
    gb = _window(st)
    items = st._items(gb, "S2", 0, 2**62)
    day = next(d for d in sorted({i.datetime.date() for i in items})
               if sum(i.datetime.date() == d for i in items) == 2)
    a, b = [i for i in items if i.datetime.date() == day]
    assert a.properties["proj:code"] == "EPSG:32755" and b.properties["proj:code"] == "EPSG:32756"
    bands = ("red", "nir", "qa")
    (ga,), (gb_,) = st._load([a], "S2", bands, gb).values(), st._load([b], "S2", bands, gb).values()
    (merged,) = st._load([a, b], "S2", bands, gb).values()
    cloudy_a, valid_a = cloud_mask("S2", ga["qa"])
    cloudy_b, valid_b = cloud_mask("S2", gb_["qa"])
    valid_a &= np.isfinite(ga["red"] + ga["nir"])
    valid_b &= np.isfinite(gb_["red"] + gb_["nir"])
    clear_a, clear_b = valid_a & ~cloudy_a, valid_b & ~cloudy_b
    expect = np.where(clear_a, 0, np.where(clear_b, 1, np.where(valid_a, 0, np.where(valid_b, 1, 0))))
    for band in bands:
        want = np.where(expect == 0, ga[band], gb_[band])
        np.testing.assert_array_equal(merged[band], want)
    # the cases the catalog plants all occur: A saturated (SCL 1) first with B valid; A cloudy, B clear
    assert ((ga["qa"] == 1) & valid_b).sum() > 100 and (merged["qa"][(ga["qa"] == 1) & valid_b] != 1).all()
    assert (cloudy_a & clear_b).sum() > 100 and (merged["qa"][cloudy_a & clear_b] == gb_["qa"][cloudy_a & clear_b]).all()
    assert (clear_a & cloudy_b).sum() > 100
    # granule A's swath edge: B alone covers the east, A alone the west
    assert (~valid_a & valid_b).sum() > 1000 and (valid_a & ~valid_b).sum() > 1000


def _run(run_cli, tmp: Path, name: str, stac: str, tile: int) -> Path:
    out = tmp / name
    code, _, err = run_cli("run", *RUN, "--stac", stac, "--tile-size", str(tile), "--run-dir", str(out))
    assert code == 0, err
    return out


def _same_outputs(a_dir: Path, b_dir: Path, tol: float) -> None:
    a, b = xr.align(open_cube(a_dir / "cube.zarr"), open_cube(b_dir / "cube.zarr"), join="inner")
    assert a.sizes["x"] >= 130 and a.sizes["time"] > 20
    for name in ("filled", "mask", "prediction", "observation", *GAP_BANDS):
        x, y = a[name].values.astype(float), b[name].values.astype(float)
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=name)
        assert np.nanmax(np.abs(x - y), initial=0.0) <= tol, name
    ia, ib = pd.read_csv(a_dir / "images.csv"), pd.read_csv(b_dir / "images.csv")
    pd.testing.assert_frame_equal(ia.drop(columns="MAE"), ib.drop(columns="MAE"))
    np.testing.assert_allclose(ia["MAE"], ib["MAE"], atol=1e-7)


@pytest.mark.slow
def test_tiled_run_on_a_realistic_catalog_equals_the_untiled_run(run_cli, catalog, tmp_path):
    untiled = _run(run_cli, tmp_path, "untiled", catalog, 256)
    tiled = _run(run_cli, tmp_path, "tiled", catalog, 32)
    tiles = pd.read_parquet(tiled / "tiles.parquet")
    assert len(tiles) >= 9
    _same_outputs(untiled, tiled, 1e-4)
    images = pd.read_csv(tiled / "images.csv")
    assert images["Paired"].sum() >= 10


# --- a real STAC API on loopback ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stac_api(catalog, tmp_path_factory):
    """``rustac serve`` (stac-utils' STAC API server, in-memory backend) with the catalog's items,
    their asset hrefs absolute ``file://`` URLs as an API serves absolute URLs."""
    import pystac

    exe = shutil.which("rustac") or str(Path(sys.executable).with_name("rustac"))
    if not Path(exe).exists():
        pytest.fail("rustac is not installed (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("api")
    cat = pystac.Catalog.from_file(catalog)
    cat.make_all_asset_hrefs_absolute()
    files = []
    for coll in cat.get_children():
        d = coll.to_dict(include_self_link=False, transform_hrefs=False)
        d["links"] = []
        (root / f"{coll.id}.json").write_text(json.dumps(d))
        with open(root / f"{coll.id}.ndjson", "w") as f:
            for it in coll.get_items():
                di = it.to_dict(include_self_link=False, transform_hrefs=False)
                di["links"] = []
                for asset in di["assets"].values():
                    asset["href"] = Path(asset["href"]).as_uri()
                f.write(json.dumps(di) + "\n")
        files += [root / f"{coll.id}.json", root / f"{coll.id}.ndjson"]
    addr = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([exe, "serve", "-a", addr, *map(str, files)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://{addr}"
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/collections", timeout=2) as r:
                if len(json.load(r)["collections"]) == 2:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"rustac serve did not start: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


def test_the_api_lists_what_the_static_catalog_lists(catalog, stac_api):
    static, api = StacSource(catalog), StacSource(stac_api)
    assert api.is_api and not static.is_api
    gb = _window(static)
    for mission in ("S2", "S1"):
        a = static.sar_catalog(gb, rc.START, rc.END) if mission == "S1" else static.optical_catalog(gb, "S2", rc.START, rc.END)
        b = api.sar_catalog(gb, rc.START, rc.END) if mission == "S1" else api.optical_catalog(gb, "S2", rc.START, rc.END)
        pd.testing.assert_frame_equal(a, b)
    ids = list(static.optical_catalog(gb, "S2", rc.START, "2021-12-01")["id"])
    xr.testing.assert_identical(static.read_optical(gb, ids).drop_attrs(), api.read_optical(gb, ids).drop_attrs())


@pytest.mark.slow
def test_a_run_from_the_api_equals_a_run_from_the_static_catalog(run_cli, catalog, stac_api, tmp_path):
    static = _run(run_cli, tmp_path, "static", catalog, 64)
    api = _run(run_cli, tmp_path, "api", stac_api, 64)
    _same_outputs(static, api, 0.0)
    assert json.loads((api / "manifest.json").read_text())["source"] == "stac"


def test_signed_asset_urls(catalog, tmp_path):
    """Assets that need signing (Planetary Computer) read through STAC_SIGN_URL's function."""
    import pystac

    from config.parameters import Parameters
    from engine.sources import source_for
    from engine.errors import ConfigError, SourceError
    from tests.sources import signing

    cat = pystac.Catalog.from_file(catalog)
    cat.make_all_asset_hrefs_absolute()
    for item in cat.get_items(recursive=True):
        for asset in item.assets.values():
            asset.href = "unsigned://" + asset.href
    cat.normalize_hrefs(str(tmp_path / "signed"))
    cat.save(catalog_type=pystac.CatalogType.ABSOLUTE_PUBLISHED)
    path = str(tmp_path / "signed" / "catalog.json")
    base = dict(DATA_SOURCE="stac", STAC_CATALOG=path)
    unsigned = source_for(Parameters(**base))
    signed = source_for(Parameters(**base, STAC_SIGN_URL="tests.sources.signing:sign"))
    gb = _window(unsigned)
    ids = list(unsigned.sar_catalog(gb, rc.START, "2021-11-20")["id"])
    with pytest.raises(SourceError, match="reading"):
        unsigned.read_sar(gb, ids)
    got = signed.read_sar(gb, ids)
    want = StacSource(catalog).read_sar(gb, ids)
    np.testing.assert_array_equal(got.vv.values, want.vv.values)
    assert signing.SIGNED and all(h.startswith("unsigned://") for h in signing.SIGNED)
    for bad, msg in (("nosuchmodule_xyz:sign", "cannot import"), ("tests.sources.signing:nope", "names no function"),
                     ("tests.sources.signing", "names no function")):
        with pytest.raises(ConfigError, match=msg):
            source_for(Parameters(**base, STAC_SIGN_URL=bad))
