"""``python -m engine.ee_standin`` runs in the foreground and prints its URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

pytestmark = pytest.mark.standin


def test_cli_prints_url_and_serves_counters():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.ee_standin", "--port", "0", "--task-seconds", "1",
         "--fault-429", "0.3", "--permanent-fail", "bad", "--seed", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        cfg = json.load(urllib.request.urlopen(f"{url}/_standin/state"))["config"]
        assert cfg["faults"]["rate_429"] == 0.3 and cfg["seed"] == 4
        assert cfg["faults"]["permanent_fail"][0][0] == "bad"
        doc = json.load(urllib.request.urlopen(f"{url}/$discovery/rest?version=v1"))
        assert doc["rootUrl"] == url + "/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
