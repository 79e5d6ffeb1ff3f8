"""Target-free Grad-IFV on ReLU / max-pool networks: project out the kinks the realization sits on.

Why: Grad-IFV solves the stationarity condition ``s J^T A t = lam grad R`` at a realization
(``J = dh/dz``, ``A = (p+1) I - p f f^T / |f|^2``, ``R`` the FV's prior). On ReLU and
max-pool networks FV optima sit on kinks: units whose pre-activation is ~0 (a ReLU switch)
and max-pool windows whose two largest inputs (nearly) tie. There the objective is not
differentiable, autodiff returns one one-sided gradient, and optimality only says that 0
lies in the (Clarke) subdifferential: ``s J^T A t - lam grad R`` is a combination of the
gradients ``grad_z kappa_j`` of the kink functions (``kappa = pre-activation`` for a ReLU
unit, ``kappa = x_a - x_b`` for a tied pool window). So the equation holds *modulo the span
of the kink gradients*. With ``P`` the orthogonal projector onto the complement of that
span, ``s P J^T A t = lam P grad R`` holds exactly, and the usual solve applies to the
projected Jacobian and prior gradients.

The pieces (no true target is used anywhere):

* `kink_sites` (`lucid_ifv.kink_sites`) walks the network from the studied layer back to the input and lists where
  kinks can be: the input tensor of every ``Relu``/``Relu6``/``LeakyRelu``/``Selu`` node
  (switch points 0, and 6 for ``Relu6``), every ``MaxPool`` node (its input and window
  geometry) and, by default, the max-pool of the ``max_pool_mean`` aggregation on the
  studied layer itself (kernel 3, stride 2, VALID, as `lucid_ifv.aggregation`).
  `modelzoo.graph.GraphModel` (frozen graphs) is fully supported; `KerasModel` is
  supported for layers with ``activation="relu"`` (their pre-activation comes from a
  linear copy of the layer), ``ReLU`` layers and ``MaxPooling2D``; any other
  non-smooth piece raises NotImplementedError naming what is supported.
* `find_kinks` evaluates those tensors at the realization and keeps, per sample,

  - ReLU units with ``|x - x0| <= tol * scale`` (``x0`` the switch point),
  - max-pool windows with an input ``x_b`` such that ``max - x_b <= tol * scale``
    (one kink ``x_argmax - x_b`` per such input; pairs where both values are their
    channel's *clamp value* are skipped: they come from ReLU-clamped units, whose gradient
    vanishes, and a unit exactly at its switch is caught by the ReLU rule. The clamp value
    is 0, or, for a Keras pool fed by a ReLU through per-channel layers such as
    BatchNormalization, those layers applied to 0),

  where ``scale`` is the root-mean-square of that tensor for that sample (``scale="rms"``,
  default), its largest magnitude (``"max"``) or 1 (``"absolute"``). Default ``tol`` is
  `DEFAULT_TOL` (1e-3).
* `kink_gradients`: the Jacobian of the kink functions w.r.t. the FV's parameters,
  ``[B, r_max, D]`` (zero rows pad samples with fewer kinks), one vectorized
  ``batch_jacobian`` (pfor) per chunk of rows inside a `tf.function`. Samples on more
  kinks than ``max_kinks`` (default D) are skipped: they get no answer.
* `project_out_kinks`: per sample, an orthonormal basis of the span of the kink gradients
  (rows normalized, then SVD; singular values below ``rank_tol`` times the largest are
  dropped), and the projection of the Jacobian rows and prior gradients onto its
  complement.
* `invert_target_free`: `lucid_ifv.ifv`'s public pieces (`resolve_realization`,
  `feature_jacobian`, `prior_gradients`, `solve`) with the projection in between; by default
  the non-negative prior-anchored solve (``method="nonneg"`` of `ifv.solve`).
* `top_channels`: channels ranked by predicted weight ("which channel was this made for?").

Assumptions (see ``docs/target_free.md``): the realization is a (local) optimum of
``m(a(n(g(z))), t) - lam R(z)`` with the assumed aggregation, ``p`` and prior form; the
tolerance catches the kinks it sits on (too small: stationarity is still violated; too
large: directions that carry information are removed; the span's rank is reported).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from lucid_ifv import ifv
from lucid_ifv import kink_sites as sites_mod
from lucid_ifv import objectives as objectives_mod
from lucid_ifv.kink_sites import KinkSite, _Probe, _probe, kink_sites, switch_input_rms  # noqa: F401 (API)
from lucid_ifv.validation import check_finite

__all__ = [
    "DEFAULT_TOL", "DEFAULT_RANK_TOL", "FALLBACK_TOLS", "KinkSite", "Kinks", "TargetFreeResult", "kink_sites",
    "CHANNEL_MARGIN_FACTOR", "CHANNEL_VERDICTS", "margin_angle", "channel_verdicts",
    "find_kinks", "kink_gradients", "kink_basis", "project_out_kinks", "invert_target_free",
    "top_channels",
]

#: Default kink tolerance, relative to the tensor's scale (see the module docstring).
DEFAULT_TOL = 1e-3
#: Smaller tolerances `invert_target_free` falls back to, largest first, for a sample on more
#: kinks than parameters at ``tol`` (flat regions tie many pool windows; measured on the
#: shipped models' channel renders: `docs/target_free.md`).
FALLBACK_TOLS = (3e-4,)
#: Default rank tolerance of the kink span (relative to the largest singular value of the
#: row-normalized kink gradients).
DEFAULT_RANK_TOL = 1e-5

_SCALES = ("rms", "max", "absolute")


# -- which units sit on a kink --------------------------------------------------------------
@dataclasses.dataclass
class Kinks:
    """The kinks a batch of realizations sits on.

    Attributes:
      sites: the `KinkSite`s searched.
      sizes: flattened per-sample size of each site's tensor.
      first, second: per sample, int64 arrays of flat indices into the concatenation of
        the flattened site tensors: kink ``j`` is ``u[first[j]] - u[second[j]]``, or
        ``u[first[j]] - x0`` when ``second[j] == -1`` (a switch).
      site_of: per sample, the site index of each kink.
      distance: per sample, each kink's distance from exactness in units of its tensor's
        scale (``|x - x0| / scale``, or ``(max - x_b) / scale``): at most ``tol``.
      tol, scale: the rule used.
      skipped: ``[B]`` bool, set by `kink_gradients`: samples with more than ``max_kinks``
        kinks, whose gradients were not computed (zero rows). A realization on that many
        kinks (e.g. a uniform grey image, where every pool window ties) leaves nothing to
        solve after the projection.
      sample_tol: ``[B]`` the tolerance each sample's kinks were kept at, when
        `fit_tolerances` chose it per sample (NaN: none fit); None: ``tol`` for all.
    """

    sites: list
    sizes: list
    first: list
    second: list
    site_of: list
    distance: list
    tol: float
    scale: str
    skipped: np.ndarray | None = None
    sample_tol: np.ndarray | None = None

    def restrict(self, masks) -> "Kinks":
        """The kinks selected by per-sample bool masks (e.g. from `within`), same sites."""
        masks = [np.asarray(m, bool) for m in masks]
        if len(masks) != len(self.first) or any(m.shape != f.shape for m, f in zip(masks, self.first)):
            raise ValueError("restrict needs one bool mask per sample, as long as that sample's kinks")
        pick = lambda arrays: [a[m] for a, m in zip(arrays, masks)]  # noqa: E731
        return Kinks(self.sites, self.sizes, pick(self.first), pick(self.second), pick(self.site_of),
                     pick(self.distance), self.tol, self.scale)

    def fit_tolerances(self, tols, max_kinks: int) -> "Kinks":
        """Per sample, the kinks at the largest of ``tols`` at which it sits on at most
        ``max_kinks`` of them (``sample_tol``; NaN and every kink where none does, so that
        `kink_gradients` skips it). A flat render ties many pool windows at the default
        tolerance but few at a smaller one (`FALLBACK_TOLS`)."""
        tols = sorted({float(t) for t in tols}, reverse=True)
        masks = {t: self.within(t) for t in tols}
        chosen = np.array([next((t for t in tols if int(masks[t][b].sum()) <= max_kinks), np.nan)
                           for b in range(len(self.first))])
        keep = [masks[t][b] if np.isfinite(t) else np.ones(len(f), bool)
                for b, (t, f) in enumerate(zip(chosen, self.first))]
        fitted = self.restrict(keep)
        fitted.sample_tol = chosen
        return fitted

    def within(self, tol: float) -> list:
        """Per sample, a bool mask of the kinks a smaller tolerance ``tol`` keeps (the kink
        sets are nested in ``tol``): select rows of `kink_gradients` with it to sweep the
        tolerance without recomputing gradients."""
        if tol > self.tol:
            raise ValueError(f"these kinks were found with tol={self.tol:g}; cannot widen to {tol:g}")
        return [d <= tol for d in self.distance]

    @property
    def counts(self) -> np.ndarray:
        """Kinks per sample ``[B]``."""
        return np.array([len(f) for f in self.first], dtype=np.int64)

    def counts_by_kind(self) -> list:
        """Per sample: ``{"switch": n, "maxpool": n, "aggregation": n}``."""
        out = []
        for site_of in self.site_of:
            row = {"switch": 0, "maxpool": 0, "aggregation": 0}
            for s, n in zip(*np.unique(site_of, return_counts=True)):
                site = self.sites[int(s)]
                kind = "aggregation" if site.source == "aggregation" else site.kind
                row[kind] += int(n)
            out.append(row)
        return out


def _scale(values: np.ndarray, rule: str) -> float:
    if rule == "rms":
        return float(np.sqrt(np.mean(np.square(values, dtype=np.float64))))
    if rule == "max":
        return float(np.max(np.abs(values)))
    return 1.0


def _switch_kinks(x: np.ndarray, points, tol_abs: float) -> np.ndarray:
    flat = x.reshape(-1)
    near = np.zeros(flat.shape, bool)
    for p in points:
        near |= np.abs(flat - p) <= tol_abs
    return np.flatnonzero(near)


def _pool_kinks(x: np.ndarray, site: KinkSite, tol_abs: float):
    """Tied max-pool windows of one sample's ``x`` ``[H, W, C]``: pairs of flat indices."""
    H, W, C = x.shape
    (kh, kw), (sh, sw) = site.ksize, site.strides
    if site.padding == "VALID":
        oh, ow, top, left = (H - kh) // sh + 1, (W - kw) // sw + 1, 0, 0
    elif site.padding == "SAME":
        oh, ow = -(-H // sh), -(-W // sw)
        top = max((oh - 1) * sh + kh - H, 0) // 2
        left = max((ow - 1) * sw + kw - W, 0) // 2
    else:
        raise NotImplementedError(f"max-pool padding {site.padding!r}")
    if oh <= 0 or ow <= 0:
        return np.zeros((0, 2), np.int64)
    rows = np.arange(oh)[:, None] * sh - top + np.arange(kh)[None]  # [oh, kh]
    cols = np.arange(ow)[:, None] * sw - left + np.arange(kw)[None]  # [ow, kw]
    r = np.broadcast_to(rows[:, None, :, None], (oh, ow, kh, kw)).reshape(oh, ow, kh * kw)
    c = np.broadcast_to(cols[None, :, None, :], (oh, ow, kh, kw)).reshape(oh, ow, kh * kw)
    valid = (r >= 0) & (r < H) & (c >= 0) & (c < W)
    pos = np.clip(r, 0, H - 1) * W + np.clip(c, 0, W - 1)  # [oh, ow, K] spatial index
    channels = np.arange(C) if site.channels is None else np.asarray(site.channels, np.int64)
    vals = x.reshape(H * W, C)[pos][..., channels].astype(np.float64)  # [oh, ow, K, c]
    vals = np.where(valid[..., None], vals, -np.inf)
    top_k = np.argmax(vals, axis=2)  # [oh, ow, c]
    vmax = np.take_along_axis(vals, top_k[:, :, None, :], axis=2)  # [oh, ow, 1, c]
    near = (vmax - vals <= tol_abs) & valid[..., None]
    near &= np.arange(kh * kw)[None, None, :, None] != top_k[:, :, None, :]
    if site.clamp is None:
        clamped = (vmax == 0) & (vals == 0)  # both ReLU-clamped: no gradient (see module doc)
    else:
        value = np.asarray(site.clamp, np.float64)[channels]  # [c]
        slack = 1e-5 * np.maximum(np.abs(value), 1.0)  # the same affine map of 0, up to float32 rounding
        clamped = (np.abs(vmax - value) <= slack) & (np.abs(vals - value) <= slack)
    near &= ~clamped
    o1, o2, k_other, ci = np.nonzero(near)
    first = pos[o1, o2, top_k[o1, o2, ci]] * C + channels[ci]
    second = pos[o1, o2, k_other] * C + channels[ci]
    pairs = np.stack([np.minimum(first, second), np.maximum(first, second)], 1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2).astype(np.int64)


def _kinks_from_values(sites, values, tol: float, scale: str) -> Kinks:
    batch = values[0].shape[0] if values else 0
    sizes = [int(np.prod(v.shape[1:])) for v in values]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    first, second, site_of, distance = [], [], [], []
    for b in range(batch):
        f_b, s_b, o_b, d_b = [], [], [], []
        for i, (site, v) in enumerate(zip(sites, values)):
            x = np.asarray(v[b], np.float64)
            sc = _scale(x, scale)
            if sc == 0:
                continue
            tol_abs = tol * sc
            flat = x.reshape(-1)
            if site.kind == "switch":
                idx = _switch_kinks(x, site.points, tol_abs)
                f_b.append(idx + offsets[i])
                s_b.append(np.full(idx.shape, -1, np.int64))
                d_b.append(np.min(np.abs(flat[idx, None] - np.asarray(site.points)[None]), axis=1) / sc)
            else:
                if x.ndim != 3:
                    raise ValueError(f"max-pool site {site.name!r} has per-sample shape {x.shape}; expected [H, W, C]")
                pairs = _pool_kinks(x, site, tol_abs)
                f_b.append(pairs[:, 0] + offsets[i])
                s_b.append(pairs[:, 1] + offsets[i])
                d_b.append(np.abs(flat[pairs[:, 0]] - flat[pairs[:, 1]]) / sc)
            o_b.append(np.full(len(f_b[-1]), i, np.int64))
        cat = lambda parts, dtype=np.int64: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
        first.append(cat(f_b))
        second.append(cat(s_b))
        site_of.append(cat(o_b))
        distance.append(cat(d_b, np.float64))
    return Kinks(list(sites), sizes, first, second, site_of, distance, float(tol), scale)


def _check_tol(tol, scale):
    tol = float(tol)
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol}")
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
    return tol


