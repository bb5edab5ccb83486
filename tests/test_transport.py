"""W2 between discrete measures: known answers (1-D quantiles, translations, atoms)."""

import numpy as np
import pytest

from mfnn import MfnnError
from mfnn.diagnostics import wasserstein2


def test_identical_measures_are_at_distance_zero():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3))
    p = np.full(12, 1 / 12)
    assert wasserstein2(x, p, x, p) < 1e-7


def test_translation_moves_by_its_length():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 2))
    p = rng.random(10)
    p /= p.sum()
    shift = np.array([0.3, -0.4])
    np.testing.assert_allclose(wasserstein2(x, p, x + shift, p), 0.5, rtol=1e-7)


def test_one_dimensional_equal_size_is_sorted_matching():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((15, 1)), rng.standard_normal((15, 1))
    u = np.full(15, 1 / 15)
    want = np.sqrt(np.mean((np.sort(x[:, 0]) - np.sort(y[:, 0])) ** 2))
    np.testing.assert_allclose(wasserstein2(x, u, y, u), want, rtol=1e-7)


def test_many_points_to_a_few_atoms():
    """1-D, unequal weights: the optimum is the monotone (quantile) coupling:
    -2 -> 0 (mass 0.25), 1 -> 0 (0.5), 1 -> 0.5 (0.25): W2^2 = 1 + 0.5 + 0.0625."""
    x = np.array([[1.0], [1.0], [1.0], [-2.0]])
    got = wasserstein2(x, np.full(4, 0.25), np.array([[0.0], [0.5]]), np.array([0.75, 0.25]))
    np.testing.assert_allclose(got**2, 1.5625, rtol=1e-7)


def test_bad_weights_are_refused():
    with pytest.raises(MfnnError, match="sum to 1"):
        wasserstein2(np.zeros((2, 1)), np.array([0.5, 0.6]), np.zeros((1, 1)), np.ones(1))
    with pytest.raises(MfnnError, match="agree"):
        wasserstein2(np.zeros((2, 1)), np.full(2, 0.5), np.zeros((1, 2)), np.ones(1))
