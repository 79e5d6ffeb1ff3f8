"""modelzoo.graph: the op allow-list. Every graph we ship or build loads; crafted graphs that
read or write files, run Python or hide such ops in their function library are refused."""

from __future__ import annotations

import fake_inception as fi
import numpy as np
import pytest
import tensorflow as tf

from modelzoo import lucid_format, shipped
from modelzoo.export import export_keras
from modelzoo.graph import (
    ALLOWED_OPS,
    CALL_OPS,
    GraphModel,
    check_ops,
    disallowed_nodes,
    load_model,
    missing_functions,
)
from modelzoo.lucid_format import Metadata

# The op types of Lucid's InceptionV1 (TensorFlow's inception5h graph, which Lucid serves as
# gs://modelzoo/vision/other_models/InceptionV1.pb); tests/fake_inception.py rebuilds its
# structure node type for node type (docs/lucid-reference: Const weights, Conv2D + BiasAdd +
# Relu, legacy Concat, LRN, MaxPool/AvgPool heads, Reshape + MatMul + Softmax).
LUCID_INCEPTION_V1_OPS = {
    "Placeholder", "Const", "Conv2D", "BiasAdd", "Relu", "MaxPool", "AvgPool", "LRN", "Concat",
    "Reshape", "MatMul", "Softmax", "Identity",
}


def graph_ops(graph_def) -> set[str]:
    ops = {n.op for n in graph_def.node}
    for function in graph_def.library.function:
        ops |= {n.op for n in function.node_def}
    return ops


# -- every graph we load stays loadable ---------------------------------------------------------


def test_lucid_inception_v1_ops_are_allowed():
    for legacy in (True, False):
        ops = graph_ops(fi.build_graph_def(legacy_concat=legacy))
        assert ops == LUCID_INCEPTION_V1_OPS - {"Concat"} | {"Concat" if legacy else "ConcatV2"}
        assert ops <= ALLOWED_OPS


@pytest.mark.parametrize("path", sorted(shipped.DATA_DIR.glob("*.pb")), ids=lambda p: p.name)
def test_shipped_graphs_use_only_allowed_ops_and_load(path):
    graph_def = lucid_format.read_graph_def(path)
    assert disallowed_nodes(graph_def) == {} and not missing_functions(graph_def)
    model = load_model(path)  # no allow_ops
    layer = model.layer_names[-1]
    assert model(tf.zeros([1, *model.image_shape]), [layer])[layer].shape[0] == 1


def test_every_shipped_graph_is_checked():
    names = {p.stem for p in shipped.DATA_DIR.glob("*.pb")}
    assert {"inception_small", "densenet_small", "densenet_small_no4", "mnist_small"} <= names


def test_shipped_keras_model_exports_to_allowed_ops(tmp_path):
    """photos_cnn ships as .keras; its frozen export is within the allow-list too."""
    entry = shipped.SHIPPED["photos_cnn"]
    net = tf.keras.models.load_model(entry.model_path, compile=False)
    path = tmp_path / "photos_cnn.pb"
    export_keras(net, path, image_value_range=entry.image_value_range, layers=list(entry.taps))
    graph_def = lucid_format.read_graph_def(path)
    assert disallowed_nodes(graph_def) == {}
    model = load_model(path)
    assert model(tf.zeros([1, 32, 32, 3]), ["softmax"])["softmax"].shape == (1, 10)


def test_keras_layer_zoo_exports_to_allowed_ops(tmp_path):
    """The layers of the field's vision models (the families tf.keras.applications uses)."""
    tf.keras.utils.set_random_seed(0)
    L = tf.keras.layers
    inputs = tf.keras.Input((16, 16, 3))
    x = L.ZeroPadding2D(1)(inputs)
    x = L.Conv2D(8, 3, name="conv")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(max_value=6.0, name="relu6")(x)
    d = L.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    s = L.SeparableConv2D(8, 3, padding="same", activation="elu", name="separable")(x)
    x = L.Add(name="add")([d, s])
    x = L.Concatenate(name="concat")([x, L.Activation("selu")(x), L.Activation("softplus")(x)])
    x = L.Multiply(name="gate")([x, L.Activation("sigmoid")(x)])
    x = L.Activation("tanh", name="tanh")(x)
    x = L.LayerNormalization(name="ln")(x)
    x = L.Activation("gelu", name="gelu")(x)
    x = L.MaxPooling2D(2, name="maxpool")(x)
    x = L.UpSampling2D(2, interpolation="bilinear", name="up_bilinear")(x)
    x = L.UpSampling2D(2, interpolation="nearest", name="up_nearest")(x)
    x = L.Cropping2D(1, name="crop")(x)
    x = L.Conv2DTranspose(4, 3, strides=2, name="deconv")(x)
    x = L.Conv2D(4, 3, dilation_rate=2, name="dilated")(x)
    x = L.AveragePooling2D(2, name="avgpool")(x)
    pooled = L.GlobalAveragePooling2D(name="gap")(x)
    flat = L.Dense(6, activation="leaky_relu", name="dense")(L.Flatten(name="flatten")(x))
    x = L.Concatenate(name="features")([pooled, flat])
    outputs = L.Softmax(name="softmax")(L.Dense(5, name="logits")(L.Dropout(0.5)(x)))
    net = tf.keras.Model(inputs, outputs)
    path = tmp_path / "zoo.pb"
    export_keras(net, path)
    graph_def = lucid_format.read_graph_def(path)
    assert disallowed_nodes(graph_def) == {}, disallowed_nodes(graph_def)
    ops = graph_ops(graph_def)
    for expected in ("DepthwiseConv2dNative", "Conv2DBackpropInput", "ResizeBilinear",
                     "BatchToSpaceND", "Erfc", "Relu6", "Elu", "Selu", "Softplus", "Tanh"):
        assert expected in ops, (expected, sorted(ops))
    model = load_model(path)
    assert model(tf.zeros([2, 16, 16, 3]), ["softmax"])["softmax"].shape == (2, 5)