def _flatten(params, batch) -> np.ndarray:
    return np.concatenate([np.asarray(p, np.float32).reshape(batch, -1) for p in params], axis=1)


def _unflatten(z, param):
    shapes = [tuple(v.shape) for v in param.variables]
    parts = tf.split(z, [int(np.prod(s[1:])) for s in shapes], axis=1)
    return [tf.reshape(p, s) for p, s in zip(parts, shapes)]


def find_kinks(model, layer: str, realization, param=None, tol: float = DEFAULT_TOL, scale: str = "rms",
               aggregation=None, features=None, include_aggregation: bool = True) -> Kinks:
    """The kinks each realization sits on (see the module docstring for the rule).

    Args:
      model: a `modelzoo.graph.GraphModel` (or a supported `KerasModel`).
      layer: the studied layer; kinks upstream of it count.
      realization: images, parameter arrays or a `RenderResult` (as `ifv.invert`).
      param: the FV's parametrization (as `ifv.invert`).
      tol: relative tolerance; scale: ``"rms"``, ``"max"`` or ``"absolute"``.
      aggregation, features: the FV's; with the default aggregation (max-pool 3/2 then
        mean) its pool's ties count too, unless ``include_aggregation=False``.
    """
    tol = _check_tol(tol, scale)
    probe = _probe(model, layer, aggregation, features, include_aggregation)
    param, params = ifv.resolve_realization(model, realization, param, "params")
    images = param(params)
    values = [np.asarray(v) for v in probe(images)]
    return _kinks_from_values(probe.sites, values, tol, scale)


