"""Acceptance tests for lucid_ifv.metrics."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from lucid_ifv.metrics import (
    angle_deg,
    angle_in_subspace,
    cosine_similarity,
    project_and_normalize,
    singular_coefficients,
    ssim,
    summary,
)


def test_angle_known_values():
    e0, e1 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    assert angle_deg(e0, 3 * e0) == 0.0
    assert angle_deg(e0, e1) == pytest.approx(90.0, abs=1e-12)
    assert angle_deg(e0, -2 * e0) == 180.0
    assert angle_deg(e0, e0 + e1) == pytest.approx(45.0, abs=1e-12)
    a = np.stack([e0, e0, e0, e0])
    b = np.stack([e0, e1, -e0, e0 + e1])
    got = angle_deg(a, b)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, [0.0, 90.0, 180.0, 45.0], atol=1e-12)
    np.testing.assert_allclose(cosine_similarity(a, b), [1.0, 0.0, -1.0, np.sqrt(0.5)], atol=1e-12)


def test_angle_tiny_and_range():
    a = np.array([1.0, 0.0])
    b = np.array([np.cos(1e-9), np.sin(1e-9)])  # arccos(cos) would round to 0
    assert angle_deg(a, b) == pytest.approx(np.degrees(1e-9), rel=1e-6)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((100, 20)), rng.standard_normal((100, 20))
    ang = angle_deg(x, y)
    assert ang.min() >= 0 and ang.max() <= 180
    ref = np.degrees(np.arccos(np.sum(x * y, 1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)))
    np.testing.assert_allclose(ang, ref, atol=1e-9)


def test_angle_errors():
    with pytest.raises(ValueError, match="zero vector"):
        angle_deg(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"row\(s\) \[1\]"):
        angle_deg(np.ones((2, 3)), np.array([[1.0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        angle_deg(np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        angle_deg(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="zero vector"):
        cosine_similarity(np.ones(2), np.zeros(2))


def test_ssim():
    rng = np.random.default_rng(0)
    imgs = rng.uniform(size=(3, 16, 16, 3))
    np.testing.assert_allclose(ssim(imgs, imgs), 1.0, atol=1e-12)
    other = np.clip(imgs + 0.2 * rng.standard_normal(imgs.shape), 0, 1)
    got = ssim(imgs, other)
    assert got.shape == (3,) and np.all(got < 0.99)
    ref = structural_similarity(imgs[1], other[1], data_range=1.0, channel_axis=-1)
    assert got[1] == pytest.approx(ref, abs=1e-12)
    # small images: largest odd window <= 7 that fits (5 for 6x6, 3 for 4x4)
    small = rng.uniform(size=(2, 6, 9, 1))
    small2 = np.clip(small + 0.1, 0, 1)
    ref5 = structural_similarity(small[0], small2[0], data_range=1.0, channel_axis=-1, win_size=5)
    assert ssim(small, small2)[0] == pytest.approx(ref5, abs=1e-12)
    tiny = rng.uniform(size=(1, 4, 4, 3))
    np.testing.assert_allclose(ssim(tiny, tiny), 1.0, atol=1e-12)


def test_ssim_errors():
    a = np.zeros((1, 8, 8, 3))
    with pytest.raises(ValueError, match=r"expected \[B, H, W, C\]"):
        ssim(a[0], a[0])
    with pytest.raises(ValueError, match="expected images in"):
        ssim(a + 2.0, a)
    with pytest.raises(ValueError, match="at least 3x3"):
        ssim(np.zeros((1, 2, 8, 1)), np.zeros((1, 2, 8, 1)))
    with pytest.raises(ValueError, match="equal shapes"):
        ssim(a, np.zeros((2, 8, 8, 3)))


def test_singular_coefficients():
    rng = np.random.default_rng(1)
    n, k = 4, 6
    mats = rng.standard_normal((n, k, 9))
    u, s, _ = np.linalg.svd(mats)  # descending singular values
    u_asc = u[:, :, ::-1]
    t = rng.uniform(size=(n, k))
    c = singular_coefficients(t, u_asc)
    assert c.shape == (n, k)
    np.testing.assert_allclose(np.sum(c ** 2, axis=1), 1.0, atol=1e-12)
    # first coefficient = projection onto the vector of the smallest singular value
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    np.testing.assert_allclose(c[:, 0], np.einsum("nk,nk->n", u_asc[:, :, 0], tn), atol=1e-12)
    np.testing.assert_allclose(c[2], singular_coefficients(t[2], u_asc[2]), atol=1e-14)
    # sorting by supplied singular values gives the same answer
    np.testing.assert_allclose(singular_coefficients(t, u, s), c, atol=1e-14)
    with pytest.raises(ValueError, match="left_vectors has shape"):
        singular_coefficients(t[0], u_asc)
    with pytest.raises(ValueError, match="unit norm"):
        singular_coefficients(t[0], 2 * u_asc[0])


def test_summary():
    out = summary([4.0, 1.0, 3.0, 2.0, 5.0])
    assert out == {"n": 5, "median": 3.0, "q1": 2.0, "q3": 4.0, "mean": 3.0, "min": 1.0, "max": 5.0}
    with pytest.raises(ValueError, match="non-finite"):
        summary([1.0, np.nan])
    with pytest.raises(ValueError, match="empty"):
        summary([])


def test_subspace_projection_and_angle():
    basis = np.eye(3)[:, :2]  # the x-y plane
    a, b = np.array([1.0, 0.0, 5.0]), np.array([0.0, 1.0, -5.0])
    assert angle_deg(a, b) > 90
    assert angle_in_subspace(a, b, basis) == pytest.approx(90.0, abs=1e-12)
    np.testing.assert_allclose(project_and_normalize(a, basis), [1.0, 0.0, 0.0])
    # a vector in the complement has no direction there: NaN angle, error for the projection
    got = angle_in_subspace(np.array([[1.0, 1, 0], [0, 0, 1]]), np.array([[1.0, 0, 0], [1, 0, 0]]), basis)
    assert got[0] == pytest.approx(45.0) and np.isnan(got[1])
    with pytest.raises(ValueError, match="orthogonal to span"):
        project_and_normalize(np.array([0.0, 0.0, 1.0]), basis)
    with pytest.raises(ValueError, match="not orthonormal"):
        angle_in_subspace(a, b, 2 * basis)
    with pytest.raises(ValueError, match=r"expected \[3, d\]"):
        angle_in_subspace(a, b, np.eye(4)[:, :2])


def test_objective_angle_is_modulo_sign_exactly_when_the_objective_is_even_in_t():
    import tensorflow as tf

    from lucid_ifv.metrics import objective_angle_deg
    from lucid_ifv.objectives import significance

    rng = np.random.default_rng(0)
    f, t = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    for p in (0, 1, 2, 3):
        same = np.allclose(significance(tf.constant(f), tf.constant(t), p), significance(tf.constant(f), tf.constant(-t), p))
        assert same == (p % 2 == 1)  # m(f, t) = <f, t> cos^p is even in t for odd p
        folded = objective_angle_deg(-t, t, p)
        np.testing.assert_allclose(folded, 0.0 if p % 2 == 1 else 180.0, atol=1e-6)
    np.testing.assert_allclose(objective_angle_deg(t[0], t[1], 2), angle_deg(t[0], t[1]))
    assert objective_angle_deg(t[0], t[1], 1) == min(angle_deg(t[0], t[1]), 180 - angle_deg(t[0], t[1]))
