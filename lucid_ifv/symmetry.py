"""Weight-space symmetries: the same network with a layer's channels permuted and rescaled.

For a layer whose channels come out of ReLU (or linear) units, permuting the units and
scaling each by ``s > 0`` (``relu(s z) = s relu(z)``), then undoing both in the layers that
read it, changes the weights but not the function. `permute_channels` builds that network
(B) from A:

    B[layer][..., c] = scales[c] * A[layer][..., perm[c]]      (c = 0..k-1)

so A's feature ``perm[c]`` is B's feature ``c``: ``matching = argsort(perm)`` maps A's
features to B's (`inverse_permutation`). It is the ground truth of `lucid_ifv.compare`.

Supported (each rewrite is checked numerically: B's outputs must equal A's):
  - frozen graphs (`modelzoo.graph.GraphModel`): the layer is a Relu / BiasAdd of a
    Conv2D or MatMul, a bias-free Conv2D (seen through pools), or a ConcatV2 of such units,
    nested ConcatV2s included (Inception modules, DenseNet blocks: channels are permuted
    within each unit, the network's true symmetry); readers are found by following
    channel-wise ops (Relu, MaxPool, AvgPool, Mean, Identity) and ConcatV2s (the channels at
    their offset) to Conv2D and MatMul (also after a flattening Reshape) weights, and Keras'
    unfused inference BatchNormalization absorbs the scales; a residual stream (the layer is an Add
    or is read by one, e.g. srnet_small's ``res_block*``): every Add joined to it and every
    unit writing into it are permuted and scaled alike, so the whole stream is, and its
    other readers are compensated;
  - Keras models (`KerasModel`): the layer is a Conv2D or Dense with a ReLU or linear
    activation; readers are BatchNormalization (which absorbs the scales), channel-wise
    layers (pooling, Dropout, ReLU, Activation), Flatten, and Conv2D / Dense weights.
Anything else raises a ValueError naming the op or layer.

A smooth surrogate of B is *not* a permuted surrogate of A: ``softplus(beta s z) / beta``
is ``s softplus(beta' z) / beta'`` with ``beta' = s beta``, so each rescaled unit gets its own
smoothness. `lucid_ifv.compare` measures with this in place (docs/compare.md).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from lucid_ifv.model import KerasModel, Model

PRE_RELU_SUFFIX = "_pre_relu"  # Lucid's name for a layer's tensor before its ReLU
SCALE_RANGE = (0.5, 2.0)  # default log-uniform range of the positive rescaling factors
_PASS_THROUGH_OPS = {"Identity", "Relu", "Relu6", "MaxPool", "MaxPoolV2", "AvgPool", "Mean"}
_ADD_OPS = ("AddV2", "Add")
_PASS_THROUGH_LAYERS = ("MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
                        "Dropout", "ReLU", "Activation", "SpatialDropout2D")


@dataclasses.dataclass
class PermutedModel:
    """`model` (B) with ``B[layer][..., c] = scales[c] * A[layer][..., perm[c]]``."""

    model: Model
    layer: str
    perm: np.ndarray  # [k] int
    scales: np.ndarray  # [k] float > 0

    @property
    def matching(self) -> np.ndarray:
        """``[k]``: the index in B of each of A's features (A's j is B's ``matching[j]``)."""
        return inverse_permutation(self.perm)


def inverse_permutation(perm) -> np.ndarray:
    perm = np.asarray(perm)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    return inverse


def random_symmetry(blocks, seed: int = 0, scale_range=SCALE_RANGE):
    """A random permutation within each block and log-uniform scales.

    Args:
      blocks: channel counts of consecutive blocks (``[k]`` for one block).
    Returns:
      (perm ``[sum(blocks)]``, scales ``[sum(blocks)]``).
    """
    rng = np.random.default_rng(seed)
    perm, start = [], 0
    for size in blocks:
        perm.append(start + rng.permutation(size))
        start += size
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range}")
    scales = np.exp(rng.uniform(np.log(lo), np.log(hi), start))
    return np.concatenate(perm), scales


