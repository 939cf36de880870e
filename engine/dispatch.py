"""dask: the cluster (a LocalCluster by default, or an existing scheduler) and per-tile task waves."""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from distributed import Client, LocalCluster, as_completed

from engine.backends.base import TileOutcome
from engine.errors import ConfigError, EngineError, RunDirError

log = logging.getLogger(__name__)

# One thread per worker process: the kernels are single-threaded numba/numpy; parallelism comes
# from processes. Set before workers spawn so they inherit it.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "NUMBA_NUM_THREADS": "1"}


def connect(scheduler: str) -> Client:
    """A client of an existing scheduler, or a one-line error naming the address.

    The connect timeout is dask's ``distributed.comm.timeouts.connect`` (e.g. the environment
    variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).
    """
    import dask

    timeout = dask.config.get("distributed.comm.timeouts.connect", "30s")
    try:
        return Client(scheduler, timeout=timeout)
    except ValueError as e:  # malformed address: no port, unknown scheme
        raise ConfigError(f"--scheduler {scheduler!r} is not a dask scheduler address ({e}); "
                          "use e.g. tcp://host:8786") from None
    except (OSError, TimeoutError) as e:
        raise RunDirError(f"cannot reach dask scheduler {scheduler!r}: {e}; check the address "
                          "(e.g. tcp://host:8786) or drop --scheduler") from None


def check_scheduler(scheduler: str) -> None:
    """Fail early (before anything is written) when ``scheduler`` cannot be reached."""
    connect(scheduler).close()


@contextlib.contextmanager
def open_client(scheduler: str | None, workers: int, memory_limit: str = "auto") -> Iterator[Client]:
    """A dask client: to ``scheduler`` if given, else a fresh LocalCluster of ``workers`` processes."""
    if scheduler:
        client = connect(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    for key, value in SINGLE_THREAD_ENV.items():
        os.environ.setdefault(key, value)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      memory_limit=memory_limit, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def run_wave(
    client: Client,
    stage: str,
    func: Callable[..., TileOutcome],
    tile_ids: Sequence[str],
    key_suffix: str,
    shared: Sequence[Any],
    on_start: Callable[[str], None],
    on_done: Callable[[TileOutcome], None],
) -> list[TileOutcome]:
    """Run ``func(*shared, tile_id)`` for every tile as dask tasks keyed ``<stage>-<tile>-<suffix>``.

    ``shared`` objects are scattered once. A task that raises becomes a ``failed`` outcome with the
    error's message; the wave goes on. ``on_done`` runs in this (the driver) process as each task ends.
    """
    if not tile_ids:
        return []
    scattered = [client.scatter(obj, broadcast=True, hash=False) for obj in shared]
    futures = {}
    for tid in tile_ids:
        on_start(tid)
        fut = client.submit(func, *scattered, tid, key=f"{stage}-{tid}-{key_suffix}", pure=False, retries=0)
        futures[fut] = tid
    outcomes = []
    for fut in as_completed(futures):
        tid = futures[fut]
        try:
            outcome = fut.result()
        except EngineError as e:
            outcome = TileOutcome(tid, stage, "failed", message=str(e))
        except Exception as e:  # a bug or an environment failure in one tile must not stop the others
            log.exception("tile %s failed in %s", tid, stage)
            outcome = TileOutcome(tid, stage, "failed", message=f"{type(e).__name__}: {e}")
        finally:
            fut.release()
        outcomes.append(outcome)
        on_done(outcome)
    return outcomes
