"""The closed-form solves of Grad-IFV, from the small Gram statistics of the Jacobians.

For a realization with feature response ``f`` (``[k]``), Jacobian ``J`` (``[k, D]``) and prior
gradients ``g = [g_1 ... g_n]`` (``[D, n]``), an FV optimum of ``m(f, t) - sum_j lam_j R_j``
satisfies ``s J^T A t = sum_j lam_j g_j`` with ``A = (p+1) I - p f f^T / |f|^2`` and
``s = (<f, t> / |f|)^p`` (unit ``t``). With an orthonormal basis ``B`` (``[k, d]``) of the
critical space, ``t = B v / |v|``, this is the homogeneous linear equation
``H x = 0``, ``H = [J^T A B | -g]`` (``[D, d + n]``), ``x = (v; mu)``, and then
``lam_j = mu_j s / |v|`` (from ``v = s t / lam_1`` when ``mu_1 = 1``). Methods (``method=``):

- ``"paper"``: ``J^T A B v = 0`` (the prior is ignored): ``v`` is the eigenvector of the
  smallest eigenvalue of ``M = B^T A J J^T A B``; sign so that ``<f, t> > 0``.
- ``"prior_aware"``: the smallest right-singular vector ``(v; mu)`` of ``H``, ``sum mu > 0``.
- ``"anchored"``: ``mu_1 = 1``; ``min |J^T A B v - g_1 - sum_{j>1} mu_j g_j|`` over
  ``(v, mu_2 ...)`` (least squares). ``lam`` only scales ``v``, so the answer cannot
  collapse onto a trivial one (``v -> 0``).
- ``"nonneg"``: ``"anchored"`` with ``v >= 0`` (NNLS; for non-negative target families, in
  feature coordinates only), on the factor ``R`` of ``H`` below: ``|H x| = |R x|`` for every ``x``.
  For an odd ``p`` the objective is even in ``t`` (`metrics.sign_symmetric`): a render of a
  non-negative ``t`` may end with ``<f, t> < 0`` (on layers whose features can be negative,
  e.g. logits), so that ``v = s t / lam <= 0``. There both ``v >= 0`` and ``v <= 0`` are
  solved, and the better fit among those with ``<f, B v> > 0`` is kept (``lam > 0`` needs
  ``s`` to have the sign of ``<f, t>``; on non-negative responses only ``v >= 0`` qualifies):
  the answer ``B v / |v|`` is sign-definite (``t`` and ``-t`` are the same objective).

Everything needs only a small factor of ``[J^T | g]`` per sample (`GramStatistics`): the
triangular ``R`` ``[k + n, k + n]`` of its QR decomposition, in float64, from which
``H = [J^T | g] diag(A B, -I)`` has the factor ``R diag(A B, -I)`` (``[k + n, d + n]``, the same
least squares and singular values as ``H``). Statistics stored before ``R`` was kept have only
the Gram matrices ``J J^T``, ``J g``, ``g^T g``; solved from them, every small singular value is
squared, and the float64 mode's answers and residuals are resolved only to ~1e-7
(`diagnostics.Factor.of_gram`). Dead features and the diagnostics are `lucid_ifv.ifv.diagnostics`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import scipy.optimize

from lucid_ifv import metrics
from lucid_ifv.ifv import diagnostics as dg
from lucid_ifv.validation import check_finite

METHODS = ("paper", "prior_aware", "anchored", "nonneg")
PRIOR_METHODS = ("prior_aware", "anchored", "nonneg")
#: Methods that keep dead features in the equation as unknowns (reported as 0): with the first
#: prior weight anchored nothing can collapse onto them (the eigenvector solves would).
DEAD_UNKNOWN_METHODS = ("anchored", "nonneg")
DEFAULT_METHOD_WITH_PRIOR = "anchored"  # method=None / "auto" with a prior (without one: "paper")


def significance_matrix(f: np.ndarray, cossim_pow: float) -> np.ndarray:
    """``A(f) = (p+1) I - p f f^T / |f|^2`` for each row of ``f`` ``[B, k]`` -> ``[B, k, k]``."""
    f = np.asarray(f, np.float64)
    k = f.shape[-1]
    outer = np.einsum("bi,bj->bij", f, f) / np.sum(f * f, axis=-1)[:, None, None]
    return (cossim_pow + 1) * np.eye(k)[None] - cossim_pow * outer


# -- results -------------------------------------------------------------------------------
@dataclasses.dataclass
class SampleInversion:
    """The inversion of one realization (see `InversionResult` for the fields)."""

    target: np.ndarray
    response: np.ndarray
    singular_values: np.ndarray
    left_vectors: np.ndarray
    gap: float
    residual: float
    prior_weights: np.ndarray | None
    dead_features: np.ndarray
    null_dim: int | None = None
    dead_tol: float | None = None
    weight_warning: bool | None = None
    verdict: str = ""
    description: str = ""


def scale_by_gradient(target: np.ndarray, row_norms: np.ndarray) -> np.ndarray:
    """``[B, k]`` rows of ``target * row_norms`` (both ``[B, k]``) scaled to unit norm (NaN
    where a row is all zero or NaN): the answer in features of unit gradient."""
    scaled = target * row_norms
    with np.errstate(invalid="ignore", divide="ignore"):
        return scaled / np.linalg.norm(scaled, axis=1, keepdims=True)


@dataclasses.dataclass
class InversionResult:
    """Grad-IFV's answer for a batch of B realizations (k features, d critical dims, n prior terms).

    Attributes:
      target: predicted objectives ``t*`` ``[B, k]``, unit (``<f, t*> > 0`` for the paper's
        solve; NaN rows where nothing could be solved, see `verdicts`).
      response: feature responses ``f`` ``[B, k]``.
      singular_values: singular values of ``B^T A J`` ``[B, d]``, ascending (after the
        per-sample removal of dead features, their slots are NaN at the end).
      left_vectors: the matching left-singular vectors mapped to feature space
        ``[B, k, d]`` (column i belongs to singular value i).
      gap: ``(sigma_2 - sigma_1) / sigma_max`` of the equilibrated stationarity matrix
        ``[B]`` (`diagnostics`): near 0 means the answer is not determined.
      residual: relative stationarity residual ``[B]``: ``|J^T A t* - lam g| / |J^T A t*|``
        for the prior methods (scale-free; ``inf`` if ``J^T A t* = 0``), ``|J^T A t*| / |J^T A|_2``
        for the paper's solve; NaN where nothing was solved.
      prior_weights: estimated ``lam_j`` ``[B, n]`` (None for the paper's solve).
      dead_features: ``[B, k]`` bool, features left out of the solve (their target entry is
        0 and not identifiable: see ``dead_tol``).
      solve_method: the solve used (one of `METHODS`).
      null_dim: ``[B]`` near-null singular values of the equilibrated stationarity matrix
        (``<= NULL_RTOL`` of the largest; 1 when the answer is determined).
      stationarity_singular_values: ``[B, d + n]`` that matrix's singular values, ascending,
        NaN-padded (to recompute ``null_dim`` / verdicts with other thresholds).
      dead_tol: ``[B]`` the relative row-norm tolerance that decided ``dead_features``.
      weight_warning: ``[B]`` bool, an estimated prior weight is far below
        ``expected_prior_weight`` (default `VerdictRule`); all False without expectation.
      expected_prior_weight: ``[n]`` the caller's expectation of ``lam`` (or None).
      noise_mass: ``[B]`` share of ``|t*|^2`` on live features whose Jacobian row is below
        the noise level (the ``"auto"`` rule applied to the final solve): near 1 means the
        answer is a trivial one (only possible with a numeric ``dead_tol``, or marginally).
      unidentifiable: per sample ``[k, r_b]`` orthonormal: live target directions the
        realization cannot tell apart (`diagnostics.unidentifiable_directions`; ``r_b = 0``
        when the answer is determined, ``r_b = null_dim - 1`` typically). Adding any of them
        to ``t*`` fits the stationarity equation as well; compare modulo them with
        `angles_identifiable`.
      sensitivity: ``[B, k]`` per-feature error bar of ``t*`` (units of the unit target):
        how far the entry can move when the equation is off by as much as its own residual
        (`diagnostics.coefficient_sensitivity`); NaN on dead features and for the paper's
        solve. Entries above ``DETERMINED_TOL`` are not determined by the realization
        (`determined`, `angles_determined`).
      dither_spread: ``[B]`` degrees, for quantized images (`lucid_ifv.ifv.dither`): the
        median angle between the answer and the answers to re-dithered copies, an estimate
        of the error the rounding caused; None when not checked.
      denoised_residual: ``[B]`` the residual with the rounding's share removed (same module);
        None when not checked.
      row_norms: ``[B, k]`` the Jacobian row norms ``|d f_j / d params|`` at each realization
        (what the dead-feature rule reads); with them `gradient_scaled_target` gives the answer
        in features rescaled to unit gradient, which does not change when a feature is
        rescaled by a positive factor.
    """

    target: np.ndarray
    response: np.ndarray
    singular_values: np.ndarray
    left_vectors: np.ndarray
    gap: np.ndarray
    residual: np.ndarray
    prior_weights: np.ndarray | None
    dead_features: np.ndarray
    solve_method: str = "paper"
    null_dim: np.ndarray | None = None
    stationarity_singular_values: np.ndarray | None = None
    dead_tol: np.ndarray | None = None
    weight_warning: np.ndarray | None = None
    expected_prior_weight: np.ndarray | None = None
    noise_mass: np.ndarray | None = None
    unidentifiable: list | None = None
    sensitivity: np.ndarray | None = None
    dither_spread: np.ndarray | None = None
    denoised_residual: np.ndarray | None = None
    row_norms: np.ndarray | None = None

    def __len__(self):
        return self.target.shape[0]

    def angles_identifiable(self, targets, cossim_pow: float = 1) -> np.ndarray:
        """``[B]`` degrees between ``t*`` and known ``targets`` ``[B, k]`` on what each
        realization determines: dead features and the ``unidentifiable`` directions removed
        from both (modulo sign for odd ``cossim_pow``, as `metrics.objective_angle_deg`); NaN
        where no answer was solved or nothing of the target is left."""
        targets = np.asarray(targets, np.float64)
        angles = np.full(len(self), np.nan)
        for i, (predicted, target) in enumerate(zip(self.target, targets * ~self.dead_features)):
            directions = self.unidentifiable[i] if self.unidentifiable is not None else np.zeros((len(target), 0))
            a = predicted - directions @ (directions.T @ predicted)
            b = target - directions @ (directions.T @ target)
            if np.all(np.isfinite(a)) and np.linalg.norm(a) > 0 and np.linalg.norm(b) > 1e-10 * np.linalg.norm(target):
                angles[i] = metrics.objective_angle_deg(a, b, cossim_pow)
        return angles

    def determined(self, tol: float = dg.DETERMINED_TOL) -> np.ndarray:
        """``[B, k]`` bool: live features whose ``sensitivity`` is at most ``tol`` (all False
        without sensitivities, e.g. for the paper's solve)."""
        if self.sensitivity is None:
            return np.zeros(self.dead_features.shape, bool)
        return np.nan_to_num(self.sensitivity, nan=np.inf) <= tol

    def angles_determined(self, targets, cossim_pow: float = 1, tol: float = dg.DETERMINED_TOL) -> np.ndarray:
        """``[B]`` degrees between ``t*`` and known ``targets`` ``[B, k]`` on the `determined`
        features only (modulo sign for odd ``cossim_pow``); NaN where none is determined or
        the target has no mass on them."""
        targets = np.asarray(targets, np.float64)
        angles = np.full(len(self), np.nan)
        for i, keep in enumerate(self.determined(tol)):
            a, b = self.target[i][keep], targets[i][keep]
            if keep.any() and np.all(np.isfinite(a)) and np.linalg.norm(a) > 0 and np.linalg.norm(b) > 0:
                angles[i] = metrics.objective_angle_deg(a, b, cossim_pow)
        return angles

    def gradient_scaled_target(self) -> np.ndarray:
        """``[B, k]`` unit ``t*_j |d f_j / d params|`` (NaN rows where nothing was solved): the
        answer in features rescaled to unit gradient at the realization. Each entry is feature
        j's share of the gradient that holds the image (``sum_j t_j grad f_j``); rescaling a
        feature by ``s > 0`` divides its ``t_j`` by ``s`` and multiplies its gradient by ``s``,
        so this answer does not depend on the features' units (dead features: 0)."""
        if self.row_norms is None:
            raise ValueError("this result carries no Jacobian row norms (made before they were kept)")
        return scale_by_gradient(self.target, self.row_norms)

    @property
    def n_dead(self) -> np.ndarray:
        """``[B]`` number of dead features per sample."""
        return self.dead_features.sum(axis=1)

    def verdicts(self, rule: dg.VerdictRule | None = None) -> np.ndarray:
        """``[B]`` str verdicts (see `diagnostics.verdicts`)."""
        return dg.verdicts(self, rule)

    def describe(self, i: int, rule: dg.VerdictRule | None = None) -> str:
        """One-line human summary of sample ``i`` (see `diagnostics.describe`)."""
        return dg.describe(self, i, rule)

    def __getitem__(self, i) -> SampleInversion:
        return SampleInversion(
            self.target[i], self.response[i], self.singular_values[i], self.left_vectors[i],
            float(self.gap[i]), float(self.residual[i]),
            None if self.prior_weights is None else self.prior_weights[i], self.dead_features[i],
            *(None if x is None else x[i].item() for x in (self.null_dim, self.dead_tol, self.weight_warning)),
            str(self.verdicts()[i]), self.describe(i),
        )


@dataclasses.dataclass
class GramStatistics:
    """What the solve needs of a batch of Jacobians (and prior gradients), in float64.

    Attributes:
      jjt: ``J J^T`` ``[B, k, k]``.
      jg: ``J g_j`` ``[B, k, n]`` for the n prior terms (None without a prior).
      gg: ``g_i . g_j`` ``[B, n, n]`` (None without a prior).
      precision: the relative rounding of the Jacobians and gradients they come from (the
        error bars' floor, `diagnostics.coefficient_sensitivity`): float32's epsilon, or
        float64's for Jacobians taken in float64 (`lucid_ifv.precision`).
      root: the triangular factor ``R`` ``[B, r, k + n]`` of the QR decomposition of
        ``[J^T | g]`` (``R^T R`` is the Gram matrix above; ``r = min(D, k + n)``), or None
        (statistics stored without it: the solve then factors the Gram matrix, and resolves
        small singular values only to its square root).
    These are small (k x k per sample) and suffice for every solve, with any critical
    space, so experiments store them and re-solve offline (`solve_gram`).
    """

    jjt: np.ndarray
    jg: np.ndarray | None = None
    gg: np.ndarray | None = None
    precision: float = dg.EQUATION_PRECISION
    root: np.ndarray | None = None


def gram_statistics(jac, prior_grads=None, precision: float = dg.EQUATION_PRECISION) -> GramStatistics:
    """`GramStatistics` of Jacobians ``[B, k, D]`` and prior gradients ``[B, n, D]``, computed
    with relative rounding ``precision`` (`GramStatistics.precision`; the arrays' dtype does
    not tell: float32 Jacobians are often widened before they get here).

    One sample at a time, in float64: the float32 Jacobian is widened one sample at a time
    (a ``[k, D]`` float64 copy, not the batch's); the products of float32 values are exact in
    float64, and the QR factor ``R`` (`GramStatistics.root`) keeps the small singular values of
    ``[J^T | g]`` to float64's rounding, which the Gram matrices square.
    """
    jac = check_finite(np.asarray(jac), "Jacobians")
    if jac.ndim != 3:
        raise ValueError(f"Jacobians of shape {jac.shape}; expected [B, k, D]")
    grads = None
    if prior_grads is not None:
        grads = check_finite(np.asarray(prior_grads), "prior gradients")
        if grads.ndim != 3 or grads.shape[0] != jac.shape[0] or grads.shape[2] != jac.shape[2]:
            raise ValueError(f"prior gradients of shape {grads.shape}; expected [{jac.shape[0]}, n_terms, {jac.shape[2]}]")
    batch, k, dim = jac.shape
    n = 0 if grads is None else grads.shape[1]
    jjt = np.empty((batch, k, k))
    root = np.empty((batch, min(dim, k + n), k + n))
    jg = gg = None
    if grads is not None:
        jg, gg = np.empty((batch, k, n)), np.empty((batch, n, n))
    for b in range(batch):
        j = np.asarray(jac[b], np.float64)
        jjt[b] = j @ j.T
        columns = j.T
        if grads is not None:
            g = np.asarray(grads[b], np.float64)
            jg[b] = j @ g.T
            gg[b] = g @ g.T
            columns = np.concatenate([columns, g.T], axis=1)
        root[b] = np.linalg.qr(columns, mode="r")
    return GramStatistics(jjt, jg, gg, precision, root)


# -- critical bases ------------------------------------------------------------------------
def _critical_basis(critical_space, k: int) -> np.ndarray:
    if critical_space is None:
        return np.eye(k)
    basis = getattr(critical_space, "critical_basis", critical_space)
    basis = basis() if callable(basis) else basis
    basis = check_finite(np.asarray(basis, np.float64), "critical space basis")
    if basis.ndim != 2 or basis.shape[0] != k:
        raise ValueError(f"critical space basis of shape {basis.shape}; expected [{k}, d] for {k} features")
    if basis.shape[1] == 0:
        raise ValueError("the critical space is empty (d = 0): every direction is trivial, nothing can be recovered")
    if not np.allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-6):
        raise ValueError("critical space basis must have orthonormal columns")
    return basis


def _is_coordinate_basis(basis: np.ndarray) -> bool:
    """Every column is a canonical vector ``e_j`` (so ``u >= 0`` means ``t = B u >= 0``)."""
    ones = np.isclose(basis, 1.0, atol=1e-12)
    return bool(np.all(ones | np.isclose(basis, 0.0, atol=1e-12)) and np.all(ones.sum(axis=0) == 1))


def _split(basis: np.ndarray, dead: np.ndarray):
    """Orthonormal bases ``(live, rest)``: ``live`` of ``{B u : (B u)_j = 0 for dead j}`` and
    ``rest`` of its orthogonal complement in the span of ``B`` (coordinate bases stay ones)."""
    if not dead.any():
        return basis, basis[:, :0]
    if _is_coordinate_basis(basis):
        on_dead = dead[np.argmax(basis, axis=0)]
        return basis[:, ~on_dead], basis[:, on_dead]
    rows = basis[dead]  # [n_dead, d]
    _, s, vt = np.linalg.svd(rows, full_matrices=True)
    rank = int(np.sum(s > 1e-10))
    return basis @ vt[rank:].T, basis @ vt[:rank].T


def _restrict(basis: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """Orthonormal basis of ``{B u : (B u)_j = 0 for dead j}`` (a coordinate basis stays one)."""
    return _split(basis, dead)[0]


# -- one sample's stationarity equation and the methods ------------------------------------
def _right_singular(matrix: np.ndarray):
    """Ascending singular values ``[m]`` (zeros where ``matrix`` ``[r, m]`` has ``r < m``) and the
    right singular vectors ``[m, m]`` (columns, same order)."""
    _, sigma, vt = np.linalg.svd(matrix, full_matrices=True)
    return np.concatenate([sigma, np.zeros(matrix.shape[1] - sigma.size)])[::-1], vt[::-1].T


@dataclasses.dataclass
class _Equation:
    """``H = [J^T A B | -g]`` (``[D, d + n]``) of one sample, held as a `diagnostics.Factor`."""

    basis: np.ndarray  # [k, d]
    factor: dg.Factor  # R [r, d + n], R^T R = H^T H

    @property
    def d(self) -> int:
        return self.basis.shape[1]

    @property
    def n(self) -> int:
        return self.factor.m - self.d

    @property
    def gram(self) -> np.ndarray:
        """``H^T H`` ``[d + n, d + n]``."""
        return self.factor.gram if self.factor.gram is not None else self.factor.matrix.T @ self.factor.matrix

    @functools.cached_property
    def eig_m(self):
        """Eigenvalues (ascending) and eigenvectors of ``M = B^T A J J^T A B`` (shared by the
        paper's solve and the ``singular_values`` field): squared singular values of ``J^T A B``."""
        sigma, vectors = _right_singular(self.factor.matrix[:, : self.d])
        return sigma**2, vectors

    def anchored_design(self):
        """``(Q, b)`` of ``min |Q y - b|``, ``Q = R[:, free]`` (``y = (v; mu_2 ...)``), ``b = -R[:, d]``:
        the anchored least squares ``mu_1 = 1``, on the factor."""
        free = np.r_[np.arange(self.d), self.d + 1 + np.arange(self.n - 1)]
        return self.factor.columns(free), -self.factor.matrix[:, self.d]


def _equation(A, jjt, jg, gg, basis, root=None, precision: float = 0.0) -> _Equation:
    """From one sample's ``A`` ``[k, k]`` and its `GramStatistics`: ``root`` ``[r, k + n]`` if kept
    (the factor is then ``R diag(A B, -I)``), else ``J J^T`` ``[k, k]``, ``J g`` ``[k, n]`` and ``g^T g``
    (the factor of the Gram matrix, `diagnostics.Factor.of_gram`); ``jg`` None: no prior columns;
    ``precision``: the statistics' (`GramStatistics.precision`)."""
    C = A @ basis
    k = C.shape[0]
    if root is not None:
        matrix = root[:, :k] @ C
        matrix = matrix if jg is None else np.concatenate([matrix, -root[:, k:]], axis=1)
        return _Equation(basis, dg.Factor(matrix, precision=precision))
    M = C.T @ jjt @ C
    if jg is None:
        return _Equation(basis, dg.Factor.of_gram(M, precision))
    cross = -C.T @ jg
    return _Equation(basis, dg.Factor.of_gram(np.block([[M, cross], [cross.T, gg]]), precision))


def _solve_paper(eq: _Equation):
    return eq.eig_m[1][:, 0], np.zeros(0)


def _solve_prior_aware(eq: _Equation):
    x = _right_singular(eq.factor.matrix)[1][:, 0]
    v, mu = x[: eq.d], x[eq.d:]
    return (-v, -mu) if mu.sum() < 0 else (v, mu)


def _anchored_solution(eq: _Equation, y: np.ndarray):
    return y[: eq.d], np.r_[1.0, y[eq.d:]]


def _solve_anchored(eq: _Equation):
    """Least squares; directions below the factor's resolution or the rounding of its entries
    (`~diagnostics.Factor.lstsq_rcond`) are left out (rank deficiency is fine). Not on
    equilibrated columns: in float32 the equation's noise is absolute, and scaling a tiny
    column up scales its noise with it (measured: 2 of 30 mixed4a answers 6-8 -> 57-76 deg)."""
    design, goal = eq.anchored_design()
    return _anchored_solution(eq, np.linalg.lstsq(design.matrix, goal, rcond=design.lstsq_rcond)[0])


def _nnls(design: np.ndarray, goal: np.ndarray):
    """``min |design y - goal|`` over ``y >= 0``, polished by plain least squares on NNLS's active
    set at full precision -> ``(y, misfit)``."""
    y, _ = scipy.optimize.nnls(design, goal, maxiter=50 * design.shape[1])
    support = y > 0
    polished = np.linalg.lstsq(design[:, support], goal, rcond=None)[0]
    if np.all(polished >= 0):
        y[support] = polished
    return y, float(np.linalg.norm(design @ y - goal))


def _solve_nonneg(eq: _Equation, response=None):
    """``"anchored"`` with ``v >= 0``. With ``response`` (``f`` in the basis's coordinates ``[d]``,
    for a sign-symmetric objective: module docstring) ``v <= 0`` is solved too, and the better
    fit among the answers with ``<f, v> > 0`` (a positive prior weight) is kept; ``v >= 0``
    when neither has one."""
    design, goal = eq.anchored_design()
    design = design.matrix
    other = design[:, eq.d:]  # other prior weights: any sign, as w+ - w-
    m = design.shape[1]
    fits = []  # (misfit, v, mu) for v >= 0, then v <= 0
    for sign in (1.0,) if response is None else (1.0, -1.0):
        y, misfit = _nnls(np.concatenate([sign * design[:, : eq.d], other, -other], axis=1), goal)
        fits.append((misfit, sign * y[: eq.d], y[eq.d: m] - y[m:]))
    admissible = [fit for fit in fits if response is None or float(response @ fit[1]) > 0]
    _, v, mu = min(admissible, key=lambda fit: fit[0]) if admissible else fits[0]
    return _anchored_solution(eq, np.r_[v, mu])


_SOLVERS = {"paper": _solve_paper, "prior_aware": _solve_prior_aware, "anchored": _solve_anchored,
            "nonneg": _solve_nonneg}


def _solver(method: str, f: np.ndarray, basis: np.ndarray, cossim_pow: float):
    """The method's solve of one `_Equation`; ``"nonneg"`` on a sign-symmetric objective (odd
    ``p``) takes ``t >= 0`` or ``t <= 0``, whichever fits better with a positive prior weight."""
    if method == "nonneg" and metrics.sign_symmetric(cossim_pow):
        return functools.partial(_solve_nonneg, response=basis.T @ f)
    return _SOLVERS[method]


def resolve_method(method, with_prior: bool) -> str:
    """``None`` / ``"auto"`` -> `DEFAULT_METHOD_WITH_PRIOR` with a prior, ``"paper"`` without; checks the rest."""
    if method is None or method == "auto":
        return DEFAULT_METHOD_WITH_PRIOR if with_prior else "paper"
    if method not in METHODS:
        raise ValueError(f"method must be None, 'auto' or one of {', '.join(map(repr, METHODS))}; got {method!r}")
    if method in PRIOR_METHODS and not with_prior:
        raise ValueError(f"method {method!r} needs the FV's prior gradients (prior=..., prior_grads=... or "
                         "GramStatistics with jg and gg); none were given")
    return method


def check_solve_options(method, with_prior: bool, dead_tol, expected_prior_weight) -> None:
    """The solve's options, checked before any Jacobian is computed (`invert`); the number of
    prior terms an ``expected_prior_weight`` array must match is checked by the solve."""
    method = resolve_method(method, with_prior)
    _check_dead_tol(dead_tol)
    if expected_prior_weight is not None:
        _check_expected(expected_prior_weight, np.size(expected_prior_weight), method)


def _check_dead_tol(dead_tol):
    if isinstance(dead_tol, str) and dead_tol == "auto":
        return dead_tol
    if isinstance(dead_tol, str) or not np.isscalar(dead_tol) or not 0 <= float(dead_tol) < 1:
        raise ValueError(f"dead_tol must be 'auto' or a number in [0, 1); got {dead_tol!r}")
    return float(dead_tol)


def _check_expected(expected, n: int, method: str):
    if expected is None:
        return None
    if method == "paper":
        raise ValueError("expected_prior_weight needs a prior-aware method; got method 'paper' (no weights estimated)")
    try:
        values = np.asarray(expected, np.float64)
    except (TypeError, ValueError):
        values = np.full(n + 1, np.nan)  # refused below
    values = np.full(n, float(values)) if values.ndim == 0 else values
    if values.shape != (n,) or not np.all(np.isfinite(values)) or not np.all(values > 0):
        each = "one per prior term" if n != 1 else "the prior has one term"
        raise ValueError(f"expected_prior_weight must be a positive number, or an array of them ({each}: {n}); "
                         f"got {expected!r}")
    return values.copy()


def _sample_equation(A, jjt, jg, gg, root, basis, row_norms, dead_tol, precision):
    """Dead features (`diagnostics`) and the equation without them -> (dead, tol, eq, spectrum);
    eq and spectrum are None when no critical direction is left."""

    def without(dead):
        eq = _equation(A, jjt, jg, gg, _restrict(basis, dead), root, precision)
        return (eq, dg.equilibrated_spectrum(eq.factor)) if eq.d else (None, None)

    tol = dg.DEAD_FLOOR if dead_tol == "auto" else dead_tol
    dead = dg.dead_features(row_norms, tol)
    eq, spectrum = without(dead)
    if dead_tol == "auto" and eq is not None:  # the floor first, then the noise rule on what is left
        tol = dg.dead_tolerance(dg.noise_level(spectrum))
        noisy = dead | dg.dead_features(row_norms, tol)
        if (noisy != dead).any():
            dead = noisy
            eq, spectrum = without(dead)
    return dead, tol, eq, spectrum


def _solve_sample(f, A, jjt, jg, gg, root, basis, row_norms, method, dead_tol, cossim_pow, precision,
                  dead_unknowns=True):
    """One sample -> dict of its fields (NaN where nothing is left to solve).

    The dead-feature rule, the spectrum and the unidentifiable directions read the equation
    of the live features. With ``dead_unknowns`` (methods in `DEAD_UNKNOWN_METHODS`), dead
    features whose rows are above the noise level (dead by the floor `diagnostics.DEAD_FLOOR`
    or a given ``dead_tol``, not by the noise) stay in the equation as unknowns, reported as 0."""
    k, d = basis.shape
    n = 0 if jg is None else jg.shape[1]
    out = dict(target=np.full(k, np.nan), sv=np.full(d, np.nan), vectors=np.full((k, d), np.nan),
               residual=np.nan, weights=np.full(n, np.nan), spectrum=np.full(d + n, np.nan), noise_mass=np.nan,
               unidentifiable=np.zeros((k, 0)), sensitivity=np.full(k, np.nan))
    dead, tol, eq, spectrum = _sample_equation(A, jjt, jg, gg, root, basis, row_norms, dead_tol, precision)
    out.update(dead=dead, tol=tol)
    if eq is None:
        return out
    values, vectors = eq.eig_m
    out["sv"][: eq.d] = np.sqrt(values)
    out["vectors"][:, : eq.d] = eq.basis @ vectors
    out["spectrum"][: spectrum.size] = spectrum
    solved, d = eq, eq.d
    above_noise = dead & ~dg.dead_features(row_norms, dg.dead_tolerance(dg.noise_level(spectrum), floor=0.0))
    if dead_unknowns and method in DEAD_UNKNOWN_METHODS and above_noise.any():
        live, unknown = _split(_restrict(basis, dead & ~above_noise), dead)
        solved = _equation(A, jjt, jg, gg, np.concatenate([live, unknown], axis=1), root, precision)
        d = live.shape[1]
    v_all, mu = _solver(method, f, solved.basis, cossim_pow)(solved)
    v = v_all[:d]
    norm = np.linalg.norm(v)
    out["residual"] = dg.stationarity_residual(solved.factor, v_all, mu, np.sqrt(values[-1]))
    if not norm > 0:  # e.g. NNLS: no non-negative target explains the prior gradient
        return out
    target = solved.basis[:, :d] @ v / norm
    if method == "paper" and f @ target < 0:
        target = -target
    s = (max(f @ target, 0.0) / np.linalg.norm(f)) ** cossim_pow
    below_noise = dg.dead_features(row_norms, dg.dead_tolerance(dg.noise_level(spectrum))) & ~dead
    out.update(target=target, weights=mu * s / norm, noise_mass=float(np.sum(target[below_noise] ** 2)),
               unidentifiable=eq.basis @ dg.unidentifiable_directions(eq.factor, eq.d, eq.basis.T @ target))
    if n:
        reported = np.concatenate([solved.basis[:, :d], np.zeros((k, solved.d - d))], axis=1)  # the answer's live part
        out["sensitivity"] = np.where(dead, np.nan, dg.coefficient_sensitivity(solved.factor, solved.d, v_all, mu,
                                                                                  reported, precision))
    return out


def solve_gram(f, stats: GramStatistics, cossim_pow: float = 1, critical_space=None, dead_tol="auto",
               method: str | None = None, expected_prior_weight=None, row_norms=None,
               dead_unknowns: bool = True) -> InversionResult:
    """`solve` from `GramStatistics` (no Jacobian needed): see `solve` for the arguments.
    ``row_norms`` ``[B, k]``: the Jacobian row norms the dead-feature rule reads (default: the
    square roots of ``diag(J J^T)``; the transformation-robust solve passes its mean Jacobian's).

    Per sample: dead features leave the critical basis (``B_b``; with ``dead_unknowns``, the
    methods `DEAD_UNKNOWN_METHODS` keep them as unknowns reported as 0), the chosen method solves
    the stationarity equation ``[J^T A B_b | -g] (v; mu) = 0`` through a factor of it (from
    ``stats.root``, or from its Gram matrix ``[[B^T A JJ^T A B, -B^T A Jg], [., gg]]`` when the
    statistics have no root), and the diagnostics are read off the same factor. The prior
    columns are ignored by ``method="paper"``.
    """
    f = check_finite(np.asarray(f, np.float64), "feature responses")
    jjt = check_finite(np.asarray(stats.jjt, np.float64), "J J^T")
    if f.ndim != 2 or jjt.shape != f.shape + (f.shape[1],):
        raise ValueError(f"responses {f.shape} and J J^T {jjt.shape} do not match: expected [B, k] and [B, k, k]")
    norms = np.linalg.norm(f, axis=1)
    if not (norms > 0).all():
        bad = np.flatnonzero(norms == 0).tolist()
        raise ValueError(
            f"sample(s) {bad} have an all-zero feature response: no target objective can be "
            "recovered from them (the significance and its gradient vanish)"
        )
    batch, k = f.shape
    method = resolve_method(method, stats.jg is not None)
    jg = gg = None
    if method != "paper":
        jg = check_finite(np.asarray(stats.jg, np.float64), "J g")
        gg = check_finite(np.asarray(stats.gg, np.float64), "g g")
        n = jg.shape[-1] if jg.ndim == 3 else -1
        if jg.shape != (batch, k, n) or gg.shape != (batch, n, n) or n < 1:
            raise ValueError(f"J g {jg.shape} and g g {gg.shape} do not fit {batch} samples of {k} features: "
                             "expected [B, k, n] and [B, n, n]")
    root = None
    if stats.root is not None:
        root = check_finite(np.asarray(stats.root, np.float64), "QR factor R")
        m = k + (0 if stats.jg is None else np.shape(stats.jg)[-1])
        if root.ndim != 3 or root.shape[0] != batch or root.shape[2] != m:
            raise ValueError(f"QR factor R of shape {root.shape} does not fit {batch} samples of {m} columns: "
                             f"expected [{batch}, r, {m}]")
        root = root[:, :, :k] if jg is None else root  # the paper's solve: J^T's columns only
    expected = _check_expected(expected_prior_weight, 0 if jg is None else jg.shape[-1], method)
    dead_tol = _check_dead_tol(dead_tol)
    basis = _critical_basis(critical_space, k)
    if method == "nonneg" and not _is_coordinate_basis(basis):
        raise ValueError(f"method 'nonneg' constrains t >= 0 in feature coordinates; a critical space of shape "
                         f"{basis.shape} not spanned by canonical vectors cannot be used with it (pass None)")
    A = significance_matrix(f, cossim_pow)
    if row_norms is None:
        row_norms = np.sqrt(np.clip(np.diagonal(jjt, axis1=1, axis2=2), 0, None))
    elif np.shape(row_norms) != f.shape:
        raise ValueError(f"row_norms {np.shape(row_norms)} do not match the responses {f.shape}: expected [B, k]")
    samples = [_solve_sample(f[b], A[b], jjt[b], None if jg is None else jg[b], None if gg is None else gg[b],
                             None if root is None else root[b], basis, row_norms[b], method, dead_tol, cossim_pow,
                             stats.precision, dead_unknowns) for b in range(batch)]
    field = lambda name: np.array([s[name] for s in samples])  # noqa: E731
    spectra = field("spectrum")
    weights = None if method == "paper" else field("weights")
    return InversionResult(
        target=field("target"), response=f, singular_values=field("sv"), left_vectors=field("vectors"),
        gap=dg.spectral_gap(spectra), residual=field("residual").astype(np.float64), prior_weights=weights,
        dead_features=field("dead"), solve_method=method, null_dim=dg.null_space_dim(spectra),
        stationarity_singular_values=spectra, dead_tol=field("tol").astype(np.float64),
        weight_warning=(dg.weight_warning(weights, expected, dg.VerdictRule().weight_ratio) if expected is not None
                        else np.zeros(batch, bool)),
        expected_prior_weight=expected, noise_mass=field("noise_mass").astype(np.float64),
        unidentifiable=[s["unidentifiable"] for s in samples],
        sensitivity=None if method == "paper" else field("sensitivity"),
        row_norms=np.asarray(row_norms, np.float64),
    )


def solve(f, jac, cossim_pow: float = 1, critical_space=None, prior_grads=None, dead_tol="auto",
          method: str | None = None, expected_prior_weight=None, precision: float = dg.EQUATION_PRECISION,
          dead_unknowns: bool = True) -> InversionResult:
    """The closed-form solve on precomputed responses and Jacobians.

    Args:
      f: ``[B, k]`` feature responses; jac: ``[B, k, D]`` Jacobians.
      cossim_pow: ``p`` the FV used.
      critical_space: ``[k, d]`` orthonormal basis (or an object with ``critical_basis``);
        None: all of R^k.
      prior_grads: ``[B, n, D]`` gradients of the FV's prior terms, or None.
      dead_tol: ``"auto"`` (default): a feature is dead when its Jacobian row norm is below
        the noise level of the stationarity equation (`diagnostics`); a number: below
        ``dead_tol`` times the largest row norm of its sample. A dead feature's target entry
        is not identifiable: it is reported as 0.
      method: ``None`` / ``"auto"`` (``"prior_aware"`` with a prior, ``"paper"`` without),
        ``"paper"``, ``"prior_aware"``, ``"anchored"`` or ``"nonneg"`` (module docstring).
      expected_prior_weight: the FV's ``lam`` (a number, or one per prior term) if known:
        an estimate far below it sets ``weight_warning`` (the solve fit noise).
      precision: the relative rounding of ``jac`` and ``prior_grads`` (`GramStatistics.precision`).
      dead_unknowns: ``"anchored"`` and ``"nonneg"`` (`DEAD_UNKNOWN_METHODS`) keep the dead
        features in the equation as unknowns, so that the gradient share of the target's
        weight on them is not forced onto the live features (True, default since 2026-12-06);
        False: dead features leave the equation (as in the eigenvector solves, where they
        would be trivial answers).
    Returns:
      `InversionResult`.
    """
    f = check_finite(np.asarray(f, np.float64), "feature responses")
    jac = np.asarray(jac)
    if f.ndim != 2 or jac.ndim != 3 or jac.shape[:2] != f.shape:
        raise ValueError(f"responses {f.shape} and Jacobians {jac.shape} do not match: expected [B, k] and [B, k, D]")
    return solve_gram(f, gram_statistics(jac, prior_grads, precision), cossim_pow, critical_space, dead_tol, method,
                      expected_prior_weight, dead_unknowns=dead_unknowns)
