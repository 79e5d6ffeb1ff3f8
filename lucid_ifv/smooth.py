"""Smooth surrogates: a model with its kinks (ReLU, ReLU6, max-pool) smoothed.

Grad-IFV assumes the network is differentiable at the realization; ReLU and max-pool
make it only piecewise smooth (see ``docs/smooth.md``). A smooth surrogate keeps the
weights and replaces each kink by a smooth function that tends to it:

  relu(x)            -> smooth_relu(x, beta)  = softplus(beta x) / beta        (beta -> inf)
  relu6(x)           -> smooth_relu6(x, beta) = smooth_relu(x) - smooth_relu(x - 6)
  max over a window  -> lse_pool2d(x, ..., T)  = T log sum_i exp(x_i / T)       (T -> 0)

``0 <= smooth_relu(x) - relu(x) <= log(2) / beta`` and, over a window of n values,
``0 <= LSE - max <= T log(n)``.

`smooth_model(model, relu_beta=10.0, pool_temperature=0.05)` returns a model with the
same layer names, depths, input shape, value range and weights:
  - `modelzoo.graph.GraphModel` (frozen Lucid graphs, the shipped models; `LucidModel`
    such as InceptionV1 through its loaded graph): each ``Relu``, ``Relu6``, ``MaxPool``
    (and ``MaxPoolV2`` with constant window) node is replaced by a subgraph
    ``<node>/smooth/...`` whose last node, an ``Identity``, keeps the node's name;
  - `lucid_ifv.model.KerasModel`: the Keras model is cloned (nested models too) with
    relu/relu6 activations -> `SmoothReLUActivation`, ``ReLU`` layers -> `SmoothReLU`,
    ``MaxPooling2D`` -> `LSEPooling2D`, layer names kept, weights copied.
The result carries ``smoothing = {"relu_beta": beta, "pool_temperature": T}`` and
``smoothed_ops`` (the node or layer names that were replaced); its name is
``"<name>~smooth"``. Kinked ops it cannot rewrite raise ValueError.

`smooth_model` returns the same surrogate object for the same model object, beta and T
(kept while the model lives): the compiled renders and Jacobians key on the model's
identity, so a second experiment or comparison on a model reuses their traces instead of
tracing a fresh surrogate again. After changing a model's weights in place, call
`clear_cache` (as `render.clear_cache` and `ifv.clear_cache`).
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from lucid_ifv import keras_rewrite
from lucid_ifv.graph_keys import state_key
from lucid_ifv.model import KerasModel, Model

DEFAULT_RELU_BETA = 10.0
DEFAULT_POOL_TEMPERATURE = 0.05


def check_positive(value, what: str) -> float:
    """`value` as a float; ValueError unless it is a finite number > 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")
    return number


# -- smooth kinks -----------------------------------------------------------------------------


def check_betas(beta, what: str = "beta"):
    """`beta` as a float, or a 1-D float32 array (one beta per channel); ValueError unless
    every value is a finite number > 0."""
    if np.ndim(beta) == 0:
        return check_positive(beta, what)
    betas = np.asarray(beta, np.float32)
    if betas.ndim != 1 or betas.size == 0 or not np.all(np.isfinite(betas)) or not np.all(betas > 0):
        raise ValueError(f"{what} must be a number > 0 or a 1-D array of them (one per channel), got {beta!r}")
    return betas


def smooth_relu(x, beta=DEFAULT_RELU_BETA, max_value: float | None = None) -> tf.Tensor:
    """``softplus(beta x) / beta`` (any shape -> same shape); -> relu(x) as beta -> inf.

    `beta` is a number or ``[C]`` (one per channel, the last axis of ``x``). With `max_value`
    m: ``smooth_relu(x) - smooth_relu(x - m)``, a smooth clamp to [0, m].
    """
    beta = check_betas(beta)
    x = tf.convert_to_tensor(x)
    if np.ndim(beta):
        beta = tf.constant(beta, x.dtype)
    y = tf.nn.softplus(beta * x) / beta
    if max_value is not None:
        y -= tf.nn.softplus(beta * (x - check_positive(max_value, "max_value"))) / beta
    return y


