"""Feature responses, their Jacobians and prior gradients of a batch of realizations.

For a realization with parameters ``z`` (``[B, D]`` flattened per sample), the feature
response is ``f = h(z)`` (``[B, k]``) and its Jacobian ``J = dh/dz`` (``[B, k, D]``); a prior
term ``R`` contributes ``grad_z R`` (``[B, D]``). Everything here runs in the parametrization's
dtype: float32, the network's own precision, or float64 for the float64 copies of
`lucid_ifv.precision`; the solves (`lucid_ifv.ifv.solve`) take it from there in float64.

The Jacobian is computed ``c`` rows at a time by one compiled function ``(z, rows) -> (f,
J[rows])``: a forward pass, then ``c`` backward passes vectorized by ``pfor`` (each with the
one-hot cotangent of one feature, for all samples at once). Its trace (the ``pfor``
conversion of the backward graph, seconds on an Inception-style net) does not depend on
which or how many features are asked for, only on ``c``; it is cached by what determines
the graph (`_cache_key`): the model and layer, the parametrization's *structure*
(`Param.structure_key`, not the object or its values), the aggregation, ``c``, the batch
and the parameter count. A fresh parametrization of the same structure (every
``ifv.invert(model, layer, images)`` call builds one) reuses the compiled function, and at
most `CACHE_SIZE` of them are kept (least recently used first out). By default ``c`` is
the largest equal split whose estimated backward-pass memory fits `BLOCK_BUDGET`
(`default_chunk`), the fastest measured (docs/performance.md).

The first call of a structure does not wait for the ``pfor`` trace: it runs *tiled* blocks
(`_tiled_fn`: ``c`` copies of the batch through one ordinary forward and backward pass,
traced in a fraction of a second, each row paying its own forward pass), and later calls run
the vectorized ones (`block_kind`). The two agree to float32 rounding (not bit for bit), so
runs whose records must not depend on the call history pin one kind (`fixed_blocks`).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from lucid_ifv import objectives as objectives_mod
from lucid_ifv.ifv.lean_gradients import lean_activation_gradients
from lucid_ifv.param import Param, PixelParam, image_for_model
from lucid_ifv.gradient_overrides import overridden_gradients
from lucid_ifv.render import RenderResult, step_gradients
from lucid_ifv.validation import check_feature_indices, check_finite

#: Compiled Jacobian functions kept (least recently used evicted first).
CACHE_SIZE = 8
#: Estimated bytes the vectorized backward pass of one Jacobian block may hold (see
#: `default_chunk`); ``LUCID_IFV_JACOBIAN_BLOCK_MB`` overrides it. Measured on
#: inception_small (docs/performance.md): blocks of about this size run fastest; larger
#: ones are no faster, first-run slower, and hold more memory.
BLOCK_BUDGET = 384 << 20

_JACOBIAN_FNS: collections.OrderedDict = collections.OrderedDict()
_ACTIVATION_SIZES: collections.OrderedDict = collections.OrderedDict()
_SEEN_STRUCTURES: collections.OrderedDict = collections.OrderedDict()  # `block_kind`'s memory
#: Every cache `clear_cache` empties (other modules add the ones whose keys feed this one's).
CACHES = [_JACOBIAN_FNS, _ACTIVATION_SIZES, _SEEN_STRUCTURES]
_STATS = {"traces": 0}


def clear_cache() -> None:
    """Forget the compiled Jacobian functions (they hold references to models and params)."""
    for cache in CACHES:
        cache.clear()
    _STATS["traces"] = 0


def cache_info() -> dict:
    """``{"entries": compiled functions cached, "traces": traces since the last
    `clear_cache`, "max_entries": CACHE_SIZE}``."""
    return {"entries": len(_JACOBIAN_FNS), "traces": _STATS["traces"], "max_entries": CACHE_SIZE}


# -- inputs ------------------------------------------------------------------------------
def _dtype(param: Param) -> tf.DType:
    """The dtype the realization is computed in: its parametrization's (float32, or float64 for
    `lucid_ifv.precision.Float64Param`)."""
    return param.variables[0].dtype if param.variables else tf.float32


def _flatten(params: Sequence[np.ndarray], batch: int, dtype: tf.DType = tf.float32) -> np.ndarray:
    """Parameter arrays ``[B, ...]`` -> ``[B, D]`` in ``dtype``."""
    return np.concatenate([np.asarray(p, dtype.as_numpy_dtype).reshape(batch, -1) for p in params], axis=1)


def _unflatten(z, param: Param):
    """``[n, D]`` tensor -> parameter tensors shaped like ``param.variables`` with batch ``n``
    (``n = B``, or ``c B`` for the tiled copies of a batch-agnostic parametrization)."""
    shapes = [tuple(v.shape[1:]) for v in param.variables]
    sizes = [int(np.prod(s)) for s in shapes]
    parts = tf.split(z, sizes, axis=1)
    return [tf.reshape(p, (-1, *s)) for p, s in zip(parts, shapes)]


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
    if param is not None and not param.per_sample and wrt == "params":
        raise ValueError(
            f"{param!r} is not per-sample (a variable feeds several batch elements, e.g. a lowres_tensor "
            f"shared across the batch): invert its images with a per-sample parametrization or wrt='pixels'"
        )
    if isinstance(realization, (list, tuple)):  # parameter arrays
        if param is None:
            raise ValueError(f"a {type(realization).__name__} of {len(realization)} arrays is read as parameter arrays, "
                             "which need their parametrization (param=...); for images pass one array "
                             "[B, H, W, C] (np.stack a list of images)")
        if len(realization) != len(param.variables):
            raise ValueError(f"{len(realization)} parameter arrays for a parametrization with {len(param.variables)} variables")
        params = []
        for value, var in zip(realization, param.variables):
            value = check_finite(np.asarray(value, var.dtype.as_numpy_dtype), "parameters")
            if value.shape != tuple(var.shape):
                raise ValueError(f"parameter array of shape {value.shape}, expected {tuple(var.shape)}")
            params.append(value)
        if wrt == "pixels":
            images = param(params).numpy()
            return PixelParam(images.shape, init_val=images), [images]
        return param, params
    dtype = tf.float32 if param is None else _dtype(param)
    images = check_finite(np.asarray(realization, dtype.as_numpy_dtype), "images")
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
@dataclasses.dataclass
class _Compiled:
    """A cached compiled Jacobian block with what its trace closes over (kept alive, so the
    identities in its key stay unique while it is cached)."""

    fn: object
    model: object
    param: Param
    aggregation: object


def _param_key(param: Param):
    key = param.structure_key() if hasattr(param, "structure_key") else None
    return ("identity", id(param)) if key is None else ("structure", key)


def _aggregation_key(aggregation):
    """A name, an aggregation's own ``.key`` (built by `lucid_ifv.aggregation`'s factories), or
    its identity (kept alive by the cache entry)."""
    from lucid_ifv.graph_keys import key_or_identity

    return key_or_identity(aggregation)


def _structure_key(model, layer, param, aggregation, dim):
    return (id(model), layer, _param_key(param), _aggregation_key(aggregation), param.batch, int(dim), _dtype(param).name)


def _cache_key(model, layer, param, aggregation, chunk, dim, kind="pfor"):
    return (*_structure_key(model, layer, param, aggregation, dim), int(chunk), kind)


def _cached(key):
    entry = _JACOBIAN_FNS.get(key)
    if entry is not None:
        _JACOBIAN_FNS.move_to_end(key)
    return entry


BLOCK_KINDS = ("auto", "pfor", "tiled")
_FIXED_KIND: contextvars.ContextVar = contextvars.ContextVar("lucid_ifv_jacobian_blocks", default=None)


@contextlib.contextmanager
def fixed_blocks(kind: str = "pfor"):
    """Within the block (or the decorated function), every `feature_jacobian` runs ``kind``
    blocks whatever the call history (`block_kind`; it overrides ``LUCID_IFV_JACOBIAN``).
    For runs whose records must not depend on which batch came first: tiled and vectorized
    blocks agree to float32 rounding, not bit for bit, and a resumed or distributed
    experiment must equal the uninterrupted serial one (`experiment.run_batch` uses it)."""
    if kind not in BLOCK_KINDS:
        raise ValueError(f"kind must be one of {BLOCK_KINDS}, got {kind!r}")
    token = _FIXED_KIND.set(kind)
    try:
        yield
    finally:
        _FIXED_KIND.reset(token)


def block_kind(model, layer, param, aggregation, dim) -> str:
    """How `feature_jacobian` computes its blocks for this structure: ``"tiled"`` (`_tiled_fn`:
    traced in a fraction of a second, each row pays its own forward pass) the first time a
    structure is seen, ``"pfor"`` (`_jacobian_fn`: a vectorized backward pass after one
    forward, traced in seconds, faster per row) from then on: a one-off inversion answers
    without the pfor trace, and repeated ones get the faster blocks from their second call
    on (docs/performance.md). Only tiled for per-sample, batch-agnostic parametrizations
    (`Param.batch_agnostic`). ``LUCID_IFV_JACOBIAN=pfor`` or ``=tiled`` forces one kind
    (where tiling applies), and so does `fixed_blocks`. Records the structure as seen."""
    mode = _FIXED_KIND.get() or os.environ.get("LUCID_IFV_JACOBIAN", "auto") or "auto"
    if mode not in BLOCK_KINDS:
        raise ValueError(f"LUCID_IFV_JACOBIAN must be auto, pfor or tiled, got {mode!r}")
    if not (param.per_sample and param.batch_agnostic):
        return "pfor"
    key = _structure_key(model, layer, param, aggregation, dim)
    seen = key in _SEEN_STRUCTURES
    _SEEN_STRUCTURES[key] = (model, param, aggregation)  # kept alive: the ids in the key stay unique
    _SEEN_STRUCTURES.move_to_end(key)
    _evict(_SEEN_STRUCTURES)
    if mode != "auto":
        return mode
    return "pfor" if seen else "tiled"


def _tiled_fn(model, layer, param, aggregation, chunk, dim):
    """`_jacobian_fn`'s block without pfor: ``chunk`` copies of the batch through one ordinary
    forward and backward pass (batch ``chunk B``), copy ``i`` with the one-hot cotangent of
    feature ``rows[i]`` (zero for -1). Same signature and result; cached (`_cache_key`, kind
    "tiled"). Needs a batch-agnostic parametrization (`Param.batch_agnostic`). Traced with the
    render step's gradients (`render.step_gradients`: an ordinary backward pass too)."""
    key = _cache_key(model, layer, param, aggregation, chunk, dim, "tiled")
    entry = _cached(key)
    if entry is not None:
        return entry.fn
    batch = param.batch
    spec = [tf.TensorSpec([batch, dim], _dtype(param)), tf.TensorSpec([chunk], tf.int32)]

    @tf.function(input_signature=spec, autograph=False)
    def response_and_jacobian(z, rows):
        _STATS["traces"] += 1  # Python side effect: runs once per trace
        copies = tf.tile(z, [chunk, 1])  # copy i is rows i B .. i B + B - 1
        with overridden_gradients(step_gradients(chunk * batch)):  # an ordinary backward pass, as a render step's
            with tf.GradientTape() as tape:
                tape.watch(copies)
                f = objectives_mod.feature_response(model(param.forward(_unflatten(copies, param)), [layer])[layer],
                                                    aggregation)  # [chunk B, depth]
                width = f.shape[-1] if f.shape[-1] is not None else tf.shape(f)[-1]
                picked = tf.reduce_sum(f * tf.repeat(tf.one_hot(rows, width, dtype=f.dtype), batch, axis=0))
            g = tape.gradient(picked, copies, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return f[:batch], tf.reshape(g, [chunk, batch, dim])

    _JACOBIAN_FNS[key] = _Compiled(response_and_jacobian, model, param, aggregation)
    _evict(_JACOBIAN_FNS)
    return response_and_jacobian


def _jacobian_fn(model, layer, param, aggregation, chunk, dim):
    """The compiled ``(z [B, D], rows [chunk] int32) -> (f [B, depth], g [chunk, B, D])``:
    ``g[i, b] = d f[b, rows[i]] / d z[b]`` (zero for ``rows[i] = -1``), cached (`_cache_key`)."""
    key = _cache_key(model, layer, param, aggregation, chunk, dim)
    entry = _cached(key)
    if entry is not None:
        return entry.fn
    spec = [tf.TensorSpec([param.batch, dim], _dtype(param)), tf.TensorSpec([chunk], tf.int32)]

    @tf.function(input_signature=spec, autograph=False)
    def response_and_jacobian(z, rows):
        _STATS["traces"] += 1  # Python side effect: runs once per trace
        # lean gradients (no per-row copies of the activations, lean_gradients.py) for the whole
        # trace: a graph function (a frozen graph) builds its backward function in the forward pass
        with lean_activation_gradients():
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(z)
                images = param.forward(_unflatten(z, param))
                f = objectives_mod.feature_response(model(images, [layer])[layer], aggregation)
            # One cotangent per row: feature rows[i] of every sample (samples are independent, so
            # one backward pass gives all B rows). pfor traces the backward graph once for all rows.
            width = f.shape[-1] if f.shape[-1] is not None else tf.shape(f)[-1]
            cotangents = tf.broadcast_to(tf.one_hot(rows, width, dtype=f.dtype)[:, None, :],
                                         [chunk, param.batch, width])
            g = tf.vectorized_map(
                lambda u: tape.gradient(f, z, output_gradients=u, unconnected_gradients=tf.UnconnectedGradients.ZERO),
                cotangents)
        return f, g

    _JACOBIAN_FNS[key] = _Compiled(response_and_jacobian, model, param, aggregation)
    _evict(_JACOBIAN_FNS)
    return response_and_jacobian


def _evict(cache) -> None:
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)


