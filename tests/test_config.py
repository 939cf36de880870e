"""Configuration: defaults, validation, legacy mapping, overrides, the science hash."""
from __future__ import annotations

import json

import pytest

from config.parameters import DEFAULTS_PATH, Parameters, load_parameters
from engine.errors import ConfigError

ORIGINAL_KEYS = [
    "PROJECT_TITLE", "OPTICAL_MISSION", "START_DATE", "END_DATE", "TRAIN_TEST_SPLIT", "VAL_SPLIT", "RANDOM_SPLIT",
    "PCA_SMOOTH", "PCA_COMPONENT_RATIO", "STD_CLOUD_THRESHOLD", "EXPORT_INPUT", "EXPORT_RLR", "EXPORT_PCA",
    "CLEAR_EXISTING", "AOI_NAME", "AOI_PATH", "PATH_MATADATA",
]


def write(tmp_path, obj, name="p.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_defaults_keep_original_keys_and_validate():
    raw = json.loads(DEFAULTS_PATH.read_text())
    assert all(k in raw for k in ORIGINAL_KEYS)
    assert set(raw) == set(Parameters.model_fields) - {"EE_LEGACY_ROOT"}
    params, notes = load_parameters()
    assert notes == [] and params.scale == 10.0


def test_original_style_config_loads_with_notes(tmp_path):
    legacy = {
        "PROJECT_TITLE": "Wheat", "GEE_USERNAME": "jdoe", "EXPORT_INPUT": False, "EXPORT_RLR": False, "EXPORT_PCA": True,
        "CLEAR_EXISTING": False, "OPTICAL_MISSION": "L8", "START_DATE": "2019-01-01", "END_DATE": "2020-01-01",
        "PATH_MATADATA": None, "TRAIN_TEST_SPLIT": 0.6, "VAL_SPLIT": 0.2, "RANDOM_SPLIT": True, "PCA_SMOOTH": True,
        "PCA_COMPONENT_RATIO": 0.1, "STD_CLOUD_THRESHOLD": 50, "AOI_NAME": "Wheatbelt WA",
        "AOI_PATH": "..\\AOI\\AOI.shp",
    }
    params, notes = load_parameters(write(tmp_path, legacy))
    assert params.OPTICAL_MISSION == "L8" and params.scale == 30.0
    assert params.EE_LEGACY_ROOT == "projects/earthengine-legacy/assets/users/jdoe"
    assert params.AOI_PATH is None
    joined = " ".join(notes)
    assert "GEE_USERNAME" in joined and "EXPORT_RLR" in joined and "built-in sites" in joined


@pytest.mark.parametrize(
    "values,match",
    [
        ({"START_DAT": "2021-01-01"}, "did you mean START_DATE"),
        ({"END_DATE": "2020-06-01"}, "not after START_DATE"),
        ({"TRAIN_TEST_SPLIT": 0}, "TRAIN_TEST_SPLIT"),
        ({"VAL_SPLIT": 1.2}, "VAL_SPLIT"),
        ({"OPTICAL_MISSION": "L7"}, "OPTICAL_MISSION"),
        ({"PCA_SMOOTH": "maybe"}, "PCA_SMOOTH"),
        ({"TILE_SIZE": 33}, "must be even"),
        ({"CRS": "EPSG:4326"}, "geographic"),
        ({"START_DATE": "2013-01-01"}, "Sentinel-1"),
        ({"PROJECT_TITLE": "my project!"}, "PROJECT_TITLE"),
        ({"DATA_SOURCE": "stac"}, "STAC_CATALOG"),
    ],
)
def test_bad_values_are_one_clear_error(tmp_path, values, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_parameters(write(tmp_path, values))
    assert "\n" not in str(e.value)


def test_flags_override_file(tmp_path):
    path = write(tmp_path, {"OPTICAL_MISSION": "L8", "START_DATE": "2020-01-01", "END_DATE": "2021-01-01"})
    params, _ = load_parameters(path, {"OPTICAL_MISSION": "S2", "END_DATE": "2020-07-01"})
    assert params.OPTICAL_MISSION == "S2" and str(params.END_DATE) == "2020-07-01"
    with pytest.raises(ConfigError, match="command-line flags"):
        load_parameters(path, {"END_DATE": "2019-01-01"})


def test_science_hash_ignores_execution_keys():
    a, _ = load_parameters()
    b, _ = load_parameters(None, {"WORKERS": 7, "RUN_DIR": "/x", "TILE_SIZE": 64})
    c, _ = load_parameters(None, {"PCA_COMPONENT_RATIO": 0.2})
    assert a.science_hash() == b.science_hash() != c.science_hash()


@pytest.mark.parametrize("content,match", [("{not json", "not valid JSON"), ("[1, 2]", "JSON object")])
def test_unreadable_config(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_parameters(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_parameters(tmp_path / "missing.json")
