"""Grad-IFV: recover the target objective a feature visualization was optimized for.

For a realization with parameters ``z`` (per sample), feature response ``f = h(z)`` and
Jacobian ``J = dh/dz`` (``[k, D]``), local optimality of ``m(h(z), t)`` means
``J^T A(f) t = 0`` with ``A(f) = (p+1) I - p f f^T / |f|^2``. With an orthonormal basis
``B`` (``[k, d]``) of the critical space, ``t = B u`` and ``u`` is the eigenvector of the
smallest eigenvalue of ``M = B^T A J J^T A B`` (the paper's Opt. 3); the sign makes
``<f, t> > 0``. With prior terms ``R_j`` (FV maximized ``m - sum_j lam_j R_j``) the solve
takes the smallest right-singular vector ``(v; mu)`` of ``[J^T A B | -grad R_1 ... ]``,
with ``mu`` made positive, ``t = B v / |B v|`` and ``lam_j`` estimated from ``mu``.

Precision: the network and the Jacobian run in float32 (the network's own precision;
float64 would double memory for no gain, since the activations are float32). Everything
after the Jacobian (``A``, ``M``, its eigendecomposition) is float64 in NumPy: ``M``
squares the singular values of ``B^T A J``, so float32 would lose the small ones that
tell the solution and its reliability apart.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from lucid_ifv import objectives as objectives_mod
from lucid_ifv.param import Param, PixelParam, image_for_model
from lucid_ifv.render import RenderResult, layers_used, make_T
from lucid_ifv.validation import check_finite

_JACOBIAN_FNS: dict = {}


def clear_cache() -> None:
    """Forget the compiled Jacobian functions (they hold references to models and params)."""
    _JACOBIAN_FNS.clear()


# -- inputs ------------------------------------------------------------------------------
def _flatten(params: Sequence[np.ndarray], batch: int) -> np.ndarray:
    """Parameter arrays ``[B, ...]`` -> ``[B, D]`` float32."""
    return np.concatenate([np.asarray(p, np.float32).reshape(batch, -1) for p in params], axis=1)


def _unflatten(z, param: Param):
    """``[B, D]`` tensor -> parameter tensors shaped like ``param.variables``."""
    shapes = [tuple(v.shape) for v in param.variables]
    sizes = [int(np.prod(s[1:])) for s in shapes]
    parts = tf.split(z, sizes, axis=1)
    return [tf.reshape(p, s) for p, s in zip(parts, shapes)]


def resolve_realization(model, realization, param: Param | None, wrt: str):
    """Turn images, parameter arrays or a `RenderResult` into ``(param, params)``.

    Returns the parametrization to differentiate through (a `PixelParam` of the images
    when ``wrt == "pixels"``) and its parameter values (list of arrays, batch first).
    """
    if wrt not in ("params", "pixels"):
        raise ValueError(f"wrt must be 'params' or 'pixels', got {wrt!r}")
    if isinstance(realization, RenderResult):
        param = param or realization.param
        realization = realization.params
    if isinstance(realization, (list, tuple)):  # parameter arrays
        if param is None:
            raise ValueError("parameters were given without the parametrization (param=...) they belong to")
        if len(realization) != len(param.variables):
            raise ValueError(f"{len(realization)} parameter arrays for a parametrization with {len(param.variables)} variables")
        params = []
        for value, var in zip(realization, param.variables):
            value = check_finite(np.asarray(value, np.float32), "parameters")
            if value.shape != tuple(var.shape):
                raise ValueError(f"parameter array of shape {value.shape}, expected {tuple(var.shape)}")
            params.append(value)
        if wrt == "pixels":
            images = param(params).numpy()
            return PixelParam(images.shape, init_val=images), [images]
        return param, params
    images = check_finite(np.asarray(realization, np.float32), "images")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(
            f"images of shape {images.shape} do not fit model {model.name!r}: expected [batch, "
            f"{', '.join(map(str, model.image_shape))}]"
        )
    if wrt == "pixels":
        return PixelParam(images.shape, init_val=images), [images]
    if param is None:
        param = image_for_model(model, batch=images.shape[0])
    if param.batch != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images for a parametrization of batch {param.batch}")
    return param, param.params_from_image(images)


# -- Jacobian -----------------------------------------------------------------------------
def _jacobian_fn(model, layer, param, aggregation, features, chunk):
    key = (id(model), layer, id(param), aggregation if isinstance(aggregation, (str, type(None))) else id(aggregation),
           None if features is None else tuple(int(i) for i in features), chunk)
    if key in _JACOBIAN_FNS:
        return _JACOBIAN_FNS[key][0]

    @tf.function(reduce_retracing=True)
    def response_and_jacobian(z):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(z)
            images = param(_unflatten(z, param))
            acts = model(images, [layer])[layer]
            f = objectives_mod.feature_response(acts, aggregation, features)
            pieces = [f[:, i : i + chunk] for i in range(0, f.shape[-1], chunk)]
        blocks = [tape.batch_jacobian(piece, z, experimental_use_pfor=True) for piece in pieces]
        del tape
        return f, tf.concat(blocks, axis=1)

    _JACOBIAN_FNS[key] = (response_and_jacobian, model, param)  # keep both alive: ids stay unique
    return response_and_jacobian


def feature_jacobian(model, layer: str, realization, param: Param | None = None, aggregation=None,
                     features=None, wrt: str = "params", chunk: int | None = None):
    """Feature response and its Jacobian for a batch of realizations.

    Args:
      model: a `lucid_ifv.model.Model`.
      layer: the studied layer.
      realization: images ``[B, H, W, C]`` in [0, 1], parameter arrays (one per variable of
        ``param``, batch first), or a `RenderResult`.
      param: the parametrization the realization was made with (default: the render default
        `image_for_model`). Images are mapped to parameters with ``param.params_from_image``.
      aggregation, features: as in `feature_objective`.
      wrt: ``"params"`` (the FV's parameters ``z``, default) or ``"pixels"``.
      chunk: features per vectorized Jacobian block (default 32); bounds memory, the
        result does not depend on it.
    Returns:
      ``(f, J)``: float32 arrays ``[B, k]`` and ``[B, k, D]`` (D parameters per sample).
    """
    model.layer(layer)
    param, params = resolve_realization(model, realization, param, wrt)
    depth = model.layer(layer).depth
    if features is not None:
        features = np.asarray(features, dtype=np.int64)
        if features.ndim != 1 or features.size == 0 or features.min() < 0 or features.max() >= depth:
            raise ValueError(f"features must be channel indices in [0, {depth}), got {features.tolist()}")
    chunk = 32 if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    fn = _jacobian_fn(model, layer, param, aggregation, features, chunk)
    f, jac = fn(tf.constant(_flatten(params, param.batch)))
    return f.numpy(), jac.numpy()


def prior_gradients(model, prior, realization, param: Param | None = None, wrt: str = "params") -> np.ndarray:
    """Per-sample gradients of prior terms w.r.t. the parameters: ``[B, n_terms, D]``.

    ``prior`` is one objective-like term or a list of them (callables of ``T``; e.g.
    ``params_L2()``, ``L2("input")``, ``total_variation()``). Each must be a sum over the
    batch of per-sample terms (ours are; Lucid's ``L2`` is not, use ``batch=``).
    """
    terms = list(prior) if isinstance(prior, (list, tuple)) else [prior]
    if not terms:
        raise ValueError("prior is an empty list; pass None for the paper's solve")
    param, params = resolve_realization(model, realization, param, wrt)
    z = tf.constant(_flatten(params, param.batch))
    grads = []
    for term in terms:
        layers = layers_used(model, term, param)
        with tf.GradientTape() as tape:
            tape.watch(z)
            ps = _unflatten(z, param)
            x = param(ps)
            value = tf.reduce_sum(term(make_T(model, x, x, ps, layers)))
        g = tape.gradient(value, z)
        grads.append(np.zeros(z.shape, np.float32) if g is None else g.numpy())
    return np.stack(grads, axis=1)


# -- the solve ----------------------------------------------------------------------------
def significance_matrix(f: np.ndarray, cossim_pow: float) -> np.ndarray:
    """``A(f) = (p+1) I - p f f^T / |f|^2`` for each row of ``f`` ``[B, k]`` -> ``[B, k, k]``."""
    f = np.asarray(f, np.float64)
    k = f.shape[-1]
    outer = np.einsum("bi,bj->bij", f, f) / np.sum(f * f, axis=-1)[:, None, None]
    return (cossim_pow + 1) * np.eye(k)[None] - cossim_pow * outer


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


@dataclasses.dataclass
class InversionResult:
    """Grad-IFV's answer for a batch of B realizations (k features, d = critical dims).

    Attributes:
      target: predicted objectives ``t*`` ``[B, k]``, unit, with ``<f, t*> > 0``.
      response: feature responses ``f`` ``[B, k]``.
      singular_values: singular values of ``B^T A J`` ``[B, d]``, ascending (after the
        per-sample removal of dead features, their slots are NaN at the end).
      left_vectors: the matching left-singular vectors mapped to feature space
        ``[B, k, d]`` (column i belongs to singular value i).
      gap: ``sigma_2 - sigma_1`` of the matrix actually solved, relative to its largest
        singular value ``[B]``: near 0 means the answer is not determined.
      residual: ``|J^T A t*|`` relative to ``|J^T A|_2`` ``[B]`` (with a prior: of the
        whole stationarity equation).
      prior_weights: estimated ``lam_j`` ``[B, n_terms]`` (None without a prior).
      dead_features: ``[B, k]`` bool, features with a zero Jacobian row left out of the solve.
    """

    target: np.ndarray
    response: np.ndarray
    singular_values: np.ndarray
    left_vectors: np.ndarray
    gap: np.ndarray
    residual: np.ndarray
    prior_weights: np.ndarray | None
    dead_features: np.ndarray

    def __len__(self):
        return self.target.shape[0]

    def __getitem__(self, i) -> SampleInversion:
        return SampleInversion(
            self.target[i], self.response[i], self.singular_values[i], self.left_vectors[i],
            float(self.gap[i]), float(self.residual[i]),
            None if self.prior_weights is None else self.prior_weights[i], self.dead_features[i],
        )


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


def _restrict(basis: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """Orthonormal basis of ``{B u : (B u)_j = 0 for dead j}``."""
    if not dead.any():
        return basis
    rows = basis[dead]  # [n_dead, d]
    _, s, vt = np.linalg.svd(rows, full_matrices=True)
    rank = int(np.sum(s > 1e-10))
    return basis @ vt[rank:].T


def _eigh_psd(gram: np.ndarray):
    """Ascending eigenvalues (clipped at 0) and eigenvectors of a symmetric PSD matrix."""
    values, vectors = np.linalg.eigh(gram)
    return np.clip(values, 0.0, None), vectors


@dataclasses.dataclass
class GramStatistics:
    """What the solve needs of a batch of Jacobians (and prior gradients), in float64.

    Attributes:
      jjt: ``J J^T`` ``[B, k, k]``.
      jg: ``J g_j`` ``[B, k, n]`` for the n prior terms (None without a prior).
      gg: ``g_i . g_j`` ``[B, n, n]`` (None without a prior).
    These are small (k x k per sample) and suffice for every solve, with any critical
    space, so experiments store them and re-solve offline (`solve_gram`).
    """

    jjt: np.ndarray
    jg: np.ndarray | None = None
    gg: np.ndarray | None = None


def gram_statistics(jac, prior_grads=None) -> GramStatistics:
    """`GramStatistics` of Jacobians ``[B, k, D]`` and prior gradients ``[B, n, D]``."""
    jac = check_finite(np.asarray(jac, np.float64), "Jacobians")
    if jac.ndim != 3:
        raise ValueError(f"Jacobians of shape {jac.shape}; expected [B, k, D]")
    if prior_grads is None:
        return GramStatistics(np.einsum("bkd,bld->bkl", jac, jac))
    grads = check_finite(np.asarray(prior_grads, np.float64), "prior gradients")
    if grads.ndim != 3 or grads.shape[0] != jac.shape[0] or grads.shape[2] != jac.shape[2]:
        raise ValueError(f"prior gradients of shape {grads.shape}; expected [{jac.shape[0]}, n_terms, {jac.shape[2]}]")
    return GramStatistics(np.einsum("bkd,bld->bkl", jac, jac), np.einsum("bkd,bnd->bkn", jac, grads),
                          np.einsum("bnd,bmd->bnm", grads, grads))


def solve(f, jac, cossim_pow: float = 1, critical_space=None, prior_grads=None,
          dead_tol: float = 1e-6) -> InversionResult:
    """The closed-form solve on precomputed responses and Jacobians.

    Args:
      f: ``[B, k]`` feature responses; jac: ``[B, k, D]`` Jacobians.
      cossim_pow: ``p`` the FV used.
      critical_space: ``[k, d]`` orthonormal basis (or an object with ``critical_basis``);
        None: all of R^k.
      prior_grads: ``[B, n, D]`` gradients of the FV's prior terms, or None (paper's solve).
      dead_tol: a feature whose Jacobian row norm is below ``dead_tol`` times the largest
        row norm of its sample leaves that sample's solve (its target entry is 0).
    """
    f = check_finite(np.asarray(f, np.float64), "feature responses")
    jac = np.asarray(jac)
    if f.ndim != 2 or jac.ndim != 3 or jac.shape[:2] != f.shape:
        raise ValueError(f"responses {f.shape} and Jacobians {jac.shape} do not match: expected [B, k] and [B, k, D]")
    return solve_gram(f, gram_statistics(jac, prior_grads), cossim_pow, critical_space, dead_tol)


def solve_gram(f, stats: GramStatistics, cossim_pow: float = 1, critical_space=None,
               dead_tol: float = 1e-6) -> InversionResult:
    """`solve` from `GramStatistics` (no Jacobian needed): see `solve` for the arguments.

    With ``M = A J J^T A`` restricted to the basis ``B_b`` of sample b's critical space
    (dead features removed), ``t* = B_b u`` for the eigenvector u of the smallest
    eigenvalue of ``B_b^T M B_b``; with priors, the eigenvector ``(v; mu)`` of the Gram
    matrix of ``[J^T A B_b | -g]``, which is ``[[B^T A JJ^T A B, -B^T A Jg], [., gg]]``.
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
    basis = _critical_basis(critical_space, k)
    d = basis.shape[1]
    with_prior = stats.jg is not None
    A = significance_matrix(f, cossim_pow)
    out = {name: [] for name in ("target", "sv", "vectors", "gap", "residual", "weights", "dead")}
    for b in range(batch):  # per-sample k x k problems; the heavy part (J) is batched already
        row_norms = np.sqrt(np.clip(np.diag(jjt[b]), 0, None))
        dead = row_norms <= dead_tol * max(row_norms.max(), np.finfo(float).tiny)
        basis_b = _restrict(basis, dead)
        if basis_b.shape[1] == 0:
            raise ValueError(f"sample {b}: no critical direction is left once dead features are removed")
        AB = A[b] @ basis_b  # [k, d_b]
        gram = AB.T @ jjt[b] @ AB
        values, vectors = _eigh_psd(gram)
        sv = np.sqrt(values)
        full_sv = np.full(d, np.nan)
        full_sv[: sv.size] = sv
        full_vec = np.full((k, d), np.nan)
        full_vec[:, : sv.size] = basis_b @ vectors
        if not with_prior:
            u, solved_sv, weights = vectors[:, 0], sv, None
            target = basis_b @ u
            residual = np.sqrt(max(u @ gram @ u, 0.0)) / max(sv[-1], np.finfo(float).tiny)
        else:
            cross = -AB.T @ stats.jg[b]  # [d_b, n]
            ext = np.block([[gram, cross], [cross.T, stats.gg[b]]])
            ext_values, ext_vectors = _eigh_psd(ext)
            solved_sv = np.sqrt(ext_values)
            vec = ext_vectors[:, 0]
            v, mu = vec[: basis_b.shape[1]], vec[basis_b.shape[1]:]
            if mu.sum() < 0:
                v, mu = -v, -mu
            target = basis_b @ v
            scale = np.linalg.norm(target)
            s = (max(f[b] @ target / scale, 0.0) / norms[b]) ** cossim_pow
            weights = mu * s / scale
            residual = solved_sv[0] / max(solved_sv[-1], np.finfo(float).tiny)
        target = target / np.linalg.norm(target)
        if not with_prior and f[b] @ target < 0:
            target = -target
        gap = (solved_sv[1] - solved_sv[0]) / solved_sv[-1] if solved_sv.size > 1 and solved_sv[-1] > 0 else 0.0
        for name, value in zip(out, (target, full_sv, full_vec, gap, residual, weights, dead)):
            out[name].append(value)
    return InversionResult(
        target=np.array(out["target"]), response=f, singular_values=np.array(out["sv"]),
        left_vectors=np.array(out["vectors"]), gap=np.array(out["gap"]), residual=np.array(out["residual"]),
        prior_weights=None if not with_prior else np.array(out["weights"]), dead_features=np.array(out["dead"]),
    )


def jacobian_spectra(f, jac, cossim_pow: float = 1, with_significance: bool = False) -> list:
    """Per-sample spectra for Algorithm 1 (`lucid_ifv.critical_space`): of ``J_i`` (default)
    or of ``A_i J_i`` (``with_significance=True``).

    The default is our choice. A trivial solution is a ``t`` with ``A_i t`` in the
    cokernel ``N`` of ``J_i``; structural cokernels (dead features, softmax's shift) are the
    same for every sample, while those of ``A_i J_i`` (``A_i^-1 N``) turn with ``f_i``.
    And ``S = N^perp`` already excludes every trivial solution for any positive definite
    ``A``: ``t`` in ``S`` with ``A t`` in ``N`` gives ``t^T A t = 0``, so ``t = 0``.

    Args:
      f: ``[B, k]`` responses.
      jac: ``[B, k, D]`` Jacobians (from `feature_jacobian`) or their `GramStatistics`.
    Returns:
      list of ``SampleSpectrum`` (singular values ascending), one per sample.
    """
    from lucid_ifv.critical_space import SampleSpectrum

    jjt = jac.jjt if isinstance(jac, GramStatistics) else gram_statistics(jac).jjt
    if with_significance:
        A = significance_matrix(f, cossim_pow)
        jjt = A @ jjt @ A
    values, vectors = np.linalg.eigh(jjt)  # ascending
    return [SampleSpectrum(np.sqrt(np.clip(v, 0, None)), u) for v, u in zip(values, vectors)]


def angle_modulo_trivial(predicted, target, response, trivial_basis, cossim_pow: float = 1) -> np.ndarray:
    """Angles (degrees) between predicted and true objectives modulo the trivial space.

    Objectives ``t`` and ``t + A_i^-1 n`` (``n`` in the trivial space ``T``) are equally
    stationary for sample ``i`` (``J_i^T n = 0``), so both are projected onto the
    orthogonal complement of ``A_i^-1 T`` before measuring. For ``p = 0`` (``A = I``) this is
    the paper's comparison after projecting onto ``S = T^perp``; for ``p > 0`` that
    comparison is only approximate and this one is exact.

    Args:
      predicted, target, response: ``[B, k]``; trivial_basis: ``[k, r]`` orthonormal.
    Returns:
      ``[B]`` angles in degrees.
    """
    from lucid_ifv.metrics import angle_deg

    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    trivial_basis = np.asarray(trivial_basis, np.float64).reshape(predicted.shape[1], -1)
    if trivial_basis.shape[1] == 0:
        return angle_deg(predicted, target)
    shifted = np.linalg.solve(significance_matrix(response, cossim_pow), trivial_basis[None])  # [B, k, r]
    q = np.linalg.qr(shifted)[0]
    project = lambda v: v - np.einsum("bkr,br->bk", q, np.einsum("bkr,bk->br", q, v))
    return angle_deg(project(predicted), project(target))


def invert(model, layer: str, realization, param: Param | None = None, cossim_pow: float = 1,
           aggregation=None, critical_space=None, features=None, prior=None, wrt: str = "params",
           chunk: int | None = None, dead_tol: float = 1e-6) -> InversionResult:
    """Grad-IFV: the target objectives a batch of realizations was optimized for.

    Args:
      model, layer: the network and the studied layer.
      realization: images ``[B, H, W, C]`` (e.g. loaded from files), parameter arrays, or a
        `RenderResult`.
      param: the FV's parametrization (needed for parameter arrays; images are mapped to
        its parameters by its inverse; default the render default for the model).
      cossim_pow: the FV's ``p`` (0 drops the cosine term, A = I).
      aggregation, features: the FV's aggregation and feature subset.
      critical_space: orthonormal ``[k, d]`` basis (or `critical_space` result); None: R^k.
      prior: the FV's prior term(s) (e.g. ``params_L2()``), whose weights need not be
        known; None is the paper's solve.
      wrt: differentiate w.r.t. ``"params"`` (default) or ``"pixels"``.
      chunk: features per vectorized Jacobian block.
      dead_tol: see `solve`.
    Returns:
      `InversionResult` (index it for one sample's `SampleInversion`).
    """
    param, params = resolve_realization(model, realization, param, wrt)
    f, jac = feature_jacobian(model, layer, params, param, aggregation, features, chunk=chunk)
    grads = None if prior is None else prior_gradients(model, prior, params, param)
    return solve(f, jac, cossim_pow, critical_space, grads, dead_tol)
