"""Lucid's ``lucid.misc.io``: `show`, `load` and `save`, on this project's safe file code.

Code written for Lucid 0.3.10 keeps working after changing its import prefix::

    from lucid_ifv.compat.misc.io import show, load, save

This is a thin layer: images are decoded by `lucid_ifv.imageio` (PNG and JPEG only, checked,
never an unsafe format), arrays are read with ``allow_pickle=False`` (pickles are never
loaded), downloads go through `modelzoo.fetch.resolve` (size limit, same-host redirects,
atomic cache). Every bad input is a one-line `ValueError` or `TypeError` naming the value and
what was expected (a missing file is a `FileNotFoundError`).

``show(thing, domain=(0, 1), w=None, labels=None, ncols=None)``
    An image ``[H, W]`` or ``[H, W, C]``, a batch ``[B, H, W, C]`` or a list of images
    (C = 1, 3 or 4; float values in ``domain``, clipped to it, or uint8 0..255). Inside a
    Jupyter/IPython *kernel* it is displayed inline as Lucid does (an ``<img>``; a batch or a
    list as a row of images labelled by index or ``labels``; ``w`` is the displayed width in
    pixels). Anywhere else (a script, a terminal) it is written as one PNG into the folder
    ``$LUCID_IFV_SHOW_DIR`` (default ``./lucid_ifv_show/``): a batch or list becomes a row of
    tiles separated by `GAP` white pixels (``ncols`` wraps the row into a grid; ``w`` scales
    each tile to that width, nearest neighbour; labels are not drawn). The file's path is
    printed and returned.

``load(url_or_path, *, split=False, encoding="utf-8", sha256=None, cache_dir=None, cache=None)``
    A local path, ``file://`` URL, or ``http(s)://`` / ``gs://`` URL (downloaded once into
    the cache of `modelzoo.fetch`, checked to parse as its format before it is cached; a
    ``sha256`` is checked when given; it is not checked for local files). A list or tuple of sources gives a list. By extension:

    - ``.png``, ``.jpg``, ``.jpeg``: float32 ``[H, W, 3]`` in [0, 1] (greyscale repeated
      into 3 channels, as Lucid does); an opaque alpha channel is dropped and images with
      transparent pixels are refused (see `lucid_ifv.imageio`).
    - ``.npy``: the numeric array. ``.npz``: a dict ``{name: array}``.
    - ``.json``: the parsed object. ``.txt``, ``.md``: the text (``split=True``: its lines).

``save(thing, path, *, domain=(0, 1), quality=None, indent=2)``
    Writes atomically (a temporary file in the same folder, then `os.replace`), creating
    folders. By extension: ``.png`` (C = 1, 3 or 4), ``.jpg``/``.jpeg`` (C = 1 or 3; ``quality``
    is Pillow's, default 75) from an image ``[H, W]``, ``[H, W, C]`` or ``[1, H, W, C]`` of
    floats in ``domain`` (clipped, ``domain=None`` stretches min..max to 0..1) or uint8;
    ``.npy`` a numeric (bool, integer or float) array, what `load` reads back; ``.npz``
    (compressed) a dict of such arrays, a list of arrays (``arr_0``, ``arr_1``,
    ...) or one array (``arr_0``); ``.json`` any JSON-able object (NumPy scalars and arrays,
    sets and objects with ``to_json()`` are converted, as Lucid does); ``.txt``/``.md`` a
    string or a list of strings (one per line). A string may be saved under any other
    extension too (written as UTF-8 text, as Lucid does). Returns Lucid's description dict
    (``{"type": ..., "url": ...}``).

Differences from Lucid 0.3.10:

- Pixels are quantized by rounding (``round(x * 255)``), not truncation, so an 8-bit image
  survives save -> load exactly.
- `save` maps floats through ``domain=(0, 1)`` by default; Lucid's ``save`` stretched each
  image's own min..max to 0..255 (pass ``domain=None`` for that). uint8 arrays are always
  taken as 0..255 (Lucid clipped them to ``domain`` too, so ``show`` of uint8 was dark).
- Never unpickles: ``.pkl``/``.pickle`` and ``allow_unsafe_formats=True`` are refused, as are
  object arrays. No ``.pb`` (use `modelzoo.load_model`), no ``.xz``, no ``.webp``, no open
  file handles, no remote ``save``, no ``size=`` resizing in ``load``.
- An unknown extension is a ValueError (Lucid tried to decode it as an image); ``.npz`` loads
  as a dict (Lucid returned NumPy's lazy ``NpzFile``); a list of sources loads in order and
  raises the first error (Lucid loaded them in threads and returned exceptions in the list).
- Images with transparent pixels are refused by `load` (Lucid returned RGBA);
  `save` can still write RGBA PNGs.
- `show` needs channels 1, 3 or 4 (Lucid collapsed other channel counts into false colour)
  and raises TypeError for things that are not images (Lucid printed their ``repr``).
  Outside an IPython kernel it writes a PNG and returns its path (Lucid needed IPython).
- Arrays of strings, complex numbers or dates are not saved (`load` refuses them, as does
  `lucid_ifv.imageio`).
"""

