"""How far to trust an inversion of a quantized image (an 8-bit file): re-dither and invert again.

An 8-bit image is the realization plus rounding noise ``q`` (each value moved by at most half
a step, ``1/510``; for a rendered image nearly uniform and independent from value to value).
Rounding perturbs the stationarity equation, and the residual-based diagnostics of an
inversion (`diagnostics.verdicts`: the residual, the error bars, near-null directions) then
measure the rounding rather than the realization: a converged render saved as a PNG is almost
never "identified" by them, right or wrong.

To first order the answer moves by ``L q`` for some linear ``L``. Adding fresh noise ``q'`` of
the same law to the 8-bit image and inverting again moves the answer by ``L q'``, which has
the same distribution as the error the rounding caused: the angle between the re-dithered
answers and the answer estimates that error without knowing the target (a parametric
bootstrap). `dither_check` returns its median over ``n`` draws (``dither_spread``).

The residual needs the same care: rounding adds to it. In expectation (independent noise,
cross terms vanish) ``|e(x8)|^2 = |e0|^2 + |e_q|^2`` and ``|e(x8 + q')|^2 = |e0|^2 + 2 |e_q|^2``,
so ``|e0|^2 ~ 2 |e(x8)|^2 - mean |e(x8 + q')|^2`` estimates the residual of the realization
itself (``denoised_residual``, clipped at 0): a render stopped short of stationarity keeps
its large residual, a converged one loses the rounding's share.

`diagnostics.verdicts` uses both when they are present (`VerdictRule.max_dither_spread`).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import numpy as np

#: The value step of an 8-bit file (`lucid_ifv.imageio.quantize_8bit`).
QUANTIZATION_STEP = 1.0 / 255.0
#: Re-dithered inversions per call when `invert` dithers by default (each costs one inversion).
DITHER_SAMPLES = 4


def on_8bit_grid(images) -> bool:
    """Whether every value of ``images`` is a multiple of 1/255 (to float32 precision): what
    an 8-bit file holds once read as floats in [0, 1]."""
    scaled = np.asarray(images, np.float64) / QUANTIZATION_STEP
    return bool(scaled.size) and bool(np.all(np.abs(scaled - np.round(scaled)) < 1e-3))


def dither_check(invert_images: Callable, images: np.ndarray, answer, n: int, seed: int = 0,
                 cossim_pow: float = 1) -> tuple[np.ndarray, np.ndarray]:
    """Re-dither a quantized batch ``n`` times and invert each copy.

    Args:
      invert_images: ``images [B, H, W, C] -> InversionResult`` with the settings of the
        inversion being checked (and no dithering of its own).
      images: the quantized images ``[B, H, W, C]`` in [0, 1].
      answer: that inversion's `InversionResult` of ``images``.
      n: re-dithered copies (>= 1); seed: their noise.
      cossim_pow: the FV's ``p`` (odd p: angles modulo sign, as `metrics.objective_angle_deg`).
    Returns:
      ``(spread, denoised_residual)``, each ``[B]``: the median angle in degrees between the
      re-dithered answers and ``answer.target`` (NaN where either is unsolved), and the
      residual with the rounding's share removed (module docstring).
    """
    from lucid_ifv.metrics import objective_angle_deg

    images = np.asarray(images, np.float32)
    rng = np.random.default_rng(seed)
    angles = np.full((n, len(images)), np.nan)
    squared = np.zeros((n, len(images)))
    for draw in range(n):
        noise = rng.uniform(-0.5, 0.5, images.shape) * QUANTIZATION_STEP
        again = invert_images(np.clip(images + noise, 0.0, 1.0).astype(np.float32))
        squared[draw] = np.asarray(again.residual, np.float64) ** 2
        for i, (a, b) in enumerate(zip(again.target, answer.target)):
            if np.all(np.isfinite(a)) and np.all(np.isfinite(b)):
                angles[draw, i] = objective_angle_deg(a, b, cossim_pow)
    with warnings.catch_warnings():  # an all-NaN column (nothing solved) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nanmedian(angles, axis=0)
    residual = np.asarray(answer.residual, np.float64)
    denoised = np.sqrt(np.clip(2.0 * residual ** 2 - squared.mean(axis=0), 0.0, None))
    return spread, np.where(np.isfinite(residual), denoised, residual)


def invert_and_check(invert_images: Callable, images, n: int, seed: int = 0, cossim_pow: float = 1):
    """``invert_images(images)`` with its answer checked by `dither_check` (``n`` re-dithered
    copies): the result carries ``dither_spread`` and ``denoised_residual`` ``[B]``, which
    `diagnostics.verdicts` uses. ``invert_images`` must not dither itself."""
    images = np.asarray(images, np.float32)
    answer = invert_images(images)
    spread, denoised = dither_check(invert_images, images, answer, n, seed, cossim_pow)
    return dataclasses.replace(answer, dither_spread=spread, denoised_residual=denoised)
