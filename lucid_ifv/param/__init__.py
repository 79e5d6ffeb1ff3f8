"""Parametrizations ``z -> x``: Lucid's pixel, Fourier, colour and low-res maps, each invertible."""

from lucid_ifv.param.base import Param, TransformedParam, normal_init, numpy_seed
from lucid_ifv.param.color import (
    COLOR_CORRELATION_SVD_SQRT, COLOR_MEAN, SATURATION_EPS, SigmoidParam, ValidRGBParam,
    constrain_L_inf, linear_decorrelate_color, to_valid_rgb,
)
from lucid_ifv.param.images import image, image_for_model
from lucid_ifv.param.spatial import (
    FFTParam, LowresParam, PixelParam, fft_image, lowres_tensor, pixel_image, rfft2d_freqs,
)
