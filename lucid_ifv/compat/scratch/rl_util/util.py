"""``lucid.scratch.rl_util.util``: image helpers (NumPy, as Lucid's) and the graph look-ups
`get_var` / `get_shape` (TF2: the model's frozen graph is imported without a session)."""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage as nd
import tensorflow as tf

from lucid_ifv.compat.scratch.rl_util.graph import constant_value, graph_model_of, static_shape


def zoom_to(img, width):
    """Nearest-neighbour zoom of an image (or a batch, ``[..., H, W, C]``) to `width` pixels."""
    n = width // img.shape[-2] + 1
    img = img.repeat(n, axis=-3).repeat(n, axis=-2)
    r = float(width) / img.shape[-2]
    zoom = [1] * (img.ndim - 3) + [r, r, 1]
    return nd.zoom(img, zoom, order=0, mode="nearest")


def get_var(model, var_name):
    """The value of tensor `var_name` (a constant, e.g. a kernel, or a tensor computed from
    constants only) of the model's frozen graph, as a NumPy array. Reflects edits made with
    `ParameterEditor`. ValueError if the tensor depends on the model's input."""
    return constant_value(graph_model_of(model, "get_var"), var_name)


def get_shape(model, node_name):
    """The static shape (a list, None for unknown sizes) of tensor `node_name` of the model's
    frozen graph when the input's shape is unknown, as Lucid's (its input placeholder has shape
    ``(None, None, None, None)``)."""
    return static_shape(graph_model_of(model, "get_shape"), node_name)


def concatenate_horizontally(images):
    """``[N, H, W, C]`` images -> one ``[1, H, N * W, C]`` image, side by side."""
    images = np.asarray(images)
    return images.transpose((1, 0, 2, 3)).reshape(
        (1, images.shape[1], images.shape[0] * images.shape[2], images.shape[3])
    )


def hue_to_rgb(ang, warp=True):
    """Produce an RGB unit vector corresponding to a hue of a given angle (Lucid's
    ``lucid.misc.io.collapse_channels.hue_to_rgb``)."""
    ang = ang - 360 * (ang // 360)
    colors = np.asarray([
        [1, 0, 0],
        [1, 1, 0],
        [0, 1, 0],
        [0, 1, 1],
        [0, 0, 1],
        [1, 0, 1],
    ])
    colors = colors / np.linalg.norm(colors, axis=1, keepdims=True)
    R = 360 / len(colors)
    n = math.floor(ang / R)
    D = (ang - n * R) / R

    if warp:
        # warping the angle away from the primary colors (RGB)
        # helps make equally-spaced angles more visually distinguishable
        adj = lambda x: math.sin(x * math.pi / 2)  # noqa: E731 (Lucid's code)
        if n % 2 == 0:
            D = adj(D)
        else:
            D = 1 - adj(1 - D)

    v = (1 - D) * colors[n] + D * colors[(n + 1) % len(colors)]
    return v / np.linalg.norm(v)


def channels_to_rgb(X, warp=True):
    """Non-negative ``[..., K]`` channels -> ``[..., 3]`` RGB, channel i coloured by hue
    ``360 * i / K``."""
    if not (X >= 0).all():
        raise ValueError("channels_to_rgb needs non-negative values")

    K = X.shape[-1]

    rgb = 0
    for i in range(K):
        ang = 360 * i / K
        color = hue_to_rgb(ang, warp=warp)
        color = color[tuple(None for _ in range(len(X.shape) - 1))]
        rgb += X[..., i, None] * color

    return rgb


def conv2d(input_, filter_):
    """Convolve each channel of ``input_`` ``[B, H, W, C]`` with the 2-D ``filter_`` (SAME
    padding); NumPy in, NumPy out (TF2 eager, no session)."""
    if input_.ndim != 4:
        raise ValueError("input_ must have 4 dimensions corresponding to batch, height, width and channels")
    if filter_.ndim != 2:
        raise ValueError("filter_ must have 2 dimensions and will be applied channelwise")
    filter_ = tf.tensordot(
        filter_.astype(input_.dtype),
        np.eye(input_.shape[-1], dtype=input_.dtype),
        axes=[[], []],
    )
    return tf.nn.conv2d(input_, filters=filter_, strides=[1, 1, 1, 1], padding="SAME").numpy()


def norm_filter(length, norm_ord=2, norm_func=lambda n: np.exp(-n), clip=True):
    """A ``[length, length]`` filter: `norm_func` of the `norm_ord`-norm distance to the
    centre (clipped to the inscribed disc when `clip`)."""
    arr = np.indices((length, length)) - ((length - 1) / 2)
    func1d = lambda x: norm_func(np.linalg.norm(x, ord=norm_ord))  # noqa: E731 (Lucid's code)
    result = np.apply_along_axis(func1d, axis=0, arr=arr)
    if clip:
        bound = np.amax(np.amin(result, axis=0), axis=0)
        result *= np.logical_or(result >= bound, np.isclose(result, bound, atol=0))
    return result


def brightness_to_opacity(image):
    """RGB ``[..., 3]`` -> RGBA: the alpha is the pixel's norm (at most 1), the colour divided by it."""
    if image.shape[-1] != 3:
        raise ValueError(f"brightness_to_opacity needs RGB images [..., 3], got shape {image.shape}")
    brightness = np.apply_along_axis(
        lambda x: np.linalg.norm(x, ord=2), axis=-1, arr=image
    )[..., None]
    brightness = np.minimum(1, brightness)
    image = np.divide(
        image, brightness, out=np.zeros_like(image), where=(brightness != 0)
    )
    return np.concatenate([image, brightness], axis=-1)
