"""Lucid code with one import swap (``lucid.`` -> ``lucid_ifv.compat.``): re-creations of the
optvis usage of Lucid's notebooks (tutorial, feature-visualization/*, differentiable-
parameterizations/*, building-blocks), written against Lucid's API, on the shipped models.
Every render must run and its objective rise."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import tensorflow as tf

import lucid_ifv.compat.modelzoo.vision_models as models
import lucid_ifv.compat.optvis.objectives as objectives
import lucid_ifv.compat.optvis.param as param
import lucid_ifv.compat.optvis.render as render
import lucid_ifv.compat.optvis.transform as transform
from lucid_ifv.compat.misc.io import load, save, show
from lucid_ifv.compat.optvis.param import color, lowres, spatial

STEPS = 16


@pytest.fixture(scope="module")
def model():
    return models.inception_small()  # a frozen graph: renders at any size, as Lucid's InceptionV1


@pytest.fixture(autouse=True)
def show_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LUCID_IFV_SHOW_DIR", str(tmp_path / "shown"))
    return tmp_path / "shown"


def rises(result, start=2, end=4):
    """The objective went up: mean of the last `end` values above the mean of the first `start`
    (random transforms make single values noisy)."""
    values = np.asarray(result.objective)
    return values[-end:].mean() > values[:start].mean()


def test_the_one_import_line_is_the_core_modules():
    import lucid_ifv.objectives
    import lucid_ifv.param.spatial
    import lucid_ifv.transform

    assert objectives is lucid_ifv.objectives and transform is lucid_ifv.transform
    assert spatial is lucid_ifv.param.spatial and sys.modules["lucid_ifv.compat.optvis.param.spatial"] is spatial
    import lucid_ifv.compat.optvis.param.lowres as lowres_module  # noqa: F401 (module path import works)


def test_tutorial(model):
    # a neuron by name, Lucid's defaults: param.image(128), standard transforms, 512 -> fewer steps
    result = render.render_vis(model, "mixed3b_pre_relu:3", thresholds=(STEPS,), verbose=False, use_fixed_seed=True)
    assert len(result) == 1 and result[-1].shape == (1, 128, 128, 3) and rises(result)
    small = lambda: param.image(48)  # noqa: E731 (the rest at 48 px to keep the suite short)
    channel = lambda n: objectives.channel("mixed3b_pre_relu", n)  # noqa: E731
    assert rises(render.render_vis(model, channel(3) + channel(7), small, thresholds=(STEPS,), verbose=False, use_fixed_seed=True))
    for transforms in ([], [transform.jitter(2)],
                       [transform.pad(16), transform.jitter(8),
                        transform.random_scale([n / 100.0 for n in range(80, 120)]),
                        transform.random_rotate(list(range(-10, 10)) + list(range(-5, 5)) + 10 * list(range(-2, 2))),
                        transform.jitter(2)]):
        result = render.render_vis(model, "mixed3b_pre_relu:3", small, transforms=transforms, thresholds=(STEPS,),
                                   verbose=False, use_fixed_seed=True)
        assert rises(result), transforms
    for fft, decorrelate in [(False, False), (True, True)]:
        param_f = lambda: param.image(64, fft=fft, decorrelate=decorrelate)  # noqa: E731
        assert rises(render.render_vis(model, "mixed3b_pre_relu:2", param_f, thresholds=(STEPS,), verbose=False, use_fixed_seed=True))


def test_verbose_shows_each_threshold(model, show_dir, capsys):
    render.render_vis(model, "mixed3b:3", lambda: param.image(32), thresholds=(1, 3),
                      print_objectives=[objectives.channel("mixed3a", 0)])
    out = capsys.readouterr().out
    assert len(list(show_dir.glob("*.png"))) == 2 and "Channel" in out


def test_thresholds_count_as_lucids(model):
    """Lucid snapshots after step i + 1 for threshold i; thresholds=(0,) runs one step."""
    result = render.render_vis(model, "mixed3b:3", lambda: param.image(32, seed=0), thresholds=(0, 2),
                               use_fixed_seed=True, verbose=False)
    assert len(result.objective) == 3 and result.steps == [1, 3]


def test_aligned_interpolation(model):
    neuron1, neuron2 = ("mixed3b_pre_relu", 3), ("mixed3b_pre_relu", 7)
    param_f = lambda: param.image(48, batch=2)  # noqa: E731
    objective = objectives.channel(*neuron1, batch=0) + objectives.channel(*neuron2, batch=1)
    assert rises(render.render_vis(model, objective, param_f, thresholds=(STEPS,), verbose=False, use_fixed_seed=True))
    objective = objectives.Objective.sum([w * objectives.channel(*neuron1, batch=i)
                                          for i, w in enumerate([1.0, 0.75, 0.5, 0.25, 0.0])])
    assert rises(render.render_vis(model, objective, lambda: param.image(48, batch=5), thresholds=(STEPS,),
                                   verbose=False, use_fixed_seed=True))
    images = render.render_vis(model, sum([objectives.channel(*neuron2, batch=i) for i in range(5)]),
                               param_f=lambda: param.image(48, batch=5, sd=0.5), thresholds=[STEPS],
                               verbose=False, use_fixed_seed=True)[-1]
    assert images.shape == (5, 48, 48, 3)

    def interpolate_f():
        unique = spatial.fft_image((6, 48, 48, 3))
        shared = [lowres.lowres_tensor((6, 48, 48, 3), (1, 48 // 2, 48 // 2, 3)),
                  lowres.lowres_tensor((6, 48, 48, 3), (2, 48 // 8, 48 // 8, 3)),
                  lowres.lowres_tensor((6, 48, 48, 3), (1, 48 // 16, 48 // 16, 3))]
        return color.to_valid_rgb(unique + sum(shared), decorrelate=True)

    interpolation = objectives.channel_interpolate(*neuron1, *neuron2)
    alignment = objectives.alignment("mixed3a", decay_ratio=5) + objectives.alignment("mixed3b", decay_ratio=5)
    result = render.render_vis(model, interpolation + 1e-1 * alignment, param_f=interpolate_f,
                               thresholds=(STEPS // 2, STEPS), verbose=False, use_fixed_seed=True)
    assert len(result) == 2 and result[-1].shape == (6, 48, 48, 3) and rises(result)
    assert result.residual is None  # shared across the batch: no per-sample stationarity


def test_neuron_diversity_and_negative_neurons(model):
    objective = objectives.channel("mixed3b", 3) - 1e2 * objectives.diversity("mixed3b")
    result = render.render_vis(model, objective, lambda: param.image(48, batch=4), thresholds=(STEPS,), verbose=False, use_fixed_seed=True)
    assert rises(result)
    assert rises(render.render_vis(model, -objectives.channel("mixed3b_pre_relu", 3), lambda: param.image(48),
                                   thresholds=(STEPS,), verbose=False, use_fixed_seed=True))
    assert rises(render.render_vis(model, objectives.neuron("mixed3b_pre_relu", 3), lambda: param.image(48),
                                   transforms=[], thresholds=(STEPS,), verbose=False, use_fixed_seed=True))  # centre neuron: no jitter


def test_regularization(model):
    base = objectives.channel("mixed3b_pre_relu", 3)
    for extra in (-0.05 * objectives.L1(constant=0.5), -0.25 * objectives.total_variation(),
                  objectives.blur_input_each_step()):
        result = render.render_vis(model, base + extra, lambda: param.image(48), thresholds=(STEPS,), verbose=False, use_fixed_seed=True)
        assert np.isfinite(result.objective).all() and rises(result), extra


def test_other_parametrizations(model):
    for param_f in (lambda: param.laplacian_pyramid((1, 48, 48, 3)),
                    lambda: color.to_valid_rgb(param.naive((1, 48, 48, 3))),
                    lambda: param.grayscale_image_rgb(48)):
        result = render.render_vis(model, "mixed3b_pre_relu:3", param_f, transforms=[], thresholds=(STEPS,),
                                   verbose=False, use_fixed_seed=True)
        assert rises(result), param_f
    # xy2rgb: a CPPN, with the notebook's learning rate
    result = render.render_vis(model, "mixed3b_pre_relu:3", lambda: param.cppn(48),
                               tf.compat.v1.train.AdamOptimizer(0.005), thresholds=(STEPS,), verbose=False, use_fixed_seed=True)
    assert rises(result)


def test_transparency_with_alpha(model):
    objective = objectives.channel("mixed3b_pre_relu", 3) + objectives.blur_alpha_each_step()
    result = render.render_vis(model, objective, lambda: param.image(48, alpha=True),
                               transforms=[transform.collapse_alpha_random(), transform.jitter(2)],
                               thresholds=(STEPS,), verbose=False, use_fixed_seed=True)
    assert result[-1].shape == (1, 48, 48, 4) and rises(result)


def test_tf1_optimizer_and_fixed_seed(model):
    optimizer = tf.compat.v1.train.AdamOptimizer(0.05)
    a = render.render_vis(model, "mixed3b:3", lambda: param.image(32, seed=1), optimizer, transforms=[],
                          thresholds=(4,), use_fixed_seed=True, verbose=False)
    b = render.render_vis(model, "mixed3b:3", lambda: param.image(32, seed=1), transforms=[], thresholds=(4,),
                          use_fixed_seed=True, verbose=False)
    np.testing.assert_allclose(a[-1], b[-1], rtol=1e-5, atol=1e-6)


def test_make_vis_T_and_import_model(model):
    T = render.make_vis_T(model, objectives.channel("mixed3b_pre_relu", 3), lambda: param.image(32, seed=0),
                          transforms=[])
    first = float(T("loss"))
    values = [float(T("vis_op")()) for _ in range(10)]
    assert values[0] == pytest.approx(first) and float(T("loss")) > first
    assert T("input").shape == (1, 32, 32, 3) and T("mixed3a").shape[-1] == 128
    images = tf.constant(np.random.default_rng(0).uniform(size=(2, 32, 32, 3)), tf.float32)
    T = render.import_model(model, images)
    assert T("mixed3b").shape == (2, 16, 16, 192) and T("input") is images


def test_model_api(model, capsys):
    model.load_graphdef()
    assert "mixed3b" in model.show_graph() and "mixed3b" in capsys.readouterr().out
    layer = model.layers[4]
    assert (layer.name, layer.depth, layer.tags) == ("mixed3b", 192, ("conv",))
    with pytest.raises(ValueError, match="no activations ship"):
        layer.activations  # noqa: B018
    with pytest.raises(AttributeError, match="has no model 'NoSuchModel'"):
        models.NoSuchModel  # noqa: B018


def test_fixed_size_models_say_so():
    photos = models.photos_cnn()  # a Keras model with a fixed 32x32 input
    result = render.render_vis(photos, "conv2d_3:0", thresholds=(2,), verbose=False, use_fixed_seed=True)  # default: its own size
    assert result[-1].shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="takes inputs of 32x32 only"):
        render.render_vis(photos, "conv2d_3:0", lambda: param.image(64), thresholds=(1,), verbose=False, use_fixed_seed=True)


def test_io_round_trip(tmp_path):
    image = np.random.default_rng(0).uniform(size=(16, 16, 3)).astype(np.float32)
    save(image, str(tmp_path / "x.png"))
    assert np.abs(load(str(tmp_path / "x.png")) - image).max() <= 0.5 / 255 + 1e-6
    save({"a": 1}, str(tmp_path / "x.json"))
    assert load(str(tmp_path / "x.json")) == {"a": 1}
    assert show(image) is not None


def test_inception_v1_from_a_local_graph(tmp_path_factory):
    """`model.model_path = LOCAL_PB; model.load_graphdef()`, then the tutorial's first render at
    Lucid's 128 px on the 224 px graph (a full-width InceptionV1-structured graph, random weights)."""
    import fake_inception
    from modelzoo import lucid_format

    path = tmp_path_factory.mktemp("inception") / "inception5h.pb"
    lucid_format.write_graph_def(fake_inception.build_graph_def(divisor=1, size=224), path)
    model = models.InceptionV1()
    model.model_path = str(path)
    model.load_graphdef()
    assert model.is_loaded and model.layer("mixed4a").depth == 508
    result = render.render_vis(model, "mixed4a_pre_relu:476", thresholds=(6,), verbose=False, use_fixed_seed=True)
    assert result[-1].shape == (1, 128, 128, 3) and np.isfinite(result.objective).all()