# -- kink gradients ---------------------------------------------------------------------------
_JACOBIAN_FNS: dict = {}


def clear_cache() -> None:
    """Forget the cached probes and compiled kink Jacobians (they hold model references)."""
    sites_mod.clear_cache()
    _JACOBIAN_FNS.clear()


def _kink_jacobian_fn(probe: _Probe, param):
    """Compiled per probe and parametrization *structure* (as `ifv.feature_jacobian`): a fresh
    parametrization of the same kind reuses the trace (the function reads only its argument)."""
    from lucid_ifv.ifv.jacobian import _param_key
    from lucid_ifv.ifv.lean_gradients import lean_activation_gradients

    key = (id(probe), _param_key(param))
    if key in _JACOBIAN_FNS:
        return _JACOBIAN_FNS[key][0]

    @tf.function(reduce_retracing=True, autograph=False)  # plain Python control flow only
    def jacobian(z, first, second, has_second):
        """One chunk of kink rows ``[B, c]`` -> their gradients ``[B, c, D]`` (pfor over rows)."""
        # no per-row copies of the activations; the forward pass is inside too (a frozen graph
        # builds its backward function there: `ifv.jacobian`)
        with lean_activation_gradients():
            with tf.GradientTape() as tape:
                tape.watch(z)
                tensors = probe(param(_unflatten(z, param)))
                u = tf.concat([tf.reshape(t, [tf.shape(t)[0], -1]) for t in tensors], axis=1)
                kappa = tf.gather(u, first, batch_dims=1) - has_second * tf.gather(u, second, batch_dims=1)
            return tape.batch_jacobian(kappa, z, experimental_use_pfor=True)

    _JACOBIAN_FNS[key] = (jacobian, probe, param)
    return jacobian


