"""Score -> label mappings (DeePAQ's cubic polynomial or MLP): fitting, clipping, JSON round trip."""

import json

import numpy as np
import pytest

from aqa.inference.calibration import FITS, Calibration, fit_cubic, fit_mlp, rmse


def test_cubic_recovers_a_cubic_relation():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 0, 200)  # e.g. minus an embedding distance
    y = 1 + 0.3 * x**3 + 2 * x + 4.5 + 0.01 * rng.standard_normal(200)
    cal = fit_cubic(x, y)
    assert rmse(cal(x), y) < 0.02
    assert cal.n == 200 and cal.x_range == (x.min(), x.max())


def test_mlp_fits_a_monotonic_saturating_map():
    rng = np.random.default_rng(1)
    x = rng.uniform(-4, 0, 300)
    y = 1 + 4 / (1 + np.exp(-3 * (x + 2)))  # a MOS-like S curve between 1 and 5
    cal = fit_mlp(x, y, steps=1500)
    assert rmse(cal(x), y) < 0.1 < rmse(np.full_like(y, y.mean()), y)


@pytest.mark.parametrize("kind", sorted(FITS))
def test_mapping_clips_and_round_trips(kind):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, 50)
    y = 1 + 4 * x
    cal = FITS[kind](x, y)
    far = cal(np.array([-100.0, 100.0]))  # outside the fitted range: clipped, never extrapolated
    assert far.min() >= y.min() - 1e-9 and far.max() <= y.max() + 1e-9
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(again(x), cal(x))


def test_fitting_refuses_too_little_data():
    with pytest.raises(ValueError, match="at least 4"):
        fit_cubic([1.0, 2.0, float("nan")], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="distinct"):
        fit_cubic([1.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0])
