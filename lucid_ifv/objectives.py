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
All of Lucid 0.3.10's objectives are here (``tensor_direction``, the blurs,
``channel_interpolate``, ``penalize_boundary_complexity``, ``alignment``, ``input_diff``
included), with Lucid's values; ours refuse bad arguments with a ValueError.
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Callable

import numpy as np
import tensorflow as tf

from lucid_ifv.aggregation import get_aggregation
from lucid_ifv.param import Param, image_for_model
from lucid_ifv.validation import check_cossim_pow, check_feature_indices, check_finite, check_in_range, check_index

__all__ = [
    "Objective", "wrap_objective", "as_objective", "channel", "neuron", "direction",
    "direction_neuron", "deepdream", "total_variation", "L1", "L2", "params_L2", "diversity",
    "class_logit", "feature_response", "significance", "feature_objective", "target_slot", "terms_of",
    "response_scale", "relative_prior", "tensor_direction", "blur_input_each_step",
    "blur_alpha_each_step", "channel_interpolate", "penalize_boundary_complexity", "alignment",
    "input_diff", "direction_cossim", "handle_batch",
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

    def __init__(self, objective_func: Callable, name: str = "", description: str = "", terms=None, key=None):
        self.objective_func = objective_func
        self.name = name
        self.description = description
        self._terms = None if terms is None else tuple((float(f), o) for f, o in terms)
        #: hashable description of the computation (`lucid_ifv.graph_keys`), or None when it
        #: is unknown (a user's function): render_vis reuses a compiled step only with a key.
        self.key = key

    @property
    def terms(self) -> tuple:
        return ((1.0, self),) if self._terms is None else self._terms

    def __call__(self, T):
        return self.objective_func(T)

    def __add__(self, other):
        _check_operand(other, "+")
        if isinstance(other, (int, float)):
            return Objective(lambda T: other + self(T), self.name, self.description, self.terms,
                             _combined_key("add", self, other))
        return Objective(
            lambda T: self(T) + other(T),
            ", ".join([self.name, _name(other)]),
            "Sum(" + " +\n".join([self.description, _description(other)]) + ")",
            self.terms + terms_of(other),
            _combined_key("add", self, other),
        )

    __radd__ = __add__

    def __neg__(self):
        return -1 * self

    def __sub__(self, other):
        return self + (-1 * other)

    def __rsub__(self, other):
        return (-1 * self) + other

    def __mul__(self, other):
        _check_operand(other, "*")
        if isinstance(other, (int, float)):
            return Objective(lambda T: other * self(T), self.name, self.description,
                             tuple((other * f, o) for f, o in self.terms), _combined_key("mul", self, other))
        return Objective(lambda T: self(T) * other(T), self.name, self.description,
                         key=_combined_key("mul", self, other))

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
            _combined_key("sum", *objs),
        )

    def __repr__(self):
        return f"Objective({self.description or self.name!r})"


def _combined_key(op: str, *operands):
    """Key of ``op`` applied to ``operands`` (objectives or numbers); None if one has none."""
    parts = []
    for operand in operands:
        if isinstance(operand, (int, float)):
            parts.append(("number", float(operand)))
        elif getattr(operand, "key", None) is None:
            return None
        else:
            parts.append(operand.key)
    return (op, *parts)


def _factory_key(f, args, kwargs, extra):
    """Key of the objective ``f(*args, **kwargs)`` made by a factory; None when an argument is
    a callable or object without a description (it could compute anything)."""
    from lucid_ifv.graph_keys import NoKey, state_key

    try:
        return (f.__module__, f.__qualname__, state_key(list(args)), state_key(kwargs), state_key(extra))
    except NoKey:
        return None


def terms_of(obj) -> tuple:
    """``obj.terms`` for our `Objective`s; any other callable (a Lucid objective) is one term."""
    return obj.terms if isinstance(obj, Objective) else ((1.0, obj),)


def _check_operand(other, op: str) -> None:
    """An objective combines with objectives, callables ``T -> tensor`` (as in Lucid) and numbers."""
    if isinstance(other, bool) or not (isinstance(other, (int, float)) or callable(other)):
        raise TypeError(f"an Objective {op} {type(other).__name__} {other!r}: expected an Objective, a callable "
                        "T -> tensor, or a number")


