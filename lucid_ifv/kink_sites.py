"""Where a ReLU / max-pool network can have kinks, and a probe that evaluates those tensors.

`kink_sites` walks the network from a studied layer back to the input and lists the
`KinkSite`s: the input tensor of every ``Relu``/``Relu6``/``LeakyRelu``/``Selu`` node
(switch points 0, and 6 for ``Relu6``), every ``MaxPool`` node (its input and window
geometry) and, by default, the max-pool of the ``max_pool_mean`` aggregation on the studied
layer itself. `modelzoo.graph.GraphModel` (frozen graphs) is fully supported; `KerasModel`
is supported for layers with ``activation="relu"``, ``ReLU`` layers and ``MaxPooling2D``;
any other non-smooth piece raises NotImplementedError naming what is supported.
`switch_input_rms` measures the switches' inputs on images (the smooth surrogate's per-unit
softplus beta, `lucid_ifv.smooth`). What the kinks mean for inversion, and the target-free
solve built on them: `lucid_ifv.kinks`.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import numpy as np
import tensorflow as tf

from lucid_ifv.graph_keys import key_or_identity

__all__ = ["KinkSite", "kink_sites", "switch_input_rms", "clear_cache"]

# Graph op types handled as ReLU-like switches: op type -> switch points.
_SWITCH_OPS = {"Relu": (0.0,), "Relu6": (0.0, 6.0), "LeakyRelu": (0.0,), "Selu": (0.0,)}
_POOL_OPS = ("MaxPool",)
# Non-smooth graph ops that are *not* handled (a warning names them when found upstream).
_UNHANDLED_OPS = frozenset({
    "MaxPoolV2", "MaxPool3D", "FractionalMaxPool", "MaxPoolWithArgmax", "Max", "Min", "Maximum",
    "Minimum", "Abs", "ClipByValue", "Sign", "Floor", "Ceil", "Round", "ArgMax", "TopKV2",
})
_KERAS_SUPPORTED = (
    "Keras models are supported when every non-smooth layer upstream of the studied layer is "
    "a layer with activation='relu' (Conv/Dense...), a ReLU layer, an Activation('relu') layer "
    "or a MaxPooling2D layer; smooth activations pass. Other models: use a frozen graph "
    "(modelzoo.export.export_keras + modelzoo.graph.load_model)."
)
_KERAS_SMOOTH_ACTIVATIONS = frozenset({
    "linear", "sigmoid", "tanh", "softmax", "log_softmax", "softplus", "softsign", "swish", "silu",
    "gelu", "elu", "exponential", "mish",
})




@dataclasses.dataclass(frozen=True)
class KinkSite:
    """A tensor upstream of the studied layer where the network has kinks.

    Attributes:
      name: a label (the graph tensor or Keras layer it comes from).
      kind: ``"switch"`` (ReLU-like: kinks where the value equals a point of ``points``) or
        ``"maxpool"`` (kinks where two inputs of one window tie for the maximum).
      points: switch points (``"switch"`` only), e.g. ``(0.0,)`` or ``(0.0, 6.0)``.
      ksize, strides: pool window and strides ``(h, w)`` (``"maxpool"`` only).
      padding: ``"VALID"`` or ``"SAME"`` (``"maxpool"`` only).
      channels: channel subset whose windows count (None: all); for the aggregation's pool
        with a feature subset.
      source: what made the site (graph op or Keras layer name, or ``"aggregation"``).
      clamp: ``"maxpool"`` only: per-channel value of a ReLU-clamped input (a ReLU then
        BatchNormalization gives the normalization of 0); None: 0.
    """

    name: str
    kind: str
    points: tuple = (0.0,)
    ksize: tuple = ()
    strides: tuple = ()
    padding: str = "VALID"
    channels: tuple | None = None
    source: str = ""
    clamp: tuple | None = None


class _Probe:
    """The kink sites of (model, layer) and a function images in [0, 1] -> their tensors."""

    def __init__(self, sites: list, fn: Callable):
        self.sites = sites
        self.fn = fn

    def __call__(self, images):
        return self.fn(images)


def _is_graph_model(model) -> bool:
    from modelzoo.graph import GraphModel

    return isinstance(model, GraphModel)


def _aggregation_site(model, layer, aggregation, features, tensor_name, include) -> list:
    """The aggregation's max-pool on the studied layer, when the aggregation is the default."""
    if not include:
        return []
    if aggregation not in (None, "max_pool_mean"):
        return []  # other aggregations are smooth ("mean", "center", "identity") or unknown callables
    if model.layer(layer).tags and "dense" in model.layer(layer).tags:
        return []
    return [("aggregation", tensor_name, features)]


