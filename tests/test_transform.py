"""Acceptance tests for lucid_ifv.transform (Lucid's transform semantics in TF2)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.ndimage as ndi
import tensorflow as tf

from lucid_ifv import transform as T


def _rng(seed: int = 0) -> tf.random.Generator:
    return tf.random.Generator.from_seed(seed)


def _images(b=2, h=20, w=24, c=3, seed=0) -> np.ndarray:
    """Random images with distinct values (so crops and rotations are identifiable)."""
    return np.random.default_rng(seed).random((b, h, w, c)).astype(np.float32)


def _legacy_bilinear(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Reference TF1 resize_bilinear (no half-pixel centres): out[i] samples i * in/out."""

    def axis_weights(n_in, n_out):
        src = np.arange(n_out) * (n_in / n_out)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    ylo, yhi, fy = axis_weights(x.shape[1], oh)
    xlo, xhi, fx = axis_weights(x.shape[2], ow)
    top = x[:, ylo][:, :, xlo] * (1 - fx)[None, None, :, None] + x[:, ylo][:, :, xhi] * fx[None, None, :, None]
    bot = x[:, yhi][:, :, xlo] * (1 - fx)[None, None, :, None] + x[:, yhi][:, :, xhi] * fx[None, None, :, None]
    return top * (1 - fy)[None, :, None, None] + bot * fy[None, :, None, None]


# ------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize(
    "t, expected",
    [
        (T.pad(3), (2, 26, 30, 3)),
        (T.pad(0), (2, 20, 24, 3)),
        (T.jitter(4), (2, 16, 20, 3)),
        (T.jitter(0), (2, 20, 24, 3)),
        (T.random_scale([1.5]), (2, 30, 36, 3)),
        (T.random_rotate([7]), (2, 20, 24, 3)),
        (T.crop_or_pad_to(17, 30), (2, 17, 30, 3)),
        (T.resize_to(11, 13), (2, 11, 13, 3)),
        (T.compose([T.pad(2), T.jitter(3)]), (2, 21, 25, 3)),
    ],
)
def test_shapes(t, expected):
    assert tuple(t(_images(), _rng()).shape) == expected


def test_random_scale_truncates_in_float32_like_lucid():
    """Lucid: tf.cast(scale * tf.cast(shape, float32), int32) -> truncation, not rounding."""
    rng = _rng()
    assert T.random_scale([0.9])(np.zeros((1, 144, 144, 1)), rng).shape[1:3] == (129, 129)
    # float32(1.06) * 100 = 105.99999 -> 105 (rounding would give 106)
    assert T.random_scale([1.06])(np.zeros((1, 100, 50, 1)), rng).shape[1:3] == (105, 52)


def test_standard_transforms_shape_set_and_fixed_size():
    x = _images(1, 32, 32, 3)
    allowed = {int(np.float32(1 + (i - 5) / 50.0) * np.float32(32 + 16)) - 4 for i in range(11)}
    seen = set()
    for seed in range(12):
        y = T.compose(T.standard_transforms)(x, _rng(seed))
        assert y.shape[0] == 1 and y.shape[3] == 3 and y.shape[1] == y.shape[2]
        seen.add(int(y.shape[1]))
        fixed = T.compose(T.standard_transforms + [T.resize_to(32, 32)])(x, _rng(seed))
        assert tuple(fixed.shape) == (1, 32, 32, 3)
    assert seen <= allowed and len(seen) > 1


# -------------------------------------------------------------------------------- pad


@pytest.mark.parametrize("mode, np_mode", [("REFLECT", "reflect"), ("symmetric", "symmetric")])
def test_pad_mirror_values(mode, np_mode):
    x = _images()
    y = T.pad(5, mode=mode)(x, _rng()).numpy()
    np.testing.assert_array_equal(y, np.pad(x, [(0, 0), (5, 5), (5, 5), (0, 0)], mode=np_mode))


def test_pad_constant_values_any_case():
    x = _images()
    y = T.pad(4, mode="constant", constant_value=0.25)(x, _rng()).numpy()
    ref = np.pad(x, [(0, 0), (4, 4), (4, 4), (0, 0)], mode="constant", constant_values=0.25)
    np.testing.assert_array_equal(y, ref)