def _name(obj) -> str:
    return getattr(obj, "name", "") or ""


def _description(obj) -> str:
    return getattr(obj, "description", "") or ""


def _arg_str(arg) -> str:
    s = str(arg)
    return "..." if len(s) > 15 or "\n" in s else s


def wrap_objective(require_format=None, handle_batch=False):
    """Decorator: turn ``f(*args) -> (T -> scalar)`` into a factory of `Objective`s.

    Use it bare, ``@wrap_objective``, or as Lucid's ``@wrap_objective(require_format=None,
    handle_batch=False)``:

    * ``require_format="NHWC"``: ``f``'s objective sees dense ``[B, C]`` tensors as
      ``[B, 1, 1, C]`` (Lucid's ``_T_force_NHWC``; our models are NHWC already).
    * ``handle_batch=True``: the factory takes a keyword ``batch=None``, and ``f``'s
      objective sees only batch element ``batch`` of every tensor (Lucid's
      ``handle_batch``). If ``f`` has a ``batch`` argument of its own, it handles it.

    The objective is named after ``f``; its description is ``Title [args]`` listing every
    argument, defaults included, as Lucid's does (an added ``batch`` is listed when given).
    """
    if callable(require_format):  # bare @wrap_objective: the argument is f itself
        return _objective_factory(require_format, None, False)
    if require_format not in (None, "NHWC"):
        raise ValueError(f"require_format must be None or 'NHWC', got {require_format!r}")
    if not isinstance(handle_batch, bool):
        raise ValueError(f"handle_batch must be True or False, got {handle_batch!r}")
    return lambda f: _objective_factory(f, require_format, handle_batch)


def _objective_factory(f, require_format, handle_batch):
    """`wrap_objective`'s factory of `Objective`s for ``f``."""
    signature = inspect.signature(f)
    adds_batch = handle_batch and "batch" not in signature.parameters

    @functools.wraps(f)
    def factory(*args, **kwargs):
        batch = kwargs.pop("batch", None) if adds_batch else None
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = list(bound.arguments.values()) + ([] if batch is None else [batch])
        checked = batch if adds_batch else bound.arguments.get("batch")
        if checked is not None:  # refused now, not when rendering
            _with_batch(None, checked)
        description = f.__name__.title() + " [" + ", ".join(_arg_str(a) for a in arguments) + "]"
        return Objective(_process_T(f(*args, **kwargs), require_format, batch), f.__name__, description,
                         key=_factory_key(f, args, kwargs, (require_format, batch)))

    if adds_batch:  # show the added keyword in help() and inspect.signature
        params = list(signature.parameters.values())
        at = len(params) - bool(params and params[-1].kind is inspect.Parameter.VAR_KEYWORD)
        params.insert(at, inspect.Parameter("batch", inspect.Parameter.KEYWORD_ONLY, default=None))
        factory.__signature__ = signature.replace(parameters=params)
    return factory


def _process_T(objective_func, require_format=None, batch=None):
    """``objective_func`` seeing ``T`` in ``require_format`` and restricted to ``batch``."""
    if require_format is None and batch is None:
        return objective_func

    def processed(T):
        T = _with_batch(T, batch)
        return objective_func((lambda name: _nhwc(T(name))) if require_format == "NHWC" else T)

    return processed


def _with_batch(T, batch):
    """Restrict every tensor ``T`` returns to batch element ``batch`` (None: all)."""
    if batch is None:
        return T
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)):
        raise ValueError(f"batch must be an int index or None, got {batch!r}")
    batch = check_index(batch, "batch")

    def T_batch(name):
        t = T(name)
        if isinstance(t, (list, tuple)):  # T("params"): each parameter tensor has a batch axis
            return [T_batch_of(p, name) for p in t]
        return T_batch_of(t, name)

    def T_batch_of(t, name):
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
    """``features`` as a non-empty 1-D int32 array of distinct indices >= 0 (None stays None)."""
    return None if features is None else check_feature_indices(features, None, what).astype(np.int32)


