"""Build the data source a run asks for (``DATA_SOURCE``): the one factory of the sources."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from config.parameters import Parameters
from engine.errors import ConfigError, SourceError
from engine.sources.base import SOURCE_NAMES, Source


def get_source(name: str, **options: Any) -> Source:
    """Build a data source by name: ``"synthetic"`` or ``"stac"``.

    ``options`` go to the source's constructor (``seed`` for synthetic; ``catalog``,
    ``optical_collection``, ``sar_collection``, ``sar_units``, asset keys for stac).
    """
    key = str(name).strip().lower() if name is not None else ""
    if key == "synthetic":
        from engine.sources.synthetic import SyntheticSource

        cls: Any = SyntheticSource
    elif key == "stac":
        from engine.sources.stac import StacSource

        cls = StacSource
    else:
        raise ConfigError(
            f"unknown data source {name!r}: valid names are {', '.join(SOURCE_NAMES)} "
            "(set DATA_SOURCE accordingly)"
        )
    try:
        return cls(**options)
    except TypeError as e:
        raise SourceError(f"cannot build the {key!r} data source from options {sorted(options)}: {e}") from e


def source_for(params: Parameters) -> Source:
    """The data source the parameters ask for."""
    if params.DATA_SOURCE == "synthetic":
        return get_source("synthetic", seed=params.SYNTHETIC_SEED)
    if params.DATA_SOURCE == "ee":  # it lives with the Earth Engine client code, which sources may not import
        raise ConfigError("DATA_SOURCE 'ee' is built by engine.backends.gee.source.source_for_params: pass it to "
                          "LocalBackend(source=...)")
    return get_source("stac", catalog=params.STAC_CATALOG, optical_collection=params.STAC_OPTICAL_COLLECTION,
                      sar_collection=params.STAC_SAR_COLLECTION, sar_units=params.STAC_SAR_UNITS,
                      patch_url=url_signer(params.STAC_SIGN_URL))


def url_signer(spec: str | None) -> Callable[[str], str] | None:
    """The ``module:function`` named by STAC_SIGN_URL (e.g. ``planetary_computer:sign``), imported."""
    if not spec:
        return None
    module, _, name = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module), name) if module and name else None
    except ImportError as e:
        raise ConfigError(f"STAC_SIGN_URL {spec!r}: cannot import {module!r} ({e}); install it "
                          f"(e.g. pip install planetary-computer)") from None
    except AttributeError:
        func = None
    if not callable(func):
        raise ConfigError(f"STAC_SIGN_URL {spec!r} names no function: use module:function, e.g. planetary_computer:sign")
    return func


__all__ = ["get_source", "source_for", "url_signer"]
