"""Critical space estimation (paper Sec. 2.2, Algorithm 1) and its selection (Sec. 3.5).

Trivial solutions of the inversion are directions ``t`` with ``t^T A_i J_i ~ 0`` for every
realization ``i`` (dead features, linear dependencies such as the softmax shift
invariance). From ``N`` sampled realizations with matrices ``M_i = A_i J_i`` (shape
``[k, D_i]``) Algorithm 1 estimates their span, the *trivial space* ``T``; the *critical
space* is its orthogonal complement ``S = T^perp`` and the inversion is restricted to it.

1. Per sample: the left-singular vectors of ``M_i`` with singular values below
   ``eps * sigma_max(M_i)`` span ``U_i`` (:func:`trivial_subspace`).
2. Merge pairwise until one subspace is left (:func:`merge_subspaces`): principal vectors
   of ``(U_a, U_b)``, drop pairs at an angle ``>= max_angle_deg``, SLERP each remaining
   pair with parameter ``w_b / (w_a + w_b)`` (``w`` = number of samples merged into each
   side). Order: adjacent pairs level by level, ``(0,1), (2,3), ...``; with an odd count the
   last subspace is carried up unchanged (:func:`estimate_trivial_space`).
3. ``S`` = orthonormal complement of the result (:func:`critical_basis`).
4. Bisection over ``eps`` finds every trivial-space dimension the data supports
   (:func:`enumerate_trivial_spaces`); the candidate whose critical space best recovers
   known targets wins (:func:`select_critical_space`).

Conventions: a basis is a ``[k, r]`` float64 array with orthonormal columns (``r`` may be
0); singular values are stored in *ascending* order, like the inversion uses them (the
answer is the vector of the smallest one).

Defaults that are ours (the paper's numbers were lost or never given) and configurable:
``max_angle_deg = 30`` and the eps search range ``[1e-6, 0.5]`` with relative tolerance
``1e-3``. See ``docs/critical_space.md``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.linalg

from .metrics import angle_in_subspace
from .validation import check_finite, check_orthonormal

__all__ = [
    "DEFAULT_MAX_ANGLE_DEG",
    "SampleSpectrum",
    "TrivialSpace",
    "spectrum",
    "trivial_subspace",
    "principal_vectors",
    "merge_subspaces",
    "estimate_trivial_space",
    "critical_basis",
    "enumerate_trivial_spaces",
    "select_critical_space",
]

#: Principal-angle cutoff for merging (ours: the paper's value is missing from its text).
DEFAULT_MAX_ANGLE_DEG = 30.0


@dataclass(frozen=True, eq=False)
class SampleSpectrum:
    """Left-singular vectors and singular values of one ``M_i = A_i J_i``.

    Attributes
    ----------
    singular_values : array [k], ascending, non-negative. When ``M`` has fewer columns
        than rows (``D < k``) the missing ones are stored as zeros.
    left_vectors : array [k, k]; column ``j`` is the left-singular vector of
        ``singular_values[j]`` (orthonormal columns; only the column norms are checked).
    """

    singular_values: np.ndarray
    left_vectors: np.ndarray

    def __post_init__(self):
        s = check_finite(np.asarray(self.singular_values, dtype=np.float64), "singular_values")
        u = check_finite(np.asarray(self.left_vectors, dtype=np.float64), "left_vectors")
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"singular_values has shape {s.shape}; expected [k] with k >= 1")
        k = s.size
        if u.shape != (k, k):
            raise ValueError(f"left_vectors has shape {u.shape}; expected [{k}, {k}] to match {k} singular values")
        if s.min() < 0:
            raise ValueError(f"singular_values must be non-negative, got {s.min()}")
        if np.any(np.diff(s) < 0):
            raise ValueError("singular_values must be sorted in ascending order (smallest first)")
        norms = np.linalg.norm(u, axis=0)
        if np.max(np.abs(norms - 1.0)) > 1e-6:
            raise ValueError(
                f"left_vectors columns must be unit vectors; found a norm of {norms[np.argmax(np.abs(norms - 1))]:.6g}"
            )
        object.__setattr__(self, "singular_values", s)
        object.__setattr__(self, "left_vectors", u)

    @property
    def k(self) -> int:
        return self.singular_values.size


@dataclass(frozen=True, eq=False)
class TrivialSpace:
    """Result of Algorithm 1 for one ``eps``.

    Attributes
    ----------
    basis : array [k, r], orthonormal columns spanning the estimated trivial space.
    eps : the relative singular-value threshold used.
    sample_count : number of samples merged.
    eps_range : for results of :func:`enumerate_trivial_spaces`, the smallest and largest
        evaluated eps that gave this dimension (a lower bound on the true plateau); None
        otherwise.
    """

    basis: np.ndarray
    eps: float
    sample_count: int
    eps_range: tuple[float, float] | None = field(default=None)

    @property
    def dim(self) -> int:
        """Dimension r of the trivial space."""
        return int(self.basis.shape[1])

    @property
    def k(self) -> int:
        return int(self.basis.shape[0])

    def critical_basis(self) -> np.ndarray:
        """Orthonormal basis [k, k - r] of the critical space (see :func:`critical_basis`)."""
        return critical_basis(self.basis, self.k)


def spectrum(M) -> SampleSpectrum:
    """Singular values (ascending) and all k left-singular vectors of ``M`` [k, D].

    For ``D > k`` the thin factor ``R`` of ``M^T = Q R`` is decomposed instead (same left
    vectors and singular values, memory O(k^2) beyond the input; no squaring as in
    ``M M^T``, so small singular values keep their accuracy). For ``D < k`` the ``k - D``
    missing singular values are zeros.
    """
    M = check_finite(np.asarray(M, dtype=np.float64), "M")
    if M.ndim != 2 or M.shape[0] == 0 or M.shape[1] == 0:
        raise ValueError(f"M has shape {M.shape}; expected [k, D] with k, D >= 1")
    k, d = M.shape
    if d > k:
        r = np.linalg.qr(M.T, mode="r")  # [k, k]
        u, s, _ = scipy.linalg.svd(r.T, lapack_driver="gesdd")
    else:
        u, s, _ = scipy.linalg.svd(M, full_matrices=True, lapack_driver="gesdd")
        s = np.concatenate([s, np.zeros(k - s.size)])
    return SampleSpectrum(s[::-1].copy(), u[:, ::-1].copy())


def _as_spectrum(spec, i: int | None = None) -> SampleSpectrum:
    if isinstance(spec, SampleSpectrum):
        return spec
    try:
        return spectrum(spec)
    except ValueError as err:
        where = "" if i is None else f"spectra[{i}]: "
        raise ValueError(f"{where}expected a SampleSpectrum or a matrix [k, D]; {err}") from None


def _as_spectra(spectra) -> list[SampleSpectrum]:
    specs = [_as_spectrum(s, i) for i, s in enumerate(spectra)]
    if not specs:
        raise ValueError("no spectra given; Algorithm 1 needs at least one sample")
    k = specs[0].k
    for i, s in enumerate(specs):
        if s.k != k:
            raise ValueError(f"spectra[{i}] has k = {s.k} features; expected k = {k} like spectra[0]")
    return specs


def _check_eps(eps, what: str = "eps") -> float:
    if not isinstance(eps, numbers.Real) or not np.isfinite(eps) or eps < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _check_angle(max_angle_deg) -> float:
    if not isinstance(max_angle_deg, numbers.Real) or not (0 < max_angle_deg <= 90):
        raise ValueError(f"max_angle_deg must lie in (0, 90] degrees, got {max_angle_deg!r}")
    return float(max_angle_deg)


def trivial_subspace(spec, eps: float) -> np.ndarray:
    """Left-singular vectors of one sample whose singular values are ``< eps * sigma_max``.

    The threshold is relative to the sample's largest singular value, so it does not
    depend on the scale of the features. If ``sigma_max == 0`` (``M = 0``: every direction
    is annihilated) the whole space is returned, which is neutral in the merge.

    Parameters
    ----------
    spec : SampleSpectrum, or a matrix [k, D] (decomposed with :func:`spectrum`).
    eps : float >= 0 (``eps > 1`` selects every direction).

    Returns
    -------
    array [k, r] with orthonormal columns, ordered by ascending singular value.
    """
    spec = _as_spectrum(spec)
    eps = _check_eps(eps)
    s = spec.singular_values
    smax = s[-1]
    if smax == 0:
        return spec.left_vectors.copy()
    r = int(np.count_nonzero(s < eps * smax))
    return spec.left_vectors[:, :r].copy()


def principal_vectors(Ua, Ub):
    """Principal angles and vectors of two subspaces (Knyazev & Argentati 2002, Alg. 3.1).

    Angles above 45 degrees come from the SVD of ``Ua^T Ub`` (cosines); angles up to 45
    degrees, where cosines lose accuracy, from the SVD of the part of the
    smaller-dimensional basis orthogonal to the other one (sines).

    Parameters
    ----------
    Ua : array [k, ra], Ub : array [k, rb], orthonormal columns.

    Returns
    -------
    angles_deg : array [m], ascending, m = min(ra, rb).
    Pa : array [k, m], principal vectors in span(Ua).
    Pb : array [k, m], principal vectors in span(Ub), with ``<Pa[:, i], Pb[:, i]> =
        cos(angles[i]) >= 0`` and ``Pa^T Pb`` diagonal.
    """
    qa = check_orthonormal(Ua, "Ua")
    qb = check_orthonormal(Ub, "Ub", qa.shape[0])
    k = qa.shape[0]
    m = min(qa.shape[1], qb.shape[1])
    if m == 0:
        return np.zeros(0), np.zeros((k, 0)), np.zeros((k, 0))
    swap = qa.shape[1] < qb.shape[1]
    f, g = (qb, qa) if swap else (qa, qb)  # g has the smaller dimension q = m
    c = f.T @ g  # [p, q]
    y, cos, zt = scipy.linalg.svd(c, full_matrices=False)
    cos = np.clip(cos, 0.0, 1.0)  # descending -> angles ascending
    f_cos, g_cos = f @ y, g @ zt.T
    resid = g - f @ c  # part of span(g) orthogonal to span(f)
    _, sin, zst = scipy.linalg.svd(resid, full_matrices=False)
    sin = np.clip(sin[::-1], 0.0, 1.0)  # ascending -> angles ascending
    g_sin = g @ zst[::-1].T
    f_sin = f @ (f.T @ g_sin)
    f_sin /= np.maximum(np.linalg.norm(f_sin, axis=0), 1e-300)
    small = cos * cos >= 0.5
    angles = np.where(small, np.arcsin(sin), np.arccos(cos))
    fv = np.where(small[None, :], f_sin, f_cos)
    gv = np.where(small[None, :], g_sin, g_cos)
    pa, pb = (gv, fv) if swap else (fv, gv)
    return np.degrees(angles), pa, pb


def _orthonormalize(w: np.ndarray) -> np.ndarray:
    """Nearest matrix with orthonormal columns (polar factor); keeps the columns' span."""
    if w.shape[1] == 0:
        return w
    p, _, qt = scipy.linalg.svd(w, full_matrices=False)
    return p @ qt


