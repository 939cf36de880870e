"""Bad input to ``run``, ``resume`` and ``status``: a one-line ``error:`` on stderr, a non-zero exit, and nothing
written: the completed reference run directory stays byte for byte the same, and no new directory appears.

(``plan``'s bad inputs are in tests/test_cli_plan.py.) Every case runs the real CLI in its own process.
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.run.rundir import RunLock
from tests.reliability.helpers import SHORT, TILE_SIZE, cli_env, run_cli_proc, tree_hashes

pytestmark = pytest.mark.slow


def _cases(ref: Path, aoi: Path, tmp: Path) -> list[tuple[str, list[str], str, Path | None]]:
    """(name, argv, fragment the error line must contain, a path that must not exist afterwards)."""
    R = str(ref)
    new = tmp / "new-run"
    job = ["--aoi", str(aoi), *SHORT, "--tile-size", TILE_SIZE, "--yes", "-q"]

    def run(*extra: str, run_dir: Path | str = R) -> list[str]:
        return ["run", *job, "--run-dir", str(run_dir), *extra]

    afile = tmp / "a-file"
    afile.write_text("not a directory\n")
    other = tmp / "other-dir"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    empty = tmp / "empty-dir"
    empty.mkdir()
    cfg_science = tmp / "science.json"
    cfg_science.write_text(json.dumps({"SAR_WINDOW_DAYS": 7}))
    cfg_unknown = tmp / "unknown.json"
    cfg_unknown.write_text(json.dumps({"SAR_WINDOW": 7}))
    cfg_broken = tmp / "broken.json"
    cfg_broken.write_text('{"START_DATE": ')
    garbage_aoi = tmp / "garbage.geojson"
    garbage_aoi.write_text("this is not geojson {")
    empty_aoi = tmp / "empty.geojson"
    empty_aoi.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    garbage_catalog = tmp / "catalog.json"
    garbage_catalog.write_text("<html>not a STAC catalog</html>")
    bad_run_json = tmp / "bad-run-json"
    bad_run_json.mkdir()
    (bad_run_json / "run.json").write_text("{ truncated")
    thin_run_json = tmp / "thin-run-json"
    thin_run_json.mkdir()
    (thin_run_json / "run.json").write_text(json.dumps({"engine_version": "0.1.0"}))
    old_params = tmp / "old-params"
    old_params.mkdir()
    rec = json.loads((ref / "run.json").read_text())
    rec["params"]["NOT_A_KEY_ANY_MORE"] = 1
    (old_params / "run.json").write_text(json.dumps(rec))
    bad_ledger = tmp / "bad-ledger"
    bad_ledger.mkdir()
    shutil.copy(ref / "run.json", bad_ledger / "run.json")
    (bad_ledger / "ledger.sqlite").write_bytes(b"SQLite format 2\x00" + b"\x17" * 4096)

    return [
        # the existing run directory, with another job
        ("run: other seed, same run dir", run("--seed", "7"), "different configuration (changed: SYNTHETIC_SEED)", None),
        ("run: other period, same run dir", ["run", "--aoi", str(aoi), "--mission", "S2", "--start", "2021-01-01",
                                             "--end", "2021-10-01", "--tile-size", TILE_SIZE, "--run-dir", R, "--yes"],
         "different configuration (changed: END_DATE)", None),
        ("run: other config file, same run dir", run("--config", str(cfg_science)), "changed: SAR_WINDOW_DAYS", None),
        ("run: other AOI, same run dir", ["run", "--aoi", "145.80,-17.06,145.82,-17.04", *SHORT, "--tile-size",
                                          TILE_SIZE, "--run-dir", R, "--yes"], "another AOI", None),
        ("run: other backend, same run dir", run("--backend", "gee", "--project", "p", "--ee-url", "http://127.0.0.1:9"),
         "holds a local run and this command asks for the gee backend", None),
        ("run: other tile size, same run dir", ["run", "--aoi", str(aoi), *SHORT, "--tile-size", "256", "--run-dir", R,
                                                "--yes"], "planned with other tiles", None),
        # the run directory itself
        ("run: run dir is a file", run(run_dir=afile), "is a file", None),
        ("run: run dir under a file", run(run_dir=afile / "sub"), "cannot create run directory", None),
        ("run: run dir holds other files", run(run_dir=other), "not a run directory of this engine", None),
        ("resume: empty dir", ["resume", str(empty)], "is not a run directory (no run.json)", None),
        ("resume: missing dir", ["resume", str(tmp / "missing")], "is not a run directory", tmp / "missing"),
        ("resume: a file", ["resume", str(afile)], "is a file, not a run directory", None),
        ("resume: run.json truncated", ["resume", str(bad_run_json)], "run.json is unreadable", None),
        ("resume: run.json without params", ["resume", str(thin_run_json)], "lacks params, aoi, plan", None),
        ("resume: run.json with an unknown key", ["resume", str(old_params)], "records invalid parameters", None),
        ("resume: ledger not a database", ["resume", str(bad_ledger)], "cannot be opened", None),
        ("status: empty dir", ["status", str(empty)], "is not a run directory", None),
        ("status: missing dir", ["status", str(tmp / "missing")], "is not a run directory", tmp / "missing"),
        ("status: a file", ["status", str(afile)], "is a file", None),
        ("status: ledger not a database", ["status", str(bad_ledger)], "cannot be opened", None),
        # configuration and flags
        ("run: unknown config key", run("--config", str(cfg_unknown)), "unknown config key 'SAR_WINDOW'", None),
        ("run: config not JSON", run("--config", str(cfg_broken)), "is not valid JSON", None),
        ("run: config missing", run("--config", str(tmp / "nope.json")), "does not exist", None),
        ("run: --workers 0", run("--workers", "0"), "--workers: '0' must be positive", None),
        ("resume: --workers 0", ["resume", R, "--workers", "0"], "--workers: '0' must be positive", None),
        ("resume: job flag", ["resume", R, "--seed", "3"], "unrecognized arguments: --seed 3", None),
        ("run: --tile-size abc", run("--tile-size", "abc"), "--tile-size: 'abc' is not a whole number", None),
        ("run: --tile-size 8", run("--tile-size", "8", run_dir=new), "TILE_SIZE = 8", new),
        ("run: --tile-size odd", run("--tile-size", "99", run_dir=new), "must be even", new),
        ("run: --tile-size beyond the budget", run("--tile-size", "4096", run_dir=new),
         "over the 1.0 GiB tile budget (TILE_BUDGET_MB 1024): a worker would run out of memory; use --tile-size", new),
        ("run: --mission L7", run("--mission", "L7"), "invalid choice: 'L7'", None),
        ("run: geographic CRS", run("--crs", "EPSG:4326", run_dir=new), "geographic", new),
        # dates
        ("run: impossible date", run("--start", "2021-02-30"), "--start: '2021-02-30' is not a day", None),
        ("run: end before start", run("--start", "2021-09-01", "--end", "2021-01-01"), "is not after START_DATE", None),
        ("run: date not a date", run("--end", "next week"), "--end: 'next week' is not a day", None),
        ("run: before Sentinel-1", run("--start", "2013-01-01", run_dir=new), "predates Sentinel-1", new),
        ("run: too short for 10 pairs", run("--end", "2021-01-25", run_dir=new), "pairs", new),
        # AOI
        ("run: AOI file garbage", ["run", "--aoi", str(garbage_aoi), *SHORT, "--run-dir", R, "--yes"],
         "cannot read AOI file", None),
        ("run: AOI file missing", ["run", "--aoi", str(tmp / "nope.gpkg"), *SHORT, "--run-dir", R, "--yes"],
         "does not exist", None),
        ("run: AOI file empty", ["run", "--aoi", str(empty_aoi), *SHORT, "--run-dir", str(new), "--yes"], "AOI", new),
        ("run: empty --aoi", ["run", "--aoi", "", *SHORT, "--run-dir", str(new), "--yes"], "--aoi is empty", new),
        ("run: AOI feature missing", run("--aoi-name", "Paddock 99"), "no feature named 'Paddock 99'", None),
        # data source
        ("run: --source stac without catalog", run("--source", "stac"), "needs STAC_CATALOG", None),
        ("run: STAC catalog missing", run("--source", "stac", "--stac", str(tmp / "stac" / "catalog.json"),
                                          run_dir=new), "cannot read STAC catalog", new),
        ("run: STAC catalog garbage", run("--source", "stac", "--stac", str(garbage_catalog), run_dir=new),
         "cannot read STAC catalog", new),
        ("run: --stac with --source synthetic", run("--source", "synthetic", "--stac", str(tmp / "x.json")),
         "drop --source synthetic", None),
        ("run: --stac with --backend gee", run("--backend", "gee", "--stac", str(tmp / "x.json"), run_dir=new),
         "apply to the local backend only", new),
        ("run: STAC catalog missing, same run dir", run("--source", "stac", "--stac", str(tmp / "x.json")),
         "different configuration", None),
        # dask scheduler
        ("run: --scheduler malformed", run("--scheduler", "localhost"), "is not a dask scheduler address", None),
        ("run: --scheduler bad scheme", run("--scheduler", "http://127.0.0.1:8786", run_dir=new),
         "is not a dask scheduler address", new),
        ("run: --scheduler unreachable", run("--scheduler", "tcp://127.0.0.1:9", run_dir=new),
         "cannot reach dask scheduler", new),
        ("resume: --scheduler unreachable", ["resume", R, "--scheduler", "tcp://127.0.0.1:9"],
         "cannot reach dask scheduler", None),
    ]


# checked in a real process too (stderr exactly as a user sees it, exit status of the interpreter)
IN_A_PROCESS = {"run: other seed, same run dir", "run: run dir is a file", "resume: ledger not a database",
                "status: a file", "run: --workers 0", "run: impossible date", "run: AOI file garbage",
                "run: STAC catalog missing", "run: --scheduler unreachable", "run: too short for 10 pairs"}


def _verdict(name, code, err, fragment, absent) -> str | None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    problems = []
    if code == 0:
        problems.append("exit 0")
    if len(lines) != 1 or not lines[0].startswith("error: "):
        problems.append(f"stderr is not one 'error:' line: {err[-1500:]!r}")
    elif fragment not in lines[0]:
        problems.append(f"message lacks {fragment!r}: {lines[0]!r}")
    if absent is not None and absent.exists():
        problems.append(f"created {absent}")
    return f"{name}: {'; '.join(problems)}" if problems else None


def _in_process(run_cli, case) -> str | None:
    name, argv, fragment, absent = case
    code, out, err = run_cli(*argv)
    return _verdict(name, code, err, fragment, absent)


def _in_a_process(case, env, cwd) -> str | None:
    name, argv, fragment, absent = case
    proc = run_cli_proc(argv, env=env, timeout=180, cwd=cwd)
    return _verdict(f"{name} (process)", proc.returncode, proc.stderr, fragment, absent)


def test_bad_inputs_one_line_error_and_run_dir_untouched(reference, run_cli, tmp_path, monkeypatch):
    import dask

    ref = reference.run_dir
    cases = _cases(ref, reference.aoi, tmp_path)
    assert len(cases) >= 25 and IN_A_PROCESS <= {c[0] for c in cases}
    cwd = tmp_path / "cwd"  # default run directories (runs/...) would land here
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = tree_hashes(ref)
    with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
        problems = [p for p in (_in_process(run_cli, c) for c in cases) if p]
    env = cli_env(DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s")
    with ThreadPoolExecutor(max_workers=3) as pool:
        problems += [p for p in pool.map(lambda c: _in_a_process(c, env, cwd),
                                         [c for c in cases if c[0] in IN_A_PROCESS]) if p]
    assert not problems, "\n".join(problems)
    assert tree_hashes(ref) == before
    assert list(cwd.iterdir()) == []

    # the run directory locked by another process (this test holds the lock)
    with RunLock(ref):
        locked = tree_hashes(ref)
        holder = f"is in use by pid {os.getpid()}"
        run_locked = ("run: locked run dir", ["run", "--aoi", str(reference.aoi), *SHORT, "--tile-size", TILE_SIZE,
                                              "--run-dir", str(ref), "--yes", "-q"], holder, None)
        resume_locked = ("resume: locked run dir", ["resume", str(ref), "-q"], holder, None)
        problems = [_in_a_process(run_locked, env, cwd), _in_process(run_cli, resume_locked)]
        assert not any(problems), "\n".join(p for p in problems if p)
        proc = run_cli_proc(["status", str(ref)], env=env)  # status only reads: a locked run is fine
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert tree_hashes(ref) == locked
