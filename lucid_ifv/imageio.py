"""Reading and writing images: PNG files (8-bit) and ``.npy``/``.npz`` arrays (float)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lucid_ifv.validation import check_finite


def save_png(image, path) -> Path:
    """Save one image ``[H, W, C]`` (C = 1 or 3, values in [0, 1]) as an 8-bit PNG."""
    import matplotlib.image

    image = check_finite(np.asarray(image, dtype=np.float64), "image")
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"an image to save must be [H, W, 1 or 3], got shape {image.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    if pixels.shape[-1] == 1:
        matplotlib.image.imsave(path, pixels[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        matplotlib.image.imsave(path, pixels)
    return path


def load_images(paths: Sequence, channels: int | None = None) -> np.ndarray:
    """Load images into ``[B, H, W, C]`` float32 in [0, 1].

    Accepts PNG files (8-bit, scaled by 1/255), ``.npy`` arrays and ``.npz`` files (their
    ``images`` entry), each ``[H, W, C]`` or ``[B, H, W, C]``. ``channels`` (1 or 3) keeps
    only that many channels (PNGs carry RGBA; grey PNGs are read back as their first channel).
    """
    import matplotlib.image

    batches = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no image file at {path}")
        if path.suffix == ".npy":
            arr = np.load(path)
        elif path.suffix == ".npz":
            with np.load(path) as data:
                if "images" not in data:
                    raise ValueError(f"{path} has no 'images' array (has {sorted(data.files)})")
                arr = data["images"]
        else:
            arr = matplotlib.image.imread(path)
            if arr.dtype == np.uint8:
                arr = arr / 255.0
            if arr.ndim == 2:
                arr = arr[..., None]
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4:
            raise ValueError(f"{path}: expected an image [H, W, C] or a batch [B, H, W, C], got shape {arr.shape}")
        if channels is not None:
            arr = arr[..., :channels]
        batches.append(arr)
    if not batches:
        raise ValueError("no image files given")
    shapes = {b.shape[1:] for b in batches}
    if len(shapes) != 1:
        raise ValueError(f"images of different shapes: {sorted(shapes)}")
    images = check_finite(np.concatenate(batches), "images")
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"image values must be in [0, 1], got [{images.min():.3g}, {images.max():.3g}]")
    return images


def quantize_8bit(images) -> np.ndarray:
    """What saving as 8-bit and reading back does to images in [0, 1]."""
    return np.round(np.clip(np.asarray(images, np.float64), 0, 1) * 255).astype(np.float32) / 255.0
