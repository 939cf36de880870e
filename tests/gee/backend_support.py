"""Helpers of the gee backend tests: credentials, config files, running the CLI."""
from __future__ import annotations

import json
import os
from pathlib import Path

from engine.cli import main

REPO = Path(__file__).resolve().parents[2]

# Planted secrets: none of them may ever appear in a log, the ledger or the manifest.
SECRETS = ("ya29.PLANTED-ACCESS-TOKEN-7f3e", "1//PLANTED-REFRESH-TOKEN-91ab", "PLANTED-CLIENT-SECRET-c0de")

# Quick plan: Landsat 8 over half a year of a 1.3 km x 1.2 km box near the North Qld site, 32 px tiles
# (4 tiles, 3 exports each): small enough for the executing stand-in to compute every export in CI.
QUICK_AOI = "145.770,-17.070,145.782,-17.059"
# 18 paired dates: TRAIN_TEST_SPLIT 0.9 gives the models the 10 training dates they need at least
QUICK = ["--aoi", QUICK_AOI, "--mission", "L8", "--start", "2021-01-01", "--end", "2021-07-01",
         "--tile-size", "32", "--set", "TRAIN_TEST_SPLIT=0.9"]
N_TILES = 4
TILE_IDS = ("32755-30m-32px-x384-y-8451", "32755-30m-32px-x384-y-8452", "32755-30m-32px-x385-y-8451",
            "32755-30m-32px-x385-y-8452")
EXPORTS_PER_TILE = 3  # the model, the outputs image (every per-date variable + gap bands), the images table
OUTPUT_STAGES = ("outputs", "images")
GAP_BANDS = ["clear_count", "gap_mean", "gap_median", "gap_p90", "gap_max", "lead_gap", "trail_gap"]


def plant_credentials(tmp_path: Path, monkeypatch) -> Path:
    """An authorised-user credentials file with a cached, unexpired token (no refresh, no network)."""
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({
        "type": "authorized_user", "client_id": "123-planted.apps.googleusercontent.com",
        "client_secret": SECRETS[2], "refresh_token": SECRETS[1], "token": SECRETS[0],
        "expiry": "2999-01-01T00:00:00Z"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.delenv("EE_PROJECT", raising=False)
    return path


def write_config(tmp_path: Path, name: str = "config.json", **values) -> Path:
    # half a year of Landsat 8 over 1.5 km2 leaves too few clear training dates for a model at most
    # pixels, so no pixel has a prediction on every date: PCA smoothing off (both backends refuse it)
    cfg = {"POLL_INTERVAL_S": 0.1, "MAX_RUNNING_EXPORTS": 2, "PCA_SMOOTH": False, **values}
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return path


def run_engine(url: str, run_dir: Path, config: Path, *extra: str, project: str | None = "p") -> int:
    argv = ["run", "--backend", "gee", *QUICK, "--ee-url", url, "--run-dir", str(run_dir), "--config", str(config),
            "--yes", "-q", *extra]
    if project:
        argv += ["--project", project]
    try:
        return main(argv)
    except SystemExit as e:  # argparse
        return int(e.code or 0)


def engine_argv(url: str, run_dir: Path, config: Path) -> list[str]:
    return ["-m", "engine", "run", "--backend", "gee", *QUICK, "--ee-url", url, "--run-dir", str(run_dir),
            "--config", str(config), "--project", "p", "--yes", "-q"]


def paired_dates(run_dir: Path) -> list[str]:
    """YYYYMMDD of the run's paired images, in order (from images.csv; ids are <mission>_<YYYYMMDD>)."""
    import pandas as pd

    images = pd.read_csv(run_dir / "images.csv")
    ids = images.loc[images["Paired"].astype(bool), "ID"]
    return [str(i).rsplit("_", 1)[-1] for i in ids]


def expected_bands(run_dir: Path, variables=("filled", "mask", "prediction", "observation")) -> list[str]:
    """Band names of a one-image outputs layout: <variable>_<date>, variable by variable, then the gap bands."""
    dates = paired_dates(run_dir)
    assert dates, "images.csv lists no paired image"
    return [f"{v}_{d}" for v in variables for d in dates] + GAP_BANDS


def descriptions(standin) -> list[str]:
    return [t.description for t in standin.state.task_order]


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env