# -- frozen graphs ------------------------------------------------------------------------------


def _name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _const_behind(nodes: dict, tensor: str, what: str):
    """The Const node a weight input reads through Identity / Reshape / Squeeze."""
    node = nodes[_name(tensor)]
    while node.op in ("Identity", "Reshape", "Squeeze", "ReadVariableOp"):
        node = nodes[_name(node.input[0])]
    if node.op != "Const":
        raise ValueError(f"cannot permute: the {what} of the layer's unit is computed by a {node.op} node "
                         f"({node.name!r}), not stored as a constant")
    return node


def _set_const(node, value: np.ndarray) -> None:
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value.astype(tf.dtypes.as_dtype(
        node.attr["dtype"].type).as_numpy_dtype)))


def _const_value(node) -> np.ndarray:
    return tf.make_ndarray(node.attr["value"].tensor)


def _layer_units(nodes: dict, layer_node) -> list:
    """The units carrying the layer's channels, in order, as (head, weight node, bias node or
    None, k): the layer itself, or each input of a ConcatV2 (nested ConcatV2s flattened: a
    DenseNet block's concatenations). A unit is ``[Relu](BiasAdd(Conv2D | MatMul))`` or a
    bias-free ``Conv2D``, seen through channel-wise pools (a DenseNet transition)."""
    heads, todo = [], [layer_node]
    while todo:
        current = _through_identity(nodes, todo.pop(0))
        if current.op == "ConcatV2":
            todo[:0] = [nodes[_name(i)] for i in current.input[:-1] if not i.startswith("^")]
        else:
            heads.append(current)
    return [_unit_weights(nodes, head) for head in heads]


def _unit_weights(nodes: dict, head) -> tuple:
    """(head, weight node, bias node or None, k) of the unit whose output ``head`` is."""
    unit = head
    while unit.op in ("Identity", "AvgPool", "MaxPool"):
        unit = nodes[_name(unit.input[0])]
    if unit.op == "Relu6":
        raise ValueError(f"cannot rescale the ReLU6 units of {head.name!r}: ReLU6 is not positively homogeneous")
    if unit.op == "Relu":
        unit = nodes[_name(unit.input[0])]
    bias = None
    if unit.op == "BiasAdd":
        bias = _const_behind(nodes, unit.input[1], "bias")
        unit = nodes[_name(unit.input[0])]
    if unit.op not in ("Conv2D", "MatMul"):
        raise ValueError(f"cannot permute the channels of {head.name!r}: expected Relu(BiasAdd(Conv2D | MatMul)) "
                         f"or a bias-free Conv2D, found a {unit.op} node")
    weights = _const_behind(nodes, unit.input[1], "weights")
    return head, weights, bias, int(_const_value(weights).shape[-1])


def _consumers(graph_def) -> dict:
    out = {}
    for node in graph_def.node:
        for i in node.input:
            if not i.startswith("^"):
                out.setdefault(_name(i), []).append(node)
    return out


def _through_identity(nodes: dict, node):
    while node.op == "Identity":
        node = nodes[_name(node.input[0])]
    return node


def _residual_stream(nodes: dict, consumers: dict, layer_node) -> tuple:
    """A residual stream through ``layer_node`` (an Add): every Add joined to it (the Adds it
    reads and the Adds that read it, transitively) and the non-Add tensors they add up (the
    units writing into the stream: ``conv_in``'s ReLU, each block's last BiasAdd).

    Returns:
      (heads, adds): lists of nodes. Permuting and scaling every head alike permutes and
      scales every Add alike.
    """
    heads, adds, todo, seen = [], [], [_through_identity(nodes, layer_node)], set()
    while todo:
        node = todo.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        if node.op in _ADD_OPS:
            adds.append(node)
            todo.extend(_through_identity(nodes, nodes[_name(i)]) for i in node.input if not i.startswith("^"))
        else:
            heads.append(node)
        todo.extend(r for r in _readers(consumers, node) if r.op in _ADD_OPS)
    return heads, adds


