"""Orchestration benchmark of the gee backend against the loopback stand-in.

The stand-in simulates batch tasks of 0.5-1 s (``task_seconds`` + ``seconds_per_megapixel`` x
exported pixels: edge tiles are cut to the AOI's bounds, so they are smaller and quicker) with a
project cap of 2 running tasks, and the engine runs with ``MAX_RUNNING_EXPORTS=2``. Printed:

* makespan of the batch work (first task created -> last task ended, server clock) against the
  lower bound ``sum(task durations) / cap`` (target: <= 1.1 x);
* requests per tile beyond polling (``listOperations``; target: <= 5), and the part of them that
  is neither polling nor the export submissions themselves (``RunContext.ee_exports_per_tile``:
  the model, the multi-band outputs image, the per-image table).

Nothing is asserted; figures only. Usage::

    python benchmarks/orchestration.py [--tile-size 1024] [--task-seconds 0.5] [--poll 1.0]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.run.context import build_context  # noqa: E402
from engine.backends.gee.executor import GeeBackend  # noqa: E402
from engine.run.driver import execute  # noqa: E402
from engine.ee_standin import StandIn  # noqa: E402
from engine.run.progress import SilentProgress  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aoi", default="091084")
    ap.add_argument("--tile-size", type=int, default=1024, help="1024 -> 49 tiles of WRS-2 091084 at 30 m")
    ap.add_argument("--task-seconds", type=float, default=0.5, help="fixed part of a task's duration")
    ap.add_argument("--per-megapixel", type=float, default=0.5, help="extra seconds per exported megapixel")
    ap.add_argument("--cap", type=int, default=2, help="running tasks (stand-in cap and MAX_RUNNING_EXPORTS)")
    ap.add_argument("--poll", type=float, default=1.0, help="POLL_INTERVAL_S")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        cred = Path(tmp) / "credentials.json"
        cred.write_text(json.dumps({"type": "authorized_user", "client_id": "bench.apps.googleusercontent.com",
                                    "client_secret": "x", "refresh_token": "x", "token": "bench-token",
                                    "expiry": "2999-01-01T00:00:00Z"}))
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(cred)
        # execute=False: tasks take the simulated durations and interactive queries get the
        # placeholder answers; this measures dispatch, not the stand-in's own compute
        with StandIn(task_seconds=a.task_seconds, seconds_per_megapixel=a.per_megapixel, running_cap=a.cap,
                     execute=False) as s:
            ctx = build_context(None, {"BACKEND": "gee", "OPTICAL_MISSION": "L8", "START_DATE": "2021-01-01",
                                       "END_DATE": "2022-01-01", "TILE_SIZE": a.tile_size, "EE_API_URL": s.url,
                                       "EE_PROJECT": "bench", "RUN_DIR": str(Path(tmp) / "run"),
                                       "MAX_RUNNING_EXPORTS": a.cap, "POLL_INTERVAL_S": a.poll}, a.aoi)
            t0 = time.perf_counter()
            result = execute(ctx, SilentProgress(), backend=GeeBackend())
            wall = time.perf_counter() - t0
            tasks = [t for t in s.state.task_order if t.start_time is not None]
            c = s.counters.snapshot()

    durations = [t.end_time - t.start_time for t in tasks]
    first_created = min(t.create_time for t in tasks)
    last_end = max(t.end_time for t in tasks)
    makespan = last_end - first_created
    bound = sum(durations) / a.cap
    n_tiles = len(ctx.plan.tiles)
    polls = c.get("list_operations_calls", 0)
    setup = c.get("requests.GET.discovery", 0) + c.get("requests.GET.algorithms.list", 0)
    beyond_polling = c.get("requests.total", 0) - polls - setup
    exports = c.get("requests.POST.image.export", 0) + c.get("requests.POST.table.export", 0)
    d = result.summary.get("dispatch", {})
    print(f"plan: {n_tiles} tiles of {a.tile_size} px, {len(tasks)} batch tasks "
          f"({min(durations):.2f}-{max(durations):.2f} s, cap {a.cap}), poll interval {a.poll:g} s; "
          f"complete: {result.complete}")
    print(f"makespan (first task created -> last task ended): {makespan:.1f} s")
    print(f"lower bound (sum of task durations / cap):        {bound:.1f} s")
    print(f"ratio: {makespan / bound:.3f} (target <= 1.1)")
    print(f"whole run wall time: {wall:.1f} s (connect, global pass, reduce, manifest included)")
    print(f"requests: {c.get('requests.total', 0)} in all; {polls} listOperations ({polls / len(tasks):.2f} per task, "
          f"{d.get('polls', 0)} polls), {setup} client setup")
    print(f"requests per tile beyond polling: {beyond_polling / n_tiles:.2f} "
          f"({exports} export submissions = {exports / n_tiles:.2f} per tile, of which "
          f"{ctx.ee_exports_per_tile} per tile are inherent: model, {' + '.join(ctx.outputs)}; target <= 5)")
    print(f"requests per tile beyond polling and the export submissions: {(beyond_polling - exports) / n_tiles:.2f} "
          f"(value:compute {c.get('compute_calls', 0)}, folders {c.get('requests.POST.assets.create', 0)}, "
          f"listings {c.get('requests.GET.assets.listAssets', 0)}, getOperation {c.get('get_operation_calls', 0)})")
    print(f"exports submitted {c.get('exports_submitted', 0)}, duplicates by requestId "
          f"{c.get('duplicate_request_id', 0)}, running max {c.get('running_max', 0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
