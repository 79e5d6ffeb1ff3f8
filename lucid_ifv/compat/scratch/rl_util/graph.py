"""TF2 stand-ins for the TF1 graph work of Lucid's ``rl_util`` (not a Lucid module).

Lucid's helpers import the model's frozen graph into a fresh ``tf.Graph`` under a session,
with a placeholder for the observations, and evaluate or feed any tensor by name. Here the
graph of a `modelzoo.graph.GraphModel` (or of a loaded `LucidModel`) is imported into a
``tf.compat.v1.wrap_function``: observations in [0, 1] are mapped to the model's value range
(and through its input prefix, see `lucid_ifv.compat.modelzoo.vision_models`) as Lucid's
``import_model`` does, and intermediate tensors can be replaced ("fed") through
``import_graph_def``'s ``input_map``, which is what TF1's ``feed_dict`` does to a tensor.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from lucid_ifv.compat.misc.gradient_override import gradient_override_map

SCOPE = "import"
_shape_graphs: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def tensor_name(name: str) -> str:
    """``"x"`` -> ``"x:0"``; names with an output index are kept."""
    return name if ":" in name else f"{name}:0"


def graph_model_of(model, what: str):
    """The `GraphModel` behind `model` (a `GraphModel`, or a `LucidModel` -- loaded now);
    TypeError for other models, naming `what` needs a frozen graph."""
    from modelzoo.graph import GraphModel
    from modelzoo.vision import LucidModel

    if isinstance(model, LucidModel):
        return model.graph_model
    if isinstance(model, GraphModel):
        return model
    raise TypeError(f"{what} works on a model's frozen graph (a modelzoo GraphModel or LucidModel, e.g. "
                    f"Model.load / modelzoo.load_model of a Lucid .pb); got {type(model).__name__}. Keras "
                    f"models can be exported to one with modelzoo.export_keras")


def _prepared_input(graph_model, images):
    lo, hi = graph_model.image_value_range
    return lo + images * (hi - lo)


def static_shape(graph_model, name: str) -> list:
    """Static shape of tensor `name` with the input's shape unknown (Lucid's ``get_shape``)."""
    entry = _shape_graphs.get(graph_model)
    if entry is None or entry[0] is not graph_model.graph_def:
        graph = tf.Graph()
        with graph.as_default():
            images = tf.compat.v1.placeholder(tf.float32, (None, None, None, None))
            tf.compat.v1.import_graph_def(graph_model.graph_def,
                                          input_map={tensor_name(graph_model.input_name): _prepared_input(
                                              graph_model, images)}, name=SCOPE)
        entry = (graph_model.graph_def, graph)
        _shape_graphs[graph_model] = entry
    try:
        tensor = entry[1].get_tensor_by_name(f"{SCOPE}/{tensor_name(name)}")
    except (KeyError, ValueError) as e:
        raise KeyError(f"{name!r} is not a tensor of the graph of {graph_model.name!r}: {e}") from None
    return tensor.shape.as_list()


def constant_value(graph_model, name: str) -> np.ndarray:
    """The value of tensor `name` of the graph, which must not depend on the input."""
    node_name, _, index = tensor_name(name).rpartition(":")
    for node in graph_model.graph_def.node:
        if node.name == node_name and node.op == "Const" and index == "0":
            return tf.make_ndarray(node.attr["value"].tensor).copy()
    function = GraphFunction(graph_model, [name])
    if function.depends_on_input(0):
        raise ValueError(f"{name!r} depends on the input of {graph_model.name!r}: it is not a variable "
                         f"(get its values for given observations with get_acts)")
    return function.constants()[0]


class GraphFunction:
    """The graph of `graph_model` imported once: ``fn(images, *feeds)`` -> the `fetches`.

    Args:
      graph_model: the `GraphModel`.
      fetches: tensor names to compute.
      feeds: tensor names whose values are passed in after the images (replacing them in the
        graph, as a TF1 ``feed_dict`` does).
      override: ``{op type: gradient function}`` for ops of the imported graph (Lucid's
        ``gradient_override_map``), honoured by ``tf.GradientTape`` through the function.
      image_shape: ``(H, W, C)`` of the images (None entries: any); default any H and W.
      feed_shapes: one static shape per feed (default unknown).
    """

    def __init__(self, graph_model, fetches, feeds=(), override=None, image_shape=None, feed_shapes=None):
        self.graph_model = graph_model
        self.fetches, self.feeds = [tensor_name(n) for n in fetches], [tensor_name(n) for n in feeds]
        channels = graph_model.image_shape[-1]
        image_shape = tuple(image_shape) if image_shape is not None else (None, None, channels)
        specs = [tf.TensorSpec((None, *image_shape), tf.float32)]
        specs += [tf.TensorSpec(s, tf.float32) for s in (feed_shapes or [None] * len(self.feeds))]

        def body(images, *feed_values):
            input_map = {tensor_name(graph_model.input_name): _prepared_input(graph_model, images)}
            input_map.update(zip(self.feeds, feed_values))
            with gradient_override_map(override or {}):
                tf.compat.v1.import_graph_def(graph_model.graph_def, input_map=input_map, name=SCOPE)

        self._wrapped = tf.compat.v1.wrap_function(body, specs)
        graph = self._wrapped.graph
        missing = [n for n in self.fetches + self.feeds if not self._has(graph, n)]
        if missing:
            raise KeyError(f"{', '.join(map(repr, missing))}: not tensor(s) of the graph of {graph_model.name!r}")
        self._outputs = [graph.get_tensor_by_name(f"{SCOPE}/{n}") for n in self.fetches]
        self._function = self._wrapped.prune(list(self._wrapped.inputs), self._outputs)

    @staticmethod
    def _has(graph, name: str) -> bool:
        try:
            graph.get_tensor_by_name(f"{SCOPE}/{name}")
            return True
        except (KeyError, ValueError):
            return False

    def depends_on_input(self, i: int) -> bool:
        """Whether fetch `i` depends on the images (a walk of the imported graph)."""
        start = self._wrapped.inputs[0].op
        seen, stack = set(), [self._outputs[i].op]
        while stack:
            op = stack.pop()
            if op is start:
                return True
            if op.name in seen:
                continue
            seen.add(op.name)
            stack.extend(t.op for t in op.inputs)
            stack.extend(op.control_inputs)
        return False

    def constants(self) -> list:
        """The fetches' values for a dummy input (for fetches that do not depend on it)."""
        shape = [1] + [d or 1 for d in self._wrapped.inputs[0].shape.as_list()[1:]]
        feeds = [tf.zeros([d or 1 for d in (t.shape.as_list() if t.shape.rank is not None else [1])])
                 for t in self._wrapped.inputs[1:]]
        return [v.numpy() for v in self(tf.zeros(shape), *feeds)]

    def __call__(self, images, *feed_values):
        outputs = self._function(tf.convert_to_tensor(images, tf.float32),
                                 *(tf.convert_to_tensor(v, tf.float32) for v in feed_values))
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
