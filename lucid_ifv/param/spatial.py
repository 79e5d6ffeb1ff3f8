"""Spatial parametrizations with Lucid's constants: pixels, Fourier, low resolution.

Each produces *raw* (unbounded) values ``[B, H, W, C]``; `lucid_ifv.param.color` maps
them to valid colours. All are linear in their parameters and invert exactly (lowres:
least squares, exact for tensors in its range; Laplacian pyramid: the minimum-norm
parameters).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import tensorflow as tf
from scipy.sparse.linalg import LinearOperator, cg

from lucid_ifv.param.base import Param, normal_init, numpy_seed


def _check_shape4(shape, what):
    sizes = tuple(shape)
    if (len(sizes) != 4 or not all(isinstance(d, numbers.Integral) or (isinstance(d, numbers.Real) and d == int(d))
                                   for d in sizes) or min(sizes) < 1):
        raise ValueError(f"{what} needs a shape [batch, height, width, channels] of positive integer sizes, "
                         f"got {sizes}")
    return tuple(int(d) for d in sizes)


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

    @property
    def batch_agnostic(self) -> bool:
        return True

    def forward(self, params):
        return params[0]

    def inverse(self, values):
        return [values]


def pixel_image(shape, sd=None, init_val=None, seed=None) -> PixelParam:
    """Lucid's naive pixel parametrization. ``shape = [B, H, W, C]``."""
    return PixelParam(shape, sd=sd, init_val=init_val, seed=seed)


