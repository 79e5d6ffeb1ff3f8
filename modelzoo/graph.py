"""Frozen GraphDefs (Lucid's ``.pb`` models) as `lucid_ifv.model.Model` in TensorFlow 2.

`load_model(source)` fetches a Lucid-format file (`modelzoo.fetch`), reads its graph and
metadata (`modelzoo.lucid_format`) and returns a `GraphModel`. The graph is imported once
under the scope ``import`` with `tf.compat.v1.wrap_function`, its input node replaced by a
float32 tensor ``[B, H, W, C]`` holding images in ``image_value_range``; each requested set
of tensors gets one pruned function (cached), so one forward pass serves all of them.

Names: a layer ``x`` is the tensor ``x:0`` (Lucid's ``T("x")``); any tensor of the graph can
be requested by node name (``"mixed4c_3x3_bottleneck"``) or tensor name (``"x:1"``), see
`GraphModel.tensor_names`. Like Lucid's InceptionV1, every top-level concat ``<x>`` whose
branches end in ``Relu`` gets a sibling ``<x>_pre_relu``: the same concat of the branches'
pre-activation tensors; so does every declared layer whose tensor is such a concat behind
Identity nodes (the shipped models' ``mixed3b`` -> ``mixed3b_pre_relu``), see
`add_pre_relu_concats`. These names are reachable by `GraphModel.layer` and calls, not
listed in `GraphModel.layers`.

Safety: a GraphDef is a program. Only op types on an allow-list of pure inference ops
(`ALLOWED_OPS`: convolutions, pooling, normalization, activations, element-wise math, shape
ops, ...) are accepted, in the graph and in every function of its function library; calls
(`CALL_OPS`) must name functions of that library. Anything else is refused with a one-line
ValueError naming the op types and their nodes, unless the caller names those op types in
``allow_ops``. A remote manifest may only point at its own host (`fetch.manifest_target`).
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import tensorflow as tf

from lucid_ifv import gradient_overrides
from lucid_ifv.model import LayerInfo, Model
from modelzoo import fetch, lucid_format
from modelzoo.lucid_format import Metadata

SCOPE = "import"

# -- safety: an allow-list of inference ops --------------------------------------------------

# Op types a frozen inference graph of this field may use without the caller's consent. Each
# is a pure tensor computation: no file system, network, Python, processes, variables,
# randomness or control flow. Derived from the graphs we load (see docs/reliability.md,
# "Graph loading"): Lucid's InceptionV1 (tests/fake_inception.py has its op set), the
# shipped models (modelzoo/data/*.pb), Keras models exported with `modelzoo.export`
# (modelzoo.architectures, tf.keras.applications VGG16, ResNet50(V2), MobileNet(V2, V3),
# DenseNet121, InceptionV3, Xception, EfficientNetB0, NASNetMobile, InceptionResNetV2,
# ConvNeXtTiny) and their smooth surrogates (`lucid_ifv.smooth`), plus the same families'
# siblings (other activations, batch-norm versions, resize ops, slicing and gathering).
ALLOWED_OPS = frozenset({
    # graph plumbing
    "Const", "Identity", "IdentityN", "Placeholder", "PlaceholderWithDefault", "NoOp",
    "StopGradient", "PreventGradient", "Snapshot", "EnsureShape",
    # convolution
    "Conv2D", "Conv2DBackpropInput", "DepthwiseConv2dNative", "BiasAdd", "BiasAddV1",
    # pooling
    "MaxPool", "MaxPoolV2", "AvgPool",
    # dense layers
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum",
    # activations
    "Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Softplus", "Softsign", "Sigmoid", "Tanh",
    "Softmax", "LogSoftmax", "Erf", "Erfc",
    # normalization
    "LRN", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3",
    "BatchNormWithGlobalNormalization",
    # element-wise arithmetic and comparisons
    "Add", "AddV2", "AddN", "Sub", "Mul", "Div", "RealDiv", "DivNoNan", "FloorDiv", "FloorMod",
    "Maximum", "Minimum", "Neg", "Abs", "Sign", "Square", "SquaredDifference", "Sqrt", "Rsqrt",
    "Reciprocal", "Pow", "Exp", "Expm1", "Log", "Log1p", "Floor", "Ceil", "Round", "Rint",
    "ClipByValue", "Select", "SelectV2", "IsFinite", "IsNan", "IsInf", "Equal", "NotEqual",
    "Less", "LessEqual", "Greater", "GreaterEqual", "LogicalAnd", "LogicalOr", "LogicalNot",
    "ZerosLike", "OnesLike", "Cast",
    # reductions
    "Sum", "Mean", "Max", "Min", "Prod", "ArgMax", "ArgMin", "All", "Any",
    # shapes, concatenation, slicing, gathering
    "Shape", "ShapeN", "Size", "Rank", "Reshape", "Squeeze", "ExpandDims", "Pack", "Unpack",
    "Transpose", "Tile", "Fill", "Range", "BroadcastTo", "BroadcastArgs", "Concat", "ConcatV2",
    "Split", "SplitV", "Slice", "StridedSlice", "Pad", "PadV2", "MirrorPad", "Gather",
    "GatherV2", "GatherNd", "ReverseV2", "SpaceToBatchND", "BatchToSpaceND", "SpaceToDepth",
    "DepthToSpace", "ExtractImagePatches",
    # image resizing
    "ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea",
})

# Function-call ops: accepted when every function they name is in the graph's own function
# library (whose bodies are checked like the graph itself), refused otherwise.
CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})


def is_allowed_op(op_type: str) -> bool:
    """Whether op type `op_type` is on the allow-list (`ALLOWED_OPS`)."""
    return op_type in ALLOWED_OPS


def _function_refs(node) -> list[str]:
    """Names of the functions `node` references through its attributes."""
    refs = []
    for value in node.attr.values():
        if value.HasField("func"):
            refs.append(value.func.name)
        refs.extend(f.name for f in value.list.func)
    return refs


def _all_nodes(graph_def: tf.compat.v1.GraphDef):
    """(node, display name) for the graph's nodes and its library functions' nodes (named
    ``<function>/<node>``)."""
    for node in graph_def.node:
        yield node, node.name
    for function in graph_def.library.function:
        for node in function.node_def:
            yield node, f"{function.signature.name}/{node.name}"


def disallowed_nodes(graph_def: tf.compat.v1.GraphDef, allow_ops: Iterable[str] = ()) -> dict[str, list[str]]:
    """Op type -> names of its nodes, for every node (in the graph and in its function
    library) whose op type is neither on the allow-list nor in `allow_ops` nor a function
    of the library. Call ops (`CALL_OPS`) count as allowed here; `check_ops` checks the
    functions they name."""
    allowed = ALLOWED_OPS | CALL_OPS | _as_set(allow_ops)
    functions = {f.signature.name for f in graph_def.library.function}
    found: dict[str, list[str]] = {}
    for node, name in _all_nodes(graph_def):
        if node.op not in allowed and node.op not in functions:
            found.setdefault(node.op, []).append(name)
    return found


# Kept for callers of the former deny-list API (lucid_ifv.smooth): the op types of
# `graph_def` a loader must be told to accept.
unsafe_nodes = disallowed_nodes


def missing_functions(graph_def: tf.compat.v1.GraphDef) -> dict[str, list[str]]:
    """Function name -> nodes referencing it, for functions absent from the graph's library."""
    functions = {f.signature.name for f in graph_def.library.function}
    found: dict[str, list[str]] = {}
    for node, name in _all_nodes(graph_def):
        for ref in _function_refs(node):
            if ref not in functions:
                found.setdefault(ref, []).append(name)
    return found