def _readers(consumers: dict, node) -> list:
    """The nodes that read ``node``, through Identity aliases."""
    readers, frontier = [], [node]
    while frontier:
        for reader in consumers.get(frontier.pop().name, []):
            (frontier if reader.op == "Identity" else readers).append(reader)
    return readers


def _in_stream(graph_def, nodes: dict, layer: str) -> bool:
    """Whether ``layer`` is an Add or is read by one: a residual stream's channels."""
    node = _through_identity(nodes, nodes[layer])
    return node.op in _ADD_OPS or any(r.op in _ADD_OPS for r in _readers(_consumers(graph_def), node))


def _compensate_readers(graph_def, start, perm, scales, nodes, skip=()) -> None:
    """Undo the permutation and scales in every weight that reads ``start``'s channels
    (readers named in ``skip`` carry the permuted channels on: a residual stream's Adds).

    A ConcatV2 reader carries them on at their offset (identity elsewhere: a DenseNet block);
    an inference BatchNormalization absorbs the scales and carries the permutation on."""
    consumers = _consumers(graph_def)
    width = None  # the graph's channel widths, imported once a ConcatV2 needs them
    todo, seen = [(start, False, np.asarray(perm), np.asarray(scales))], set(skip)
    while todo:
        node, flattened, perm, scales = todo.pop()
        for reader in consumers.get(node.name, []):
            if reader.name in seen:
                continue
            seen.add(reader.name)
            if reader.op in _PASS_THROUGH_OPS:
                todo.append((reader, flattened, perm, scales))
            elif reader.op == "Reshape":
                todo.append((reader, True, perm, scales))
            elif reader.op in ("Conv2D", "MatMul") and _name(reader.input[0]) == node.name:
                weights = _const_behind(nodes, reader.input[1], "reader's weights")
                w = _const_value(weights)
                k = len(perm)
                if reader.op == "Conv2D":
                    w = w[:, :, perm, :] / scales[None, None, :, None]
                else:  # rows are (position, channel) with channels fastest after a flatten
                    rows = w.reshape(-1, k, w.shape[-1]) if flattened else w[None]
                    w = (rows[:, perm, :] / scales[None, :, None]).reshape(w.shape)
                _set_const(weights, w)
            elif reader.op == "Shape" or (reader.op in ("ConcatV2", "Softmax") and not consumers.get(reader.name)):
                continue  # a shape read or an output tap (e.g. the `<layer>_pre_relu` alias)
            elif reader.op == "ConcatV2":
                width = width or _channel_width(graph_def)
                todo.append((reader, flattened, *_through_concat(nodes, reader, node, perm, scales, width)))
            elif reader.op == "Mul" and (batchnorm := _batchnorm(nodes, consumers, reader, node)):
                gamma, beta, mean, var, output = batchnorm
                for const, value in ((gamma, _const_value(gamma)[perm] / scales), (beta, _const_value(beta)[perm]),
                                     (mean, _const_value(mean)[perm] * scales), (var, _const_value(var)[perm])):
                    _set_const(const, value)
                seen.add(output.name)
                todo.append((output, flattened, perm, np.ones_like(scales)))
            else:
                raise ValueError(f"cannot undo the permutation in node {reader.name!r} ({reader.op}) that reads "
                                 f"{node.name!r}; supported readers: {sorted(_PASS_THROUGH_OPS)}, Reshape, "
                                 f"Conv2D, MatMul, ConcatV2 (channels), an inference BatchNormalization")


def _channel_width(graph_def):
    """``width(node_name)``: the static channel count of a node's first output."""
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    return lambda name: int(graph.get_tensor_by_name(f"{name}:0").shape[-1])


