"""Lucid's ``lucid.optvis.param.random``: `rand_fft_image` and `image_sample`, a random image
at every call."""

from __future__ import annotations

import tensorflow as tf

from lucid_ifv.param.base import Param
from lucid_ifv.param.color import ValidRGBParam, to_valid_rgb
from lucid_ifv.param.spatial import _check_shape4, fft_scale, spectrum_to_image


class RandomFFTParam(Param):
    """Lucid's ``rand_fft_image``: no variables; every evaluation draws a new spectrum
    ``[B, 2, C, h, fw]`` ~ N(0, sd) with `tf.random.normal` (TF's global random state:
    `tf.random.set_seed` makes runs repeatable) and maps it as `fft_image` does, so its
    images ``[B, H, W, C]`` follow `fft_image`'s initial distribution. Inside a
    `tf.function` each call of the compiled function draws again.
    """

    def __init__(self, shape, sd=None, decay_power=1):
        shape = _check_shape4(shape, "image_sample")
        self.sd = 0.01 if sd is None else float(sd)
        self.decay_power = float(decay_power)
        self.scale = fft_scale(shape[1], shape[2], self.decay_power)
        super().__init__([], shape)

    def forward(self, params):
        if len(params):
            raise ValueError(f"image_sample has no variables; got {len(params)} parameter tensors")
        batch, _, _, ch = self.shape
        spectrum = tf.random.normal((batch, 2, ch) + self.scale.shape, stddev=self.sd)
        return spectrum_to_image(spectrum, self.scale, self.shape)

    def inverse(self, values):
        raise NotImplementedError("image_sample draws a new random image at every call: it has no parameters to invert")


def rand_fft_image(shape, sd=None, decay_power=1) -> RandomFFTParam:
    """Lucid's `rand_fft_image`: a fresh random image ``[B, H, W, C]`` (unbounded, before
    `to_valid_rgb`) at every evaluation, with no variables (`RandomFFTParam`)."""
    return RandomFFTParam(shape, sd=sd, decay_power=decay_power)


def image_sample(shape, decorrelate=True, sd=None, decay_power=1) -> ValidRGBParam:
    """Lucid's `image_sample`: `to_valid_rgb(RandomFFTParam(shape), decorrelate)`: a fresh
    random RGB image ``[B, H, W, 3]`` in [0, 1] at every evaluation, with no variables."""
    return to_valid_rgb(rand_fft_image(shape, sd=sd, decay_power=decay_power), decorrelate=decorrelate)