def _as_set(allow_ops) -> set[str]:
    if allow_ops is None:
        return set()
    return {allow_ops} if isinstance(allow_ops, str) else set(allow_ops)


def _listing(found: dict[str, list[str]], noun: str = "node") -> str:
    return "; ".join(
        f"{key} ({noun}{'s' if len(nodes) > 1 else ''} {', '.join(nodes[:5])}"
        f"{f', ... {len(nodes) - 5} more' if len(nodes) > 5 else ''})"
        for key, nodes in sorted(found.items())
    )


def check_ops(graph_def: tf.compat.v1.GraphDef, allow_ops: Iterable[str] = (), source: str = "<GraphDef>") -> None:
    """Refuse `graph_def` (ValueError, one line) if a node in it or in its function library
    uses an op type outside `ALLOWED_OPS` and `allow_ops`, or references a function that is
    not in its library.

    The message names each refused op type with its nodes and the ``allow_ops=`` argument
    that accepts them; functions the library lacks cannot be accepted (the graph would not
    import)."""
    missing = missing_functions(graph_def)
    if missing:
        raise ValueError(
            f"refusing to load {source}: nodes call functions that are not in the graph's "
            f"function library: {_listing(missing, 'called by node')}"
        )
    refused = disallowed_nodes(graph_def, allow_ops)
    if refused:
        raise ValueError(
            f"refusing to load {source}: it uses op types outside the allow-list of inference "
            f"ops (modelzoo.graph.ALLOWED_OPS), which could read or write files, run Python or "
            f"do other I/O: {_listing(refused)}. If you trust where this graph comes from, "
            f"accept them with allow_ops={tuple(sorted(refused))!r}"
        )


