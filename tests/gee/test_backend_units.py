"""Unit tests of the gee backend's pure parts (no server)."""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import EarthEngineError, MemoryLimitError, TransientError
from engine.gee.api import classify
from engine.gee.exports import export_window
from engine.gee.naming import Names, request_id
from engine.gee.reduce import basis_from_covariance
from engine.science.pca import pca_basis
from tiling.grid import GridSpec, Tile


def test_request_ids_are_deterministic_short_and_distinct():
    tile = Tile(GridSpec(32755, 30.0, 4096), 4, -51, "abcd")
    rid = request_id(tile.id, "prediction", "0123456789ab", 1)
    assert rid == request_id(tile.id, "prediction", "0123456789ab", 1)
    assert len(rid) <= 60
    others = {request_id(tile.id, "prediction", "0123456789ab", 2), request_id(tile.id, "filled", "0123456789ab", 1),
              request_id(tile.id, "prediction", "ffffffffffff", 1), request_id(tile.id[:-1], "prediction",
                                                                                "0123456789ab", 1)}
    assert rid not in others and len(others) == 4


def test_asset_layout_matches_the_planned_folder_count(tmp_path):
    from tiling.plan import RUN_FOLDERS

    names = Names.for_run("proj", "sar-infill", "My Title", tmp_path / "run 1")
    assert len(names.folders) == RUN_FOLDERS
    assert names.model("t-1") == "projects/proj/assets/sar-infill/My_Title/run_1/models/t-1"
    assert names.output("filled", "t-1").startswith(names.run_folder + "/")


class _Resp(dict):
    def __init__(self, status):
        super().__init__(status=str(status))
        self.status = status
        self.reason = "reason"


def _http_error(status, message):
    import json

    from googleapiclient.errors import HttpError

    return HttpError(_Resp(status), json.dumps({"error": {"code": status, "message": message}}).encode())


@pytest.mark.parametrize("status,message,kind", [
    (429, "Too Many Requests: Request was rejected", TransientError),
    (500, "An internal error has occurred", TransientError),
    (503, "The service is currently unavailable", TransientError),
    (400, "User memory limit exceeded.", MemoryLimitError),
    (400, "Computation timed out.", MemoryLimitError),
    (400, "Image.select: Pattern 'x' did not match any bands.", EarthEngineError),
])
def test_errors_are_classified_by_status_and_message(status, message, kind):
    err = classify(_http_error(status, message))
    assert type(err) is kind
    assert message.split(":")[0] in str(err)


def test_transport_errors_are_transient():
    assert isinstance(classify(ConnectionResetError("reset")), TransientError)
    assert isinstance(classify(TimeoutError("slow")), TransientError)


def test_pca_basis_from_covariance_equals_the_local_basis():
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12))
    local = pca_basis(samples, 0.25)
    gee = basis_from_covariance(samples.mean(axis=0), np.cov(samples, rowvar=False), 0.25)
    np.testing.assert_allclose(gee.components, local.components, atol=1e-10)
    np.testing.assert_allclose(gee.explained, local.explained, rtol=1e-10)


def test_export_window_is_cut_to_the_aoi_bounds():
    assert export_window((0, 0, 100, 100), (300.0, -1500.0, 1500.0, -600.0), 30.0) == (10, 20, 40, 30)
    assert export_window((0, 0, 100, 100), (6000.0, -9000.0, 7000.0, -8000.0), 30.0) is None