def naive(shape, sd=None, seed=None) -> PixelParam:
    """Lucid's deprecated name of `pixel_image` (same DeprecationWarning)."""
    warnings.warn("`naive` has been renamed `pixel_image` for clarity.", DeprecationWarning, stacklevel=2)
    return pixel_image(shape, sd=sd, seed=seed)


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
    """2D spectrum frequencies ``sqrt(fx^2 + fy^2)``, shape ``[h, w // 2 + 1]``
    (``[h, w // 2 + 2]`` for odd ``w``: one extra column, cropped after the inverse FFT)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + (2 if w % 2 == 1 else 1)]
    return np.sqrt(fx * fx + fy * fy)


def fft_scale(h: int, w: int, decay_power=1) -> np.ndarray:
    """Lucid's spectrum scale ``1 / max(freqs, 1 / max(w, h))^decay_power * sqrt(w h)``,
    float32 ``[h, fw]`` (``fw`` as `rfft2d_freqs`)."""
    if not np.isfinite(float(decay_power)):
        raise ValueError(f"decay_power must be a finite number, got {decay_power!r}")
    scale = 1.0 / np.maximum(rfft2d_freqs(h, w), 1.0 / max(w, h)) ** float(decay_power)
    return (scale * np.sqrt(w * h)).astype(np.float32)


def spectrum_to_image(z, scale, shape):
    """Lucid's Fourier map: spectrum ``z [B, 2, C, h, fw]`` (real, imaginary) -> image
    ``irfft2d(scale * spectrum)`` transposed to ``[B, H, W, C]``, cropped to ``shape``, ``/ 4``
    (in ``z``'s dtype)."""
    z = tf.convert_to_tensor(z)
    scale = tf.cast(scale, z.dtype)
    spectrum = tf.complex(z[:, 0] * scale, z[:, 1] * scale)  # [B, C, h, fw]
    image = tf.transpose(tf.signal.irfft2d(spectrum), (0, 2, 3, 1))
    _, h, w, _ = shape
    return image[:, :h, :w, :] / 4.0


class FFTParam(Param):
    """Lucid's `fft_image`: a scaled 2D spectrum, inverse-FFT'd into the image.

    Variable ``[B, 2, C, h, fw]`` (real and imaginary parts; Lucid stores ``[2, B, C, h, fw]``:
    same values, batch moved first so each batch element owns slice ``b``), initialized
    N(0, sd=0.01), mapped by `spectrum_to_image` with `fft_scale`.
    """

    def __init__(self, shape, sd=None, decay_power=1, seed=None):
        batch, h, w, ch = _check_shape4(shape, "fft_image")
        self.decay_power = float(decay_power)
        self.scale = fft_scale(h, w, self.decay_power)  # [h, fw]
        self._fft_width = 2 * (self.scale.shape[1] - 1)
        init = normal_init((2, batch, ch) + self.scale.shape, sd, seed)  # Lucid's layout and draw order
        var = tf.Variable(np.ascontiguousarray(np.moveaxis(init, 1, 0)), name="spectrum")
        super().__init__([var], (batch, h, w, ch))

    @property
    def batch_agnostic(self) -> bool:
        return True

    def forward(self, params):
        return spectrum_to_image(params[0], self.scale, self.shape)

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

    Variable ``underlying_shape``, initialized N(0, sd=0.01). Each axis whose size differs
    (the batch axis included) is resampled as TF1 ``resize_bilinear`` does (Lucid's
    ``resize_bilinear_nd``), then shifted by ``offset`` as in Lucid (None, an int, a bool
    (True: half the upsampling ratio) or a list per axis; symmetric padding in front).

    Shared across the batch: with an underlying batch ``b < B`` (Lucid's idiom
    ``lowres_tensor((6, H, W, 3), (1, h, w, 3))``), sample ``i`` reads position
    ``i * b / B`` of the underlying batch, interpolated linearly between its neighbours
    (b = 1: every sample the same; b = 2 over 6: weights 1, 2/3, 1/3 of the first, then the
    second for samples 3-5). Such a parametrization is not `per_sample`; nor is one whose
    offset shifts the batch axis (Lucid applies a scalar ``offset`` to every axis: ``offset=1``
    over a batch of 2 gives both samples the first underlying sample).

    The inverse is the least-squares solution per axis (exact for tensors it can produce).
    """

    def __init__(self, shape, underlying_shape, offset=None, sd=None, seed=None):
        shape = _check_shape4(shape, "lowres_tensor")
        underlying_shape = _check_shape4(underlying_shape, "lowres_tensor (underlying)")
        offsets = self._offsets(offset, shape, underlying_shape)
        matrices = [_resize_matrix(n_out, n_in, off).astype(np.float32)
                    for n_out, n_in, off in zip(shape, underlying_shape, offsets)]
        #: per axis, the ``[n_out, n_in]`` resampling matrix, or None where it is the identity
        self.matrices = [None if m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(len(m))) else m
                         for m in matrices]
        var = tf.Variable(normal_init(underlying_shape, sd, seed), name="lowres")
        super().__init__([var], shape)

    @property
    def per_sample(self) -> bool:
        return self.matrices[0] is None

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
        return resolved

    def forward(self, params):
        x = params[0]
        for axis, m in enumerate(self.matrices):
            if m is not None:
                x = tf.experimental.numpy.moveaxis(tf.tensordot(m, x, axes=[[1], [axis]]), 0, axis)
        return x

    def _per_axis(self, x, fn):
        """Apply ``fn(matrix)`` (a NumPy matrix) along each resampled axis of array ``x``."""
        for axis, m in enumerate(self.matrices):
            if m is not None:
                x = np.moveaxis(np.tensordot(fn(m.astype(np.float64)), x, axes=([1], [axis])), 0, axis)
        return x

    def upsample(self, x):
        """NumPy ``forward``: ``underlying_shape`` array -> ``shape``."""
        return self._per_axis(x, lambda m: m)

    def adjoint(self, x):
        """Transpose of `upsample`: ``shape`` array -> ``underlying_shape``."""
        return self._per_axis(x, np.transpose)

    def inverse(self, values):
        return [self._per_axis(values, np.linalg.pinv)]


def lowres_tensor(shape, underlying_shape, offset=None, sd=None, seed=None) -> LowresParam:
    """Lucid's low-resolution parametrization (4-D, batch first; see `LowresParam`)."""
    return LowresParam(shape, underlying_shape, offset=offset, sd=sd, seed=seed)


class LaplacianPyramidParam(Param):
    """Lucid's `laplacian_pyramid_image`: the sum of ``n_levels`` `LowresParam`s, level ``n``
    of underlying shape ``[B, H // 2^n, W // 2^n, C]`` (no offset), so level 0 is a pixel image.

    Variables: one per level, finest first (Lucid's creation and N(0, sd) draw order).
    Inverse: the minimum-norm parameters reproducing the image, ``z_n = U_n^T y`` with
    ``(sum_n U_n U_n^T) y = x`` solved by conjugate gradients (exact: level 0 is full size).
    """

    def __init__(self, shape, n_levels=4, sd=None, seed=None):
        batch, h, w, ch = _check_shape4(shape, "laplacian_pyramid")
        if int(n_levels) != n_levels or n_levels < 1:
            raise ValueError(f"laplacian_pyramid needs n_levels >= 1, got {n_levels!r}")
        coarsest = 2 ** (int(n_levels) - 1)
        if min(h, w) < coarsest:
            raise ValueError(f"laplacian_pyramid with {n_levels} levels needs images of at least "
                             f"{coarsest} pixels a side, got {h}x{w}")
        with numpy_seed(seed):
            self.levels = [LowresParam(shape, (batch, h // 2 ** n, w // 2 ** n, ch), sd=sd)
                           for n in range(int(n_levels))]
        super().__init__([level.variables[0] for level in self.levels], shape)

    def forward(self, params):
        return tf.add_n([level.forward([p]) for level, p in zip(self.levels, params)])

    def inverse(self, values):
        def gram(y):
            y = y.reshape(values.shape)
            return sum(level.upsample(level.adjoint(y)) for level in self.levels).ravel()

        size = values.size
        y, info = cg(LinearOperator((size, size), matvec=gram, dtype=np.float64), values.ravel(),
                     rtol=1e-12, atol=0.0, maxiter=10 * size)
        if info:
            raise RuntimeError(f"laplacian_pyramid inverse: conjugate gradients did not converge (info {info})")
        y = y.reshape(values.shape)
        return [level.adjoint(y) for level in self.levels]


def laplacian_pyramid_image(shape, n_levels=4, sd=None, seed=None) -> LaplacianPyramidParam:
    """Lucid's Laplacian pyramid parametrization (see `LaplacianPyramidParam`)."""
    return LaplacianPyramidParam(shape, n_levels=n_levels, sd=sd, seed=seed)


def laplacian_pyramid(shape, n_levels=4, sd=None, seed=None) -> LaplacianPyramidParam:
    """Lucid's deprecated name of `laplacian_pyramid_image` (same DeprecationWarning)."""
    warnings.warn("`laplacian_pyramid` has been renamed `laplacian_pyramid_image` for clarity.",
                  DeprecationWarning, stacklevel=2)
    return laplacian_pyramid_image(shape, n_levels=n_levels, sd=sd, seed=seed)