def _block_budget() -> int:
    value = os.environ.get("LUCID_IFV_JACOBIAN_BLOCK_MB")
    return BLOCK_BUDGET if not value else int(float(value) * (1 << 20))


def activation_elements(model, layer: str, param: Param, aggregation=None) -> int:
    """Float elements one sample produces between the parameters and the feature response
    (every intermediate tensor of the traced forward, nested functions included; constants
    not): what one backward row may hold. Read off a trace of the forward pass (cached)."""
    return _forward_info(model, layer, param, aggregation)[0]


def _forward_info(model, layer, param, aggregation):
    """``(activation_elements, number of features)`` from a trace of the forward (cached)."""
    key = (id(model), layer, _param_key(param), _aggregation_key(aggregation))
    if key in _ACTIVATION_SIZES:
        _ACTIVATION_SIZES.move_to_end(key)
    else:
        def forward(*ps):
            return objectives_mod.feature_response(model(param.forward(list(ps)), [layer])[layer], aggregation)

        shapes = [tf.TensorSpec(v.shape, v.dtype) for v in param.variables]
        concrete = tf.function(forward, autograph=False).get_concrete_function(*shapes)
        size = -(-_graph_elements(concrete.graph, set(), param.batch) // param.batch)
        width = concrete.structured_outputs.shape[-1]
        if width is None:  # no static shape: run it once
            width = forward(*(tf.zeros(v.shape, v.dtype) for v in param.variables)).shape[-1]
        # the entry keeps model, param and aggregation alive: the ids in its key stay unique
        _ACTIVATION_SIZES[key] = ((size, int(width)), model, param, aggregation)
        _evict(_ACTIVATION_SIZES)
    return _ACTIVATION_SIZES[key][0]


def _graph_elements(graph, seen, batch: int) -> int:
    """Float elements of a graph's op outputs (unknown dimensions count as ``batch``)."""
    total = 0
    for op in graph.get_operations():
        if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            name = op.get_attr("f").name
            if name not in seen:  # count a function's body once (an upper bound per call)
                seen.add(name)
                fn = graph._get_function(name) if hasattr(graph, "_get_function") else None
                inner = getattr(fn, "graph", None)
                if inner is not None:
                    total += _graph_elements(inner, seen, batch)
            continue
        if op.type in ("Const", "Placeholder", "VarHandleOp", "ReadVariableOp", "Identity", "NoOp"):
            continue
        for out in op.outputs:
            if out.dtype.is_floating and out.shape.rank is not None:
                total += int(np.prod([batch if d is None else d for d in out.shape.as_list()]))
    return total


def default_chunk(k: int, batch: int, dim: int, activation_elements: int, budget: int | None = None) -> int:
    """Jacobian rows per compiled block: all ``k`` when ``k`` rows of the vectorized backward
    pass (an estimated ``4 (activation_elements + 2 dim)`` bytes per sample and row) fit in
    ``budget`` (default `BLOCK_BUDGET`), else the fewest blocks that do, of equal size (no
    ragged last block wasting padded rows).

    The block size does not change the trace cost (one pfor conversion whatever the number of
    blocks), so it is chosen for the run: measured on inception_small (docs/performance.md),
    blocks of ~16-32 rows at batch 4 run as fast as any and start fastest; one block of all
    256 rows holds ~2 GB and its first run is slower.
    """
    budget = _block_budget() if budget is None else budget
    per_row = 4 * batch * (activation_elements + 2 * dim)
    fit = max(1, budget // max(per_row, 1))
    blocks = -(-k // min(k, fit))
    return -(-k // blocks)


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
      chunk: features per vectorized Jacobian block (default `default_chunk`: blocks whose
        backward pass fits `BLOCK_BUDGET`); bounds memory, the result does not depend on it.
    Returns:
      ``(f, J)``: arrays ``[B, k]`` and ``[B, k, D]`` (D parameters per sample), float32, or
      float64 for a float64 model and parametrization (`lucid_ifv.precision`).
    """
    model.layer(layer)
    param, params = resolve_realization(model, realization, param, wrt)
    elements, depth = _forward_info(model, layer, param, aggregation)  # depth: the response's width
    if features is not None:
        features = check_feature_indices(features, depth, distinct=False)  # rows may repeat here
    rows = np.arange(depth) if features is None else features
    k = rows.size
    z = _flatten(params, param.batch, _dtype(param))
    batch, dim = z.shape
    if chunk is None:
        chunk = default_chunk(k, batch, dim, elements)
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    chunk = min(chunk, k)
    kind = block_kind(model, layer, param, aggregation, dim)
    fn = (_tiled_fn if kind == "tiled" else _jacobian_fn)(model, layer, param, aggregation, chunk, dim)
    padded = np.full(-(-k // chunk) * chunk, -1, np.int32)  # -1: a zero cotangent row
    padded[:k] = rows
    z = tf.constant(z)
    jac = np.empty((batch, k, dim), z.dtype.as_numpy_dtype)
    f = None
    for start in range(0, k, chunk):
        f_all, g = fn(z, tf.constant(padded[start:start + chunk]))
        stop = min(start + chunk, k)
        jac[:, start:stop] = np.swapaxes(g.numpy()[: stop - start], 0, 1)
        if f is None:
            f = f_all.numpy()[:, rows]
    return f, jac


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
    z = tf.constant(_flatten(params, param.batch, _dtype(param)))
    grads = []
    for term in terms:
        with tf.GradientTape() as tape:
            tape.watch(z)
            ps = _unflatten(z, param)
            value = tf.reduce_sum(term(_lazy_T(model, param.forward(ps), ps)))
        g = tape.gradient(value, z)
        grads.append(np.zeros(z.shape, z.dtype.as_numpy_dtype) if g is None else g.numpy())
    return np.stack(grads, axis=1)


def _lazy_T(model, images, params):
    """The ``T`` an objective sees, evaluated eagerly: each layer is computed when first asked
    for (nothing is traced, unlike rendering's `layers_used` + `make_T`)."""
    acts = {}

    def T(name):
        if name in ("input", "params"):
            return images if name == "input" else list(params)
        if name not in acts:
            acts[name] = model(images, [name])[name]
        return acts[name]

    return T
