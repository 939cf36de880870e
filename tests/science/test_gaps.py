from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.science.gaps import GAP_BANDS, gap_statistics

DAYS = np.array([3, 10, 12, 15, 20, 30, 35, 40])


def _clear(*pixels: list[int]) -> np.ndarray:
    """(T, 1, n) clear stack with pixel i clear on the listed days."""
    c = np.zeros((DAYS.size, 1, len(pixels)), dtype=bool)
    for i, ds in enumerate(pixels):
        c[np.isin(DAYS, ds), 0, i] = True
    return c


def test_gap_statistics_hand_made():
    clear = _clear(
        [10, 15, 30, 35, 40],  # 35 and 40 are at/after the exclusive end
        [20],  # one clear day
        [],  # none
        [3, 12, 40],  # 3 before the start, 40 after the end
        [10, 12, 15, 20, 30],
    )
    s = gap_statistics(clear, DAYS, start_day=5, end_day=35)
    assert tuple(s) == GAP_BANDS
    assert all(v.dtype == np.float32 and v.shape == (1, 5) for v in s.values())
    nan = np.nan
    expected = {
        "clear_count": [3, 1, 0, 1, 5],
        "gap_mean": [10, nan, nan, nan, 5],
        "gap_median": [10, nan, nan, nan, 4],
        "gap_p90": [14, nan, nan, nan, 8.5],
        "gap_max": [15, nan, nan, nan, 10],
        "lead_gap": [5, 15, nan, 7, 5],
        "trail_gap": [5, 15, nan, 23, 5],
    }
    for k, v in expected.items():
        np.testing.assert_allclose(s[k][0], v, equal_nan=True, err_msg=k)


def test_gap_statistics_start_inclusive_and_validation():
    s = gap_statistics(_clear([10, 12]), DAYS, start_day=10, end_day=12)
    assert s["clear_count"][0, 0] == 1 and s["lead_gap"][0, 0] == 0 and s["trail_gap"][0, 0] == 2
    with pytest.raises(ValueError, match="sorted"):
        gap_statistics(_clear([10])[::-1], DAYS[::-1], 0, 50)
    empty = gap_statistics(_clear([3]), DAYS, start_day=41, end_day=50)
    assert empty["clear_count"][0, 0] == 0 and np.isnan(empty["lead_gap"][0, 0])


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_gap_statistics_equals_numpy(data):
    t = data.draw(st.integers(1, 12))
    days = np.sort(np.array(data.draw(st.lists(st.integers(0, 60), min_size=t, max_size=t, unique=True))))
    flags = data.draw(st.lists(st.booleans(), min_size=t * 6, max_size=t * 6))
    clear = np.array(flags).reshape(t, 2, 3)
    start = data.draw(st.integers(-5, 30))
    end = data.draw(st.integers(start + 1, 70))
    s = gap_statistics(clear, days, start, end)
    for y in range(2):
        for x in range(3):
            d = days[clear[:, y, x] & (days >= start) & (days < end)]
            assert s["clear_count"][y, x] == d.size
            if d.size:
                assert s["lead_gap"][y, x] == d[0] - start and s["trail_gap"][y, x] == end - d[-1]
            g = np.diff(d).astype(np.float64)
            if g.size:
                exp = [g.mean(), np.median(g), np.percentile(g, 90), g.max()]
                got = [s[k][y, x] for k in ("gap_mean", "gap_median", "gap_p90", "gap_max")]
                np.testing.assert_allclose(got, exp, rtol=1e-6)
            else:
                assert np.isnan(s["gap_mean"][y, x]) and np.isnan(s["gap_p90"][y, x])
