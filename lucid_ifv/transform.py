"""Random image transforms that feature visualizations should be robust to.

A *transform* is a callable ``t(images, rng) -> images``:

- ``images``: float32 tensor ``[B, H, W, C]`` (NHWC); anything convertible is cast.
- ``rng``: a ``tf.random.Generator``; every random choice is drawn from it, so a
  Generator created from a seed makes the whole pipeline reproducible.  Transforms
  without randomness ignore it.

Every transform works eagerly and inside ``tf.function`` (with the Generator created
outside the function and passed in or captured), and is differentiable with respect to
``images``.  The factories below keep Lucid's names and arguments
(``lucid/optvis/transform.py``); where Lucid's TF1 semantics need a decision the
docstring says which one was taken (see also ``docs/transforms.md``).

Randomness is *per batch*, as in Lucid: one crop offset, one scale and one angle are
drawn per call and applied to every image of the batch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

Transform = Callable[[tf.Tensor, tf.random.Generator], tf.Tensor]

__all__ = [
    "Transform",
    "pad",
    "jitter",
    "random_scale",
    "random_rotate",
    "compose",
    "crop_or_pad_to",
    "resize_to",
    "collapse_alpha_random",
    "normalize_gradient",
    "standard_transforms",
]

_PAD_MODES = ("CONSTANT", "REFLECT", "SYMMETRIC")
_DEGREES = ("degrees", "degree", "deg")
_RADIANS = ("radians", "radian", "rads", "rad")
_INTERPOLATIONS = ("NEAREST", "BILINEAR")


# ----------------------------------------------------------------------------- helpers


def _keyed(factory):
    """Decorator of a transform factory: the transform it returns carries ``.key``, a hashable
    description of the factory and its arguments (`lucid_ifv.graph_keys`), so that a compiled
    render step built with it serves later calls with an equal transform."""

    @functools.wraps(factory)
    def make(*args, **kwargs):
        from lucid_ifv.graph_keys import key_or_identity

        transform = factory(*args, **kwargs)
        transform.key = (factory.__qualname__, key_or_identity(list(args)), key_or_identity(kwargs))
        return transform

    return make


def _as_images(images) -> tf.Tensor:
    """Convert to a float32 tensor and check it is ``[B, H, W, C]``."""
    x = tf.convert_to_tensor(images)
    if x.dtype != tf.float32:
        x = tf.cast(x, tf.float32)
    if x.shape.rank is not None and x.shape.rank != 4:
        raise ValueError(f"images must have shape [B, H, W, C] (rank 4), got shape {x.shape}")
    return x


def _check_int(value, name: str, minimum: int) -> int:
    """Return ``value`` as an int; ValueError naming it unless it is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_choices(values, name: str) -> np.ndarray:
    """A non-empty 1-D float array of finite choices (a scalar counts as one choice)."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-empty list of numbers, got {values!r}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty list of numbers, got {values!r}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must contain only finite numbers, got {values!r}")
    return arr


def _choose(choices: tf.Tensor, rng: tf.random.Generator) -> tf.Tensor:
    """One element of the 1-D tensor ``choices``, drawn uniformly with ``rng`` (scalar)."""
    n = choices.shape[0]
    index = rng.uniform(shape=[], minval=0, maxval=n, dtype=tf.int32)
    return tf.gather(choices, index)


def _spatial_size(images: tf.Tensor) -> tf.Tensor:
    """``[H, W]`` as an int32 tensor (works for dynamic shapes)."""
    return tf.shape(images)[1:3]


# -------------------------------------------------------------------------- transforms


@_keyed
def pad(w: int, mode: str = "REFLECT", constant_value: float | str = 0.5) -> Transform:
    """Pad ``w`` pixels on each side of height and width.

    ``[B, H, W, C] -> [B, H + 2w, W + 2w, C]``.

    Args:
        w: pixels added on each of the four sides, an integer >= 0.
        mode: ``"REFLECT"`` (default, mirror without repeating the edge pixel),
            ``"SYMMETRIC"`` (mirror repeating it) or ``"CONSTANT"``; case-insensitive,
            as ``tf.pad``.  REFLECT needs ``w < H`` and ``w < W``.
        constant_value: fill value for ``"CONSTANT"``: a number, or ``"uniform"`` for one
            value drawn from U[0, 1) per call (with ``rng``), as in Lucid.
    """
    w = _check_int(w, "pad: w", 0)
    mode_u = str(mode).upper()
    if mode_u not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {_PAD_MODES} (any case), got {mode!r}")
    uniform = isinstance(constant_value, str)
    if uniform and constant_value != "uniform":
        raise ValueError(f"pad: constant_value must be a number or 'uniform', got {constant_value!r}")
    if not uniform and not math.isfinite(float(constant_value)):
        raise ValueError(f"pad: constant_value must be finite, got {constant_value!r}")
    paddings = [[0, 0], [w, w], [w, w], [0, 0]]

    def inner(images, rng):
        x = _as_images(images)
        if mode_u != "CONSTANT":
            need = w + 1 if mode_u == "REFLECT" else w
            _check_fits(x, need, f"pad(w={w}, mode={mode_u!r})")
        if uniform:
            value = rng.uniform(shape=[], minval=0.0, maxval=1.0, dtype=tf.float32)
        else:
            value = tf.constant(float(constant_value), tf.float32)
        return tf.pad(x, paddings, mode=mode_u, constant_values=value)

    return inner


def _check_fits(images: tf.Tensor, minimum: int, what: str) -> None:
    """ValueError naming ``what`` if the static H or W is below ``minimum`` (dynamic: skip)."""
    h, w = images.shape[1], images.shape[2]
    if (h is not None and h < minimum) or (w is not None and w < minimum):
        raise ValueError(f"{what} needs images of at least {minimum}x{minimum} pixels, got {h}x{w}")


@_keyed
def jitter(d: int) -> Transform:
    """Random crop that removes ``d`` pixels in total from height and from width.

    ``[B, H, W, C] -> [B, H - d, W - d, C]``.  The top-left offset ``(oy, ox)`` is drawn
    uniformly from ``{0, ..., d}^2`` (like ``tf.random_crop``, which Lucid calls on the
    whole tensor), and the *same* offset is used for every image of the batch.

    Args:
        d: crop margin, an integer >= 0 (0 is the identity); needs ``d < H`` and ``d < W``.
    """
    d = _check_int(d, "jitter: d", 0)

    def inner(images, rng):
        x = _as_images(images)
        _check_fits(x, d + 1, f"jitter(d={d})")
        size = _spatial_size(x)
        if x.shape[1] is None or x.shape[2] is None:
            tf.debugging.assert_greater(size, d, message=f"jitter(d={d}) needs H > d and W > d")
        offset = rng.uniform(shape=[2], minval=0, maxval=d + 1, dtype=tf.int32)
        begin = tf.concat([[0], offset, [0]], axis=0)
        crop = tf.concat([[-1], size - d, [-1]], axis=0)
        out = tf.slice(x, begin, crop)
        out.set_shape(_minus(x.shape, d))
        return out

    return inner


def _minus(shape: tf.TensorShape, d: int) -> list:
    """Static shape ``[B, H - d, W - d, C]`` (unknown dims stay unknown)."""
    b, h, w, c = shape.as_list()
    return [b, None if h is None else h - d, None if w is None else w - d, c]


def _resize_bilinear_lucid(images: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """TF1 ``tf.image.resize_bilinear`` (align_corners=False, half_pixel_centers=False).

    Output pixel ``i`` samples input coordinate ``i * in_size / out_size`` (clamped at
    the last pixel).  ``[B, H, W, C] -> [B, size[0], size[1], C]``.
    """
    return tf.raw_ops.ResizeBilinear(
        images=images, size=size, align_corners=False, half_pixel_centers=False
    )


@_keyed
def random_scale(scales: Sequence[float] | float) -> Transform:
    """Resize by one factor chosen uniformly from ``scales`` (bilinear).

    ``[B, H, W, C] -> [B, int(s * H), int(s * W), C]``, where the product is computed in
    float32 and *truncated* toward zero, exactly as Lucid does
    (``tf.cast(scale * tf.cast(shape, "float32"), "int32")``); e.g. ``s = 0.9`` turns 144
    into 129 and ``s = 1.06`` turns 100 into 105.  Resizing uses TF1's
    ``resize_bilinear`` kernel (no half-pixel centres), as Lucid did.

    Args:
        scales: non-empty list of positive factors (a single number is one choice).
    """
    arr = _check_choices(scales, "random_scale: scales")
    if (arr <= 0).any():
        raise ValueError(f"random_scale: scales must be positive, got {scales!r}")
    table = arr.astype(np.float32)

    def inner(images, rng):
        x = _as_images(images)
        scale = _choose(tf.constant(table), rng)
        size = tf.cast(scale * tf.cast(_spatial_size(x), tf.float32), tf.int32)
        return _resize_bilinear_lucid(x, size)

    return inner


def _to_radians(angles: np.ndarray, units: str) -> np.ndarray:
    """Angles in radians (exact pi; Lucid used 3.14)."""
    u = str(units).lower()
    if u in _DEGREES:
        return angles * (math.pi / 180.0)
    if u in _RADIANS:
        return angles
    raise ValueError(f"random_rotate: units must be 'degrees' or 'radians', got {units!r}")


def _rotation_transform(angle: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Projective transform ``[1, 8]`` rotating counterclockwise by ``angle`` (radians).

    It maps an output pixel (x, y) to the input point it samples, rotating about the
    image centre ``((W - 1) / 2, (H - 1) / 2)``; same matrix as ``tf.contrib.image.rotate``.
    """
    hw = tf.cast(size, tf.float32)
    cy, cx = (hw[0] - 1.0) / 2.0, (hw[1] - 1.0) / 2.0
    c, s = tf.cos(angle), tf.sin(angle)
    row = [c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy, 0.0, 0.0]
    return tf.reshape(tf.stack(row), [1, 8])


