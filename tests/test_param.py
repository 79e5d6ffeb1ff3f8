"""Parametrizations: parity with Lucid's fft_image / to_valid_rgb, round trips, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import param


def lucid_graph_eval(build, assign_value):
    """Build Lucid's tensor in a TF1 graph, set its one variable to ``assign_value``, run it."""
    graph = tf.Graph()
    with graph.as_default():
        out = build()
        (var,) = tf.compat.v1.global_variables()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(var.assign(assign_value))
            return sess.run(out)


@pytest.mark.parametrize("shape,decay_power", [((2, 16, 16, 3), 1), ((1, 12, 15, 3), 1), ((2, 9, 14, 3), 1.5)])
def test_fft_image_parity(lucid_param, shape, decay_power):
    ours = param.fft_image(shape, decay_power=decay_power, seed=0)
    spectrum = np.random.default_rng(1).normal(size=ours.variables[0].shape, scale=0.1).astype(np.float32)
    expected = lucid_graph_eval(lambda: lucid_param.spatial.fft_image(list(shape), decay_power=decay_power),
                                np.moveaxis(spectrum, 0, 1))  # Lucid keeps [2, B, ...]
    np.testing.assert_allclose(ours([spectrum]).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decorrelate,sigmoid", [(True, True), (False, True), (True, False), (False, False)])
def test_to_valid_rgb_parity(lucid_param, decorrelate, sigmoid):
    shape = (2, 8, 8, 3)
    ours = param.to_valid_rgb(param.pixel_image(shape), decorrelate=decorrelate, sigmoid=sigmoid)
    raw = np.random.default_rng(2).normal(size=shape, scale=1.5).astype(np.float32)

    def build():
        var = tf.compat.v1.Variable(np.zeros(shape, np.float32))
        return lucid_param.color.to_valid_rgb(var, decorrelate=decorrelate, sigmoid=sigmoid)

    np.testing.assert_allclose(ours([raw]).numpy(), lucid_graph_eval(build, raw), rtol=1e-5, atol=1e-6)


def test_image_matches_lucid_composition(lucid_param):
    ours = param.image(12, batch=2, seed=3)  # fft + decorrelate + sigmoid
    spectrum = ours.variables[0].numpy()

    def build():
        t = lucid_param.spatial.fft_image([2, 12, 12, 3])
        return lucid_param.color.to_valid_rgb(t, decorrelate=True, sigmoid=True)

    np.testing.assert_allclose(ours().numpy(), lucid_graph_eval(build, np.moveaxis(spectrum, 0, 1)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fft", [True, False])
def test_image_maps_run_in_the_parameters_dtype(fft):
    """Fourier and colour maps compute in float64 when given float64 parameters (the float64
    probe, experiments/float64_probe.py, relies on it) and agree with the float32 map."""
    ours = param.image(12, batch=2, fft=fft, decorrelate=True, seed=4)
    raw = np.random.default_rng(5).normal(size=ours.variables[0].shape, scale=0.5)
    wide = ours.forward([tf.constant(raw, tf.float64)])
    narrow = ours.forward([tf.constant(raw, tf.float32)])
    assert wide.dtype == tf.float64 and narrow.dtype == tf.float32
    np.testing.assert_allclose(wide.numpy(), narrow.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.array_equal(wide.numpy(), narrow.numpy().astype(np.float64))  # really computed in float64


def test_lucid_constants():
    np.testing.assert_allclose(np.max(np.linalg.norm(param.COLOR_CORRELATION_SVD_SQRT, axis=0)), 0.4619524, rtol=1e-6)
    freqs = param.rfft2d_freqs(4, 5)
    assert freqs.shape == (4, 4)
    np.testing.assert_allclose(freqs[1, 2], np.hypot(0.25, 0.4))


def test_fft_init_is_lucids_draw():
    np.random.seed(7)
    expected = np.random.normal(size=(2, 3, 3, 8, 5), scale=0.01).astype(np.float32)
    np.random.seed(7)
    ours = param.fft_image((3, 8, 8, 3))
    np.testing.assert_array_equal(ours.variables[0].numpy(), np.moveaxis(expected, 0, 1))


ROUND_TRIP_CASES = {
    "pixel": lambda: param.image(16, batch=2, fft=False, decorrelate=False, seed=0),
    "pixel_decorrelated": lambda: param.image(16, batch=2, fft=False, decorrelate=True, seed=0),
    "fft": lambda: param.image(16, batch=2, decorrelate=False, seed=0),
    "fft_decorrelated": lambda: param.image(16, h=11, batch=2, decorrelate=True, seed=0),
    "fft_odd_width_decay": lambda: param.image(15, batch=1, decay_power=1.5, seed=0),
    "grey": lambda: param.image(10, channels=1, seed=0),
    "lowres": lambda: param.to_valid_rgb(param.lowres_tensor((2, 16, 16, 3), (2, 4, 4, 3), offset=True, seed=0)),
}


@pytest.mark.parametrize("case", sorted(ROUND_TRIP_CASES))
def test_round_trip(case):
    p = ROUND_TRIP_CASES[case]()
    # A contrasted image the parametrization can produce: push the parameters far from 0.
    z = [np.random.default_rng(5).normal(size=v.shape, scale=3.0).astype(np.float32) for v in p.variables]
    images = p(z).numpy()
    recovered = p(p.params_from_image(images)).numpy()
    unsaturated = (images > 1e-3) & (images < 1 - 1e-3)
    assert unsaturated.mean() > 0.5
    assert np.abs(recovered - images)[unsaturated].max() < 1e-4
    assert np.abs(recovered - images).max() < 2e-6 + 1e-3 * (not unsaturated.all())


def test_round_trip_of_arbitrary_image():
    """An image FV did not make (a photo-like gradient) inverts too, for surjective params."""
    h = w = 14
    yy, xx = np.mgrid[:h, :w] / 13.0
    img = np.stack([xx, yy, 0.5 * (xx + yy)], -1)[None] * 0.9 + 0.05
    for p in (param.image(w, seed=0), param.image(w, fft=False, seed=0)):
        p.assign_from_image(img)
        np.testing.assert_allclose(p().numpy(), img, atol=1e-5)


def test_param_errors():
    p = param.image(8, batch=2, seed=0)
    with pytest.raises(ValueError, match=r"images has shape \(2, 8, 9, 3\); expected \[2, 8, 8, 3\]"):
        p.params_from_image(np.zeros((2, 8, 9, 3)))
    bad = np.full((2, 8, 8, 3), 0.5)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        p.params_from_image(bad)
    with pytest.raises(ValueError, match="shape"):
        param.fft_image((8, 8, 3))
    with pytest.raises(ValueError, match="colour decorrelation needs 3 channels"):
        param.to_valid_rgb(param.pixel_image((1, 4, 4, 1)), decorrelate=True)
    with pytest.raises(ValueError, match="parameter arrays for 1 variables"):
        p.assign([])


def test_custom_parametrization(small_model):
    """The example of docs/parametrizations.md: a non-image map works with render and invert."""
    import re
    from pathlib import Path

    from lucid_ifv import ifv, objectives as obj
    from lucid_ifv.render import render_vis

    doc = (Path(__file__).parents[1] / "docs" / "parametrizations.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    namespace = {}
    exec(code, namespace)
    p = namespace["NormalMapParam"]((2, 16, 16, 3), seed=0)
    x = p().numpy()
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1, rtol=1e-5)
    z = [np.random.default_rng(0).normal(size=v.shape).astype(np.float32) for v in p.variables]
    np.testing.assert_allclose(p(p.params_from_image(p(z).numpy())).numpy(), p(z).numpy(), atol=1e-4)
    result = render_vis(small_model, obj.channel("conv2", 1), p, transforms=[], thresholds=(10,), progress=False)
    assert result.objective[-1] > result.objective[0]
    inv = ifv.invert(small_model, "conv2_relu", result)
    assert inv.target.shape == (2, 6)