def test_small_lucid_names(model, lucid_objectives):
    assert objectives.direction_cossim is objectives.direction
    images = np.random.default_rng(0).uniform(size=(5, 32, 32, 3)).astype(np.float32)
    acts = model.get_activations("mixed3a", images, batch_size=2)
    np.testing.assert_allclose(acts, model(images, ["mixed3a"])["mixed3a"], rtol=1e-5, atol=1e-6)
    assert model.get_layer("mixed3b").depth == 192

    @objectives.handle_batch(1)
    def second(T):
        return T("x")

    @lucid_objectives.handle_batch(1)
    def second_lucid(T):
        return T("x")

    x = tf.constant(np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(second(lambda name: x), second_lucid(lambda name: x))


@pytest.mark.parametrize("name,layer", [("mnist_small", "conv2"), ("mnist_small_seed1", "fc1"),
                                        ("inception_small", "mixed3b"), ("inception_small", "conv2d2")])
def test_lucid_pre_relu_names_on_shipped_graphs(name, layer):
    """Lucid's ``<layer>_pre_relu``: the ReLU's input, on every shipped frozen graph."""
    shipped = getattr(models, name)()
    images = np.random.default_rng(0).uniform(size=(2, *shipped.image_shape)).astype(np.float32)
    acts = shipped(images, [layer, f"{layer}_pre_relu"])
    pre = acts[f"{layer}_pre_relu"].numpy()
    assert pre.min() < 0
    np.testing.assert_allclose(np.maximum(pre, 0), acts[layer], rtol=1e-6, atol=1e-6)


def test_any_number_channels_param_f_built_with_tensorflow_functions(model):
    """feature-visualization/any_number_channels: the param_f applies tf.reduce_mean, tf.stack and
    tf.tile to params (traced, so the variables stay trainable: lucid_ifv.param.traced)."""
    def arbitrary_channels_to_rgb(*args, channels=None, **kwargs):
        channels = channels or 10
        full_im = param.image(*args, channels=channels, **kwargs)
        r = tf.reduce_mean(full_im[..., :channels // 3] ** 2, axis=-1)
        g = tf.reduce_mean(full_im[..., channels // 3:2 * channels // 3] ** 2, axis=-1)
        b = tf.reduce_mean(full_im[..., 2 * channels // 3:] ** 2, axis=-1)
        return tf.stack([r, g, b], axis=-1)

    def grayscale_image_to_rgb(*args, **kwargs):
        return tf.tile(param.image(*args, channels=1, **kwargs), (1, 1, 1, 3))

    for param_f in (lambda: arbitrary_channels_to_rgb(48, channels=10), lambda: grayscale_image_to_rgb(48)):
        result = render.render_vis(model, "mixed3b_pre_relu:3", param_f, transforms=[], thresholds=(STEPS,),
                                   verbose=False, use_fixed_seed=True)
        assert type(result.param).__name__ == "TracedParam" and result[-1].shape == (1, 48, 48, 3)
        assert rises(result) and result.residual is None
    from lucid_ifv.render import render_vis as core_render

    with pytest.raises(ValueError, match="evaluates only its own variables"):
        core_render(model, "mixed3b:3", lambda: grayscale_image_to_rgb(32), transforms=[], thresholds=(1,),
                    lbfgs_steps=2, progress=False)


def test_misc_modules(tmp_path, monkeypatch, show_dir):
    from lucid_ifv.compat.misc.channel_reducer import ChannelReducer
    from lucid_ifv.compat.misc.gradient_override import gradient_override_map
    from lucid_ifv.compat.misc.io.reading import read
    from lucid_ifv.compat.misc.io.showing import _display_html, _image_url, images
    from lucid_ifv.compat.misc.tfutil import create_session
    from lucid_ifv.compat.modelzoo.vision_base import Layer, Model  # noqa: F401

    assert _image_url(np.zeros((4, 4, 3))).startswith("data:image/PNG;base64,")
    assert _display_html("<b>x</b>").read_text() == "<b>x</b>"
    images([np.zeros((4, 4, 3)), np.ones((4, 4, 3))], labels=["a", "b"])
    (tmp_path / "f.txt").write_text("hello")
    assert read(str(tmp_path / "f.txt"), encoding="utf-8") == "hello"
    with pytest.raises(NotImplementedError, match="TF1 sessions"):
        create_session()
    acts = np.random.default_rng(0).uniform(size=(2, 4, 4, 8))
    reducer = ChannelReducer(3, "NMF", max_iter=500, init="nndsvda")
    reduced = reducer.fit_transform(acts)
    assert reduced.shape == (2, 4, 4, 3) and reducer.components.shape == (3, 8)
    with pytest.raises(ValueError, match="unknown dimensionality reduction method 'NOPE'"):
        ChannelReducer(3, "NOPE")

    def seven(op, grad):
        return tf.ones_like(grad) * 7.0

    @tf.function
    def gradient(x):
        with gradient_override_map({"Relu": seven}):
            y = tf.nn.relu(x)
        return tf.gradients(y, x)[0]

    np.testing.assert_array_equal(gradient(tf.constant([-1.0, 2.0])), [7.0, 7.0])
