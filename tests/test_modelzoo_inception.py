"""modelzoo.vision.InceptionV1: Lucid's metadata, and the class run on a local fake graph."""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import fake_inception as fi
from lucid_ifv.model import LayerInfo
from modelzoo.vision import InceptionV1, LucidModel

LAYER_NAMES = [l.name for l in InceptionV1.layers]


@pytest.fixture(scope="module")
def fake_pb(tmp_path_factory):
    """The fake graph without metadata, like Lucid's InceptionV1.pb."""
    return fi.write(tmp_path_factory.mktemp("inception") / "InceptionV1.pb")


def fake_inception(model_path, **kwargs) -> InceptionV1:
    """InceptionV1 pointed at the fake: its input size, Lucid's layer names, graph depths."""
    return InceptionV1(model_path=str(model_path), image_shape=(64, 64, 3), layers=LAYER_NAMES, **kwargs)


@pytest.fixture(scope="module")
def model(fake_pb):
    return fake_inception(fake_pb)


# -- metadata -----------------------------------------------------------------------------------


def _lucid_inception_source() -> Path | None:
    spec = importlib.util.find_spec("lucid")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "modelzoo" / "other_models" / "InceptionV1.py"


def test_metadata_equals_lucids():
    """Parity with Lucid 0.3.10's own class (read from its source: lucid.modelzoo does not
    import under TF2)."""
    source = _lucid_inception_source()
    if source is None or not source.exists():
        if os.environ.get("LUCID_IFV_REQUIRE_LUCID"):
            pytest.fail("Lucid 0.3.10 is required (LUCID_IFV_REQUIRE_LUCID is set)")
        pytest.skip("Lucid is not installed")
    tree = ast.parse(source.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "InceptionV1")
    attrs = {
        t.id: eval(compile(ast.Expression(s.value), str(source), "eval"), {})  # constant expressions
        for s in cls.body if isinstance(s, ast.Assign)
        for t in s.targets if isinstance(t, ast.Name) and not isinstance(s.value, ast.Call)
    }
    layers_call = next(
        s.value for s in tree.body
        if isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) == "InceptionV1.layers"
    )
    lucid_layers = ast.literal_eval(layers_call.args[1])
    assert InceptionV1.model_path == attrs["model_path"] == "gs://modelzoo/vision/other_models/InceptionV1.pb"
    assert InceptionV1.labels_path == attrs["labels_path"]
    assert InceptionV1.synsets_path == attrs["synsets_path"]
    assert list(InceptionV1.image_shape) == attrs["image_shape"] == [224, 224, 3]
    assert InceptionV1.image_value_range == attrs["image_value_range"] == (-117, 138)
    assert InceptionV1.input_name == attrs["input_name"] == "input"
    assert [l.to_dict() for l in InceptionV1.layers] == [
        {"name": d["name"], "depth": d["depth"], "tags": d["tags"]} for d in lucid_layers
    ]


def test_metadata_without_loading():
    m = InceptionV1()
    assert m.name == "InceptionV1" and not m.is_loaded
    assert m.layer("mixed4c") == LayerInfo("mixed4c", 512, ("conv",))
    assert m.layer("softmax2").depth == 1008 and m.layer("nn0").tags == ("dense",)
    assert len(m.layers) == 19 and m.image_shape == (224, 224, 3)
    assert not m.is_loaded


# -- the class on the fake graph --------------------------------------------------------------------


def test_loads_a_local_fake_with_depths_from_the_graph(model):
    assert model.is_loaded and model.name == "InceptionV1"
    assert [l.name for l in model.layers] == LAYER_NAMES
    assert {l.name: l.depth for l in model.layers} == fi.FAKE_DEPTHS
    assert model.layer("mixed4c").depth == fi.FAKE_DEPTHS["mixed4c"]
    assert model.layer("softmax1").tags == ("dense",)
    assert model.image_value_range == (-117.0, 138.0)


def test_activations_and_pre_relu(model):
    x = tf.random.stateless_uniform([2, 64, 64, 3], seed=(1, 2))
    names = ["conv2d0", "mixed3a", "mixed4c", "mixed4c_pre_relu", "mixed5b_pre_relu", "softmax2"]
    out = model(x, names)
    assert out["conv2d0"].shape == (2, 32, 32, fi.FAKE_DEPTHS["conv2d0"])
    assert out["mixed4c"].shape == (2, 4, 4, fi.FAKE_DEPTHS["mixed4c"])
    assert out["mixed5b_pre_relu"].shape == (2, 2, 2, fi.FAKE_DEPTHS["mixed5b"])
    np.testing.assert_allclose(tf.nn.relu(out["mixed4c_pre_relu"]), out["mixed4c"])
    np.testing.assert_allclose(tf.reduce_sum(out["softmax2"], -1), [1.0, 1.0], rtol=1e-5)
    assert model.layer("mixed4c_pre_relu").depth == fi.FAKE_DEPTHS["mixed4c"]
    assert "mixed4c_pre_relu:0" in model.tensor_names


