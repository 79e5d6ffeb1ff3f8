"""Target objectives to realize: Hoyer-sparse, canonical and random unit vectors.

The paper (Sec. 3) samples non-negative targets whose Hoyer sparseness

    s(x) = (sqrt(k) - |x|_1 / |x|_2) / (sqrt(k) - 1)

is uniform in [0, 1], and adds the k canonical vectors (sparseness 1). A vector with a
given sparseness is obtained with Hoyer's (2004) projection operator: the closest
non-negative vector (in the Euclidean sense) with prescribed L1 and L2 norms. Here the L2
norm is always 1 and the L1 norm follows from the sparseness,
``L1 = sqrt(k) - s (sqrt(k) - 1)``.

Every random function takes an int seed or a ``np.random.Generator`` (see :func:`as_rng`),
so results are reproducible.

Reference: P. O. Hoyer, "Non-negative matrix factorization with sparseness constraints",
JMLR 5 (2004), 1457-1469, Sec. 3.2 (projection operator).
"""

from __future__ import annotations

import numbers

import numpy as np

from .validation import check_feature_indices, check_finite

__all__ = [
    "as_rng",
    "hoyer_sparseness",
    "hoyer_project",
    "sample_hoyer_targets",
    "canonical_targets",
    "random_unit_vectors",
]


def as_rng(seed_or_rng) -> np.random.Generator:
    """Return a ``np.random.Generator`` for an int seed or pass a Generator through.

    ``None`` is rejected on purpose: every random result in lucid-ifv must be reproducible.
    """
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    if isinstance(seed_or_rng, numbers.Integral) and not isinstance(seed_or_rng, (bool, np.bool_)):
        if int(seed_or_rng) < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed_or_rng}")
        return np.random.default_rng(int(seed_or_rng))
    raise ValueError(
        f"seed_or_rng must be an int seed or a np.random.Generator, got {seed_or_rng!r} "
        f"({type(seed_or_rng).__name__})"
    )


def _check_k(k, what: str = "k", minimum: int = 1) -> int:
    if not isinstance(k, numbers.Integral) or isinstance(k, (bool, np.bool_)) or int(k) < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {k!r}")
    return int(k)


def _check_n(n) -> int:
    if not isinstance(n, numbers.Integral) or isinstance(n, (bool, np.bool_)) or int(n) < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return int(n)


def _check_sparseness(sparseness, n: int | None = None) -> np.ndarray:
    s = check_finite(np.asarray(sparseness, dtype=np.float64), "sparseness values")
    if n is not None:
        if s.ndim == 0:
            s = np.full(n, float(s))
        elif s.shape != (n,):
            raise ValueError(f"sparseness has shape {s.shape}; expected a scalar or [{n}]")
    if s.size and (s.min() < 0.0 or s.max() > 1.0):
        bad = s[(s < 0.0) | (s > 1.0)].ravel()[0]
        raise ValueError(f"sparseness must lie in [0, 1], got {bad}")
    return s


def _check_vectors(x, what: str):
    """``x`` as float64 ``[k]`` or ``[n, k]`` with k >= 2 and finite entries; returns (x, k)."""
    x = check_finite(np.asarray(x, dtype=np.float64), "x")
    if x.ndim not in (1, 2):
        raise ValueError(f"x has shape {x.shape}; expected [k] or [n, k]")
    k = x.shape[-1]
    if k < 2:
        raise ValueError(f"{what} needs k >= 2 entries per vector, got k = {k}")
    return x, k


def hoyer_sparseness(x):
    """Hoyer sparseness of a vector, or of each row of a matrix.

    ``s(x) = (sqrt(k) - |x|_1 / |x|_2) / (sqrt(k) - 1)``: 0 for a vector with all entries of
    equal magnitude, 1 for a vector with a single non-zero entry. Signs are ignored.

    Parameters
    ----------
    x : array [k] or [n, k], k >= 2, no all-zero row.

    Returns
    -------
    float for a vector, array [n] for a matrix.
    """
    x, k = _check_vectors(x, "Hoyer sparseness")
    l2 = np.linalg.norm(x, axis=-1)
    if np.any(l2 == 0):
        rows = np.flatnonzero(np.atleast_1d(l2 == 0))
        raise ValueError(f"Hoyer sparseness is undefined for a zero vector (row(s) {rows.tolist()})")
    l1 = np.abs(x).sum(axis=-1)
    sk = np.sqrt(k)
    s = (sk - l1 / l2) / (sk - 1.0)
    s = np.clip(s, 0.0, 1.0)  # |x|_1/|x|_2 lies in [1, sqrt(k)] up to rounding
    return float(s) if x.ndim == 1 else s


