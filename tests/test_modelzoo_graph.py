"""modelzoo.graph / lucid_format / export: frozen graphs as models, errors, safety, Keras export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import fake_inception as fi
from lucid_ifv.model import KerasModel, LayerInfo
from modelzoo import lucid_format
from modelzoo.export import export_keras
from modelzoo.graph import ALLOWED_OPS, GraphModel, disallowed_nodes, is_allowed_op, load_model


@pytest.fixture(scope="module")
def fake_pb(tmp_path_factory):
    """The fake InceptionV1 with Lucid metadata embedded."""
    return fi.write(tmp_path_factory.mktemp("fake") / "fake.pb", metadata=fi.fake_metadata())


@pytest.fixture(scope="module")
def bare_pb(tmp_path_factory):
    """The fake InceptionV1 without metadata (like Lucid's modelzoo .pb files)."""
    return fi.write(tmp_path_factory.mktemp("bare") / "bare.pb")


@pytest.fixture(scope="module")
def model(fake_pb):
    return load_model(fake_pb)


@pytest.fixture(scope="module")
def images():
    return tf.constant(np.random.default_rng(0).uniform(size=(2, 64, 64, 3)), tf.float32)


# -- loading and metadata ---------------------------------------------------------------------


def test_load_embedded_metadata(model):
    assert isinstance(model, GraphModel)
    assert model.name == "FakeInceptionV1"
    assert model.image_shape == (64, 64, 3)
    assert model.image_value_range == fi.VALUE_RANGE
    assert model.input_name == "input"
    assert {l.name: l.depth for l in model.layers} == fi.FAKE_DEPTHS
    assert model.layer("nn0").tags == ("dense",) and model.layer("mixed4c").tags == ("conv",)


def test_depths_come_from_the_graph_when_metadata_lacks_them(bare_pb):
    m = load_model(bare_pb, input_name="input", image_shape=np.array([64, 64, 3]),
                   image_value_range=fi.VALUE_RANGE, layers=["conv2d0", "mixed4c", {"name": "nn1"}])
    assert m.layers == (
        LayerInfo("conv2d0", fi.FAKE_DEPTHS["conv2d0"], ("conv",)),
        LayerInfo("mixed4c", fi.FAKE_DEPTHS["mixed4c"], ("conv",)),
        LayerInfo("nn1", fi.FAKE_DEPTHS["nn1"], ("dense",)),
    )
    assert m.name == "bare"


def test_activations_match_a_direct_graph_run(model, fake_pb, images):
    names = ["conv2d0", "mixed4c", "softmax2"]
    out = model(images, names)
    graph_def = lucid_format.read_graph_def(fake_pb)
    with tf.Graph().as_default() as g:
        x = tf.compat.v1.placeholder(tf.float32, [None, 64, 64, 3])
        tf.compat.v1.import_graph_def(graph_def, {"input:0": x}, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            ref = sess.run([f"{n}:0" for n in names], {x: -117.0 + 255.0 * images.numpy()})
    for name, expected in zip(names, ref):
        np.testing.assert_allclose(out[name].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert out["softmax2"].shape == (2, fi.CLASSES)


def test_pre_relu_concats(model, images):
    layer = model.layer("mixed4c_pre_relu")
    assert layer.depth == fi.FAKE_DEPTHS["mixed4c"]
    branches = [f"mixed4c_{b}_pre_relu" for b in ("1x1", "3x3", "5x5", "pool_reduce")]
    out = model(images, ["mixed4c", "mixed4c_pre_relu", *branches])
    np.testing.assert_allclose(out["mixed4c_pre_relu"], tf.concat([out[b] for b in branches], -1))
    np.testing.assert_allclose(tf.nn.relu(out["mixed4c_pre_relu"]), out["mixed4c"])
    assert "mixed3a_pre_relu:0" in model.tensor_names
    assert not any(n.startswith("localresponsenorm0_pre_relu") for n in model.tensor_names)


def test_any_tensor_by_name_and_one_pruned_function_per_name_set(fake_pb, images):
    m = load_model(fake_pb)
    a = m(images, ["mixed4c", "mixed4c_3x3_bottleneck", "maxpool4:0"])
    b = m(images, ["mixed4c:0", "mixed4c"])
    np.testing.assert_array_equal(a["mixed4c"], b["mixed4c:0"])
    np.testing.assert_array_equal(a["mixed4c"], b["mixed4c"])
    assert a["maxpool4:0"].shape == (2, 4, 4, fi.FAKE_DEPTHS["mixed3b"])
    m(images, ["mixed4c", "mixed4c_3x3_bottleneck", "maxpool4:0"])
    assert len(m._pruned) == 2
    assert "conv2d0_pre_relu/conv:0" in m.tensor_names


def test_unknown_layer_is_a_key_error(model, images):
    with pytest.raises(KeyError, match="'mixed9z'.*tensor_names"):
        model(images, ["mixed4c", "mixed9z"])
    with pytest.raises(KeyError, match="mixed4c:7"):
        model.layer("mixed4c:7")


def test_wrong_image_shape_is_rejected(model):
    with pytest.raises(ValueError, match=r"expected \[batch, height, width, 3\]"):
        model(tf.zeros([1, 64, 64, 1]), ["mixed4c"])


def test_any_size_but_the_head_says_why(model):
    """A frozen graph takes any height and width (Lucid's forget_xy_shape); a layer that needs
    the native size (here the 2x2 VALID average pool before the classifier) names the reason."""
    assert not model.fixed_input_size
    assert model(tf.zeros([2, 32, 48, 3]), ["mixed4c"])["mixed4c"].shape == (2, 2, 3, fi.FAKE_DEPTHS["mixed4c"])
    with pytest.raises(ValueError, match=r"'softmax2' of model .* cannot be computed from 32x32 inputs"):
        model(tf.zeros([1, 32, 32, 3]), ["softmax2"])
    with pytest.raises(ValueError, match=r"'softmax2' of model .* cannot be computed from 32x32 inputs"):
        model.check_input_size(32, 32, ["mixed4c", "softmax2"])
    model.check_input_size(64, 64, ["softmax2"])


# -- gradients through legacy Concat and LRN ---------------------------------------------------


def _input_gradient(m, images, layer):
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = tf.reduce_mean(m(images, [layer])[layer])
    return tape.gradient(loss, images)


def test_concat_gradient_equals_concat_v2_gradient(model, tmp_path, images):
    v2 = load_model(fi.write(tmp_path / "v2.pb", legacy_concat=False, metadata=fi.fake_metadata()))
    ops = {n.op for n in v2.graph_def.node}
    assert "ConcatV2" in ops and "Concat" not in ops
    assert "Concat" in {n.op for n in model.graph_def.node}
    g_legacy = _input_gradient(model, images, "mixed4c")
    g_v2 = _input_gradient(v2, images, "mixed4c")
    assert float(tf.norm(g_legacy)) > 0
    np.testing.assert_allclose(g_legacy, g_v2, rtol=1e-5, atol=1e-9)


def test_lrn_gradient_matches_an_eager_composition(model, images):
    """d sum(LRN(maxpool0)^2) / d images through the imported graph equals the eager chain
    rule (graph up to maxpool0, then tf.nn.local_response_normalization with Lucid's
    InceptionV1 parameters)."""
    assert "LRN" in {n.op for n in model.graph_def.node}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        out = model(images, ["maxpool0", "localresponsenorm0"])
        eager = tf.nn.local_response_normalization(out["maxpool0"], 5, 2.0, 1e-4, 0.5)
        graph_loss = tf.reduce_sum(out["localresponsenorm0"] ** 2)
        eager_loss = tf.reduce_sum(eager ** 2)
    np.testing.assert_allclose(out["localresponsenorm0"], eager, rtol=1e-5, atol=1e-6)
    g_graph, g_eager = tape.gradient(graph_loss, images), tape.gradient(eager_loss, images)
    assert float(tf.norm(g_graph)) > 0
    np.testing.assert_allclose(g_graph, g_eager, rtol=1e-4, atol=1e-6 * float(tf.reduce_max(tf.abs(g_eager))))


def test_gradients_inside_tf_function(model, images):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(model(x, ["mixed4c_pre_relu"])["mixed4c_pre_relu"][..., 0])
        return tape.gradient(loss, x)

    g = step(images)
    assert g.shape == images.shape and np.isfinite(g.numpy()).all() and float(tf.norm(g)) > 0


# -- errors -------------------------------------------------------------------------------------


def test_corrupt_and_truncated_files(fake_pb, tmp_path):
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff\xfe this is not a protobuf \x00\x01" * 10)
    with pytest.raises(ValueError, match="garbage.pb is not a valid GraphDef"):
        load_model(garbage)
    data = fake_pb.read_bytes()
    for n in (len(data) // 2, len(data) - 3):
        cut = tmp_path / f"cut{n}.pb"
        cut.write_bytes(data[:n])
        with pytest.raises(ValueError, match=f"cut{n}.pb is not a valid GraphDef"):
            load_model(cut)
    empty = tmp_path / "empty.pb"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pb is not a valid GraphDef"):
        load_model(empty)
    with pytest.raises(FileNotFoundError, match="nothing.pb"):
        load_model(tmp_path / "nothing.pb")


def test_missing_metadata(bare_pb, tmp_path):
    with pytest.raises(ValueError, match="missing 'input_name', 'image_shape', 'image_value_range'"):
        load_model(bare_pb)
    meta = fi.fake_metadata()
    del meta["image_shape"]
    partial = fi.write(tmp_path / "partial.pb", metadata=meta)
    with pytest.raises(ValueError, match=r"partial.pb: model metadata is missing 'image_shape'"):
        load_model(partial)
    assert load_model(partial, image_shape=(64, 64, 3)).image_shape == (64, 64, 3)


def test_bad_metadata_values(bare_pb):
    base = dict(input_name="input", image_shape=(64, 64, 3), image_value_range=(0, 1))
    with pytest.raises(ValueError, match=r"image_shape \[64, 64\] must be three positive ints"):
        load_model(bare_pb, **{**base, "image_shape": [64, 64]})
    with pytest.raises(ValueError, match=r"image_value_range \(1, 0\) must be two finite numbers lo < hi"):
        load_model(bare_pb, **{**base, "image_value_range": (1, 0)})
    with pytest.raises(ValueError, match="input_name 'input:0' must be a node name"):
        load_model(bare_pb, **{**base, "input_name": "input:0"})
    with pytest.raises(ValueError, match=r"input_name 'images' is not a node.*\['input'\]"):
        load_model(bare_pb, **{**base, "input_name": "images"})
    with pytest.raises(ValueError, match=r"input 'input' has shape \[-1, 64, 64, 3\].*image_shape \[32, 32, 3\]"):
        load_model(bare_pb, **{**base, "image_shape": (32, 32, 3)})
    with pytest.raises(ValueError, match="layer 'mixed9z' from the metadata is not in the graph"):
        load_model(bare_pb, **base, layers=["mixed9z"])
    with pytest.raises(ValueError, match=r"layer 'mixed4c' has depth 512 in the metadata.*\(32 channels\)"):
        load_model(bare_pb, **base, layers=[LayerInfo("mixed4c", 512, ("conv",))])
    with pytest.raises(TypeError, match="unknown metadata override"):
        load_model(bare_pb, **base, image_size=3)


def test_manifest(fake_pb, tmp_path):
    (tmp_path / "graph.pb").write_bytes(lucid_format.read_graph_def(fake_pb).SerializeToString())
    manifest = {
        "model_path": "./graph.pb",
        "image_shape": [64, 64, 3],
        "image_value_range": [0, 255],
        "input_name": "input",
        "layers": ["mixed3a", "mixed4c"],
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    m = load_model(tmp_path / "manifest.json")
    assert m.image_value_range == (0.0, 255.0)  # the manifest beats the embedded metadata
    assert [(l.name, l.depth) for l in m.layers] == [("mixed3a", 16), ("mixed4c", 32)]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not a valid Lucid manifest"):
        load_model(tmp_path / "bad.json")


def test_metadata_round_trip(fake_pb):
    graph_def = lucid_format.read_graph_def(fake_pb)
    meta = lucid_format.read_metadata(graph_def)
    assert meta == fi.fake_metadata()
    lucid_format.embed_metadata(graph_def, {**meta, "name": "renamed"})
    assert [n.name for n in graph_def.node].count(lucid_format.METADATA_NODE) == 1
    assert lucid_format.read_metadata(graph_def)["name"] == "renamed"
    assert lucid_format.read_metadata(lucid_format.strip_metadata(graph_def)) is None


# -- safety -------------------------------------------------------------------------------------


def _with_unsafe_ops(graph_def):
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    with tf.Graph().as_default() as g:
        contents = tf.io.read_file(tf.constant("/etc/passwd", name="secret_path"), name="steal")
        tf.io.write_file("/tmp/owned", contents, name="drop")
    out.node.extend(g.as_graph_def().node)
    return out


def test_disallowed_ops_are_refused_unless_allowed(fake_pb, tmp_path, images):
    evil = tmp_path / "evil.pb"
    lucid_format.write_graph_def(_with_unsafe_ops(lucid_format.read_graph_def(fake_pb)), evil)
    with pytest.raises(ValueError) as info:
        load_model(evil)
    message = str(info.value)
    assert "evil.pb" in message
    assert "ReadFile (node steal)" in message and "WriteFile (node drop)" in message
    assert "allow_ops=('ReadFile', 'WriteFile')" in message
    with pytest.raises(ValueError, match="WriteFile") as info:
        load_model(evil, allow_ops=["ReadFile"])
    assert "ReadFile" not in str(info.value)
    m = load_model(evil, allow_ops=("ReadFile", "WriteFile"))
    assert m(images, ["conv2d0"])["conv2d0"].shape == (2, 32, 32, 4)


def test_op_allow_list():
    """File, Python and I/O ops are off the allow-list; the inference ops of Lucid's graphs
    and Keras exports are on it (the full derivation: tests/test_graph_allowlist.py)."""
    for op in ("ReadFile", "WriteFile", "PyFunc", "EagerPyFunc", "PyFuncStateless", "Save",
               "SaveV2", "Restore", "RestoreV2", "RestoreSlice", "MatchingFiles",
               "ShardedFilename", "ImmutableConst", "PrintV2", "TFRecordDataset",
               "WholeFileReaderV2", "CreateSummaryFileWriter", "DebugIdentityV2", "RpcCall",
               "ExperimentalCSVDataset", "CSVDatasetV2", "RecordInput", "DatasetFromGraph",
               "StatefulPartitionedCall", "VarHandleOp", "RandomUniform", "While"):
        assert not is_allowed_op(op), op
    for op in ("Conv2D", "Concat", "ConcatV2", "LRN", "Relu", "MatMul", "Softmax", "Const",
               "Placeholder", "Identity", "FusedBatchNormV3", "Snapshot"):
        assert is_allowed_op(op) and op in ALLOWED_OPS, op


def test_disallowed_ops_inside_functions_are_found():
    graph_def = tf.compat.v1.GraphDef()
    fn = graph_def.library.function.add()
    fn.signature.name = "sneaky"
    node = fn.node_def.add()
    node.name, node.op = "call", "EagerPyFunc"
    assert disallowed_nodes(graph_def) == {"EagerPyFunc": ["sneaky/call"]}
    assert disallowed_nodes(graph_def, allow_ops="EagerPyFunc") == {}


# -- Keras export round trip -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_net():
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.Conv2D(6, 3, name="conv1")(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn1")(x)
    x = tf.keras.layers.ReLU(name="relu1")(x)
    x = tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv2")(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf.keras.layers.Dense(5, name="logits")(x)
    net = tf.keras.Model(inputs, outputs, name="tiny")
    bn = net.get_layer("bn1")
    rng = np.random.default_rng(0)
    bn.moving_mean.assign(rng.normal(size=6).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=6).astype("float32"))
    bn.gamma.assign(rng.uniform(0.5, 1.5, size=6).astype("float32"))
    bn.beta.assign(rng.normal(size=6).astype("float32"))
    return net


def test_export_keras_round_trip(keras_net, tmp_path):
    path = tmp_path / "out" / "tiny.pb"
    labels = [f"class {i}" for i in range(5)]
    export_keras(keras_net, path, image_value_range=(-1.0, 1.0), labels=labels)
    m = load_model(path)
    reference = KerasModel(keras_net, image_value_range=(-1.0, 1.0))
    assert m.name == "tiny" and m.labels == labels and m.input_name == "input"
    assert m.image_shape == (16, 16, 3) and m.image_value_range == (-1.0, 1.0)
    assert m.layers == reference.layers
    assert [(l.name, l.depth, l.tags) for l in m.layers][-2:] == [("pool", 8, ("dense",)), ("logits", 5, ("dense",))]
    x = tf.constant(np.random.default_rng(2).uniform(size=(3, 16, 16, 3)), tf.float32)
    names = m.layer_names
    ours, theirs = m(x, names), reference(x, names)
    for n in names:
        np.testing.assert_allclose(ours[n], theirs[n], rtol=1e-5, atol=1e-6, err_msg=n)
    # BatchNorm ran in inference mode (moving statistics): with batch statistics every
    # channel's mean over the batch would be beta.
    beta = keras_net.get_layer("bn1").beta.numpy()
    assert not np.allclose(ours["bn1"].numpy().mean(axis=(0, 1, 2)), beta, atol=1e-2)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(m(x, ["logits"])["logits"][:, 2])
    g = tape.gradient(loss, x)
    assert np.isfinite(g.numpy()).all() and float(tf.norm(g)) > 0
    graph_def = lucid_format.read_graph_def(path)
    nodes = {n.name: n for n in graph_def.node}
    assert nodes["input"].op == "Placeholder"
    assert all(nodes[n].op == "Identity" for n in names)
    assert not {n.op for n in graph_def.node} & {"VarHandleOp", "ReadVariableOp"}


def test_export_keras_selected_layers_and_errors(keras_net, tmp_path):
    path = tmp_path / "sel.pb"
    export_keras(keras_net, path, layers=["relu1", "logits"], name="sel")
    m = load_model(path)
    assert m.layer_names == ["relu1", "logits"] and m.labels is None and m.name == "sel"
    with pytest.raises(KeyError, match="nope"):
        export_keras(keras_net, tmp_path / "x.pb", layers=["nope"])
    assert not (tmp_path / "x.pb").exists()