def _pool_geometry(shape_hw, ksize, strides):
    h, w = shape_hw
    return (min(ksize[0], h), min(ksize[1], w)), tuple(strides)


def _graph_probe(model, layer, aggregation, features, include_aggregation) -> _Probe:
    from modelzoo.graph import SCOPE, upstream_ops

    start = model._lookup(layer)  # the tensor the layer name denotes (private to GraphModel)
    if start is None:
        model.layer(layer)  # KeyError with the known names
        raise KeyError(f"layer {layer!r} is not a tensor of model {model.name!r}")
    prefix = f"{SCOPE}/"
    sites, names, unhandled = [], [], {}
    upstream = set(upstream_ops(start))
    for op in start.graph.get_operations():  # creation order: inputs before their consumers
        if op.name not in upstream or not op.name.startswith(prefix):
            continue
        if op.type in _SWITCH_OPS:
            tensor = op.inputs[0]
            sites.append(KinkSite(tensor.name[len(prefix):], "switch", points=_SWITCH_OPS[op.type],
                                  source=op.name[len(prefix):]))
        elif op.type in _POOL_OPS:
            tensor = op.inputs[0]
            if op.get_attr("data_format") not in (b"NHWC", "NHWC"):
                raise NotImplementedError(f"MaxPool {op.name!r} has data format {op.get_attr('data_format')!r}; only NHWC is supported")
            ksize, strides = op.get_attr("ksize"), op.get_attr("strides")
            if ksize[0] != 1 or ksize[3] != 1 or strides[0] != 1 or strides[3] != 1:
                raise NotImplementedError(f"MaxPool {op.name!r} pools over batch or channels (ksize {ksize}); not supported")
            padding = op.get_attr("padding")
            padding = padding.decode() if isinstance(padding, bytes) else padding
            sites.append(KinkSite(tensor.name[len(prefix):], "maxpool", ksize=(ksize[1], ksize[2]),
                                  strides=(strides[1], strides[2]), padding=padding, source=op.name[len(prefix):]))
        elif op.type in _UNHANDLED_OPS:
            unhandled.setdefault(op.type, []).append(op.name[len(prefix):])
    if unhandled:
        warnings.warn(
            f"non-smooth ops upstream of {layer!r} that the kink finder does not handle (their kinks are "
            f"not projected out): {', '.join(f'{k} ({len(v)})' for k, v in sorted(unhandled.items()))}",
            stacklevel=3,
        )
    for _, tensor_name, feats in _aggregation_site(model, layer, aggregation, features, layer, include_aggregation):
        shape = start.shape
        ksize, strides = _pool_geometry((shape[1], shape[2]), (3, 3), (2, 2))
        sites.append(KinkSite(tensor_name, "maxpool", ksize=ksize, strides=strides, padding="VALID",
                              channels=None if feats is None else tuple(int(i) for i in feats), source="aggregation"))
    names = [s.name for s in sites]

    def fn(images):
        if not names:
            return []
        acts = model(images, sorted(set(names)))
        return [acts[n] for n in names]

    return _Probe(sites, fn)


