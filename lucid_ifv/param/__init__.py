"""Parametrizations ``z -> x``: Lucid's pixel, Fourier, colour, low-res, Laplacian-pyramid,
CPPN and random maps, their arithmetic (`combine`), each invertible where it can be.

Lucid's module paths exist too: ``param.spatial``, ``param.color``, ``param.images``,
``param.lowres``, ``param.random`` (as in Lucid, ``param.cppn`` is the function).
"""

from lucid_ifv.param import lowres, random  # noqa: F401  (Lucid's module paths)
from lucid_ifv.param.base import Param, TransformedParam, normal_init, numpy_seed
from lucid_ifv.param.color import (
    COLOR_CORRELATION_SVD_SQRT, COLOR_MEAN, SATURATION_EPS, SigmoidParam, ValidRGBAlphaParam,
    ValidRGBParam, constrain_L_inf, linear_decorrelate_color, to_valid_rgb,
)
from lucid_ifv.param.combine import CombinedParam
from lucid_ifv.param.cppn import CPPNParam, cppn
from lucid_ifv.param.images import GrayscaleRGBParam, grayscale_image_rgb, image, image_for_model
from lucid_ifv.param.random import RandomFFTParam, image_sample
from lucid_ifv.param.spatial import (
    FFTParam, LaplacianPyramidParam, LowresParam, PixelParam, fft_image, laplacian_pyramid,
    laplacian_pyramid_image, lowres_tensor, naive, pixel_image, rfft2d_freqs,
)