def merge_subspaces(Ua, Ub, weight_a: float = 1.0, weight_b: float = 1.0,
                    max_angle_deg: float = DEFAULT_MAX_ANGLE_DEG) -> np.ndarray:
    """Approximate intersection of two subspaces (one merge step of Algorithm 1).

    Principal vector pairs ``(a_i, b_i)`` at an angle ``theta_i < max_angle_deg`` are kept
    and interpolated by SLERP with parameter ``tau = weight_b / (weight_a + weight_b)``
    (``tau = 0`` gives ``a_i``, ``1`` gives ``b_i``); pass the numbers of samples already
    merged into each side as weights. The interpolated vectors are orthonormal in exact
    arithmetic and are re-orthonormalized (polar factor) against rounding. An empty side
    gives an empty result.

    Parameters
    ----------
    Ua : array [k, ra], Ub : array [k, rb], orthonormal columns.
    weight_a, weight_b : positive finite numbers.
    max_angle_deg : cutoff in (0, 90]; default 30 (ours, see module docstring).

    Returns
    -------
    array [k, r'] with orthonormal columns, r' <= min(ra, rb), ordered by ascending
    principal angle.
    """
    for w, what in ((weight_a, "weight_a"), (weight_b, "weight_b")):
        if not isinstance(w, numbers.Real) or not np.isfinite(w) or w <= 0:
            raise ValueError(f"{what} must be a positive finite number, got {w!r}")
    max_angle = _check_angle(max_angle_deg)
    angles_deg, pa, pb = principal_vectors(Ua, Ub)
    keep = angles_deg < max_angle
    theta = np.radians(angles_deg[keep])
    a, b = pa[:, keep], pb[:, keep]
    if theta.size == 0:
        return np.zeros((pa.shape[0], 0))
    tau = float(weight_b) / (float(weight_a) + float(weight_b))
    tiny = theta < 1e-8
    sin_t = np.where(tiny, 1.0, np.sin(theta))
    ca = np.where(tiny, 1.0 - tau, np.sin((1.0 - tau) * theta) / sin_t)
    cb = np.where(tiny, tau, np.sin(tau * theta) / sin_t)
    w = a * ca + b * cb
    w /= np.linalg.norm(w, axis=0)
    return _orthonormalize(w)