# -- the model ------------------------------------------------------------------------------


def upstream_ops(tensor: tf.Tensor) -> dict:
    """``{name: op}`` of every op ``tensor`` is computed from, its own included (data inputs
    only: control inputs carry no values)."""
    seen, stack = {}, [tensor.op]
    while stack:
        op = stack.pop()
        if op.name not in seen:
            seen[op.name] = op
            stack.extend(t.op for t in op.inputs)
    return seen


def _depends_on_placeholder(tensor: tf.Tensor, skip: str) -> bool:
    """Whether ``tensor`` is computed from a Placeholder other than the op named ``skip`` (the
    imported graph's own input node, which `input_map` replaces by the image placeholder)."""
    return any(op.type == "Placeholder" and name != skip for name, op in upstream_ops(tensor).items())


def _static_depth(tensor: tf.Tensor) -> int | None:
    shape = tensor.shape
    if shape.rank is None or shape.rank == 0 or shape[-1] is None:
        return None
    return int(shape[-1])


def _tags_for(tensor: tf.Tensor) -> tuple[str, ...]:
    return {4: ("conv",), 2: ("dense",)}.get(tensor.shape.rank, ())


_CONCATS = ("Concat", "ConcatV2")


def _behind_identities(nodes: dict, name: str):
    """The node computing tensor `name` (``"x"`` or ``"x:0"``), skipping Identity nodes."""
    node = nodes.get(name.lstrip("^").split(":")[0])
    while node is not None and node.op == "Identity":
        node = nodes.get(node.input[0].split(":")[0])
    return node


def _pre_relu_concat(nodes: dict, concat, name: str):
    """A copy of `concat` named `name` whose Relu branches (maybe behind Identity nodes) are
    replaced by the Relu inputs; None if no branch ends in a Relu."""
    count = concat.attr["N"].i
    first = 1 if concat.op == "Concat" else 0  # legacy Concat: input 0 is concat_dim
    inputs = list(concat.input)
    for i in range(first, first + count):
        source = _behind_identities(nodes, inputs[i])
        if source is not None and source.op == "Relu":
            inputs[i] = source.input[0]
    if inputs == list(concat.input):
        return None
    node = tf.compat.v1.NodeDef()
    node.CopyFrom(concat)
    node.name = name
    node.input[:] = inputs
    return node


def add_pre_relu_concats(graph_def: tf.compat.v1.GraphDef, layer_names: Iterable[str] = ()) -> list[str]:
    """Add Lucid's ``<x>_pre_relu`` tensors to `graph_def` (in place); return their names.

    A declared layer (in `layer_names`) computed by a ``Relu`` (maybe behind Identity nodes)
    gets ``<x>_pre_relu``, an Identity of the Relu's input (e.g. ``conv2_pre_relu`` of a
    Keras export); concats get a ``_pre_relu`` concat:

    ``<x>`` is every top-level concat node (Lucid's InceptionV1 ``post_import``) and every
    name in `layer_names` whose tensor is a concat behind Identity nodes (Keras exports:
    ``mixed3b`` -> Identity -> ``functional/mixed3b/concat``). ``<x>_pre_relu`` joins the
    branches' inputs to their final ``Relu`` (branches without a Relu are taken as they
    are) along the same axis; concats without Relu branches and names the graph already
    has are skipped.
    """
    nodes = {n.name: n for n in graph_def.node}
    concats = {n.name: n for n in graph_def.node if n.op in _CONCATS and "/" not in n.name}
    relus = {}
    for name in layer_names:
        base, _, index = name.partition(":")
        node = _behind_identities(nodes, base) if index in ("", "0") else None
        if node is not None and node.op in _CONCATS:
            concats.setdefault(base, node)
        elif node is not None and node.op == "Relu":
            relus[base] = node
    added = []
    for base, concat in concats.items():
        name = f"{base}_pre_relu"
        node = None if name in nodes else _pre_relu_concat(nodes, concat, name)
        if node is not None:
            added.append(node)
            nodes[name] = node
    for base, relu in relus.items():  # a declared layer that is a ReLU: its input, by Lucid's name
        name = f"{base}_pre_relu"
        if name not in nodes:
            node = tf.compat.v1.NodeDef(name=name, op="Identity", input=[relu.input[0]])
            node.attr["T"].CopyFrom(relu.attr["T"])
            added.append(node)
            nodes[name] = node
    graph_def.node.extend(added)
    return [n.name for n in added]


