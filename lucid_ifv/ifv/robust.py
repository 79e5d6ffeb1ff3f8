"""Transformation-robust inversion: visualizations rendered with random transforms.

Lucid renders with random jitter, scaling and rotation (`transform.standard_transforms`). Such
a realization ``z`` optimizes the *expected* objective ``E_tau[m(h(tau(g(z))), t)] - lam R(z)``,
so its stationarity condition is the expectation of the per-transform one:

    E_tau[ s_tau J_tau^T A(f_tau) ] t = lam grad R,      s_tau = cos(f_tau, t)^p,

with ``f_tau``, ``J_tau`` the response and Jacobian (w.r.t. the parameters) seen through the
transform ``tau``. It is linear in ``t`` once the weights ``s_tau`` are known. We draw
``n_transforms`` transforms (seeded), compute every ``A(f_tau) J_tau`` and their weighted
mean ``M``, and hand the solve the mean response ``f`` and ``J~ = A(f)^-1 M``: its equation
``J~^T A(f) t = M^T t`` is exactly the expected one. Dead features are found by the solve's
own rule on the mean Jacobian ``E[J_tau]`` (its rows and its equation's noise), not on
``J~``: ``A(f)^-1`` and the spread of ``A(f_tau)`` mix every feature's row into a dead one's
(``f_j`` is not 0 for a dead channel behind a bias or BatchNorm), and a dead feature left in
is a near-null direction that derails the answer (photos_cnn conv2d_3: 9-14 of them, 65-87
deg; 10-12 deg once they are dropped). The weights start at 1 and are updated from the
answer (``iterations`` passes; exact for p = 0, where every ``s_tau = 1``).

The answer has the usual `InversionResult` fields, diagnostics and verdicts (of the averaged
equation). The expectation is estimated from ``n_transforms`` draws, so even a perfectly
optimized realization leaves a residual of order ``1 / sqrt(n_transforms)`` of the spread of
the per-transform gradients: read "not stationary" verdicts with that in mind.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from lucid_ifv.graph_keys import key_or_identity
from lucid_ifv.ifv import jacobian as jacobian_mod
from lucid_ifv.ifv.jacobian import feature_jacobian
from lucid_ifv.ifv.solve import InversionResult, gram_statistics, significance_matrix, solve_gram
from lucid_ifv.param import Param


class TransformedParam(Param):
    """``param`` followed by ``transform`` (which draws from ``rng``): the inputs a transform-
    robust FV showed the network. Reset ``rng`` to pick a draw (`transformed_jacobians`)."""

    def __init__(self, param: Param, transform, rng: tf.random.Generator, model_shape):
        super().__init__(param.variables, (param.batch, *model_shape))
        self.inner, self.transform, self.rng = param, transform, rng

    def structure_key(self):
        """The inner parametrization's structure and the identity of the (transform, rng)
        pair: `_transform_draws` hands out one pair per transforms/model and keeps it alive,
        so every inversion with the same transforms and parametrization structure shares one
        compiled Jacobian (a trace reads *this* ``rng``, so the pair, not its content, is the key)."""
        inner = self.inner.structure_key()
        return None if inner is None else ("transformed", inner, id(self.transform), id(self.rng))

    @property
    def per_sample(self) -> bool:
        return self.inner.per_sample

    def forward(self, params):
        return self.transform(self.inner.forward(params))

    def inverse(self, values):
        raise NotImplementedError("a transformed parametrization has no inverse; invert through the inner one")


#: (transforms, model, input shape) -> (rng, transform, what the key's identities refer to),
#: least recently used first out; at most `jacobian.CACHE_SIZE` entries.
_TRANSFORM_DRAWS: collections.OrderedDict = collections.OrderedDict()
jacobian_mod.CACHES.append(_TRANSFORM_DRAWS)


def _transform_draws(transforms, model):
    """One ``(rng, transform)`` pair per transforms (by content where `graph_keys` can describe
    them) and model: the transform composed by `render._resolve_transform`, drawing from ``rng``."""
    from lucid_ifv.render import _resolve_transform

    key = (key_or_identity(list(transforms)), id(model), tuple(model.image_shape))
    if key not in _TRANSFORM_DRAWS:
        rng = tf.random.Generator.from_seed(0)
        transform = _resolve_transform(transforms, model, rng, model.image_shape[:2])
        if transform is None:
            raise ValueError("transforms is empty: use `invert` for visualizations rendered without transforms")
        _TRANSFORM_DRAWS[key] = (rng, transform, (transforms, model))
        while len(_TRANSFORM_DRAWS) > jacobian_mod.CACHE_SIZE:
            _TRANSFORM_DRAWS.popitem(last=False)
    _TRANSFORM_DRAWS.move_to_end(key)
    return _TRANSFORM_DRAWS[key][:2]


def transformed_jacobians(model, layer: str, params, param: Param, transforms, n_transforms: int, seed: int = 0,
                          aggregation=None, features=None, chunk=None):
    """Responses and Jacobians through ``n_transforms`` seeded draws of ``transforms``.

    Returns:
      ``(f, J)``: ``[N, B, k]`` and ``[N, B, k, D]`` float32 (draw ``i`` uses seed ``seed + i``).
    """
    if not isinstance(n_transforms, (int, np.integer)) or n_transforms < 1:
        raise ValueError(f"n_transforms must be an integer >= 1, got {n_transforms!r}")
    rng, transform = _transform_draws(transforms, model)
    wrapped = TransformedParam(param, transform, rng, model.image_shape)
    responses, jacobians = [], []
    for i in range(n_transforms):
        rng.reset_from_seed(seed + i)  # one traced function, a different fixed draw per call
        f, jac = feature_jacobian(model, layer, params, wrapped, aggregation, features, chunk=chunk)
        responses.append(f)
        jacobians.append(jac)
    return np.stack(responses), np.stack(jacobians)


def solve_expected(f, jac, cossim_pow: float = 1, prior_grads=None, iterations: int = 2, **solve_options):
    """The solve of the expected stationarity equation (module docstring).

    Args:
      f: ``[N, B, k]``; jac: ``[N, B, k, D]`` (from `transformed_jacobians`).
      prior_grads: ``[B, n, D]`` or None.
      solve_options: passed to `solve_gram` (method, dead_tol, critical_space, ...).
    Returns:
      `InversionResult` of the last pass.
    """
    f = np.asarray(f, np.float64)
    k = f.shape[-1]
    weighted = np.einsum("nbij,nbjd->nbid", significance_matrix(f.reshape(-1, k), cossim_pow).reshape(*f.shape, k),
                         np.asarray(jac, np.float64))  # A(f_tau) J_tau
    mean_f = f.mean(axis=0)
    to_jacobian = np.linalg.inv(significance_matrix(mean_f, cossim_pow))  # [B, k, k]
    mean_jac = np.asarray(jac, np.float64).mean(axis=0)  # E[J_tau], [B, k, D]
    dead = solve_gram(mean_f, gram_statistics(mean_jac, prior_grads), cossim_pow, **solve_options).dead_features
    row_norms = np.where(dead, 0.0, np.linalg.norm(mean_jac, axis=-1))  # what the dead-feature rule reads
    weights = np.ones(f.shape[:2])
    result = None
    for _ in range(max(1, int(iterations)) if cossim_pow else 1):
        expected = np.einsum("nb,nbkd->bkd", weights, weighted) / weights.sum(axis=0)[:, None, None]  # M
        stats = gram_statistics(to_jacobian @ expected, prior_grads)
        result = solve_gram(mean_f, stats, cossim_pow, row_norms=row_norms, **solve_options)
        t = np.nan_to_num(result.target)
        cos = np.einsum("nbk,bk->nb", f, t) / (np.linalg.norm(f, axis=-1) * np.linalg.norm(t, axis=-1) + 1e-30)
        weights = np.abs(cos) ** cossim_pow + 1e-12  # s_tau up to one common sign (t and -t: docs/ifv.md)
    return result

