"""Reading and writing images: PNG files (8-bit) and ``.npy``/``.npz`` arrays (float).

Every file is checked before it is used, and a bad one is a one-line `ValueError` (or
`FileNotFoundError`) naming the file and what was expected: missing, a folder, empty,
truncated or corrupt, pickled Python objects (never loaded: unpickling can run code),
non-numeric or empty arrays, values outside [0, 1], transparent pixels, and a colour
image for a greyscale model. Conversions are explicit and exact only:

* an RGBA / grey+alpha PNG whose alpha is 255 everywhere (what most tools, matplotlib
  included, write for opaque images) loses its alpha channel; **any transparent pixel is
  refused** (a model has no transparency, and compositing would invent a background);
* a PNG whose R, G and B are equal everywhere becomes one channel for a greyscale model;
  a colour one is **refused** (never its red channel);
* a greyscale PNG for a colour model is repeated into R = G = B (the same picture);
* the same two channel rules apply to arrays (``.npy``/``.npz``), which must hold 1 or 3
  channels and values in [0, 1] (they are not rescaled).

PNG and JPEG files are read (by Pillow, restricted to those two formats); anything else that
is not ``.npy``/``.npz`` is refused by its signature before any decoder sees it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from lucid_ifv.atomic import write_atomic
from lucid_ifv.validation import check_finite

MAX_PIXELS = 4096 * 4096  # larger PNGs are refused before decoding (no model takes them)
MAX_ARRAY_BYTES = 2**31  # larger .npz entries are refused before decompressing (a zip bomb)
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def save_png(image, path) -> Path:
    """Save one image ``[H, W, C]`` (C = 1 or 3, values in [0, 1]) as an 8-bit PNG (grey or
    RGB, no alpha), atomically: a temporary file in the same folder, then renamed."""
    from PIL import Image

    image = check_finite(np.asarray(image, dtype=np.float64), "image")
    if image.ndim != 3 or image.shape[-1] not in (1, 3) or 0 in image.shape:
        raise ValueError(f"an image to save must be [H, W, 1 or 3], got shape {image.shape}")
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0], mode="L") if pixels.shape[-1] == 1 else Image.fromarray(pixels, "RGB")
    return write_atomic(path, lambda fh: picture.save(fh, format="PNG"))


def save_npz(path, **arrays) -> Path:
    """`np.savez_compressed` atomically (temporary file in the same folder, then renamed)."""
    return write_atomic(path, lambda fh: np.savez_compressed(fh, **arrays))


def _check_file(path: Path, what: str = "file") -> bytes:
    """The first bytes of an existing, non-empty regular file (else a one-line error)."""
    if not path.exists():
        raise FileNotFoundError(f"no {what} at {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or _one_line(err)}") from None
    if not head:
        raise ValueError(f"{path} is empty (0 bytes)")
    return head


def _numeric(arr, path: Path, key: str | None) -> np.ndarray:
    what = f"{path}" if key is None else f"{path}: '{key}'"
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        dtype = getattr(arr, "dtype", type(arr).__name__)
        raise ValueError(f"{what} holds {dtype} values; expected a numeric (bool, integer or float) array")
    return arr


def load_array(path, key: str | None = None, what: str = "file") -> np.ndarray:
    """A numeric array from a ``.npy`` file, or entry ``key`` of a ``.npz`` file.

    Pickled Python objects are never loaded (unpickling can run code); a corrupt,
    truncated or empty file, a missing entry or a non-numeric array is a one-line
    ValueError naming the file.
    """
    path = Path(path)
    head = _check_file(path, what)
    if path.suffix == ".npz" or key is not None:
        if not head.startswith(ZIP_MAGIC):
            raise ValueError(f"{path} is not a .npz file (no zip header); expected an archive written by numpy.savez")
        try:  # our own handle: np.load leaks its own when the archive is corrupt
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
                files = list(data.files)
                if key not in files:
                    raise KeyError(key)
                names = data.zip.namelist()
                size = data.zip.getinfo(f"{key}.npy" if f"{key}.npy" in names else key).file_size
                if size > MAX_ARRAY_BYTES:
                    raise ValueError(f"{path}: '{key}' would take {size} bytes; arrays above {MAX_ARRAY_BYTES} "
                                     "bytes are refused")
                arr = data[key]
        except KeyError:
            raise ValueError(f"{path} has no '{key}' array (has {sorted(files)})") from None
        except ValueError as err:
            if str(err).startswith(f"{path}: '{key}' would take"):
                raise
            if "pickle" in str(err):
                raise ValueError(f"{path}: '{key}' holds Python objects (pickled data), which are never "
                                 "loaded (unpickling can run code); expected a numeric array") from None
            raise ValueError(f"{path} is truncated or corrupt: {_one_line(err)}") from None
        except Exception as err:  # a damaged archive can fail in zipfile, zlib or numpy's parser
            raise ValueError(f"{path} is truncated or corrupt: {_one_line(err)}") from None
        return _numeric(arr, path, key)
    if not head.startswith(NPY_MAGIC):
        raise ValueError(f"{path} is not a .npy file (no NumPy header); expected an array written by numpy.save")
    try:
        with open(path, "rb") as fh:
            arr = np.load(fh, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err):
            raise ValueError(f"{path} holds Python objects (pickled data), which are never loaded "
                             "(unpickling can run code); expected a numeric array") from None
        raise ValueError(f"{path} is truncated or corrupt: {_one_line(err)}") from None
    except Exception as err:
        raise ValueError(f"{path} is truncated or corrupt: {_one_line(err)}") from None
    return _numeric(arr, path, None)


def _read_png(path: Path) -> np.ndarray:
    """``[H, W, C]`` float32 in [0, 1] with C = 1 (grey) or 3 (colour); see the module doc."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=["PNG", "JPEG"]) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ValueError(f"{path} is {img.width}x{img.height} pixels; images larger than "
                                     f"{MAX_PIXELS} pixels are refused (no model takes them)")
                if getattr(img, "n_frames", 1) > 1:
                    raise ValueError(f"{path} holds {img.n_frames} frames (an animation); expected one image")
                img.load()
                mode = img.mode
                if "transparency" in img.info or mode in ("PA", "La"):  # palette / colour-key transparency
                    img = img.convert("RGBA")
                elif mode == "P":
                    img = img.convert("RGB")
                elif mode == "1":
                    img = img.convert("L")
                mode = img.mode
                if mode not in ("L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L"):
                    raise ValueError(f"{path} has pixel format {mode!r}; expected a greyscale or RGB image "
                                     "(with an opaque alpha channel at most)")
                pixels = np.array(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"{path} is too large ({_one_line(err)}); images larger than {MAX_PIXELS} pixels are "
                         "refused (no model takes them)") from None
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"cannot decode the image {path} (truncated or corrupt?): {_one_line(err)}") from None
    except Exception as err:  # a damaged file can fail anywhere in the decoder (OSError, SyntaxError, zlib...)
        raise ValueError(f"cannot decode the image {path} (truncated or corrupt?): {_one_line(err)}") from None
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if mode.startswith("I"):  # 16-bit greyscale
        if pixels.min() < 0 or pixels.max() > 65535:
            raise ValueError(f"{path} has pixel values outside 0..65535; expected a 16-bit greyscale PNG")
        arr = pixels.astype(np.float32) / 65535.0
    else:
        if mode in ("LA", "RGBA"):
            alpha = pixels[..., -1]
            transparent = int(np.count_nonzero(alpha < 255))
            if transparent:
                raise ValueError(f"{path} has {transparent} transparent pixel(s) (alpha < 255); transparent images "
                                 "are refused, not composited: flatten it onto the background you mean first")
            pixels = pixels[..., :-1]
        arr = pixels.astype(np.float32) / 255.0
    if 0 in arr.shape:
        raise ValueError(f"{path} has no pixels (size {arr.shape[1]}x{arr.shape[0]})")
    return arr


