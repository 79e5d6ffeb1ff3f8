"""Lucid's saved-model format: a frozen GraphDef with its metadata embedded.

Lucid's ``Model.save`` writes a binary GraphDef (``.pb``) with one extra node: a string
``Const`` called ``lucid_metadata_json`` whose value is a JSON object. Lucid stores

    {"input_name": "input", "image_shape": [224, 224, 3], "image_value_range": [-117, 138]}

and we additionally store ``"layers": [{"name", "depth", "tags"}, ...]`` and optionally
``"labels": [...]`` and ``"name"``. Lucid also knows a JSON *manifest* (``manifest.json``)
holding the same keys plus ``model_path`` (default ``graph.pb``, relative to the manifest)
and ``layers`` as names or dicts.

This module reads and writes those files and validates the metadata (`Metadata`); it
knows nothing about evaluating graphs (see `modelzoo.graph`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import tensorflow as tf
from google.protobuf.message import DecodeError

from lucid_ifv.atomic import write_atomic
from lucid_ifv.model import LayerInfo

METADATA_NODE = "lucid_metadata_json"
REQUIRED_KEYS = ("input_name", "image_shape", "image_value_range")
OPTIONAL_KEYS = ("layers", "labels", "name")
METADATA_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS


# -- metadata -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerDecl:
    """A layer as metadata declares it; ``depth`` None means "read it from the graph"."""

    name: str
    depth: int | None = None
    tags: tuple[str, ...] = ()

    @classmethod
    def from_entry(cls, entry: Any, where: str) -> "LayerDecl":
        """From a name, a ``{"name", "depth", "tags"}`` dict, a `LayerInfo` or a `LayerDecl`."""
        if isinstance(entry, (LayerDecl, LayerInfo)):
            entry = {"name": entry.name, "depth": entry.depth, "tags": entry.tags}
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ValueError(
                f"{where}: bad layer entry {entry!r}: expected a layer name or a dict with "
                f"'name' (and optional 'depth', 'tags')"
            )
        depth = entry.get("depth")
        if depth is not None and not _positive_int(depth):
            raise ValueError(f"{where}: layer {entry['name']!r} has depth {depth!r}; expected a positive int")
        tags = entry.get("tags") or ()
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"{where}: layer {entry['name']!r} has tags {tags!r}; expected a list of strings")
        return cls(entry["name"], None if depth is None else int(depth), tuple(tags))


@dataclasses.dataclass(frozen=True)
class Metadata:
    """Validated model metadata.

    Attributes:
      input_name: the graph node (an op, no ``:0``) fed with images in `image_value_range`.
      image_shape: ``(H, W, C)`` of one input image.
      image_value_range: ``(lo, hi)`` the network expects its input pixels in.
      layers: declared layers (may be empty; depths may be None).
      labels: class labels, or None.
      name: a display name, or None.
      input_kind: "image" (default) or "geometry" (a raw geometry image: normal, depth,
        mask; `lucid_ifv.param.geometry`), lucid-ifv's key (absent from Lucid's metadata).
    """

    input_name: str
    image_shape: tuple[int, int, int]
    image_value_range: tuple[float, float]
    layers: tuple[LayerDecl, ...] = ()
    labels: tuple[str, ...] | None = None
    name: str | None = None
    input_kind: str = "image"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<metadata>") -> "Metadata":
        """Validate a metadata dict (unknown keys are ignored, as Lucid does).

        Raises ValueError naming `source` and the missing or malformed key.
        """
        missing = [k for k in REQUIRED_KEYS if d.get(k) is None]
        if missing:
            raise ValueError(
                f"{source}: model metadata is missing {', '.join(map(repr, missing))} "
                f"(required: {', '.join(REQUIRED_KEYS)}). Graphs saved without Lucid's "
                f"'{METADATA_NODE}' node need it given, e.g. load_model(..., {missing[0]}=...)"
            )
        input_name = d["input_name"]
        if not isinstance(input_name, str) or not input_name or ":" in input_name:
            raise ValueError(
                f"{source}: input_name {input_name!r} must be a node name without ':' "
                f"(an op such as 'input', not a tensor such as 'input:0')"
            )
        return cls(
            input_name=input_name,
            image_shape=_image_shape(d["image_shape"], source),
            image_value_range=_value_range(d["image_value_range"], source),
            layers=tuple(LayerDecl.from_entry(e, source) for e in _sequence(d.get("layers"), "layers", source)),
            labels=_labels(d.get("labels"), source),
            name=None if d.get("name") is None else str(d["name"]),
            input_kind=_input_kind(d.get("input_kind", "image"), source),
        )

    def to_dict(self) -> dict:
        """JSON-ready dict (the form embedded in the graph)."""
        out: dict[str, Any] = {
            "input_name": self.input_name,
            "image_shape": list(self.image_shape),
            "image_value_range": list(self.image_value_range),
            "layers": [
                {"name": l.name, "depth": l.depth, "tags": list(l.tags)} for l in self.layers
            ],
        }
        if self.labels is not None:
            out["labels"] = list(self.labels)
        if self.name is not None:
            out["name"] = self.name
        if self.input_kind != "image":
            out["input_kind"] = self.input_kind
        return out


INPUT_KINDS = ("image", "geometry")


def _input_kind(value, source: str) -> str:
    if value not in INPUT_KINDS:
        raise ValueError(f"{source}: input_kind {value!r} must be one of {INPUT_KINDS}")
    return value


def _positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _sequence(value, key: str, source: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{source}: {key} must be a list, got {value!r}")
    return list(value)


def _image_shape(value, source: str) -> tuple[int, int, int]:
    shape = _sequence(value, "image_shape", source)
    if len(shape) != 3 or not all(_positive_int(v) for v in shape):
        raise ValueError(
            f"{source}: image_shape {value!r} must be three positive ints [height, width, channels]"
        )
    return tuple(int(v) for v in shape)


def _value_range(value, source: str) -> tuple[float, float]:
    pair = _sequence(value, "image_value_range", source)
    try:
        lo, hi = (float(v) for v in pair)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{source}: image_value_range {value!r} must be two finite numbers lo < hi")
    return lo, hi


def _labels(value, source: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    labels = _sequence(value, "labels", source)
    if not all(isinstance(v, str) for v in labels):
        raise ValueError(f"{source}: labels must be a list of strings")
    return tuple(labels)


# -- GraphDef files -------------------------------------------------------------------------


def read_graph_def(path: str | os.PathLike) -> tf.compat.v1.GraphDef:
    """Parse a binary GraphDef file; ValueError naming the file if it is not one."""
    data = Path(path).read_bytes()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except (DecodeError, RuntimeError) as e:
        raise ValueError(
            f"{path} is not a valid GraphDef (binary .pb); it may be truncated or corrupt: {e}"
        ) from None
    if not graph_def.node or any(not n.name or not n.op for n in graph_def.node):
        raise ValueError(
            f"{path} is not a valid GraphDef (binary .pb): it holds no well-formed nodes"
        )
    return graph_def


def write_graph_def(graph_def: tf.compat.v1.GraphDef, path: str | os.PathLike) -> None:
    """Write a binary GraphDef atomically (temporary file in the same directory, then rename)."""
    write_atomic(path, graph_def.SerializeToString(), suffix=".part")


def read_metadata(graph_def: tf.compat.v1.GraphDef, source: str = "<GraphDef>") -> dict | None:
    """The JSON metadata embedded in `graph_def`, or None if it has no metadata node."""
    nodes = [n for n in graph_def.node if n.name == METADATA_NODE]
    if not nodes:
        return None
    if len(nodes) > 1:
        raise ValueError(f"{source}: found {len(nodes)} '{METADATA_NODE}' nodes, expected one")
    values = nodes[0].attr["value"].tensor.string_val
    try:
        metadata = json.loads(values[0].decode("utf-8"))
    except (IndexError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{source}: the '{METADATA_NODE}' node does not hold JSON: {e}") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{source}: the '{METADATA_NODE}' node holds {type(metadata).__name__}, expected an object")
    return metadata


def embed_metadata(graph_def: tf.compat.v1.GraphDef, metadata: Mapping[str, Any]) -> None:
    """Put `metadata` (JSON-serializable) into `graph_def` as Lucid does, replacing any old one."""
    _drop_metadata_node(graph_def)
    node = graph_def.node.add()
    node.name = METADATA_NODE
    node.op = "Const"
    node.attr["dtype"].type = tf.string.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(json.dumps(dict(metadata))))


def strip_metadata(graph_def: tf.compat.v1.GraphDef) -> tf.compat.v1.GraphDef:
    """A copy of `graph_def` without the metadata node."""
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    _drop_metadata_node(out)
    return out


def _drop_metadata_node(graph_def: tf.compat.v1.GraphDef) -> None:
    keep = [n for n in graph_def.node if n.name != METADATA_NODE]
    if len(keep) != len(graph_def.node):
        del graph_def.node[:]
        graph_def.node.extend(keep)


# -- manifests ------------------------------------------------------------------------------


def read_manifest(path: str | os.PathLike) -> dict:
    """A Lucid JSON manifest; ValueError naming the file if it is not a JSON object."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a valid Lucid manifest (JSON): {e}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} is not a valid Lucid manifest: expected a JSON object")
    kind = manifest.get("type", "frozen")
    if kind != "frozen":
        raise ValueError(f"{path}: manifest type {kind!r} is not supported (only 'frozen' graphs)")
    return manifest
