"""Colour: Lucid's decorrelated colour space and the map to valid RGB, with its inverse."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lucid_ifv.param.base import Param, TransformedParam

# Square root of ImageNet's colour correlation (Lucid's constants).
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
MAX_NORM_SVD_SQRT = np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))  # 0.4619524
COLOR_CORRELATION_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / MAX_NORM_SVD_SQRT
COLOR_MEAN = np.asarray([0.48, 0.46, 0.41], dtype=np.float32)

#: Pixels are clipped to [SATURATION_EPS, 1 - SATURATION_EPS] before the logit when an
#: image is inverted, so a saturated pixel (exactly 0 or 1) comes back as about -/+13.8
#: before the sigmoid, reproducing it to 1e-6.
SATURATION_EPS = 1e-6


def _logit(values):
    """Inverse of the sigmoid, saturated pixels clipped to `SATURATION_EPS` first."""
    v = np.clip(values, SATURATION_EPS, 1 - SATURATION_EPS)
    return np.log(v) - np.log1p(-v)


def linear_decorrelate_color(t):
    """Decorrelated colours -> RGB: ``t[..., 3] @ (C / max_norm)^T`` (in ``t``'s dtype)."""
    flat = tf.reshape(t, [-1, 3])
    return tf.reshape(tf.matmul(flat, tf.cast(COLOR_CORRELATION_NORMALIZED.T, flat.dtype)), tf.shape(t))


@tf.custom_gradient
def constrain_L_inf(x):
    """``x / max(1, |x|)`` with Lucid's gradient: the sign of the incoming gradient,
    zeroed where ``|x| >= 1`` and ``x * grad > 0``."""

    def grad(upstream):
        at_edge = tf.greater_equal(tf.abs(x), 1.0)
        outward = tf.greater(x * upstream, 0.0)
        return tf.where(tf.logical_and(at_edge, outward), tf.zeros_like(upstream), tf.sign(upstream))

    return x / tf.maximum(1.0, tf.abs(x)), grad


class ValidRGBParam(TransformedParam):
    """Lucid's `to_valid_rgb`: optional colour decorrelation, then sigmoid (or clamp).

    Raw ``[B, H, W, 3]`` -> RGB in [0, 1]. With ``sigmoid=False`` the colour mean
    ``[0.48, 0.46, 0.41]`` is added when decorrelating and values are clamped with
    Lucid's special gradient (not smooth: Grad-IFV needs ``sigmoid=True``).
    """

    def __init__(self, inner: Param, decorrelate=False, sigmoid=True):
        if decorrelate and inner.shape[-1] != 3:
            raise ValueError(f"colour decorrelation needs 3 channels, got {inner.shape[-1]}")
        self.decorrelate = bool(decorrelate)
        self.sigmoid = bool(sigmoid)
        super().__init__(inner)

    @property
    def batch_agnostic(self) -> bool:
        return self.inner.batch_agnostic  # colours: per pixel

    def forward(self, params):
        return self._rgb(self.inner.forward(params))

    def inverse(self, values):
        return self.inner.inverse(self._raw(values))

    def _rgb(self, t):
        """Raw ``[..., 3]`` tensor -> RGB in [0, 1]."""
        if self.decorrelate:
            t = linear_decorrelate_color(t)
            if not self.sigmoid:
                t = t + COLOR_MEAN
        if self.sigmoid:
            return tf.nn.sigmoid(t)
        return constrain_L_inf(2 * t - 1) / 2 + 0.5

    def _raw(self, values):
        """RGB ``[..., 3]`` array -> raw values (inverse of `_rgb`)."""
        t = _logit(values) if self.sigmoid else np.clip(values, 0.0, 1.0)
        if self.decorrelate:
            if not self.sigmoid:
                t = t - COLOR_MEAN
            t = t @ np.linalg.inv(COLOR_CORRELATION_NORMALIZED.T.astype(np.float64))
        return t


def to_valid_rgb(param: Param, decorrelate=False, sigmoid=True) -> ValidRGBParam:
    """Wrap a raw parametrization so it produces valid RGB (Lucid's `to_valid_rgb`)."""
    return ValidRGBParam(param, decorrelate=decorrelate, sigmoid=sigmoid)


class ValidRGBAlphaParam(ValidRGBParam):
    """Lucid's ``image(alpha=True)``: raw ``[B, H, W, 4]`` -> RGBA ``[B, H, W, 4]`` in [0, 1].

    Channels 0-2 as `to_valid_rgb(decorrelate=decorrelate, sigmoid=True)`, channel 3 (alpha)
    through a sigmoid. Invertible channel by channel.
    """

    def __init__(self, inner: Param, decorrelate=False):
        if inner.shape[-1] != 4:
            raise ValueError(f"an RGB + alpha parametrization needs 4 raw channels, got {inner.shape[-1]}")
        self.decorrelate = bool(decorrelate)
        self.sigmoid = True
        TransformedParam.__init__(self, inner)

    def forward(self, params):
        t = self.inner.forward(params)
        return tf.concat([self._rgb(t[..., :3]), tf.nn.sigmoid(t[..., 3:])], -1)

    def inverse(self, values):
        return self.inner.inverse(np.concatenate([self._raw(values[..., :3]), _logit(values[..., 3:])], -1))


class SigmoidParam(TransformedParam):
    """Elementwise sigmoid of a raw parametrization (any channel count)."""

    @property
    def batch_agnostic(self) -> bool:
        return self.inner.batch_agnostic

    def forward(self, params):
        return tf.nn.sigmoid(self.inner.forward(params))

    def inverse(self, values):
        return self.inner.inverse(_logit(values))