def _estimate(specs: list[SampleSpectrum], eps: float, max_angle: float) -> TrivialSpace:
    k = specs[0].k
    level = [(trivial_subspace(s, eps), 1) for s in specs]
    if any(u.shape[1] == 0 for u, _ in level):  # an empty side empties every merge above it
        return TrivialSpace(np.zeros((k, 0)), eps, len(specs))
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            (ua, wa), (ub, wb) = level[i], level[i + 1]
            merged = merge_subspaces(ua, ub, wa, wb, max_angle)
            if merged.shape[1] == 0:
                return TrivialSpace(merged, eps, len(specs))
            nxt.append((merged, wa + wb))
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return TrivialSpace(level[0][0], eps, len(specs))


def estimate_trivial_space(spectra: Sequence, eps: float,
                           max_angle_deg: float = DEFAULT_MAX_ANGLE_DEG) -> TrivialSpace:
    """Algorithm 1: estimate the trivial space shared by all samples.

    Merge order (deterministic): level by level, adjacent pairs ``(0, 1), (2, 3), ...``
    of the current list are merged, with weights = samples merged into each side; with an
    odd count the last subspace moves up unchanged. The result depends on the order
    (paper Sec. 2.2); shuffle ``spectra`` yourself to study that.

    Parameters
    ----------
    spectra : sequence of N >= 1 SampleSpectrum or matrices [k, D_i] (same k).
    eps : relative singular-value threshold (see :func:`trivial_subspace`).
    max_angle_deg : principal-angle cutoff (see :func:`merge_subspaces`).

    Returns
    -------
    TrivialSpace with ``basis`` [k, r].
    """
    return _estimate(_as_spectra(spectra), _check_eps(eps), _check_angle(max_angle_deg))


