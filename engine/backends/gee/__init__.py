"""The ``gee`` backend: the algorithm as Earth Engine expressions, run as batch exports.

Modules (each small enough to read in one sitting):

* ``session``: project (config / ``--project`` / ``EE_PROJECT``), credentials
  (``GOOGLE_APPLICATION_CREDENTIALS`` or ``earthengine authenticate``), API URL; one
  ``CredentialsError`` naming every remedy; credentials never logged or written.
* ``api``: the REST calls the engine makes (``value:compute``, ``image``/``table:export``,
  ``listOperations``, assets) with classified errors and tenacity backoff on 429 / 5xx /
  transport errors.
* ``expressions``: pure builders of every step as ``ee`` objects (collections, cloud masks,
  daily mosaics, SAR composites and covariates, robust regression, prediction, PCA,
  calibration, fill, gap statistics) and the engine's ``value:compute`` queries.
* ``global_pass`` / ``reduce``: the AOI-wide steps (per-date statistics, pairing, split, donor;
  PCA basis and calibration statistics from the saved models) -> ``GlobalStats`` /
  ``Reduction``, the same objects as the local backend.
* ``tiling.ee_layout`` (pure, beside the planner): what a tile's stage B exports: one multi-band
  float32 outputs image (``<variable>_<YYYYMMDD>`` bands + the 7 gap bands; split by date range only
  past 1,024 bands) and the per-image table, so a tile is 3 exports with the model.
* ``naming``: asset layout, export descriptions, deterministic ``requestId``s.
* ``exports``: export request bodies on the engine's grid, to asset / Cloud Storage / Drive.
* ``dispatch``: the single-process task dispatcher (cap, one paged poll; memory failures
  reported as ``split`` for the driver to split).
* ``executor``: ``GeeBackend`` / ``GeeExecutor``, what the one driver (``engine.run.driver``) asks of
  Earth Engine: the quota check, the session, the global pass, waves of exports, whether a recorded
  asset is intact, the reduce, mosaics.
* ``manifest``: the gee part of the manifest (assets, band layout, mosaics, dispatch figures).

The stand-in for the Earth Engine service used by tests and benchmarks is ``engine.ee_standin``.
"""
