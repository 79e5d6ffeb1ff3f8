"""The SRNet of Sec. 3.7 (modelzoo.srnet): architecture, loss, a training smoke run, and the
shipped srnet_small, which must beat bilinear upscaling on held-out geometry images."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from modelzoo import geometry, shipped, srnet  # noqa: E402

N_CHECK = 40  # held-out pairs recomputed here (the first 40 of the record's 1000)


@pytest.fixture(scope="module")
def pairs():
    return geometry.srnet_pairs(12, seed=123)


@pytest.fixture(scope="module")
def model():
    return shipped.load_shipped("srnet_small")


def test_architecture_layers_and_shapes(pairs):
    net = srnet.build_srnet()
    names = [layer.name for layer in net.layers]
    for i in range(1, 9):
        assert f"res_block{i}" in names
    assert "res_block9" not in names
    assert tuple(net.input.shape) == (None, 16, 16, 5)
    assert tuple(net.output.shape) == (None, 64, 64, 5)
    assert tuple(net.get_layer("res_block8").output.shape) == (None, 16, 16, srnet.WIDTH)
    assert tuple(net.get_layer("upsample1").output.shape) == (None, 32, 32, srnet.UP_WIDTHS[0])
    # output = residual + bilinear upscaling; the residual starts at zero, so an untrained net
    # is exactly bilinear upscaling (the Keras layer and `bilinear_upscale` agree)
    low, _ = pairs
    np.testing.assert_allclose(net(low[:3]).numpy(), srnet.bilinear_upscale(low[:3]), atol=1e-6)
    small = srnet.build_srnet(width=8, blocks=2, up_widths=(8, 4, 4))  # 8x upscaling
    assert tuple(small.output.shape) == (None, 128, 128, 5)
    with pytest.raises(ValueError, match="width"):
        srnet.build_srnet(width=0)


def test_loss_and_metrics(pairs):
    low, high = pairs
    bilinear = srnet.bilinear_upscale(low)
    assert float(srnet.geometry_loss(high, high)) < 0.05  # only the mask cross-entropy's floor
    assert float(srnet.geometry_loss(high, bilinear)) > float(srnet.geometry_loss(high, high)) + 0.1
    perfect = srnet.evaluate(high, high)
    assert perfect["normal_angle_deg"] < 0.01 and perfect["depth_l1"] == 0 and perfect["mask_accuracy"] == 1
    no_normals = high.copy()
    no_normals[..., :3] = 0
    assert srnet.evaluate(no_normals, high)["normal_angle_deg"] == pytest.approx(90.0)
    with pytest.raises(ValueError, match="shapes"):
        srnet.evaluate(high[..., :4], high[..., :4])


def test_training_smoke_run_reduces_the_loss(pairs):
    net, info = srnet.train_srnet(seed=0, data=pairs, epochs=3, batch_size=6, learning_rate=3e-3,
                                  n_val=0, width=8, blocks=1, up_widths=(8, 4), verbose=0)
    history = info["training"]["loss_history"]
    assert len(history) == 3 and history[-1] < history[0]
    assert info["architecture"]["params"] == net.count_params() and "validation" not in info


def test_shipped_model_loads_with_its_metadata(model):
    record = shipped.load_record("srnet_small")
    assert tuple(model.image_shape) == (16, 16, 5) == tuple(record["image_shape"])
    assert model.image_value_range == (0.0, 1.0)  # lo + x (hi - lo) is the identity
    assert model.layer("res_block8").depth == srnet.WIDTH == record["studied_layers"]["res_block8"]
    assert {layer["name"]: layer["depth"] for layer in record["layers"]}["res_block8"] == srnet.WIDTH
    assert "not an rgb image" in record["description"].lower() and record["command"].startswith("python -m modelzoo.srnet")
    assert record["train_time_s"] <= 15 * 60
    for key in ("srnet", "bilinear"):
        assert set(record["validation"][key]) >= {"normal_angle_deg", "depth_l1", "mask_accuracy"}
    row = {r["name"]: r for r in shipped.list_shipped()}["srnet_small"]
    assert row["input_shape"] == (16, 16, 5) and row["studied_layers"] == {"res_block8": 32}


def test_shipped_model_activations_take_raw_geometry_images(model):
    low, _ = srnet.heldout_pairs(N_CHECK)
    assert low[..., :3].min() < 0  # normals keep their sign: the input is not an image in [0, 1]
    out = model(low[:4], ["res_block8", "bilinear", "output"])
    assert out["res_block8"].shape == (4, 16, 16, srnet.WIDTH)
    assert out["output"].shape == (4, 64, 64, 5)
    # the graph sees the input unmapped: its bilinear layer is bilinear upscaling of `low`
    np.testing.assert_allclose(out["bilinear"].numpy(), srnet.bilinear_upscale(low[:4]), atol=1e-5)
    grad_input = tf.convert_to_tensor(low[:2])
    with tf.GradientTape() as tape:
        tape.watch(grad_input)
        response = tf.reduce_mean(model(grad_input, ["res_block8"])["res_block8"][..., 3])
    grad = tape.gradient(response, grad_input)
    assert grad.shape == (2, 16, 16, 5) and np.any(grad.numpy() != 0)


def test_shipped_model_beats_bilinear_on_heldout_pairs(model):
    low, high = srnet.heldout_pairs(N_CHECK)
    scores = srnet.compare_to_bilinear(model, low, high)
    net, bilinear = scores["srnet"], scores["bilinear"]
    assert net["n_hit_pixels"] > 10000
    assert net["normal_angle_deg"] < 0.9 * bilinear["normal_angle_deg"]
    assert net["depth_l1"] < 0.5 * bilinear["depth_l1"]
    assert net["mask_accuracy"] > bilinear["mask_accuracy"]


def test_shipped_heldout_is_the_geometry_pairs(monkeypatch):
    monkeypatch.setattr(shipped, "HELDOUT_SIZE", N_CHECK)  # pair i does not depend on the count
    images, targets = shipped.heldout("srnet_small")
    assert images.shape == (N_CHECK, 16, 16, 5) and targets.shape == (N_CHECK, 64, 64, 5)
    low, high = srnet.heldout_pairs(N_CHECK)
    np.testing.assert_array_equal(images[:N_CHECK], low)
    np.testing.assert_array_equal(targets[:N_CHECK], high)


def test_the_shipped_model_takes_the_geometry_parametrization():
    """Its metadata says it takes geometry images, so the library renders it with
    `lucid_ifv.param.geometry` (normals with n_z > 0, sigmoid depth and mask)."""
    from lucid_ifv.param import image_for_model
    from lucid_ifv.param.geometry import GeometryParam
    from lucid_ifv.smooth import smooth_model

    model = shipped.load_shipped("srnet_small")
    assert model.input_kind == "geometry" and smooth_model(model).input_kind == "geometry"
    p = image_for_model(model, batch=2, fft=False, seed=0)
    assert isinstance(p, GeometryParam) and p.shape == (2, 16, 16, 5)
    assert model(p(), ["res_block8"])["res_block8"].shape == (2, 16, 16, 32)