def critical_basis(trivial_basis, k: int | None = None) -> np.ndarray:
    """Orthonormal basis of the critical space: the complement of the trivial space.

    Parameters
    ----------
    trivial_basis : array [k, r] with orthonormal columns, a TrivialSpace, or None (no
        trivial space; then ``k`` is required).
    k : number of features; checked against ``trivial_basis`` when both are given.

    Returns
    -------
    array [k, k - r]; the identity when r = 0 (plain IFV).

    Raises
    ------
    ValueError when r == k: the critical space would be empty.
    """
    if isinstance(trivial_basis, TrivialSpace):
        trivial_basis = trivial_basis.basis
    if k is not None and (not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1):
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if trivial_basis is None:
        if k is None:
            raise ValueError("critical_basis needs k when trivial_basis is None")
        return np.eye(int(k))
    t = check_orthonormal(trivial_basis, "trivial_basis", None if k is None else int(k))
    k, r = t.shape
    if r == 0:
        return np.eye(k)
    if r == k:
        raise ValueError(
            f"the critical space would be empty: the trivial space spans all k = {k} dimensions "
            f"(use a smaller eps or a smaller max_angle_deg)"
        )
    u, _, _ = scipy.linalg.svd(t, full_matrices=True)
    return u[:, r:].copy()


