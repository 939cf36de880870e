"""The run configuration: ``Parameters.json`` keys, validation, legacy mapping and overrides.

Keys keep the original project's UPPER_CASE names. Loading is strict: an unknown key is an error
naming the closest valid key; a config written for the original scripts (``GEE_USERNAME``,
``EXPORT_RLR`` ...) still loads, and :func:`load_parameters` returns notes saying what each legacy
key maps to.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import ConfigError

DEFAULTS_PATH = Path(__file__).resolve().parent / "Parameters.json"

MISSION_SCALE = {"S2": 10.0, "L8": 30.0}

# Keys of the original scripts that the engine no longer uses as such: key -> explanation.
LEGACY_KEYS = {
    "GEE_USERNAME": "legacy user asset folder; models go to projects/<EE_PROJECT>/assets/<EE_ASSET_ROOT> "
    "(set EE_PROJECT); mapped to EE_LEGACY_ROOT=users/<name> for reading old assets only",
}

# Science keys added after runs were recorded: at these values they leave the science hash as it
# was, so a run recorded before them still resumes.
LATER_KEYS = {"CLIP_NDVI": False, "KEEP_CLEAR_OBSERVED": False}

# Keys that only steer execution and never change the science (excluded from the science hash).
EXECUTION_KEYS = frozenset(
    {
        "PROJECT_TITLE",
        "EXPORT_INPUT",
        "EXPORT_RLR",
        "EXPORT_PCA",
        "CLEAR_EXISTING",
        "AOI_NAME",
        "AOI_PATH",
        "BACKEND",
        "TILE_BUDGET_MB",
        "TILE_SIZE",
        "MAX_SPLIT_DEPTH",
        "WORKERS",
        "SCHEDULER",
        "MAX_RUNNING_EXPORTS",
        "MAX_INTERACTIVE_REQUESTS",
        "POLL_INTERVAL_S",
        "CONFIRM_ABOVE_HOURS",
        "EE_TIER",
        "EECU_BUDGET_HOURS",
        "EXPORT_DESTINATION",
        "EXPORT_BUCKET",
        "EXPORT_FOLDER",
        "EXPORT_MOSAIC",
        "EE_PROJECT",
        "EE_ASSET_ROOT",
        "EE_API_URL",
        "RUN_DIR",
        "EE_LEGACY_ROOT",
    }
)


class Parameters(BaseModel):
    """All run parameters. Field docs are the reference the README repeats."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_assignment=True)

    # --- the original project's keys ---
    PROJECT_TITLE: str = Field(
        "SAR_Optical_Infill", min_length=1, description="Names the Earth Engine folder and outputs."
    )
    OPTICAL_MISSION: Literal["S2", "L8"] = Field(
        "S2", description="S2 (Sentinel-2 L2A, 10 m) or L8 (Landsat 8 C2 L2, 30 m)."
    )
    START_DATE: dt.date = Field(dt.date(2021, 1, 1), description="First day of the period (inclusive).")
    END_DATE: dt.date = Field(dt.date(2022, 1, 1), description="End of the period (exclusive).")
    TRAIN_TEST_SPLIT: float = Field(0.6, gt=0, lt=1, description="Fraction of paired images used for training.")
    VAL_SPLIT: float = Field(0.2, gt=0, lt=1, description="Training images with random < VAL_SPLIT become validation.")
    RANDOM_SPLIT: bool = Field(True, description="Random split (true) or chronological (false).")
    RANDOM_SEED: int = Field(0, ge=0, description="Seed of the per-image split draw.")
    PCA_SMOOTH: bool = Field(True, description="Apply temporal PCA smoothing (step 8).")
    PCA_COMPONENT_RATIO: float = Field(0.1, gt=0, le=1, description="Fraction of components kept: floor(N x ratio).")
    STD_CLOUD_THRESHOLD: float = Field(
        50, ge=0, le=100, description="Images cloudier than this (%) are not calibrated."
    )
    CLIP_NDVI: bool = Field(
        False,
        description="Clip the calibrated prediction (and so the fill) to NDVI's physical "
        "range [-1, 1]; the method does not.",
    )
    KEEP_CLEAR_OBSERVED: bool = Field(
        False,
        description="Give clear pixels their observed NDVI back after the fill's "
        "focal median; the method smooths them too.",
    )
    SAR_WINDOW_DAYS: int = Field(12, ge=1, le=60, description="Half-width of the SAR pairing window, days.")
    EXPORT_INPUT: bool = Field(False, description="Also export the SAR composites (VV, VH) per tile.")
    EXPORT_RLR: bool = Field(True, description="Kept for compatibility: the model is always saved per tile.")
    EXPORT_PCA: bool = Field(False, description="Also export the PCA-smoothed, uncalibrated prediction.")
    CLEAR_EXISTING: bool = Field(False, description="Delete this run's recorded assets before running (asks first).")
    AOI_NAME: str | None = Field("North Qld", description="Feature name picked from AOI_PATH (or a built-in site).")
    AOI_PATH: str | None = Field(None, description="Vector file of AOIs; null means the built-in sites.")
    PATH_MATADATA: str | None = Field(None, description="Per-image metadata CSV of an earlier run to reuse its split.")

    # --- the engine's own keys ---
    BACKEND: Literal["local", "gee"] = Field("local", description="local (numpy/dask) or gee (Earth Engine).")
    DATA_SOURCE: Literal["synthetic", "stac", "ee"] = Field(
        "synthetic",
        description="local backend input: synthetic, stac, or ee (Earth Engine's collections read "
        "with computePixels at EE_API_URL for EE_PROJECT; the science runs locally).",
    )
    SYNTHETIC_SEED: int = Field(0, ge=0, description="Seed of the synthetic source.")
    STAC_CATALOG: str | None = Field(None, description="Static catalog.json path/URL or STAC API URL.")
    STAC_OPTICAL_COLLECTION: str | None = Field(None, description="Optical collection id (default by mission).")
    STAC_SAR_COLLECTION: str = Field("sentinel-1-grd", description="Sentinel-1 GRD collection id.")
    STAC_SAR_UNITS: Literal["db", "linear"] = Field("db", description="Units of the SAR assets (linear: RTC power).")
    STAC_SIGN_URL: str | None = Field(
        None,
        description="module:function that signs asset URLs before reading, "
        "e.g. planetary_computer:sign (Planetary Computer needs signed URLs).",
    )
    INCLUDE_LANDSAT9: bool = Field(False, description="L8 mission: also use Landsat 9.")
    ANALYSIS_SCALE: float | None = Field(None, gt=0, description="Pixel size in metres (default 10 S2, 30 L8).")
    STATS_SCALE: float = Field(
        100,
        gt=0,
        description="Spacing of the PCA / calibration sample lattice and the unit of PIXEL_COUNT_AOI, metres.",
    )
    CRS: str | None = Field(None, description="Grid CRS, e.g. EPSG:32755 (default: UTM zone of the AOI centroid).")
    TILE_BUDGET_MB: float = Field(
        1024,
        gt=0,
        description="Memory budget of a tile, MiB: on gee its largest computation; "
        "on local a dask worker's whole memory while it computes the tile.",
    )
    TILE_SIZE: int | None = Field(None, ge=16, le=32768, description="Force the tile side in pixels.")
    TILE_HALO: int = Field(
        12, ge=12, le=256, description="Halo in pixels (>= 12: 10 neighbourhood mean + 1 + 1 focal medians)."
    )
    MAX_SPLIT_DEPTH: int = Field(2, ge=0, le=5, description="How often a tile may be split on memory errors.")
    WORKERS: int = Field(2, ge=1, le=256, description="Local dask worker processes.")
    SCHEDULER: str | None = Field(None, description="Address of an existing dask scheduler.")
    MAX_RUNNING_EXPORTS: int = Field(2, ge=1, le=100, description="Earth Engine batch tasks running at once.")
    MAX_INTERACTIVE_REQUESTS: int = Field(20, ge=1, le=100, description="Concurrent interactive EE requests.")
    POLL_INTERVAL_S: float = Field(30, gt=0, description="Seconds between operation polls.")
    CONFIRM_ABOVE_HOURS: float = Field(2, gt=0, description="Ask before a run estimated longer than this.")
    EE_TIER: Literal["community", "contributor", "partner", "commercial"] | None = Field(
        None,
        description="Earth Engine quota tier of EE_PROJECT (or EE_TIER env var; default community): "
        "its monthly EECU-hours quota.",
    )
    EECU_BUDGET_HOURS: float = Field(
        15, gt=0, description="gee: ask before a run estimated above this many EECU-hours."
    )
    EXPORT_DESTINATION: Literal["asset", "gcs", "drive"] = Field("asset", description="Where gee outputs go.")
    EXPORT_BUCKET: str | None = Field(None, description="Cloud Storage bucket for EXPORT_DESTINATION=gcs.")
    EXPORT_FOLDER: str | None = Field(None, description="Drive folder (default PROJECT_TITLE).")
    EXPORT_MOSAIC: bool = Field(
        False, description="gee: also export an AOI-wide mosaic of the outputs image at the end."
    )
    EE_PROJECT: str | None = Field(None, description="Earth Engine Cloud project (or EE_PROJECT env var).")
    EE_ASSET_ROOT: str = Field("sar-infill", description="Folder under projects/<project>/assets/.")
    EE_API_URL: str = Field("https://earthengine.googleapis.com", description="Earth Engine API base URL.")
    EE_LEGACY_ROOT: str | None = Field(None, description="Set from GEE_USERNAME; informational.")
    RUN_DIR: str | None = Field(None, description="Run directory (default runs/<aoi>_<mission>_<start>_<end>).")

    @field_validator("PROJECT_TITLE")
    @classmethod
    def _title_is_asset_safe(cls, v: str) -> str:
        if not all(c.isalnum() or c in "_-" for c in v):
            raise ValueError(f"PROJECT_TITLE {v!r} may only contain letters, digits, _ and - (it names assets)")
        return v

    @field_validator("CRS")
    @classmethod
    def _crs_is_epsg(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            from pyproj import CRS

            crs = CRS.from_user_input(v)
        except Exception as e:  # pyproj raises CRSError
            raise ValueError(f"CRS {v!r} is not a known CRS; use e.g. EPSG:32755") from e
        if crs.to_epsg() is None:
            raise ValueError(f"CRS {v!r} has no EPSG code; use e.g. EPSG:32755")
        if crs.is_geographic:
            raise ValueError(f"CRS {v!r} is geographic; tiles need a projected CRS in metres, e.g. a UTM zone")
        return f"EPSG:{crs.to_epsg()}"

    @model_validator(mode="after")
    def _consistent(self) -> Parameters:
        if self.END_DATE <= self.START_DATE:
            raise ValueError(
                f"END_DATE {self.END_DATE} is not after START_DATE {self.START_DATE}; swap them or extend the period"
            )
        if self.START_DATE < dt.date(2014, 10, 3):
            raise ValueError(f"START_DATE {self.START_DATE} predates Sentinel-1 (IW data from 2014-10-03)")
        if self.VAL_SPLIT >= self.TRAIN_TEST_SPLIT and self.RANDOM_SPLIT:
            raise ValueError(
                f"VAL_SPLIT {self.VAL_SPLIT} must be below TRAIN_TEST_SPLIT {self.TRAIN_TEST_SPLIT} "
                "(validation images are drawn from the training images)"
            )
        if self.DATA_SOURCE == "stac" and not self.STAC_CATALOG and self.BACKEND == "local":
            raise ValueError("DATA_SOURCE 'stac' needs STAC_CATALOG (a catalog.json path or a STAC API URL)")
        if self.BACKEND == "gee" and self.DATA_SOURCE == "ee":
            raise ValueError(
                "DATA_SOURCE 'ee' (--source ee) is the local backend reading Earth Engine; the gee backend "
                "computes on Earth Engine itself: drop --source ee or use --backend local"
            )
        if self.BACKEND == "gee" and (self.DATA_SOURCE == "stac" or self.STAC_CATALOG):
            raise ValueError(
                "the gee backend reads Earth Engine's own catalog: DATA_SOURCE 'stac' / STAC_CATALOG "
                "(--stac) apply to the local backend only; drop them or use --backend local"
            )
        if self.EXPORT_DESTINATION == "gcs" and not self.EXPORT_BUCKET and self.BACKEND == "gee":
            raise ValueError("EXPORT_DESTINATION 'gcs' needs EXPORT_BUCKET")
        if self.TILE_SIZE is not None and self.TILE_SIZE % 2:
            raise ValueError(f"TILE_SIZE {self.TILE_SIZE} must be even (tiles split into 4 children)")
        return self

    # --- derived values ---
    @property
    def scale(self) -> float:
        """Analysis pixel size in metres."""
        return self.ANALYSIS_SCALE or MISSION_SCALE[self.OPTICAL_MISSION]

    def science_hash(self) -> str:
        """12-hex hash of everything that changes the science (not execution settings)."""
        science = {
            k: v
            for k, v in self.model_dump(mode="json").items()
            if k not in EXECUTION_KEYS and not (k in LATER_KEYS and v == LATER_KEYS[k])
        }
        science["scale"] = self.scale
        blob = json.dumps(science, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _field_names() -> list[str]:
    return list(Parameters.model_fields)


def _unknown_key_error(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, _field_names() + list(LEGACY_KEYS), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else "; see the README's configuration reference"
    return ConfigError(f"unknown config key {key!r} in {where}{hint}")


def _map_legacy(raw: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    out = dict(raw)
    if "GEE_USERNAME" in out:
        name = out.pop("GEE_USERNAME")
        if name:
            out.setdefault("EE_LEGACY_ROOT", f"projects/earthengine-legacy/assets/users/{name}")
        notes.append(f"GEE_USERNAME={name!r}: {LEGACY_KEYS['GEE_USERNAME']}")
    aoi_path = out.get("AOI_PATH")
    if isinstance(aoi_path, str) and aoi_path.startswith(("users/", "projects/")):
        notes.append(
            f"AOI_PATH={aoi_path!r} is an Earth Engine asset id; the engine needs a vector file or --aoi. "
            "Ignored: using AOI_NAME against the built-in sites"
        )
        out["AOI_PATH"] = None
    elif isinstance(aoi_path, str) and aoi_path.replace("\\", "/").endswith("AOI/AOI.shp"):
        notes.append(f"AOI_PATH={aoi_path!r} is the original repository's site file: mapped to the built-in sites")
        out["AOI_PATH"] = None
    if out.get("EXPORT_RLR") is False:
        notes.append("EXPORT_RLR=false: the engine always saves each tile's model before using it (resumability)")
    return out


def _format_validation(e: ValidationError, where: str) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if err["loc"] and not isinstance(value, dict):
        return f"invalid {loc} = {value!r} in {where}: {msg}"
    return f"invalid config in {where}: {msg}"


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object from ``path`` with one-line errors."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist; pass an existing --config file") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {e.strerror}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid JSON: {e.msg} at line {e.lineno}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a JSON object of KEY: value pairs")
    return data


def load_parameters(
    path: Path | str | None = None, overrides: dict[str, Any] | None = None
) -> tuple[Parameters, list[str]]:
    """Defaults, then the file at ``path``, then ``overrides`` (command-line flags).

    Returns the validated parameters and notes about legacy keys. Raises ConfigError.
    """
    notes: list[str] = []
    merged = read_json(DEFAULTS_PATH)
    sources = [("the defaults", merged)]
    if path is not None:
        file_path = Path(path)
        user = _map_legacy(read_json(file_path), notes)
        sources.append((str(file_path), user))
    if overrides:
        sources.append(("command-line flags", {k: v for k, v in overrides.items() if v is not None}))
    combined: dict[str, Any] = {}
    for where, values in sources:
        for key in values:
            if key not in Parameters.model_fields:
                raise _unknown_key_error(key, where)
        combined.update(values)
        try:
            Parameters(**combined)
        except ValidationError as e:
            raise ConfigError(_format_validation(e, where)) from None
    return Parameters(**combined), notes
