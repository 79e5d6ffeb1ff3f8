"""The shipped models: they load offline, match their records, expose their layers."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from modelzoo import datasets, shipped  # noqa: E402

NAMES = list(shipped.SHIPPED)
# srnet_small is a super-resolution net (no logits, accuracy None); tests/test_srnet.py checks
# its held-out errors against bilinear upscaling instead.
CLASSIFIERS = [n for n in NAMES if shipped.SHIPPED[n].dataset != "geometry"]


@pytest.fixture(scope="module")
def loaded():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = shipped.load_shipped(name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def logits(loaded):
    cache = {}

    def get(name):
        if name not in cache:
            images, _ = shipped.heldout(name)
            cache[name] = shipped.predict(loaded(name), images, "logits")
        return cache[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_files_are_shipped(name):
    entry = shipped.SHIPPED[name]
    assert entry.graph_path.exists() and entry.record_path.exists()
    record = shipped.load_record(name)
    assert record["name"] == name and record["model_path"] == entry.graph_path.name
    assert record["heldout"]["n"] == shipped.HELDOUT_SIZE <= 1000


def test_total_size_within_budget():
    total = sum(m.graph_path.stat().st_size for m in shipped.SHIPPED.values())
    assert total <= 20 * 2**20


@pytest.mark.parametrize("name", NAMES)
def test_loads_and_exposes_studied_layers(name, loaded):
    model = loaded(name)
    entry = shipped.SHIPPED[name]
    assert model.image_value_range == tuple(entry.image_value_range)  # (0, 255) for photos_cnn
    assert tuple(model.image_shape) == tuple(shipped.load_record(name)["image_shape"])
    images, _ = shipped.heldout(name)
    for layer, depth in entry.studied_layers.items():
        assert model.layer(layer).depth == depth
        out = model(images[:2], [layer])[layer]
        assert out.shape[0] == 2 and out.shape[-1] == depth


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_heldout_accuracy_matches_record(name, logits):
    _, labels = shipped.heldout(name)
    acc = float(np.mean(logits(name).argmax(-1) == labels))
    record = shipped.load_record(name)
    assert abs(acc - record["accuracy"]) <= 0.01
    if shipped.SHIPPED[name].excluded_classes:
        keep = ~np.isin(labels, shipped.SHIPPED[name].excluded_classes)
        acc_kept = float(np.mean(logits(name)[keep].argmax(-1) == labels[keep]))
        assert abs(acc_kept - record["accuracy_without_excluded"]) <= 0.01
        assert acc_kept > 0.85
    else:
        assert acc > {"shapes10": 0.85, "mnist": 0.95, "photos10": 0.85}[shipped.SHIPPED[name].dataset]


def test_no4_twin_never_predicts_class_4(logits):
    normal, twin = logits("densenet_small"), logits("densenet_small_no4")
    _, labels = shipped.heldout("densenet_small_no4")
    # The normal network predicts class 4 about as often as it occurs; the twin (almost) never.
    assert np.mean(normal.argmax(-1) == 4) > 0.05
    assert np.mean(twin.argmax(-1) == 4) < 0.01
    # Its class-4 logit is never the winner, even on class-4 images, and stays far below the top one.
    on_4 = twin[labels == 4]
    assert np.mean(on_4.argmax(-1) == 4) < 0.05
    assert np.median(on_4.max(-1) - on_4[:, 4]) > np.median(normal[labels == 4].max(-1) - normal[labels == 4][:, 4]) + 1.0


def test_graph_matches_softmax_of_logits(loaded):
    model = loaded("mnist_small")
    images, _ = shipped.heldout("mnist_small")
    out = model(images[:4], ["logits", "softmax"])
    np.testing.assert_allclose(tf.nn.softmax(out["logits"]).numpy(), out["softmax"].numpy(), atol=1e-5)


def test_list_shipped():
    rows = shipped.list_shipped()
    assert [r["name"] for r in rows] == NAMES
    for row in rows:
        assert set(row) >= {"name", "input_shape", "studied_layers", "accuracy"}
        if row["name"] not in CLASSIFIERS:
            assert row["accuracy"] is None
            continue
        assert row["accuracy"] is not None and 0 <= row["accuracy"] <= 1
    assert {r["name"]: r["input_shape"] for r in rows}["mnist_small"] == (28, 28, 1)


def test_unknown_name_lists_shipped():
    with pytest.raises(KeyError, match="mnist_small"):
        shipped.load_shipped("resnet50")
    with pytest.raises(KeyError, match="inception_small"):
        shipped.heldout("nope")


def test_heldout_is_reproducible_and_fixed():
    a, la = shipped.heldout("inception_small")
    b, lb = datasets.shapes10(shipped.HELDOUT_SIZE, datasets.SHAPES10_TEST_SEED)
    assert a.shape == (1000, 32, 32, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert np.bincount(la).tolist() == [100] * 10
    m, lm = shipped.heldout("mnist_small")
    assert m.shape == (1000, 28, 28, 1) and 0 <= m.min() and m.max() <= 1


def test_train_and_test_splits_differ():
    train, _ = datasets.shapes10_split("train", 50)
    test, _ = datasets.shapes10_split("test", 50)
    assert not np.allclose(train, test)
    x_train, _ = datasets.mnist("train")
    x_test, _ = datasets.mnist("test")
    assert len(x_train) == 4000 and len(x_test) == 1000
    # no image of the test split is in the training split
    train_rows = {row.tobytes() for row in x_train.reshape(len(x_train), -1)}
    assert sum(row.tobytes() in train_rows for row in x_test.reshape(len(x_test), -1)) <= 5
