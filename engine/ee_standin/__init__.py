"""Loopback stand-in of the Earth Engine REST API for the unmodified earthengine-api client.

Usage::

    from engine.ee_standin import StandIn
    from engine.ee_standin.client import connect

    with StandIn(task_seconds=0.2, running_cap=2) as s:
        connect(s.url)                      # ee.Initialize against the stand-in
        ...                                 # real ee calls
        s.counters["exports_submitted"], s.state.faults.update(rate_429=0.3)

CLI: ``python -m engine.ee_standin --port 8765 [--task-seconds 2 --running-cap 2
--fault-429 0.3 --fault-500 0.05 --memory-limit-pixels N --permanent-fail SUBSTRING --seed 0]``.

Modules: ``server`` (HTTP + :class:`StandIn`), ``state`` (tasks, assets, counters), ``faults``,
``expressions`` (offline checker), ``exports`` (export-expression analysis), ``compute``
(``value:compute`` handler registry), ``client`` (``connect``, ``offline_initialize``).
"""

from .expressions import check_expression
from .server import StandIn

__all__ = ["StandIn", "check_expression"]
