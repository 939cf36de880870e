"""Fixtures for local-backend runs: small AOIs placed on known tile boundaries."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyproj import Transformer
from shapely.geometry import box, mapping
import shapely
import numpy as np

EPSG = 32755
# A 3 km x 3 km square inside one 512-px (5.12 km) tile of the 10 m grid, near the North Qld site.
SQUARE_UTM = box(737_600, 8_112_200, 740_600, 8_115_200)
SHORT = ["--mission", "S2", "--start", "2021-01-01", "--end", "2021-09-01"]


def write_aoi(path: Path, geom_utm) -> Path:
    tr = Transformer.from_crs(f"EPSG:{EPSG}", "EPSG:4326", always_xy=True)
    geom = shapely.transform(geom_utm, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": path.stem}, "geometry": mapping(geom)}]}))
    return path


@pytest.fixture
def square_aoi(tmp_path) -> Path:
    return write_aoi(tmp_path / "square.geojson", SQUARE_UTM)
