"""Credentials and tokens in the environment never reach logs, the manifest, the ledger or any run file.

The reference run (conftest) ran with -vv and fake secrets planted in its environment: a service
account key file (GOOGLE_APPLICATION_CREDENTIALS), EARTHENGINE_TOKEN and friends. (The gee backend's
own check is in tests/gee.)
"""
from __future__ import annotations

import pytest

from tests.reliability.conftest import FAKE_PRIVATE_KEY, SECRETS, secret_env
from tests.reliability.helpers import run_cli_proc

pytestmark = pytest.mark.slow
PLANTED = [*SECRETS.values(), FAKE_PRIVATE_KEY.splitlines()[0], "service-account.json"]


def _leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in PLANTED if s.encode() in data]


def test_planted_secrets_absent_from_logs_and_run_dir(reference, tmp_path):
    assert " DEBUG " in reference.log and "engine." in reference.log  # -vv did log
    assert _leaks(reference.log) == []
    files = [p for p in reference.run_dir.rglob("*") if p.is_file()]
    assert {"manifest.json", "ledger.sqlite", "run.json", "images.csv"} <= {p.name for p in files}
    leaked = {str(p.relative_to(reference.run_dir)): _leaks(p.read_bytes()) for p in files}
    assert not {k: v for k, v in leaked.items() if v}

    env = secret_env(tmp_path)
    proc = run_cli_proc(["status", str(reference.run_dir), "-vv"], env=env)
    assert proc.returncode == 0 and _leaks(proc.stdout + proc.stderr) == []
    # an error path with -vv (it fails before writing anything)
    env["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"] = "2s"
    proc = run_cli_proc(["resume", str(reference.run_dir), "-vv", "--scheduler", "tcp://127.0.0.1:9"], env=env)
    assert proc.returncode != 0 and "cannot reach dask scheduler" in proc.stderr
    assert _leaks(proc.stdout + proc.stderr) == []
