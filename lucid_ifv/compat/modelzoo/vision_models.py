"""``lucid.modelzoo.vision_models``: Lucid's zoo model classes, the models that ship with
lucid-ifv by name (``models.inception_small()``), and the base classes ``Model`` (Lucid's
``vision_base.Model``) and ``Layer``.

Every class of Lucid 0.3.10's ``nets_factory.models_map`` is here with Lucid's metadata:
``InceptionV1`` (the core `modelzoo.vision.InceptionV1`) and the other zoo models --
``InceptionV1_adv_finetuned``, ``AlexNet``, ``Clip_ResNet50_4x``, the slim models
(``InceptionV1_slim`` ... ``InceptionV4_slim``, ``InceptionResnetV2_slim``, ``ResnetV1_50_slim``,
``ResnetV2_50_slim``, ``MobilenetV1_slim``, ``MobilenetV2_10_slim``, ``NasnetMobile_slim``,
``PnasnetLarge_slim``, ...) and the caffe models (``VGG16_caffe``, ``VGG19_caffe``,
``CaffeNet_caffe``, ``InceptionV1_caffe``, ``AlexNet_caffe_Places365``, ...). Their metadata
(``model_path``, ``labels_path``, ``synsets_path``, ``dataset``, ``image_shape``,
``image_value_range``, ``input_name``, ``is_BGR``, ``layers``) is data written from Lucid's
classes (``lucid_zoo.json`` next to this module); each class is a `modelzoo.vision.LucidModel`
declared by it. Metadata and layers need no graph; the graph is fetched from ``model_path``
(Lucid's ``gs://modelzoo/...`` URL) on first use or by ``load_graphdef()``, which needs the
network (offline it raises `modelzoo.fetch.DownloadError` naming the URL), or set
``model.model_path = LOCAL_PB`` first.

What these classes add to `LucidModel` (the same for ``InceptionV1``):

- ``model.graph_def``: the loaded GraphDef (loads it), as Lucid's property. Edit it with
  `lucid_ifv.compat.scratch.parameter_editor.ParameterEditor`, which re-imports the model.
- ``copy.deepcopy(model)``: an independent model (its own copy of a loaded graph), as Lucid's.
- Lucid's BGR / per-channel input (``is_BGR = True`` and ``image_value_range`` a pair of
  per-channel arrays: the caffe models and ``AlexNet``). Lucid flips the [0, 1] RGB input to
  BGR and maps channel c to ``lo[c] + x * (hi[c] - lo[c])``. Here the loaded graph gets that
  as a prefix: a new input node ``lucid_ifv_rgb_input`` (RGB in [0, 1]) -> ``ReverseV2`` ->
  ``* (hi - lo) + lo`` -> the original input node (turned into an Identity). So the instance's
  ``image_value_range`` is (0, 1) and ``lucid_image_value_range`` is Lucid's value; every
  path through the graph (``model(images, layers)``, the redirected-ReLU variant of
  ``render_vis``, ``rl_util``) sees Lucid's preprocessing.
"""

from __future__ import annotations

import copy
import json
import os
import urllib.parse
from pathlib import Path

import numpy as np
import tensorflow as tf

from lucid_ifv.model import LayerInfo as Layer
from modelzoo import fetch, lucid_format, vision
from modelzoo.graph import GraphModel
from modelzoo.lucid_format import Metadata
from modelzoo.shipped import SHIPPED, load_shipped
from modelzoo.vision import LucidModel as Model

ZOO_JSON = Path(__file__).with_name("lucid_zoo.json")
#: The input node the BGR / per-channel prefix adds (RGB images in [0, 1]).
PREFIX_INPUT = "lucid_ifv_rgb_input"


def rebuilt_graph_model(graph_model: GraphModel, graph_def=None) -> GraphModel:
    """A new `GraphModel` like `graph_model` (metadata, allowed ops, source, size policy,
    gradient overrides) imported from `graph_def` (default: a copy of its own)."""
    if graph_def is None:
        graph_def = tf.compat.v1.GraphDef()
        graph_def.CopyFrom(graph_model.graph_def)
    return GraphModel(graph_def, graph_model.metadata, allow_ops=graph_model.allow_ops,
                      source=graph_model.source, any_size=not graph_model.fixed_input_size,
                      gradient_overrides=graph_model.gradient_overrides)


def prefixed_graph_def(graph_def, input_name: str, lo, hi, bgr: bool, image_shape):
    """A copy of `graph_def` whose input `input_name` is computed from a new Placeholder
    `PREFIX_INPUT` (images in [0, 1], RGB) as Lucid's ``create_input`` does: channels reversed
    when `bgr`, then ``lo + x * (hi - lo)`` per channel (`lo`, `hi`: scalars or per channel)."""
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    nodes = {n.name: n for n in out.node}
    if input_name not in nodes:
        placeholders = [n.name for n in out.node if n.op == "Placeholder"]
        raise ValueError(f"input_name {input_name!r} is not a node of the graph; its Placeholders are "
                         f"{placeholders or '(none)'}")
    clash = [n for n in nodes if n == PREFIX_INPUT or n.startswith(PREFIX_INPUT + "/")]
    if clash:
        raise ValueError(f"the graph already has nodes named {clash[:3]}; cannot add the input prefix")
    channels = int(image_shape[-1])
    lo = np.broadcast_to(np.asarray(lo, np.float32), (channels,))
    hi = np.broadcast_to(np.asarray(hi, np.float32), (channels,))
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, (None, None, None, channels), name=PREFIX_INPUT)
        if bgr:
            x = tf.reverse(x, [-1], name=f"{PREFIX_INPUT}/bgr")
        x = tf.multiply(x, tf.constant(hi - lo, name=f"{PREFIX_INPUT}/scale"), name=f"{PREFIX_INPUT}/scaled")
        x = tf.add(x, tf.constant(lo, name=f"{PREFIX_INPUT}/offset"), name=f"{PREFIX_INPUT}/prepared")
    out.node.extend(g.as_graph_def().node)
    old = nodes[input_name]
    old.op = "Identity"
    del old.input[:]
    old.input.append(x.op.name)
    old.attr.clear()
    old.attr["T"].type = tf.float32.as_datatype_enum
    return out


