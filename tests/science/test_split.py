from __future__ import annotations

import numpy as np
import pytest

from engine.science.split import apply_artificial_mask, artificial_mask_donor, split_labels


def test_random_split_is_seeded_and_chronological():
    days = np.array([50, 10, 40, 20, 30, 60, 0, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190])
    r, labels = split_labels(days, seed=42, train_test_split=0.6, val_split=0.2, random_split=True)
    draws = np.random.default_rng(42).random(days.size)
    np.testing.assert_array_equal(r[np.argsort(days)], draws)  # one draw per image, by date
    np.testing.assert_array_equal(labels == "Validation", r < 0.2)
    np.testing.assert_array_equal(labels == "Training", (r >= 0.2) & (r < 0.6))
    np.testing.assert_array_equal(labels == "Testing", r >= 0.6)
    names, counts = np.unique(labels, return_counts=True)
    assert dict(zip(names.tolist(), counts.tolist())) == {"Testing": 11, "Training": 6, "Validation": 3}
    r2, labels2 = split_labels(days, seed=42, train_test_split=0.6, val_split=0.2, random_split=True)
    np.testing.assert_array_equal(r, r2)
    np.testing.assert_array_equal(labels, labels2)
    r3, _ = split_labels(days, seed=43, train_test_split=0.6, val_split=0.2, random_split=True)
    assert not np.array_equal(r, r3)


def test_chronological_split():
    days = np.array([9, 3, 7, 1, 5, 3, 8, 2, 6, 4])  # a tie on day 3
    r, labels = split_labels(days, seed=1, train_test_split=0.6, val_split=0.2, random_split=False)
    order = np.argsort(days, kind="stable")
    first6 = order[:6]  # days 1, 2, 3, 3, 4, 5
    assert sorted(days[first6].tolist()) == [1, 2, 3, 3, 4, 5]
    train_like = np.isin(labels, ["Training", "Validation"])
    np.testing.assert_array_equal(np.flatnonzero(train_like), np.sort(first6))
    np.testing.assert_array_equal(labels == "Validation", train_like & (r < 0.2))
    assert np.all(labels[~train_like] == "Testing")
    # floor(0.29 * 100) must be 29 despite 0.29 * 100 = 28.999999999999996
    _, many = split_labels(np.arange(100), seed=0, train_test_split=0.29, val_split=0.0, random_split=False)
    assert np.count_nonzero(many == "Training") == 29


def test_artificial_mask_donor():
    assert artificial_mask_donor(np.array([0.0, 30.0, 52.0, 51.0, 80.0])) == 2
    assert artificial_mask_donor(np.array([49.9, 55.0])) == 1  # inclusive upper bound
    assert artificial_mask_donor(np.array([50.0, 52.5])) == 0  # first in the band, not nearest
    # fallback: nearest to 52.5 among values in (0, 100)
    assert artificial_mask_donor(np.array([0.0, 60.0, 48.0, 100.0])) == 2
    assert artificial_mask_donor(np.array([100.0, 99.0, 0.0])) == 1
    assert artificial_mask_donor(np.array([0.0, 0.0, 100.0, np.nan])) is None
    assert artificial_mask_donor(np.array([])) is None


def test_apply_artificial_mask_codes():
    mask = np.array(
        [[[0, 1], [0, 1]], [[0, 0], [1, 1]], [[1, 0], [0, 1]]],
        dtype=np.uint8,
    )
    labels = np.array(["Training", "Validation", "Testing"])
    donor = np.array([[1, 0], [1, 0]], dtype=np.uint8)
    before = mask.copy()
    out = apply_artificial_mask(mask, labels, donor)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], [[2, 0], [3, 1]])  # codes 0..3 all present
    np.testing.assert_array_equal(out[[0, 2]], mask[[0, 2]])
    np.testing.assert_array_equal(mask, before)
    with pytest.raises(ValueError):
        apply_artificial_mask(mask, labels[:2], donor)