def kink_gradients(model, layer: str, realization, param=None, tol: float = DEFAULT_TOL, scale: str = "rms",
                   aggregation=None, features=None, include_aggregation: bool = True, chunk: int = 64,
                   kinks: Kinks | None = None, return_kinks: bool = False, max_kinks: int | None = None):
    """Gradients of the kink functions w.r.t. the FV's parameters: ``[B, r_max, D]`` float32.

    Row ``j`` of sample ``b`` is ``grad_z kappa_j`` (see `Kinks`); samples with fewer than
    ``r_max`` kinks are padded with zero rows. The rows are computed ``chunk`` at a time
    (for every sample at once) by one compiled function with a vectorized (pfor) batch
    Jacobian, so it is traced once per chunk size.

    Args: as `find_kinks`; ``kinks`` reuses an earlier `find_kinks` result;
      ``return_kinks`` also returns it: ``(grads, kinks)``; ``max_kinks`` (default: D, the
      number of parameters): samples with more kinks get zero rows and are flagged in
      ``kinks.skipped`` (their kink span would be (nearly) everything).
    """
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    tol = _check_tol(tol, scale)
    probe = _probe(model, layer, aggregation, features, include_aggregation)
    param, params = ifv.resolve_realization(model, realization, param, "params")
    z = _flatten(params, param.batch)
    if kinks is None:
        values = [np.asarray(v) for v in probe(param(params))]
        kinks = _kinks_from_values(probe.sites, values, tol, scale)
    batch, dim = z.shape
    if len(kinks.first) != batch:
        raise ValueError(f"kinks for {len(kinks.first)} samples, realization has {batch}")
    max_kinks = dim if max_kinks is None else int(max_kinks)
    counts = kinks.counts
    kinks.skipped = counts > max_kinks
    counts = np.where(kinks.skipped, 0, counts)
    r_max = int(counts.max(initial=0))
    if r_max == 0:
        grads = np.zeros((batch, 0, dim), np.float32)
        return (grads, kinks) if return_kinks else grads
    r_pad = -(-r_max // chunk) * chunk
    first = np.zeros((batch, r_pad), np.int64)
    second = np.zeros((batch, r_pad), np.int64)
    has_second = np.zeros((batch, r_pad), np.float32)
    valid = np.zeros((batch, r_pad), bool)
    for b in range(batch):
        n = int(counts[b])
        first[b, :n] = kinks.first[b][:n]
        second[b, :n] = np.maximum(kinks.second[b][:n], 0)
        has_second[b, :n] = kinks.second[b][:n] >= 0
        valid[b, :n] = True
    fn = _kink_jacobian_fn(probe, param)
    z_t = tf.constant(z)
    grads = np.zeros((batch, r_max, dim), np.float32)
    for start in range(0, r_max, chunk):
        cols = slice(start, start + chunk)
        block = fn(z_t, tf.constant(first[:, cols]), tf.constant(second[:, cols]),
                   tf.constant(has_second[:, cols])).numpy()
        block *= valid[:, cols, None]  # padding rows (index 0) become zero rows
        stop = min(start + chunk, r_max)
        grads[:, start:stop] = block[:, : stop - start]
    return (grads, kinks) if return_kinks else grads


# -- projection -------------------------------------------------------------------------------
def _per_sample(kink_grads, batch, dim) -> list:
    if isinstance(kink_grads, (list, tuple)):
        rows = [np.asarray(g, np.float64).reshape(-1, dim) for g in kink_grads]
    else:
        arr = np.asarray(kink_grads, np.float64)
        if arr.ndim != 3:
            raise ValueError(f"kink gradients of shape {arr.shape}; expected [B, r, D] or a list of [r_b, D]")
        rows = list(arr)
    if len(rows) != batch:
        raise ValueError(f"kink gradients for {len(rows)} samples, expected {batch}")
    for g in rows:
        if g.shape[1] != dim:
            raise ValueError(f"kink gradients with {g.shape[1]} parameters, expected D = {dim}")
        check_finite(g, "kink gradients")
    return rows


def kink_basis(kink_grads, rank_tol: float = DEFAULT_RANK_TOL) -> list:
    """Per sample, an orthonormal basis ``[D, rho]`` of the span of the kink gradients.

    Rows are normalized first (zero rows, e.g. padding, are dropped), so every kink counts
    whatever the magnitude of its gradient; then an SVD keeps the right-singular vectors
    whose singular values exceed ``rank_tol`` times the largest.
    """
    dim = np.asarray(kink_grads[0]).shape[-1]
    out = []
    for g in _per_sample(kink_grads, len(kink_grads), dim):
        norms = np.linalg.norm(g, axis=1)
        keep = norms > np.finfo(np.float32).tiny
        if not keep.any():
            out.append(np.zeros((dim, 0)))
            continue
        unit = g[keep] / norms[keep, None]
        _, s, vt = np.linalg.svd(unit, full_matrices=False)
        out.append(vt[s > rank_tol * s[0]].T)
    return out


def project_out_kinks(jac, prior_grads, kink_grads, rank_tol: float = DEFAULT_RANK_TOL,
                      return_ranks: bool = False):
    """Project Jacobian rows and prior gradients onto the complement of the kink span.

    Args:
      jac: ``[B, k, D]`` feature Jacobians.
      prior_grads: ``[B, n, D]`` prior gradients, or None.
      kink_grads: ``[B, r, D]`` (zero rows allowed) or a list of ``[r_b, D]`` arrays.
      rank_tol: see `kink_basis`.
      return_ranks: also return the span's dimension per sample ``[B]``.
    Returns:
      ``(jac_p, grads_p)`` float64 (``grads_p`` None when ``prior_grads`` is), and the
      ranks when asked: ``(jac_p, grads_p, ranks)``.
    """
    jac = check_finite(np.asarray(jac, np.float64), "Jacobians")
    if jac.ndim != 3:
        raise ValueError(f"Jacobians of shape {jac.shape}; expected [B, k, D]")
    batch, _, dim = jac.shape
    grads = None
    if prior_grads is not None:
        grads = check_finite(np.asarray(prior_grads, np.float64), "prior gradients")
        if grads.ndim != 3 or grads.shape[0] != batch or grads.shape[2] != dim:
            raise ValueError(f"prior gradients of shape {grads.shape}; expected [{batch}, n, {dim}]")
    bases = kink_basis(_per_sample(kink_grads, batch, dim), rank_tol)
    jac_p = jac.copy()
    grads_p = None if grads is None else grads.copy()
    for b, q in enumerate(bases):
        if q.shape[1] == 0:
            continue
        jac_p[b] -= (jac[b] @ q) @ q.T
        if grads_p is not None:
            grads_p[b] -= (grads[b] @ q) @ q.T
    ranks = np.array([q.shape[1] for q in bases], dtype=np.int64)
    return (jac_p, grads_p, ranks) if return_ranks else (jac_p, grads_p)


# -- the inversion ------------------------------------------------------------------------------
@dataclasses.dataclass
class TargetFreeResult(ifv.InversionResult):
    """`ifv.InversionResult` plus what the kink projection did.

    Extra attributes:
      kink_count: kinks found per sample ``[B]``.
      kink_rank: dimension of their gradients' span per sample ``[B]`` (of D parameters);
        -1 where the sample had more than ``max_kinks`` kinks (its target is NaN).
      kinks_by_kind: per sample ``{"switch", "maxpool", "aggregation"}`` counts.
      kink_tol: ``[B]`` the tolerance each sample's kinks were found at (``tol``, or a
        fallback; NaN: too many kinks at every one, or ``project=False``).
      dead_unprojected: ``[B, k]`` features whose *unprojected* Jacobian row is zero (at most
        ``ifv.DEAD_FLOOR`` of the largest row: dead at the realization, their target weight
        cannot be recovered). ``dead_features`` is what the solve left out (its rule, on the
        projected Jacobian).
      features: the channel indices the k features are (None: all channels in order).
    """

    kink_count: np.ndarray | None = None
    kink_rank: np.ndarray | None = None
    kinks_by_kind: list | None = None
    kink_tol: np.ndarray | None = None
    dead_unprojected: np.ndarray | None = None
    features: np.ndarray | None = None

    def channel_verdicts(self, factor: float | None = None) -> np.ndarray:
        """`channel_verdicts` of this result: how far to trust each answer's top channel."""
        return channel_verdicts(self, CHANNEL_MARGIN_FACTOR if factor is None else factor)


_DEFAULT_PRIOR = "params_L2"


def invert_target_free(model, layer: str, realization, param=None, prior=_DEFAULT_PRIOR, cossim_pow: float = 1,
                       method: str | None = "nonneg", tol: float = DEFAULT_TOL, aggregation=None, features=None,
                       scale: str = "rms", rank_tol: float = DEFAULT_RANK_TOL, include_aggregation: bool = True,
                       project: bool = True, chunk: int | None = None, kink_chunk: int = 64,
                       max_kinks: int | None = None, dead_tol="auto", dither="auto",
                       dither_seed: int = 0, fallback_tols=FALLBACK_TOLS) -> TargetFreeResult:
    """Which objective was this realization optimized for? Grad-IFV with the kinks projected out.

    Nothing about the true target is used: only the realization, the network and the
    assumed form of the FV objective (aggregation, ``p``, prior terms without weights).

    Args:
      model, layer: the network and the studied layer.
      realization: images ``[B, H, W, C]`` (e.g. loaded from PNG files), parameter arrays
        or a `RenderResult`.
      param: the FV's parametrization (default: the render default for the model).
      prior: the FV's prior term(s) (weights unknown); default ``params_L2()``; None for
        none (then use ``method=None``, the paper's solve).
      cossim_pow, aggregation, features: the FV objective's form.
      method: `ifv.solve`'s method: ``"nonneg"`` (default: non-negative prior-anchored least
        squares), ``"anchored"``, ``"prior_aware"``, ``"paper"`` or None (`ifv.solve`'s default).
      tol, scale, include_aggregation: the kink rule (`find_kinks`).
      rank_tol: rank tolerance of the kink span (`kink_basis`).
      project: False skips the projection (the plain solve, for comparison).
      chunk: features per Jacobian block (`ifv.feature_jacobian`); kink_chunk: kink rows
        per Jacobian block (`kink_gradients`).
      max_kinks: a sample on more kinks than this (default D) at ``tol`` is solved at the
        largest of ``fallback_tols`` (smaller tolerances, default `FALLBACK_TOLS`; ``()`` for
        none) at which it is not (``kink_tol``); on too many at all of them it gets no answer
        (NaN target, ``kink_rank`` -1, verdict "no signal"): see `Kinks.skipped`.
      dead_tol: see `ifv.solve`.
      dither, dither_seed: re-dithered inversions that check an answer from quantized
        images, as `ifv.invert` (``"auto"``: 4 for images on the 8-bit grid, e.g. PNGs, else
        0; each costs one more inversion, kink gradients included). The verdict then judges
        the answer without the rounding's share (`lucid_ifv.ifv.dither`).
    Returns:
      `TargetFreeResult` (an `ifv.InversionResult`); ``.channel_verdicts()`` says how far to
      trust each answer's top channel, ``.verdicts()`` / ``.describe(i)`` its whole direction
      (`docs/target_free.md`, "Two verdicts"; measured in part (a'') there).
    """
    from lucid_ifv.ifv.dither import invert_and_check
    from lucid_ifv.ifv.invert import _dither_count

    tol = _check_tol(tol, scale)  # bad settings are refused before any work
    fallback_tols = tuple(_check_tol(t, scale) for t in fallback_tols)
    n_dither = _dither_count(dither, realization, dither_seed)
    if n_dither:
        def invert_images(images):
            return invert_target_free(model, layer, images, param, prior, cossim_pow, method, tol, aggregation,
                                      features, scale, rank_tol, include_aggregation, project, chunk, kink_chunk,
                                      max_kinks, dead_tol, dither=0, fallback_tols=fallback_tols)

        return invert_and_check(invert_images, realization, n_dither, dither_seed, cossim_pow)
    if isinstance(prior, str) and prior == _DEFAULT_PRIOR:
        prior = objectives_mod.params_L2()
    param, params = ifv.resolve_realization(model, realization, param, "params")
    f, jac = ifv.feature_jacobian(model, layer, params, param, aggregation, features, chunk=chunk)
    grads = None if prior is None else ifv.prior_gradients(model, prior, params, param)
    batch = f.shape[0]
    if project:
        found = find_kinks(model, layer, params, param, tol, scale, aggregation, features, include_aggregation)
        found = found.fit_tolerances([tol, *[t for t in fallback_tols if t < tol]],
                                     jac.shape[2] if max_kinks is None else int(max_kinks))
        kgrads, kinks = kink_gradients(model, layer, params, param, tol, scale, aggregation, features,
                                       include_aggregation, kink_chunk, kinks=found, return_kinks=True,
                                       max_kinks=max_kinks)
        jac_p, grads_p, ranks = project_out_kinks(jac, grads, kgrads, rank_tol, return_ranks=True)
        counts, by_kind, skipped = kinks.counts, kinks.counts_by_kind(), kinks.skipped
        ranks = np.where(skipped, -1, ranks)
        kink_tol = kinks.sample_tol
    else:
        jac_p, grads_p = jac, grads
        ranks, counts, by_kind = np.zeros(batch, np.int64), np.zeros(batch, np.int64), None
        skipped = np.zeros(batch, bool)
        kink_tol = np.full(batch, np.nan)
    rows = np.linalg.norm(np.asarray(jac, np.float64), axis=2)
    dead = rows <= ifv.DEAD_FLOOR * np.maximum(rows.max(axis=1, keepdims=True), np.finfo(float).tiny)
    result = ifv.solve(f, jac_p, cossim_pow, prior_grads=grads_p, dead_tol=dead_tol, method=method)
    result.target[skipped] = np.nan  # too many kinks: no answer rather than the unprojected one,
    result.residual[skipped] = np.nan  # and the verdict "no signal"
    fields = {fld.name: getattr(result, fld.name) for fld in dataclasses.fields(result)}
    return TargetFreeResult(**fields, kink_count=counts, kink_rank=ranks, kinks_by_kind=by_kind,
                            kink_tol=kink_tol, dead_unprojected=dead,
                            features=None if features is None else np.asarray(features, np.int64))


#: A top channel counts as identified when the nearest answer with another top channel is this
#: many times the re-dithered spread away. If the rounding moved the answer by an angle whose
#: median is the spread (half-normal), it exceeds 2.44 times the median 10 % of the time; the
#: part of the move that could swap the top two channels is smaller still. Set a priori, not fit.
CHANNEL_MARGIN_FACTOR = 2.44
CHANNEL_VERDICTS = ("identified", "uncertain", "no answer", "unchecked")


def oriented(target) -> np.ndarray:
    """``[B, k]`` answers with each row that has no positive entry and a negative one negated.

    Such a row is the mirror image of a non-negative answer: the non-negative solve on a
    sign-symmetric objective (odd ``p``) returns ``t <= 0`` when the render ended with
    ``<f, t> < 0`` (`lucid_ifv.ifv.solve`), and ``-t`` is the same objective. Ranking channels
    needs the non-negative representative; mixed-sign rows are left as they are."""
    target = np.atleast_2d(np.asarray(target, np.float64))
    with np.errstate(invalid="ignore"):
        mirrored = ~np.any(target > 0, axis=1) & np.any(target < 0, axis=1)
    return np.where(mirrored[:, None], -target, target)


def margin_angle(target) -> np.ndarray:
    """``[B]`` degrees from each answer ``[B, k]`` to the nearest answer whose largest entry is
    another feature: the angle to the hyperplane ``t_1 = t_2`` of its two largest entries,
    ``asin((t_1 - t_2) / (sqrt(2) |t|))`` (rows as `oriented`). NaN for rows without an answer
    (NaN, or all zero)."""
    target = oriented(target)
    if target.shape[1] < 2:
        return np.full(len(target), np.nan)
    top2 = -np.sort(-np.nan_to_num(target, nan=-np.inf), axis=1)[:, :2]
    norm = np.linalg.norm(np.nan_to_num(target), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sine = (top2[:, 0] - top2[:, 1]) / (np.sqrt(2.0) * norm)
        angle = np.degrees(np.arcsin(np.clip(sine, 0.0, 1.0)))
    return np.where(np.isfinite(target).all(axis=1) & (norm > 0), angle, np.nan)


def channel_verdicts(result, factor: float = CHANNEL_MARGIN_FACTOR) -> np.ndarray:
    """How far to trust the *top channel* of each answer of a re-dithered target-free
    inversion -> ``[B]`` str, one of `CHANNEL_VERDICTS`:

    - "no answer": nothing was solved (too many kinks, or every feature dead);
    - "unchecked": the input was not re-dithered (``dither=0``, or float images with
      ``dither="auto"``): nothing measured how far the answer can move; pass ``dither=4``;
    - "identified": the nearest answer with another top channel (`margin_angle`) is more than
      ``factor`` times the re-dithered spread (``result.dither_spread``) away;
    - "uncertain": otherwise.

    This judges only the ranking's first place, which can be sound when `ifv.verdicts` (about
    the whole target direction, within 5 deg) is not; calibration: `docs/target_free.md`.
    """
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
    margin = margin_angle(result.target)
    spread = getattr(result, "dither_spread", None)
    if spread is None:
        return np.where(np.isnan(margin), "no answer", "unchecked").astype(str)
    with np.errstate(invalid="ignore"):
        sound = margin > factor * np.asarray(spread, np.float64)
    return np.select([np.isnan(margin), sound], ["no answer", "identified"], "uncertain").astype(str)


def top_channels(result, n: int = 5, features=None) -> np.ndarray:
    """Channels ranked by predicted weight, largest first: ``[B, n]`` channel indices.

    ``features`` (or ``result.features``) maps feature positions to channel indices. Rows
    without an answer (all-NaN target) are -1; a non-positive row is ranked as its mirror
    image (`oriented`).
    """
    target = np.asarray(result.target if hasattr(result, "target") else result, np.float64)
    if target.ndim == 1:
        target = target[None]
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    n = min(n, target.shape[1])
    unanswered = np.isnan(target).all(axis=1)
    order = np.argsort(-np.nan_to_num(oriented(target), nan=-np.inf), axis=1, kind="stable")[:, :n]
    features = getattr(result, "features", None) if features is None else features
    if features is not None:
        order = np.asarray(features, np.int64)[order]
    order[unanswered] = -1
    return order
