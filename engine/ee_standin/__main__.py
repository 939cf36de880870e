"""``python -m engine.ee_standin``: run the stand-in in the foreground and print its URL."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .execution import Limits
from .server import StandIn


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.ee_standin",
                                description="Loopback stand-in of the Earth Engine REST API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = ephemeral")
    p.add_argument("--task-seconds", type=float, default=2.0)
    p.add_argument("--seconds-per-megapixel", type=float, default=0.0,
                   help="extra task duration per million exported pixels")
    p.add_argument("--running-cap", type=int, default=2)
    p.add_argument("--fault-429", type=float, default=0.0, help="fraction of requests -> 429")
    p.add_argument("--fault-500", type=float, default=0.0, help="fraction of requests -> 500")
    p.add_argument("--burst-429", default=None, metavar="EVERY,LENGTH",
                   help="429 for LENGTH requests out of every EVERY")
    p.add_argument("--max-concurrent-requests", type=int, default=None)
    p.add_argument("--lost-response", type=float, default=0.0,
                   help="fraction of mutating requests that take effect but answer 503")
    p.add_argument("--max-queued-tasks", type=int, default=None,
                   help="exports beyond this many PENDING+RUNNING are answered 429")
    p.add_argument("--memory-limit-pixels", type=float, default=None)
    p.add_argument("--permanent-fail", action="append", default=[], metavar="SUBSTRING",
                   help="exports whose description/asset contains it fail (repeatable)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="Cloud Storage / Drive exports land here as GeoTIFF and CSV "
                        "(DIR/gcs/<bucket>/<path>, DIR/drive/<folder>/<name>)")
    p.add_argument("--memory-mib", type=float, default=Limits().memory_bytes / 2**20,
                   help="cost model: a computation holding more fails with 'User memory limit exceeded.'")
    p.add_argument("--interactive-pixel-ops", type=float, default=Limits().interactive_pixel_ops,
                   help="cost model: value:compute / computePixels above this fail with 'Computation timed out.'")
    p.add_argument("--batch-pixel-ops", type=float, default=Limits().batch_pixel_ops,
                   help="cost model: the same limit for export tasks")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data the catalog serves")
    p.add_argument("--lenient-parents", action="store_true",
                   help="do not require parent folders to exist")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    burst = tuple(int(x) for x in a.burst_429.split(",")) if a.burst_429 else None
    s = StandIn(a.host, a.port, task_seconds=a.task_seconds, running_cap=a.running_cap,
                fault_429=a.fault_429, fault_500=a.fault_500,
                memory_limit_pixels=a.memory_limit_pixels, permanent_fail=a.permanent_fail,
                seed=a.seed, seconds_per_megapixel=a.seconds_per_megapixel,
                strict_parents=not a.lenient_parents, burst_429=burst,
                max_concurrent_requests=a.max_concurrent_requests,
                rate_lost_response=a.lost_response, max_queued_tasks=a.max_queued_tasks, data_dir=a.data_dir,
                limits=Limits(interactive_pixel_ops=a.interactive_pixel_ops, batch_pixel_ops=a.batch_pixel_ops,
                              memory_bytes=a.memory_mib * 2**20))
    s.start()
    print(s.url, flush=True)
    print(json.dumps(s.state.config_snapshot()), file=sys.stderr, flush=True)
    try:
        s._thread.join()  # type: ignore[union-attr]
    except KeyboardInterrupt:
        pass
    finally:
        s.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
