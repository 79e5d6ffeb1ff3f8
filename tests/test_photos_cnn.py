"""photos_cnn: the third-party-style Keras CNN on patches of scikit-image photographs.

Checks the data set (seeded, balanced, held-out patches disjoint from the training ones),
the shipped ``.keras`` file (loads as a `KerasModel` with inputs in [0, 255], held-out
accuracy equal to its record's, documented layer depths) and the architecture
(BatchNormalization after every ReLU, max-pooling, dense head).
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("skimage")

from lucid_ifv.model import KerasModel  # noqa: E402
from modelzoo import architectures, photos, shipped, train  # noqa: E402

NAME = "photos_cnn"
#: The layers `load_shipped("photos_cnn")` exposes, with their depths and output shapes.
TAPS = {
    "conv2d_1": (32, 32, 32), "conv2d_2": (30, 30, 32), "max_pooling2d_1": (15, 15, 32),
    "conv2d_3": (15, 15, 64), "conv2d_4": (13, 13, 64), "max_pooling2d_2": (6, 6, 64),
    "dense_1": (64,), "logits": (10,), "softmax": (10,),
}


@pytest.fixture(scope="module")
def model():
    return shipped.load_shipped(NAME)


@pytest.fixture(scope="module")
def record():
    return shipped.load_record(NAME)


# -- data -----------------------------------------------------------------------------------


def test_ten_photos_load_offline():
    assert len(photos.PHOTOS10_CLASSES) == 10 == len(set(photos.PHOTOS10_CLASSES))
    for label in range(10):
        image = photos.photo(label)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 200 and image.std() > 10
    assert photos.photo("coffee") is photos.photo(2)
    # the two grey photographs are copied to R, G and B
    for name in ("camera", "coins"):
        image = photos.photo(name)
        assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])


def test_dataset_is_seeded_and_deterministic():
    a, la = photos.photos10(60, 3, "train")
    b, lb = photos.photos10(60, 3, "train")
    c, _ = photos.photos10(60, 4, "train")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert a.shape == (60, 32, 32, 3) and a.dtype == np.float32 and la.dtype == np.int64
    assert a.min() >= 0 and a.max() <= 255 and np.array_equal(a, np.round(a)) and a.max() > 1
    assert np.bincount(la, minlength=10).tolist() == [6] * 10
    # the patches are the photographs' pixels (mirrored when flipped)
    pos = photos.patch_positions(60, 3, "train")
    assert 0 < pos["flip"].sum() < 60
    for i in range(60):
        patch = photos.photo(pos["label"][i])[pos["y"][i] : pos["y"][i] + 32, pos["x"][i] : pos["x"][i] + 32]
        np.testing.assert_array_equal(a[i], patch[:, ::-1] if pos["flip"][i] else patch)


def test_heldout_patches_never_touch_training_pixels():
    n_train = train.config(NAME).n_train
    train_pos = photos.patch_positions(n_train, photos.TRAIN_SEED, "train")
    test_pos = photos.patch_positions(shipped.HELDOUT_SIZE, photos.TEST_SEED, "test")
    assert not test_pos["flip"].any()
    for label in range(10):
        shape = photos.photo(label).shape[:2]
        covered = {}
        for split, pos in (("train", train_pos), ("test", test_pos)):
            # pixels covered by the split's patches (2D difference array -> cumulative sums)
            diff = np.zeros((shape[0] + 1, shape[1] + 1), np.int64)
            sel = pos["label"] == label
            for y, x in zip(pos["y"][sel], pos["x"][sel]):
                diff[y, x] += 1
                diff[y + 32, x] -= 1
                diff[y, x + 32] -= 1
                diff[y + 32, x + 32] += 1
            covered[split] = diff.cumsum(0).cumsum(1)[: shape[0], : shape[1]] > 0
        mask = photos.heldout_mask(label)
        assert not (covered["train"] & covered["test"]).any()
        assert not (covered["train"] & mask).any() and not (covered["test"] & ~mask).any()
        # held-out patches come from several places of the photograph, not one strip
        assert len(np.unique(test_pos["x"][test_pos["label"] == label] // photos.TILE)) >= 3
        assert 0.15 < mask.mean() < 0.25


def test_heldout_is_the_fixed_test_split_in_unit_range():
    images, labels = shipped.heldout(NAME)
    raw, raw_labels = photos.photos10_split("test", shipped.HELDOUT_SIZE)
    assert images.shape == (1000, 32, 32, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
    np.testing.assert_allclose(images * 255, raw, atol=1e-3)
    np.testing.assert_array_equal(labels, raw_labels)
    assert np.bincount(labels).tolist() == [100] * 10
    assert shipped.class_names(NAME) == photos.PHOTOS10_CLASSES


# -- the shipped model ----------------------------------------------------------------------


def test_loads_as_keras_model_with_0_255_inputs(model, record):
    entry = shipped.spec(NAME)
    assert entry.model_path.suffix == ".keras" and entry.model_path.exists()
    assert entry.model_path.stat().st_size < 2**20
    assert isinstance(model, KerasModel) and isinstance(model.keras_model, tf.keras.Model)
    assert model.name == NAME and model.image_shape == (32, 32, 3)
    assert model.image_value_range == (0.0, 255.0) == tuple(record["image_value_range"])
    assert record["model_path"] == "photos_cnn.keras" and record["type"] == "keras"
    # the Model interface takes [0, 1]; the Keras network itself gets [0, 255]
    images, _ = shipped.heldout(NAME)
    via_interface = model(images[:4], ["logits"])["logits"].numpy()
    direct = model.keras_model.get_layer("logits")
    sub = tf.keras.Model(model.keras_model.inputs[0], direct.output)
    np.testing.assert_allclose(via_interface, sub(images[:4] * 255.0, training=False).numpy(), atol=1e-4)


def test_heldout_accuracy_matches_record(model, record):
    images, labels = shipped.heldout(NAME)
    acc = shipped.accuracy(model, images, labels)
    assert abs(acc - record["accuracy"]) <= 0.005
    assert acc >= 0.8
    softmax = shipped.predict(model, images[:50], "softmax")
    np.testing.assert_allclose(softmax.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(softmax.argmax(-1), shipped.predict(model, images[:50]).argmax(-1))


def test_layer_taps_have_documented_depths(model, record):
    assert model.layer_names == list(TAPS) == list(shipped.PHOTOS_CNN_TAPS)
    assert record["layers"] == {name: shape[-1] for name, shape in TAPS.items()}
    entry = shipped.spec(NAME)
    assert next(iter(entry.studied_layers)) == "conv2d_3"
    images, _ = shipped.heldout(NAME)
    out = model(images[:2], list(TAPS))
    for name, shape in TAPS.items():
        assert model.layer(name).depth == shape[-1]
        assert tuple(out[name].shape) == (2, *shape)
        assert model.layer(name).tags == (("dense",) if len(shape) == 1 else ("conv",))
    for name, depth in entry.studied_layers.items():
        assert model.layer(name).depth == depth
    # the convs are post-ReLU outputs
    assert float(tf.reduce_min(out["conv2d_3"])) >= 0.0


def test_listed_by_registry_and_cli(capsys):
    row = {r["name"]: r for r in shipped.list_shipped()}[NAME]
    assert row["format"] == "keras" and row["input_shape"] == (32, 32, 3) and row["accuracy"] >= 0.8
    assert row["size_bytes"] == shipped.spec(NAME).model_path.stat().st_size
    from lucid_ifv.cli import main

    assert main(["models"]) == 0
    assert NAME in capsys.readouterr().out


# -- architecture ---------------------------------------------------------------------------


def _structure(keras_model) -> list[tuple[str, str]]:
    return [(layer.name, type(layer).__name__) for layer in keras_model.layers]


def _history_names(config) -> list[str]:
    """Names of the layers whose outputs a node's serialized inputs refer to."""
    if isinstance(config, dict):
        if "keras_history" in config:
            return [config["keras_history"][0]]
        return [n for value in config.values() for n in _history_names(value)]
    if isinstance(config, (list, tuple)):
        return [n for value in config for n in _history_names(value)]
    return []