def test_pad_uniform_constant_is_one_random_value():
    x = _images()
    ys = [T.pad(3, mode="CONSTANT", constant_value="uniform")(x, _rng(s)).numpy() for s in (0, 0, 1)]
    border = ys[0][:, :3]
    assert np.all(border == border.flat[0]) and 0.0 <= border.flat[0] < 1.0
    np.testing.assert_array_equal(ys[0], ys[1])
    assert ys[0][0, 0, 0, 0] != ys[2][0, 0, 0, 0]
    np.testing.assert_array_equal(ys[0][:, 3:-3, 3:-3], x)


# ----------------------------------------------------------------------------- jitter


def _crop_offset(x, y, d):
    """All offsets (oy, ox) at which y is a crop of x."""
    h, w = x.shape[1] - d, x.shape[2] - d
    return [
        (oy, ox)
        for oy, ox in itertools.product(range(d + 1), repeat=2)
        if np.array_equal(y, x[:, oy : oy + h, ox : ox + w])
    ]


def test_jitter_is_a_crop_and_covers_all_offsets():
    x, d = _images(3, 10, 12, 2), 2
    rng, seen = _rng(3), set()
    for _ in range(120):
        y = T.jitter(d)(x, rng).numpy()
        offsets = _crop_offset(x, y, d)  # same offset for the whole batch
        assert len(offsets) == 1
        seen.add(offsets[0])
    assert seen == set(itertools.product(range(d + 1), repeat=2))


def test_same_seed_same_output_different_seed_different_jitter():
    x = _images(2, 40, 40, 3)
    t = T.compose(T.standard_transforms)
    np.testing.assert_array_equal(t(x, _rng(7)).numpy(), t(x, _rng(7)).numpy())
    outs = {tuple(_crop_offset(x, T.jitter(8)(x, _rng(s)).numpy(), 8)[0]) for s in range(6)}
    assert len(outs) > 1


# ------------------------------------------------------------------------ random_scale


@pytest.mark.parametrize("scales", [1.0, [1.0], [1.0, 1.0]])
def test_random_scale_one_is_identity(scales):
    x = _images()
    np.testing.assert_array_equal(T.random_scale(scales)(x, _rng()).numpy(), x)


def test_random_scale_uses_lucid_bilinear_kernel():
    x = _images(2, 4, 6, 3)
    y = T.random_scale([1.5])(x, _rng()).numpy()
    np.testing.assert_allclose(y, _legacy_bilinear(x, 6, 9), atol=1e-6)


def test_random_scale_draws_every_choice():
    x = np.zeros((1, 100, 100, 1), np.float32)
    rng = _rng(1)
    sizes = {T.random_scale([0.5, 1.0, 2.0])(x, rng).shape[1] for _ in range(40)}
    assert sizes == {50, 100, 200}


# ----------------------------------------------------------------------- random_rotate


@pytest.mark.parametrize("interp", ["NEAREST", "BILINEAR"])
def test_rotate_zero_is_identity(interp):
    x = _images()
    y = T.random_rotate([0], interpolation=interp)(x, _rng()).numpy()
    np.testing.assert_allclose(y, x, atol=1e-6)


@pytest.mark.parametrize("interp", ["NEAREST", "BILINEAR"])
@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize(
    "angles, units, k",
    [([90], "degrees", 1), ([-90], "degrees", -1), ([180], "degrees", 2), ([np.pi / 2], "radians", 1)],
)
def test_rotate_right_angles_match_rot90_counterclockwise(interp, size, angles, units, k):
    x = _images(2, size, size, 3)
    y = T.random_rotate(angles, units=units, interpolation=interp)(x, _rng()).numpy()
    np.testing.assert_allclose(y, np.rot90(x, k=k, axes=(1, 2)), atol=1e-5)