def _through_concat(nodes: dict, concat, source, perm, scales, width) -> tuple:
    """(perm, scales) over ``concat``'s channels: ``source``'s at its offset, identity elsewhere."""
    axis = int(_const_value(_const_behind(nodes, concat.input[-1], "concat axis")))
    if axis not in (-1, 3):
        raise ValueError(f"cannot follow the permutation through {concat.name!r}: it concatenates along axis "
                         f"{axis}, not the channels")
    inputs = [_name(i) for i in concat.input[:-1] if not i.startswith("^")]
    offset = sum(width(name) for name in inputs[:inputs.index(source.name)])
    total, k = width(concat.name), len(perm)
    full_perm = np.concatenate([np.arange(offset), offset + perm, np.arange(offset + k, total)])
    full_scales = np.concatenate([np.ones(offset), scales, np.ones(total - offset - k)])
    return full_perm, full_scales


def _batchnorm(nodes: dict, consumers: dict, mul, source):
    """Keras' unfused inference BatchNormalization that ``mul`` (``x * m``) starts:
    ``out = x * m + (beta - mean * m)``, ``m = rsqrt(var + eps) * gamma``. Returns (gamma,
    beta, mean, var Const nodes, the output AddV2 node), or None if ``mul`` is not one."""
    other = [nodes[_name(i)] for i in mul.input if _name(i) != source.name]
    try:
        (m,) = other
        rsqrt = next(nodes[_name(i)] for i in m.input if nodes[_name(i)].op == "Rsqrt")
        gamma = _const_behind(nodes, next(i for i in m.input if _name(i) != rsqrt.name), "gamma")
        var = _const_behind(nodes, nodes[_name(rsqrt.input[0])].input[0], "variance")
        (mul_mean,) = [c for c in consumers[m.name] if c.name != mul.name and c.op == "Mul"]
        mean = _const_behind(nodes, next(i for i in mul_mean.input if _name(i) != m.name), "mean")
        (sub,) = [c for c in consumers[mul_mean.name] if c.op == "Sub"]
        beta = _const_behind(nodes, sub.input[0], "beta")
        (output,) = [c for c in consumers[mul.name] if c.op in _ADD_OPS and sub.name in map(_name, c.input)]
    except (ValueError, StopIteration, KeyError):
        return None
    return gamma, beta, mean, var, output


def _stream_units(graph_def, nodes: dict, layer_node) -> tuple:
    """(heads, adds, [(weights, bias, k)] per head) of the residual stream through
    ``layer_node``; every head must be one unit of the stream's width."""
    heads, adds = _residual_stream(nodes, _consumers(graph_def), layer_node)
    units = [branch for head in heads for branch in _layer_units(nodes, head)]
    widths = {k for *_, k in units}
    if len(units) != len(heads) or len(widths) != 1:
        raise ValueError(f"cannot permute the residual stream through {layer_node.name!r}: its writers "
                         f"{[h.name for h in heads]} are not single units of one width ({sorted(widths)})")
    return heads, adds, units


def _graph_blocks(model, layer: str) -> list:
    graph_def = model.graph_def
    nodes = {n.name: n for n in graph_def.node}
    if layer not in nodes:
        raise ValueError(f"layer {layer!r} is not a node of graph {model.name!r}")
    if _in_stream(graph_def, nodes, layer):
        return [_stream_units(graph_def, nodes, nodes[layer])[2][0][-1]]
    return [k for *_, k in _layer_units(nodes, nodes[layer])]


