"""Data sources behind the :class:`~engine.sources.base.Source` protocol.

* ``synthetic`` (:class:`~engine.sources.synthetic.SyntheticSource`): the embedded,
  deterministic, tiling-independent data with ground truth (model in ``SYNTHETIC.md``);
* ``stac`` (:class:`~engine.sources.stac.StacSource`): a static STAC catalog or a STAC API;
* :func:`~engine.sources.stac_export.write_stac_catalog` writes a source's data as COGs plus a
  static STAC catalog that ``stac`` reads back.

Heavy modules (numba, pystac, odc-stac, rasterio) load on first use.
"""
from __future__ import annotations

from typing import Any

from engine.sources.base import SOURCE_NAMES, Source, make_id, parse_id
from engine.sources.factory import get_source, source_for

__all__ = ["Source", "SOURCE_NAMES", "get_source", "source_for", "make_id", "parse_id", "SyntheticSource", "StacSource",
           "write_stac_catalog"]


def __getattr__(name: str) -> Any:
    if name == "SyntheticSource":
        from engine.sources.synthetic import SyntheticSource

        return SyntheticSource
    if name == "StacSource":
        from engine.sources.stac import StacSource

        return StacSource
    if name == "write_stac_catalog":
        from engine.sources.stac_export import write_stac_catalog

        return write_stac_catalog
    raise AttributeError(f"module 'engine.sources' has no attribute {name!r}")
