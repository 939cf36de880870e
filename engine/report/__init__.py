"""The HTML report of a run directory (``python -m engine report RUN_DIR``).

``build_report(run_dir, out=None)`` writes ``RUN_DIR/report/index.html`` - one self-contained page,
figures embedded as base64 PNG data URIs so the file works when mailed - and the same figures as
PNG files next to it. Modules: ``data`` (run-directory reads, decimated lazy cube reads),
``figures`` (matplotlib, Agg canvas), ``html`` (the page), ``build`` (the driver).
"""
from __future__ import annotations

from engine.report.build import FIGURES, SECTION_IDS, ReportResult, build_report

__all__ = ["FIGURES", "SECTION_IDS", "ReportResult", "build_report"]
