"""Derive the engine's compact AOI files from the original shared data.

Run once from the repository root (the package never reads ../shared at run time)::

    python -m AOI.build_aoi_data --shared ../shared

Writes ``AOI/sites.geojson`` (the seven case-study sites: name, land cover, area in km2) and
``AOI/wrs2_descending.parquet`` (GeoParquet: path, row and the exact USGS footprint of all
28,892 WRS-2 descending path/rows; geometry untouched so areas match the source exactly).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import geopandas as gpd

HERE = Path(__file__).resolve().parent

# Land cover as described in the original project's README table (the shapefile's VegCover
# field holds terse working notes such as "Potato?").
LAND_COVER = {
    "North NT": "Conservation environments and irrigated perennial horticulture",
    "Central West NSW": "Grazing native vegetation and dryland cropping",
    "Central Tas": "Grazing modified pasture and irrigated cropping",
    "South West Qld": "Irrigated cropping",
    "East Gippsland Vic": "Production native forests and grazing modified pastures affected by bush fire",
    "North Qld": "Sugar cane with surrounding rainforest",
    "Wheatbelt WA": "Dryland cropping, wheat, oats and pasture",
}


def build_sites(shared: Path) -> gpd.GeoDataFrame:
    src = gpd.read_file(shared / "data" / "seed-sites" / "AOI_5km.shp").to_crs("EPSG:4326")
    names = src["Name"].str.strip()
    sites = gpd.GeoDataFrame(
        {"name": names, "land_cover": names.map(LAND_COVER), "area_km2": src["Area"]},
        geometry=src.geometry,
        crs="EPSG:4326",
    )
    return sites.sort_values("name").reset_index(drop=True)


def build_wrs2(shared: Path) -> gpd.GeoDataFrame:
    src = gpd.read_file(f"zip://{shared / 'data' / 'WRS2_descending.zip'}")
    wrs = gpd.GeoDataFrame(
        {"path": src["PATH"].astype("int16"), "row": src["ROW"].astype("int16")},
        geometry=src.geometry,
        crs=src.crs,
    )
    return wrs.sort_values(["path", "row"]).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=HERE.parent.parent / "shared", help="the shared/ folder")
    args = parser.parse_args()
    build_sites(args.shared).to_file(HERE / "sites.geojson", driver="GeoJSON")
    wrs = build_wrs2(args.shared)
    wrs.to_parquet(HERE / "wrs2_descending.parquet", compression="zstd", index=False)
    print(f"wrote {HERE / 'sites.geojson'} and {HERE / 'wrs2_descending.parquet'} ({len(wrs)} footprints)")


if __name__ == "__main__":
    main()