def test_smooth_surrogates_use_only_allowed_ops():
    from lucid_ifv.smooth import smooth_graph_def

    graphs = [(fi.build_graph_def(), "input", (64, 64, 3))]
    for name in ("mnist_small", "inception_small"):
        graph_def = lucid_format.read_graph_def(shipped.SHIPPED[name].model_path)
        meta = lucid_format.read_metadata(graph_def)
        graphs.append((lucid_format.strip_metadata(graph_def), meta["input_name"], meta["image_shape"]))
    for graph_def, input_name, shape in graphs:
        smoothed, replaced = smooth_graph_def(graph_def, input_name, shape, 10.0, 0.1)
        assert replaced and disallowed_nodes(smoothed) == {}


def test_allow_list_excludes_io_python_state_and_control_flow():
    """No op on the list may touch files, Python, the network, variables, randomness or
    control flow (whose branches the per-node check would have to follow)."""
    registered = set(tf.raw_ops.__dict__)
    forbidden = ("File", "Reader", "Writer", "Dataset", "Record", "PyFunc", "Save", "Restore",
                 "Rpc", "Send", "Recv", "Variable", "Random", "Print", "Summary", "Debug",
                 "While", "If", "Case", "Switch", "Merge", "Call", "Iterator", "Queue", "Table")
    for op in ALLOWED_OPS | CALL_OPS:
        assert op in registered, f"{op} is not a TensorFlow op"
    for op in ALLOWED_OPS:
        assert not any(word in op for word in forbidden), op


# -- crafted graphs are refused ------------------------------------------------------------------

SIZE = (2, 2, 1)


def _tiny(build) -> tf.compat.v1.GraphDef:
    """input [B, 2, 2, 1] -> leak = input + build(graph) (a float scalar)."""
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, *SIZE], name="input")
        tf.add(x, tf.cast(build(), tf.float32), name="leak")
    return g.as_graph_def()


def _metadata():
    return Metadata.from_dict({"input_name": "input", "image_shape": list(SIZE),
                               "image_value_range": [0, 1], "layers": [{"name": "leak", "depth": 1}]})


def _save(graph_def, path):
    lucid_format.embed_metadata(graph_def, _metadata().to_dict())
    lucid_format.write_graph_def(graph_def, path)
    return path


@pytest.fixture()
def secret(tmp_path):
    path = tmp_path / "secret.csv"
    path.write_text("top secret line\nsecond,line\n")
    return path


def _csv_dataset(secret):
    def build():
        ds = tf.raw_ops.ExperimentalCSVDataset(
            filenames=tf.constant([str(secret)]), compression_type="",
            buffer_size=tf.constant(1024, tf.int64), header=False, field_delim="\x01",
            use_quote_delim=False, na_value="", select_cols=tf.constant([], tf.int64),
            record_defaults=[tf.constant([""])], output_shapes=[[]], name="csv")
        ds = tf.raw_ops.TakeDataset(input_dataset=ds, count=tf.constant(1, tf.int64),
                                    output_types=[tf.string], output_shapes=[[]], name="take")
        line = tf.raw_ops.DatasetToSingleElement(dataset=ds, output_types=[tf.string],
                                                 output_shapes=[[]], name="first")[0]
        return tf.strings.length(line, name="length")
    return build


def _read_file(secret):
    return lambda: tf.strings.length(tf.io.read_file(str(secret), name="steal"), name="length")


def _write_file(secret):
    def build():
        with tf.control_dependencies([tf.io.write_file(str(secret) + ".owned", "x", name="drop")]):
            return tf.constant(0.0, name="zero")
    return build


def _record_input(secret):
    return lambda: tf.strings.length(tf.raw_ops.RecordInput(file_pattern=str(secret), name="records")[0])


def _dataset_from_graph(secret):
    def build():
        ds = tf.raw_ops.DatasetFromGraph(graph_def=tf.constant(b""), name="from_graph")
        return tf.raw_ops.DatasetCardinality(input_dataset=ds, name="count")
    return build