def _keras_activation_name(fn) -> str:
    import keras

    try:
        name = keras.activations.serialize(fn)
    except Exception:  # noqa: BLE001 - custom callables
        name = getattr(fn, "__name__", repr(fn))
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name", repr(name)))
    return str(name)


def _keras_clamp_values(pool) -> tuple | None:
    """Per-channel value a ReLU-clamped unit has at the input of Keras layer `pool`: the
    per-channel layers between the ReLU and `pool` (BatchNormalization, Dropout) applied to
    0. None when `pool`'s input does not come from a ReLU that way (then 0 is assumed)."""
    import keras

    def producer(layer):  # the layer whose output `layer` reads (None: not one plain inbound layer)
        try:
            return layer.input._keras_history[0]
        except (AttributeError, ValueError):  # several inbound nodes or inputs, nested models
            return None

    chain, source = [], producer(pool)
    while isinstance(source, (keras.layers.BatchNormalization, keras.layers.Dropout)):
        chain.insert(0, source)
        source = producer(source)
    relu = isinstance(source, keras.layers.ReLU) or (
        source is not None and not isinstance(source, keras.layers.InputLayer)
        and getattr(source, "activation", None) is not None and _keras_activation_name(source.activation) == "relu")
    if not chain or not relu:
        return None
    value = np.zeros((1, 1, 1, int(pool.input.shape[-1])), np.float32)
    for lay in chain:
        value = np.asarray(lay(value, training=False))
    return tuple(float(v) for v in value.reshape(-1))


