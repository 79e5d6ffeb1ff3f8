"""The convolution input gradient as a forward convolution (`lucid_ifv.conv_gradient`) and
the registry swap it is installed with (`lucid_ifv.gradient_overrides`)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import ops

from lucid_ifv import conv_gradient
from lucid_ifv.gradient_overrides import active_key, overridden_gradients


def _grads(x, w, padding, override):
    """``(dx, dw, number of Conv2DBackpropInput ops in the traced gradient)``."""
    @tf.function(autograph=False)
    def grads(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = tf.nn.conv2d(x, w, 1, padding)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, w])

    if override:
        with overridden_gradients({"Conv2D": conv_gradient.conv2d_gradient}):
            concrete = grads.get_concrete_function(x, w)
    else:
        concrete = grads.get_concrete_function(x, w)
    dx, dw = concrete(x, w)
    kinds = [op.type for op in concrete.graph.get_operations()]
    return dx.numpy(), dw.numpy(), kinds.count("Conv2DBackpropInput")


@pytest.mark.parametrize("kernel, channels, padding, replaced", [
    (3, 16, "SAME", True), (3, 20, "VALID", True), (2, 16, "SAME", True), (4, 24, "VALID", True),
    (3, 16, [[0, 0], [2, 0], [1, 2], [0, 0]], True), (5, 16, [[0, 0], [5, 0], [0, 0], [0, 0]], False),
    (3, 3, "SAME", False)],
    ids=["3x3same", "3x3valid", "2x2same_even", "4x4valid", "explicit", "explicit_past_kernel", "rgb_input_kept"])
def test_input_gradient_equals_tensorflows(kernel, channels, padding, replaced):
    rng = np.random.default_rng(kernel * 100 + channels)
    x = tf.constant(rng.normal(size=(2, 9, 8, channels)).astype(np.float32))
    w = tf.constant(rng.normal(size=(kernel, kernel, channels, 5)).astype(np.float32))
    dx, dw, n_own = _grads(x, w, padding, False)
    dx2, dw2, n_new = _grads(x, w, padding, True)
    assert n_own == 1 and n_new == (0 if replaced else 1)  # the op is replaced exactly where it applies
    np.testing.assert_allclose(dx2, dx, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(dw2, dw)  # the filter gradient is TensorFlow's own


def test_overrides_nest_name_themselves_and_restore():
    registry = ops._gradient_registry._registry
    own = registry["Conv2D"]["type"]
    fake = lambda op, grad: None  # noqa: E731
    assert active_key() == ()
    with overridden_gradients({"Conv2D": conv_gradient.conv2d_gradient}):
        with pytest.raises(RuntimeError, match="inside"):
            with overridden_gradients({"Conv2D": fake, "Relu": fake}):
                assert registry["Conv2D"]["type"] is fake
                assert [name for name, _ in active_key()] == ["Conv2D", "Relu"]
                raise RuntimeError("inside")
        assert registry["Conv2D"]["type"] is conv_gradient.conv2d_gradient
        assert active_key() == (("Conv2D", conv_gradient.conv2d_gradient),)
    assert registry["Conv2D"]["type"] is own and active_key() == ()


def test_render_steps_of_a_frozen_graph_use_it_from_the_batch_threshold_on():
    """`render.STEP_GRADIENTS` reaches a frozen graph's backward function (whose batch is not
    static): its step at batch `render.STEP_MIN_BATCH` holds fewer ``Conv2DBackpropInput`` ops
    than at batch 1 (the convolutions with fewer than `MIN_CHANNELS` inputs keep theirs)."""
    from test_lean_gradients import _op_types

    from lucid_ifv import objectives, param
    from lucid_ifv.render import STEP_MIN_BATCH, VisSetup
    from modelzoo.shipped import load_shipped

    model = load_shipped("inception_small")
    counts = []
    for batch in (1, STEP_MIN_BATCH):
        vis = VisSetup(model, objectives.channel("mixed3a", 0), param.image(model.image_shape[0], batch=batch),
                       relu_gradient_override=False)
        vis.step()
        counts.append(_op_types(vis._concrete_steps[False].graph).count("Conv2DBackpropInput"))
    assert counts[0] > 2 * counts[1] > 0