def _check_features_in_range(features, depth, where):
    if features is not None:
        for i in features:
            check_in_range(int(i), depth, "features entry", f"{where} has {{size}} channels")


def _rank(t):
    """``t``'s static rank, or None when unknown (or ``t`` is not an array, e.g. a list)."""
    shape = getattr(t, "shape", None)
    try:
        return None if shape is None else len(shape)
    except (TypeError, ValueError):  # a TensorShape of unknown rank
        return None


def _nhwc(t):
    """Dense ``[B, C]`` -> ``[B, 1, 1, C]`` (Lucid's `_T_force_NHWC`); anything else unchanged."""
    return t[:, None, None, :] if _rank(t) == 2 else t


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
    """A direction ``[k]``: finite numbers, not all zero (a zero direction has no cosine and
    makes the objective 0 for every image)."""
    vec = check_finite(_float_array(vec, what), what)
    if vec.ndim != 1 or vec.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D vector, got shape {vec.shape}")
    if not np.any(vec):
        raise ValueError(f"{what} is all zeros; expected a direction (a non-zero vector)")
    return vec


def _float_array(values, what) -> np.ndarray:
    """``values`` as float32, or a ValueError naming ``what`` (e.g. strings in a target)."""
    try:
        return np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numbers, got {values!r:.80}") from None


def _check_depth(acts, vec, layer, what="direction vector"):
    depth = acts.shape[-1]
    if depth is not None and depth != vec.shape[-1]:
        raise ValueError(f"{what} has length {vec.shape[-1]} but layer {layer!r} has {depth} channels")


def _check_broadcasts_to(arr, t, what, name):
    """ValueError unless the array ``arr`` broadcasts to ``t``'s static shape (unknown sizes
    match anything), so that ``t - arr`` keeps ``t``'s shape."""
    rank = _rank(t)
    if rank is None:
        return
    dims = [_dim(t, axis) for axis in range(rank)]
    ok = arr.ndim <= rank and all(a == 1 or d is None or a == d for a, d in zip(arr.shape[::-1], dims[::-1]))
    if not ok:
        shown = ", ".join("*" if d is None else str(d) for d in dims)
        raise ValueError(f"{what} has shape {arr.shape}; expected a shape that broadcasts to {name}'s [{shown}]")


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


direction_cossim = direction  # Lucid's alias


def handle_batch(batch=None):
    """Lucid's decorator ``handle_batch(batch)(f)``: ``f`` sees every tensor of ``T`` restricted
    to batch element `batch` (None: all)."""
    return lambda f: lambda T: f(_with_batch(T, batch))


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


@wrap_objective(require_format="NHWC")
def tensor_direction(layer, vec, cossim_pow=0, batch=None):
    """Lucid's tensor_direction: `direction` against a spatial pattern.

    ``vec`` is ``[h, w, C]`` (or ``[1 or B, h, w, C]``); it is compared position by position
    with the centred ``h x w`` crop of the activations ``[B, H, W, C]`` (a dense layer is
    ``[B, 1, 1, C]``): ``mean(<x, vec> max(0.1, cos)^cossim_pow)`` over batch and positions.
    """
    vec = check_finite(np.asarray(vec, dtype=np.float32), "vec")
    if vec.ndim not in (3, 4) or 0 in vec.shape:
        raise ValueError(f"vec must be a non-empty pattern [h, w, C] or [B, h, w, C], got shape {vec.shape}")
    vec = vec[None] if vec.ndim == 3 else vec

    def inner(T):
        acts = _with_batch(T, batch)(layer)
        _check_depth(acts, vec, layer, "vec (last axis)")
        for axis, side in ((1, "rows"), (2, "columns")):
            size = _dim(acts, axis)
            if size is not None and vec.shape[axis] > size:
                raise ValueError(f"vec has {vec.shape[axis]} {side} but layer {layer!r} has {size}; "
                                 f"expected a pattern no larger than the layer")
        n = _dim(acts, 0)
        if vec.shape[0] != 1 and n is not None and vec.shape[0] != n:
            raise ValueError(f"vec has a batch of {vec.shape[0]} but layer {layer!r} gives {n} "
                             f"element(s); expected a batch of 1 or {n}")
        shape = tf.shape(acts)
        top = (shape[1] - vec.shape[1]) // 2
        left = (shape[2] - vec.shape[2]) // 2
        crop = acts[:, top : top + vec.shape[1], left : left + vec.shape[2]]
        return _dot_cossim(crop, vec, cossim_pow)

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


