"""Lucid's redirected ReLU gradient: parity with Lucid's own override, graph and Keras models,
and the render it exists for (a channel dead at the start rises only with it)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conftest import _import_lucid, small_convnet
from lucid_ifv import objectives as obj, param
from lucid_ifv.model import KerasModel
from lucid_ifv.redirected_relu import REDIRECT_STEPS, redirected_model, redirected_relu_grad
from lucid_ifv.render import render_vis
from lucid_ifv.smooth import smooth_model
from modelzoo.shipped import load_shipped


def _tensors(seed, shape=(5, 4, 3, 6), max_value=None):
    """x and upstream grad with two batch elements whose ReLU gradient is entirely blocked
    (all x < 0; for relu6 one of them all x > 6), so both branches of the rule are exercised."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(np.float32) * 3
    x[1] = -np.abs(x[1]) - 0.1
    x[3] = (np.abs(x[3]) + 6.1) if max_value else -np.abs(x[3]) - 0.1
    grad = rng.normal(size=shape).astype(np.float32)
    return x, grad


def _lucid_grad(op_type, x, grad, global_step):
    """Lucid 0.3.10's override (``redirected_relu_grad`` / ``redirected_relu6_grad``) on x, grad,
    evaluated in a TF1 graph (its module uses TF1's ``tf.where`` and global step)."""
    module = _import_lucid("lucid.optvis.overrides.redirected_relu_grad")
    module.tf = tf.compat.v1
    fn = module.redirected_relu_grad if op_type == "Relu" else module.redirected_relu6_grad
    with tf.Graph().as_default():
        tx = tf.constant(x)
        op = (tf.nn.relu(tx) if op_type == "Relu" else tf.nn.relu6(tx)).op
        step = tf.compat.v1.train.get_or_create_global_step()
        out = fn(op, tf.constant(grad))
        with tf.compat.v1.Session() as sess:
            sess.run(step.assign(global_step))
            return sess.run(out)


@pytest.mark.parametrize("op_type,max_value", [("Relu", None), ("Relu6", 6.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_parity_with_lucid_during_the_redirected_steps(op_type, max_value, seed):
    x, grad = _tensors(seed, max_value=max_value)
    ours = redirected_relu_grad(x, grad, max_value).numpy()
    lucid = _lucid_grad(op_type, x, grad, global_step=REDIRECT_STEPS - 1)
    np.testing.assert_allclose(ours, lucid, rtol=1e-6, atol=0)
    # the rule did something: a blocked element gets a nonzero (redirected) gradient
    assert np.abs(ours[1]).sum() > 0


@pytest.mark.parametrize("op_type", ["Relu", "Relu6"])
def test_after_the_redirected_steps_lucid_uses_the_true_gradient(op_type):
    x, grad = _tensors(2, max_value=6.0 if op_type == "Relu6" else None)
    lucid = _lucid_grad(op_type, x, grad, global_step=REDIRECT_STEPS)
    tx = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tx)
        y = tf.nn.relu(tx) if op_type == "Relu" else tf.nn.relu6(tx)
    native = tape.gradient(y, tx, output_gradients=tf.constant(grad)).numpy()
    np.testing.assert_allclose(native, lucid, rtol=1e-6, atol=0)
    assert not np.allclose(native, redirected_relu_grad(x, grad, 6.0 if op_type == "Relu6" else None))


def test_rank_one_is_refused():
    with pytest.raises(ValueError, match="batch axis"):
        redirected_relu_grad(np.ones(3, np.float32), np.ones(3, np.float32))


def _input_gradient(model, layer, channel, images):
    """The channel's sum and the gradient of the loss (its negative, which descent minimizes)."""
    images = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(images)
        value = tf.reduce_sum(model(images, [layer])[layer][..., channel])
        loss = -value
    return value.numpy(), tape.gradient(loss, images).numpy()


def test_graph_model_same_values_and_redirected_gradient():
    model = load_shipped("inception_small")
    redirected = redirected_model(model)
    assert redirected is not None and redirected_model(model) is redirected  # cached
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    layer = "mixed3b"
    acts = model(images, [layer])[layer].numpy()
    dead = [c for c in range(acts.shape[-1]) if acts[..., c].max() == 0]
    assert dead, "expected a channel of mixed3b that is dead for these images"
    value, plain = _input_gradient(model, layer, dead[0], images)
    value_r, redirected_grad = _input_gradient(redirected, layer, dead[0], images)
    assert value == value_r == 0
    assert np.abs(plain).max() == 0 and np.abs(redirected_grad).max() > 0
    np.testing.assert_allclose(redirected(images, ["mixed4a"])["mixed4a"], model(images, ["mixed4a"])["mixed4a"])


def test_keras_dense_relu_gradient_follows_the_rule():
    """One Dense(relu) layer: d sum(w * relu(x W + b)) / dx = (redirected rule) W^T, exactly."""
    tf.keras.utils.set_random_seed(3)
    inp = tf.keras.Input((2, 2, 3))
    flat = tf.keras.layers.Flatten()(inp)
    out = tf.keras.layers.Dense(5, activation="relu", name="dense", bias_initializer="zeros")(flat)
    keras_model = tf.keras.Model(inp, out)
    model = KerasModel(keras_model)
    redirected = redirected_model(model)
    images = np.random.default_rng(1).uniform(-1, 1, size=(3, 2, 2, 3)).astype(np.float32)
    weights = np.random.default_rng(2).normal(size=5).astype(np.float32)
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(-weights * redirected(x, ["dense"])["dense"])
    got = tape.gradient(value, x).numpy().reshape(3, -1)
    kernel, bias = keras_model.get_layer("dense").get_weights()
    pre = images.reshape(3, -1) @ kernel + bias
    expected = redirected_relu_grad(pre, np.broadcast_to(-weights, pre.shape).copy()).numpy() @ kernel.T
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(redirected(x, ["dense"])["dense"], model(x, ["dense"])["dense"])


def test_keras_relu_layers_and_activations_are_replaced():
    model = KerasModel(small_convnet())
    redirected = redirected_model(model)
    names = {layer.name: type(layer).__name__ for layer in redirected.keras_model.layers}
    assert names["conv2_relu"] == "RedirectedReLU"
    assert type(redirected.keras_model.get_layer("conv1").activation).__name__ == "RedirectedReLUActivation"
    images = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(redirected(images, ["logits"])["logits"], model(images, ["logits"])["logits"], rtol=1e-6)


def test_no_relu_no_variant():
    assert redirected_model(smooth_model(load_shipped("mnist_small"))) is None


def test_a_channel_dead_at_the_start_rises_only_with_the_override():
    """mixed3b channel 3 of inception_small is dead for the seed-0 initial image (its objective
    is exactly 0): without the override it never moves; with it (Lucid's default) it fires."""
    model = load_shipped("inception_small")

    def run(override):
        return render_vis(model, obj.channel("mixed3b", 3), param.image(32, seed=0), transforms=[],
                          thresholds=(64,), seed=0, progress=False, relu_gradient_override=override)

    with_override, without = run(True), run(False)
    assert with_override.objective[0] == without.objective[0] == 0.0
    assert max(without.objective) == 0.0
    assert with_override.objective[-1] > 0.1
