"""Ctrl-C in a terminal: SIGINT to the whole foreground process group (driver and dask workers)."""
from __future__ import annotations

import os
import signal

import pytest

from tests.reliability.helpers import (
    assert_same_products,
    ledger_rows,
    run_args,
    run_cli_proc,
    start_cli,
    stop_group,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_ctrl_c_prints_one_line_with_the_real_resume_command(reference, tmp_path):
    run_dir = tmp_path / "my run"
    log = tmp_path / "run.log"
    # one worker: the 9-tile job takes a few seconds with two, and on a loaded machine a signal sent
    # at its first trained tile could land after its summary (exit 0); the products are the same
    proc = start_cli(run_args(reference.aoi, run_dir, "--workers", "1"), log)
    try:
        assert wait_for(lambda: any(s == "train" and r.status == "done"
                                    for (_, s), r in ledger_rows(run_dir).items()), proc), log.read_text()[-2000:]
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        stop_group(proc)
    text = log.read_text(errors="replace")
    assert code == 130, text[-2000:]
    assert "Traceback" not in text and "Warning" not in text, text[-3000:]
    assert text.rstrip().splitlines()[-1] == (
        f"interrupted: finished tiles are kept; resume with: python -m engine resume '{run_dir}'")

    # only the tiles submitted to the one worker (its task and the one queued behind it) were started
    assert sum(r.status == "running" for r in ledger_rows(run_dir).values()) <= 2

    status = run_cli_proc(["status", str(run_dir)])
    assert status.returncode == 3, status.stdout
    assert "run is INCOMPLETE" in status.stdout and " running " not in status.stdout.split("Tiles")[1]
    assert run_cli_proc(["resume", str(run_dir), "-q"]).returncode == 0
    assert_same_products(run_dir, reference.run_dir)
