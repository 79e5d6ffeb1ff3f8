"""Spatial parametrizations with Lucid's constants: pixels, Fourier, low resolution.

Each produces *raw* (unbounded) values ``[B, H, W, C]``; `lucid_ifv.param.color` maps
them to valid colours. All are linear in their parameters and invert exactly (lowres:
least squares, exact for tensors in its range).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lucid_ifv.param.base import Param, normal_init


def _check_shape4(shape, what):
    shape = tuple(int(d) for d in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"{what} needs a shape [batch, height, width, channels] of positive sizes, got {shape}")
    return shape


class PixelParam(Param):
    """``z`` = the pixels: variable ``[B, H, W, C]`` initialized N(0, sd=0.01) (Lucid's)."""

    def __init__(self, shape, sd=None, init_val=None, seed=None):
        shape = _check_shape4(shape, "pixel_image")
        if init_val is None:
            init_val = normal_init(shape, sd, seed)
        init_val = np.asarray(init_val, dtype=np.float32)
        if init_val.shape != shape:
            raise ValueError(f"init_val has shape {init_val.shape}, expected {shape}")
        super().__init__([tf.Variable(init_val, name="pixels")], shape)

    def forward(self, params):
        return params[0]

    def inverse(self, values):
        return [values]


def pixel_image(shape, sd=None, init_val=None, seed=None) -> PixelParam:
    """Lucid's naive pixel parametrization. ``shape = [B, H, W, C]``."""
    return PixelParam(shape, sd=sd, init_val=init_val, seed=seed)


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
    """2D spectrum frequencies ``sqrt(fx^2 + fy^2)``, shape ``[h, w // 2 + 1]``
    (``[h, w // 2 + 2]`` for odd ``w``: one extra column, cropped after the inverse FFT)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + (2 if w % 2 == 1 else 1)]
    return np.sqrt(fx * fx + fy * fy)


class FFTParam(Param):
    """Lucid's `fft_image`: a scaled 2D spectrum, inverse-FFT'd into the image.

    Variable ``[B, 2, C, h, fw]`` (real and imaginary parts; Lucid stores ``[2, B, C, h, fw]``:
    same values, batch moved first so each batch element owns slice ``b``), initialized
    N(0, sd=0.01). ``scale = 1 / max(freqs, 1 / max(w, h))^decay_power * sqrt(w h)``;
    ``image = irfft2d(scale * spectrum)`` transposed to NHWC, cropped to ``H x W``, ``/ 4``.
    """

    def __init__(self, shape, sd=None, decay_power=1, seed=None):
        batch, h, w, ch = _check_shape4(shape, "fft_image")
        freqs = rfft2d_freqs(h, w)
        self.decay_power = float(decay_power)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** self.decay_power
        scale = scale * np.sqrt(w * h)
        self.scale = scale.astype(np.float32)  # [h, fw]
        self._fft_width = 2 * (freqs.shape[1] - 1)
        init = normal_init((2, batch, ch) + freqs.shape, sd, seed)  # Lucid's layout and draw order
        var = tf.Variable(np.ascontiguousarray(np.moveaxis(init, 1, 0)), name="spectrum")
        super().__init__([var], (batch, h, w, ch))

    def forward(self, params):
        z = params[0]
        spectrum = tf.complex(z[:, 0] * self.scale, z[:, 1] * self.scale)  # [B, C, h, fw]
        image = tf.transpose(tf.signal.irfft2d(spectrum), (0, 2, 3, 1))
        _, h, w, _ = self.shape
        return image[:, :h, :w, :] / 4.0

    def inverse(self, values):
        _, h, w, _ = self.shape
        planes = np.moveaxis(values * 4.0, -1, 1)  # [B, C, h, w]
        extra = self._fft_width - w
        if extra:  # odd width: the cropped column is free; repeat the last one
            planes = np.concatenate([planes, planes[..., -extra:]], axis=-1)
        spectrum = np.fft.rfft2(planes) / self.scale
        return [np.stack([spectrum.real, spectrum.imag], axis=1)]


def fft_image(shape, sd=None, decay_power=1, seed=None) -> FFTParam:
    """Lucid's Fourier parametrization. ``shape = [B, H, W, C]``."""
    return FFTParam(shape, sd=sd, decay_power=decay_power, seed=seed)


def _resize_matrix(n_out: int, n_in: int, offset: int = 0) -> np.ndarray:
    """``[n_out, n_in]`` matrix of TF1 ``resize_bilinear`` (align_corners=False, no half-pixel
    centres) along one axis, followed by Lucid's offset (symmetric pad by ``offset`` in
    front, then crop to ``n_out``)."""
    src = np.arange(n_out) * (n_in / n_out)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1 - frac)
    np.add.at(m, (rows, hi), frac)
    if offset:
        j = np.arange(n_out)
        source_row = np.where(j >= offset, j - offset, offset - 1 - j)
        m = m[np.clip(source_row, 0, n_out - 1)]
    return m


class LowresParam(Param):
    """Lucid's `lowres_tensor`: a low-resolution variable, bilinearly upsampled.

    Variable ``underlying_shape`` (same batch size as ``shape``), initialized N(0, sd=0.01).
    Upsampling follows TF1 ``resize_bilinear`` per axis (as Lucid's ``resize_bilinear_nd``);
    ``offset`` as in Lucid (None, an int, a bool (True: half the upsampling ratio) or a list
    per axis). The inverse is the least-squares solution (exact for tensors it can produce).
    """

    def __init__(self, shape, underlying_shape, offset=None, sd=None, seed=None):
        shape = _check_shape4(shape, "lowres_tensor")
        underlying_shape = _check_shape4(underlying_shape, "lowres_tensor (underlying)")
        if underlying_shape[0] != shape[0]:
            raise ValueError(
                f"lowres_tensor keeps the batch axis: underlying batch {underlying_shape[0]} != {shape[0]}"
            )
        offsets = self._offsets(offset, shape, underlying_shape)
        self.matrices = [
            _resize_matrix(n_out, n_in, off).astype(np.float32)
            for n_out, n_in, off in zip(shape[1:], underlying_shape[1:], offsets[1:])
        ]
        var = tf.Variable(normal_init(underlying_shape, sd, seed), name="lowres")
        super().__init__([var], shape)

    @staticmethod
    def _offsets(offset, shape, underlying_shape):
        if offset is None or offset is False:
            return [0] * 4
        offsets = list(offset) if isinstance(offset, (list, tuple)) else [offset] * 4
        if len(offsets) != 4:
            raise ValueError(f"offset needs one entry per axis (4), got {offset!r}")
        resolved = []
        for off, n_out, n_in in zip(offsets, shape, underlying_shape):
            if off is True:
                off = n_out / n_in / 2
            resolved.append(int(off or 0))
        if resolved[0]:
            raise ValueError("lowres_tensor cannot offset the batch axis")
        return resolved

    def forward(self, params):
        x = params[0]
        for axis, m in enumerate(self.matrices, start=1):
            x = tf.experimental.numpy.moveaxis(tf.tensordot(m, x, axes=[[1], [axis]]), 0, axis)
        return x

    def inverse(self, values):
        x = values
        for axis, m in enumerate(self.matrices, start=1):
            x = np.moveaxis(np.tensordot(np.linalg.pinv(m.astype(np.float64)), x, axes=([1], [axis])), 0, axis)
        return [x]


def lowres_tensor(shape, underlying_shape, offset=None, sd=None, seed=None) -> LowresParam:
    """Lucid's low-resolution parametrization (4-D, batch first)."""
    return LowresParam(shape, underlying_shape, offset=offset, sd=sd, seed=seed)
