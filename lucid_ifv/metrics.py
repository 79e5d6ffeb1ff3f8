"""Evaluation measures (paper Sec. 3): angles, SSIM, singular-vector coefficients, summaries.

All functions take numpy arrays (float32 or float64) and compute in float64. Vectors are
the last axis: ``[k]`` for one vector, ``[n, k]`` for a batch compared row by row.
"""

from __future__ import annotations

import numpy as np

from .validation import check_finite, check_orthonormal

__all__ = [
    "angle_deg",
    "cosine_similarity",
    "ssim",
    "singular_coefficients",
    "summary",
    "project_and_normalize",
    "angle_in_subspace",
]


def _pair(a, b, what_a: str = "a", what_b: str = "b"):
    a = check_finite(np.asarray(a, dtype=np.float64), what_a)
    b = check_finite(np.asarray(b, dtype=np.float64), what_b)
    if a.ndim not in (1, 2) or a.shape[-1] == 0:
        raise ValueError(f"{what_a} has shape {a.shape}; expected [k] or [n, k] with k >= 1")
    if a.shape != b.shape:
        raise ValueError(f"{what_a} has shape {a.shape} but {what_b} has shape {b.shape}; expected equal shapes")
    return a, b


def _unit_rows(v: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    zero = norms[..., 0] == 0
    if np.any(zero):
        rows = np.flatnonzero(np.atleast_1d(zero)).tolist()
        where = "" if v.ndim == 1 else f" (row(s) {rows[:10]}{'...' if len(rows) > 10 else ''})"
        raise ValueError(f"{what} is a zero vector{where}; the angle is undefined")
    return v / norms


def angle_deg(a, b):
    """Angle in degrees between two vectors, or between corresponding rows.

    Uses ``2 atan2(|a^ - b^|, |a^ + b^|)`` on the normalized vectors, which is accurate
    for tiny and near-180-degree angles alike (no arccos of a cosine that rounded past 1),
    and clips to [0, 180].

    Parameters
    ----------
    a, b : arrays [k] or [n, k] of equal shape, finite, no zero vector.

    Returns
    -------
    float for vectors, array [n] for matrices.

    Raises
    ------
    ValueError for shape mismatch, non-finite entries or zero vectors.
    """
    a, b = _pair(a, b)
    ua, ub = _unit_rows(a, "a"), _unit_rows(b, "b")
    ang = 2.0 * np.arctan2(np.linalg.norm(ua - ub, axis=-1), np.linalg.norm(ua + ub, axis=-1))
    ang = np.clip(np.degrees(ang), 0.0, 180.0)
    return float(ang) if a.ndim == 1 else ang


def sign_symmetric(cossim_pow) -> bool:
    """Whether the paper's significance ``m(f, t) = <f, t> cos(f, t)^p`` is even in ``t``: for an
    odd integer ``p`` both factors change sign with ``t``, so ``t`` and ``-t`` are one objective."""
    p = float(cossim_pow)
    return p.is_integer() and int(p) % 2 == 1


def objective_angle_deg(a, b, cossim_pow=1):
    """Angle (degrees) between two objectives ``a``, ``b`` (rows or vectors, as `angle_deg`).

    For an odd integer ``p`` the paper's significance ``m(f, t) = <f, t> cos(f, t)^p`` is even in
    ``t`` (both factors change sign), so ``t`` and ``-t`` are the same objective and the angle
    is taken modulo sign: ``min(angle, 180 - angle)``, in [0, 90]. Otherwise `angle_deg`.
    """
    ang = angle_deg(a, b)
    if sign_symmetric(cossim_pow):
        ang = np.minimum(ang, 180.0 - ang)
        return float(ang) if np.ndim(ang) == 0 else ang
    return ang


def cosine_similarity(a, b):
    """Cosine of the angle between two vectors (or rows), clipped to [-1, 1].

    Same shapes and errors as :func:`angle_deg`; float for vectors, [n] for matrices.
    """
    a, b = _pair(a, b)
    cos = np.sum(_unit_rows(a, "a") * _unit_rows(b, "b"), axis=-1)
    cos = np.clip(cos, -1.0, 1.0)
    return float(cos) if a.ndim == 1 else cos


def ssim(images_a, images_b) -> np.ndarray:
    """Structural similarity per image pair, via ``skimage.metrics.structural_similarity``.

    Called with ``data_range=1`` and ``channel_axis=-1`` (uniform window, scikit-image's
    defaults otherwise). The window size is the largest odd number <= 7 that fits into
    ``min(H, W)``: 7 for images of at least 7x7 pixels (scikit-image's default), 5 for
    5x5 and 6x6, 3 for 3x3 and 4x4. Images smaller than 3x3 are rejected.

    Parameters
    ----------
    images_a, images_b : arrays [B, H, W, C] of equal shape, values in [0, 1].

    Returns
    -------
    array [B] float64.
    """
    from skimage.metrics import structural_similarity

    a = check_finite(np.asarray(images_a, dtype=np.float64), "images_a")
    b = check_finite(np.asarray(images_b, dtype=np.float64), "images_b")
    if a.ndim != 4:
        raise ValueError(f"images_a has shape {a.shape}; expected [B, H, W, C] (NHWC)")
    if a.shape != b.shape:
        raise ValueError(f"images_a has shape {a.shape} but images_b has shape {b.shape}; expected equal shapes")
    for arr, what in ((a, "images_a"), (b, "images_b")):
        if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
            raise ValueError(
                f"{what} has values in [{arr.min():.6g}, {arr.max():.6g}]; expected images in [0, 1]"
            )
    side = min(a.shape[1], a.shape[2])
    if side < 3:
        raise ValueError(f"images are {a.shape[1]}x{a.shape[2]} pixels; SSIM needs at least 3x3")
    win = min(7, side if side % 2 else side - 1)
    return np.array(
        [structural_similarity(x, y, data_range=1.0, channel_axis=-1, win_size=win) for x, y in zip(a, b)],
        dtype=np.float64,
    )


def singular_coefficients(t, left_vectors, singular_values=None) -> np.ndarray:
    """Coefficients of the target(s) in a left-singular basis (paper Fig. 3).

    ``c = U^T t / |t|``: the target is normalized first, so for a full orthonormal basis
    (``U`` of shape [k, k]) the squares of the coefficients sum to 1. ``c[0]`` belongs to
    the smallest singular value: the columns of ``U`` must be sorted by ascending singular
    value (as :class:`lucid_ifv.critical_space.SampleSpectrum` stores them), or pass
    ``singular_values`` and they are sorted here. Square the result for the paper's bars.

    Parameters
    ----------
    t : array [k] or batch [n, k].
    left_vectors : array [k, m] (orthonormal columns), or [n, k, m] for a batch.
    singular_values : optional array [m] or [n, m] matching the columns.

    Returns
    -------
    array [m] or [n, m] float64.
    """
    t = check_finite(np.asarray(t, dtype=np.float64), "t")
    u = check_finite(np.asarray(left_vectors, dtype=np.float64), "left_vectors")
    if t.ndim not in (1, 2):
        raise ValueError(f"t has shape {t.shape}; expected [k] or [n, k]")
    if u.ndim != t.ndim + 1 or u.shape[:-2] != t.shape[:-1] or u.shape[-2] != t.shape[-1]:
        want = "[k, m]" if t.ndim == 1 else f"[{t.shape[0]}, k, m]"
        raise ValueError(
            f"left_vectors has shape {u.shape} for t of shape {t.shape}; expected {want} with k = {t.shape[-1]}"
        )
    col_norms = np.linalg.norm(u, axis=-2)
    if col_norms.size and np.max(np.abs(col_norms - 1.0)) > 1e-6:
        raise ValueError(
            f"left_vectors columns must have unit norm; found a norm of {col_norms.flat[np.argmax(np.abs(col_norms - 1))]:.6g}"
        )
    if singular_values is not None:
        sv = check_finite(np.asarray(singular_values, dtype=np.float64), "singular_values")
        if sv.shape != u.shape[:-2] + u.shape[-1:]:
            raise ValueError(
                f"singular_values has shape {sv.shape}; expected {u.shape[:-2] + u.shape[-1:]} (one per column)"
            )
        order = np.argsort(sv, axis=-1, kind="stable")
        u = np.take_along_axis(u, order[..., None, :], axis=-1)
    tn = _unit_rows(t, "t")
    return np.einsum("...km,...k->...m", u, tn)


def summary(values) -> dict:
    """Distribution summary: n, median, q1, q3 (25 / 75 % linear percentiles), mean, min, max.

    ``values`` is flattened; NaN or infinite values raise a ValueError (drop undefined
    entries explicitly before summarizing), as does an empty input.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("summary of an empty set of values; expected at least one value")
    v = check_finite(v, "values")
    q1, med, q3 = np.percentile(v, [25.0, 50.0, 75.0])
    return {
        "n": int(v.size),
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
        "mean": float(v.mean()),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def _check_basis(basis, k: int | None = None, what: str = "basis") -> np.ndarray:
    return check_orthonormal(basis, what, k)


def _project(v: np.ndarray, basis: np.ndarray):
    proj = (v @ basis) @ basis.T
    rel = np.linalg.norm(proj, axis=-1) / np.linalg.norm(v, axis=-1)
    return proj, rel


def project_and_normalize(v, basis, atol: float = 1e-10) -> np.ndarray:
    """Orthogonal projection onto span(basis), renormalized to unit length.

    Parameters
    ----------
    v : array [k] or [n, k], no zero vector.
    basis : array [k, d] with orthonormal columns (e.g. a critical-space basis).
    atol : a projection whose length is below ``atol * |v|`` counts as zero.

    Returns
    -------
    array, same shape as ``v``.

    Raises
    ------
    ValueError if a vector lies (numerically) in the orthogonal complement of the span,
    i.e. has no direction left after projecting.
    """
    v = check_finite(np.asarray(v, dtype=np.float64), "v")
    if v.ndim not in (1, 2):
        raise ValueError(f"v has shape {v.shape}; expected [k] or [n, k]")
    b = _check_basis(basis, v.shape[-1])
    _unit_rows(v, "v")
    proj, rel = _project(v, b)
    if np.any(rel <= atol):
        rows = np.flatnonzero(np.atleast_1d(rel <= atol)).tolist()
        raise ValueError(
            f"v{'' if v.ndim == 1 else f' row(s) {rows[:10]}'} is orthogonal to span(basis) "
            f"(relative projected length <= {atol}); its projection has no direction"
        )
    return proj / np.linalg.norm(proj, axis=-1, keepdims=True)


def angle_in_subspace(a, b, basis, atol: float = 1e-10):
    """Angle in degrees between ``a`` and ``b`` after projecting both onto span(basis).

    The paper compares predictions and targets modulo the trivial space, i.e. after
    projecting onto the critical space (Sec. 2.2, 3.5). Where a projection vanishes
    (relative length <= ``atol``; e.g. a canonical target of a dead feature), the angle is
    undefined and NaN is returned for that row, so one such target does not abort an
    evaluation; drop NaNs explicitly before :func:`summary`.

    Parameters
    ----------
    a, b : arrays [k] or [n, k] of equal shape, finite, no zero vectors.
    basis : array [k, d] with orthonormal columns.

    Returns
    -------
    float for vectors, array [n] for matrices (NaN where undefined).
    """
    a, b = _pair(a, b)
    _unit_rows(a, "a")
    _unit_rows(b, "b")
    basis = _check_basis(basis, a.shape[-1])
    pa, ra = _project(a, basis)
    pb, rb = _project(b, basis)
    undefined = np.atleast_1d((ra <= atol) | (rb <= atol))
    pa2, pb2 = np.atleast_2d(pa).copy(), np.atleast_2d(pb).copy()
    pa2[undefined] = 1.0  # placeholders, replaced by NaN below
    pb2[undefined] = 1.0
    ang = angle_deg(pa2, pb2)
    ang[undefined] = np.nan
    return float(ang[0]) if a.ndim == 1 else ang