@_keyed
def random_rotate(
    angles: Sequence[float] | float, units: str = "degrees", interpolation: str = "NEAREST"
) -> Transform:
    """Rotate about the image centre by one angle chosen uniformly from ``angles``.

    ``[B, H, W, C] -> [B, H, W, C]``.  Positive angles turn the picture
    counterclockwise as displayed (row 0 at the top), like ``tf.contrib.image.rotate``
    (90 degrees equals ``np.rot90`` on axes (1, 2) for a square image).  Pixels that come
    from outside the input are filled with 0, as ``tf.contrib.image.rotate`` did.

    Args:
        angles: non-empty list of angles (a single number is one choice).
        units: ``"degrees"`` (default) or ``"radians"``.  Degrees are converted with
            exact pi (Lucid used 3.14, a 0.05% smaller angle).
        interpolation: ``"NEAREST"`` (default: Lucid called ``tf.contrib.image.rotate``
            without this argument, and its default was NEAREST) or ``"BILINEAR"``.
    """
    arr = _check_choices(angles, "random_rotate: angles")
    table = _to_radians(arr, units).astype(np.float32)
    interp = str(interpolation).upper()
    if interp not in _INTERPOLATIONS:
        raise ValueError(
            f"random_rotate: interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}"
        )

    def inner(images, rng):
        x = _as_images(images)
        angle = _choose(tf.constant(table), rng)
        size = _spatial_size(x)
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=_rotation_transform(angle, size),
            output_shape=size,
            fill_value=tf.constant(0.0, tf.float32),
            interpolation=interp,
            fill_mode="CONSTANT",
        )
        out.set_shape(x.shape)
        return out

    return inner


