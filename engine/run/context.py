"""Turn configuration + ``--aoi`` into everything a command needs: parameters, AOI, tile plan."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from AOI.resolve import AOI, from_file, resolve_aoi, wrs2_paths
from config.parameters import Parameters, load_parameters
from engine.errors import AOIError
from tiling import ee_layout as layout
from tiling.budget import Budget, backend_budget, estimate_dates, swath_tracks
from tiling.plan import TilePlan, plan_tiles


@dataclass(frozen=True)
class RunContext:
    """Validated inputs of a command; building it writes nothing."""

    params: Parameters
    aoi: AOI
    plan: TilePlan
    run_dir: Path
    notes: tuple[str, ...] = field(default=())

    @property
    def variables(self) -> tuple[str, ...]:
        """Per-date variables of the gee outputs image: filled, mask, prediction, observation (+ extras)."""
        return layout.variables(self.params.EXPORT_PCA, self.params.EXPORT_INPUT)

    @property
    def output_parts(self) -> tuple[layout.Part, ...]:
        """The gee outputs image(s) of a tile at the planned number of dates (``tiling.ee_layout``):
        one image unless the band limit splits it. The run uses the catalog's actual dates."""
        return layout.output_parts(self.plan.budget.dates, len(self.variables))

    @property
    def outputs(self) -> tuple[str, ...]:
        """Stage-B exports per tile on Earth Engine: the outputs image(s), then the per-image table."""
        return layout.stages(self.output_parts)

    @property
    def ee_exports_per_tile(self) -> int:
        """Earth Engine batch exports per tile: the model, the outputs image(s), the per-image table."""
        return 1 + len(self.outputs)

    @property
    def ee_run_exports(self) -> int:
        """Run-wide exports: one mosaic per outputs image with ``EXPORT_MOSAIC`` (asset destination only)."""
        p = self.params
        return len(self.output_parts) if p.EXPORT_MOSAIC and p.EXPORT_DESTINATION == "asset" else 0

    @property
    def n_days(self) -> int:
        return (self.params.END_DATE - self.params.START_DATE).days


def resolve_params_aoi(params: Parameters, aoi_spec: str | None, aoi_name: str | None) -> AOI:
    """The AOI from ``--aoi`` if given, else from the config's AOI_PATH / AOI_NAME."""
    crs = params.CRS
    if aoi_spec is not None:  # an empty --aoi is refused there, not read as "no --aoi"
        return resolve_aoi(aoi_spec, feature=aoi_name, crs=crs)
    if params.AOI_PATH:
        return from_file(Path(params.AOI_PATH), feature=aoi_name or params.AOI_NAME, crs=crs)
    name = aoi_name or params.AOI_NAME
    if not name:
        raise AOIError("no AOI: pass --aoi (WRS-2 path/row, site name, vector file or bbox) or set AOI_NAME")
    return resolve_aoi(name, crs=crs)


def default_run_dir(params: Parameters, aoi: AOI) -> Path:
    """runs/<aoi>_<mission>_<start>_<end>, with _gee for the gee backend: the same job on the two
    backends gets two directories (one holds one backend's products)."""
    job = f"{aoi.slug}_{params.OPTICAL_MISSION}_{params.START_DATE:%Y%m%d}_{params.END_DATE:%Y%m%d}"
    return Path("runs") / (f"{job}_gee" if params.BACKEND == "gee" else job)


def acquisition_tracks(mission: str, aoi: AOI) -> int:
    """How many tracks of ``mission`` acquire the AOI, each on its own days (planning only): the
    WRS-2 paths its footprints meet (Landsat), or the swath model of ``tiling.budget`` (S2, S1)."""
    if mission in ("L8", "L9"):
        return wrs2_paths(aoi.geometry)
    minx, miny, maxx, maxy = aoi.geometry.bounds
    return swath_tracks(mission, minx, maxx, max(abs(miny), abs(maxy)))


def estimated_dates(params: Parameters, aoi: AOI, mission: str | None = None, extra_days: int = 0) -> int:
    """The planning estimate of the dates a run over ``aoi`` meets: the optical mission's (or
    ``mission``'s) revisit over the period (+ ``extra_days``), times the tracks that see the AOI."""
    m = mission or params.OPTICAL_MISSION
    return estimate_dates(m, (params.END_DATE - params.START_DATE).days + extra_days, params.INCLUDE_LANDSAT9,
                          acquisition_tracks(m, aoi))


def tile_budget(params: Parameters, aoi: AOI) -> Budget:
    """The tile budget of a run: its memory per tile for the dates the AOI is expected to meet."""
    return backend_budget(params.BACKEND, estimated_dates(params, aoi), int(params.TILE_BUDGET_MB * 2**20),
                          params.TILE_HALO)


def build_context(
    config_path: str | None,
    overrides: dict[str, Any],
    aoi_spec: str | None = None,
    aoi_name: str | None = None,
) -> RunContext:
    params, notes = load_parameters(config_path, overrides)
    aoi = resolve_params_aoi(params, aoi_spec, aoi_name)
    plan = plan_tiles(aoi.projected(), aoi.epsg, params.scale, tile_budget(params, aoi), params.TILE_SIZE)
    run_dir = Path(params.RUN_DIR) if params.RUN_DIR else default_run_dir(params, aoi)
    return RunContext(params=params, aoi=aoi, plan=plan, run_dir=run_dir, notes=tuple(notes) + aoi.notes)