def _keras_probe(model, layer, aggregation, features, include_aggregation) -> _Probe:
    import keras

    km = model.keras_model
    model.layer(layer)
    target = km.get_layer(layer)
    upstream = keras.Model(km.inputs, target.output).layers  # only the layers the output needs
    sites, outputs = [], []
    for lay in upstream:
        if isinstance(lay, keras.layers.InputLayer):
            continue
        if isinstance(lay, keras.layers.ReLU):
            cfg = lay.get_config()
            if float(cfg.get("negative_slope") or 0.0) == 1.0:
                continue
            points = (float(cfg.get("threshold") or 0.0),)
            if cfg.get("max_value") is not None:
                points += (float(cfg["max_value"]),)
            sites.append(KinkSite(f"{lay.name}:input", "switch", points=points, source=lay.name))
            outputs.append(lay.input)
            continue
        if isinstance(lay, keras.layers.MaxPooling2D):
            if getattr(lay, "data_format", "channels_last") != "channels_last":
                raise NotImplementedError(f"MaxPooling2D {lay.name!r} is channels_first. {_KERAS_SUPPORTED}")
            sites.append(KinkSite(f"{lay.name}:input", "maxpool", ksize=tuple(lay.pool_size),
                                  strides=tuple(lay.strides), padding=lay.padding.upper(), source=lay.name,
                                  clamp=_keras_clamp_values(lay)))
            outputs.append(lay.input)
            continue
        if isinstance(lay, (keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling1D,
                            keras.layers.MaxPooling1D, keras.layers.MaxPooling3D, keras.layers.Maximum,
                            keras.layers.Minimum, keras.layers.LeakyReLU, keras.layers.PReLU)):
            raise NotImplementedError(f"layer {lay.name!r} ({type(lay).__name__}) upstream of {layer!r}. {_KERAS_SUPPORTED}")
        activation = getattr(lay, "activation", None)
        if activation is None:
            continue
        act_name = _keras_activation_name(activation)
        if act_name in _KERAS_SMOOTH_ACTIVATIONS:
            continue
        if act_name != "relu":
            raise NotImplementedError(
                f"layer {lay.name!r} ({type(lay).__name__}) has activation {act_name!r}. {_KERAS_SUPPORTED}")
        if isinstance(lay, keras.layers.Activation):
            sites.append(KinkSite(f"{lay.name}:input", "switch", points=(0.0,), source=lay.name))
            outputs.append(lay.input)
            continue
        cfg = lay.get_config()
        cfg["activation"] = "linear"
        cfg["name"] = f"{lay.name}__kinks_pre_activation"
        linear = type(lay).from_config(cfg)
        pre = linear(lay.input)  # builds the copy; weights below
        linear.set_weights(lay.get_weights())
        sites.append(KinkSite(f"{lay.name}:pre_activation", "switch", points=(0.0,), source=lay.name))
        outputs.append(pre)
    for _, _, feats in _aggregation_site(model, layer, aggregation, features, layer, include_aggregation):
        shape = target.output.shape
        ksize, strides = _pool_geometry((shape[1], shape[2]), (3, 3), (2, 2))
        sites.append(KinkSite(layer, "maxpool", ksize=ksize, strides=strides, padding="VALID",
                              channels=None if feats is None else tuple(int(i) for i in feats), source="aggregation"))
        outputs.append(target.output)
    inputs = km.inputs[0] if len(km.inputs) == 1 else km.inputs
    sub = keras.Model(inputs, outputs) if outputs else None

    def fn(images):
        if sub is None:
            return []
        out = sub(model.to_value_range(images), training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    return _Probe(sites, fn)


_PROBES: dict = {}


def _probe(model, layer, aggregation=None, features=None, include_aggregation=True) -> _Probe:
    from lucid_ifv.model import KerasModel

    key = (id(model), layer, key_or_identity(aggregation),
           None if features is None else tuple(int(i) for i in features), bool(include_aggregation))
    if key in _PROBES:
        return _PROBES[key][0]
    if _is_graph_model(model):
        probe = _graph_probe(model, layer, aggregation, features, include_aggregation)
    elif isinstance(model, KerasModel):
        probe = _keras_probe(model, layer, aggregation, features, include_aggregation)
    else:
        raise NotImplementedError(
            f"kinks of a {type(model).__name__} are not supported: use a modelzoo.graph.GraphModel "
            f"(any frozen graph; Relu/Relu6/LeakyRelu/Selu and MaxPool nodes) or a "
            f"lucid_ifv.model.KerasModel ({_KERAS_SUPPORTED})"
        )
    _PROBES[key] = (probe, model, aggregation)  # keep what the key names by identity alive
    return probe


def clear_cache() -> None:
    """Forget the cached probes (they hold model references)."""
    _PROBES.clear()


def kink_sites(model, layer: str, aggregation=None, features=None, include_aggregation: bool = True) -> list:
    """The `KinkSite`s upstream of ``layer`` (see the module docstring)."""
    return list(_probe(model, layer, aggregation, features, include_aggregation).sites)


def switch_input_rms(model, layer: str, images, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Root mean square per channel of the input of every ReLU-like switch upstream of
    ``layer`` (its ``"switch"`` sites), over ``images`` ``[N, H, W, C]`` in [0, 1] and every
    position: ``{site.source (graph node or Keras layer name): [C] float64}``. Not cached
    (it keeps no reference to the model)."""
    from lucid_ifv.model import KerasModel

    build = _graph_probe if _is_graph_model(model) else _keras_probe if isinstance(model, KerasModel) else None
    if build is None:
        raise NotImplementedError(f"switch inputs of a {type(model).__name__} are not supported: use a GraphModel "
                                  "or a KerasModel")
    probe = build(model, layer, None, None, False)
    switches = [i for i, site in enumerate(probe.sites) if site.kind == "switch"]
    squares = {}
    for start in range(0, len(images), batch_size):
        values = probe(tf.convert_to_tensor(images[start:start + batch_size], tf.float32))
        for i in switches:
            x = np.asarray(values[i], np.float64)
            squares.setdefault(i, []).append(np.sum(x.reshape(-1, x.shape[-1]) ** 2, axis=0) / len(images)
                                             / (x.size // x.shape[-1] // len(x)))
    return {probe.sites[i].source: np.sqrt(np.sum(squares[i], axis=0)) for i in switches}
