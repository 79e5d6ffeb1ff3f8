"""Grad-IFV: recover the target objective a feature visualization was optimized for.

For a realization with parameters ``z`` (per sample), feature response ``f = h(z)`` and
Jacobian ``J = dh/dz`` (``[k, D]``), local optimality of ``m(h(z), t) - sum_j lam_j R_j``
means ``s J^T A(f) t = sum_j lam_j grad R_j`` with ``A(f) = (p+1) I - p f f^T / |f|^2``. The
modules, in the order the data flows:

- `jacobian`: ``f``, ``J`` and the prior gradients of a batch of realizations (float32);
- `solve`: the Gram statistics and the solves (``method=`` ``"paper"``, ``"prior_aware"``,
  ``"anchored"``, ``"nonneg"``), float64, per-sample dead features;
- `diagnostics`: residuals, near-null directions, the dead-feature tolerance, verdicts;
- `invert`: the whole pipeline, spectra for Algorithm 1, angles modulo the trivial space;
- `robust`: the same for visualizations rendered with random transforms (`invert_robust`);
- `dither`: how far to trust an answer from quantized (8-bit) images: re-dither, invert again.

Everything public (and the private helpers older code used) is re-exported here, so
``from lucid_ifv import ifv; ifv.solve_gram(...)`` works.
"""

from lucid_ifv.ifv.diagnostics import (
    DEAD_FLOOR,
    DEAD_MAX_TOL,
    DEAD_NOISE_FACTOR,
    NULL_RTOL,
    VERDICTS,
    VerdictRule,
    describe,
    verdicts,
)
from lucid_ifv.ifv.invert import angle_modulo_trivial, invert, invert_robust, jacobian_spectra
from lucid_ifv.ifv.jacobian import (
    _JACOBIAN_FNS,
    _flatten,
    _jacobian_fn,
    _unflatten,
    clear_cache,
    feature_jacobian,
    prior_gradients,
    resolve_realization,
)
from lucid_ifv.ifv.robust import solve_expected, transformed_jacobians
from lucid_ifv.ifv.solve import (
    DEFAULT_METHOD_WITH_PRIOR,
    METHODS,
    PRIOR_METHODS,
    GramStatistics,
    InversionResult,
    SampleInversion,
    _critical_basis,
    _restrict,
    gram_statistics,
    resolve_method,
    significance_matrix,
    solve,
    solve_gram,
)

__all__ = [
    "DEAD_FLOOR", "DEAD_MAX_TOL", "DEAD_NOISE_FACTOR", "NULL_RTOL", "VERDICTS", "VerdictRule", "describe",
    "verdicts", "angle_modulo_trivial", "invert", "jacobian_spectra", "clear_cache", "feature_jacobian",
    "prior_gradients", "resolve_realization", "DEFAULT_METHOD_WITH_PRIOR", "METHODS", "PRIOR_METHODS",
    "GramStatistics", "InversionResult", "SampleInversion", "gram_statistics", "resolve_method",
    "significance_matrix", "solve", "solve_gram", "invert_robust", "solve_expected", "transformed_jacobians",
]
