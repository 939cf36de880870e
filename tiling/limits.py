"""Earth Engine limits that size tiles and dispatch, one named constant each.

Sources: ../shared/docs/earth-engine-limits.md (Earth Engine docs, earthengine-api 1.7.x source,
user reports). Numbers marked "unconfirmed" there are configurable in ``Parameters.json``.
"""

from __future__ import annotations

# computePixels / getPixels: 48 MiB uncompressed per request (pixels x bands x bytes + 1 mask byte
# per pixel), at most 32,768 px per side and 1,024 bands (EE docs; Xee's REQUEST_BYTE_LIMIT).
REQUEST_BYTE_LIMIT = 48 * 1024 * 1024
REQUEST_MAX_SIDE = 32_768
REQUEST_MAX_BANDS = 1_024

# getDownloadURL: 32 MiB and 10,000 px per side (EE docs).
DOWNLOAD_BYTE_LIMIT = 32 * 1024 * 1024
DOWNLOAD_MAX_SIDE = 10_000

# Export.image maxPixels default is 1e8 (a WRS-2 scene at 10 m is ~3.3e8); no documented cap, 1e13
# is common. The engine always sets it explicitly.
EXPORT_DEFAULT_MAX_PIXELS = 100_000_000
EXPORT_MAX_PIXELS = 10_000_000_000_000

# reduceRegion: maxPixels default 1e7; tileScale 1..16 trades memory for time (EE docs).
REDUCE_REGION_DEFAULT_MAX_PIXELS = 10_000_000
REDUCE_REGION_MAX_PIXELS = 10_000_000_000_000
MAX_TILE_SCALE = 16

# Interactive requests must finish in about 5 minutes ("Computation timed out").
INTERACTIVE_TIMEOUT_S = 300
# About 40 concurrent interactive requests on the standard endpoint; 100 requests/s per project.
MAX_CONCURRENT_REQUESTS = 40
MAX_REQUESTS_PER_SECOND = 100

# Batch tasks: about 2 running at once per project by default (unconfirmed per tier);
# ~3,000 queued tasks per user halts submission (unconfirmed).
DEFAULT_RUNNING_TASKS = 2
MAX_QUEUED_TASKS = 3_000
# Tasks live at most 10 days.
TASK_LIFETIME_S = 10 * 24 * 3600

# Export requestId: at most 60 characters, deduplicated by the server (ee/data.py).
REQUEST_ID_MAX_CHARS = 60

# listOperations returns pages of at most 500.
LIST_OPERATIONS_PAGE = 500

# Assets: 10,000 assets and 250 GB per project by default.
ASSET_QUOTA_COUNT = 10_000
ASSET_QUOTA_BYTES = 250 * 1024**3

# Messages of deterministic failures: retrying the same request fails again; split the tile.
MEMORY_LIMIT_MESSAGES = ("User memory limit exceeded", "Computation timed out")

# Operation states of the Cloud API.
OPERATION_DONE_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