def enumerate_trivial_spaces(spectra: Sequence, eps_lo: float = 1e-6, eps_hi: float = 0.5,
                             max_angle_deg: float = DEFAULT_MAX_ANGLE_DEG,
                             tol: float = 1e-3) -> list[TrivialSpace]:
    """Every distinct trivial-space dimension in ``[eps_lo, eps_hi]`` ("nested intervals").

    Algorithm 1 runs at both ends; an interval whose ends give different dimensions is
    split at its geometric mean (eps spans orders of magnitude) until the ends agree or
    ``hi / lo - 1 <= tol``. This assumes the dimension is monotone in eps, as it is per
    sample (a dimension that appears and disappears between two equal ends is missed).
    For each dimension found, Algorithm 1 is rerun at the geometric middle of the eps
    range where it was observed (the point furthest from both jumps); if that gives a
    different dimension, the evaluated point nearest to the middle is used.

    Parameters
    ----------
    spectra : as in :func:`estimate_trivial_space`.
    eps_lo, eps_hi : 0 < eps_lo < eps_hi; defaults 1e-6 and 0.5 (ours).
    max_angle_deg : principal-angle cutoff.
    tol : relative interval size at which bisection stops; default 1e-3.

    Returns
    -------
    list of TrivialSpace, one per dimension, sorted by dimension, each with ``eps_range``.
    Candidates with r == k (empty critical space) are included; selection skips them.
    """
    specs = _as_spectra(spectra)
    max_angle = _check_angle(max_angle_deg)
    lo, hi = _check_eps(eps_lo, "eps_lo"), _check_eps(eps_hi, "eps_hi")
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < eps_lo < eps_hi (bisection is on a log scale), got eps_lo={lo}, eps_hi={hi}")
    if not isinstance(tol, numbers.Real) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")

    cache: dict[float, TrivialSpace] = {}

    def run(eps: float) -> TrivialSpace:
        if eps not in cache:
            cache[eps] = _estimate(specs, eps, max_angle)
        return cache[eps]

    stack = [(lo, hi)]
    while stack:  # explicit stack: depth-first bisection of every jump
        a, b = stack.pop()
        if run(a).dim == run(b).dim or b / a - 1.0 <= tol:
            continue
        mid = float(np.sqrt(a * b))
        stack.extend([(mid, b), (a, mid)])

    by_dim: dict[int, list[float]] = {}
    for eps, res in cache.items():
        by_dim.setdefault(res.dim, []).append(eps)
    out = []
    for dim in sorted(by_dim):
        epss = sorted(by_dim[dim])
        e_lo, e_hi = epss[0], epss[-1]
        mid = float(np.sqrt(e_lo * e_hi))
        rep = run(mid)
        if rep.dim != dim:
            nearest = min(epss, key=lambda e: abs(np.log(e) - np.log(mid)))
            rep = cache[nearest]
        out.append(TrivialSpace(rep.basis, rep.eps, rep.sample_count, (e_lo, e_hi)))
    return out


