"""Lucid's ``lucid.optvis.param.cppn``: Compositional Pattern Producing Networks as image
parametrizations, built from Keras layers (Lucid used ``tf.contrib.slim``)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lucid_ifv.param.base import Param


def composite_activation(x, biased=True):
    """Lucid's ``_composite_activation``: ``atan(x)`` and its square, normalized, stacked
    on the channel axis: ``[..., C] -> [..., 2C]``."""
    x = tf.atan(x)
    if biased:  # RMS of atan(N(0, 1)) and of its square
        coeffs, means = (0.67, 0.6), (0.0, 0.0)
    else:  # std of atan(N(0, 1)), mean and std of its square
        coeffs, means = (0.67, 0.396), (0.0, 0.45)
    return tf.concat([(x - means[0]) / coeffs[0], (x * x - means[1]) / coeffs[1]], -1)


def relu_normalized_activation(x):
    """Lucid's ``_relu_normalized_activation``: ``(relu(x) - 0.40) / 0.58`` (mean and std of
    relu(N(0, 1)))."""
    return (tf.nn.relu(x) - 0.40) / 0.58


_composite_activation = composite_activation  # Lucid's names
_relu_normalized_activation = relu_normalized_activation


class CPPNParam(Param):
    """Lucid's `cppn`: images ``[batch, width, width, num_output_channels]`` in [0, 1].

    Each pixel's coordinates ``(x, y)`` (each ``linspace(-sqrt 3, sqrt 3, width)``, std 1)
    pass through ``num_layers`` 1x1 convolutions of ``num_hidden_channels`` (Keras `Conv2D`,
    kernels VarianceScaling (fan-in, truncated normal), biases N(0, 0.1), as Lucid's slim
    arg_scope), each followed by instance normalization when ``normalize`` (Keras
    `GroupNormalization(groups=-1, epsilon=1e-6)`, slim's ``instance_norm``) and by
    ``activation_func``; then a 1x1 convolution to the output channels (kernel zeros, bias
    N(0, 0.1)) and a sigmoid.

    Variables: the layers' kernels ``[1, 1, C_in, C_out]``, biases and normalization
    gamma/beta, in layer order. There is no batch axis: the whole batch shares the network,
    so all samples are the same image (as in Lucid) and the parametrization is not
    `per_sample`. ``forward(params)`` runs the layers with the given tensors
    (Keras' ``Layer.stateless_call``). ``seed`` makes the initialization reproducible
    (None: Keras' unseeded initializers; Lucid drew from TF's graph seed).
    """

    def __init__(self, width, batch=1, num_output_channels=3, num_hidden_channels=24, num_layers=8,
                 activation_func=composite_activation, normalize=False, seed=None):
        for name, value in (("width", width), ("batch", batch), ("num_output_channels", num_output_channels),
                            ("num_hidden_channels", num_hidden_channels)):
            if int(value) != value or value < 1:
                raise ValueError(f"cppn needs a positive integer {name}, got {value!r}")
        if int(num_layers) != num_layers or num_layers < 0:
            raise ValueError(f"cppn needs a non-negative integer num_layers, got {num_layers!r}")
        width, batch = int(width), int(batch)
        rng = np.random.default_rng(seed)

        def init_seed():
            return None if seed is None else int(rng.integers(2 ** 31))

        def conv(channels, kernel_initializer):
            return tf.keras.layers.Conv2D(
                int(channels), 1, kernel_initializer=kernel_initializer,
                bias_initializer=tf.keras.initializers.RandomNormal(0.0, 0.1, seed=init_seed()))

        r = 3.0 ** 0.5  # std(coord_range) == 1
        coord_range = np.linspace(-r, r, width, dtype=np.float32)
        y, x = np.meshgrid(coord_range, coord_range, indexing="ij")
        self.coords = np.repeat(np.stack([x, y], -1)[None], batch, axis=0)  # [batch, width, width, 2]
        self.activation_func = activation_func
        self.layers = []  # (conv, normalization or None) per hidden layer, then (output conv, None)
        channels = 2
        for _ in range(int(num_layers)):
            layer = conv(num_hidden_channels, tf.keras.initializers.VarianceScaling(seed=init_seed()))
            layer.build((None, width, width, channels))
            norm = None
            if normalize:
                norm = tf.keras.layers.GroupNormalization(groups=-1, epsilon=1e-6)
                norm.build((None, width, width, int(num_hidden_channels)))
            self.layers.append((layer, norm))
            channels = activation_func(tf.zeros((1, 1, 1, int(num_hidden_channels)))).shape[-1]
        output = conv(num_output_channels, tf.keras.initializers.Zeros())
        output.build((None, width, width, channels))
        self.layers.append((output, None))
        variables = [v.value for pair in self.layers for layer in pair if layer is not None
                     for v in layer.trainable_variables]
        super().__init__(variables, (batch, width, width, int(num_output_channels)))

    @property
    def per_sample(self) -> bool:
        return False

    def forward(self, params):
        params = list(params)
        net = tf.constant(self.coords)
        for i, (layer, norm) in enumerate(self.layers):
            for part in (layer, norm):
                if part is not None:
                    n = len(part.trainable_variables)
                    net, _ = part.stateless_call(params[:n], [], net)
                    params = params[n:]
            net = tf.nn.sigmoid(net) if i == len(self.layers) - 1 else self.activation_func(net)
        return net

    def inverse(self, values):
        raise NotImplementedError(
            "cppn has no inverse: many network weights draw the same image; invert the images with "
            "a plain parametrization (e.g. lucid_ifv.param.image) instead"
        )


def cppn(width, batch=1, num_output_channels=3, num_hidden_channels=24, num_layers=8,
         activation_func=composite_activation, normalize=False, seed=None) -> CPPNParam:
    """Lucid's Compositional Pattern Producing Network parametrization (see `CPPNParam`)."""
    return CPPNParam(width, batch=batch, num_output_channels=num_output_channels,
                     num_hidden_channels=num_hidden_channels, num_layers=num_layers,
                     activation_func=activation_func, normalize=normalize, seed=seed)
