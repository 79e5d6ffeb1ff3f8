"""Objectives: Lucid's algebra of composable, maximized scalar functions of ``T``.

An `Objective` wraps ``func(T) -> scalar`` where ``T(name)`` gives

* ``T(layer)``: that layer's activations ``[B, h, w, C]`` or ``[B, C]``,
* ``T("input")``: the parametrized images ``[B, H, W, C]`` in [0, 1] (before transforms),
* ``T("params")``: the list of parameter tensors of the parametrization (leading batch axis).

Objectives are maximized (as in Lucid). They combine with ``+``, ``-``, unary ``-``,
``*`` by numbers or by other objectives, and `Objective.sum`; real Lucid objectives mix
in freely (anything callable on ``T``). A sum keeps its additive terms (`Objective.terms`),
which `render_vis` uses to judge stationarity. Lucid's formulas are kept exactly, including
``direction``'s cosine floor at 0.1 and 1e-4 on the norms; `feature_objective` is the
paper's unclamped significance ``m(f, t) = <f, t> cos(f, t)^p`` that Grad-IFV inverts.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

import numpy as np
import tensorflow as tf

from lucid_ifv.aggregation import get_aggregation
from lucid_ifv.param import Param, image_for_model
from lucid_ifv.validation import check_finite, check_in_range, check_index

__all__ = [
    "Objective", "wrap_objective", "as_objective", "channel", "neuron", "direction",
    "direction_neuron", "deepdream", "total_variation", "L1", "L2", "params_L2", "diversity",
    "class_logit", "feature_response", "significance", "feature_objective", "terms_of",
    "response_scale", "relative_prior",
]


class Objective:
    """A maximized objective ``func(T) -> scalar`` with a name and a description.

    Attributes:
      terms: the top-level additive terms, ``((factor, objective), ...)``: the objective is
        ``sum_j factor_j * objective_j(T)`` plus numeric constants (which have no gradient
        and are not terms). ``+``, ``-`` and `Objective.sum` concatenate the terms of their
        operands, a number times an objective scales the factors, and anything else (a
        plain objective, a product of two objectives) is its own single term
        ``((1.0, self),)``. E.g. ``feature_objective(l, t) - 1e-4 * params_L2()`` has the
        terms ``((1.0, feature_objective(l, t)), (-1e-4, params_L2()))``.
    """

    def __init__(self, objective_func: Callable, name: str = "", description: str = "", terms=None):
        self.objective_func = objective_func
        self.name = name
        self.description = description
        self._terms = None if terms is None else tuple((float(f), o) for f, o in terms)

    @property
    def terms(self) -> tuple:
        return ((1.0, self),) if self._terms is None else self._terms

    def __call__(self, T):
        return self.objective_func(T)

    def __add__(self, other):
        if isinstance(other, (int, float)):
            return Objective(lambda T: other + self(T), self.name, self.description, self.terms)
        return Objective(
            lambda T: self(T) + other(T),
            ", ".join([self.name, _name(other)]),
            "Sum(" + " +\n".join([self.description, _description(other)]) + ")",
            self.terms + terms_of(other),
        )

    __radd__ = __add__

    def __neg__(self):
        return -1 * self

    def __sub__(self, other):
        return self + (-1 * other)

    def __rsub__(self, other):
        return (-1 * self) + other

    def __mul__(self, other):
        if isinstance(other, (int, float)):
            return Objective(lambda T: other * self(T), self.name, self.description,
                             tuple((other * f, o) for f, o in self.terms))
        return Objective(lambda T: self(T) * other(T), self.name, self.description)

    __rmul__ = __mul__

    @staticmethod
    def sum(objs):
        """Sum of objectives (Lucid's `Objective.sum`); its terms are all the operands' terms."""
        objs = list(objs)
        return Objective(
            lambda T: sum(obj(T) for obj in objs),
            ", ".join(_name(o) for o in objs),
            "Sum(" + " +\n".join(_description(o) for o in objs) + ")",
            tuple(term for o in objs for term in terms_of(o)),
        )

    def __repr__(self):
        return f"Objective({self.description or self.name!r})"


def terms_of(obj) -> tuple:
    """``obj.terms`` for our `Objective`s; any other callable (a Lucid objective) is one term."""
    return obj.terms if isinstance(obj, Objective) else ((1.0, obj),)


def _name(obj) -> str:
    return getattr(obj, "name", "") or ""


def _description(obj) -> str:
    return getattr(obj, "description", "") or ""


def _arg_str(arg) -> str:
    s = str(arg)
    return "..." if len(s) > 15 or "\n" in s else s


def wrap_objective(f):
    """Decorator: turn ``f(*args) -> (T -> scalar)`` into a factory of `Objective`s.

    The objective is named after ``f``; its description is ``Title [args]`` listing every
    argument, defaults included, as Lucid's does.
    """
    signature = inspect.signature(f)

    @functools.wraps(f)
    def factory(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        if bound.arguments.get("batch") is not None:  # refused now, not when rendering
            _with_batch(None, bound.arguments["batch"])
        description = f.__name__.title() + " [" + ", ".join(_arg_str(a) for a in bound.arguments.values()) + "]"
        return Objective(f(*args, **kwargs), f.__name__, description)

    return factory


def _with_batch(T, batch):
    """Restrict every tensor ``T`` returns to batch element ``batch`` (None: all)."""
    if batch is None:
        return T
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)):
        raise ValueError(f"batch must be an int index or None, got {batch!r}")
    batch = check_index(batch, "batch")

    def T_batch(name):
        t = T(name)
        check_in_range(batch, _dim(t, 0), "batch", f"{name!r} has a batch of {{size}}")
        return t[batch : batch + 1]

    return T_batch


def _dim(t, axis):
    """``t``'s static size along ``axis``, or None when unknown."""
    shape = getattr(t, "shape", None)
    try:
        if shape is None or getattr(shape, "rank", len(shape)) is None:
            return None
        size = shape[axis]
    except (IndexError, TypeError, ValueError):
        return None
    return None if size is None else int(size)


def _channel_of(acts, n, layer, what="channel"):
    """``acts[..., n]`` after checking ``n`` against the layer's channel count (when known):
    TensorFlow would fail with its own message, or (GPU, negative n) return a wrong value."""
    check_in_range(n, _dim(acts, -1), what, f"layer {layer!r} has {{size}} channels")
    return acts[..., n]


def _feature_indices(features, what="features"):
    """``features`` as a non-empty 1-D int32 array of indices >= 0 (None stays None)."""
    if features is None:
        return None
    arr = np.asarray(features)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must be a non-empty list of channel indices (integers >= 0), got {features!r}")
    for i in arr:
        check_index(i, f"{what} entry")
    return arr.astype(np.int32)


def _check_features_in_range(features, depth, where):
    if features is not None:
        for i in features:
            check_in_range(int(i), depth, "features entry", f"{where} has {{size}} channels")


def _nhwc(t):
    """Dense ``[B, C]`` -> ``[B, 1, 1, C]`` (Lucid's `_T_force_NHWC`)."""
    return t[:, None, None, :] if t.shape.rank == 2 else t


def _center_position(acts, x=None, y=None, layer=None):
    """``[B, h, w, C] -> [B, 1, 1, C]`` at ``(x, y)`` (x indexes height; default the centre)."""
    for value, axis, name in ((x, 1, "x"), (y, 2, "y")):
        if value is not None:
            side = "rows" if axis == 1 else "columns"
            check_in_range(value, _dim(acts, axis), name, f"layer {layer!r} has {{size}} {side} of positions")
    shape = tf.shape(acts)
    x_ = shape[1] // 2 if x is None else x
    y_ = shape[2] // 2 if y is None else y
    return acts[:, x_ : x_ + 1, y_ : y_ + 1]


def _dot_cossim(x, y, cossim_pow=0):
    """Lucid's ``_dot_cossim``: mean of ``<x, y> max(0.1, cos)^p`` with 1e-4 on the norms."""
    eps = 1e-4
    xy = tf.reduce_sum(x * y, -1)
    if cossim_pow == 0:
        return tf.reduce_mean(xy)
    x_mag = tf.sqrt(tf.reduce_sum(x * x, -1))
    y_mag = tf.sqrt(tf.reduce_sum(y * y, -1))
    cos = xy / (eps + x_mag) / (eps + y_mag)
    return tf.reduce_mean(xy * tf.maximum(0.1, cos) ** cossim_pow)


def _vector(vec, what="vec") -> np.ndarray:
    vec = check_finite(np.asarray(vec, dtype=np.float32), what)
    if vec.ndim != 1 or vec.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D vector, got shape {vec.shape}")
    return vec


def _check_depth(acts, vec, layer):
    depth = acts.shape[-1]
    if depth is not None and depth != vec.shape[-1]:
        raise ValueError(
            f"direction vector has length {vec.shape[-1]} but layer {layer!r} has {depth} channels"
        )


@wrap_objective
def neuron(layer_name, channel_n, x=None, y=None, batch=None):
    """One neuron of one channel, at ``(x, y)`` (default the centre)."""
    channel_n = check_index(channel_n, "channel")
    x = None if x is None else check_index(x, "x")
    y = None if y is None else check_index(y, "y")

    def inner(T):
        acts = _center_position(_nhwc(_with_batch(T, batch)(layer_name)), x, y, layer_name)
        return tf.reduce_mean(_channel_of(acts, channel_n, layer_name))

    return inner


@wrap_objective
def channel(layer, n_channel, batch=None):
    """Mean activation of one channel."""
    n_channel = check_index(n_channel, "channel")

    def inner(T):
        return tf.reduce_mean(_channel_of(_nhwc(_with_batch(T, batch)(layer)), n_channel, layer))

    return inner


@wrap_objective
def direction(layer, vec, cossim_pow=0, batch=None):
    """Lucid's direction objective: ``mean(<x, vec> max(0.1, cos)^cossim_pow)``."""
    vec = _vector(vec)

    def inner(T):
        acts = _nhwc(_with_batch(T, batch)(layer))
        _check_depth(acts, vec, layer)
        return _dot_cossim(acts, vec[None, None, None], cossim_pow)

    return inner


@wrap_objective
def direction_neuron(layer_name, vec, x=None, y=None, cossim_pow=0, batch=None):
    """`direction` at a single position (default the centre)."""
    vec = _vector(vec)
    x = None if x is None else check_index(x, "x")
    y = None if y is None else check_index(y, "y")

    def inner(T):
        acts = _center_position(_nhwc(_with_batch(T, batch)(layer_name)), x, y, layer_name)
        _check_depth(acts, vec, layer_name)
        return _dot_cossim(acts, vec[None, None, None], cossim_pow)

    return inner


@wrap_objective
def deepdream(layer, batch=None):
    """Mean squared activation ("interestingness", Mordvintsev et al. 2015)."""
    return lambda T: tf.reduce_mean(_with_batch(T, batch)(layer) ** 2)


@wrap_objective
def total_variation(layer="input", batch=None):
    """Total variation per image (``tf.image.total_variation``), summed over the batch."""
    return lambda T: tf.reduce_sum(tf.image.total_variation(_with_batch(T, batch)(layer)))


@wrap_objective
def L1(layer="input", constant=0, batch=None):
    """``sum |x - constant|`` (usually a penalty: subtract it)."""
    return lambda T: tf.reduce_sum(tf.abs(_with_batch(T, batch)(layer) - constant))


@wrap_objective
def L2(layer="input", constant=0, epsilon=1e-6, batch=None):
    """Lucid's ``sqrt(epsilon + sum (x - constant)^2)`` over the whole batch."""
    return lambda T: tf.sqrt(epsilon + tf.reduce_sum((_with_batch(T, batch)(layer) - constant) ** 2))


@wrap_objective
def params_L2(batch=None):
    """Squared L2 norm of the raw parameters, ``sum_z z^2`` (ours, not Lucid's).

    A prior on the parametrization's variables: render with
    ``feature_objective(...) - lam * params_L2()`` and tell `ifv.invert` about it. It is a
    sum over batch elements, so each element's gradient is its own ``2 z``.
    """

    def inner(T):
        params = T("params")
        if batch is not None:
            params = [p[batch : batch + 1] for p in params]
        return tf.add_n([tf.reduce_sum(tf.square(p)) for p in params])

    return inner


@wrap_objective
def diversity(layer):
    """Lucid's diversity: mean pairwise cosine similarity of the batch's Gram matrices.

    As in Lucid this is the similarity itself; subtract it (``- 1e2 * diversity(layer)``)
    to push the batch elements apart.
    """

    def inner(T):
        acts = _nhwc(T(layer))
        batch_n = acts.shape[0]
        flat = tf.reshape(acts, [batch_n, -1, acts.shape[-1]])
        grams = tf.matmul(flat, flat, transpose_a=True)
        grams = tf.nn.l2_normalize(grams, axis=[1, 2], epsilon=1e-10)
        sims = tf.einsum("iab,jab->ij", grams, grams)
        off_diagonal = tf.reduce_sum(sims) - tf.linalg.trace(sims)
        return off_diagonal / batch_n

    return inner


@wrap_objective
def class_logit(layer, label, batch=None):
    """Sum over the batch of one logit of a dense layer (``label`` is an int index)."""
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise ValueError(f"class_logit takes an integer class index, got {label!r}")
    label = check_index(label, "label")

    def inner(T):
        logits = _with_batch(T, batch)(layer)
        if logits.shape.rank is not None and logits.shape.rank != 2:
            raise ValueError(f"class_logit needs a dense layer [batch, classes]; layer {layer!r} has shape "
                             f"{logits.shape} (use channel() for a convolutional layer)")
        check_in_range(label, _dim(logits, -1), "label", f"layer {layer!r} has {{size}} classes")
        return tf.reduce_sum(logits[:, label])

    return inner


def as_objective(obj):
    """Objectives and callables pass through; ``"layer:n"`` becomes ``channel(layer, n)``."""
    if isinstance(obj, Objective) or callable(obj):
        return obj
    if isinstance(obj, str) and obj.count(":") == 1:
        layer, n = obj.split(":")
        try:
            n = int(n)
        except ValueError:
            pass
        else:
            return channel(layer.strip(), n)  # a negative n: the channel index error
    raise ValueError(f"cannot make an objective of {obj!r}; expected an Objective, a callable or 'layer:n'")


# -- the paper's feature objective --------------------------------------------------------
def feature_response(acts, aggregation=None, features=None):
    """Aggregated feature response ``f``: ``[B, h, w, C]`` or ``[B, C]`` -> ``[B, k]``.

    ``features`` (indices into the channels) keeps a subset, in that order; None keeps all.
    """
    f = get_aggregation(aggregation)(acts)
    if features is not None:
        features = _feature_indices(features)
        _check_features_in_range(features, _dim(f, -1), "the layer")
        f = tf.gather(f, features, axis=-1)
    return f


def significance(f, t, cossim_pow=1, tiny=1e-30):
    """The paper's ``m(f, t) = <f, t> cos(f, t)^p`` per row, unclamped.

    Args:
      f: feature responses ``[B, k]``.
      t: targets ``[B, k]`` or ``[k]``.
      cossim_pow: ``p``; 0 drops the cosine term.
      tiny: added under the square roots of the norms so a zero response has a finite gradient.
    Returns:
      ``[B]``.
    """
    t = tf.cast(t, f.dtype)
    ft = tf.reduce_sum(f * t, -1)
    if cossim_pow == 0:
        return ft
    norms = tf.sqrt(tf.reduce_sum(f * f, -1) + tiny) * tf.sqrt(tf.reduce_sum(t * t, -1) + tiny)
    return ft * (ft / norms) ** cossim_pow


def _targets(t, k_expected, layer) -> np.ndarray:
    t = check_finite(np.asarray(t, dtype=np.float32), "target")
    if t.ndim not in (1, 2) or 0 in t.shape:
        raise ValueError(f"target must be [k] or [B, k] with B, k >= 1, got shape {t.shape}")
    if k_expected is not None and t.shape[-1] != k_expected:
        raise ValueError(
            f"target has length {t.shape[-1]} but layer {layer!r} gives {k_expected} features"
        )
    if not (np.linalg.norm(t.astype(np.float64), axis=-1) > 0).all():  # float64: no overflow warning
        raise ValueError("target vectors must be non-zero")
    return t


def feature_objective(layer, t, cossim_pow=1, aggregation=None, features=None, model=None):
    """The paper's objective ``sum_b m(a(T(layer))_b, t_b)`` (Opt. 1), summed over the batch.

    Args:
      layer: layer name.
      t: target ``[k]`` (same for every batch element) or ``[B, k]`` (one per element).
      cossim_pow: ``p`` of the significance (default 1; 0 drops the cosine term).
      aggregation: see `lucid_ifv.aggregation` (default max-pool 3/2 then mean).
      features: channel indices the target refers to (default all channels).
      model: optional; when given, the layer name and the target length are checked now.
    Returns:
      An `Objective`. Per-element objectives are summed, so each batch element is
      optimized independently of the batch size. A ``[B, k]`` target must match the
      rendered batch size.
    """
    feats = _feature_indices(features)
    k_expected = None
    if model is not None:
        info = model.layer(layer)
        _check_features_in_range(feats, info.depth, f"layer {layer!r}")
        k_expected = len(feats) if feats is not None else info.depth
    elif feats is not None:
        k_expected = len(feats)
    targets = _targets(t, k_expected, layer)

    def inner(T):
        acts = T(layer)
        _check_features_in_range(feats, _dim(acts, -1), f"layer {layer!r}")
        f = feature_response(acts, aggregation, feats)
        if f.shape[-1] is not None and f.shape[-1] != targets.shape[-1]:
            raise ValueError(
                f"target has length {targets.shape[-1]} but layer {layer!r} gives {f.shape[-1]} features"
            )
        if targets.ndim == 2 and f.shape[0] is not None and f.shape[0] != targets.shape[0]:
            raise ValueError(f"{targets.shape[0]} targets for a batch of {f.shape[0]} images")
        return tf.reduce_sum(significance(f, targets, cossim_pow))

    desc = f"Feature_objective [{layer}, p={cossim_pow}, {targets.shape[0] if targets.ndim == 2 else 1} target(s)]"
    return Objective(inner, "feature_objective", desc)


# -- prior weights relative to the objective's scale ---------------------------------------
def response_scale(model, layer, aggregation=None, features=None, param=None, n=16, seed=0) -> float:
    """RMS feature-response norm ``sqrt(mean_b |f_b|^2)`` over the images FV starts from.

    `feature_objective` scales like ``|f|``, so ``lam_rel * response_scale(...)`` is a prior
    weight that means the same on models whose activations differ by orders of magnitude
    (see `relative_prior`).

    Args:
      model: a `lucid_ifv.model.Model`.
      layer: layer name.
      aggregation, features: as in `feature_objective`.
      param: None for ``image_for_model(model, batch=n, seed=seed)`` (``n`` seeded start
        images), a `Param` (its current images ``[B, H, W, C]``; ``n`` and ``seed`` unused)
        or a factory ``param(batch=n, seed=seed) -> Param``.
      n: number of start images for the default or a factory (>= 1).
      seed: their seed.
    Returns:
      The scale, a float > 0.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1 (the number of start images), got {n!r}")
    model.layer(layer)  # KeyError naming the known layers
    if param is None:
        param = image_for_model(model, batch=int(n), seed=seed)
    elif not isinstance(param, Param):
        if not callable(param):
            raise TypeError(f"param must be None, a Param or a factory param(batch, seed), got {type(param).__name__}")
        param = param(batch=int(n), seed=seed)
    feats = _feature_indices(features)
    _check_features_in_range(feats, model.layer(layer).depth, f"layer {layer!r}")
    f = feature_response(model(param(), [layer])[layer], aggregation, feats).numpy().astype(np.float64)
    check_finite(f, f"feature responses of layer {layer!r}")
    scale = float(np.sqrt(np.mean(np.sum(f * f, axis=-1))))
    if not scale > 1e-30:
        raise ValueError(
            f"layer {layer!r} gives an all-zero feature response on {f.shape[0]} start image(s) "
            f"(RMS |f| = {scale:.3g}); expected a non-zero response to scale the prior weight by"
        )
    return scale


def relative_prior(model, layer, weight, aggregation=None, features=None, param=None, n=16, seed=0) -> float:
    """Absolute prior weight ``weight * response_scale(model, layer, ...)``.

    Use it as ``feature_objective(layer, t) - relative_prior(model, layer, 1e-3) * params_L2()``:
    the relative ``weight`` balances the prior against the objective the same way on every
    model, whereas an absolute weight (Lucid's ``- 1e-4 * params_L2()``, still the default
    everywhere) means less on a model whose responses are large. Arguments as in
    `response_scale`; ``weight`` must be finite and >= 0.
    """
    number = isinstance(weight, (int, float, np.number)) and not isinstance(weight, bool)
    if not (number and np.isfinite(weight) and weight >= 0):
        raise ValueError(f"weight must be a finite number >= 0 (the relative prior weight), got {weight!r}")
    return float(weight) * response_scale(model, layer, aggregation, features, param, n, seed)