def _reducer(reduce) -> Callable[[np.ndarray], float]:
    if callable(reduce):
        return lambda v: float(reduce(v))
    table = {"median": np.median, "mean": np.mean}
    if reduce not in table:
        raise ValueError(f"reduce must be 'median', 'mean' or a callable, got {reduce!r}")
    fn = table[reduce]
    return lambda v: float(fn(v))


def select_critical_space(candidates: Sequence, predict: Callable[[np.ndarray], np.ndarray],
                          targets, reduce="median"):
    """Pick the candidate whose critical space best recovers known targets (Sec. 3.5).

    For each candidate trivial space, ``B = critical_basis(candidate)`` and
    ``predict(B)`` must return the inversion's predictions [n, k] for the n realizations of
    ``targets`` solved within span(B). The score is ``reduce`` (default median) of the
    angles between predictions and targets after projecting both onto span(B)
    (:func:`lucid_ifv.metrics.angle_in_subspace`); lower is better, ties go to the earlier
    candidate (for :func:`enumerate_trivial_spaces` output: the larger critical space).
    Targets whose projection vanishes (they lie in the trivial space) are left out of that
    candidate's score. Candidates with an empty critical space (r == k), or with no
    defined angle, score ``inf``.

    Caveat: the score compares within the candidate's own critical space, so very small
    critical spaces score well by construction (in one dimension every angle is 0 or 180
    degrees). Leave out candidates whose critical space is too small to be meaningful.

    Parameters
    ----------
    candidates : sequence of TrivialSpace or trivial bases [k, r].
    predict : callable, critical basis [k, d] -> predictions [n, k].
    targets : array [n, k], the known targets.
    reduce : 'median', 'mean' or a callable on the finite angles.

    Returns
    -------
    best_index : int.
    scores : array [len(candidates)] float64 (degrees).
    """
    targets = check_finite(np.asarray(targets, dtype=np.float64), "targets")
    if targets.ndim != 2 or targets.shape[0] == 0:
        raise ValueError(f"targets has shape {targets.shape}; expected [n, k] with n >= 1")
    n, k = targets.shape
    if not callable(predict):
        raise ValueError(f"predict must be a callable basis -> predictions [n, k], got {predict!r}")
    red = _reducer(reduce)
    candidates = list(candidates)
    if not candidates:
        raise ValueError("no candidates given; expected at least one trivial space")
    scores = np.full(len(candidates), np.inf)
    for i, cand in enumerate(candidates):
        basis = cand.basis if isinstance(cand, TrivialSpace) else cand
        basis = check_orthonormal(basis, f"candidates[{i}]")
        if basis.shape[0] != k:
            raise ValueError(f"candidates[{i}] has k = {basis.shape[0]} rows; expected k = {k} like the targets")
        if basis.shape[1] == k:
            continue  # empty critical space: cannot be used
        crit = critical_basis(basis, k)
        preds = np.asarray(predict(crit), dtype=np.float64)
        if preds.shape != (n, k):
            raise ValueError(f"predict returned shape {preds.shape} for candidates[{i}]; expected [{n}, {k}]")
        check_finite(preds, f"predictions for candidates[{i}]")
        if np.any(np.linalg.norm(preds, axis=1) == 0):
            raise ValueError(f"predict returned a zero vector for candidates[{i}]; expected unit predictions")
        ang = angle_in_subspace(preds, targets, crit)
        ang = ang[np.isfinite(ang)]
        if ang.size:
            scores[i] = red(ang)
    if not np.isfinite(scores).any():
        raise ValueError("no usable candidate: every critical space was empty or left no defined angle")
    return int(np.argmin(scores)), scores
