"""A max-pool gradient that `tf.vectorized_map` runs without recomputing the pooling per row.

TensorFlow's ``MaxPoolGrad(x, y, g)`` finds each window's maximum again for every cotangent
``g``, and pfor converts it by tiling the forward tensors ``x`` and ``y`` to one copy per
Jacobian row. On InceptionV1 at 224 px it was 30 % of a vectorized Jacobian block
(docs/performance.md). Here the gradient is split in two:

- **masks** (forward values only, so pfor computes them once for all rows): for each of the
  ``kh kw`` window offsets, a 0/1 tensor shaped like ``y`` that marks the window element
  holding the maximum. Ties go to the first offset in row-major order, as in TensorFlow's
  kernel; padding never wins;
- **placement** (per row): ``g`` times each mask, put back at its offset (``tf.pad`` on the
  output grid, then the stride's phases interleaved by ``tf.nn.depth_to_space``).

The result equals ``MaxPoolGrad`` up to the order of float additions where windows overlap
(``kh > stride``), bit for bit where they do not. NHWC with SAME or VALID padding and static
spatial shapes; anything else falls back to TensorFlow's own gradient.

Used by the Jacobian's vectorized blocks only: in an ordinary backward pass (a render step)
the masks are computed once per pass, and it did not make render steps faster
(docs/performance.md).
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.ops import gen_nn_ops


def _out_size(size: int, window: int, stride: int, padding: str) -> tuple[int, int]:
    """``(output size, padding before)`` of one spatial axis, as TensorFlow pools it."""
    if padding == "SAME":
        out = -(-size // stride)
        return out, max((out - 1) * stride + window - size, 0) // 2
    return (size - window) // stride + 1, 0


def _phases(t, stride: int) -> list:
    """``[B, H s, W s, C]`` -> its ``s x s`` stride phases ``[B, H, W, C]``, row-major (inverse
    of `_interleave`)."""
    if stride == 1:
        return [t]
    return tf.split(tf.nn.space_to_depth(t, stride), stride * stride, axis=-1)


def _interleave(phases: list, stride: int):
    """``s x s`` phases ``[B, H, W, C]`` (row-major) -> ``[B, H s, W s, C]``."""
    if stride == 1:
        return phases[0]
    return tf.nn.depth_to_space(tf.concat(phases, -1), stride)


def _own(op, grad):
    """TensorFlow's ``MaxPoolGrad`` for ``op``."""
    return gen_nn_ops.max_pool_grad(op.inputs[0], op.outputs[0], grad, op.get_attr("ksize"), op.get_attr("strides"),
                                    padding=op.get_attr("padding"), explicit_paddings=op.get_attr("explicit_paddings"),
                                    data_format=op.get_attr("data_format"))


def max_pool_gradient(op, grad):
    """Gradient function for ``MaxPool`` (module docstring): ``dx`` of ``x [B, H, W, C]`` from
    ``grad [B, Ho, Wo, C]``."""
    x, y = op.inputs[0], op.outputs[0]
    padding = op.get_attr("padding").decode()
    _, kh, kw, _ = op.get_attr("ksize")
    _, sh, sw, _ = op.get_attr("strides")
    height, width = x.shape[1], x.shape[2]
    if (op.get_attr("data_format").decode() != "NHWC" or padding not in ("SAME", "VALID") or sh != sw
            or height is None or width is None):
        return _own(op, grad)
    stride = sh
    out_h, top = _out_size(height, kh, stride, padding)
    out_w, left = _out_size(width, kw, stride, padding)
    reach_h, reach_w = (kh - 1) // stride, (kw - 1) // stride  # farthest window offset, in outputs
    grid_h, grid_w = out_h + reach_h, out_w + reach_w  # the padded input, in strides
    # rows/columns past the last window (VALID) are dropped here and get a zero gradient
    used_h, used_w = min(height, grid_h * stride - top), min(width, grid_w * stride - left)
    padded = tf.pad(x[:, :used_h, :used_w, :],
                    [[0, 0], [top, grid_h * stride - used_h - top], [left, grid_w * stride - used_w - left], [0, 0]],
                    constant_values=x.dtype.min)
    phases = _phases(padded, stride)

    offsets = [(i, j) for i in range(kh) for j in range(kw)]
    taken = tf.zeros_like(y, tf.bool)  # outputs whose maximum an earlier offset holds
    placed = [[None] * stride for _ in range(stride)]  # per phase: sum of the placed rows
    for i, j in offsets:
        a, b = i // stride, j // stride
        element = phases[(i % stride) * stride + j % stride][:, a:a + out_h, b:b + out_w, :]  # [B, Ho, Wo, C]
        first = tf.logical_and(tf.equal(element, y), tf.logical_not(taken))  # mask: forward values only
        taken = tf.logical_or(taken, first)
        part = tf.pad(grad * tf.cast(first, grad.dtype), [[0, 0], [a, reach_h - a], [b, reach_w - b], [0, 0]])
        slot = placed[i % stride]
        slot[j % stride] = part if slot[j % stride] is None else slot[j % stride] + part
    some = next(part for row in placed for part in row if part is not None)
    flat = [tf.zeros_like(some) if part is None else part  # None: a phase no offset reaches (stride > window)
            for row in placed for part in row]
    dx = _interleave(flat, stride)[:, top:top + used_h, left:left + used_w, :]
    if (used_h, used_w) != (height, width):
        dx = tf.pad(dx, [[0, 0], [0, height - used_h], [0, width - used_w], [0, 0]])
    return dx

