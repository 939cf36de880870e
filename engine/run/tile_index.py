"""The tile index of a plan as GeoParquet and GeoJSON (one row per tile)."""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd

from engine.io import atomic_path
from tiling.plan import TilePlan


def tile_frame(plan: TilePlan, status: dict[str, str] | None = None) -> gpd.GeoDataFrame:
    """One row per tile: id, core and halo geometry, pixel window, CRS (and status if given)."""
    rows = []
    for t in plan.tiles:
        col, row, w, h = t.window
        rows.append(
            {
                "tile_id": t.id,
                "ix": t.ix,
                "iy": t.iy,
                "level": t.level,
                "col_off": col,
                "row_off": row,
                "width": w,
                "height": h,
                "halo_px": plan.grid.halo,
                "crs": plan.grid.crs,
                "halo_wkt": t.halo.wkt,
                **({"status": status.get(t.id, "planned")} if status is not None else {}),
                "geometry": t.core,
            }
        )
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=plan.grid.crs)


def write_tile_index(frame: gpd.GeoDataFrame, out_dir: Path) -> tuple[Path, Path]:
    """Write ``tiles.parquet`` (grid CRS, core + halo geometries) and ``tiles.geojson`` (lon/lat)."""
    parquet, geojson = out_dir / "tiles.parquet", out_dir / "tiles.geojson"
    with atomic_path(parquet) as tmp:
        pq = frame.copy()
        pq["halo"] = gpd.GeoSeries.from_wkt(pq.pop("halo_wkt"), crs=frame.crs)
        pq.to_parquet(tmp, index=False)
    with atomic_path(geojson) as tmp:
        frame.to_crs("EPSG:4326").to_file(tmp, driver="GeoJSON")
    return parquet, geojson