def _permute_graph(model, layer: str, perm, scales):
    from modelzoo.graph import GraphModel

    graph_def = tf.compat.v1.GraphDef()
    graph_def.CopyFrom(model.graph_def)
    nodes = {n.name: n for n in graph_def.node}
    if _in_stream(graph_def, nodes, layer):
        _permute_stream(graph_def, nodes, nodes[layer], perm, scales)
    else:
        _permute_unit(graph_def, nodes, layer, perm, scales)
    metadata = dataclasses.replace(model.metadata, name=f"{model.name}~permuted")
    return GraphModel(graph_def, metadata, source=model.source, any_size=not model.fixed_input_size)


def _permute_stream(graph_def, nodes: dict, layer_node, perm, scales) -> None:
    """A residual stream: every unit writing into it permuted and scaled alike, every other
    reader of the stream compensated."""
    heads, adds, units = _stream_units(graph_def, nodes, layer_node)
    for _, weights, bias, _ in units:
        _scale_outputs(weights, bias, perm, scales)
    for node in heads + adds:
        _compensate_readers(graph_def, node, perm, scales, nodes, skip=[a.name for a in adds])


def _scale_outputs(weights, bias, perm, scales) -> None:
    """A unit's output channel ``c`` becomes ``scales[c]`` times its channel ``perm[c]``."""
    _set_const(weights, _const_value(weights)[..., perm] * scales)
    if bias is not None:
        _set_const(bias, _const_value(bias)[..., perm] * scales)


def _permute_unit(graph_def, nodes: dict, layer: str, perm, scales) -> None:
    """A unit, or a concatenation of units: each permuted within its channels, its readers
    compensated (through the concatenations, so a DenseNet block's later layers are too)."""
    units = _layer_units(nodes, nodes[layer])
    start = 0
    for head, weights, bias, k in units:
        local = perm[start:start + k] - start
        if local.min() < 0 or local.max() >= k:
            raise ValueError(f"the permutation must stay within each of {layer!r}'s branches {[u[-1] for u in units]}")
        s = scales[start:start + k]
        _scale_outputs(weights, bias, local, s)
        _compensate_readers(graph_def, head, local, s, nodes)
        start += k


# -- Keras ----------------------------------------------------------------------------------------


def _keras_readers(keras_model, layer):
    """Layers that read ``layer``'s output (one level)."""
    out = []
    for node in layer._outbound_nodes:
        reader = node.operation
        if reader is not keras_model and reader not in out:
            out.append(reader)
    return out


def _permute_keras(model: KerasModel, layer_name: str, perm, scales):
    keras_model = tf.keras.models.clone_model(model.keras_model)
    keras_model.set_weights(model.keras_model.get_weights())
    layer = keras_model.get_layer(layer_name)
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    if not isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)) or activation not in ("relu", "linear"):
        raise ValueError(f"cannot permute layer {layer_name!r} ({type(layer).__name__}, activation {activation}): "
                         f"expected a Conv2D or Dense with a ReLU or linear activation")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel[..., perm] * scales, bias[perm] * scales])
    k = len(perm)
    todo = [(layer, scales, False)]
    while todo:
        source, current_scales, flattened = todo.pop()
        for reader in _keras_readers(keras_model, source):
            kind = type(reader).__name__
            if kind in _PASS_THROUGH_LAYERS:
                todo.append((reader, current_scales, flattened))
            elif kind == "Flatten":
                todo.append((reader, current_scales, True))
            elif kind == "BatchNormalization":
                gamma, beta, mean, var = reader.get_weights()
                reader.set_weights([gamma[perm] / current_scales, beta[perm], mean[perm] * current_scales, var[perm]])
                todo.append((reader, np.ones(k), flattened))
            elif kind in ("Conv2D", "Dense"):
                w, *rest = reader.get_weights()
                if kind == "Conv2D":
                    w = w[:, :, perm, :] / current_scales[None, None, :, None]
                else:
                    rows = w.reshape(-1, k, w.shape[-1]) if flattened else w[None]
                    w = (rows[:, perm, :] / current_scales[None, :, None]).reshape(w.shape)
                reader.set_weights([w, *rest])
            elif kind == "Softmax" and not _keras_readers(keras_model, reader):
                continue
            else:
                raise ValueError(f"cannot undo the permutation in layer {reader.name!r} ({kind}) that reads "
                                 f"{source.name!r}")
    return KerasModel(keras_model, image_value_range=model.image_value_range, name=f"{model.name}~permuted",
                      layers=model.layer_names)


