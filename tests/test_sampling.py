"""Acceptance tests for lucid_ifv.sampling (Hoyer-sparse targets, canonical and random vectors)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from lucid_ifv.sampling import (
    as_rng,
    canonical_targets,
    hoyer_project,
    hoyer_sparseness,
    random_unit_vectors,
    sample_hoyer_targets,
)


def test_hoyer_sparseness_known_values():
    assert hoyer_sparseness(np.array([0.0, 0.0, 3.0, 0.0])) == pytest.approx(1.0, abs=1e-12)
    assert hoyer_sparseness(np.full(5, 0.7)) == pytest.approx(0.0, abs=1e-12)
    assert hoyer_sparseness(np.array([1.0, -1.0, 1.0, -1.0])) == pytest.approx(0.0, abs=1e-12)
    # k = 4: |x|_1/|x|_2 = 2 / sqrt(2) = sqrt(2); s = (2 - sqrt(2)) / (2 - 1)
    x = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    np.testing.assert_allclose(hoyer_sparseness(x), [2.0 - np.sqrt(2.0), 1.0], atol=1e-12)


@pytest.mark.parametrize("bad, match", [
    (np.zeros(4), "zero vector"),
    (np.array([1.0]), "k >= 2"),
    (np.array([1.0, np.nan]), "non-finite"),
    (np.zeros((2, 2, 2)), "expected"),
])
def test_hoyer_sparseness_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        hoyer_sparseness(bad)


@pytest.mark.parametrize("k", [2, 3, 7, 50, 300])
def test_hoyer_project_sweep(k):
    rng = np.random.default_rng(k)
    levels = np.concatenate([np.linspace(0.0, 1.0, 11), rng.uniform(0, 1, 5), [1e-9, 1 - 1e-9]])
    for s in levels:
        for scale in (1e-3, 1.0, 50.0):
            x = scale * rng.standard_normal(k)
            y = hoyer_project(x, s)
            assert y.min() >= 0.0
            assert np.linalg.norm(y) == pytest.approx(1.0, abs=1e-12)
            assert hoyer_sparseness(y) == pytest.approx(s, abs=1e-6)
            z = hoyer_project(x, s, nonneg=False)
            assert np.linalg.norm(z) == pytest.approx(1.0, abs=1e-12)
            assert hoyer_sparseness(z) == pytest.approx(s, abs=1e-6)
            assert np.all(z * np.where(x < 0, -1.0, 1.0) >= 0)  # signs of x kept


def test_hoyer_project_end_points_exact():
    x = np.array([0.3, -2.0, 0.9, 0.1])
    np.testing.assert_array_equal(hoyer_project(x, 0.0), np.full(4, 0.5))
    np.testing.assert_array_equal(hoyer_project(x, 1.0), [0.0, 0.0, 1.0, 0.0])  # argmax(x)
    np.testing.assert_array_equal(hoyer_project(x, 1.0, nonneg=False), [0.0, -1.0, 0.0, 0.0])  # argmax |x|
    np.testing.assert_array_equal(hoyer_project(x, 0.0, nonneg=False), [0.5, -0.5, 0.5, 0.5])
    # degenerate starts (constant, zero) still hit the constraints
    for start in (np.ones(6), np.zeros(6)):
        y = hoyer_project(start, 0.4)
        assert hoyer_sparseness(y) == pytest.approx(0.4, abs=1e-9)


def test_hoyer_project_is_a_projection():
    rng = np.random.default_rng(3)
    k = 5
    for s in (0.2, 0.5, 0.8):
        l1 = np.sqrt(k) - s * (np.sqrt(k) - 1)
        y = hoyer_project(rng.uniform(size=k), s)
        # fixed point, also for positive rescaling (closest point of c*y is y)
        np.testing.assert_allclose(hoyer_project(y, s), y, atol=1e-12)
        np.testing.assert_allclose(hoyer_project(7.0 * y, s), y, atol=1e-12)
        # no feasible point is closer than Hoyer's answer (SLSQP from several starts)
        x = rng.standard_normal(k)
        best = np.linalg.norm(hoyer_project(x, s) - x)
        cons = [{"type": "eq", "fun": lambda v: v.sum() - l1}, {"type": "eq", "fun": lambda v: v @ v - 1.0}]
        for _ in range(4):
            res = minimize(lambda v: np.sum((v - x) ** 2), hoyer_project(rng.uniform(size=k), s),
                           method="SLSQP", bounds=[(0, None)] * k, constraints=cons)
            if res.success:
                assert best <= np.linalg.norm(res.x - x) + 1e-6


def test_hoyer_project_batch_and_errors():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(4, 6))
    s = np.array([0.0, 0.3, 0.6, 1.0])
    y = hoyer_project(x, s)
    np.testing.assert_allclose(hoyer_sparseness(y), s, atol=1e-9)
    np.testing.assert_array_equal(y[1], hoyer_project(x[1], 0.3))
    with pytest.raises(ValueError, match=r"sparseness must lie in \[0, 1\], got 1.5"):
        hoyer_project(x[0], 1.5)
    with pytest.raises(ValueError, match=r"expected a scalar or \[4\]"):
        hoyer_project(x, [0.1, 0.2])


def test_sample_hoyer_targets():
    t, s = sample_hoyer_targets(10, 300, 0)
    assert t.shape == (300, 10) and s.shape == (300,) and t.dtype == np.float64
    assert t.min() >= 0
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(hoyer_sparseness(t), s, atol=1e-6)
    assert 0.0 <= s.min() and s.max() <= 1.0 and 0.4 < s.mean() < 0.6  # uniform in [0, 1]
    t2, s2 = sample_hoyer_targets(10, 5, 0, sparseness=0.25)
    np.testing.assert_allclose(hoyer_sparseness(t2), 0.25, atol=1e-6)
    np.testing.assert_array_equal(s2, np.full(5, 0.25))


def test_sampling_reproducible():
    a = sample_hoyer_targets(8, 20, 123)
    b = sample_hoyer_targets(8, 20, np.random.default_rng(123))
    c = sample_hoyer_targets(8, 20, 124)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])
    np.testing.assert_array_equal(random_unit_vectors(5, 3, 9), random_unit_vectors(5, 3, 9))
    rng = np.random.default_rng(1)  # a shared generator advances
    assert not np.allclose(random_unit_vectors(5, 3, rng), random_unit_vectors(5, 3, rng))


def test_canonical_targets():
    np.testing.assert_array_equal(canonical_targets(4), np.eye(4))
    np.testing.assert_array_equal(canonical_targets(4, [2, 0]), np.eye(4)[[2, 0]])
    assert hoyer_sparseness(canonical_targets(6)).tolist() == [1.0] * 6
    with pytest.raises(ValueError, match=r"features \[4\] out of range: the layer has 4 channels"):
        canonical_targets(4, [1, 4])
    with pytest.raises(ValueError, match="k must be an int"):
        canonical_targets(0)


def test_random_unit_vectors():
    v = random_unit_vectors(7, 50, 2)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)
    assert (v < 0).any()
    w = random_unit_vectors(7, 50, 2, nonneg=True)
    assert w.min() >= 0
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("bad", [None, 1.5, "3", True, -1])
def test_as_rng_rejects(bad):
    with pytest.raises(ValueError, match="seed"):
        as_rng(bad)