def read_image_file(path) -> np.ndarray:
    """One file's images ``[B, H, W, C]`` float32 (float64 when a ``.npy``/``.npz`` holds float64,
    e.g. a render's with ``--float64-converge``), checked (finite, in [0, 1], C = 1 or 3).

    PNG (any suffix but ``.npy``/``.npz``): one image, see the module doc; ``.npy``: an
    ``[H, W, C]`` or ``[B, H, W, C]`` array; ``.npz``: its ``images`` entry (as `render`
    writes it). No model is needed: the CLI calls this before loading one.
    """
    path = Path(path)
    dtype = np.float32
    if path.suffix in (".npy", ".npz"):
        arr = load_array(path, "images" if path.suffix == ".npz" else None, "image file")
        dtype = np.float64 if arr.dtype == np.float64 else np.float32
        with np.errstate(invalid="ignore", over="ignore"):  # what does not fit is refused below as non-finite
            arr = arr.astype(np.float64)
    else:
        head = _check_file(path, "image file")
        if not head.startswith((PNG_MAGIC, JPEG_MAGIC)):
            raise ValueError(f"{path} is not a PNG file (no PNG signature); expected a PNG (or JPEG) image, "
                             "or a .npy / .npz array")
        arr = _read_png(path)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"{path}: expected an image [H, W, C] or a batch [B, H, W, C], got shape {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{path} holds no images (shape {arr.shape})")
    if arr.shape[-1] not in (1, 3):
        raise ValueError(f"{path}: images of shape {arr.shape[1:]} have {arr.shape[-1]} channels; "
                         "expected 1 (greyscale) or 3 (RGB)")
    check_finite(arr, f"{path}: images")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{path}: image values must be in [0, 1], got [{lo:.3g}, {hi:.3g}]")
    return arr.astype(dtype)