def test_input_gradients_through_concat_and_lrn(model):
    """A channel objective on mixed4c back-propagates through 7 legacy Concats and 2 LRNs."""
    x = tf.random.stateless_uniform([1, 64, 64, 3], seed=(3, 4))
    grads = {}
    for layer in ("mixed4c", "mixed4c_pre_relu"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            acts = model(x, [layer])[layer]
            loss = tf.reduce_mean(acts)
        grads[layer] = tape.gradient(loss, x)
        g = grads[layer].numpy()
        assert g.shape == (1, 64, 64, 3) and np.isfinite(g).all() and np.abs(g).max() > 0
    assert not np.allclose(grads["mixed4c"], grads["mixed4c_pre_relu"])


def test_file_url(fake_pb):
    m = fake_inception(fake_pb.as_uri())
    x = tf.zeros([1, 64, 64, 3])
    assert m(x, ["mixed4c"])["mixed4c"].shape == (1, 4, 4, fi.FAKE_DEPTHS["mixed4c"])


def test_download_end_to_end_with_labels_and_cache(fake_pb, tmp_path):
    labels = [f"label {i}" for i in range(fi.CLASSES)]
    files = {
        "/modelzoo/InceptionV1.pb": fake_pb.read_bytes(),
        "/modelzoo/labels.txt": "\n".join(labels).encode() + b"\n",
    }
    with fi.serve(files) as server:
        kwargs = dict(labels_path=server.url + "/modelzoo/labels.txt", cache_dir=tmp_path, progress=False)
        first = fake_inception(server.url + "/modelzoo/InceptionV1.pb", **kwargs)
        second = fake_inception(server.url + "/modelzoo/InceptionV1.pb", **kwargs)
        assert first.labels == second.labels == labels
    assert server.hits == {"/modelzoo/InceptionV1.pb": 1, "/modelzoo/labels.txt": 1}
    x = tf.random.stateless_uniform([1, 64, 64, 3], seed=(5, 6))
    np.testing.assert_array_equal(first(x, ["mixed4c"])["mixed4c"], second(x, ["mixed4c"])["mixed4c"])


def test_lazy_loading_on_first_use(fake_pb):
    depths = [LayerInfo(n, d, ("conv",)) for n, d in fi.FAKE_DEPTHS.items() if n.startswith("mixed")]
    m = InceptionV1(model_path=str(fake_pb), image_shape=(64, 64, 3), layers=depths)
    assert not m.is_loaded and m.layer("mixed4c").depth == fi.FAKE_DEPTHS["mixed4c"]
    m(tf.zeros([1, 64, 64, 3]), ["mixed4c"])
    assert m.is_loaded


def test_declared_metadata_must_fit_the_graph(fake_pb):
    with pytest.raises(ValueError, match=r"input 'input' has shape \[-1, 64, 64, 3\].*\[224, 224, 3\]"):
        InceptionV1(model_path=str(fake_pb)).graph_model
    # Lucid's real depths (conv2d0 = 64) do not fit the scaled-down fake.
    wrong = InceptionV1(model_path=str(fake_pb), image_shape=(64, 64, 3))
    with pytest.raises(ValueError, match=r"layer 'conv2d0' has depth 64 in the metadata.*\(4 channels\)"):
        wrong(tf.zeros([1, 64, 64, 3]), ["conv2d0"])


def test_errors(model, tmp_path):
    with pytest.raises(KeyError, match="'mixed4z'"):
        model(tf.zeros([1, 64, 64, 3]), ["mixed4z"])
    absent = InceptionV1(model_path=str(tmp_path / "absent.pb"))
    with pytest.raises(FileNotFoundError, match="absent.pb"):
        absent.graph_model
    with pytest.raises(KeyError, match="'mixed4z' is not a declared layer.*could not be loaded.*absent.pb"):
        absent.layer("mixed4z")
    with pytest.raises(TypeError, match="unknown argument"):
        InceptionV1(image_size=3)

    class NoPath(LucidModel):
        image_shape = (8, 8, 3)

    with pytest.raises(ValueError, match="NoPath has no model_path"):
        NoPath().graph_model
    with pytest.raises(KeyError, match="'anything' is not a declared layer of NoPath.*no model_path"):
        NoPath()(tf.zeros([1, 8, 8, 3]), ["anything"])
    with pytest.raises(ValueError, match="no labels"):
        InceptionV1(model_path=str(model.model_path), labels_path="", image_shape=(64, 64, 3),
                    layers=LAYER_NAMES).labels
