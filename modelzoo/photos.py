"""photos10: patches of scikit-image's sample photographs, a small natural-image data set.

Ten classes, one per photograph that ships inside scikit-image (no download): eight colour
photographs and two grey ones (``camera``, ``coins``; their grey value is copied to R, G
and B). A sample is a 32x32 RGB patch cut from one photograph; its label is the
photograph. Each photograph is first cropped (only ``retina``: the square inside the
fundus disc, so no patch is black border) and shrunk by an integer factor (mean of
``factor x factor`` pixel blocks, rounded to uint8) so its short side is 200-300 pixels
and a patch shows a recognisable piece of it.

The training and held-out patches come from disjoint regions of every photograph. The
photograph is cut into 64x64 tiles (`TILE`); tile (row i, column j) is held out when
``(i + 2 j) % 5 == 0`` (`heldout_mask`): one tile in five, none two side by side, spread
over the whole picture. A held-out patch lies entirely inside one held-out tile; a training
patch touches no held-out tile. So no held-out patch shares a pixel with a training patch,
and the held-out set samples every part of every photograph (a single held-out strip, such
as the right 20 % of the columns, holds only the table of ``coffee`` or the helmet of
``astronaut``). Training patches are flipped left-right with probability 1/2; held-out
patches are not flipped.

    >>> from modelzoo import photos
    >>> images, labels = photos.photos10(2000, photos.TRAIN_SEED, "train")
    >>> images.shape, images.dtype, images.max() <= 255    # ((2000, 32, 32, 3), float32, True)

All functions are seeded and deterministic (`np.random.Generator`); images are float32 in
[0, 255] (integer values), labels int64.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import numpy as np

#: Side of a patch in pixels.
PATCH = 32
#: Side of the tiles the photographs are cut into; tile (i, j) is held out when
#: ``(i + 2 j) % HELDOUT_PERIOD == 0`` (a fraction 1 / HELDOUT_PERIOD of the tiles).
TILE = 64
HELDOUT_PERIOD = 5
#: Seeds of the shipped model's splits.
TRAIN_SEED = 20240801
TEST_SEED = 8012024
SPLITS = ("train", "test")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load():
        from skimage import data

        return getattr(data, name)()

    return load


def _motorcycle_left() -> np.ndarray:
    from skimage import data

    return data.stereo_motorcycle()[0]


@dataclasses.dataclass(frozen=True)
class Photo:
    """One class: a scikit-image sample photograph, a crop ``(y0, y1, x0, x1)`` of the
    original (None: all of it), and an integer shrink factor."""

    name: str
    load: Callable[[], np.ndarray]
    crop: tuple[int, int, int, int] | None
    factor: int
    source: str


PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", _skimage("astronaut"), None, 2, "skimage.data.astronaut()"),
    Photo("chelsea", _skimage("chelsea"), None, 1, "skimage.data.chelsea()"),
    Photo("coffee", _skimage("coffee"), None, 2, "skimage.data.coffee()"),
    Photo("rocket", _skimage("rocket"), None, 2, "skimage.data.rocket()"),
    Photo("motorcycle", _motorcycle_left, None, 2, "skimage.data.stereo_motorcycle()[0] (left view)"),
    Photo("hubble_deep_field", _skimage("hubble_deep_field"), None, 3, "skimage.data.hubble_deep_field()"),
    Photo("immunohistochemistry", _skimage("immunohistochemistry"), None, 2,
          "skimage.data.immunohistochemistry()"),
    Photo("retina", _skimage("retina"), (222, 1182, 225, 1185), 4,
          "skimage.data.retina()[222:1182, 225:1185] (inside the fundus disc)"),
    Photo("camera", _skimage("camera"), None, 2, "skimage.data.camera() (grey, copied to RGB)"),
    Photo("coins", _skimage("coins"), None, 1, "skimage.data.coins() (grey, copied to RGB)"),
)
#: Class names of photos10: label i is a patch of photograph ``PHOTOS10_CLASSES[i]``.
PHOTOS10_CLASSES = tuple(p.name for p in PHOTOS)


@functools.lru_cache(maxsize=None)
def _photo(label: int) -> np.ndarray:
    p = PHOTOS[label]
    image = np.asarray(p.load())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    if p.crop is not None:
        y0, y1, x0, x1 = p.crop
        image = image[y0:y1, x0:x1]
    f = p.factor
    h, w = (image.shape[0] // f) * f, (image.shape[1] // f) * f
    blocks = image[:h, :w].astype(np.float64).reshape(h // f, f, w // f, f, 3)
    out = np.clip(np.round(blocks.mean(axis=(1, 3))), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def photo(name_or_label) -> np.ndarray:
    """The prepared photograph of a class (cropped, shrunk, RGB): uint8 ``[H, W, 3]``, read-only."""
    label = PHOTOS10_CLASSES.index(name_or_label) if isinstance(name_or_label, str) else int(name_or_label)
    if not 0 <= label < len(PHOTOS):
        raise ValueError(f"no photo {name_or_label!r}; classes: {', '.join(PHOTOS10_CLASSES)}")
    return _photo(label)


def heldout_mask(label: int) -> np.ndarray:
    """bool ``[H, W]``: the pixels of photograph `label` reserved for held-out patches
    (tiles ``(i, j)`` of `TILE` pixels with ``(i + 2 j) % HELDOUT_PERIOD == 0``)."""
    height, width = photo(label).shape[:2]
    i = np.arange(height)[:, None] // TILE
    j = np.arange(width)[None, :] // TILE
    return (i + 2 * j) % HELDOUT_PERIOD == 0


@functools.lru_cache(maxsize=None)
def _corners(label: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    mask = heldout_mask(label).astype(np.int64)
    # Held-out pixels in every PATCH x PATCH window (integral image), indexed by top-left corner.
    integral = np.pad(mask.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    counts = (integral[PATCH:, PATCH:] - integral[:-PATCH, PATCH:]
              - integral[PATCH:, :-PATCH] + integral[:-PATCH, :-PATCH])
    ys, xs = np.nonzero(counts == 0 if split == "train" else counts == PATCH * PATCH)
    ys.setflags(write=False)
    xs.setflags(write=False)
    return ys, xs


def valid_corners(label: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners ``(ys, xs)`` of the patches of photograph `label` that `split` may
    use: for ``"test"`` the 32x32 windows entirely in `heldout_mask`, for ``"train"`` the
    windows with no held-out pixel."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return _corners(int(label), split)


def patch_positions(n: int, seed: int, split: str = "train") -> dict[str, np.ndarray]:
    """Where the `n` patches of ``photos10(n, seed, split)`` come from.

    Labels are balanced (``arange(n) % 10``, shuffled). Each patch's top-left corner is
    uniform over `valid_corners` of its photograph and split.

    Returns:
      dict of int64 arrays ``[n]``: ``label``, ``y``, ``x`` (top-left corner in the prepared
      photograph) and bool ``flip`` (mirrored left-right; always False for ``"test"``).
    """
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n = int(n)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(PHOTOS)).astype(np.int64)
    y = np.empty(n, np.int64)
    x = np.empty(n, np.int64)
    for label in range(len(PHOTOS)):
        sel = np.flatnonzero(labels == label)
        ys, xs = valid_corners(label, split)
        pick = rng.integers(0, len(ys), len(sel))
        y[sel], x[sel] = ys[pick], xs[pick]
    flip = rng.uniform(0, 1, n) < 0.5 if split == "train" else np.zeros(n, bool)
    return {"label": labels, "y": y, "x": x, "flip": flip}


def photos10(n: int, seed: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """`n` seeded 32x32 patches of the ten photographs and their labels.

    Args:
      n: number of patches (>= 0); classes are balanced (counts differ by at most 1).
      seed: seed of the `np.random.Generator`.
      split: ``"train"`` (outside the held-out tiles, random left-right flips) or
        ``"test"`` (inside one held-out tile, no flips).
    Returns:
      images float32 ``[n, 32, 32, 3]`` with integer values in [0, 255]; labels int64 ``[n]``.
    """
    pos = patch_positions(n, seed, split)
    images = np.empty((len(pos["label"]), PATCH, PATCH, 3), np.uint8)
    for i, (label, y, x, flip) in enumerate(zip(pos["label"], pos["y"], pos["x"], pos["flip"])):
        patch = photo(label)[y : y + PATCH, x : x + PATCH]
        images[i] = patch[:, ::-1] if flip else patch
    return images.astype(np.float32), pos["label"]


def photos10_split(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The shipped model's split: ``photos10(n, TRAIN_SEED, "train")`` or
    ``photos10(n, TEST_SEED, "test")``; images in [0, 255]."""
    seeds = {"train": TRAIN_SEED, "test": TEST_SEED}
    if split not in seeds:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return photos10(n, seeds[split], split)


def describe() -> list[dict]:
    """One dict per class: ``label``, ``name``, ``source``, prepared ``shape``, shrink
    ``factor``, ``heldout_pixels`` (fraction of the photograph in held-out tiles) and the
    number of distinct ``train_corners`` / ``test_corners``."""
    return [
        {"label": i, "name": p.name, "source": p.source, "shape": list(photo(i).shape),
         "factor": p.factor, "heldout_pixels": round(float(heldout_mask(i).mean()), 3),
         "train_corners": int(len(valid_corners(i, "train")[0])),
         "test_corners": int(len(valid_corners(i, "test")[0]))}
        for i, p in enumerate(PHOTOS)
    ]