# -- Lucid's remaining objectives: blurs, interpolation along the batch, alignment ----------
def _blur(x, w=3):
    """Lucid's ``_tf_blur``: each channel's weighted mean over a ``w x w`` window (weight 1
    inside, 0.5 on the window's border), renormalized where the window leaves the image.

    ``x``: ``[B, H, W, C]`` with a known ``C``; returns the same shape.
    """
    k = np.full([w, w], 0.5, dtype=np.float32)
    k[1:-1, 1:-1] = 1.0
    kernel = tf.constant(np.tile(k[:, :, None, None], [1, 1, x.shape[-1], 1]), x.dtype)
    conv = lambda t: tf.nn.depthwise_conv2d(t, kernel, [1, 1, 1, 1], "SAME")
    return conv(x) / conv(tf.ones_like(x))


def _images(T, what, min_channels=1):
    """``T("input")`` after checking it is images ``[B, H, W, C]`` with at least ``min_channels``."""
    images = T("input")
    rank, channels = _rank(images), _dim(images, -1)
    if rank != 4 or channels is None or channels < min_channels:
        shape = getattr(images, "shape", None)
        raise ValueError(f"{what} needs images [B, H, W, C] with C >= {min_channels} known channels; "
                         f"'input' has shape {shape}")
    return images


def _blur_step(images):
    """``0.5 sum (x - blur(x))^2`` with the blur held constant: its gradient is ``x - blur(x)``."""
    return 0.5 * tf.reduce_sum((images - tf.stop_gradient(_blur(images))) ** 2)


@wrap_objective()
def blur_input_each_step():
    """Lucid's blur_input_each_step: ``0.5 sum (x - stop_gradient(blur(x)))^2`` on the images.

    Its gradient is ``x - blur(x)``, so optimizing ``-k * blur_input_each_step()`` is
    ``x <- (1 - k) x + k blur(x)`` each step (Nguyen et al., 2015). Subtract it.
    """
    return lambda T: _blur_step(_images(T, "blur_input_each_step"))


@wrap_objective()
def blur_alpha_each_step():
    """`blur_input_each_step` on the alpha channel only (channel 3 of RGBA images)."""
    return lambda T: _blur_step(_images(T, "blur_alpha_each_step (RGBA: alpha is channel 3)", 4)[..., 3:4])


def _batch_means(acts, n, layer, what):
    """Per-element mean of channel ``n``: ``[B, ..., C]`` -> ``[B]``."""
    x = _channel_of(acts, n, layer, what)
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


@wrap_objective()
def channel_interpolate(layer1, n_channel1, layer2, n_channel2):
    """Lucid's channel_interpolate: across the batch, from channel ``n_channel1`` of ``layer1``
    (element 0) to channel ``n_channel2`` of ``layer2`` (element ``B - 1``).

    ``sum_b (1 - w_b) mean(layer1[b, ..., n_channel1]) + w_b mean(layer2[b, ..., n_channel2])``
    with ``w_b = b / (B - 1)``; needs a known batch ``B >= 2``.
    """
    n_channel1 = check_index(n_channel1, "n_channel1")
    n_channel2 = check_index(n_channel2, "n_channel2")

    def inner(T):
        acts1, acts2 = T(layer1), T(layer2)
        batch_n = _dim(acts1, 0)
        if batch_n is None or batch_n < 2:
            raise ValueError(f"channel_interpolate needs a known batch of at least 2 images to interpolate "
                             f"across; layer {layer1!r} has a batch of {batch_n}")
        if _dim(acts2, 0) not in (None, batch_n):
            raise ValueError(f"layer {layer2!r} has a batch of {_dim(acts2, 0)} but layer {layer1!r} "
                             f"has {batch_n}; expected the same batch")
        weights = tf.constant(np.arange(batch_n) / float(batch_n - 1), acts1.dtype)
        means1 = _batch_means(acts1, n_channel1, layer1, "n_channel1")
        means2 = _batch_means(acts2, n_channel2, layer2, "n_channel2")
        return tf.reduce_sum((1 - weights) * means1 + weights * means2)

    return inner