def _py_func_graph():
    graph_def = _tiny(lambda: tf.constant(0.0, name="zero"))
    node = graph_def.node.add()
    node.name, node.op = "python", "PyFunc"
    node.attr["token"].s = b"pyfunc_0"
    graph_def.node[-2].input.append("^python")  # leak waits for it
    return graph_def


def _in_function(secret):
    @tf.function
    def innocent_looking(x):
        return x + tf.cast(tf.strings.length(tf.io.read_file(str(secret), name="steal")), tf.float32)

    return lambda: innocent_looking(tf.constant(0.0))


CRAFTED = {
    # name: (graph builder taking the secret path, refused op type, node named in the message)
    "experimental_csv_dataset": (_csv_dataset, "ExperimentalCSVDataset", "csv"),
    "read_file": (_read_file, "ReadFile", "steal"),
    "write_file": (_write_file, "WriteFile", "drop"),
    "record_input": (_record_input, "RecordInput", "records"),
    "dataset_from_graph": (_dataset_from_graph, "DatasetFromGraph", "from_graph"),
    "py_func": (None, "PyFunc", "python"),
    "op_inside_library_function": (_in_function, "ReadFile", "/steal"),
}


def _crafted(name, secret):
    builder, _, _ = CRAFTED[name]
    return _py_func_graph() if builder is None else _tiny(builder(secret))


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_graphs_are_refused(name, secret, tmp_path):
    _, op, node = CRAFTED[name]
    path = _save(_crafted(name, secret), tmp_path / f"{name}.pb")
    with pytest.raises(ValueError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"refusing to load {path}")
    assert f"{op} (node" in message and node in message
    assert "allow_ops=(" in message and f"'{op}'" in message
    assert not (tmp_path / "secret.csv.owned").exists()


@pytest.mark.parametrize("name", ["experimental_csv_dataset", "read_file", "op_inside_library_function"])
def test_the_refused_graphs_really_leak_a_file_when_allowed(name, secret, tmp_path):
    """The threat is real: accepted explicitly, each graph puts the secret's length into an
    activation. `allow_ops` must name every refused op type."""
    graph_def = _crafted(name, secret)
    refused = disallowed_nodes(graph_def)
    model = GraphModel(graph_def, _metadata(), allow_ops=tuple(refused))
    leak = model(tf.zeros([1, *SIZE]), ["leak"])["leak"].numpy()
    expected = len("top secret line") if name == "experimental_csv_dataset" else secret.stat().st_size
    np.testing.assert_array_equal(leak, np.full([1, *SIZE], expected, np.float32))
    assert model.allow_ops == tuple(sorted(refused))


def test_calls_into_the_library_load_when_their_bodies_pass(tmp_path):
    @tf.function
    def block(x):
        return tf.nn.relu(x) * 2.0

    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, *SIZE], name="input")
        tf.identity(block(x), name="leak")
    graph_def = g.as_graph_def()
    assert {n.op for n in graph_def.node} & CALL_OPS
    model = load_model(_save(graph_def, tmp_path / "call.pb"))
    out = model(tf.fill([1, *SIZE], -1.0) + tf.constant([[[[2.0], [0.0]], [[0.0], [0.0]]]]), ["leak"])["leak"]
    np.testing.assert_allclose(out.numpy().ravel(), [2.0, 0.0, 0.0, 0.0])


def test_calls_to_functions_missing_from_the_library_are_refused(tmp_path):
    graph_def = _tiny(lambda: tf.constant(0.0, name="zero"))
    for op, name in (("PartitionedCall", "call"), ("StatefulPartitionedCall", "stateful_call")):
        node = graph_def.node.add()
        node.name, node.op = name, op
        node.attr["f"].func.name = "ghost"
    assert missing_functions(graph_def) == {"ghost": ["call", "stateful_call"]}
    path = _save(graph_def, tmp_path / "ghost.pb")
    with pytest.raises(ValueError, match=r"not in the graph's function library: ghost \(called by nodes call, "
                                         r"stateful_call\)") as info:
        load_model(path, allow_ops=("PartitionedCall", "StatefulPartitionedCall"))
    assert "\n" not in str(info.value)


def test_unknown_op_types_are_refused_and_allow_ops_names_them(tmp_path):
    """An op type TensorFlow may add tomorrow (or a custom one) is refused by default."""
    graph_def = _tiny(lambda: tf.constant(0.0, name="zero"))
    for i in range(7):
        node = graph_def.node.add()
        node.name, node.op = f"new{i}", "SomeFutureFileOp"
    with pytest.raises(ValueError, match=r"SomeFutureFileOp \(nodes new0, new1, new2, new3, new4, \.\.\. 2 more\)"):
        check_ops(graph_def, source="future.pb")
    check_ops(graph_def, allow_ops="SomeFutureFileOp")  # a single name works too
    check_ops(graph_def, allow_ops=["SomeFutureFileOp", "Unrelated"])