# -- the entry point ----------------------------------------------------------------------------


def _output_layer(model: Model) -> str:
    names = model.layer_names
    for name in ("logits", "softmax"):
        if name in names:
            return name
    return names[-1]


def check_same_function(a: Model, b: Model, layer: str | None = None, n: int = 8, seed: int = 0,
                        rtol: float = 1e-3) -> float:
    """Largest difference between A's and B's outputs (``layer``, default the logits) on
    random images, relative to the outputs' scale; ValueError above ``rtol``."""
    layer = layer or _output_layer(a)
    images = tf.constant(np.random.default_rng(seed).uniform(size=(n, *a.image_shape)), tf.float32)
    out_a, out_b = a(images, [layer])[layer].numpy(), b(images, [layer])[layer].numpy()
    error = float(np.abs(out_a - out_b).max() / max(np.abs(out_a).max(), 1e-12))
    if not error <= rtol:
        raise ValueError(f"the permuted network computes a different function: {layer!r} differs by {error:.2e} "
                         f"(relative; at most {rtol} expected)")
    return error


def permute_channels(model: Model, layer: str, perm=None, scales=None, seed: int = 0,
                     scale_range=SCALE_RANGE) -> PermutedModel:
    """B: ``model`` with ``layer``'s channels permuted and rescaled, the same function.

    Args:
      model: a `KerasModel` or `modelzoo.graph.GraphModel` (a `LucidModel`'s graph is used).
      layer: the layer to permute (a declared layer name), or its ``<layer>_pre_relu`` tensor:
        the same units before their ReLU, permuted and rescaled alike (``relu(s z) = s relu(z)``),
        so a comparison can be made at the pre-ReLU features (docs/compare.md, "Silent units").
      perm, scales: ``[k]``; default a random permutation within each branch (see
        `random_symmetry`) and log-uniform scales in ``scale_range``, from ``seed``.
    Returns:
      `PermutedModel` (``.model`` is B; ``.matching`` maps A's features to B's).
    """
    from modelzoo.graph import GraphModel
    from modelzoo.vision import LucidModel

    if isinstance(model, LucidModel):
        model = model.graph_model
    k = model.layer(layer).depth
    units = _units_of(model, layer)
    if isinstance(model, GraphModel):
        blocks, permute = _graph_blocks(model, units), _permute_graph
    elif isinstance(model, KerasModel):
        blocks, permute = [k], _permute_keras
    else:
        raise TypeError(f"permute_channels needs a KerasModel or GraphModel, got {type(model).__name__}")
    if perm is None or scales is None:
        random_perm, random_scales = random_symmetry(blocks, seed, scale_range)
        perm = random_perm if perm is None else perm
        scales = random_scales if scales is None else scales
    perm, scales = np.asarray(perm, int), np.asarray(scales, np.float64)
    if sorted(perm.tolist()) != list(range(k)) or scales.shape != (k,) or not (scales > 0).all():
        raise ValueError(f"perm must be a permutation of range({k}) and scales {k} positive numbers")
    permuted = permute(model, units, perm, scales)
    check_same_function(model, permuted)
    return PermutedModel(permuted, layer, perm, scales)


def _units_of(model: Model, layer: str) -> str:
    """The layer whose units ``layer`` carries: ``X`` for Lucid's ``X_pre_relu`` tensor of a
    declared layer ``X`` (the same channels before the ReLU), else ``layer`` itself."""
    base = layer.removesuffix(PRE_RELU_SUFFIX)
    if base != layer and base in {d.name for d in model.layers}:
        return base
    return layer
