"""Geometry images (the paper's SRNet input, Sec. 3.7): unit normals, depth and a hit mask.

A geometry image is ``[B, H, W, 5]``: the surface normal ``(n_x, n_y, n_z)`` (unit length,
``n_z > 0``: facing the camera), the depth in (0, 1) and the mask in (0, 1] (1 = the ray hit
the surface). The paper parametrizes it so that every value stays valid without clipping:

- normal from two unbounded raw values ``(a, s)`` per pixel: azimuth ``phi = a`` (not wrapped
  to an interval, so no gradient jumps at a border) and polar angle
  ``theta = (pi / 2) sigmoid(s)`` in (0, pi/2), so ``n = (sin theta cos phi,
  sin theta sin phi, cos theta)`` with ``n_z > 0``;
- depth ``= sigmoid(d)``;
- mask: ``"one"`` (fixed to 1, no variable) or ``"continuous"`` (``sigmoid(m)``: a binary mask
  would make FV a mixed-integer problem).

The raw values ``(a, s, d[, m])`` come from any spatial parametrization (pixel or Fourier), so
`GeometryParam` is a `TransformedParam` with an exact inverse, and everything that inverts
image parametrizations (Jacobians, `ifv.invert`, the experiment runner) works with it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lucid_ifv.param.base import Param, TransformedParam
from lucid_ifv.param.color import _logit
from lucid_ifv.param.spatial import fft_image, pixel_image

MASK_MODES = ("one", "continuous")
GEOMETRY_CHANNELS = 5
HALF_PI = np.pi / 2


class GeometryParam(TransformedParam):
    """Raw ``[B, H, W, 3 or 4]`` = (azimuth, polar logit, depth logit[, mask logit]) ->
    geometry image ``[B, H, W, 5]`` = (n_x, n_y, n_z, depth, mask); see the module docstring."""

    def __init__(self, inner: Param, mask: str = "continuous"):
        if mask not in MASK_MODES:
            raise ValueError(f"mask must be one of {MASK_MODES}, got {mask!r}")
        want = 3 if mask == "one" else 4
        if inner.shape[-1] != want:
            raise ValueError(f"a geometry parametrization with mask={mask!r} needs {want} raw channels, "
                             f"got {inner.shape[-1]}")
        self.mask = mask
        super().__init__(inner, inner.shape[:-1] + (GEOMETRY_CHANNELS,))

    @property
    def batch_agnostic(self) -> bool:
        return self.inner.batch_agnostic  # per pixel

    def forward(self, params):
        raw = self.inner.forward(params)
        phi, theta = raw[..., 0], HALF_PI * tf.nn.sigmoid(raw[..., 1])
        sin_theta = tf.sin(theta)
        depth = tf.nn.sigmoid(raw[..., 2])
        mask = tf.ones_like(depth) if self.mask == "one" else tf.nn.sigmoid(raw[..., 3])
        return tf.stack([sin_theta * tf.cos(phi), sin_theta * tf.sin(phi), tf.cos(theta), depth, mask], -1)

    def inverse(self, values):
        values = np.asarray(values, dtype=np.float64)
        normals = values[..., :3]
        norm = np.linalg.norm(normals, axis=-1)
        if np.any(norm < 1e-6):
            raise ValueError(f"geometry images need non-zero normals; {int(np.sum(norm < 1e-6))} pixel(s) have "
                             f"|n| < 1e-6 (pixels without a surface hit need a valid normal too, e.g. (0, 0, 1))")
        if self.mask == "one" and not np.allclose(values[..., 4], 1.0, atol=1e-6):
            raise ValueError("this parametrization has mask='one' but the images' mask channel is not 1 "
                             f"everywhere (min {values[..., 4].min():.4g}); use mask='continuous'")
        unit = normals / norm[..., None]
        theta = np.arccos(np.clip(unit[..., 2], -1.0, 1.0))
        polar = _logit(theta / HALF_PI)  # n_z <= 0 (theta >= pi/2) saturates to the horizon
        azimuth = np.arctan2(unit[..., 1], unit[..., 0])
        raw = [azimuth, polar, _logit(values[..., 3])]
        if self.mask == "continuous":
            raw.append(_logit(values[..., 4]))
        return self.inner.inverse(np.stack(raw, -1))

    def saturated(self, values, margin: float) -> np.ndarray:
        """``[B, H, W, c]`` bool: the sigmoid-bounded values within ``margin`` of their bounds
        (polar angle at 0 or pi/2, depth and a continuous mask at 0 or 1)."""
        values = np.asarray(values, dtype=np.float64)
        bounded = [np.arccos(np.clip(values[..., 2], -1, 1)) / HALF_PI, values[..., 3]]
        if self.mask == "continuous":
            bounded.append(values[..., 4])
        bounded = np.stack(bounded, -1)
        return (bounded < margin) | (bounded > 1 - margin)


def geometry_image(w, h=None, batch=None, sd=None, fft=False, mask="continuous", decay_power=1,
                   seed=None) -> GeometryParam:
    """A batch of geometry images ``[batch or 1, h or w, w, 5]`` (`GeometryParam`).

    The raw values come from `pixel_image` (default, as in the paper) or `fft_image`
    (``fft=True``, with ``decay_power``), initialized N(0, sd) from ``seed``; the azimuth
    channel starts uniform in [-pi, pi) (seeded too) so that the initial normals point in
    all directions. ``mask``: "continuous" (default) or "one".
    """
    if mask not in MASK_MODES:
        raise ValueError(f"mask must be one of {MASK_MODES}, got {mask!r}")
    h = h or w
    shape = (batch or 1, h, w, 3 if mask == "one" else 4)
    inner = fft_image(shape, sd=sd, decay_power=decay_power, seed=seed) if fft else pixel_image(shape, sd=sd, seed=seed)
    param = GeometryParam(inner, mask=mask)
    rng = np.random if seed is None else np.random.default_rng(seed + 1)
    azimuth = rng.uniform(-np.pi, np.pi, size=shape[:-1])
    start = param.forward(inner.variables).numpy()
    phi_now = np.arctan2(start[..., 1], start[..., 0])
    rotate = np.stack([np.cos(azimuth - phi_now), np.sin(azimuth - phi_now)], -1)
    start[..., :2] = np.stack([start[..., 0] * rotate[..., 0] - start[..., 1] * rotate[..., 1],
                               start[..., 0] * rotate[..., 1] + start[..., 1] * rotate[..., 0]], -1)
    param.assign_from_image(start)
    return param


def geometry_for_model(model, batch=1, **kwargs) -> GeometryParam:
    """`geometry_image` sized for ``model.image_shape`` (which must have 5 channels)."""
    h, w, c = model.image_shape
    if c != GEOMETRY_CHANNELS:
        raise ValueError(f"model {getattr(model, 'name', model)!r} takes {c} input channels; a geometry image "
                         f"has {GEOMETRY_CHANNELS} (normal xyz, depth, mask)")
    return geometry_image(w, h=h, batch=batch, **kwargs)


def geometry_to_rgb(images) -> tuple[np.ndarray, np.ndarray]:
    """Geometry images ``[..., 5]`` -> (normals as RGB ``(n + 1) / 2`` ``[..., 3]``, depth ``[...]``
    with pixels off the mask (< 0.5) set to 1), both in [0, 1], for figures."""
    images = np.asarray(images, dtype=np.float64)
    if images.shape[-1] != GEOMETRY_CHANNELS:
        raise ValueError(f"geometry images have {GEOMETRY_CHANNELS} channels, got shape {images.shape}")
    rgb = np.clip((images[..., :3] + 1) / 2, 0, 1)
    depth = np.where(images[..., 4] >= 0.5, np.clip(images[..., 3], 0, 1), 1.0)
    return rgb, depth


__all__ = ["GeometryParam", "geometry_image", "geometry_for_model", "geometry_to_rgb", "MASK_MODES"]