@_keyed
def compose(transforms: Iterable[Transform]) -> Transform:
    """One transform applying ``transforms`` in order (an empty list is the identity)."""
    ts = list(transforms)
    for i, t in enumerate(ts):
        if not callable(t):
            raise ValueError(f"compose: transforms[{i}] must be callable t(images, rng), got {t!r}")

    def inner(images, rng):
        x = _as_images(images)
        for t in ts:
            x = t(x, rng)
        return x

    return inner


@_keyed
def crop_or_pad_to(height: int, width: int) -> Transform:
    """Centrally crop or zero-pad to ``[B, height, width, C]`` (Lucid's helper).

    Like Lucid's ``crop_or_pad_to`` (``tf.image.resize_with_crop_or_pad``): no
    resampling; a larger image loses its border, a smaller one gets a border of zeros.
    """
    height = _check_int(height, "crop_or_pad_to: height", 1)
    width = _check_int(width, "crop_or_pad_to: width", 1)

    def inner(images, rng):
        return tf.image.resize_with_crop_or_pad(_as_images(images), height, width)

    return inner


@_keyed
def resize_to(height: int, width: int) -> Transform:
    """Bilinear resize to ``[B, height, width, C]`` (not in Lucid).

    Meant as the last transform for models with a fixed input size:
    ``compose(standard_transforms + [resize_to(224, 224)])``.  Uses TF2's
    ``tf.image.resize`` (half-pixel centres, no antialiasing), so the whole transformed
    image is kept and the output has a static spatial shape.
    """
    height = _check_int(height, "resize_to: height", 1)
    width = _check_int(width, "resize_to: width", 1)

    def inner(images, rng):
        return tf.image.resize(_as_images(images), [height, width], method="bilinear")

    return inner