def _check_relu_then_batchnorm(keras_model):
    layers = tf.keras.layers
    by_name = {layer.name: layer for layer in keras_model.layers}
    assert isinstance(keras_model.layers[1], layers.Rescaling)
    assert np.isclose(float(np.asarray(keras_model.layers[1].scale)), 1 / 255)
    relu_layers = [l for l in keras_model.layers if getattr(l, "activation", None) is not None
                   and getattr(l.activation, "__name__", "") == "relu"]
    assert [l.name for l in relu_layers] == ["conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "dense_1"]
    consumers = {}
    for node in keras_model.get_config()["layers"]:
        for source in _history_names(node["inbound_nodes"]):
            consumers.setdefault(source, []).append(node["name"])
    for layer in relu_layers:
        (consumer,) = consumers[layer.name]
        assert isinstance(by_name[consumer], layers.BatchNormalization), (layer.name, consumer)
    pools = [l for l in keras_model.layers if isinstance(l, layers.MaxPooling2D)]
    assert [p.name for p in pools] == ["max_pooling2d_1", "max_pooling2d_2"]
    assert isinstance(by_name["flatten"], layers.Flatten)
    assert by_name["logits"].activation.__name__ == "linear"
    assert isinstance(keras_model.layers[-1], layers.Softmax) and keras_model.layers[-1].name == "softmax"
    assert sum(isinstance(l, layers.Dropout) for l in keras_model.layers) == 3


def test_architecture_batchnorm_after_relu_and_maxpool(model):
    _check_relu_then_batchnorm(model.keras_model)
    built = architectures.photos_cnn()
    _check_relu_then_batchnorm(built)
    assert _structure(built) == _structure(model.keras_model)
    assert built.count_params() == model.keras_model.count_params() < 250_000


def test_training_data_is_in_0_255():
    images, labels, source = train.training_data(NAME)
    assert images.shape == (train.config(NAME).n_train, 32, 32, 3)
    assert images.max() > 200 and images.min() >= 0
    assert "photos10" in source and np.bincount(labels).min() == train.config(NAME).n_train // 10
