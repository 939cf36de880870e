"""One error hierarchy for the whole engine.

Every error a user can cause derives from :class:`EngineError`; the CLI prints its message on
one line and exits non-zero without a traceback. Subclasses also inherit the matching builtin so
callers can catch them the usual way (rasterio's habit).
"""
from __future__ import annotations


class EngineError(Exception):
    """Root of all engine errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class ConfigError(EngineError, ValueError):
    """A configuration value or command-line flag is invalid."""


class AOIError(EngineError, ValueError):
    """An area of interest cannot be resolved or is unusable."""


class PlanError(EngineError, ValueError):
    """A tile plan cannot satisfy the limits it is asked to respect."""


class DataError(EngineError, RuntimeError):
    """The inputs cannot support the analysis (e.g. fewer than 10 optical-SAR pairs)."""


class SourceError(EngineError, RuntimeError):
    """A data source cannot be read."""


class RunDirError(EngineError, RuntimeError):
    """A run directory is missing, locked, or belongs to a different configuration."""


class DiskFull(RunDirError, OSError):
    """The run directory's file system is full: the run stops (finished tiles kept) until space is freed."""


def is_disk_full(e: BaseException) -> bool:
    """Whether ``e`` is "No space left on device" (every later write fails too)."""
    import errno

    return isinstance(e, OSError) and e.errno == errno.ENOSPC


class Interrupted(EngineError, KeyboardInterrupt):
    """The user stopped a run (Ctrl-C); finished work is kept."""

    exit_code = 130


class EarthEngineError(EngineError, RuntimeError):
    """Earth Engine refused a request or a task failed."""


class CredentialsError(EarthEngineError, PermissionError):
    """Earth Engine credentials or project are missing."""


class QuotaError(EarthEngineError):
    """The plan would exceed an Earth Engine quota."""


class MemoryLimitError(EarthEngineError):
    """A tile hit Earth Engine's memory or time limit; it must be split, not retried."""


class TransientError(EarthEngineError):
    """A 429, a 5xx or a transport failure: retry with backoff."""
