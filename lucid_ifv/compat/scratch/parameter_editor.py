"""``lucid.scratch.parameter_editor``: `ParameterEditor`, Lucid's editor of a frozen graph's
constants (weights), in TensorFlow 2 (no graph session: the constants are read and written
with ``tf.make_ndarray`` / ``tf.make_tensor_proto``).

Example (Lucid's)::

    model = models.InceptionV1()
    param = ParameterEditor(model.graph_def)
    # Flip weights of first channel of conv2d0
    param["conv2d0_w", :, :, :, 0] *= -1

Edits take effect in loaded models. A lucid-ifv model imports its GraphDef once, when it is
loaded, so editing the GraphDef alone would not change what the model computes. The editor
therefore looks up the loaded models whose GraphDef it edits (`modelzoo.graph.GraphModel`s
holding this very GraphDef object, and the `LucidModel`s -- e.g. the compat zoo classes --
holding those) and re-imports them after every assignment (`reload_model`), dropping what
was derived from the old graph (the redirected-ReLU variant ``render_vis`` caches). A
GraphDef that no loaded model holds (e.g. read from a file) is just edited; build a model
from it afterwards. `ParameterEditor` also accepts the model itself.

Differences from Lucid: constants of any dtype and encoding are read and written (Lucid reads
``tensor_content`` as float32 only); an unknown name raises KeyError naming the constants; a
whole-array assignment of the wrong shape raises ValueError (Lucid: AssertionError).
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import tensorflow as tf

EDITED_FLAG = "lucid_is_edited"


def _graph_model_classes():
    from modelzoo.graph import GraphModel
    from modelzoo.vision import LucidModel

    return GraphModel, LucidModel


def _holders(obj, cls, attribute: str) -> list:
    """Live instances of `cls` whose ``__dict__[attribute]`` is `obj` (found through the
    garbage collector's referrers: instance dicts and, in Python 3.11+, instances)."""
    found = []
    for ref in gc.get_referrers(obj):
        if isinstance(ref, cls) and ref.__dict__.get(attribute) is obj:
            found.append(ref)
        elif isinstance(ref, dict) and ref.get(attribute) is obj:
            found += [o for o in gc.get_referrers(ref) if isinstance(o, cls) and o.__dict__ is ref]
    unique = {id(o): o for o in found}
    return list(unique.values())


def reload_model(model) -> None:
    """Re-import a loaded model from its (edited) GraphDef, so that it computes with the
    GraphDef's current constants: a `modelzoo.graph.GraphModel`, or a `LucidModel` (compat zoo
    classes included) whose graph is loaded. The model keeps its GraphDef object; its cached
    redirected-ReLU variant is dropped. A `LucidModel` whose graph is not loaded yet is left
    alone (it will load from ``model_path``)."""
    from lucid_ifv.compat.modelzoo.vision_models import rebuilt_graph_model

    GraphModel, LucidModel = _graph_model_classes()
    if isinstance(model, LucidModel):
        graph_model = model.__dict__.get("_graph_model")
        if graph_model is None:
            return
    elif isinstance(model, GraphModel):
        graph_model = model
    else:
        raise TypeError(f"reload_model needs a GraphModel or a LucidModel, got {type(model).__name__}")
    graph_def = graph_model.graph_def
    state = dict(vars(rebuilt_graph_model(graph_model, graph_def)))
    state["graph_def"] = graph_def  # the edited object itself (the new model imported a copy of it)
    state.pop("_redirected", None)
    graph_model.__dict__.pop("_redirected", None)
    graph_model.__dict__.update(state)
    for holder in [model, *_holders(graph_model, LucidModel, "_graph_model")]:
        holder.__dict__.pop("_redirected", None)
    from lucid_ifv import ifv, render, smooth

    # compiled renders, Jacobians and surrogates know the model by identity: drop the stale ones
    render.clear_cache()
    ifv.clear_cache()
    smooth.clear_cache()


def _edited_flag_node():
    with tf.Graph().as_default() as temp_graph:
        tf.constant(True, name=EDITED_FLAG)
    return temp_graph.as_graph_def().node[0]


class ParameterEditor:
    """Conveniently edit the parameters of a lucid model.

    Example usage::

      model = models.InceptionV1()
      param = ParameterEditor(model.graph_def)
      # Flip weights of first channel of conv2d0
      param["conv2d0_w", :, :, :, 0] *= -1

    Args:
      graph_def: a ``tf.compat.v1.GraphDef`` (e.g. ``model.graph_def``), or a loaded model
        (`GraphModel` or `LucidModel`) whose GraphDef to edit.

    ``editor[name]`` is a copy of constant `name` (a NumPy array of its dtype);
    ``editor[name, i, j, ...]`` indexes it. ``editor[name] = array`` replaces it (same shape,
    cast to its dtype); ``editor[name, i, ...] = value`` assigns into it. Constructing the
    editor adds Lucid's marker constant ``lucid_is_edited`` to the GraphDef. Assignments
    re-import the loaded models that hold this GraphDef (see the module doc).
    """

    def __init__(self, graph_def):
        GraphModel, LucidModel = _graph_model_classes()
        if isinstance(graph_def, LucidModel):
            graph_def = graph_def.graph_model.graph_def
        elif isinstance(graph_def, GraphModel):
            graph_def = graph_def.graph_def
        if not isinstance(graph_def, tf.compat.v1.GraphDef):
            raise TypeError(f"ParameterEditor needs a GraphDef (model.graph_def) or a loaded model, got "
                            f"{type(graph_def).__name__}")
        self.graph_def = graph_def
        self.nodes = {}
        for node in graph_def.node:
            if "value" in node.attr:
                self.nodes[str(node.name)] = node
        # Set a flag to mark the fact that this is an edited model
        if EDITED_FLAG not in self.nodes:
            graph_def.node.extend([_edited_flag_node()])
        self._models = weakref.WeakSet(_holders(graph_def, GraphModel, "graph_def"))

    def _tensor(self, name):
        node = self.nodes.get(name)
        if node is None:
            consts = sorted(self.nodes)
            shown = ", ".join(consts[:8]) + (f", ... ({len(consts)} in all)" if len(consts) > 8 else "")
            raise KeyError(f"{name!r} is not a constant of the graph; its constants (Const nodes) are: {shown or 'none'}")
        return node.attr["value"].tensor

    def __getitem__(self, key):
        name = key[0] if isinstance(key, tuple) else key
        array = tf.make_ndarray(self._tensor(name)).copy()
        return array[key[1:]] if isinstance(key, tuple) else array

    def __setitem__(self, key, new_value):
        name = key[0] if isinstance(key, tuple) else key
        tensor = self._tensor(name)
        array = tf.make_ndarray(tensor).copy()
        node_shape = array.shape
        if isinstance(key, tuple):
            array[key[1:]] = new_value
        else:
            new_value = np.asarray(new_value)
            if new_value.shape != node_shape:
                raise ValueError(f"cannot set {name!r} of shape {node_shape} to a value of shape {new_value.shape}")
            array = new_value.astype(array.dtype)
        tensor.CopyFrom(tf.make_tensor_proto(array, dtype=tf.as_dtype(tensor.dtype), shape=node_shape))
        for model in list(self._models):
            reload_model(model)
