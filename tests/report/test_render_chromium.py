"""Render the report in headless Chromium: every section and image loads, and the page is not blank."""
from __future__ import annotations

import functools
import http.server
import io
import re
import shutil
import subprocess
import threading

import numpy as np
import pytest

from engine.report import FIGURES, SECTION_IDS
from tests.report.conftest import assert_not_blank

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (Debian: apt-get install chromium; "
                                                "CI's .ci/run installs it)"),
]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def served(report_dir):
    """The report directory on http://127.0.0.1:<free port>/ (a thread, stopped after the module)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(report_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args],
                          capture_output=True, text=True, timeout=90)


def test_chromium_loads_every_section_and_image(served, tmp_path):
    proc = _chromium(tmp_path, "--dump-dom", served)
    dom = proc.stdout
    assert proc.returncode == 0 and "<body" in dom, proc.stderr[-2000:]
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in dom, sid
    assert 'id="synthetic-banner"' in dom
    assert len(re.findall(r"<img\b", dom)) == len(FIGURES)
    body = re.search(r"<body[^>]*>", dom).group(0)
    ok = re.search(r'data-images-ok="(\d+)"', body)
    total = re.search(r'data-images-total="(\d+)"', body)
    assert ok and total, f"the page's load script did not run: {body}"
    assert int(total.group(1)) == len(FIGURES)
    assert int(ok.group(1)) == len(FIGURES), "some images did not decode (naturalWidth 0)"


def test_chromium_screenshot_is_not_blank(served, tmp_path):
    from PIL import Image

    shot = tmp_path / "page.png"
    proc = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,4000", served)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    data = shot.read_bytes()
    assert_not_blank(data, "screenshot", min_ink=0.10)
    img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert img.shape[:2] == (4000, 1400)
    # the synthetic banner (yellow #ffeb3b) is at the top of the page
    yellow = (np.abs(img[:400] - [255, 235, 59]).sum(axis=2) < 30).mean()
    assert yellow > 0.03, "no SYNTHETIC DATA banner at the top of the rendered page"
    # the figures rendered: the gap maps and NDVI panels bring many distinct colours
    assert len(np.unique(img[::4, ::4].reshape(-1, 3), axis=0)) > 1000
