"""Whole-scene SAR-based cloud infilling of optical NDVI time series."""
__version__ = "0.1.0"
