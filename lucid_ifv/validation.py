"""Checks at the public edge: each raises a ValueError naming the bad value."""

from __future__ import annotations

import numpy as np


def check_finite(values, what: str) -> np.ndarray:
    """Return `values` as an array; ValueError if any entry is NaN or infinite."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = int(arr.size - np.isfinite(arr).sum())
        raise ValueError(f"{what} contain {bad} non-finite value(s) (NaN or inf); expected finite numbers")
    return arr


def check_shape(arr, expected: tuple, what: str) -> np.ndarray:
    """Check `arr.shape` against `expected`, where None matches any size."""
    arr = np.asarray(arr)
    ok = arr.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, arr.shape))
    if not ok:
        shown = ", ".join("*" if e is None else str(e) for e in expected)
        raise ValueError(f"{what} has shape {arr.shape}; expected [{shown}]")
    return arr


def check_increasing(values, what: str) -> tuple[int, ...]:
    """Positive, strictly increasing integers (e.g. render thresholds)."""
    try:
        vals = tuple(int(v) for v in values)
    except TypeError:
        raise ValueError(f"{what} must be a sequence of step counts, e.g. (512,), got {values!r}") from None
    if not vals or vals[0] < 0 or any(b <= a for a, b in zip(vals, vals[1:])):
        raise ValueError(f"{what} must be non-negative and strictly increasing, got {tuple(values)}")
    return vals


def check_orthonormal(basis, what: str, k: int | None = None, atol: float = 1e-6) -> np.ndarray:
    """A [k, d] float64 array with orthonormal columns (d may be 0); `k` pins the row count."""
    b = check_finite(np.asarray(basis, dtype=np.float64), what)
    if b.ndim != 2:
        raise ValueError(f"{what} has shape {b.shape}; expected [k, d] with orthonormal columns")
    if k is not None and b.shape[0] != k:
        raise ValueError(f"{what} has shape {b.shape}; expected [{k}, d] (k = {k} rows)")
    if b.shape[1] > b.shape[0]:
        raise ValueError(f"{what} has shape {b.shape}; expected at most k = {b.shape[0]} columns")
    err = float(np.max(np.abs(b.T @ b - np.eye(b.shape[1])), initial=0.0))
    if err > atol:
        raise ValueError(f"{what} columns are not orthonormal (max |B^T B - I| = {err:.3g}; expected <= {atol:g})")
    return b


def check_index(value, what: str) -> int:
    """A non-negative integer index (a channel, a class, a position, a batch element).

    Negative indices are refused: Python would read -1 as the last entry, silently."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer index >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be an integer index >= 0, got {value} "
                         "(negative indices are refused: -1 would silently mean the last)")
    return int(value)


def check_feature_indices(features, depth: int | None = None, what: str = "features",
                          allow_empty: bool = False, distinct: bool = True) -> np.ndarray:
    """``features`` as a 1-D int64 array ``[m]`` of channel indices in ``[0, depth)``
    (``depth`` None: no upper bound known yet), non-empty unless ``allow_empty``, and
    ``distinct``: a repeated index would count its feature twice in an objective and in a
    solve, so it is refused there (a Jacobian may repeat rows: ``distinct=False``)."""
    arr = np.asarray(features)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu") or (arr.size == 0 and not allow_empty):
        raise ValueError(f"{what} must be a non-empty list of channel indices (integers >= 0), got {features!r}")
    arr = arr.astype(np.int64)
    negative = arr[arr < 0]
    if negative.size:
        raise ValueError(f"{what} must be channel indices >= 0, got {negative.tolist()} "
                         "(negative indices are refused: -1 would silently mean the last)")
    if depth is not None and arr.size and arr.max() >= depth:
        raise ValueError(f"{what} {arr[arr >= depth].tolist()} out of range: the layer has {depth} channels "
                         f"(valid: 0 to {depth - 1})")
    values, counts = np.unique(arr, return_counts=True)
    if distinct and (counts > 1).any():
        raise ValueError(f"{what} repeat {values[counts > 1].tolist()}; expected distinct channel indices")
    return arr


def check_cossim_pow(cossim_pow) -> float:
    """The cosine power ``p`` of the feature objective: a finite number >= 0."""
    try:
        p = float(cossim_pow)
    except (TypeError, ValueError):
        p = float("nan")
    if isinstance(cossim_pow, bool) or not (np.isfinite(p) and p >= 0):
        raise ValueError(f"cossim_pow must be a finite number >= 0 (0 drops the cosine term), got {cossim_pow!r}")
    return p


def check_in_range(index: int, size, what: str, where: str) -> int:
    """``index < size`` (``size`` None: unknown, not checked). ``where`` says what has
    ``{size}`` entries, e.g. ``"layer 'conv2' has {size} channels"``."""
    if size is not None and index >= size:
        where = where.replace("{size}", str(size))
        valid = f"valid: 0 to {size - 1}" if size else "it has none"
        raise ValueError(f"{what} {index} is out of range: {where} ({valid})")
    return index


def check_out_dir(path, what: str = "output folder"):
    """Create folder ``path`` if needed and prove it writable (an unnamed temporary file in it,
    written and fsynced), or raise a one-line ValueError before any computation."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"cannot use {path} as the {what}: it is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:  # O_TMPFILE where available: never visible
            probe.write(b"probe\n" * 512)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise ValueError(f"cannot write the {what} {path}: {err.strerror or err}") from None
    return path


def check_out_file(path, what: str = "output file"):
    """A file path that can be written: not a folder, its folder created if needed and
    writable (probed as in `check_out_dir`); ``path`` itself is not created."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot use {path} as the {what}: it is a folder; expected a file name")
    check_out_dir(path.parent if str(path.parent) else Path("."), f"folder of the {what}")
    return path