def _project_nonneg(x: np.ndarray, l1: float, l2: float) -> np.ndarray:
    """Hoyer's projection of one vector [k] onto {s >= 0, sum s = l1, |s|_2 = l2}.

    Requires l2 <= l1 <= sqrt(k) l2 (callers handle the two end points exactly).
    """
    k = x.size
    s = x + (l1 - x.sum()) / k
    # below this |s - m|^2 the differences are the rounding of the shift above (x constant)
    flat = k * (1e-12 * max(float(np.abs(x).max()), l1)) ** 2
    free = np.ones(k, dtype=bool)  # complement of Hoyer's zero set Z
    for _ in range(k + 1):  # Z grows by >= 1 per pass, so at most k passes
        d = int(free.sum())
        m = np.where(free, l1 / d, 0.0)
        diff = s - m  # zero outside `free`; sums to 0 over `free`
        a = float(diff @ diff)
        c = float(m @ m) - l2 * l2  # <= 0 while the support is large enough
        if a <= flat:
            # s sits on the centre m (e.g. x constant): any direction in the support,
            # orthogonal to the ones vector, is as close. Pick a deterministic one that
            # puts the extra mass on the first free entry.
            first = int(np.flatnonzero(free)[0])
            diff = np.where(free, -1.0 / d, 0.0)
            diff[first] += 1.0
            a = float(diff @ diff)
            if a == 0.0:  # d == 1: the only point is l1 * e_first
                return m
        # |m + alpha diff|^2 = l2^2 with <m, diff> = 0 (diff sums to 0 on the support)
        alpha = np.sqrt(max(-c, 0.0) / a)
        s = m + alpha * diff
        neg = s < 0
        if not neg.any():
            return s
        free &= ~neg
        s = np.where(free, s, 0.0)
        s = np.where(free, s - (s.sum() - l1) / free.sum(), 0.0)
    raise RuntimeError("Hoyer projection did not converge")  # unreachable in exact arithmetic


def hoyer_project(x, sparseness, nonneg: bool = True) -> np.ndarray:
    """Closest vector with unit L2 norm and the requested Hoyer sparseness (Hoyer 2004).

    Implements the projection operator of Hoyer (2004, Sec. 3.2): the Euclidean projection
    of ``x`` onto the set of vectors ``s`` with ``|s|_2 = 1`` and
    ``|s|_1 = sqrt(k) - sparseness (sqrt(k) - 1)``, and ``s >= 0`` when ``nonneg``. With
    ``nonneg=False`` the signs of ``x`` are recorded, ``|x|`` is projected and the signs
    are restored (Hoyer's recipe for the unconstrained case; a zero entry counts as +).

    The end points are handled exactly: sparseness 0 gives the all-equal vector
    ``1/sqrt(k)`` (signed like ``x`` when ``nonneg=False``); sparseness 1 gives the one-hot
    vector at ``argmax(x)`` (``argmax(|x|)`` with its sign when ``nonneg=False``; ties go
    to the lowest index). If ``x`` is (after centring) constant, the projection is not
    unique and the extra mass goes to the first entry of the support.

    Parameters
    ----------
    x : array [k] or [n, k], k >= 2; finite.
    sparseness : float in [0, 1], or array [n] for a matrix input.
    nonneg : bool, default True.

    Returns
    -------
    array, same shape as ``x``, float64, each row of unit L2 norm and the requested
    sparseness (to rounding).
    """
    x, k = _check_vectors(x, "Hoyer projection")
    rows = x.reshape(-1, k)
    n = rows.shape[0]
    if x.ndim == 1:
        s_req = _check_sparseness(sparseness)
        if s_req.ndim != 0:
            raise ValueError(f"sparseness has shape {s_req.shape}; expected a scalar for a vector x")
        s_req = s_req.reshape(1)
    else:
        s_req = _check_sparseness(sparseness, n)

    sk = np.sqrt(k)
    out = np.empty_like(rows)
    for i in range(n):  # loop over samples; the projection itself is vectorized
        row = rows[i]
        signs = np.where(row < 0, -1.0, 1.0)
        work = row if nonneg else np.abs(row)
        si = float(s_req[i])
        if si == 0.0:
            res = np.full(k, 1.0 / sk)
        elif si == 1.0:
            res = np.zeros(k)
            res[int(np.argmax(work))] = 1.0
        else:
            l1 = sk - si * (sk - 1.0)
            res = _project_nonneg(work, l1, 1.0)
            res /= np.linalg.norm(res)  # removes rounding in the norm; L1 changes by ~1 ulp
        out[i] = res if nonneg else res * signs
    achieved = hoyer_sparseness(out)
    worst = int(np.argmax(np.abs(achieved - s_req)))
    if abs(achieved[worst] - s_req[worst]) > 1e-6:  # guard: never hand back a wrong target
        raise RuntimeError(
            f"Hoyer projection of row {worst} reached sparseness {achieved[worst]:.9f}; "
            f"expected {s_req[worst]:.9f}"
        )
    return out.reshape(x.shape)


