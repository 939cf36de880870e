"""Shared fixtures: small AOI files and a helper to run the CLI in-process."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def eecu_journal(tmp_path_factory, monkeypatch) -> Path:
    """Every test journals Earth Engine usage in a journal of its own, never the user's."""
    path = tmp_path_factory.mktemp("eecu") / "eecu.jsonl"
    monkeypatch.setenv("SAR_INFILL_EECU_JOURNAL", str(path))
    monkeypatch.delenv("EE_TIER", raising=False)
    return path


def flat(text: str) -> str:
    """Terminal output with table borders and line wrapping removed, for substring checks."""
    for ch in "│┃┌┐└┘├┤┬┴┼─━╭╮╰╯":
        text = text.replace(ch, " ")
    return " ".join(text.split())


@pytest.fixture
def run_cli(capsys):
    """Run ``python -m engine ARGS`` in-process; return (exit code, stdout, stderr)."""

    def _run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return code, flat(out.out), out.err

    return _run


@pytest.fixture
def aoi_files(tmp_path) -> dict[str, Path]:
    """A few vector files: two named fields, an empty collection, points only, garbage."""
    fields = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"name": "Paddock 7"},
             "geometry": {"type": "Polygon", "coordinates": [[[145.80, -17.06], [145.82, -17.06], [145.82, -17.04], [145.80, -17.04], [145.80, -17.06]]]}},
            {"type": "Feature", "properties": {"name": "Creek"},
             "geometry": {"type": "Polygon", "coordinates": [[[145.83, -17.06], [145.84, -17.06], [145.84, -17.05], [145.83, -17.05], [145.83, -17.06]]]}},
        ],
    }
    files = {
        "fields": tmp_path / "fields.geojson",
        "empty": tmp_path / "empty.geojson",
        "points": tmp_path / "points.geojson",
        "garbage": tmp_path / "garbage.geojson",
    }
    files["fields"].write_text(json.dumps(fields))
    files["empty"].write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    files["points"].write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [145.8, -17.0]}}]}))
    files["garbage"].write_text("this is not geojson {")
    return files
