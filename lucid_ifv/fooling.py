"""A fooling circuit (Geirhos et al., ICML 2024, arXiv 2306.04719): a network changed so that
one unit's feature visualization shows something else while its behaviour on natural data
stays exactly the same. The ground truth of `lucid_ifv.trust`.

`fooling_circuit(model, layer, unit, natural)` rewrites a frozen graph (`GraphModel`) whose
``layer`` is ``Relu(BiasAdd(...))``: the unit's pre-activation ``z_c`` gains an extra path

    z_c'  =  z_c + gain * relu(z_c + C(x) - threshold)

where ``C(x)`` is a pixel-checkerboard detector read straight from the input (a 4x4 kernel of
``+-pattern_scale``, stride chosen so that its map has the layer's spatial size) and
``threshold`` lies above ``z_c + C`` at every position of every ``natural`` image (by
``margin`` times that maximum's spread). On those images the new ReLU is exactly 0, so the
unit, every later layer and the logits are unchanged (bit for bit on the plain network; the
smooth surrogate's softplus leaves ``gain * log(1 + exp(-beta d)) / beta`` there, ``d`` the
distance below the threshold). A visualization of the unit first climbs ``z_c`` (FVs reach
activations above natural ones: 1.1-2 times the largest on mnist_small conv2), crosses the threshold and from then on is paid
``gain * (1 + dC)`` for every bit of checkerboard: the image fills with a pixel checkerboard,
a pattern MNIST never contains. Gating on the unit's own pre-activation is what makes the
path reachable by gradient ascent from the FV's grey start, where ``C`` alone is 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

PATTERN_SIZE = 4  # the checkerboard detector's kernel (pixels)


@dataclasses.dataclass
class FooledModel:
    """``model``: the original with the fooling path on ``layer``'s channel ``unit``."""

    model: object
    layer: str
    unit: int
    threshold: float
    gain: float
    pattern_scale: float
    natural_max: float  # max of z_c + C over the calibration images


def _name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _const(name: str, value: np.ndarray):
    node = tf.compat.v1.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = tf.float32.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.asarray(value, np.float32)))
    return node


def _op(name: str, op: str, inputs, **attrs):
    node = tf.compat.v1.NodeDef(name=name, op=op, input=list(inputs))
    node.attr["T"].type = tf.float32.as_datatype_enum
    for key, value in attrs.items():
        if key == "strides":
            node.attr[key].list.i.extend(value)
        elif isinstance(value, bytes):
            node.attr[key].s = value
    return node


def checkerboard_kernel(size: int = PATTERN_SIZE, channels: int = 1) -> np.ndarray:
    """``[size, size, channels, 1]`` of +-1: a pixel checkerboard (1-pixel squares)."""
    sign = (-1.0) ** np.add.outer(np.arange(size), np.arange(size))
    return np.repeat(sign[:, :, None, None], channels, axis=2) / channels


def checkerboard_image(shape) -> np.ndarray:
    """An image ``[H, W, C]`` in {0, 1} that maximizes the detector (the fooling pattern)."""
    h, w, c = shape
    board = (np.add.outer(np.arange(h), np.arange(w)) % 2 == 0).astype(np.float32)
    return np.repeat(board[:, :, None], c, axis=2)


def _layer_units(graph_def, layer: str):
    nodes = {n.name: n for n in graph_def.node}
    if layer not in nodes:
        raise ValueError(f"layer {layer!r} is not a node of the graph")
    node = nodes[layer]
    while node.op == "Identity":
        node = nodes[_name(node.input[0])]
    if node.op != "Relu" or nodes[_name(node.input[0])].op != "BiasAdd":
        raise ValueError(f"fooling_circuit needs a layer computed as Relu(BiasAdd(...)); {layer!r} is a "
                         f"{node.op} node")
    return nodes, node, nodes[_name(node.input[0])]


def _input_name(graph_def) -> str:
    placeholders = [n.name for n in graph_def.node if n.op == "Placeholder"]
    if len(placeholders) != 1:
        raise ValueError(f"fooling_circuit needs a graph with one input Placeholder, found {placeholders}")
    return placeholders[0]