from __future__ import annotations

import base64
import html as html_lib
import io
import itertools
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from lucid_ifv import imageio
from lucid_ifv.atomic import write_atomic
from lucid_ifv.validation import check_finite

__all__ = ["show", "load", "save", "show_dir", "SHOW_DIR_ENV", "DEFAULT_SHOW_DIR", "GAP"]

SHOW_DIR_ENV = "LUCID_IFV_SHOW_DIR"
DEFAULT_SHOW_DIR = "lucid_ifv_show"
GAP = 10  # pixels between tiles of a shown batch (Lucid's HTML used a 10px margin)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
TEXT_EXTENSIONS = (".txt", ".md")
EXTENSIONS = IMAGE_EXTENSIONS + (".npy", ".npz", ".json") + TEXT_EXTENSIONS
PICKLE_EXTENSIONS = (".pkl", ".pickle")
REMOTE_SCHEMES = ("http", "https", "gs")

_show_counter = itertools.count(1)


# ------------------------------------------------------------------------------- sources


def _source(value, what: str) -> str:
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path or URL string, got {type(value).__name__} {value!r:.80}")
    source = os.fspath(value)
    if not source.strip():
        raise ValueError(f"{what} must be a non-empty path or URL, got {value!r}")
    return source


def _scheme(source: str) -> str:
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    return "" if len(scheme) == 1 else scheme  # "C:\\x" is a Windows path, not a URL


def _extension(source: str, action: str) -> str:
    path = urllib.parse.urlsplit(source).path if _scheme(source) else source
    ext = os.path.splitext(path)[1].lower()
    if not ext:
        raise ValueError(f"cannot {action} {source!r}: it has no file extension; expected one of "
                         f"{', '.join(EXTENSIONS)}")
    if ext in PICKLE_EXTENSIONS:
        raise ValueError(f"cannot {action} {source!r}: {ext} files are pickles, which are never "
                         "loaded or written (unpickling can run code); use .npy, .npz or .json")
    return ext


def _local_path(source: str, action: str) -> Path:
    scheme = _scheme(source)
    if scheme == "file":
        parts = urllib.parse.urlsplit(source)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"cannot {action} {source!r}: a file:// URL must name a local file, "
                             f"not host {parts.netloc!r}")
        return Path(urllib.request.url2pathname(parts.path))
    if scheme:
        raise ValueError(f"cannot {action} {source!r}: unsupported scheme {scheme!r}; expected a local "
                         "path or a file://" + (", http(s):// or gs:// URL" if action == "load" else " URL"))
    return Path(source).expanduser()


def _check_local(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"no file at {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file")


# --------------------------------------------------------------------------------- loading


def _load_image(path: Path, **_) -> np.ndarray:
    images = imageio.read_image_file(path)  # [1, H, W, 1 or 3]; checks signature, size, alpha
    return imageio.to_channels(images, 3, path)[0]


def _load_npy(path: Path, **_) -> np.ndarray:
    return imageio.load_array(path)


