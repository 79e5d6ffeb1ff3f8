"""Export a Keras model as a Lucid-format frozen graph that `load_model` reads back.

The exported ``.pb`` has

- a float32 Placeholder ``input`` of shape ``[batch, H, W, C]`` taking pixels in
  ``image_value_range`` (the Keras model's own input convention);
- for each tapped layer an ``Identity`` node named exactly like the Keras layer, so its
  output is the tensor ``<layer>:0`` (Lucid's ``T(layer)``);
- variables frozen to constants (`convert_variables_to_constants_v2`), BatchNorm and
  Dropout in inference mode;
- Lucid's ``lucid_metadata_json`` node with ``input_name``, ``image_shape``,
  ``image_value_range``, ``layers`` (name, depth, tags "conv"/"dense"), ``labels``, ``name``.

Taps are chosen as by `lucid_ifv.model.KerasModel` (every layer with a ``[B, h, w, C]`` or
``[B, C]`` output, or the names given).
"""

from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from lucid_ifv.model import KerasModel
from modelzoo import lucid_format
from modelzoo.lucid_format import Metadata

INPUT_NAME = "input"


def _node_input_name(ref: str) -> str:
    """The node a NodeDef input reference (``name``, ``name:1``, ``^name``) points at."""
    return ref.lstrip("^").split(":")[0]


def _rename_nodes(graph_def: tf.compat.v1.GraphDef, mapping: dict[str, str]) -> None:
    """Rename nodes in place, updating every input reference (data and control)."""
    if not mapping:
        return
    for node in graph_def.node:
        if node.name in mapping:
            node.name = mapping[node.name]
        for i, ref in enumerate(node.input):
            old = _node_input_name(ref)
            if old in mapping:
                node.input[i] = ref.replace(old, mapping[old], 1)


def _free_name(base: str, taken: set[str]) -> str:
    i = 1
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"


def _renamed_tensor(tensor_name: str, mapping: dict[str, str]) -> str:
    node, _, index = tensor_name.partition(":")
    return f"{mapping.get(node, node)}:{index or 0}"


def export_keras(keras_model: tf.keras.Model, path: str | os.PathLike, *,
                 layers: Sequence[str] | None = None,
                 image_value_range: tuple[float, float] = (0.0, 1.0),
                 labels: Sequence[str] | None = None, name: str | None = None,
                 input_kind: str = "image") -> None:
    """Freeze a built Keras model into a Lucid-format ``.pb`` at `path`.

    Args:
      keras_model: a built `tf.keras.Model` with one input ``[B, H, W, C]``.
      path: the ``.pb`` file to write (atomically; parent directories are created).
      layers: Keras layer names to expose (default every layer with a ``[B, h, w, C]`` or
        ``[B, C]`` output).
      image_value_range: the range the Keras model expects its input pixels in.
      labels: optional class labels, stored in the metadata.
      name: model name in the metadata (default the Keras model's name).
      input_kind: "image" or "geometry" (`lucid_format.Metadata.input_kind`).
    Raises:
      ValueError: no tappable layers, a layer named ``input`` or ``lucid_metadata_json``,
        or malformed metadata; KeyError: unknown layer names.
    """
    adapter = KerasModel(keras_model, image_value_range=image_value_range, name=name, layers=layers)
    taps = adapter.layer_names
    if not taps:
        raise ValueError(f"Keras model {adapter.name!r} has no layer with a [B, h, w, C] or [B, C] output to export")
    reserved = [t for t in taps if t in (INPUT_NAME, lucid_format.METADATA_NODE)]
    if reserved:
        raise ValueError(f"cannot export layer(s) {reserved}: these node names are reserved in Lucid's format")
    metadata = Metadata.from_dict(
        {
            "name": adapter.name,
            "input_name": INPUT_NAME,
            "image_shape": list(adapter.image_shape),
            "image_value_range": list(adapter.image_value_range),
            "layers": [info.to_dict() for info in adapter.layers],
            "labels": None if labels is None else list(labels),
            "input_kind": input_kind,
        },
        source=f"export of {adapter.name!r}",
    )

    spec = tf.TensorSpec((None, *adapter.image_shape), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def forward(images):
        outputs = adapter._activations(images, taps)
        return [outputs[t] for t in taps]

    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    graph_def = frozen.graph.as_graph_def()
    placeholder = frozen.inputs[0].op.name

    # Free the names "input" and the layer names, then add the Identity taps.
    taken = {n.name for n in graph_def.node} | set(taps) | {INPUT_NAME}
    mapping = {placeholder: INPUT_NAME} if placeholder != INPUT_NAME else {}
    for node in graph_def.node:
        if node.name in taps or (node.name == INPUT_NAME and node.name != placeholder):
            mapping[node.name] = _free_name(node.name, taken)
            taken.add(mapping[node.name])
    _rename_nodes(graph_def, mapping)
    for tap, tensor in zip(taps, frozen.outputs):
        node = graph_def.node.add()
        node.name = tap
        node.op = "Identity"
        node.input.append(_renamed_tensor(tensor.name, mapping))
        node.attr["T"].type = tensor.dtype.as_datatype_enum

    lucid_format.embed_metadata(graph_def, metadata.to_dict())
    lucid_format.write_graph_def(graph_def, path)
