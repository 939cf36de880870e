"""Areas of interest: the shipped case-study sites and WRS-2 footprints, and ``--aoi`` resolution."""

from AOI.resolve import AOI, resolve_aoi, sites

__all__ = ["AOI", "resolve_aoi", "sites"]
