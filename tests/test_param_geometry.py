"""The geometry-image parametrization (`lucid_ifv.param.geometry`, the paper's SRNet input)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import experiment as ex
from lucid_ifv import param
from lucid_ifv.metrics import angle_deg
from lucid_ifv.model import KerasModel
from lucid_ifv.param.geometry import GeometryParam, geometry_image, geometry_to_rgb


def geometry_net(size=6, seed=0):
    """A smooth conv net on 5-channel geometry images (tanh: a stationary FV optimum exists)."""
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((size, size, 5))
    x = tf.keras.layers.Conv2D(6, 3, padding="same", activation="tanh", name="conv1")(inputs)
    x = tf.keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="conv2")(x)
    model = KerasModel(tf.keras.Model(inputs, x), name="geometry_net")
    model.input_kind = "geometry"
    return model


@pytest.mark.parametrize("mask", ["continuous", "one"])
@pytest.mark.parametrize("fft", [False, True])
def test_values_are_valid_geometry_and_invert_exactly(mask, fft):
    p = geometry_image(6, batch=2, fft=fft, mask=mask, sd=0.5, seed=3)
    x = p().numpy()
    assert x.shape == (2, 6, 6, 5) and p.inner.shape[-1] == (3 if mask == "one" else 4)
    np.testing.assert_allclose(np.linalg.norm(x[..., :3], axis=-1), 1.0, atol=1e-5)
    assert np.all(x[..., 2] > 0) and np.all((x[..., 3] > 0) & (x[..., 3] < 1))
    if mask == "one":
        assert np.all(x[..., 4] == 1.0)
    else:
        assert np.all((x[..., 4] > 0) & (x[..., 4] < 1))
    back = p.forward([tf.constant(v) for v in p.params_from_image(x)]).numpy()
    np.testing.assert_allclose(back, x, atol=2e-5)


def test_start_is_seeded_and_points_in_all_directions():
    a, b = geometry_image(8, batch=2, seed=1)(), geometry_image(8, batch=2, seed=1)()
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    azimuth = np.arctan2(a.numpy()[..., 1], a.numpy()[..., 0])
    counts = np.histogram(azimuth, bins=4, range=(-np.pi, np.pi))[0]
    assert counts.min() > 0.15 * azimuth.size  # about uniform, not one direction
    assert not np.allclose(a.numpy(), geometry_image(8, batch=2, seed=2)().numpy())


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="mask must be one of"):
        geometry_image(4, mask="binary")
    with pytest.raises(ValueError, match="needs 3 raw channels"):
        GeometryParam(param.pixel_image((1, 4, 4, 4)), mask="one")
    p = geometry_image(4, seed=0)
    x = p().numpy()
    x[0, 1, 2, :3] = 0
    with pytest.raises(ValueError, match="non-zero normals"):
        p.params_from_image(x)
    q = geometry_image(4, mask="one", seed=0)
    y = q().numpy()
    y[..., 4] = 0.5
    with pytest.raises(ValueError, match="mask='one'"):
        q.params_from_image(y)
    with pytest.raises(ValueError, match="5 channels"):
        geometry_to_rgb(np.zeros((2, 2, 3)))


def test_saturation_counts_bounded_values_only():
    p = geometry_image(2, seed=0)
    x = np.zeros((1, 2, 2, 5))
    x[..., 2] = 1.0  # normal at the pole: polar angle 0
    x[..., 3] = 0.5
    x[..., 4] = 0.5
    sat = p.saturated(x, 1e-3)
    assert sat.shape == (1, 2, 2, 3) and sat[..., 0].all() and not sat[..., 1:].any()


def test_figures_show_normals_as_rgb_and_depth_off_the_mask_as_white():
    x = np.zeros((2, 2, 5))
    x[..., 2] = 1.0
    x[..., 3] = 0.25
    x[0, 0, 4] = 1.0
    rgb, depth = geometry_to_rgb(x)
    np.testing.assert_allclose(rgb[0, 0], [0.5, 0.5, 1.0])
    assert depth[0, 0] == 0.25 and depth[1, 1] == 1.0


def test_models_taking_geometry_get_the_geometry_parametrization():
    model = geometry_net()
    p = param.image_for_model(model, batch=2, fft=False, decorrelate=True, mask="one", seed=0)
    assert isinstance(p, GeometryParam) and p.shape == (2, 6, 6, 5) and p.mask == "one"
    with pytest.raises(ValueError, match="5"):
        param.geometry.geometry_for_model(KerasModel(tf.keras.Sequential([tf.keras.Input((4, 4, 3)),
                                                                          tf.keras.layers.Conv2D(2, 3)])))
    config = ex.ExperimentConfig(layer="conv2", n_hoyer=2, invert_8bit=True)
    with pytest.raises(ValueError, match="invert_8bit applies to images"):
        config.validate(model)
    with pytest.raises(ValueError, match="geometry_mask"):
        ex.ExperimentConfig(layer="conv2", geometry_mask="binary").validate(model)


def test_round_trip_recovers_the_target_on_a_smooth_geometry_net():
    """Render Hoyer targets into geometry images and invert them through the runner's batch:
    the realization is stationary (smooth net, converged), so the solve recovers the target."""
    model = geometry_net()
    config = ex.ExperimentConfig(layer="conv2", n_hoyer=3, fft=False, adam_steps=200, lbfgs_steps=0,
                                 prior_weight=1e-2, prior_relative=True, converge=1e-5, max_lbfgs_steps=2000,
                                 aggregation="mean")
    targets, _ = ex.make_targets(config, model.layer("conv2").depth)
    records, arrays = ex.run_batch(model, config, targets, batch_seed=0)
    assert arrays["images"].shape == (3, 6, 6, 5)
    residuals = [r["render_residual"] for r in records]
    assert max(residuals) <= 1e-5, residuals
    alive = [r["angle_alive_anchored"] for r in records]
    assert max(alive) < 1.0, alive
    baseline = [float(angle_deg(r["response"], r["target"])) for r in records]
    assert np.median(baseline) > 5 * max(alive)  # a real inversion, not the response


def test_an_experiment_on_geometry_images_is_described_and_plotted(tmp_path):
    import importlib.util
    import json
    import sys
    from pathlib import Path

    experiments = Path(__file__).resolve().parents[1] / "experiments"
    sys.path.insert(0, str(experiments))
    try:
        import collect_results
        spec = importlib.util.spec_from_file_location("plot_geometry", experiments / "plot_geometry_realizations.py")
        plot_geometry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(plot_geometry)
    finally:
        sys.path.remove(str(experiments))
    model = geometry_net()
    config = ex.ExperimentConfig(layer="conv2", n_hoyer=2, fft=False, adam_steps=20, lbfgs_steps=0, prior_weight=1e-2,
                                 prior_relative=True, batch_size=2, geometry_mask="one")
    ex.run_experiment(model, config, tmp_path / "run", progress=False)
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["input_kind"] == "geometry"
    assert "geometry (pixel, mask one)" in collect_results.describe(settings)
    assert plot_geometry.main([str(tmp_path / "run"), "--out", str(tmp_path / "g.png"), "--n", "2"]) == 0
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_invert_takes_geometry_images_and_checks_their_ranges():
    from lucid_ifv import ifv
    from lucid_ifv import objectives as obj

    model = geometry_net()
    p = geometry_image(6, batch=2, seed=0)
    images = p().numpy()
    result = ifv.invert(model, "conv2", images, prior=obj.params_L2(), aggregation="mean")
    assert result.target.shape == (2, 4)
    bad = images.copy()
    bad[0, 0, 0, 3] = 1.5
    with pytest.raises(ValueError, match="depth and mask in \\[0, 1\\]"):
        ifv.invert(model, "conv2", bad, prior=obj.params_L2(), aggregation="mean")