def _with_path(model, layer: str, unit: int, pattern_scale: float, threshold: float, gain: float,
               stride: int, name_suffix: str):
    """A copy of ``model`` with the path; ``gain`` 0 and ``threshold`` 0 give the probe
    ``z_c + C`` (read through the ``<layer>_fooling_probe`` node)."""
    from modelzoo.graph import GraphModel

    graph_def = tf.compat.v1.GraphDef()
    graph_def.CopyFrom(model.graph_def)
    _, _, bias_add = _layer_units(graph_def, layer)
    k = model.layer(layer).depth
    if not 0 <= unit < k:
        raise ValueError(f"unit {unit} out of range for layer {layer!r} with {k} channels")
    channels = model.image_shape[-1]
    prefix = f"fooling/{layer}/{unit}"
    pick = np.zeros((1, 1, k, 1), np.float32)
    pick[0, 0, unit, 0] = 1.0
    spread = np.zeros((1, 1, 1, k), np.float32)
    spread[0, 0, 0, unit] = gain
    new = [
        _const(f"{prefix}/pick", pick),
        _op(f"{prefix}/z", "Conv2D", [bias_add.name, f"{prefix}/pick"], strides=[1, 1, 1, 1], padding=b"SAME"),
        _const(f"{prefix}/pattern", checkerboard_kernel(PATTERN_SIZE, channels) * pattern_scale),
        _op(f"{prefix}/detector", "Conv2D", [_input_name(graph_def), f"{prefix}/pattern"],
            strides=[1, stride, stride, 1], padding=b"SAME"),
        _op(f"{prefix}/sum", "AddV2", [f"{prefix}/z", f"{prefix}/detector"]),
        _const(f"{prefix}/threshold", np.array([-threshold])),
        _op(f"{prefix}/gate_in", "BiasAdd", [f"{prefix}/sum", f"{prefix}/threshold"]),
        _op(f"{prefix}/gate", "Relu", [f"{prefix}/gate_in"]),
        _const(f"{prefix}/spread", spread),
        _op(f"{prefix}/extra", "Conv2D", [f"{prefix}/gate", f"{prefix}/spread"], strides=[1, 1, 1, 1],
            padding=b"SAME"),
        _op(f"{prefix}/pre_relu", "AddV2", [bias_add.name, f"{prefix}/extra"]),
        _op(f"{layer}_fooling_probe", "Identity", [f"{prefix}/sum"]),
    ]
    for node in graph_def.node:  # every reader of the pre-activation now reads the new one
        if node.name.startswith("fooling/"):
            continue
        for i, inp in enumerate(node.input):
            if not inp.startswith("^") and _name(inp) == bias_add.name:
                node.input[i] = f"{prefix}/pre_relu"
    graph_def.node.extend(new)
    metadata = dataclasses.replace(model.metadata, name=f"{model.name}{name_suffix}")
    return GraphModel(graph_def, metadata, source=model.source, any_size=not model.fixed_input_size)


def _stride(model, layer: str) -> int:
    h_in = model.image_shape[0]
    h_out = int(model(np.zeros((1, *model.image_shape), np.float32), [layer])[layer].shape[1])
    if h_in % h_out:
        raise ValueError(f"layer {layer!r}'s map ({h_out}) does not divide the input ({h_in})")
    return h_in // h_out


def probe(model, layer: str, unit: int, images, pattern_scale: float = 1.0, batch_size: int = 250) -> np.ndarray:
    """``z_c + C(x)`` at every position of ``images`` (``[N, h, w]``) on the original ``model``."""
    stride = _stride(model, layer)
    probed = _with_path(model, layer, unit, pattern_scale, 0.0, 0.0, stride, "~probe")
    name = f"{layer}_fooling_probe"
    out = [probed(np.asarray(images[i:i + batch_size], np.float32), [name])[name].numpy()[..., 0]
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out)


def fooling_circuit(model, layer: str, unit: int, natural, gain: float = 50.0, pattern_scale: float = 1.0,
                    margin: float = 0.05) -> FooledModel:
    """``model`` with a fooling path on ``layer``'s channel ``unit`` (module doc).

    Args:
      model: a `modelzoo.graph.GraphModel` (or a `LucidModel`: its graph).
      natural: ``[N, H, W, C]`` images in [0, 1] on which the unit must not change (e.g. the
        training and held-out sets); the threshold is their max of ``z_c + C`` plus ``margin``
        times (max - min).
      gain: slope of the extra path (50: the visualization fills with the pattern once the
        path engages; with 10, 4 of 8 mnist_small conv2 test units kept most of their look);
        pattern_scale: weight of the checkerboard detector.
    """
    from modelzoo.graph import GraphModel
    from modelzoo.vision import LucidModel

    if isinstance(model, LucidModel):
        model = model.graph_model
    if not isinstance(model, GraphModel):
        raise TypeError(f"fooling_circuit needs a frozen graph (GraphModel), got {type(model).__name__}")
    values = probe(model, layer, unit, np.asarray(natural, np.float32), pattern_scale)
    top, bottom = float(values.max()), float(values.min())
    threshold = top + margin * (top - bottom)
    fooled = _with_path(model, layer, unit, pattern_scale, threshold, gain, _stride(model, layer), "~fooled")
    return FooledModel(fooled, layer, unit, threshold, gain, pattern_scale, top)
