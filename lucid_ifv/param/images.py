"""`image()`: Lucid's high-level image parametrization, and `grayscale_image_rgb`."""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from lucid_ifv.param.base import Param, TransformedParam
from lucid_ifv.param.color import SigmoidParam, ValidRGBAlphaParam, to_valid_rgb
from lucid_ifv.param.spatial import fft_image, pixel_image


def image(w, h=None, batch=None, sd=None, decorrelate=True, fft=True, alpha=False,
          channels=None, decay_power=1, seed=None) -> Param:
    """Images ``[batch or 1, h or w, w, C]`` in [0, 1], as Lucid's `image`.

    Raw values come from `fft_image` (``fft=True``, with ``decay_power``) or `pixel_image`.
    With ``channels`` given (C = channels) they pass through a sigmoid (no colour
    decorrelation, and ``alpha`` ignored, as in Lucid); otherwise C = 3 through
    `to_valid_rgb(decorrelate=decorrelate, sigmoid=True)`, or with ``alpha=True`` C = 4:
    that RGB plus a sigmoid alpha channel (`ValidRGBAlphaParam`).
    ``seed`` makes the N(0, sd) initialization reproducible (None: NumPy's global state).
    """
    for name, value in (("batch", batch), ("h", h), ("channels", channels)):
        if value is not None and not (isinstance(value, numbers.Integral) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1 or None (Lucid's default), got {value!r}")
    h = h or w
    shape = (batch or 1, h, w, channels or (4 if alpha else 3))
    raw = fft_image(shape, sd=sd, decay_power=decay_power, seed=seed) if fft else pixel_image(shape, sd=sd, seed=seed)
    if channels:
        return SigmoidParam(raw)
    if alpha:
        return ValidRGBAlphaParam(raw, decorrelate=decorrelate)
    return to_valid_rgb(raw, decorrelate=decorrelate, sigmoid=True)


class GrayscaleRGBParam(TransformedParam):
    """A one-channel parametrization repeated into RGB: ``[B, H, W, 1] -> [B, H, W, 3]``.

    Inverse: the channel mean (the least-squares grey level) through the inner inverse.
    """

    def __init__(self, inner: Param):
        if inner.shape[-1] != 1:
            raise ValueError(f"grayscale_image_rgb needs a 1-channel parametrization, got {inner.shape[-1]} channels")
        super().__init__(inner, inner.shape[:-1] + (3,))

    def forward(self, params):
        return tf.tile(self.inner.forward(params), [1, 1, 1, 3])

    def inverse(self, values):
        return self.inner.inverse(np.mean(values, axis=-1, keepdims=True))


def grayscale_image_rgb(*args, **kwargs) -> GrayscaleRGBParam:
    """Lucid's `grayscale_image_rgb`: `image` (same arguments) with ``channels=1``, tiled
    to 3 equal channels ``[B, H, W, 3]``."""
    return GrayscaleRGBParam(image(*args, channels=1, **kwargs))


def check_mask_for_model(model, mask: str) -> None:
    """A mask mode other than "continuous" only for a geometry-image model (its hit mask)."""
    if mask != "continuous" and getattr(model, "input_kind", "image") != "geometry":
        raise ValueError(f"mask={mask!r} is for geometry-image models (their hit mask); model "
                         f"{getattr(model, 'name', model)!r} takes images (leave mask='continuous')")


def image_for_model(model, batch=1, mask="continuous", **kwargs) -> Param:
    """The input parametrization for ``model``: `image` sized for ``model.image_shape`` (RGB
    models get Lucid's colour path), or for a model whose ``input_kind`` is "geometry"
    `lucid_ifv.param.geometry.geometry_image` with ``mask`` ("continuous" or "one"; colour
    decorrelation does not apply and is ignored, as for any non-RGB input)."""
    if getattr(model, "input_kind", "image") == "geometry":
        from lucid_ifv.param.geometry import geometry_for_model

        kwargs.pop("decorrelate", None)
        return geometry_for_model(model, batch=batch, mask=mask, **kwargs)
    check_mask_for_model(model, mask)
    h, w, c = model.image_shape
    channels = None if c == 3 else c
    if channels is not None:
        kwargs.setdefault("decorrelate", False)
    return image(w, h=h, batch=batch, channels=channels, **kwargs)
