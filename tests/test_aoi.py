"""AOI resolution: WRS-2 spellings, sites, vector files, bboxes, UTM zones."""
from __future__ import annotations

import geopandas as gpd
import pytest

from AOI.resolve import parse_wrs2, resolve_aoi, sites, utm_epsg
from engine.errors import AOIError
from tests.conftest import SHARED


@pytest.mark.parametrize("spelling", ["091084", "91/84", "091/084", "p091r084", "P91R84", "91 84", "091_084"])
def test_wrs2_spellings(spelling):
    assert parse_wrs2(spelling) == (91, 84)
    aoi = resolve_aoi(spelling)
    assert aoi.kind == "wrs2" and aoi.name == "WRS2_091084" and aoi.epsg == 32755


@pytest.mark.skipif(not (SHARED / "data" / "WRS2_descending.zip").exists(), reason="shared data not beside the repo")
def test_wrs2_footprint_matches_usgs_polygon():
    usgs = gpd.read_file(f"zip://{SHARED / 'data' / 'WRS2_descending.zip'}")
    ref = usgs[(usgs.PATH == 91) & (usgs.ROW == 84)].geometry.iloc[0]
    aoi = resolve_aoi("091084")
    assert aoi.geometry.symmetric_difference(ref).area <= 1e-3 * ref.area
    ref_km2 = gpd.GeoSeries([ref], crs=4326).to_crs(32755).area.iloc[0] / 1e6
    assert abs(aoi.area_km2 - ref_km2) <= 1e-3 * ref_km2


def test_all_sites_resolve_case_insensitively():
    names = list(sites()["name"])
    assert len(names) == 7
    for name in names:
        for spelling in (name, name.upper(), name.lower()):
            aoi = resolve_aoi(spelling)
            assert aoi.kind == "site" and aoi.name == name
            assert 3 < aoi.area_km2 < 30
    assert resolve_aoi("Wheatbelt WA").epsg == 32750


def test_unknown_site_lists_valid_names():
    with pytest.raises(AOIError) as e:
        resolve_aoi("Atlantis")
    assert "North Qld" in str(e.value) and "Wheatbelt WA" in str(e.value)


def test_vector_file_union_and_pick(aoi_files):
    both = resolve_aoi(str(aoi_files["fields"]))
    one = resolve_aoi(str(aoi_files["fields"]), feature="paddock 7")
    assert both.area_km2 > one.area_km2 > 0
    assert any("unioned" in n for n in both.notes)
    with pytest.raises(AOIError, match="no feature named"):
        resolve_aoi(str(aoi_files["fields"]), feature="nope")


@pytest.mark.parametrize("key,match", [("empty", "no features"), ("points", "not a polygon"), ("garbage", "cannot read")])
def test_bad_vector_files(aoi_files, key, match):
    with pytest.raises(AOIError, match=match):
        resolve_aoi(str(aoi_files[key]))


def test_bbox_and_zone_crossing():
    aoi = resolve_aoi("146.5,-20,148.5,-19")  # crosses 55/56 at 150? no: 144-150 is zone 55
    assert aoi.epsg == 32755 and aoi.notes == ()
    crossing = resolve_aoi("149,-20,152,-19")
    assert crossing.epsg == 32756 and "spans UTM zones" in crossing.notes[0]
    forced = resolve_aoi("149,-20,152,-19", crs="EPSG:32755")
    assert forced.epsg == 32755
    assert utm_epsg(0.5, 10) == 32631 and utm_epsg(-0.5, -10) == 32730


@pytest.mark.parametrize("bad", ["0/0", "234/1", "91/249", "10,10,5,5", "-200,0,0,10", "1,2,3", "nowhere.gpkg", ""])
def test_bad_aoi_specs(bad):
    with pytest.raises(AOIError):
        resolve_aoi(bad)
