"""The same kill / resume tests for both backends: one driver owns the run directory, the lock and
the ledger, so what holds for a local run holds for a gee run (against the executing stand-in).

The job is the gee tests' QUICK plan (Landsat 8, half a year, 4 tiles of 32 px) on either backend.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.ee_standin import StandIn
from engine.run.ledger import GLOBAL, Ledger
from tests.gee.backend_support import N_TILES, QUICK, REPO, plant_credentials, write_config

pytestmark = [pytest.mark.standin, pytest.mark.slow]


@dataclass
class Job:
    backend: str
    config: Path
    url: str | None = None
    standin: StandIn | None = None

    def argv(self, run_dir: Path) -> list[str]:
        gee = ["--ee-url", self.url, "--project", "p"] if self.url else []
        return ["run", "--backend", self.backend, *QUICK, "--run-dir", str(run_dir), "--config", str(self.config),
                *gee, "--yes", "-q"]


@pytest.fixture(params=["local", "gee"])
def job(request, tmp_path, monkeypatch) -> Iterator[Job]:
    config = write_config(tmp_path, WORKERS=1)
    if request.param == "local":
        yield Job("local", config)
        return
    plant_credentials(tmp_path, monkeypatch)
    with StandIn(task_seconds=0.3, running_cap=2) as s:
        yield Job("gee", config, s.url, s)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=600)


def stages_done(run_dir: Path) -> dict[tuple[str, str], int]:
    if not (run_dir / "ledger.sqlite").exists():
        return {}
    with Ledger(run_dir / "ledger.sqlite", read_only=True) as ledger:
        return {(r.tile_id, r.stage): r.attempts for r in ledger.records() if r.status == "done"}


def assert_complete(run_dir: Path) -> None:
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["complete"] and m["tile_counts"] == {"done": N_TILES}, m["tile_counts"]
    proc = run(["status", str(run_dir)])
    assert proc.returncode == 0 and "COMPLETE" in proc.stdout, proc.stdout + proc.stderr


def test_killed_between_taking_the_lock_and_writing_run_json_reruns_in_place(job, tmp_path):
    """What a kill right after the lock leaves: the run directory with its (released) lock file only."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("pid 999999")
    proc = run(job.argv(run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_complete(run_dir)


def test_sigkill_while_tiles_train_then_resume_completes_without_redoing_finished_stages(job, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "engine", *job.argv(run_dir)], cwd=REPO, env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # kill once a first tile has trained
            done = stages_done(run_dir) if (run_dir / "run.json").exists() else {}
            if any(stage == "train" for _, stage in done):
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            time.sleep(0.05)
        else:
            pytest.fail("no tile trained in time")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    before = stages_done(run_dir)
    assert before and (GLOBAL, "merge") not in before

    proc = run(["resume", str(run_dir), "-q"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_complete(run_dir)
    after = stages_done(run_dir)
    redone = {k for k, n in before.items() if after.get(k) != n}
    assert not redone, f"finished stages done again: {sorted(redone)}"
    if job.standin is not None:  # and on Earth Engine nothing was exported twice
        descriptions = [t.description for t in job.standin.state.task_order]
        assert len(descriptions) == len(set(descriptions)), descriptions
