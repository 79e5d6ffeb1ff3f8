"""render_vis: it optimizes, batches, fine-tunes with L-BFGS, and rejects bad input."""

from __future__ import annotations

import numpy as np
import pytest

from lucid_ifv import objectives as obj
from lucid_ifv import param
from lucid_ifv import render
from lucid_ifv.render import render_vis


def channel_means(model, images, layer="conv2"):
    return model(images, [layer])[layer].numpy().mean(axis=(1, 2))


def test_channel_objective_rises_far_above_start(small_model):
    p = param.image(16, batch=1, seed=0)
    start = channel_means(small_model, p().numpy())[0, 3]
    result = render_vis(small_model, obj.channel("conv2", 3), p, transforms=[], thresholds=(20, 60),
                        seed=0, progress=False)
    end = channel_means(small_model, result.final)[0, 3]
    assert result.steps == [20, 60]
    assert len(result.images) == 2 and len(result.objective) == 60
    # "far above": in units of the channel's spread over uniform-noise images
    noise = np.random.default_rng(0).uniform(size=(50, 16, 16, 3)).astype(np.float32)
    spread = channel_means(small_model, noise)[:, 3]
    assert end > start + 10 * spread.std()
    assert end > spread.max() + 10 * spread.std()
    # objective[k] is evaluated with the parameters after k steps (before step k + 1's update)
    np.testing.assert_allclose(result.objective[0], start, rtol=1e-4)
    np.testing.assert_allclose(result.objective[20], channel_means(small_model, result.images[0])[0, 3], rtol=1e-4)


def test_batch_of_objectives_gives_different_images(small_model):
    objective = obj.Objective.sum([obj.channel("conv2", i, batch=i) for i in range(4)])
    result = render_vis(small_model, objective, param.image(16, batch=4, seed=1), transforms=[],
                        thresholds=(60,), seed=1, progress=False)
    images = result.final
    means = channel_means(small_model, images)
    # each image excites its own channel more than the other images do
    assert all(means[i, i] == means[:, i].max() for i in range(4))
    distances = [np.abs(images[i] - images[j]).mean() for i in range(4) for j in range(i + 1, 4)]
    assert min(distances) > 0.02


def test_lbfgs_improves_on_adam_and_reduces_gradient(small_model):
    t = np.abs(np.random.default_rng(0).normal(size=(2, 6)))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    objective = obj.feature_objective("conv2_relu", t, model=small_model) - 1e-3 * obj.params_L2()
    result = render_vis(small_model, objective, param.image(16, batch=2, fft=False, seed=2), transforms=[],
                        thresholds=(40,), lbfgs_steps=30, progress=False)
    assert result.steps == [40, "lbfgs"]
    assert result.objective[-1] > result.objective[39]
    assert result.lbfgs["nit"] > 5
    assert np.isfinite(result.lbfgs["grad_norm"])
    assert result.residual.shape == (2,) and np.isfinite(result.residual).all() and result.converged is None


def test_interrupted_lbfgs_keeps_its_last_iterate(small_model, monkeypatch):
    seen = {}

    def minimize_then_interrupt(fun, x0, jac, method, callback, options):
        _, grad = fun(x0)
        seen["adam"], seen["x"] = x0, x0 - grad / np.linalg.norm(grad)
        callback(seen["x"])  # one iteration, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(render.scipy.optimize, "minimize", minimize_then_interrupt)
    p = param.image(16, batch=1, fft=False, seed=3)
    with pytest.warns(UserWarning, match="interrupted after 4 evaluations"):
        result = render_vis(small_model, "conv2:1", p, transforms=[], thresholds=(3,), lbfgs_steps=5, progress=False)
    assert result.interrupted and result.steps == [3, "interrupted@4"] and len(result.objective) == 4
    assert result.lbfgs is None and result.residual.shape == (1,) and np.isfinite(result.residual).all()
    # the variables hold the L-BFGS iterate the callback saw, not the Adam result
    np.testing.assert_allclose(result.params[0].ravel(), seen["x"], rtol=1e-6, atol=1e-7)
    assert np.abs(seen["x"] - seen["adam"]).max() > 1e-2


def test_standard_transforms_run_and_are_seeded(small_model):
    run = lambda seed: render_vis(small_model, "conv2:1", param.image(16, seed=0), thresholds=(5,),
                                  seed=seed, progress=False).final
    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0


def test_default_param_fits_the_model(small_model):
    result = render_vis(small_model, "conv2:0", transforms=[], thresholds=(3,), seed=0, progress=False)
    assert result.final.shape == (1, 16, 16, 3)


def test_lucid_objective_renders(small_model, lucid_objectives):
    result = render_vis(small_model, lucid_objectives.channel("conv2", 2), param.image(16, seed=0),
                        transforms=[], thresholds=(20,), progress=False)
    assert result.objective[-1] > result.objective[0]


