"""One small synthetic run for all report tests (about 20 s), and its report."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main

RUN_ARGS = ["--aoi", "North Qld", "--start", "2021-01-01", "--end", "2021-09-01", "--tile-size", "256",
            "--workers", "2", "--yes", "-q"]


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("report_run") / "nq"
    code = main(["run", *RUN_ARGS, "--run-dir", str(run_dir)])
    assert code == 0, "the synthetic run for the report tests failed"
    return run_dir


@pytest.fixture(scope="session")
def report_dir(small_run) -> Path:
    """The report written by the CLI command itself (python -m engine report RUN_DIR)."""
    code = main(["report", str(small_run), "-q"])
    assert code == 0
    return small_run / "report"


def png_stats(data: bytes) -> tuple[float, int, float]:
    """(pixel variance, distinct colours, fraction of pixels that are not the most common colour)."""
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    packed = (img[..., 0].astype(np.int32) << 16) | (img[..., 1].astype(np.int32) << 8) | img[..., 2]
    counts = np.bincount(packed.ravel(), minlength=1)
    return float(img.var()), int(np.count_nonzero(counts)), 1.0 - counts.max() / packed.size


def assert_not_blank(data: bytes, name: str, min_ink: float = 0.03) -> None:
    var, ncolours, ink = png_stats(data)
    assert var > 0 and ncolours > 1, f"{name} is a single colour"
    assert ink > min_ink, f"{name} is nearly blank ({ink:.1%} of pixels differ from the background)"