class _LucidZoo:
    """What Lucid's ``vision_base.Model`` has and `LucidModel` lacks (see the module doc):
    ``graph_def``, deep copies, BGR / per-channel input ranges."""

    is_BGR = False
    lucid_module = None

    def __init__(self, **kwargs):
        lucid_range = kwargs.pop("image_value_range", type(self).image_value_range)
        channels = int(tuple(kwargs.get("image_shape", type(self).image_shape))[-1])
        lo, hi = (np.asarray(v, np.float64) for v in lucid_range)
        self.lucid_image_value_range = lucid_range
        self._input_prefix = None
        if self.is_BGR or lo.ndim or hi.ndim:
            lo, hi = (np.broadcast_to(v, (channels,)) for v in (lo, hi))
            if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (lo < hi).all()):
                raise ValueError(f"{type(self).__name__}: image_value_range {lucid_range!r} must be finite with "
                                 f"lo < hi per channel")
            self._input_prefix = (lo, hi)
            kwargs["image_value_range"] = (0.0, 1.0)
        else:
            kwargs["image_value_range"] = (float(lo), float(hi))
        super().__init__(**kwargs)

    @property
    def graph_model(self) -> GraphModel:
        if self._input_prefix is None or self._graph_model is not None:
            return super().graph_model
        if not self.model_path:
            raise ValueError(f"{self.name} has no model_path: set the class attribute or pass model_path=")
        source = os.fspath(self.model_path)
        if urllib.parse.urlsplit(source).path.lower().endswith(".json"):
            raise ValueError(f"{self.name}: model_path must be the .pb file (a manifest {source!r} cannot carry "
                             f"Lucid's BGR / per-channel input range)")
        path = fetch.resolve(source, self.cache_dir, sha256=self.model_sha256, expect="graphdef",
                             progress=self.progress)
        lo, hi = self._input_prefix
        graph_def = prefixed_graph_def(lucid_format.read_graph_def(path), self.input_name, lo, hi, self.is_BGR,
                                       self.image_shape)
        metadata = Metadata.from_dict({**self.metadata.to_dict(), "input_name": PREFIX_INPUT}, source)
        self._loaded_from = self.model_path
        self._graph_model = GraphModel(graph_def, metadata, allow_ops=self.allow_ops, source=source)
        return self._graph_model

    @property
    def graph_def(self):
        """The loaded GraphDef (loads the graph), as Lucid's ``Model.graph_def``."""
        return self.graph_model.graph_def

    def __deepcopy__(self, memo):
        clone = copy.copy(self)
        memo[id(self)] = clone
        clone.__dict__.pop("_redirected", None)
        if self._graph_model is not None:
            clone._graph_model = rebuilt_graph_model(self._graph_model)
        clone._labels = copy.copy(self._labels)
        clone.layers = tuple(self.layers)
        return clone


class InceptionV1(_LucidZoo, vision.InceptionV1):
    __doc__ = vision.InceptionV1.__doc__


class _LucidZooModel(_LucidZoo, Model):
    """Base of the zoo classes declared by ``lucid_zoo.json``."""

    dataset = None
    synsets_path = None


def _zoo_classes() -> dict:
    records = json.loads(ZOO_JSON.read_text(encoding="utf-8"))["models"]
    classes = {"InceptionV1": InceptionV1}
    for r in records:
        if r["name"] in classes:
            continue
        value_range = tuple(np.asarray(v, np.float64) if isinstance(v, list) else v for v in r["image_value_range"])
        attrs = {
            "__doc__": r["doc"] or f"Lucid's ``{r['name']}`` ({r['lucid_module']}).",
            "__module__": __name__,
            "__qualname__": r["name"],
            "lucid_module": r["lucid_module"],
            "model_path": r["model_path"],
            "labels_path": r["labels_path"],
            "synsets_path": r["synsets_path"],
            "dataset": r["dataset"],
            "image_shape": tuple(r["image_shape"]),
            "image_value_range": value_range,
            "input_name": r["input_name"],
            "is_BGR": r["is_BGR"],
            "layers": tuple(Layer(d["name"], d["depth"], tuple(d["tags"])) for d in r["layers"]),
        }
        if r["model_name"]:
            attrs["model_name"] = r["model_name"]
        base = classes[r["base"]] if r["base"] else _LucidZooModel
        classes[r["name"]] = type(r["name"], (base,), attrs)
    return dict(sorted(classes.items()))


#: Lucid's zoo: class name -> class (``nets_factory.models_map``).
LUCID_MODELS = _zoo_classes()
globals().update(LUCID_MODELS)


def __getattr__(name):
    """``models.<shipped name>`` -> a loader of that shipped model (e.g. ``inception_small()``)."""
    if name in SHIPPED:
        return lambda: load_shipped(name)
    raise AttributeError(f"module {__name__!r} has no model {name!r}; Lucid's zoo models ({', '.join(LUCID_MODELS)}) "
                         f"and the shipped models ({', '.join(SHIPPED)}) are available")


__all__ = [*LUCID_MODELS, "Model", "Layer", *SHIPPED]
