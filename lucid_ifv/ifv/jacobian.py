"""Feature responses, their Jacobians and prior gradients of a batch of realizations.

For a realization with parameters ``z`` (``[B, D]`` flattened per sample), the feature
response is ``f = h(z)`` (``[B, k]``) and its Jacobian ``J = dh/dz`` (``[B, k, D]``); a prior
term ``R`` contributes ``grad_z R`` (``[B, D]``). Everything here runs in float32, the
network's own precision; the solves (`lucid_ifv.ifv.solve`) take it from there in float64.
"""

from __future__ import annotations

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
