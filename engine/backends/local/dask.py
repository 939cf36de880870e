"""dask: the cluster (a LocalCluster by default, or an existing scheduler) and per-tile task waves."""
from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import CancelledError
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import dask
from distributed import Client, LocalCluster, as_completed
from distributed.scheduler import KilledWorker

from engine.run.stages import TileOutcome
from tiling.grid import Tile
from engine.errors import ConfigError, EngineError, RunDirError, is_disk_full

log = logging.getLogger(__name__)

# The workers' environment, given to the nannies as dask's ``pre-spawn-environ`` (set before each
# worker, a restarted one included, is spawned) and taken out of the driver's environment again.
# One thread per worker process: the kernels are single-threaded numba/numpy; parallelism comes
# from processes (numba re-reads NUMBA_NUM_THREADS on every compile and refuses a thread count
# other than its running pool's, hence not in the driver). glibc: memory a worker frees stays in its
# heap for the next tile (one arena, no mmap, no trimming). On these virtual machines, memory handed
# back to the kernel is reported free to the hypervisor within a few seconds, and touching it again
# costs ~2 ms per MB (0.5 s for a 283 MB array against 0.04 s from a kept heap), which every tile of
# a run paid on its largest arrays (dask's own MALLOC_TRIM_THRESHOLD_ of 64 KiB returned even more).
# A worker's resident memory therefore stays at its peak, which the tile budget bounds anyway.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
              "MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


# dask's developer logs (``distributed.admin.low-level-log-length``, 1000 by default) keep, per worker, the
# last messages sent and the tasks received, each with its arguments: a tile task carries the run's
# context and statistics, so over a scene's waves the driver (its scheduler) grew from 521 to 736 MiB, and
# each worker kept its own copies. A short log keeps the last few for debugging.
DASK_LOG_LENGTH = 32

# tasks submitted per worker thread: one running and one queued behind it, so a worker that ends a
# task starts the next at once while the driver records the first
IN_FLIGHT = 2

WORKER_DIED = ("the dask worker computing it died, most likely out of memory (killed by the operating system or "
               "by dask's memory limit); lower --tile-budget-mb for smaller tiles, or run fewer --workers")


def connect(scheduler: str) -> Client:
    """A client of an existing scheduler, or a one-line error naming the address.

    The connect timeout is dask's ``distributed.comm.timeouts.connect`` (e.g. the environment
    variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).
    """

    timeout = dask.config.get("distributed.comm.timeouts.connect", "30s")
    saved = dask.config.get("scheduler", None)
    try:
        try:
            return Client(scheduler, timeout=timeout)
        except BaseException:
            # a Client that fails to start has already made itself dask's default scheduler (and never
            # undoes it): later dask work in this process would ask for a client that does not exist
            if saved is None:
                dask.config.config.pop("scheduler", None)
            else:
                dask.config.set(scheduler=saved)
            raise
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
    # after Ctrl-C, multiprocessing's resource tracker (a child process) removes the semaphores of the
    # closed cluster and warns that it did: the cleanup is what we want, the warning noise
    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
    if quiet not in os.environ.get("PYTHONWARNINGS", ""):
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
    # the workers' own logs stay quiet (a heartbeat missed under load, a task's error): every task's
    # failure reaches the driver, which records it in the ledger and reports it
    key = "distributed.nanny.pre-spawn-environ"
    env = {**dask.config.get(key), **WORKER_ENV}
    # the log length for the scheduler's streams (a restarted worker's too: set for the cluster's life)
    # and the workers' (a nanny hands its worker the configuration it was made with)
    with dask.config.set({"distributed.admin.low-level-log-length": DASK_LOG_LENGTH}):
        with dask.config.set({key: env}), _environ_restored(env), _workers_ignore_ctrl_c():
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   memory_limit=memory_limit, silence_logs=logging.CRITICAL)
        with cluster, Client(cluster) as client:
            yield client


@contextlib.contextmanager
def _environ_restored(keys: Iterable[str]) -> Iterator[None]:
    """``os.environ``'s ``keys`` as they were before, whatever the block set (dask's nannies set their
    pre-spawn environment in the spawning process and leave it there)."""
    saved = {key: os.environ.get(key) for key in keys}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Start worker processes with SIGINT ignored (an ignored signal survives exec): Ctrl-C reaches the
    whole foreground process group, and workers dying of it mid-task print tracebacks and leak
    semaphores; the driver alone handles it, closing the cluster on its way out."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_wave(
    client: Client,
    stage: str,
    func: Callable[..., TileOutcome],
    tiles: Sequence[Tile],
    key_suffix: str,
    shared: Sequence[Any],
    on_start: Callable[[Tile], None],
    on_done: Callable[[TileOutcome], None],
) -> None:
    """Run ``func(*shared, tile)`` for every tile as dask tasks keyed ``<stage>-<tile id>-<suffix>``.

    ``shared`` objects (a few kB: context, statistics, reduction) travel with each task: scattered
    once, they would be lost with a worker that dies, and every task of the wave with them. At most
    ``IN_FLIGHT`` tasks per worker thread are submitted at a time, each with ``on_start`` (the ledger's
    "running"): an interrupted run leaves a few tiles "interrupted", not every tile of the wave. A task
    that raises becomes a ``failed`` outcome with the error's message (a dead worker: ``WORKER_DIED``);
    the wave goes on, unless the disk is full (the ``OSError`` is raised: every later tile would fail).
    ``on_done`` runs in this (the driver) process as each task ends.
    """
    waiting = list(reversed(tiles))
    futures: dict[Any, str] = {}
    running = as_completed()

    def submit_more() -> None:
        # the cluster's threads are asked again each time: an external scheduler's workers may come and go
        room = IN_FLIGHT * max(1, sum(client.nthreads().values())) - len(futures)
        for _ in range(min(room, len(waiting))):
            tile = waiting.pop()
            on_start(tile)
            fut = client.submit(func, *shared, tile, key=f"{stage}-{tile.id}-{key_suffix}", pure=False, retries=0)
            futures[fut] = tile.id
            running.add(fut)

    submit_more()
    for fut in running:
        tid = futures.pop(fut)
        try:
            outcome = fut.result()
        except EngineError as e:
            outcome = TileOutcome(tid, stage, "failed", message=str(e))
        except (KilledWorker, CancelledError) as e:  # the worker process died under the task
            log.info("tile %s: %s: %s", tid, type(e).__name__, e)
            outcome = TileOutcome(tid, stage, "failed", message=WORKER_DIED)
        except Exception as e:  # a bug or an environment failure in one tile must not stop the others
            if is_disk_full(e):  # ... but a full disk fails every tile after it
                on_done(TileOutcome(tid, stage, "failed", message=f"{type(e).__name__}: {e}"))
                raise
            log.exception("tile %s failed in %s", tid, stage)
            outcome = TileOutcome(tid, stage, "failed", message=f"{type(e).__name__}: {e}")
        finally:
            fut.release()
        on_done(outcome)
        submit_more()