@wrap_objective()
def penalize_boundary_complexity(shp, w=20, mask=None, C=0.5):
    """Lucid's penalize_boundary_complexity: ``-sum mask ((blur5(x) - x)^2 + 0.8 (x - C)^2)``.

    Maximizing it makes the images smooth and of colour ``C`` where ``mask`` is 1.

    Args:
      shp: the images' shape ``[B, H, W, C]``; the default mask is ``ones(shp)`` with the
        inner ``[w:-w, w:-w]`` zeroed, i.e. a boundary ``w`` pixels wide (``w=0``, or a
        ``w`` of half the side or more, leaves the whole image). Unused when ``mask`` is given.
      w: the boundary width, an integer >= 0.
      mask: an array that broadcasts to the images ``[B, H, W, C]``, or None.
      C: the boundary colour, a number or an array that broadcasts to the images.
    """
    if mask is None:
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 0:
            raise ValueError(f"w must be an integer >= 0 (the boundary width in pixels), got {w!r}")
        dims = np.asarray(shp if isinstance(shp, (list, tuple, np.ndarray, tf.TensorShape)) else [])
        if dims.shape != (4,) or dims.dtype.kind not in "iu" or (dims < 1).any():
            raise ValueError(f"shp must be the images' shape [B, H, W, C] (4 integers >= 1), got {shp!r}")
        mask_ = np.ones(dims, dtype=np.float32)
        mask_[:, w:-w, w:-w] = 0
    else:
        mask_ = check_finite(np.asarray(mask, dtype=np.float32), "mask")
    color = check_finite(np.asarray(C, dtype=np.float32), "C")

    def inner(T):
        images = _images(T, "penalize_boundary_complexity")
        _check_broadcasts_to(mask_, images, "the mask" if mask is not None else "the mask ones(shp)", "'input'")
        _check_broadcasts_to(color, images, "C", "'input'")
        diffs = (_blur(images, w=5) - images) ** 2 + 0.8 * (images - color) ** 2
        return -tf.reduce_sum(diffs * mask_)

    return inner


@wrap_objective()
def alignment(layer, decay_ratio=2):
    """Lucid's alignment: ``-sum_{d=1..4} sum_i mean((x_i - x_{i+d})^2) / decay_ratio^d``.

    Penalizes the L2 distance at ``layer`` between batch elements up to 4 apart, so that an
    interpolation (`channel_interpolate`) draws analogous objects in the same place. A batch
    of 1 gives 0.
    """
    number = isinstance(decay_ratio, (int, float, np.number)) and not isinstance(decay_ratio, bool)
    if not (number and np.isfinite(decay_ratio) and decay_ratio > 0):
        raise ValueError(f"decay_ratio must be a finite number > 0, got {decay_ratio!r}")

    def inner(T):
        acts = T(layer)
        flat = tf.reshape(acts, [tf.shape(acts)[0], -1])  # [B, n]
        accum = tf.zeros([], acts.dtype)
        for d in (1, 2, 3, 4):  # pairs (i, i + d); none when B <= d
            pair_means = tf.reduce_mean((flat[:-d] - flat[d:]) ** 2, axis=1)
            accum += tf.reduce_sum(pair_means) / float(decay_ratio) ** float(d)
        return -accum

    return inner