def sample_hoyer_targets(k: int, n: int, seed_or_rng, sparseness=None):
    """Random non-negative unit targets with (by default) uniformly distributed sparseness.

    Each target is the Hoyer projection (:func:`hoyer_project`) of a starting point drawn
    uniformly from [0, 1]^k, with sparseness drawn uniformly from [0, 1] unless given.

    Parameters
    ----------
    k : int >= 2, number of features.
    n : int >= 0, number of targets.
    seed_or_rng : int seed or np.random.Generator.
    sparseness : None, a float in [0, 1], or array [n] of them.

    Returns
    -------
    targets : array [n, k] float64, non-negative rows of unit L2 norm.
    sparseness : array [n] float64, the requested (and achieved) sparseness per row.
    """
    k = _check_k(k, minimum=2)
    n = _check_n(n)
    rng = as_rng(seed_or_rng)
    if sparseness is None:
        s = rng.uniform(0.0, 1.0, size=n)
    else:
        s = _check_sparseness(sparseness, n)
    starts = rng.uniform(0.0, 1.0, size=(n, k))
    if n == 0:
        return np.zeros((0, k)), s
    return hoyer_project(starts, s, nonneg=True), s


def canonical_targets(k: int, features=None) -> np.ndarray:
    """One-hot targets: rows of the k x k identity, or only those of ``features``.

    Parameters
    ----------
    k : int >= 1, number of features.
    features : None or sequence of ints in [0, k) (negative indices are rejected).

    Returns
    -------
    array [m, k] float64 with m = k or len(features).
    """
    k = _check_k(k)
    if features is None:
        return np.eye(k)
    idx = check_feature_indices(features, k, allow_empty=True)
    out = np.zeros((idx.size, k))
    out[np.arange(idx.size), idx] = 1.0
    return out


def random_unit_vectors(k: int, n: int, seed_or_rng, nonneg: bool = False) -> np.ndarray:
    """Vectors uniformly distributed on the unit sphere in R^k (or its non-negative part).

    Normalized standard Gaussians; with ``nonneg`` the absolute values, which are uniform on
    the part of the sphere in the non-negative orthant.

    Returns
    -------
    array [n, k] float64.
    """
    k = _check_k(k)
    n = _check_n(n)
    rng = as_rng(seed_or_rng)
    v = rng.standard_normal((n, k))
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    while n and np.any(norms == 0):  # probability zero; keeps the result well defined
        bad = norms[:, 0] == 0
        v[bad] = rng.standard_normal((int(bad.sum()), k))
        norms = np.linalg.norm(v, axis=1, keepdims=True)
    if nonneg:
        v = np.abs(v)
    return v / norms if n else v
