"""Activation gradients written so that `tf.vectorized_map` does not copy the activations.

The feature Jacobian runs its k backward passes as one vectorized pass (`jacobian._jacobian_fn`,
``tf.vectorized_map`` = pfor). pfor converts an activation's gradient op, e.g.
``ReluGrad(g, y)`` with one ``g`` per Jacobian row, by *tiling* the forward activation ``y``
to one copy per row (its converter cannot broadcast: ``_convert_grads`` in TensorFlow's
``parallel_for/pfor.py``). Written as ``g * mask(y)``, the mask depends on the forward pass
only: pfor computes it once and broadcasts the product. The values are the same:

  ``Relu``:     ``g * (y > 0)``                  (``ReluGrad``: ``g`` where ``y > 0``, else 0)
  ``Relu6``:    ``g * (0 < y < 6)``              (``Relu6Grad``)
  ``Softplus``: ``g * sigmoid(x)``               (``SoftplusGrad``: ``g / (1 + exp(-x))``)

bit for bit for ReLU and ReLU6 with finite ``g`` (a NaN or infinite ``g`` where the unit is
off gives NaN instead of 0), to float32 rounding for softplus.

Local response normalization (``LRN``, InceptionV1's ``localresponsenorm0/1``) has a
different problem: pfor has no converter for ``LRNGrad`` at all and falls back to a
``while`` loop, one Jacobian row after the other. Its gradient written with matrix products
(`_lrn_grad`; ``y = x N^-beta`` with ``N = bias + alpha (x^2) B`` and ``B`` the channel
window as a band matrix)

  ``LRN``:      ``g N^-beta - 2 alpha beta x ((g x N^(-beta-1)) B)``

vectorizes, and agrees with ``LRNGrad`` to float32 rounding.

`lean_activation_gradients()` installs them in TensorFlow's gradient registry while a Jacobian is *traced* (the registry is
read when a backward graph is built: by ``tape.gradient``, and for a graph function such as a
frozen graph already when its forward pass runs under the tape), and puts the originals back
after. ``MaxPool``'s gradient is `lucid_ifv.max_pool_gradient` (its window masks
depend on the forward pass only, so pfor computes them once instead of once per row), and
``Conv2D``'s input gradient a forward convolution where that is faster
(`lucid_ifv.conv_gradient`, also used by the render step).
Measured warm effects: `benchmarks/ab_jacobian.py lean`, docs/performance.md.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import gen_nn_ops

from lucid_ifv.conv_gradient import conv2d_gradient
from lucid_ifv.gradient_overrides import overridden_gradients
from lucid_ifv.max_pool_gradient import max_pool_gradient


def _relu_grad(op, grad):
    return grad * tf.cast(op.outputs[0] > 0, grad.dtype)


def _relu6_grad(op, grad):
    y = op.outputs[0]
    return grad * tf.cast(tf.logical_and(y > 0, y < 6), grad.dtype)


def _softplus_grad(op, grad):
    return grad * tf.sigmoid(op.inputs[0])


def _lrn_grad(op, grad):
    """``LRN``'s gradient in matrix products (module docstring); TensorFlow's ``LRNGrad``
    when the depth is not static."""
    x = op.inputs[0]
    depth = x.shape[-1]
    if depth is None:
        return gen_nn_ops.lrn_grad(grad, x, op.outputs[0], op.get_attr("depth_radius"), op.get_attr("bias"),
                                   op.get_attr("alpha"), op.get_attr("beta"))
    alpha, beta = op.get_attr("alpha"), op.get_attr("beta")
    channel = np.arange(depth)
    window = np.abs(channel[:, None] - channel[None, :]) <= op.get_attr("depth_radius")
    band = tf.constant(window.astype(x.dtype.as_numpy_dtype))  # [depth, depth]
    norm = op.get_attr("bias") + alpha * tf.tensordot(tf.square(x), band, 1)  # N, [..., depth]
    scale = tf.pow(norm, -beta)
    return grad * scale - (2.0 * alpha * beta) * x * tf.tensordot(grad * (x * scale / norm), band, 1)


LEAN_GRADIENTS = {"Relu": _relu_grad, "Relu6": _relu6_grad, "Softplus": _softplus_grad, "LRN": _lrn_grad,
                  "MaxPool": max_pool_gradient, "Conv2D": conv2d_gradient}


def lean_activation_gradients():
    """Context manager: within the block, gradients built for the op types of
    `LEAN_GRADIENTS` are the vectorizable forms above (module docstring); TensorFlow's own
    ones are restored after, also on errors (`lucid_ifv.gradient_overrides`)."""
    return overridden_gradients(LEAN_GRADIENTS)