def to_channels(images, channels: int | None, source) -> np.ndarray:
    """``images`` ``[B, H, W, C]`` with ``channels`` (1 or 3; None: as they are); ``source``
    names them in the error.

    Grey -> colour repeats the channel (exact). Colour -> grey only when R = G = B
    everywhere (a grey picture stored as RGB), else a ValueError: the red channel is
    never taken for the picture.
    """
    if channels is None or images.shape[-1] == channels:
        return images
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    if np.array_equal(images[..., 0], images[..., 1]) and np.array_equal(images[..., 0], images[..., 2]):
        return images[..., :1]
    raise ValueError(f"{source} is a colour image (its R, G and B differ) but the model takes greyscale "
                     "(1 channel); convert it to greyscale yourself (e.g. PIL's Image.convert('L')), "
                     "the red channel is not taken for it")


def stack_images(batches: Sequence, sources: Sequence, channels: int | None = None) -> np.ndarray:
    """Concatenate `read_image_file` results (one per source) after `to_channels`."""
    if not len(batches):
        raise ValueError("no image files given")
    batches = [to_channels(b, channels, s) for b, s in zip(batches, sources)]
    shapes = {tuple(b.shape[1:]) for b in batches}
    if len(shapes) != 1:
        raise ValueError(f"images of different shapes: {sorted(shapes)}; expected one shape [H, W, C]")
    return np.concatenate(batches)


def load_images(paths: Sequence, channels: int | None = None) -> np.ndarray:
    """Load images into ``[B, H, W, C]`` float32 in [0, 1].

    Accepts PNG files (8-bit, scaled by 1/255; 16-bit grey by 1/65535), ``.npy`` arrays and
    ``.npz`` files (their ``images`` entry), each ``[H, W, C]`` or ``[B, H, W, C]``.
    ``channels`` (1 or 3, the model's) converts exactly or refuses (`to_channels`); every
    bad file is a one-line error (module doc).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    return stack_images([read_image_file(p) for p in paths], paths, channels)


def quantize_8bit(images) -> np.ndarray:
    """What saving as 8-bit (`save_png`) and reading back does to images in [0, 1]."""
    return np.round(np.clip(np.asarray(images, np.float64), 0, 1) * 255).astype(np.float32) / 255.0