def _load_npz(path: Path, **_) -> dict:
    _check_local(path)
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            names = list(data.files)
    except Exception as err:  # not a zip, a damaged archive, a plain .npy: one line either way
        raise ValueError(f"{path} is not a readable .npz archive ({imageio._one_line(err)}); expected a file "
                         "written by numpy.savez") from None
    return {name: imageio.load_array(path, name) for name in names}


def _read_text(path: Path, encoding: str) -> str:
    _check_local(path)
    try:
        return path.read_bytes().decode(encoding)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not {encoding} text: {imageio._one_line(err)}") from None
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r}") from None
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or imageio._one_line(err)}") from None


def _load_json(path: Path, encoding: str = "utf-8", **_):
    text = _read_text(path, encoding)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {imageio._one_line(err)}") from None


def _load_text(path: Path, split: bool = False, encoding: str = "utf-8", **_):
    text = _read_text(path, encoding)
    return text.splitlines() if split else text


_LOADERS = {
    ".png": _load_image, ".jpg": _load_image, ".jpeg": _load_image,
    ".npy": _load_npy, ".npz": _load_npz, ".json": _load_json, ".txt": _load_text, ".md": _load_text,
}


def _named(name: str, check):
    """`check` under a readable name (modelzoo.fetch names the expected format by it)."""

    def wrapper(path):
        check(path)

    wrapper.__name__ = name
    return wrapper


_DOWNLOAD_CHECKS = {
    **dict.fromkeys(IMAGE_EXTENSIONS, _named("a PNG or JPEG image", imageio.read_image_file)),
    ".npy": _named("a .npy array", imageio.load_array),
    ".npz": _named("a .npz archive", _load_npz),
    ".json": "json", ".txt": "text", ".md": "text",
}


def _download(url: str, ext: str, sha256, cache_dir) -> Path:
    try:
        from modelzoo.fetch import resolve
    except ImportError as err:  # pragma: no cover - modelzoo ships with lucid_ifv
        raise ValueError(f"cannot download {url}: the downloader modelzoo.fetch is unavailable ({err})") from None
    return resolve(url, cache_dir=cache_dir, sha256=sha256, progress=False, expect=_DOWNLOAD_CHECKS[ext])


def load(url_or_path, *, split: bool = False, encoding: str = "utf-8", sha256: str | None = None,
         cache_dir=None, cache=None, allow_unsafe_formats: bool = False):
    """Load a file by its extension (see the module doc); Lucid's ``lucid.misc.io.load``.

    Args:
        url_or_path: a local path, ``file://``, ``http(s)://`` or ``gs://`` URL, or a list of them.
        split: text files: return a list of lines instead of one string.
        encoding: text and JSON files' encoding.
        sha256: expected SHA-256 of a downloaded file (checked by `modelzoo.fetch.resolve`).
        cache_dir: download cache folder (default ``$LUCID_IFV_CACHE`` or ``~/.cache/lucid-ifv``).
        cache: accepted for Lucid's signature and ignored: downloads are always cached (atomically,
            checked) by `modelzoo.fetch`.
        allow_unsafe_formats: only False is accepted; pickles are never loaded.
    """
    if isinstance(url_or_path, (list, tuple)):
        return [load(u, split=split, encoding=encoding, sha256=sha256, cache_dir=cache_dir, cache=cache,
                     allow_unsafe_formats=allow_unsafe_formats) for u in url_or_path]
    if allow_unsafe_formats:
        raise ValueError("allow_unsafe_formats=True is not supported: pickles are never loaded "
                         "(unpickling can run code)")
    source = _source(url_or_path, "load: url_or_path")
    ext = _extension(source, "load")
    if ext not in _LOADERS:
        raise ValueError(f"cannot load {source!r}: unknown extension {ext!r}; expected one of "
                         f"{', '.join(EXTENSIONS)}")
    if _scheme(source) in REMOTE_SCHEMES:
        path = _download(source, ext, sha256, cache_dir)
    else:
        path = _local_path(source, "load")
    return _LOADERS[ext](path, split=split, encoding=encoding)


# ---------------------------------------------------------------------------------- pixels


