"""The Jacobian's broadcasting activation gradients (`lucid_ifv.ifv.lean_gradients`)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import ops

from lucid_ifv.ifv.lean_gradients import LEAN_GRADIENTS, lean_activation_gradients


def vectorized_jacobian(fn, x, lean):
    """``d fn(x)[i] / dx`` for every output ``i`` by pfor, as `feature_jacobian` runs it."""
    @tf.function(autograph=False)
    def jac(x):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y = tf.reshape(fn(x * tf.linspace(-1.0, 2.0, x.shape[-1]) + 0.25 * tf.reduce_sum(x)), [-1])
        cotangents = tf.eye(int(y.shape[0]))
        if lean:
            with lean_activation_gradients():
                return tf.vectorized_map(lambda u: tape.gradient(y, x, output_gradients=u), cotangents)
        return tf.vectorized_map(lambda u: tape.gradient(y, x, output_gradients=u), cotangents)

    return jac(x).numpy()


@pytest.mark.parametrize("fn", [tf.nn.relu, tf.nn.relu6, lambda x: tf.nn.softplus(10 * x) / 10],
                         ids=["relu", "relu6", "softplus"])
def test_same_jacobian_as_tensorflows_own_gradients(fn):
    x = tf.constant(np.random.default_rng(0).uniform(-4, 8, size=(3, 5)).astype(np.float32))
    lean, own = vectorized_jacobian(fn, x, True), vectorized_jacobian(fn, x, False)
    assert np.abs(own).max() > 0 and np.any(own == 0)  # units on and off: both branches are exercised
    np.testing.assert_allclose(lean, own, rtol=2e-6, atol=0)


def test_the_registry_is_restored_also_after_an_error():
    registry = ops._gradient_registry._registry
    before = {name: registry[name]["type"] for name in LEAN_GRADIENTS}
    with pytest.raises(RuntimeError, match="inside"):
        with lean_activation_gradients():
            assert all(registry[name]["type"] is fn for name, fn in LEAN_GRADIENTS.items())
            raise RuntimeError("inside")
    assert {name: registry[name]["type"] for name in LEAN_GRADIENTS} == before
