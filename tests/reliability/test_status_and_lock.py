"""``status`` exit codes (complete 0, failed 1, incomplete 3) and the single writer of a run directory."""
from __future__ import annotations

import os

import time

import pytest

from engine.cli import build_parser
from engine.cli.args import Options
from engine.cli.commands import _context
from engine.run.driver import execute
from tests.reliability.helpers import (
    GLOBAL,
    DyingFinishBackend,
    FailingFinishBackend,
    assert_same_products,
    attempts,
    ledger_rows,
    run_args,
    run_cli_proc,
    start_cli,
    stop_group,
    wait_for,
)

pytestmark = pytest.mark.slow


def _one_line_error(proc, *fragments: str) -> None:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode not in (0, None) and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_status_of_a_complete_run_is_0(reference):
    proc = run_cli_proc(["status", str(reference.run_dir)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "run is COMPLETE" in proc.stdout and proc.stderr == ""


def test_status_reads_without_writing_and_prints_whole_tile_ids(reference, tmp_path):
    import shutil

    from tests.reliability.helpers import ledger_rows, tree_hashes

    run_dir = tmp_path / "run"
    shutil.copytree(reference.run_dir, run_dir)
    before = tree_hashes(run_dir)
    proc = run_cli_proc(["status", str(run_dir)])  # not a terminal: 80 columns
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tree_hashes(run_dir) == before
    ids = {t for (t, _s) in ledger_rows(run_dir) if t != "_aoi"}
    assert ids and all(t in proc.stdout for t in ids), proc.stdout
    assert "outputs verified" in proc.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_status_of_a_read_only_run_directory(reference, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(reference.run_dir, run_dir)
    paths = [run_dir, *run_dir.rglob("*")]
    for p in paths:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        proc = run_cli_proc(["status", str(run_dir)])
    finally:
        for p in paths:
            p.chmod(p.stat().st_mode | 0o200)
    assert proc.returncode == 0 and "run is COMPLETE" in proc.stdout, proc.stdout + proc.stderr


def test_failed_tile_status_1_then_resume_redoes_only_it(reference, tmp_path):
    run_dir = tmp_path / "run"
    args = build_parser().parse_args(run_args(reference.aoi, run_dir, "-q"))
    ctx = _context(Options.from_namespace(args))
    bad = ctx.plan.tiles[3].id
    result = execute(ctx, backend=FailingFinishBackend(bad))  # in this process; the tile fails in a dask worker
    assert set(result.failures) == {bad} and not result.complete

    proc = run_cli_proc(["status", str(run_dir)])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    flat = " ".join(proc.stdout.split())
    assert "run is FAILED" in flat and "planted failure" in flat

    before = attempts(run_dir)
    proc = run_cli_proc(["resume", str(run_dir), "-q"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = attempts(run_dir)
    assert {k for k in before if after[k] != before[k]} == {(bad, "finish"), (GLOBAL, "merge")}
    assert_same_products(run_dir, reference.run_dir)
    assert run_cli_proc(["status", str(run_dir)]).returncode == 0


def test_a_worker_that_dies_under_a_tile_is_reported_as_that_with_the_remedy(reference, tmp_path):
    run_dir = tmp_path / "run"
    ctx = _context(Options.from_namespace(build_parser().parse_args(run_args(reference.aoi, run_dir, "-q"))))
    bad = ctx.plan.tiles[2].id
    result = execute(ctx, backend=DyingFinishBackend(bad))  # dask retries it on respawned workers, then gives up
    # tiles that shared a dying worker with it may go down with it: each says why
    assert bad in result.failures and len(result.failures) < len(ctx.plan.tiles)
    for message in result.failures.values():
        assert "worker computing it died, most likely out of memory" in message and "--tile-budget-mb" in message


def test_one_writer_per_run_dir(reference, tmp_path):
    """Two runs started together on a new run dir: one runs, the other stops with a one-line error; a resume
    while it runs is refused too; status reads the running run (incomplete, 3); the run completes unharmed."""
    run_dir = tmp_path / "run"
    args = run_args(reference.aoi, run_dir, "-q")
    a = start_cli(args, tmp_path / "a.log", err_log=tmp_path / "a.err")
    b = start_cli(args, tmp_path / "b.log", err_log=tmp_path / "b.err")
    try:
        # the loser finds the directory locked after its global pass (or sees it in use at start)
        deadline = time.monotonic() + 120
        while a.poll() is None and b.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        loser, winner, name = (a, b, "a") if a.poll() is not None else (b, a, "b")
        err = (tmp_path / f"{name}.err").read_text()
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert loser.returncode == 2 and len(lines) == 1, err + (tmp_path / f"{name}.log").read_text()
        assert lines[0].startswith("error: ") and f"in use by pid {winner.pid}" in lines[0], err

        assert wait_for(lambda: any(s == "train" for (_, s) in ledger_rows(run_dir)), winner)
        proc = run_cli_proc(["status", str(run_dir)])
        if proc.returncode == 0:  # the winner may finish while status starts up: then it must be gone
            assert winner.wait(timeout=60) == 0 and "COMPLETE" in proc.stdout
        else:
            assert proc.returncode == 3 and "INCOMPLETE" in proc.stdout, proc.stdout + proc.stderr
        if winner.poll() is None:
            proc = run_cli_proc(["resume", str(run_dir), "-q"])
            if winner.poll() is None:  # still holding the lock when resume checked it
                _one_line_error(proc, "in use by pid", str(winner.pid))
            proc = run_cli_proc(["run", *args[1:]])
            if winner.poll() is None:
                _one_line_error(proc, "in use by pid")

        assert winner.wait(timeout=300) == 0
    finally:
        stop_group(a)
        stop_group(b)
    assert_same_products(run_dir, reference.run_dir)
    # nothing computed twice (a resume or run after the winner finished only rewrites the merge)
    assert all(v == 1 for (tile, stage), v in attempts(run_dir).items() if stage != "merge")


def test_a_ledger_being_created_is_never_read_as_damaged(tmp_path):
    """A reader (``status``, a user's script) polling while the driver creates the ledger sees no
    ledger or a complete one, never an empty database it would call damaged."""
    import threading

    from engine.errors import RunDirError
    from engine.run.ledger import Ledger

    damaged: list[str] = []
    for i in range(100):
        path = tmp_path / str(i) / "ledger.sqlite"
        path.parent.mkdir()
        created = threading.Event()

        def poll(path=path, created=created) -> None:
            while not created.is_set():
                if path.exists():
                    try:
                        with Ledger(path, read_only=True) as ledger:
                            ledger.records()
                    except RunDirError as e:
                        damaged.append(str(e))

        reader = threading.Thread(target=poll)
        reader.start()
        with Ledger(path) as ledger:
            ledger.set_meta("k", 1)
        created.set()
        reader.join()
        assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []  # no temporary left
    assert damaged == []