class GraphModel(Model):
    """A frozen GraphDef as a `Model`.

    Args:
      graph_def: the frozen graph (Lucid's metadata node, if any, is ignored here).
      metadata: its validated `Metadata` (input node, image shape and range, layers).
      allow_ops: op types outside `ALLOWED_OPS` the caller accepts in this graph.
      source: where the graph came from, for error messages.

    Calling the model with images ``[B, H, W, C]`` in [0, 1] and layer names returns their
    activations (``[B, h, w, depth]`` or ``[B, depth]``), differentiable w.r.t. the images.
    Declared layers are `layers`; any other tensor is reachable by name (`tensor_names`).
    Layer depths missing from the metadata are read from the graph's static shapes;
    declared depths that contradict the graph raise ValueError.
    """

    def __init__(self, graph_def: tf.compat.v1.GraphDef, metadata: Metadata, *,
                 allow_ops: Iterable[str] = (), source: str = "<GraphDef>",
                 any_size: bool = True, gradient_overrides: dict[str, str] | None = None,
                 dtype: tf.DType = tf.float32):
        check_ops(graph_def, allow_ops, source)
        self.dtype = tf.dtypes.as_dtype(dtype)
        self.allow_ops = tuple(sorted(_as_set(allow_ops)))
        self.source = source
        self.fixed_input_size = not any_size
        self.gradient_overrides = dict(gradient_overrides or {})
        self.metadata = metadata
        self.name = metadata.name or "graph"
        self.image_shape = tuple(metadata.image_shape)
        self.image_value_range = tuple(metadata.image_value_range)
        self.input_kind = metadata.input_kind
        self.input_name = metadata.input_name
        self.labels = list(metadata.labels) if metadata.labels is not None else None
        self.graph_def = lucid_format.strip_metadata(graph_def)
        for node in self.graph_def.node:
            node.device = ""
        add_pre_relu_concats(self.graph_def, [d.name for d in metadata.layers])
        self._check_input_node()
        spec = tf.TensorSpec((None, *self.image_shape), self.dtype, name="images")
        self._function = tf.compat.v1.wrap_function(self._import, [spec])
        self._graph = self._function.graph
        self._pruned: dict[tuple[str, ...], object] = {}
        self._any_size_function = None  # imported on first use at another size
        self.layers = tuple(self._declared_layer(d) for d in metadata.layers)

    # -- construction -------------------------------------------------------------------
    def _import(self, images: tf.Tensor) -> None:
        graph = tf.compat.v1.get_default_graph()
        with graph.gradient_override_map(self.gradient_overrides):
            tf.compat.v1.import_graph_def(
                self.graph_def, input_map={f"{self.input_name}:0": images}, name=SCOPE
            )

    def _check_input_node(self) -> None:
        nodes = {n.name: n for n in self.graph_def.node}
        node = nodes.get(self.input_name)
        if node is None:
            placeholders = [n.name for n in self.graph_def.node if n.op == "Placeholder"]
            raise ValueError(
                f"{self.source}: input_name {self.input_name!r} is not a node of the graph; "
                f"its Placeholders are {placeholders or '(none)'}"
            )
        if node.op != "Placeholder":
            return
        dtype = tf.dtypes.as_dtype(node.attr["dtype"].type)
        if dtype != self.dtype:
            raise ValueError(
                f"{self.source}: input {self.input_name!r} is a {dtype.name} Placeholder; expected "
                f"{self.dtype.name} (point input_name at the float tensor the graph computes from it)"
            )
        shape = node.attr["shape"].shape
        if not shape.unknown_rank and shape.dim:
            dims = [d.size for d in shape.dim]
            expected = [-1, *self.image_shape]
            if len(dims) != 4 or any(d not in (-1, e) for d, e in zip(dims[1:], expected[1:])):
                raise ValueError(
                    f"{self.source}: input {self.input_name!r} has shape {dims}, which does not "
                    f"fit image_shape {list(self.image_shape)} (expected [batch, "
                    f"{', '.join(map(str, self.image_shape))}])"
                )

    def _declared_layer(self, decl: lucid_format.LayerDecl) -> LayerInfo:
        tensor = self._lookup(decl.name)
        if tensor is None:
            raise ValueError(
                f"{self.source}: layer {decl.name!r} from the metadata is not in the graph "
                f"(no tensor {self._tensor_name(decl.name)!r})"
            )
        static = _static_depth(tensor)
        if decl.depth is not None and static is not None and decl.depth != static:
            raise ValueError(
                f"{self.source}: layer {decl.name!r} has depth {decl.depth} in the metadata but "
                f"the graph's tensor has shape {tensor.shape.as_list()} ({static} channels)"
            )
        depth = decl.depth if decl.depth is not None else static
        if depth is None:
            raise ValueError(
                f"{self.source}: the depth of layer {decl.name!r} is unknown (shape "
                f"{tensor.shape}); give it in the metadata"
            )
        return LayerInfo(decl.name, depth, decl.tags or _tags_for(tensor))

    # -- names ----------------------------------------------------------------------------
    @staticmethod
    def _tensor_name(name: str) -> str:
        """``"x"`` -> ``"x:0"``; names with an output index are kept."""
        return name if ":" in name else f"{name}:0"

    def _lookup(self, name: str) -> tf.Tensor | None:
        try:
            return self._graph.get_tensor_by_name(f"{SCOPE}/{self._tensor_name(name)}")
        except (KeyError, ValueError):
            return None

    @property
    def tensor_names(self) -> list[str]:
        """Every tensor of the imported graph (``"node:index"``), usable as a layer name."""
        prefix = f"{SCOPE}/"
        return [
            t.name[len(prefix):]
            for op in self._graph.get_operations()
            if op.name.startswith(prefix)
            for t in op.outputs
        ]

    def layer(self, name: str) -> LayerInfo:
        """A declared layer, else any graph tensor (node or ``node:i`` name); else KeyError."""
        with contextlib.suppress(KeyError):
            return super().layer(name)
        tensor = self._lookup(name) if isinstance(name, str) else None
        if tensor is None:
            raise KeyError(
                f"unknown layer {name!r} for model {self.name!r}: it is neither a declared "
                f"layer ({', '.join(self.layer_names) or 'none'}) nor a tensor of the graph "
                f"(see .tensor_names)"
            )
        if not _depends_on_placeholder(tensor, skip=f"{SCOPE}/{self.input_name}"):
            raise KeyError(
                f"layer {name!r} of model {self.name!r} is not computed from the input image (the input "
                f"placeholder itself, a constant or a weight); expected a layer such as "
                f"{', '.join(self.layer_names[:4]) or 'one of .tensor_names'}"
            )
        return LayerInfo(name, _static_depth(tensor) or 0, _tags_for(tensor))

    # -- evaluation -----------------------------------------------------------------------
    def _pruned_function(self, tensor_names: tuple[str, ...], native: bool = True):
        """The graph pruned to `tensor_names`; ``native=False``: imported with unknown height
        and width (static shapes forgotten, as Lucid's ``forget_xy_shape``). One per set of
        gradient overrides in effect (`lucid_ifv.gradient_overrides.active_key`): a graph
        function keeps the backward function it builds first, so the render step and the
        Jacobian, which trace under different overrides, must not share one."""
        key = (tensor_names, native, gradient_overrides.active_key())
        if key not in self._pruned:
            function = self._function
            if not native:
                if self._any_size_function is None:
                    spec = tf.TensorSpec((None, None, None, self.image_shape[-1]), self.dtype, name="images")
                    self._any_size_function = tf.compat.v1.wrap_function(self._import, [spec])
                function = self._any_size_function
            fetches = [function.graph.get_tensor_by_name(f"{SCOPE}/{t}") for t in tensor_names]
            self._pruned[key] = function.prune(function.inputs[0], fetches)
        return self._pruned[key]

    def _activations(self, inputs: tf.Tensor, names: list[str]) -> dict[str, tf.Tensor]:
        key = tuple(self._tensor_name(n) for n in names)
        if tuple(inputs.shape[1:3]) == tuple(self.image_shape[:2]):
            return dict(zip(names, self._pruned_function(key, True)(inputs)))
        try:
            outputs = self._pruned_function(key, False)(inputs)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise self._size_error(names, inputs, _first_reason(str(getattr(error, "message", error)))) from None
        for name, output in zip(names, outputs):  # e.g. a VALID pool larger than its input: empty
            if tf.executing_eagerly() and (0 in output.shape or output.shape[0] != inputs.shape[0]):
                raise self._size_error([name], inputs, f"it comes out of shape {tuple(output.shape)}")
        return dict(zip(names, outputs))

    def _size_error(self, names, inputs, reason: str) -> ValueError:
        (h, w), (nh, nw, _) = inputs.shape[1:3], self.image_shape
        return ValueError(
            f"layer(s) {', '.join(map(repr, names))} of model {self.name!r} cannot be computed from "
            f"{h}x{w} inputs (they need the native {nh}x{nw}, or a size their pools and reshapes allow): {reason}"
        )

    def check_input_size(self, height: int, width: int, layers) -> None:
        """ValueError naming the layer that cannot be computed at ``height x width`` (e.g.
        behind a dense head, or too small for a VALID pool), found by one forward pass of a
        blank image per layer; the native size always passes."""
        super().check_input_size(height, width, layers)
        if (int(height), int(width)) == tuple(self.image_shape[:2]):
            return
        blank = tf.fill([1, int(height), int(width), self.image_shape[-1]], 0.5)
        for name in self.check_layers(layers):
            self._activations(self.to_value_range(blank), [name])


