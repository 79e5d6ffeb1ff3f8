"""The Jacobian's broadcasting activation gradients (`lucid_ifv.ifv.lean_gradients`)."""

from __future__ import annotations

import contextlib

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


def _lrn(x):
    return tf.nn.local_response_normalization(x, depth_radius=2, bias=1.0, alpha=0.3, beta=0.75)


def _pool(size, stride, padding):
    return lambda x: tf.nn.max_pool2d(x, size, stride, padding)


@pytest.mark.parametrize("fn", [_lrn, _pool(3, 2, "SAME"), _pool(3, 1, "SAME"), _pool(2, 2, "VALID"),
                                _pool(3, 2, "VALID"), _pool(2, 3, "SAME"), _pool(3, 3, "VALID"),
                                _pool(3, 2, [[0, 0], [1, 0], [0, 1], [0, 0]])],
                         ids=["lrn", "pool3s2same", "pool3s1same", "pool2s2valid", "pool3s2valid",
                              "pool2s3same_stride_past_window", "pool3s3valid_unread_rows", "pool_explicit_fallback"])
def test_lrn_and_max_pool_jacobians_as_tensorflows_own(fn):
    """The lean ``LRN`` and ``MaxPool`` gradients give TensorFlow's Jacobian under pfor, ties
    included (values rounded to integers: many windows hold their maximum twice; the
    gradient goes to the first, row-major, as in ``MaxPoolGrad``), with rows and columns no
    window reads (VALID), strides past the window, and the explicit-padding fallback."""
    rng = np.random.default_rng(1)
    x = tf.constant(np.round(rng.normal(size=(2, 7, 8, 3)) * 1.5).astype(np.float32))

    def vectorized(lean):
        @tf.function(autograph=False)
        def jac(x):
            with contextlib.ExitStack() as stack:
                if lean:
                    stack.enter_context(lean_activation_gradients())
                with tf.GradientTape(persistent=True) as tape:
                    tape.watch(x)
                    y = tf.reshape(fn(x), [-1])
                return tf.vectorized_map(lambda u: tape.gradient(y, x, output_gradients=u), tf.eye(int(y.shape[0])))

        return jac(x).numpy()

    lean, own = vectorized(True), vectorized(False)
    assert np.abs(own).max() > 0
    np.testing.assert_allclose(lean, own, rtol=2e-6, atol=1e-6)


def test_max_pool_gradient_gives_ties_to_the_first_element():
    """A window of equal values: its whole gradient goes to the first element (row-major)."""
    x = tf.constant(np.ones((1, 2, 2, 1), np.float32))
    with lean_activation_gradients():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.max_pool2d(x, 2, 2, "VALID")
        g = tape.gradient(y, x, output_gradients=tf.constant([[[[3.0]]]]))
    np.testing.assert_array_equal(g.numpy()[0, ..., 0], [[3.0, 0.0], [0.0, 0.0]])


def test_the_registry_is_restored_also_after_an_error():
    registry = ops._gradient_registry._registry
    before = {name: registry[name]["type"] for name in LEAN_GRADIENTS}
    with pytest.raises(RuntimeError, match="inside"):
        with lean_activation_gradients():
            assert all(registry[name]["type"] is fn for name, fn in LEAN_GRADIENTS.items())
            raise RuntimeError("inside")
    assert {name: registry[name]["type"] for name in LEAN_GRADIENTS} == before


def _op_types(graph, seen=None):
    """Op types of ``graph`` and of every function it calls."""
    seen = set() if seen is None else seen
    types = []
    for op in graph.get_operations():
        types.append(op.type)
        try:
            name = op.get_attr("f").name
        except (ValueError, TypeError):
            continue
        if name not in seen:
            seen.add(name)
            fn = graph._get_function(name)
            if fn is not None:
                types += _op_types(fn.graph, seen)
    return types


def test_a_frozen_graphs_jacobian_block_uses_the_lean_gradients():
    """A frozen graph is a graph function: its backward function is built when the forward pass
    runs under the tape, so the lean gradients must be in place then too (before, its
    ``ReluGrad`` ops were vectorized by tiling the activations). Same Jacobian rows as eager
    per-feature gradients with TensorFlow's own gradients."""
    from lucid_ifv import objectives
    from lucid_ifv.ifv import jacobian
    from lucid_ifv.param import image_for_model
    from modelzoo.shipped import load_shipped

    model = load_shipped("inception_small")
    param = image_for_model(model, batch=2, seed=0)
    dim = sum(int(np.prod(v.shape[1:])) for v in param.variables)
    jacobian.clear_cache()
    block = jacobian._jacobian_fn(model, "mixed3a", param, None, 3, dim)
    types = _op_types(block.get_concrete_function().graph)
    assert "Relu" in types and "ReluGrad" not in types and types.count("Greater") >= types.count("Relu")
    assert "MaxPool" in types and "MaxPoolGrad" not in types
    z = tf.constant(np.concatenate([v.numpy().reshape(2, -1) for v in param.variables], 1))
    rows = np.array([0, 5, 17], np.int32)
    _, g = block(z, tf.constant(rows))
    for i, row in enumerate(rows):
        with tf.GradientTape() as tape:
            tape.watch(z)
            f = objectives.feature_response(model(param.forward(jacobian._unflatten(z, param)), ["mixed3a"])["mixed3a"],
                                            None)
            picked = tf.reduce_sum(f[:, row])
        np.testing.assert_allclose(g[i].numpy(), tape.gradient(picked, z).numpy(), rtol=1e-4, atol=1e-7)


def test_a_frozen_graph_differentiated_before_still_gets_the_lean_gradients():
    """A frozen graph keeps the backward function it builds first; a gradient taken through
    the model outside the lean context (a render step, a prior gradient) must not fix the
    Jacobian's gradients (`GraphModel` keys its functions by the overrides in effect)."""
    from lucid_ifv.ifv import jacobian
    from lucid_ifv.param import image_for_model
    from modelzoo.shipped import load_shipped

    model = load_shipped("inception_small")
    param = image_for_model(model, batch=2, seed=0)
    images = param()
    with tf.GradientTape() as tape:
        tape.watch(images)
        response = model(images, ["mixed3a"])["mixed3a"]
    assert tape.gradient(response, images) is not None  # builds the plain backward function first
    dim = sum(int(np.prod(v.shape[1:])) for v in param.variables)
    jacobian.clear_cache()
    types = _op_types(jacobian._jacobian_fn(model, "mixed3a", param, None, 3, dim).get_concrete_function().graph)
    assert "Relu" in types and "ReluGrad" not in types and "MaxPoolGrad" not in types