def _check_sd(sd) -> float:
    """Lucid's ``sd`` of a random spectrum: a finite number >= 0, None meaning 0.01."""
    if sd is None:
        return 0.01
    if isinstance(sd, bool) or not isinstance(sd, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(sd)) or sd < 0:
        raise ValueError(f"collapse_alpha_random: sd must be a finite number >= 0 (or None), got {sd!r}")
    return float(sd)


def _random_background(batch, h: int, w: int, sd: float, rng: tf.random.Generator) -> tf.Tensor:
    """Lucid's ``param.random.image_sample([B, h, w, 3], sd=sd)``: ``[B, h, w, 3]`` in (0, 1).

    Per image a random spectrum ``sd * N(0, 1)`` of shape ``[2, 3, h, fw]`` (real and
    imaginary parts, Lucid's layout; drawn here as one ``rng.normal([B, 2, 3, h, fw])``),
    scaled by ``sqrt(w h) / max(freqs, 1 / max(h, w))`` (decay power 1), inverse-FFT'd,
    cropped to ``h x w``, divided by 4, then mapped to RGB as ``to_valid_rgb`` with
    ``decorrelate=True, sigmoid=True`` (colour decorrelation, then a sigmoid).
    """
    from lucid_ifv.param.color import linear_decorrelate_color
    from lucid_ifv.param.spatial import rfft2d_freqs

    freqs = rfft2d_freqs(h, w)
    scale = (1.0 / np.maximum(freqs, 1.0 / max(h, w)) * np.sqrt(w * h)).astype(np.float32)
    noise = sd * rng.normal(shape=tf.stack([batch, 2, 3, *freqs.shape]), dtype=tf.float32)
    spectrum = tf.complex(noise[:, 0] * scale, noise[:, 1] * scale)  # [B, 3, h, fw]
    image = tf.signal.irfft2d(spectrum)[:, :, :h, :w]
    image = tf.transpose(image, [0, 2, 3, 1]) / 4.0
    return tf.sigmoid(linear_decorrelate_color(image))


