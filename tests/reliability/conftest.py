"""Shared fixtures: the test AOI and one uninterrupted reference run (CLI subprocess, -vv, planted secrets).

The reference run directory is read-only for the tests: a test that damages a run works on a copy.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.local.conftest import SQUARE_UTM, write_aoi
from tests.reliability.helpers import GLOBAL, cli_env, ledger_rows, run_args, start_cli

# Planted secrets: must never reach logs, the manifest, the ledger or any file of the run directory.
FAKE_PRIVATE_KEY = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7FAKEKEYzq9x\n"
                    "-----END PRIVATE KEY-----\n")
SECRETS = {
    "private_key_id": "f4k3k3y1d0000000000000000000000000000001",
    "private_key_body": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7FAKEKEYzq9x",
    "ee_token": "ya29.FAKE-earthengine-token-Zq8xP0r7",
    "refresh_token": "1//0FAKE-refresh-token-Lk2mN8",
    "aws_secret": "FAKEawsSECRETkey/K7MDENG/bPxRfiCYEXAMPLEKEY",
}


@dataclass
class Reference:
    aoi: Path
    run_dir: Path
    log: str
    elapsed: float
    n_tiles: int
    stage_end: dict[str, float] = field(default_factory=dict)  # seconds after start when each stage ended


@pytest.fixture(scope="session")
def rel_aoi(tmp_path_factory) -> Path:
    return write_aoi(tmp_path_factory.mktemp("aoi") / "square.geojson", SQUARE_UTM)


def secret_env(tmp: Path) -> dict[str, str]:
    creds = tmp / "service-account.json"
    creds.write_text(json.dumps({
        "type": "service_account", "project_id": "fake-project", "private_key_id": SECRETS["private_key_id"],
        "private_key": FAKE_PRIVATE_KEY, "client_email": "fake@fake-project.iam.gserviceaccount.com",
        "refresh_token": SECRETS["refresh_token"],
    }))
    return cli_env(GOOGLE_APPLICATION_CREDENTIALS=str(creds), EARTHENGINE_TOKEN=SECRETS["ee_token"],
                   EE_TOKEN=SECRETS["ee_token"], GOOGLE_OAUTH_ACCESS_TOKEN=SECRETS["ee_token"],
                   AWS_SECRET_ACCESS_KEY=SECRETS["aws_secret"])


@pytest.fixture(scope="session")
def reference(rel_aoi, tmp_path_factory) -> Reference:
    """An uninterrupted run of the 9-tile job, with -vv logs and fake credentials in its environment."""
    tmp = tmp_path_factory.mktemp("reference")
    run_dir, log = tmp / "run", tmp / "run.log"
    t0 = time.time()
    proc = start_cli(run_args(rel_aoi, run_dir, "-vv"), log, env=secret_env(tmp))
    code = proc.wait(timeout=600)
    elapsed = time.time() - t0
    text = log.read_text(errors="replace")
    assert code == 0, text[-3000:]
    rows = ledger_rows(run_dir)
    n_tiles = json.loads((run_dir / "run.json").read_text())["plan"]["tiles"]
    ends: dict[str, float] = {}
    for (tile, stage), row in rows.items():
        ends[stage] = max(ends.get(stage, 0.0), row.updated - t0)
    assert {(GLOBAL, "global"), (GLOBAL, "reduce"), (GLOBAL, "merge")} <= set(rows)
    return Reference(rel_aoi, run_dir, text, elapsed, n_tiles, ends)