def test_rotate_small_angle_matches_scipy_in_interior():
    """Bilinear rotation by 10 degrees about the centre, counterclockwise, like scipy."""
    x = _images(1, 31, 31, 1)
    y = T.random_rotate([10], interpolation="BILINEAR")(x, _rng()).numpy()[0, ..., 0]
    ref = ndi.rotate(x[0, ..., 0], 10, reshape=False, order=1)
    inner = (slice(6, -6), slice(6, -6))
    np.testing.assert_allclose(y[inner], ref[inner], atol=1e-5)
    wrong_way = ndi.rotate(x[0, ..., 0], -10, reshape=False, order=1)
    assert np.abs(y[inner] - wrong_way[inner]).max() > 0.1


def test_rotate_default_is_nearest_like_contrib():
    """Lucid called tf.contrib.image.rotate(t, angle), whose default was NEAREST."""
    x = _images(1, 15, 15, 1)
    y = T.random_rotate([30])(x, _rng()).numpy()
    assert set(np.unique(y)) <= set(np.unique(x)) | {0.0}
    y_bilinear = T.random_rotate([30], interpolation="bilinear")(x, _rng()).numpy()
    assert not set(np.unique(y_bilinear)) <= set(np.unique(x)) | {0.0}


def test_rotate_fills_corners_with_zero():
    x = np.ones((1, 21, 21, 1), np.float32)
    y = T.random_rotate([45])(x, _rng()).numpy()
    assert y[0, 0, 0, 0] == 0.0 and y[0, 10, 10, 0] == 1.0


# ------------------------------------------------------- tf.function, seeds, gradients


def test_tf_function_matches_eager_and_gradients_flow():
    t = T.compose(T.standard_transforms + [T.resize_to(32, 32)])

    @tf.function
    def step(x, rng):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = t(x, rng)
            loss = tf.reduce_sum(y * tf.sin(tf.range(32, dtype=tf.float32))[None, :, None, None])
        return y, tape.gradient(loss, x)

    x = tf.constant(_images(2, 32, 32, 3))
    rng = _rng(11)
    y1, g1 = step(x, rng)
    y2, _ = step(x, rng)  # the Generator passed in advances between calls
    assert y1.shape == (2, 32, 32, 3)
    assert not np.array_equal(y1.numpy(), y2.numpy())
    np.testing.assert_allclose(y1.numpy(), t(x, _rng(11)).numpy(), atol=1e-6)
    g = g1.numpy()
    assert np.isfinite(g).all() and np.count_nonzero(g) > 0.5 * g.size


@pytest.mark.parametrize("interp", ["NEAREST", "BILINEAR"])
def test_rotate_gradient_nonzero(interp):
    x = tf.constant(_images(1, 16, 16, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(T.random_rotate([30], interpolation=interp)(x, _rng()))
    g = tape.gradient(loss, x).numpy()
    assert np.isfinite(g).all() and np.count_nonzero(g[0, 4:12, 4:12]) == 64


# ------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: T.pad(-1), "-1"),
        (lambda: T.pad(2.5), "2.5"),
        (lambda: T.pad(2, mode="wrap"), "wrap"),
        (lambda: T.pad(2, mode="constant", constant_value="gauss"), "gauss"),
        (lambda: T.jitter(-3), "-3"),
        (lambda: T.random_scale([]), r"\[\]"),
        (lambda: T.random_scale([1.0, 0.0]), "positive"),
        (lambda: T.random_scale([1.0, float("nan")]), "nan"),
        (lambda: T.random_rotate([]), r"\[\]"),
        (lambda: T.random_rotate([5], units="gradians"), "gradians"),
        (lambda: T.random_rotate([5], interpolation="cubic"), "cubic"),
        (lambda: T.compose([T.pad(1), "jitter"]), "jitter"),
        (lambda: T.resize_to(0, 5), "0"),
        (lambda: T.crop_or_pad_to(5, -2), "-2"),
    ],
)
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_images_raise_value_error():
    with pytest.raises(ValueError, match=r"jitter\(d=20\).*20x24"):
        T.jitter(20)(_images(), _rng())
    with pytest.raises(ValueError, match=r"jitter\(d=24\)"):
        T.jitter(24)(_images(), _rng())
    with pytest.raises(ValueError, match=r"pad\(w=20, mode='REFLECT'\)"):
        T.pad(20)(_images(), _rng())
    with pytest.raises(ValueError, match="rank 4"):
        T.jitter(2)(np.zeros((8, 8, 3), np.float32), _rng())
