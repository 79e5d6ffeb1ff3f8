"""Grad-IFV end to end (`invert`), spectra for Algorithm 1, and angles modulo the trivial space."""

from __future__ import annotations

import numpy as np

from lucid_ifv.ifv.jacobian import feature_jacobian, prior_gradients, resolve_realization
from lucid_ifv.ifv.solve import (GramStatistics, InversionResult, _critical_basis, check_solve_options,
                                 gram_statistics, significance_matrix, solve)
from lucid_ifv.param import Param
from lucid_ifv.validation import check_cossim_pow, check_feature_indices, check_finite


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
      ``[B]`` angles in degrees (NaN where ``predicted`` is NaN: nothing was solved).
    """
    from lucid_ifv.metrics import angle_deg

    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    response = np.asarray(response, np.float64)
    trivial_basis = np.asarray(trivial_basis, np.float64).reshape(predicted.shape[1], -1)
    solved = np.all(np.isfinite(predicted), axis=1)
    angles = np.full(predicted.shape[0], np.nan)
    if not solved.any():
        return angles
    predicted, target, response = predicted[solved], target[solved], response[solved]
    if trivial_basis.shape[1] == 0:
        angles[solved] = angle_deg(predicted, target)
        return angles
    shifted = np.linalg.solve(significance_matrix(response, cossim_pow), trivial_basis[None])  # [B, k, r]
    q = np.linalg.qr(shifted)[0]
    project = lambda v: v - np.einsum("bkr,br->bk", q, np.einsum("bkr,bk->br", q, v))  # noqa: E731
    angles[solved] = angle_deg(project(predicted), project(target))
    return angles


def _check_images(realization, model=None) -> None:
    """Images (anything but a `RenderResult` or a list of parameter arrays) must be finite,
    non-empty and in [0, 1], as `lucid_ifv.imageio.load_images` and the CLI require: the
    parametrizations map only [0, 1] back to parameters, so anything else would be clipped
    or give NaN parameters, silently. Geometry images (a model whose ``input_kind`` is
    "geometry") have normals in [-1, 1] and depth and mask in [0, 1]."""
    from lucid_ifv.render import RenderResult

    if isinstance(realization, (RenderResult, list, tuple)):
        return
    try:
        images = np.asarray(realization, np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"images must be a numeric array [B, H, W, C] in [0, 1], got {type(realization).__name__} "
                         f"({' '.join(str(err).split())})") from None
    check_finite(images, "images")
    if images.size == 0:
        raise ValueError(f"images of shape {images.shape} hold no pixels; expected [B, H, W, C] with B >= 1")
    if getattr(model, "input_kind", "image") == "geometry" and images.shape[-1] == 5:
        normals, rest = images[..., :3], images[..., 3:]
        if normals.min() < -1 or normals.max() > 1 or rest.min() < 0 or rest.max() > 1:
            raise ValueError(f"geometry images need normals in [-1, 1] and depth and mask in [0, 1], got normals in "
                             f"[{normals.min():.3g}, {normals.max():.3g}] and depth/mask in "
                             f"[{rest.min():.3g}, {rest.max():.3g}]")
        return
    lo, hi = float(images.min()), float(images.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"image values must be in [0, 1], got [{lo:.3g}, {hi:.3g}] (rescale them, e.g. uint8 / 255)")


def _dither_count(dither, realization, dither_seed=0) -> int:
    """Re-dithered inversions for ``invert(..., dither=, dither_seed=)``: refuses a bad value
    or seed, or dithering of anything but images, before any work."""
    from lucid_ifv.ifv.dither import DITHER_SAMPLES, on_8bit_grid
    from lucid_ifv.render import RenderResult

    is_images = not isinstance(realization, (RenderResult, list, tuple))
    if isinstance(dither, str):
        if dither != "auto":
            raise ValueError(f"dither must be 'auto' or an integer >= 0, got {dither!r}")
        dither = DITHER_SAMPLES if is_images and on_8bit_grid(realization) else 0
    elif isinstance(dither, bool) or not isinstance(dither, (int, np.integer)) or dither < 0:
        raise ValueError(f"dither must be 'auto' or an integer >= 0, got {dither!r}")
    if dither and (isinstance(dither_seed, bool) or not isinstance(dither_seed, (int, np.integer)) or dither_seed < 0):
        raise ValueError(f"dither_seed must be an integer >= 0, got {dither_seed!r}")
    if dither and not is_images:
        raise ValueError(f"dither={dither} re-dithers images; got {type(realization).__name__}, not an image array")
    return int(dither)


def invert(model, layer: str, realization, param: Param | None = None, cossim_pow: float = 1,
           aggregation=None, critical_space=None, features=None, prior=None, wrt: str = "params",
           chunk: int | None = None, dead_tol="auto", method: str | None = None,
           expected_prior_weight=None, transforms=None, n_transforms: int = 16,
           transform_seed: int = 0, dither="auto", dither_seed: int = 0,
           feature_scales=None) -> InversionResult:
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
        known; None: no prior (only ``method="paper"`` is possible then).
      wrt: differentiate w.r.t. ``"params"`` (default) or ``"pixels"``.
      chunk: features per vectorized Jacobian block.
      dead_tol, method, expected_prior_weight: see `solve` (default: auto tolerance; the
        prior-aware solve with a prior, the paper's without).
      transforms: None (default): the FV had no random transforms. A list of transforms
        (`lucid_ifv.transform`, e.g. ``standard_transforms``): the FV was rendered with them;
        solve the expected stationarity equation over ``n_transforms`` draws seeded from
        ``transform_seed`` (`lucid_ifv.ifv.robust`, ``wrt="params"`` only).
      dither: re-dithered inversions that check an answer from quantized images
        (`lucid_ifv.ifv.dither`; each costs one more inversion). ``"auto"`` (default):
        `dither.DITHER_SAMPLES` when ``realization`` is images whose values all lie on the
        8-bit grid (a PNG), else 0. With it the result carries ``dither_spread`` and
        ``denoised_residual``, and the verdict takes the rounding's share out of the
        residual and the error bars and asks for a small spread (`diagnostics.verdicts`).
        ``dither_seed`` (an integer >= 0): their noise.
      feature_scales: None, or ``[d]`` positive units of the inverted features (``d``: the
        layer's depth, or ``len(features)``): feature ``j`` is read as ``f_j / feature_scales[j]``
        and the answer is in those units. Two networks whose features differ only by
        positive factors then give the same solve, dead features and verdicts when each is
        read in its own units (e.g. `feature_rms`; `lucid_ifv.compare`).
    Returns:
      `InversionResult` (index it for one sample's `SampleInversion`; ``.verdicts()``,
      ``.describe(i)`` say how far to trust each answer).
    """
    _check_images(realization, model)
    cossim_pow = check_cossim_pow(cossim_pow)
    if prior is not None and not callable(prior):
        raise ValueError(f"prior must be the FV's prior objective (e.g. objectives.params_L2()) or None, got {prior!r}")
    check_solve_options(method, prior is not None, dead_tol, expected_prior_weight)
    if features is not None:  # the solve needs each feature once
        check_feature_indices(features)
    scales = _check_feature_scales(feature_scales, model, layer, features)
    if critical_space is not None:  # a wrong basis is refused before the Jacobian, not after
        _critical_basis(critical_space, len(features) if features is not None else model.layer(layer).depth)
    n_dither = _dither_count(dither, realization, dither_seed)
    if n_dither:
        from lucid_ifv.ifv.dither import invert_and_check

        def invert_images(images):
            return invert(model, layer, images, param, cossim_pow, aggregation, critical_space, features, prior,
                          wrt, chunk, dead_tol, method, expected_prior_weight, transforms, n_transforms,
                          transform_seed, dither=0, feature_scales=feature_scales)

        return invert_and_check(invert_images, realization, n_dither, dither_seed, cossim_pow)
    param, params = resolve_realization(model, realization, param, wrt)
    grads = None if prior is None else prior_gradients(model, prior, params, param)
    if transforms is not None:
        from lucid_ifv.ifv.robust import solve_expected, transformed_jacobians

        if wrt != "params":
            raise ValueError(f"transforms need wrt='params' (the FV's parameters), got wrt={wrt!r}")
        f, jac = transformed_jacobians(model, layer, params, param, transforms, n_transforms, transform_seed,
                                       aggregation, features, chunk)
        f, jac = _in_units(f, jac, scales)
        return solve_expected(f, jac, cossim_pow, grads, critical_space=critical_space, dead_tol=dead_tol,
                              method=method, expected_prior_weight=expected_prior_weight)
    f, jac = feature_jacobian(model, layer, params, param, aggregation, features, chunk=chunk)
    precision = float(np.finfo(jac.dtype).eps)  # float32's, or float64's on `lucid_ifv.precision` copies
    f, jac = _in_units(f, jac, scales)
    return solve(f, jac, cossim_pow, critical_space, grads, dead_tol, method, expected_prior_weight, precision)


