"""A run on a real dask cluster (scheduler and two workers as separate processes on loopback) survives
the SIGKILL of one worker in the middle of the train wave, with outputs identical to a LocalCluster run."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.backends.local.dask import WORKER_ENV
from tests.reliability.helpers import (
    REPO,
    assert_same_products,
    cli_env,
    kill_group,
    ledger_rows,
    run_args,
    start_cli,
    wait_for,
)

DASK = str(Path(sys.executable).with_name("dask"))
pytestmark = [pytest.mark.cluster, pytest.mark.slow,
              pytest.mark.skipif(not Path(DASK).exists(), reason="the dask CLI (distributed) is not installed")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(args, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=cli_env(**WORKER_ENV), start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    kill_group(proc)


def test_real_cluster_survives_a_killed_worker(reference, tmp_path):
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: dict[str, subprocess.Popen] = {}
    client = None
    try:
        procs["scheduler"] = _spawn([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                    tmp_path / "scheduler.log")
        for name in ("w0", "w1"):
            procs[name] = _spawn([DASK, "worker", address, "--name", name, "--nthreads", "1", "--nworkers", "1",
                                  "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"], tmp_path / f"{name}.log")
        client = Client(address, timeout="60s")
        client.wait_for_workers(2, timeout=120)

        run_dir = tmp_path / "run"
        log = tmp_path / "run.log"
        driver = start_cli(run_args(reference.aoi, run_dir, "--scheduler", address, "-q"), log)
        procs["driver"] = driver

        # when the train wave is under way, kill a worker that is computing a train task
        def busy_worker() -> str | None:
            if not any(s == "train" for (_, s) in ledger_rows(run_dir)):
                return None
            names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
            for addr, keys in client.processing().items():
                if any(str(k).startswith("train-") for k in keys):
                    return names.get(addr)
            return None

        assert wait_for(lambda: busy_worker() is not None, driver), log.read_text()[-2000:]
        time.sleep(0.5)  # into the task
        found: list[str] = []
        assert wait_for(lambda: bool(found.append(busy_worker()) or found[-1]), driver), log.read_text()[-2000:]
        victim = found[-1]
        assert victim in procs, victim
        done_before = sum(r.status == "done" for (_, s), r in ledger_rows(run_dir).items() if s == "train")
        kill_group(procs[victim])
        assert done_before < reference.n_tiles

        code = driver.wait(timeout=300)
        assert code == 0, log.read_text()[-3000:]
        assert len(client.scheduler_info()["workers"]) == 1  # the run finished on the survivor
        assert_same_products(run_dir, reference.run_dir)
        rows = ledger_rows(run_dir)
        assert all(r.status == "done" for r in rows.values())
        # dask re-ran the lost task on the other worker: the driver saw one attempt per tile and stage
        assert all(r.attempts == 1 for r in rows.values())
    finally:
        if client is not None:
            client.close()
        for name in ("driver", "w0", "w1", "scheduler"):
            if name in procs:
                _stop(procs[name])


def test_a_malformed_scheduler_leaves_dask_as_it_was():
    """distributed's Client makes itself dask's default scheduler before it fails to start: the
    engine undoes that, or later dask work in the same process asks for a client that is gone."""
    import dask

    from engine.backends.local.dask import connect
    from engine.errors import ConfigError

    before = dask.config.get("scheduler", None)
    with pytest.raises(ConfigError, match="is not a dask scheduler address"):
        connect("localhost")
    assert dask.config.get("scheduler", None) == before