def _check_domain(domain):
    if domain is None:
        return None
    try:
        lo, hi = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise ValueError(f"domain must be None or a pair (low, high) of numbers, got {domain!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"domain must be a pair (low, high) of finite numbers with low < high, got {domain!r}")
    return lo, hi


def _pil_to_array(thing):
    """A PIL image as a uint8 array (Lucid's ``save`` took PIL images too); others unchanged."""
    if type(thing).__module__.startswith("PIL.") and hasattr(thing, "mode") and hasattr(thing, "getbands"):
        if thing.mode not in ("L", "RGB", "RGBA"):
            raise ValueError(f"PIL image of mode {thing.mode!r}; expected 'L', 'RGB' or 'RGBA'")
        return np.asarray(thing)
    return thing


def _to_uint8(thing, domain, what: str) -> np.ndarray:
    """One image ``[H, W, C]`` (C = 1, 3 or 4) as uint8; see the module doc for the mapping."""
    try:
        arr = np.asarray(_pil_to_array(thing))
    except Exception:
        raise TypeError(f"{what} must be an image array, got {type(thing).__name__}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be a numeric image array (float or uint8), got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4) or 0 in arr.shape:
        raise ValueError(f"{what} must be an image [H, W], [H, W, C] or [1, H, W, C] with C = 1, 3 or 4 "
                         f"and no empty axis, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind in "iu":
        raise TypeError(f"{what} has dtype {arr.dtype}; expected floats (in the domain, default [0, 1]) "
                        "or uint8 (0..255): convert it with .astype(np.uint8) or divide by 255")
    arr = check_finite(arr.astype(np.float64), what)
    lo, hi = domain if domain is not None else (float(arr.min()), float(arr.max()))
    scaled = (np.clip(arr, lo, hi) - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return np.round(scaled * 255).astype(np.uint8)


def _encode(pixels: np.ndarray, fmt: str, quality=None) -> bytes:
    from PIL import Image

    mode = {1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[-1]]
    picture = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
    buffer = io.BytesIO()
    options = {} if quality is None else {"quality": int(quality)}
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _write_image(pixels: np.ndarray, path: Path, fmt: str, quality=None) -> Path:
    if fmt == "PNG" and pixels.shape[-1] in (1, 3):
        return imageio.save_png(pixels / 255.0, path)  # exact: round(k / 255 * 255) == k
    return write_atomic(path, _encode(pixels, fmt, quality))


# ----------------------------------------------------------------------------------- saving


def _save_image(thing, path: Path, ext: str, domain=(0, 1), quality=None, **_) -> dict:
    pixels = _to_uint8(thing, _check_domain(domain), f"the image to save to {path}")
    fmt = "PNG" if ext == ".png" else "JPEG"
    if fmt == "JPEG":
        if pixels.shape[-1] == 4:
            raise ValueError(f"cannot save an RGBA image as JPEG ({path}): JPEG has no alpha channel; "
                             "save it as .png or drop the alpha")
        if quality is not None and (isinstance(quality, bool) or not isinstance(quality, (int, np.integer))
                                    or not 1 <= quality <= 100):
            raise ValueError(f"quality must be an integer from 1 to 100, got {quality!r}")
    _write_image(pixels, path, fmt, quality)
    h, w, c = pixels.shape
    return {"type": "image", "shape": (w, h, c), "url": str(path)}


def _numeric_array(value, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception:
        arr = None
    if arr is None or arr.dtype.kind not in "biuf":
        kind = type(value).__name__ if arr is None else f"dtype {arr.dtype}"
        raise TypeError(f"{what} must be a numeric (bool, integer or float) array, which is what load reads "
                        f"back (never pickled objects), got {kind}")
    return arr


def _save_npy(thing, path: Path, ext: str, **_) -> dict:
    arr = _numeric_array(thing, f"the array to save to {path}")
    buffer = io.BytesIO()
    np.save(buffer, arr, allow_pickle=False)
    write_atomic(path, buffer.getvalue())
    return {"type": "npy", "shape": arr.shape, "dtype": str(arr.dtype), "url": str(path)}


def _save_npz(thing, path: Path, ext: str, **_) -> dict:
    if isinstance(thing, dict):
        items = list(thing.items())
        for key, _value in items:
            if not isinstance(key, str) or not key or key in ("file", "path", "allow_pickle"):
                raise ValueError(f"the .npz entry name {key!r} is not allowed; expected a non-empty string "
                                 "other than 'file', 'path' and 'allow_pickle'")
    elif isinstance(thing, (list, tuple)):
        items = [(f"arr_{i}", value) for i, value in enumerate(thing)]
    else:
        items = [("arr_0", thing)]
    arrays = {key: _numeric_array(value, f"the .npz entry {key!r} for {path}") for key, value in items}
    imageio.save_npz(path, **arrays)
    return {"type": "npz", "url": str(path)}


class _JSONEncoder(json.JSONEncoder):
    """Lucid's ClarityJSONEncoder: sets and tuples, NumPy scalars and arrays, ``to_json()``."""

    def default(self, obj):
        if isinstance(obj, (tuple, set, frozenset)):
            return list(obj)
        if isinstance(obj, np.bool_):
            return bool(obj)
        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.floating):
            return float(obj)
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if hasattr(obj, "to_json"):
            return obj.to_json()
        raise TypeError(f"cannot save a {type(obj).__name__} as JSON; expected dicts, lists, strings, "
                        "numbers, booleans, None, NumPy values or objects with to_json()")


def _save_json(thing, path: Path, ext: str, indent=2, **_) -> dict:
    try:
        text = json.dumps(thing, indent=indent, cls=_JSONEncoder)
    except ValueError as err:  # circular reference
        raise ValueError(f"cannot save to {path} as JSON: {imageio._one_line(err)}") from None
    write_atomic(path, text.encode("utf-8"))
    return {"type": "json", "url": str(path)}


def _save_text(thing, path: Path, ext: str, **_) -> dict:
    if isinstance(thing, str):
        text = thing
    elif isinstance(thing, (list, tuple)) and all(isinstance(line, str) for line in thing):
        text = "".join(line if line.endswith("\n") else line + "\n" for line in thing)
    else:
        raise TypeError(f"text to save to {path} must be a string or a list of strings, got "
                        f"{type(thing).__name__}")
    write_atomic(path, text.encode("utf-8"))
    return {"type": "txt", "url": str(path)}


_SAVERS = {
    ".png": _save_image, ".jpg": _save_image, ".jpeg": _save_image,
    ".npy": _save_npy, ".npz": _save_npz, ".json": _save_json, ".txt": _save_text, ".md": _save_text,
}


def save(thing, path, *, domain=(0, 1), quality: int | None = None, indent: int | None = 2,
         allow_unsafe_formats: bool = False) -> dict:
    """Save `thing` to the local `path` by its extension (see the module doc); Lucid's
    ``lucid.misc.io.save``. Returns ``{"type": ..., "url": <path>, ...}`` as Lucid does.

    Args:
        thing: what to save (an image or array, a dict or list of arrays, a JSON-able object, text).
        path: a local path or ``file://`` URL; missing folders are created.
        domain: images: the float range mapped to 0..255 (clipped), None for the image's min..max.
        quality: JPEG quality 1..100 (default Pillow's 75).
        indent: JSON indentation.
        allow_unsafe_formats: only False is accepted; nothing is ever pickled.
    """
    if allow_unsafe_formats:
        raise ValueError("allow_unsafe_formats=True is not supported: nothing is ever pickled")
    source = _source(path, "save: path")
    ext = _extension(source, "save")
    if _scheme(source) in REMOTE_SCHEMES:
        raise ValueError(f"cannot save to {source!r}: save writes local files only (a path or file:// URL)")
    target = _local_path(source, "save")
    saver = _SAVERS.get(ext)
    if saver is None:
        if not isinstance(thing, str):
            raise ValueError(f"cannot save a {type(thing).__name__} to {source!r}: unknown extension {ext!r}; "
                             f"expected one of {', '.join(EXTENSIONS)} (any extension takes a string)")
        saver = _save_text
    return saver(thing, target, ext, domain=domain, quality=quality, indent=indent)


# ----------------------------------------------------------------------------------- showing


def _images_of(thing) -> tuple[list, bool]:
    """(list of single images, whether it is a collection) for `show`."""
    if isinstance(thing, (list, tuple)):
        if not thing:
            raise ValueError("show: got an empty list; expected images")
        return list(thing), True
    try:
        arr = np.asarray(_pil_to_array(thing))
    except Exception:
        arr = None
    if arr is None or arr.dtype.kind not in "biuf":
        kind = type(thing).__name__ if arr is None else f"{type(thing).__name__} of dtype {arr.dtype}"
        raise TypeError(f"show: expected an image array [H, W], [H, W, C] or a batch [B, H, W, C], got {kind}")
    if arr.ndim in (2, 3):
        return [arr], False
    if arr.ndim == 4:
        if arr.shape[0] == 0:
            raise ValueError(f"show: the batch is empty (shape {arr.shape})")
        return list(arr), True
    raise ValueError(f"show: expected an image [H, W], [H, W, C] or a batch [B, H, W, C], got shape {arr.shape}")


def _ipython_kernel():
    """The IPython module when running in an IPython kernel (Jupyter), else None (not imported)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        shell = ipython.get_ipython()
    except Exception:
        return None
    return ipython if shell is not None and getattr(shell, "kernel", None) is not None else None


def _image_html(pixels: np.ndarray, w) -> str:
    url = "data:image/PNG;base64," + base64.b64encode(_encode(pixels, "PNG")).decode("ascii")
    style = "image-rendering: pixelated; image-rendering: crisp-edges;"
    if w is not None:
        style += f"width: {w}px;"
    return f'<img src="{url}" style="{style}">'


def _show_html(tiles: list, collection: bool, labels, w) -> None:
    from IPython.display import HTML, display

    if not collection:
        display(HTML(_image_html(tiles[0], w)))
        return
    html = '<div style="display: flex; flex-direction: row;">'
    for i, pixels in enumerate(tiles):
        label = "" if labels is not None and len(labels) == 0 else (labels[i] if labels is not None else i)
        label_html = "" if label == "" else f"{html_lib.escape(str(label))} <br/>"
        html += (f'<div style="margin-right:10px; margin-top: 4px;">{label_html}'
                 f"{_image_html(pixels, w)}</div>")
    display(HTML(html + "</div>"))


def _scale_to_width(pixels: np.ndarray, w: int) -> np.ndarray:
    h0, w0 = pixels.shape[:2]
    h = max(1, round(h0 * w / w0))
    rows = np.minimum((np.arange(h) * h0) // h, h0 - 1)
    cols = np.minimum((np.arange(w) * w0) // w, w0 - 1)
    return pixels[rows][:, cols]


def _canvas(tiles: list, ncols: int) -> np.ndarray:
    """Tiles ``[h_i, w_i, C_i]`` uint8 in a grid of `ncols` columns, `GAP` white pixels apart."""
    channels = 4 if any(t.shape[-1] == 4 for t in tiles) else 3 if any(t.shape[-1] == 3 for t in tiles) else 1
    converted = []
    for t in tiles:
        if t.shape[-1] == 1 and channels > 1:
            t = np.repeat(t, 3, axis=-1)
        if t.shape[-1] == 3 and channels == 4:
            t = np.concatenate([t, np.full(t.shape[:2] + (1,), 255, np.uint8)], axis=-1)
        converted.append(t)
    rows = [converted[i:i + ncols] for i in range(0, len(converted), ncols)]
    col_widths = [max(row[j].shape[1] for row in rows if j < len(row)) for j in range(min(ncols, len(converted)))]
    row_heights = [max(t.shape[0] for t in row) for row in rows]
    canvas = np.full((sum(row_heights) + GAP * (len(rows) - 1),
                      sum(col_widths) + GAP * (len(col_widths) - 1), channels), 255, np.uint8)
    y = 0
    for row, height in zip(rows, row_heights):
        x = 0
        for j, t in enumerate(row):
            canvas[y:y + t.shape[0], x:x + t.shape[1]] = t
            x += col_widths[j] + GAP
        y += height + GAP
    return canvas


def show_dir() -> Path:
    """Where `show` writes its PNGs outside IPython: ``$LUCID_IFV_SHOW_DIR`` or ``./lucid_ifv_show``."""
    env = os.environ.get(SHOW_DIR_ENV)
    return Path(env).expanduser() if env and env.strip() else Path(DEFAULT_SHOW_DIR)


def show(thing, domain=(0, 1), w: int | None = None, labels=None, ncols: int | None = None):
    """Show an image, a batch or a list of images (see the module doc); Lucid's
    ``lucid.misc.io.show``.

    Returns None when displayed in an IPython kernel, else the path of the written PNG (also
    printed).

    Args:
        thing: ``[H, W]``, ``[H, W, C]``, ``[B, H, W, C]`` or a list of ``[H, W(, C)]`` images;
            C = 1, 3 or 4; floats in `domain` (clipped) or uint8.
        domain: the float range shown as black..white; None: each image's min..max.
        w: width in pixels of each displayed image (nearest-neighbour scaling in files).
        labels: IPython only: one label per image of a collection (default: its index; ``[]``: none).
        ncols: files only: tiles per row (default: all in one row, as Lucid's display).
    """
    domain = _check_domain(domain)
    if w is not None and (isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1):
        raise ValueError(f"show: w must be None or a positive integer (pixels), got {w!r}")
    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1):
        raise ValueError(f"show: ncols must be None or a positive integer, got {ncols!r}")
    images, collection = _images_of(thing)
    if labels is not None:
        labels = list(labels)
        if labels and len(labels) != len(images):
            raise ValueError(f"show: got {len(labels)} labels for {len(images)} images; expected one per image "
                             "(or [] for none)")
    tiles = [_to_uint8(img, domain, f"show: image {i}" if collection else "show: the image")
             for i, img in enumerate(images)]
    if _ipython_kernel() is not None:
        _show_html(tiles, collection, labels, w)
        return None
    if w is not None:
        tiles = [_scale_to_width(t, int(w)) for t in tiles]
    canvas = _canvas(tiles, int(ncols) if ncols is not None else len(tiles))
    name = f"show-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_show_counter):04d}.png"
    path = _write_image(canvas, show_dir() / name, "PNG")
    print(f"show: wrote {path}")
    return path


# -- Lucid's submodules: ``lucid.misc.io.{reading, showing, loading, saving}`` -----------------
def image_url(array, fmt: str = "png", mode: str = "data", quality: int = 90, domain=(0, 1)) -> str:
    """A ``data:`` URL of an image ``[H, W, C]`` (Lucid's ``showing._image_url``)."""
    if mode != "data":
        raise ValueError(f"image_url supports mode 'data' only, got {mode!r}")
    fmt = fmt.upper().replace("JPG", "JPEG")
    if fmt not in ("PNG", "JPEG"):
        raise ValueError(f"image_url formats are png and jpeg, got {fmt!r}")
    pixels = _to_uint8(np.asarray(array), domain, "image")
    return f"data:image/{fmt};base64," + base64.b64encode(_encode(pixels, fmt, quality)).decode("ascii")


def display_html(html: str) -> Path | None:
    """Display HTML inline in an IPython kernel (Lucid's ``showing._display_html``); elsewhere
    write it to an ``.html`` file in `show_dir` and return its path."""
    ipython = _ipython_kernel()
    if ipython is not None:
        from IPython.display import HTML, display

        display(HTML(html))
        return None
    path = show_dir() / f"show-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_show_counter):04d}.html"
    write_atomic(path, html.encode("utf-8"))
    print(path)
    return path


def read(url_or_path, encoding: str | None = None, cache=None, mode: str = "rb"):
    """The bytes (or, with ``encoding``, the text) of a local file or ``file://`` URL (Lucid's
    ``reading.read``; remote reading goes through `load`, which checks the format)."""
    path = _local_path(_source(url_or_path, "read"), "read")
    _check_local(path)
    data = path.read_bytes()
    return data if encoding is None else data.decode(encoding)