def _check_feature_scales(feature_scales, model, layer: str, features) -> np.ndarray | None:
    """``[d]`` float32 positive finite scales, or None; ValueError naming what is wrong."""
    if feature_scales is None:
        return None
    scales = np.asarray(feature_scales, np.float64)
    d = len(features) if features is not None else model.layer(layer).depth
    if scales.shape != (d,) or not np.all(np.isfinite(scales)) or not np.all(scales > 0):
        raise ValueError(f"feature_scales must be {d} positive finite numbers (one per inverted feature of "
                         f"{layer!r}), got shape {scales.shape}"
                         + ("" if scales.shape != (d,) else f", min {scales.min():g}"))
    return scales.astype(np.float32)


def _in_units(f, jac, scales):
    """``f`` ``[..., d]`` and ``J`` ``[..., d, D]`` with feature ``j`` divided by ``scales[j]``."""
    if scales is None:
        return f, jac
    return f / scales, jac / scales[:, None]


def invert_robust(model, layer: str, realization, param: Param | None = None, transforms=None,
                  n_transforms: int = 16, seed: int = 0, **invert_options) -> InversionResult:
    """`ifv.invert` for a visualization rendered with random ``transforms`` (None: Lucid's
    standard transforms; pass the ones the FV used), from ``n_transforms`` seeded draws."""
    from lucid_ifv import transform as transform_mod

    transforms = list(transform_mod.standard_transforms) if transforms is None else list(transforms)
    if not transforms:
        raise ValueError("transforms is empty: use `invert` for visualizations rendered without transforms")
    return invert(model, layer, realization, param, transforms=transforms, n_transforms=n_transforms,
                  transform_seed=seed, **invert_options)