def _first_reason(message: str) -> str:
    """The informative line of a TensorFlow runtime error (not its banner or node trace)."""
    noise = ("Graph execution error", "Detected at node", "[[", "Stack trace", "File ", "Op:")
    message = message.split("also failed due to: ")[-1]  # tf.function binding errors: the shape error after it
    lines = [line.strip() for line in message.splitlines()]
    useful = [line for line in lines if line and not line.startswith(noise)]
    return (useful or lines or [""])[0][:200]


# -- loading --------------------------------------------------------------------------------


def load_model(source, *, cache_dir=None, sha256: str | None = None, allow_ops: Iterable[str] = (),
               progress: bool = True, allow_hosts: Iterable[str] = (), allow_local: bool = False,
               max_bytes: int | None = None, **metadata_overrides) -> GraphModel:
    """Load a Lucid-format model (``.pb`` with embedded metadata, or a ``.json`` manifest).

    Args:
      source: local path, ``file://``, ``http(s)://`` or ``gs://`` URL (see `fetch.resolve`).
      cache_dir: download cache (default ``$LUCID_IFV_CACHE`` or ``~/.cache/lucid-ifv``).
      sha256: expected SHA-256 of the ``.pb`` file.
      allow_ops: op types outside the allow-list (`ALLOWED_OPS`) to accept; default none.
      progress: show a download progress bar.
      allow_hosts: hosts (``"host"`` or ``"host:port"``) besides the source's own that
        redirects and a remote manifest's ``model_path`` may lead to; default none.
      allow_local: let a remote manifest's ``model_path`` name a local file.
      max_bytes: download size limit (default `fetch.max_download_bytes()`, 1 GiB).
      **metadata_overrides: ``input_name``, ``image_shape``, ``image_value_range``,
        ``layers`` (names, dicts or `LayerInfo`), ``labels``, ``name``; they take
        precedence over the manifest, which takes precedence over the embedded metadata.
    Returns:
      A `GraphModel`.
    """
    unknown = sorted(set(metadata_overrides) - set(lucid_format.METADATA_KEYS))
    if unknown:
        raise TypeError(
            f"load_model() got unknown metadata override(s) {unknown}; expected some of "
            f"{', '.join(lucid_format.METADATA_KEYS)}"
        )
    source = os.fspath(source)
    metadata: dict = {}
    model_source = source
    download = {"progress": progress, "allow_hosts": allow_hosts, "max_bytes": max_bytes}
    if urllib.parse.urlsplit(source).path.lower().endswith(".json"):
        manifest = lucid_format.read_manifest(fetch.resolve(source, cache_dir, expect="json", **download))
        model_source = fetch.manifest_target(source, manifest.get("model_path", "graph.pb"),
                                             allow_hosts=allow_hosts, allow_local=allow_local)
        metadata.update({k: v for k, v in manifest.items() if k in lucid_format.METADATA_KEYS})
    path = fetch.resolve(model_source, cache_dir, sha256=sha256, expect="graphdef", **download)
    graph_def = lucid_format.read_graph_def(path)
    merged = {
        "name": Path(urllib.parse.urlsplit(model_source).path).stem,
        **(lucid_format.read_metadata(graph_def, model_source) or {}),
        **metadata,
        **{k: v for k, v in metadata_overrides.items() if v is not None},
    }
    return GraphModel(graph_def, Metadata.from_dict(merged, model_source),
                      allow_ops=allow_ops, source=model_source)
