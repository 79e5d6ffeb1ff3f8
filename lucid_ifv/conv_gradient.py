"""The input gradient of a 2-D convolution computed as a forward convolution.

For a stride-1, undilated ``Conv2D`` of ``x [B, H, W, Cin]`` with kernel ``w [kh, kw, Cin,
Cout]`` and padding (top, bottom, left, right), the gradient with respect to ``x`` of
``<g, conv(x, w)>`` is the convolution of ``g [B, Ho, Wo, Cout]`` with the kernel flipped in
space and transposed in channels, ``w'[i, j, o, c] = w[kh-1-i, kw-1-j, c, o]``, padded by
``(kh-1-top, kh-1-bottom, kw-1-left, kw-1-right)``: the same sums as TensorFlow's
``Conv2DBackpropInput`` in another order (float32 rounding apart). On these CPUs the forward
convolution kernel is often the faster of the two, not always: it is slower for a 3-channel
input and in batch-1 render steps (`benchmarks/ab_conv_gradient.py` per shape,
`benchmarks/ab_fv_step.py` per render step; docs/performance.md, "Convolution input
gradients"). So it is used from `MIN_CHANNELS` input channels on, and TensorFlow's own
gradient elsewhere (strides, dilations, NCHW, unknown shapes).

Where it is installed: the Jacobian's vectorized blocks (each op there runs over ``c`` rows
times the batch at once) and the ordinary backward passes of render steps and tiled Jacobian
blocks from `render.STEP_MIN_BATCH` images per pass on (`render.step_gradients`). The batch
is decided there, not here: inside a frozen graph's function it is not static.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.ops import gen_nn_ops, nn_grad

#: Fewest input channels ``Cin`` for which the input gradient is computed as a convolution.
MIN_CHANNELS = 16


def _padding(op, kh: int, kw: int):
    """``(top, bottom, left, right)`` of the forward convolution, or None if unknown."""
    padding = op.get_attr("padding").decode()
    if padding == "VALID":
        return 0, 0, 0, 0
    if padding == "SAME":  # stride 1: total kh - 1, the odd one at the bottom/right
        return (kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2
    if padding == "EXPLICIT":
        pads = op.get_attr("explicit_paddings")
        return pads[2], pads[3], pads[4], pads[5]
    return None


def conv2d_gradient(op, grad):
    """Gradient function for ``Conv2D``: ``[dx, dw]``, ``dx`` by `conv_input_gradient` where it
    applies (module docstring), else and for ``dw`` TensorFlow's own (``dw`` is pruned from
    the graph when nothing uses it, as in a Jacobian or a render step)."""
    dx = conv_input_gradient(op, grad)
    if dx is None:
        return nn_grad._Conv2DGrad(op, grad)
    attrs = {name: op.get_attr(name) for name in ("dilations", "strides", "padding", "explicit_paddings",
                                                  "use_cudnn_on_gpu", "data_format")}
    return [dx, gen_nn_ops.conv2d_backprop_filter(op.inputs[0], tf.shape(op.inputs[1]), grad, **attrs)]


def conv_input_gradient(op, grad):
    """``dx [B, H, W, Cin]`` as a forward convolution of ``grad [B, Ho, Wo, Cout]``, or None
    where it does not apply."""
    w = op.inputs[1]
    kh, kw, cin, _ = w.shape
    if (op.get_attr("data_format").decode() != "NHWC" or list(op.get_attr("strides")) != [1, 1, 1, 1]
            or list(op.get_attr("dilations")) != [1, 1, 1, 1] or None in (kh, kw, cin) or cin < MIN_CHANNELS):
        return None
    pads = _padding(op, kh, kw)
    if pads is None or max(pads[0], pads[1]) > kh - 1 or max(pads[2], pads[3]) > kw - 1:
        return None
    top, bottom, left, right = pads
    flipped = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])  # [kh, kw, Cout, Cin]
    if kh % 2 and kw % 2 and (top, bottom, left, right) == ((kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2):
        return tf.nn.conv2d(grad, flipped, 1, "SAME")
    padding = [[0, 0], [kh - 1 - top, kh - 1 - bottom], [kw - 1 - left, kw - 1 - right], [0, 0]]
    return tf.nn.conv2d(grad, flipped, 1, padding)