def smooth_relu6(x, beta: float = DEFAULT_RELU_BETA) -> tf.Tensor:
    """Smooth relu6: ``smooth_relu(x) - smooth_relu(x - 6)``; -> relu6(x) as beta -> inf."""
    return smooth_relu(x, beta, max_value=6.0)


def _pair(value, what: str) -> tuple[int, int]:
    values = (value, value) if np.isscalar(value) else tuple(value)
    if len(values) != 2 or any(int(v) != v or v < 1 for v in values):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return int(values[0]), int(values[1])


def _same_padding(size: int, window: int, stride: int) -> list[int]:
    """TensorFlow's SAME padding of one axis: [before, after], the extra one after."""
    total = max((-(-size // stride) - 1) * stride + window - size, 0)
    return [total // 2, total - total // 2]


def lse_pool2d(x, ksize, strides, padding: str = "VALID",
               temperature: float = DEFAULT_POOL_TEMPERATURE) -> tf.Tensor:
    """Log-sum-exp pooling, a smooth max-pool: ``T log sum_window exp(x / T)``.

    Same windows and output shape as ``tf.nn.max_pool2d(x, ksize, strides, padding)``
    (NHWC; SAME pads with -inf, which adds nothing to a window). Over a window of n
    values the result lies in ``[max, max + T log n]`` and tends to the max as T -> 0.

    Args:
      x: ``[B, H, W, C]`` with static H, W, C.
      ksize, strides: an int or a pair (height, width).
      padding: "VALID" or "SAME".
      temperature: T > 0.
    Returns:
      ``[B, h, w, C]``.
    """
    temperature = check_positive(temperature, "temperature")
    (kh, kw), (sh, sw) = _pair(ksize, "ksize"), _pair(strides, "strides")
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 4 or not x.shape[1:].is_fully_defined():
        raise ValueError(f"lse_pool2d needs x of shape [B, H, W, C] with static H, W, C; got {x.shape}")
    if padding not in ("VALID", "SAME"):
        raise ValueError(f"padding must be 'VALID' or 'SAME', got {padding!r}")
    h, w, c = x.shape[1:]
    if padding == "SAME":
        pads = [[0, 0], _same_padding(h, kh, sh), _same_padding(w, kw, sw), [0, 0]]
        x = tf.pad(x, pads, constant_values=-np.inf)
    patches = tf.image.extract_patches(x, [1, kh, kw, 1], [1, sh, sw, 1], [1, 1, 1, 1], "VALID")
    _, out_h, out_w, _ = patches.shape  # patches: [B, h, w, kh * kw * C], (row, col, C) order
    windows = tf.reshape(patches, [-1, out_h, out_w, kh * kw, c])
    return temperature * tf.reduce_logsumexp(windows / temperature, axis=3)


# -- Keras pieces -----------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="lucid_ifv")
class SmoothReLUActivation:
    """A serializable activation: ``smooth_relu(x, beta, max_value)``."""

    def __init__(self, beta=DEFAULT_RELU_BETA, max_value: float | None = None):
        self.beta = check_betas(beta)  # a number, or [C]: one per channel
        self.max_value = None if max_value is None else check_positive(max_value, "max_value")

    def __call__(self, x):
        return smooth_relu(x, self.beta, self.max_value)

    def get_config(self) -> dict:
        return {"beta": self.beta if np.ndim(self.beta) == 0 else self.beta.tolist(), "max_value": self.max_value}

    @classmethod
    def from_config(cls, config: dict) -> "SmoothReLUActivation":
        return cls(**config)


@keras.saving.register_keras_serializable(package="lucid_ifv")
class SmoothReLU(keras_rewrite.ActivationLayer):
    """Layer form of `SmoothReLUActivation` (replaces ``keras.layers.ReLU``)."""

    def __init__(self, beta=DEFAULT_RELU_BETA, max_value: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.activation = SmoothReLUActivation(beta, max_value)


@keras.saving.register_keras_serializable(package="lucid_ifv")
class LSEPooling2D(keras.layers.Layer):
    """`lse_pool2d` as a layer (replaces ``keras.layers.MaxPooling2D``, channels_last)."""

    def __init__(self, pool_size=(2, 2), strides=None, padding: str = "valid",
                 temperature: float = DEFAULT_POOL_TEMPERATURE, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = _pair(strides if strides is not None else self.pool_size, "strides")
        self.padding = str(padding).lower()
        self.temperature = check_positive(temperature, "temperature")

    def call(self, inputs):
        return lse_pool2d(inputs, self.pool_size, self.strides, self.padding.upper(), self.temperature)

    def get_config(self) -> dict:
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding, "temperature": self.temperature}


# -- Keras models -----------------------------------------------------------------------------


_KINKED_ACTIVATIONS = keras_rewrite.callables(
    ["leaky_relu", "selu", "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh", "hard_shrink",
     "soft_shrink", "threshold"], *keras_rewrite.ACTIVATION_MODULES)
_KINKED_LAYERS = tuple(keras_rewrite.callables(
    ["LeakyReLU", "PReLU", "MaxPooling1D", "MaxPooling3D", "GlobalMaxPooling1D",
     "GlobalMaxPooling2D", "GlobalMaxPooling3D"], keras.layers))


def _smooth_relu_layer(layer, beta) -> SmoothReLU:
    max_value = keras_rewrite.plain_relu_layer_max_value(layer, "smooth")
    return SmoothReLU(beta, max_value, name=layer.name, dtype=layer.dtype_policy)


def _smooth_max_pool_layer(layer, temperature: float) -> LSEPooling2D:
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last":
        raise ValueError(
            f"cannot smooth MaxPooling2D layer {layer.name!r} with data_format="
            f"{config['data_format']!r}; expected 'channels_last'"
        )
    return LSEPooling2D(config["pool_size"], config["strides"], config["padding"], temperature,
                        name=layer.name, dtype=layer.dtype_policy)


def _smooth_layer(layer, beta, temperature: float):
    """The smooth replacement of one (non-model) Keras layer, or None if it has no kink
    (``beta``: a number, or ``[C]`` for this layer's channels)."""
    if isinstance(layer, keras.layers.ReLU):
        return _smooth_relu_layer(layer, beta)
    if isinstance(layer, keras.layers.MaxPooling2D):
        return _smooth_max_pool_layer(layer, temperature)
    if isinstance(layer, _KINKED_LAYERS):
        raise ValueError(
            f"cannot smooth layer {layer.name!r} of type {type(layer).__name__}; supported kinks: "
            f"relu/relu6 activations, ReLU, MaxPooling2D"
        )
    activation = getattr(layer, "activation", None)
    if any(activation is f for f in _KINKED_ACTIVATIONS):
        raise ValueError(
            f"cannot smooth activation {activation.__name__!r} of layer {layer.name!r}; "
            f"supported: relu, relu6"
        )
    is_relu, max_value = keras_rewrite.relu_max_value(activation)
    if is_relu:
        return keras_rewrite.with_activation(layer, SmoothReLUActivation(beta, max_value))
    return None


def smooth_keras_model(keras_model, beta: float, temperature: float, layer_betas: dict | None = None):
    """A clone of `keras_model` (Sequential or Functional) with its kinks smoothed and its
    weights copied; ``layer_betas`` ``{layer name: [C]}`` overrides ``beta`` per layer.

    Returns:
      (the new Keras model, the replaced layers' paths ``"outer/inner/layer"``).
    """
    layer_betas = layer_betas or {}
    return keras_rewrite.rebuild(
        keras_model, lambda layer: _smooth_layer(layer, layer_betas.get(layer.name, beta), temperature))


# -- frozen graphs ----------------------------------------------------------------------------

_SMOOTHABLE_OPS = ("Relu", "Relu6", "MaxPool", "MaxPoolV2")
#: Kinked op types smooth_model cannot rewrite (it refuses graphs that use them).
UNSUPPORTED_KINKED_OPS = frozenset({
    "LeakyRelu", "Selu", "MaxPoolWithArgmax", "FractionalMaxPool", "MaxPool3D", "Max",
    "Maximum", "Minimum", "ClipByValue", "Abs",
})


def _node_name(tensor_name: str) -> str:
    """``"^x"``, ``"x:1"``, ``"x"`` -> ``"x"``."""
    return tensor_name.lstrip("^").split(":")[0]


def _listing(pairs: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{op} (node {name})" for op, name in pairs[:5])
    return shown + (f", and {len(pairs) - 5} more" if len(pairs) > 5 else "")


def _check_graph_def(graph_def) -> None:
    """ValueError if `graph_def` has kinked ops that cannot be rewritten (incl. functions)."""
    refused = [(n.op, n.name) for n in graph_def.node if n.op in UNSUPPORTED_KINKED_OPS]
    if refused:
        raise ValueError(f"cannot smooth the graph: unsupported kinked op(s) {_listing(refused)}")
    kinked = set(_SMOOTHABLE_OPS) | UNSUPPORTED_KINKED_OPS
    in_functions = [
        (n.op, f"{f.signature.name}/{n.name}")
        for f in graph_def.library.function for n in f.node_def if n.op in kinked
    ]
    if in_functions:
        raise ValueError(
            f"cannot smooth ops inside graph functions: {_listing(in_functions)}"
        )


def _const_value(nodes: dict, tensor_name: str, what: str, node) -> list[int]:
    source = nodes.get(_node_name(tensor_name))
    if source is None or source.op != "Const":
        raise ValueError(
            f"cannot smooth {node.op} node {node.name!r}: its {what} is not a constant ({tensor_name!r})"
        )
    return [int(v) for v in tf.make_ndarray(source.attr["value"].tensor).ravel()]


def _pool_window(node, nodes: dict) -> tuple[list[int], list[int], str]:
    """(ksize, strides, padding) of a MaxPool / MaxPoolV2 node, checked to be NHWC 2D."""
    if node.op == "MaxPoolV2":
        ksize = _const_value(nodes, node.input[1], "ksize", node)
        strides = _const_value(nodes, node.input[2], "strides", node)
    else:
        ksize, strides = list(node.attr["ksize"].list.i), list(node.attr["strides"].list.i)
    padding = node.attr["padding"].s.decode()
    data_format = node.attr["data_format"].s.decode() or "NHWC"
    if data_format != "NHWC" or ksize[::3] != [1, 1] or strides[::3] != [1, 1] or padding not in ("VALID", "SAME"):
        raise ValueError(
            f"cannot smooth {node.op} node {node.name!r} (data_format {data_format}, ksize {ksize}, "
            f"strides {strides}, padding {padding}); expected an NHWC spatial pool, VALID or SAME"
        )
    return ksize[1:3], strides[1:3], padding


def _input_shapes(graph_def, input_name: str, image_shape, tensor_names) -> dict[str, tf.TensorShape]:
    """Static shapes of `tensor_names` with the graph's input fed ``[None, *image_shape]``."""
    with tf.Graph().as_default() as graph:
        images = tf.compat.v1.placeholder(tf.float32, [None, *image_shape])
        tf.compat.v1.import_graph_def(graph_def, {f"{input_name}:0": images}, name="")
        return {t: graph.get_tensor_by_name(t if ":" in t else f"{t}:0").shape for t in tensor_names}


def _replacement(node, fn: Callable, input_shape) -> list:
    """NodeDefs computing ``fn(node's input)``: ``<node>/smooth/*`` then an Identity ``<node>``."""
    dtype = tf.dtypes.as_dtype(node.attr["T"].type) if "T" in node.attr else tf.float32
    with tf.Graph().as_default() as scratch:
        x = tf.compat.v1.placeholder(dtype, input_shape, name="x")
        tf.identity(fn(x), name="y")
    prefix, data_input = f"{node.name}/smooth/", node.input[0]

    def rewire(name: str) -> str:
        if _node_name(name) != "x":
            return ("^" + prefix + name[1:]) if name.startswith("^") else prefix + name
        return "^" + _node_name(data_input) if name.startswith("^") else data_input

    out = []
    for scratch_node in scratch.as_graph_def().node:
        if scratch_node.name == "x":
            continue
        new = tf.compat.v1.NodeDef()
        new.CopyFrom(scratch_node)
        new.name = node.name if scratch_node.name == "y" else prefix + scratch_node.name
        new.input[:] = [rewire(i) for i in scratch_node.input]
        if scratch_node.name == "y":
            new.input.extend(i for i in node.input if i.startswith("^"))
        out.append(new)
    return out


def _smooth_function(op: str, window, beta, temperature: float) -> Callable:
    """The smooth version of op `op` (`window`: (ksize, strides, padding) of a pool)."""
    if op == "Relu":
        return lambda x: smooth_relu(x, beta)
    if op == "Relu6":
        return lambda x: smooth_relu6(x, beta)
    ksize, strides, padding = window
    return lambda x: lse_pool2d(x, ksize, strides, padding, temperature)


def smooth_graph_def(graph_def, input_name: str, image_shape, beta: float, temperature: float,
                     node_betas: dict | None = None):
    """`graph_def` with each Relu, Relu6, MaxPool(V2) node replaced by its smooth subgraph;
    ``node_betas`` ``{node name: [C]}`` overrides ``beta`` per node.

    Returns:
      (the new GraphDef, the names of the replaced nodes).
    """
    _check_graph_def(graph_def)
    nodes = {n.name: n for n in graph_def.node}
    targets = [n for n in graph_def.node if n.op in _SMOOTHABLE_OPS]
    taken = [t.name for t in targets if any(name.startswith(f"{t.name}/smooth/") for name in nodes)]
    if taken:
        raise ValueError(f"cannot smooth node(s) {taken}: the graph already has '<node>/smooth/' names")
    pools = {n.name: _pool_window(n, nodes) for n in targets if n.op.startswith("MaxPool")}
    shapes = _input_shapes(graph_def, input_name, image_shape, [nodes[p].input[0] for p in pools])
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.op not in _SMOOTHABLE_OPS:
            out.node.add().CopyFrom(node)
        else:
            fn = _smooth_function(node.op, pools.get(node.name), (node_betas or {}).get(node.name, beta), temperature)
            out.node.extend(_replacement(node, fn, shapes.get(node.input[0])))
    return out, [n.name for n in targets]


def _smooth_graph_model(model, beta: float, temperature: float, node_betas: dict | None = None):
    from modelzoo.graph import GraphModel, unsafe_nodes

    graph_def, replaced = smooth_graph_def(
        model.graph_def, model.input_name, model.image_shape, beta, temperature, node_betas
    )
    metadata = dataclasses.replace(model.metadata, name=f"{model.name}~smooth")
    # the log-sum-exp pools' subgraphs have static shapes: the surrogate keeps the native size
    smoothed = GraphModel(graph_def, metadata, allow_ops=tuple(unsafe_nodes(model.graph_def)),
                          source=model.source, any_size=False)
    return smoothed, replaced


# -- the entry point --------------------------------------------------------------------------


#: model -> {(beta, T): its surrogate}; an entry goes with its model (a surrogate holds no
#: reference to the model it was built from).
_SURROGATES: "weakref.WeakKeyDictionary[Model, dict]" = weakref.WeakKeyDictionary()


def clear_cache() -> None:
    """Forget the surrogates `smooth_model` built (call it after editing a model's weights)."""
    _SURROGATES.clear()


def smooth_model(model: Model, relu_beta: float = DEFAULT_RELU_BETA,
                 pool_temperature: float = DEFAULT_POOL_TEMPERATURE, relu_scale_images=None) -> Model:
    """A smooth surrogate of `model` (see the module docstring); `model` is left unchanged.

    Args:
      model: a `KerasModel`, a `modelzoo.graph.GraphModel` or a `modelzoo.vision.LucidModel`
        (smoothed through its loaded graph; the result is a `GraphModel`).
      relu_beta: beta > 0 of ``softplus(beta x) / beta``.
      pool_temperature: T > 0 of the log-sum-exp pools.
      relu_scale_images: None (every ReLU gets `relu_beta`), or images ``[N, H, W, C]`` in
        [0, 1], or ``"noise"`` (`calibration_noise`): then each ReLU channel gets
        ``relu_beta / r``, ``r`` the root mean square of its input over these images
        (`relu_scaled_betas`), so a unit rescaled by ``s > 0`` gets a softplus rescaled with
        it (``s sp_{beta/r}(z) = sp_{beta/(s r)}(s z)``; docs/smooth.md).
    Returns:
      A model of the same kind (same layers, image_shape, image_value_range, weights) with
      ``smoothing`` and ``smoothed_ops`` set and name ``"<name>~smooth"``; the same object
      for the same `model`, beta and T (see the module docstring).
    Raises:
      ValueError: bad beta / T, a kink it cannot rewrite, or `model` already a surrogate.
      TypeError: any other kind of model.
    """
    beta = check_positive(relu_beta, "relu_beta")
    temperature = check_positive(pool_temperature, "pool_temperature")
    if getattr(model, "smoothing", None) is not None:
        raise ValueError(
            f"model {model.name!r} is already a smooth surrogate ({model.smoothing}); smooth the original"
        )
    from modelzoo.graph import GraphModel
    from modelzoo.vision import LucidModel

    if not isinstance(model, (KerasModel, GraphModel, LucidModel)):
        raise TypeError(
            f"smooth_model cannot smooth a {type(model).__name__}; supported: KerasModel, "
            f"modelzoo GraphModel and LucidModel"
        )
    if isinstance(relu_scale_images, str):
        if relu_scale_images != "noise":
            raise ValueError(f"relu_scale_images must be None, 'noise' or images, got {relu_scale_images!r}")
        relu_scale_images = calibration_noise(model.image_shape)
    key = (beta, temperature, None if relu_scale_images is None else state_key(np.asarray(relu_scale_images)))
    built = _SURROGATES.setdefault(model, {})
    if key not in built:
        betas = None if relu_scale_images is None else relu_scaled_betas(model, beta, relu_scale_images)
        built[key] = _build_surrogate(model, beta, temperature, betas)
    return built[key]


#: A ReLU input's root mean square below this counts as this (a unit that is 0 on every image).
RELU_RMS_FLOOR = 1e-12
#: Images of `calibration_noise`.
CALIBRATION_IMAGES = 16


def calibration_noise(image_shape, n: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """``[n, *image_shape]`` uniform noise in [0, 1], the same for every model of that input
    shape (so a network and its permuted, rescaled copy are calibrated alike)."""
    return np.random.default_rng(seed).uniform(size=(n, *image_shape)).astype(np.float32)


def relu_scaled_betas(model: Model, relu_beta: float, images) -> dict[str, np.ndarray]:
    """``{ReLU (graph node or Keras layer name): relu_beta / r [C]}``, ``r`` the root mean
    square of that ReLU's input per channel over ``images`` ``[N, H, W, C]`` in [0, 1] and
    every position (floored at `RELU_RMS_FLOOR`). Every ReLU upstream of the model's last
    layer is measured; a ReLU elsewhere keeps `relu_beta`."""
    from lucid_ifv.kink_sites import switch_input_rms
    from lucid_ifv.validation import check_finite

    images = np.asarray(images, np.float32)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(model.image_shape) or not len(images):
        raise ValueError(f"relu_scale_images must be [N, *{tuple(model.image_shape)}] with N >= 1, "
                         f"got shape {images.shape}")
    check_finite(images, "relu_scale_images")
    from modelzoo.vision import LucidModel

    model = model.graph_model if isinstance(model, LucidModel) else model
    rms = switch_input_rms(model, model.layer_names[-1], images)
    return {name: (relu_beta / np.maximum(r, RELU_RMS_FLOOR)).astype(np.float32) for name, r in rms.items()}


def _build_surrogate(model: Model, beta: float, temperature: float, betas: dict | None = None) -> Model:
    if isinstance(model, KerasModel):
        keras_model, replaced = smooth_keras_model(model.keras_model, beta, temperature, betas)
        smoothed = KerasModel(keras_model, image_value_range=model.image_value_range,
                              name=f"{model.name}~smooth", layers=model.layer_names)
    else:
        from modelzoo.vision import LucidModel

        graph_model = model.graph_model if isinstance(model, LucidModel) else model
        smoothed, replaced = _smooth_graph_model(graph_model, beta, temperature, betas)
    smoothed.smoothing = {"relu_beta": beta, "pool_temperature": temperature}
    if betas is not None:
        smoothed.smoothing["relu_beta_per_unit"] = "relu_beta / RMS of the unit's input"
    smoothed.smoothed_ops = replaced
    return smoothed


def surrogate_fidelity(model: Model, surrogate: Model, layer: str, images, batch_size: int = 250) -> dict:
    """How closely a surrogate's ``layer`` follows the network's on natural ``images``.

    A visualization rendered on the surrogate shows the surrogate's feature; where the
    surrogate's channel does not follow the network's, it is not the network's feature (and
    a render may never activate it). Per channel ``c``, over every image and position:

    - ``correlation`` ``[k]``: Pearson correlation of ``surrogate[..., c]`` with
      ``model[..., c]`` (NaN where either is constant);
    - ``max_ratio`` ``[k]``: the surrogate's largest activation over the network's (NaN
      where the network's largest is not positive).

    Args:
      model, surrogate: e.g. a shipped model and ``smooth_model(model, beta, T)``.
      layer: a layer both have, with the same shape.
      images: ``[N, H, W, C]`` in [0, 1] (e.g. `modelzoo.shipped.heldout`).
    Returns:
      ``{"correlation": [k], "max_ratio": [k]}`` float64.
    """
    images = np.asarray(images, np.float32)
    sums, top_a, top_b, count = None, None, None, 0
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        a = model(chunk, [layer])[layer].numpy().astype(np.float64)
        b = surrogate(chunk, [layer])[layer].numpy().astype(np.float64)
        if a.shape != b.shape:
            raise ValueError(f"layer {layer!r} has shape {a.shape[1:]} in the model and {b.shape[1:]} in the surrogate")
        a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        part = np.stack([a.sum(0), b.sum(0), (a * a).sum(0), (b * b).sum(0), (a * b).sum(0)])
        sums = part if sums is None else sums + part
        top_a = a.max(0) if top_a is None else np.maximum(top_a, a.max(0))
        top_b = b.max(0) if top_b is None else np.maximum(top_b, b.max(0))
        count += len(a)
    mean_a, mean_b = sums[0] / count, sums[1] / count
    cov = sums[4] / count - mean_a * mean_b
    var_a, var_b = sums[2] / count - mean_a ** 2, sums[3] / count - mean_b ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.where((var_a > 0) & (var_b > 0), cov / np.sqrt(var_a * var_b), np.nan)
        max_ratio = np.where(top_a > 0, top_b / top_a, np.nan)
    return {"correlation": correlation, "max_ratio": max_ratio}


FIDELITY_LOW = 0.5  # a channel correlating below this with the network is "barely followed"


def fidelity_summary(fidelity: dict, low: float = FIDELITY_LOW) -> dict:
    """Summary of `surrogate_fidelity`: median and minimum correlation over the channels that
    vary (``constant``: how many do not, e.g. never active on the images), the channels below
    ``low``, and the median and minimum largest-activation ratio."""
    corr, ratio = np.asarray(fidelity["correlation"], float), np.asarray(fidelity["max_ratio"], float)
    varying = ~np.isnan(corr)
    nan_stat = lambda fn, x: float(fn(x)) if x.size else float("nan")  # noqa: E731
    return {"median_correlation": nan_stat(np.median, corr[varying]), "min_correlation": nan_stat(np.min, corr[varying]),
            "constant": int(np.sum(~varying)), "low_channels": np.flatnonzero(varying & (corr < low)).tolist(),
            "median_max_ratio": nan_stat(np.median, ratio[~np.isnan(ratio)]),
            "min_max_ratio": nan_stat(np.min, ratio[~np.isnan(ratio)])}