def test_bad_inputs(small_model):
    with pytest.raises(ValueError, match="strictly increasing"):
        render_vis(small_model, "conv2:0", thresholds=(10, 5), progress=False)
    with pytest.raises(KeyError, match="unknown layer 'conv9'"):
        render_vis(small_model, "conv9:0", transforms=[], thresholds=(1,), progress=False)
    with pytest.raises(ValueError, match=r"takes inputs of 16x16 only \(its input size is fixed\), got 8x8"):
        render_vis(small_model, "conv2:0", param.image(8), thresholds=(1,), progress=False)
    with pytest.raises(ValueError, match=r"images of 1 channels, model .* takes 3"):
        render_vis(small_model, "conv2:0", param.image(16, channels=1), thresholds=(1,), progress=False)
    with pytest.raises(ValueError, match="transforms=\\[\\]"):
        render_vis(small_model, "conv2:0", param.image(16), thresholds=(1,), lbfgs_steps=3, progress=False)
    with pytest.raises(ValueError, match="transforms=\\[\\]"):
        render_vis(small_model, "conv2:0", param.image(16), thresholds=(1,), converge=1e-3, progress=False)
    with pytest.raises(ValueError, match="2 targets for a batch of 1"):
        render_vis(small_model, obj.feature_objective("conv2", np.ones((2, 6))), param.image(16),
                   transforms=[], thresholds=(1,), progress=False)
    images = np.full((1, 16, 16, 3), 0.5)
    images[0, 1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        small_model(images, ["conv2"])
    with pytest.raises(ValueError, match=r"images of shape \(1, 16, 15, 3\)"):
        small_model(np.zeros((1, 16, 15, 3)), ["conv2"])


def test_frozen_graphs_render_at_any_size_and_dense_heads_say_why():
    """Lucid renders 128 px on the 224 px InceptionV1: a graph takes any size; a layer behind a
    flatten + dense head names the reason before any step."""
    from modelzoo.shipped import load_shipped

    inception = load_shipped("inception_small")  # native 32x32
    result = render_vis(inception, "mixed3b:5", param.image(48, h=40, batch=2, seed=0), thresholds=(3,), seed=0,
                        progress=False)
    assert result[-1].shape == (2, 40, 48, 3) and len(result) == 1
    lucid_like = render_vis(inception, "mixed3b:5", param.image(48, seed=0), seed=0, thresholds=(2,), progress=False,
                            resize=False)  # the model sees the jittered/scaled size, as in Lucid
    assert lucid_like[-1].shape == (1, 48, 48, 3)
    mnist = load_shipped("mnist_small")  # conv -> pool -> flatten -> dense
    render_vis(mnist, "conv2:0", param.image(40, channels=1, seed=0), transforms=[], thresholds=(1,), progress=False)
    with pytest.raises(ValueError, match=r"layer\(s\) 'fc1' of model 'mnist_small' cannot be computed from 40x40 inputs.*reshape"):
        render_vis(mnist, "fc1:0", param.image(40, channels=1, seed=0), transforms=[], thresholds=(1,), progress=False)


def test_result_is_a_list_of_images_like_lucids(small_model):
    result = render_vis(small_model, "conv2:0", param.image(16, seed=0), thresholds=(0, 2, 4), seed=0, progress=False)
    assert len(result) == 3 and [r.shape for r in result] == [(1, 16, 16, 3)] * 3
    np.testing.assert_array_equal(result[-1], result.final)
    assert not np.array_equal(result[0], result[-1])


def test_lucid_keywords(small_model, capsys, tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.setenv("LUCID_IFV_SHOW_DIR", str(tmp_path))
    a = render_vis(small_model, "conv2:0", param.image(16, seed=0), thresholds=(3,), use_fixed_seed=True, progress=False)
    b = render_vis(small_model, "conv2:0", param.image(16, seed=0), thresholds=(3,), seed=0, progress=False)
    np.testing.assert_array_equal(a[-1], b[-1])  # use_fixed_seed means seed 0
    render_vis(small_model, "conv2:0", param.image(16, seed=0), thresholds=(1, 2), verbose=True, progress=False,
               print_objectives=[obj.channel("conv2", 1)])
    out = capsys.readouterr().out
    assert out.count("Channel") == 2 and len(list(tmp_path.glob("*.png"))) == 2
    tf1 = tf.compat.v1.train.AdamOptimizer(0.05)
    c = render_vis(small_model, "conv2:0", param.image(16, seed=0), tf1, thresholds=(3,), seed=0, progress=False)
    np.testing.assert_allclose(c[-1], b[-1], rtol=1e-5, atol=1e-6)  # TF1 Adam(0.05) -> Keras Adam, same steps
    with pytest.raises(TypeError, match="ProximalAdagradOptimizer has no Keras equivalent"):
        render_vis(small_model, "conv2:0", param.image(16), tf.compat.v1.train.ProximalAdagradOptimizer(0.1),
                   thresholds=(1,), progress=False)


def scripted_steps(monkeypatch, values_or_interrupt):
    """Make `VisSetup.step` return the given values in order (a KeyboardInterrupt entry raises)."""
    import tensorflow as tf

    script = iter(values_or_interrupt)

    def step(self):
        value = next(script)
        if value is KeyboardInterrupt:
            raise KeyboardInterrupt
        return tf.constant(value, tf.float32)

    monkeypatch.setattr(render.VisSetup, "step", step)


def test_a_nan_between_value_reads_is_reported_at_its_own_step(small_model, monkeypatch):
    assert render.READ_EVERY > 3  # step 13 is not a read point
    scripted_steps(monkeypatch, [1.0] * 12 + [np.nan] + [1.0] * 20)
    with pytest.raises(FloatingPointError, match="became nan at Adam step 13$"):
        render_vis(small_model, "conv2:1", param.image(16, seed=0), transforms=[], thresholds=(30,), progress=False)


def test_interrupted_adam_keeps_every_value_computed(small_model, monkeypatch):
    scripted_steps(monkeypatch, [float(i) for i in range(7)] + [KeyboardInterrupt])
    with pytest.warns(UserWarning, match="interrupted after 7 evaluations"):
        result = render_vis(small_model, "conv2:1", param.image(16, seed=0), transforms=[], thresholds=(30,),
                            progress=False)
    assert result.objective == [float(i) for i in range(7)] and result.steps == ["interrupted@7"]
