"""`image()`: Lucid's high-level image parametrization."""

from __future__ import annotations

from lucid_ifv.param.base import Param
from lucid_ifv.param.color import SigmoidParam, to_valid_rgb
from lucid_ifv.param.spatial import fft_image, pixel_image


def image(w, h=None, batch=None, sd=None, decorrelate=True, fft=True, alpha=False,
          channels=None, decay_power=1, seed=None) -> Param:
    """Images ``[batch or 1, h or w, w, channels or 3]`` in [0, 1], as Lucid's `image`.

    Raw values come from `fft_image` (``fft=True``, with ``decay_power``) or `pixel_image`.
    With ``channels`` given they pass through a sigmoid (no colour decorrelation, as in
    Lucid); otherwise `to_valid_rgb(decorrelate=decorrelate, sigmoid=True)`.
    ``seed`` makes the N(0, sd) initialization reproducible (None: NumPy's global state).
    Lucid's ``alpha`` channel is not supported (models here take no alpha).
    """
    if alpha:
        raise NotImplementedError("image(alpha=True) is not supported: lucid-ifv models take no alpha channel")
    h = h or w
    shape = (batch or 1, h, w, channels or 3)
    raw = fft_image(shape, sd=sd, decay_power=decay_power, seed=seed) if fft else pixel_image(shape, sd=sd, seed=seed)
    if channels:
        return SigmoidParam(raw)
    return to_valid_rgb(raw, decorrelate=decorrelate, sigmoid=True)


def image_for_model(model, batch=1, **kwargs) -> Param:
    """`image` sized for ``model.image_shape`` (RGB models get Lucid's colour path)."""
    h, w, c = model.image_shape
    channels = None if c == 3 else c
    if channels is not None:
        kwargs.setdefault("decorrelate", False)
    return image(w, h=h, batch=batch, channels=channels, **kwargs)