@wrap_objective()
def input_diff(orig_img):
    """Lucid's input_diff: the RMS difference ``sqrt(mean (x - orig_img)^2)`` from the images.

    ``orig_img`` broadcasts to the images ``[B, H, W, C]`` (e.g. ``[H, W, C]``). Usually
    subtracted, as a penalty (adversarial examples).
    """
    orig = check_finite(np.asarray(orig_img, dtype=np.float32), "orig_img")

    def inner(T):
        images = T("input")
        _check_broadcasts_to(orig, images, "orig_img", "'input'")
        return tf.sqrt(tf.reduce_mean((images - orig) ** 2))

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
    t = check_finite(_float_array(t, "target"), "target")
    if t.ndim not in (1, 2) or 0 in t.shape:
        raise ValueError(f"target must be [k] or [B, k] with B, k >= 1, got shape {t.shape}")
    if k_expected is not None and t.shape[-1] != k_expected:
        raise ValueError(
            f"target has length {t.shape[-1]} but layer {layer!r} gives {k_expected} features"
        )
    if not (np.linalg.norm(t.astype(np.float64), axis=-1) > 0).all():  # float64: no overflow warning
        raise ValueError("target vectors must be non-zero")
    return t


_TARGET_SLOTS = threading.local()  # per thread: shape -> tf.Variable (`target_slot`)


def target_slot(targets) -> tf.Variable:
    """A ``tf.Variable`` holding ``targets`` (``[k]`` or ``[B, k]``, as float32), one per shape
    and shared: each call assigns the new targets to the same variable.

    `feature_objective` reads a variable target when it runs, and the compiled render
    functions are cached by the objective's structure, in which the variable appears by
    identity. So objectives built on the slot of one shape share one compilation, whatever
    their targets: e.g. every batch of an experiment, or every sample of
    `render.converge_each_sample` (`render.per_sample_objectives`). An objective built on a
    slot optimizes the targets last assigned to it: use it before the next call with the
    same shape. The slots are per thread (e.g. Dask workers running tasks in threads do not
    share one).
    """
    targets = np.asarray(targets, np.float32)
    slots = _TARGET_SLOTS.__dict__.setdefault("by_shape", {})
    slot = slots.get(targets.shape)
    if slot is None:
        slot = slots[targets.shape] = tf.Variable(targets, trainable=False)
    else:
        slot.assign(targets)
    return slot


def feature_objective(layer, t, cossim_pow=1, aggregation=None, features=None, model=None):
    """The paper's objective ``sum_b m(a(T(layer))_b, t_b)`` (Opt. 1), summed over the batch.

    Args:
      layer: layer name.
      t: target ``[k]`` (same for every batch element) or ``[B, k]`` (one per element); or a
        ``tf.Variable`` of either shape, read each time the objective runs: assigning another
        target to it (finite, non-zero, same shape) reuses the compiled render functions,
        one trace for any number of targets (`render.converge_each_sample` uses it).
      cossim_pow: ``p`` of the significance (default 1; 0 drops the cosine term).
      aggregation: see `lucid_ifv.aggregation` (default max-pool 3/2 then mean).
      features: channel indices the target refers to (default all channels).
      model: optional; when given, the layer name and the target length are checked now.
    Returns:
      An `Objective`. Per-element objectives are summed, so each batch element is
      optimized independently of the batch size. A ``[B, k]`` target must match the
      rendered batch size.
    """
    variable = t if isinstance(t, tf.Variable) else None  # its value is checked now, read when run
    check_cossim_pow(cossim_pow)
    feats = _feature_indices(features)
    k_expected = None
    if model is not None:
        info = model.layer(layer)
        _check_features_in_range(feats, info.depth, f"layer {layer!r}")
        k_expected = len(feats) if feats is not None else info.depth
    elif feats is not None:
        k_expected = len(feats)
    targets = _targets(t if variable is None else variable.numpy(), k_expected, layer)

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
        return tf.reduce_sum(significance(f, targets if variable is None else variable, cossim_pow))

    desc = f"Feature_objective [{layer}, p={cossim_pow}, {targets.shape[0] if targets.ndim == 2 else 1} target(s)]"
    from lucid_ifv.graph_keys import key_or_identity

    key = ("feature_objective", layer, key_or_identity(targets if variable is None else variable), float(cossim_pow),
           key_or_identity(aggregation), key_or_identity(feats))
    return Objective(inner, "feature_objective", desc, key=key)


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