@_keyed
def collapse_alpha_random(sd: float | None = 0.5) -> Transform:
    """Composite RGBA images onto a random background (Lucid's ``collapse_alpha_random``).

    ``[B, H, W, 4] -> [B, H, W, 3]``: ``a * rgb + (1 - a) * background`` with
    ``rgb, a = images[..., :3], images[..., 3:]``, exactly Lucid's formula.  The background is
    Lucid's ``param.random.image_sample(shape, sd=sd)`` (see `_random_background`): random
    Fourier noise with a 1/f spectrum, colour-decorrelated and passed through a sigmoid, so
    it lies in (0, 1) and is a smooth, coloured cloud pattern rather than white noise.  A
    new background is drawn from ``rng`` on every call, one per image of the batch (as
    Lucid draws one per image).  Alpha is used as given (not clipped); with ``rgb`` and
    ``a`` in [0, 1] the output is in [0, 1].  Gradients flow to ``rgb`` and ``a``.

    Args:
        sd: standard deviation of the random spectrum, a finite number >= 0 (default 0.5,
            Lucid's); None means 0.01, as in Lucid.  Needs a static ``H``, ``W`` and ``C = 4``
            (as Lucid, which read the static shape); the batch size may be dynamic.
    """
    sd = _check_sd(sd)

    def inner(images, rng):
        x = _as_images(images)
        _, h, w, c = x.shape.as_list() if x.shape.rank is not None else [None] * 4
        if c != 4:
            raise ValueError(f"collapse_alpha_random needs RGBA images [B, H, W, 4], got shape {x.shape}")
        if h is None or w is None:
            raise ValueError(f"collapse_alpha_random needs a static height and width, got shape {x.shape}")
        rgb, a = x[..., :3], x[..., 3:4]
        background = _random_background(tf.shape(x)[0], h, w, sd, rng)
        background.set_shape([x.shape[0], h, w, 3])
        return a * rgb + (1.0 - a) * background

    return inner


def _check_grad_scales(grad_scales) -> np.ndarray | None:
    if grad_scales is None:
        return None
    try:
        arr = np.asarray(grad_scales, dtype=np.float32)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError(
            f"normalize_gradient: grad_scales must be None or a non-empty list of finite numbers "
            f"(one per image), got {grad_scales!r}"
        )
    return arr


@_keyed
def normalize_gradient(grad_scales: Sequence[float] | None = None) -> Transform:
    """Identity forward; backward, each image's gradient is divided by its L2 norm.

    ``[B, H, W, C] -> [B, H, W, C]`` unchanged.  The gradient flowing back through it is
    Lucid's ``grad * grad_scales[b] / ||grad[b]||`` where ``||grad[b]||`` is the L2 norm of
    image ``b``'s incoming gradient over H, W and C (taken *before* the scale), so every image
    of the batch gets a gradient of norm ``|grad_scales[b]|`` (1 without scales).  Lucid
    overrode the gradient of ``tf.identity``; this uses ``tf.custom_gradient`` (eager and
    ``tf.function``).

    One difference: where an image's incoming gradient is exactly zero, Lucid computed 0 / 0
    (NaN); this returns a zero gradient for that image instead.

    Args:
        grad_scales: None, or one factor per image (a list of ``B`` finite numbers; a single
            factor broadcasts to the batch, as in Lucid).
    """
    scales = _check_grad_scales(grad_scales)

    @tf.custom_gradient
    def _identity(x):
        def grad(upstream):
            norm = tf.sqrt(tf.reduce_sum(tf.square(upstream), [1, 2, 3], keepdims=True))
            if scales is not None:
                upstream = upstream * tf.constant(scales)[:, None, None, None]
            return tf.math.divide_no_nan(upstream, norm)

        return tf.identity(x), grad

    def inner(images, rng):
        x = _as_images(images)
        if x.shape.rank is None:
            raise ValueError("normalize_gradient needs images of known rank 4 [B, H, W, C]")
        batch = x.shape[0]
        if scales is not None and scales.size != 1 and batch is not None and batch != scales.size:
            raise ValueError(
                f"normalize_gradient: grad_scales has {scales.size} entries but the batch has "
                f"{batch} images; expected one scale per image (or a single one)"
            )
        return _identity(x)

    return inner


standard_transforms: list[Transform] = [
    pad(12, mode="constant", constant_value=0.5),
    jitter(8),
    random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
    random_rotate(list(range(-10, 11)) + 5 * [0]),
    jitter(4),
]
"""Lucid's default transforms: ``[B, H, W, C] -> [B, H', W', C]`` with
``H' = int(s * (H + 16)) - 4`` for a random ``s`` in {0.90, 0.92, ..., 1.10}.

The output size is random (random_scale); append ``resize_to(H, W)`` or
``crop_or_pad_to(H, W)`` for a model that needs a fixed input size.
"""
