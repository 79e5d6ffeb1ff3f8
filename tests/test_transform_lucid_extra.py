"""Lucid 0.3.10's `collapse_alpha_random` and `normalize_gradient` in lucid_ifv.transform."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conftest import _import_lucid
from lucid_ifv import transform as T
from lucid_ifv.param.spatial import rfft2d_freqs


def _rng(seed: int = 0) -> tf.random.Generator:
    return tf.random.Generator.from_seed(seed)


def _rgba(b=2, h=9, w=11, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((b, h, w, 4)).astype(np.float32)


# ------------------------------------------------------------------ collapse_alpha_random


@pytest.mark.parametrize("shape", [(2, 9, 11, 4), (1, 16, 16, 4), (3, 8, 5, 4)])
def test_collapse_alpha_shape_and_range(shape):
    x = np.random.default_rng(1).random(shape).astype(np.float32)
    out = T.collapse_alpha_random()(x, _rng()).numpy()
    assert out.shape == shape[:3] + (3,)
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def test_collapse_alpha_one_keeps_rgb():
    x = _rgba()
    x[..., 3] = 1.0
    out = T.collapse_alpha_random()(x, _rng()).numpy()
    np.testing.assert_array_equal(out, x[..., :3])


def test_collapse_alpha_zero_is_background_only():
    x, y = _rgba(seed=1), _rgba(seed=2)
    x[..., 3] = 0.0
    y[..., 3] = 0.0
    t = T.collapse_alpha_random()
    out_x, out_y = t(x, _rng(5)).numpy(), t(y, _rng(5)).numpy()
    np.testing.assert_array_equal(out_x, out_y)  # the RGB is ignored entirely
    assert 0.0 < out_x.min() and out_x.max() < 1.0  # a sigmoid background
    assert out_x.std() > 0.01  # not a flat colour
    assert not np.allclose(out_x[0], out_x[1])  # one background per image


def test_collapse_alpha_deterministic_with_seeded_rng():
    x = _rgba()
    t = T.collapse_alpha_random(sd=0.3)
    a, b = t(x, _rng(7)).numpy(), t(x, _rng(7)).numpy()
    np.testing.assert_array_equal(a, b)
    rng = _rng(7)
    first, second = t(x, rng).numpy(), t(x, rng).numpy()
    np.testing.assert_array_equal(first, a)
    assert not np.allclose(first, second)  # the generator advances: a new background
    graph = tf.function(lambda images, gen: t(images, gen), autograph=False)
    np.testing.assert_allclose(graph(tf.constant(x), _rng(7)).numpy(), a, rtol=1e-5, atol=1e-6)


def test_collapse_alpha_matches_lucid_with_the_same_noise(monkeypatch, lucid_param):
    """Lucid's own collapse_alpha_random, fed the normal draws our rng makes, gives our output."""
    lucid_transform = _import_lucid("lucid.optvis.transform")
    b, h, w = 2, 9, 11
    x = _rgba(b, h, w, seed=3)
    fh, fw = rfft2d_freqs(h, w).shape
    draws = iter(_rng(3).normal([b, 2, 3, fh, fw]).numpy())  # Lucid draws [2, 3, fh, fw] per image
    monkeypatch.setattr(tf, "random_normal", lambda shape, dtype=None: tf.constant(next(draws)), raising=False)
    expected = lucid_transform.collapse_alpha_random(0.5)(tf.constant(x)).numpy()
    ours = T.collapse_alpha_random(0.5)(x, _rng(3)).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_collapse_alpha_gradient_flows_to_rgb_and_alpha():
    x = tf.constant(_rgba())
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(T.collapse_alpha_random()(x, _rng()))
    g = tape.gradient(loss, x).numpy()
    np.testing.assert_allclose(g[..., :3], np.repeat(x.numpy()[..., 3:], 3, axis=-1), rtol=1e-6)
    assert np.abs(g[..., 3]).sum() > 0


@pytest.mark.parametrize("sd", [-1.0, float("nan"), "big", True])
def test_collapse_alpha_bad_sd(sd):
    with pytest.raises(ValueError, match="sd"):
        T.collapse_alpha_random(sd)


def test_collapse_alpha_needs_rgba():
    with pytest.raises(ValueError, match=r"RGBA.*\[2, 9, 11, 3\]|RGBA.*\(2, 9, 11, 3\)"):
        T.collapse_alpha_random()(np.zeros((2, 9, 11, 3), np.float32), _rng())


# ---------------------------------------------------------------------- normalize_gradient


def _lucid_normalized(upstream: np.ndarray, scales=None) -> np.ndarray:
    """Lucid's _NormalizeGrad in numpy."""
    norm = np.sqrt(np.sum(upstream.astype(np.float64) ** 2, axis=(1, 2, 3), keepdims=True))
    if scales is not None:
        upstream = upstream * np.float32(scales)[:, None, None, None]
    return upstream / norm


def _grad_through(t, x, upstream, graph=False):
    rng = _rng()

    def run(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = t(x, rng)
            loss = tf.reduce_sum(y * upstream)
        return y, tape.gradient(loss, x)

    fn = tf.function(run) if graph else run
    y, g = fn(tf.constant(x), tf.constant(upstream))
    return y.numpy(), g.numpy()


@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("scales", [None, [0.5, 2.0, -3.0], [4.0]])
def test_normalize_gradient_matches_lucid(graph, scales):
    rng = np.random.default_rng(0)
    x = rng.random((3, 6, 7, 3)).astype(np.float32)
    upstream = (rng.standard_normal((3, 6, 7, 3)) * [[[[0.01]]], [[[1.0]]], [[[100.0]]]]).astype(np.float32)
    y, g = _grad_through(T.normalize_gradient(scales), x, upstream, graph)
    np.testing.assert_array_equal(y, x)  # identity forward
    np.testing.assert_allclose(g, _lucid_normalized(upstream, scales), rtol=1e-5, atol=1e-7)
    expected_norms = np.abs(np.broadcast_to(np.float32(scales if scales is not None else [1.0]), (3,)))
    np.testing.assert_allclose(np.linalg.norm(g.reshape(3, -1), axis=1), expected_norms, rtol=1e-5)


def test_normalize_gradient_zero_gradient_gives_zero_not_nan():
    x = np.ones((2, 4, 4, 3), np.float32)
    upstream = np.zeros_like(x)
    upstream[1] = 1.0
    _, g = _grad_through(T.normalize_gradient(), x, upstream)
    np.testing.assert_array_equal(g[0], 0.0)
    np.testing.assert_allclose(g[1], 1.0 / np.sqrt(48), rtol=1e-6)


def test_normalize_gradient_in_compose_and_bad_scales():
    x = np.random.default_rng(0).random((2, 20, 20, 3)).astype(np.float32)
    t = T.compose([T.normalize_gradient(), T.jitter(2)])
    assert t(x, _rng()).shape == (2, 18, 18, 3)
    with pytest.raises(ValueError, match="grad_scales"):
        T.normalize_gradient([1.0, float("inf")])
    with pytest.raises(ValueError, match="grad_scales"):
        T.normalize_gradient([[1.0]])
    with pytest.raises(ValueError, match="3 entries but the batch has 2"):
        T.normalize_gradient([1.0, 2.0, 3.0])(x, _rng())
